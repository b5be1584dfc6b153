//! Named crash points for the fault suite.
//!
//! Built with the `fault-injection` feature (the test build turns it on),
//! a server whose `OMNIBOX_CRASH_AT` names a point kills itself there with
//! SIGKILL, as a power cut or `kill -9` would: no destructor runs, nothing
//! is flushed. Without the feature the points compile to nothing, and the
//! variable is ignored.

/// Stops the process at once if `OMNIBOX_CRASH_AT` is `point`.
#[cfg(feature = "fault-injection")]
pub fn crash_point(point: &str) {
    if std::env::var("OMNIBOX_CRASH_AT").is_ok_and(|at| at == point) {
        tracing::warn!(point, "crash point reached; killing the process");
        let _ = std::process::Command::new("kill")
            .args(["-KILL", &std::process::id().to_string()])
            .status();
        std::process::abort();
    }
}

/// Stops the process at once if `OMNIBOX_CRASH_AT` is `point` (not in this build).
#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
pub fn crash_point(_point: &str) {}
