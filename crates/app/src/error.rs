//! The one error type of the application's services.
//!
//! Each variant is something a caller can act on; the HTTP and GraphQL
//! layer gives each its code of the external contract (one place:
//! `omnibox_api`'s `error` module). Internal failures are logged where they
//! happen and carry no details.

/// Why a service refused or failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AppError {
    #[error("a valid bearer token is required (Authorization: Bearer <token>)")]
    Unauthenticated,
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Validation(String),
    #[error("{0}")]
    Conflict(String),
    /// The Facebook page belongs to another organization.
    #[error("{0}")]
    PageTaken(String),
    /// The channel cannot send now (expired or disconnected).
    #[error("{0}")]
    ChannelNotConnected(String),
    #[error("{0}")]
    WindowClosed(String),
    #[error("{0}")]
    PromotionalNotAllowed(String),
    #[error("{0}")]
    AttachmentNotAllowed(String),
    #[error("{0}")]
    NotSupportedOnChannel(String),
    /// A platform could not be reached to check something (not a refusal).
    #[error("{0}")]
    PlatformUnavailable(String),
    /// Something broke on our side; the details went to the log.
    #[error("internal error; the server log has the details")]
    Internal,
}

impl AppError {
    /// Logs `error` and hides it from the caller.
    pub fn internal(error: impl std::fmt::Display) -> Self {
        tracing::error!(%error, "request failed");
        AppError::Internal
    }
}

impl From<sqlx::Error> for AppError {
    fn from(error: sqlx::Error) -> Self {
        AppError::internal(error)
    }
}

impl From<omnibox_store::StoreError> for AppError {
    fn from(error: omnibox_store::StoreError) -> Self {
        AppError::internal(error)
    }
}
