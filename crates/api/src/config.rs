//! Configuration, read from the environment (see the README's table).

use std::net::SocketAddr;

/// The default database: an SQLite file in the working directory.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://omnibox.db";
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// How far back `inboxUpdates(after:)` replays by default: the replay reads
/// every organization's events, so a client further behind reloads.
pub const DEFAULT_MAX_REPLAY_EVENTS: usize = 100_000;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{name} is not valid: {reason}")]
    Invalid { name: &'static str, reason: String },
}

/// Everything the server needs to start. Secrets are kept out of `Debug`.
#[derive(Clone)]
pub struct Config {
    pub database_url: String,
    pub listen: SocketAddr,
    pub public_url: String,
    /// Base64 of the 32-byte key that seals stored platform secrets.
    pub secret_key: Option<String>,
    pub facebook_app_secret: Option<String>,
    pub facebook_verify_token: Option<String>,
    pub facebook_graph_url: String,
    pub line_api_url: String,
    pub line_data_url: String,
    /// Where inbound media files are kept (default: `omnibox-media` beside the database).
    pub media_dir: Option<std::path::PathBuf>,
    /// How long a platform request may take before it counts as failed.
    pub platform_timeout: std::time::Duration,
    /// How many log events `inboxUpdates(after:)` may replay before it asks
    /// the client to reload instead.
    pub max_replay_events: usize,
    /// How long a delivery claim lasts before another worker treats it as
    /// abandoned (its server stopped mid-call); longer than `platform_timeout`.
    pub delivery_lease: chrono::Duration,
    /// One origin (`scheme://host:port`) whose payload URLs are fetched
    /// without the public-https checks: a local stand-in in tests. Never
    /// set it in production.
    pub trusted_media_origin: Option<String>,
    /// How long a client may take to send a request's headers, and how long
    /// an idle keep-alive connection stays open.
    pub header_timeout: std::time::Duration,
    /// How long one HTTP request may take, body included (408 after).
    pub request_timeout: std::time::Duration,
    /// How long a WebSocket may wait before its `connection_init` (4408 after).
    pub websocket_init_timeout: std::time::Duration,
    /// Whether customers' personal data is sealed in new events (default
    /// yes). Off, erasure cannot remove what is written meanwhile; it exists
    /// to measure what sealing costs.
    pub seal_personal_data: bool,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("database_url", &redact_url(&self.database_url))
            .field("listen", &self.listen)
            .field("public_url", &self.public_url)
            .field("facebook_graph_url", &self.facebook_graph_url)
            .field("line_api_url", &self.line_api_url)
            .field("line_data_url", &self.line_data_url)
            .finish_non_exhaustive()
    }
}

/// A database URL without its passwords, for logs: the one in the user
/// part and any given as a query parameter (`?password=…`).
pub fn redact_url(url: &str) -> String {
    let Ok(mut parsed) = reqwest::Url::parse(url) else {
        return "<unparsable database URL>".to_owned();
    };
    if parsed.password().is_some() {
        let _ = parsed.set_password(Some("***"));
    }
    if parsed.query().is_some() {
        let pairs: Vec<(String, String)> = parsed
            .query_pairs()
            .map(|(key, value)| {
                let secret = key.to_ascii_lowercase().contains("password");
                (
                    key.into_owned(),
                    if secret {
                        "***".to_owned()
                    } else {
                        value.into_owned()
                    },
                )
            })
            .collect();
        parsed.query_pairs_mut().clear().extend_pairs(pairs);
    }
    parsed.to_string()
}

/// A duration in milliseconds from variable `name`, if set.
fn millis(
    get: &impl Fn(&str) -> Option<String>,
    name: &'static str,
) -> Result<Option<std::time::Duration>, ConfigError> {
    get(name)
        .map(|text| {
            text.trim()
                .parse::<u64>()
                .map(std::time::Duration::from_millis)
                .map_err(|_| ConfigError::Invalid {
                    name,
                    reason: format!("{text:?} is not a number of milliseconds"),
                })
        })
        .transpose()
}

/// A timeout from variable `name` (default `default_ms`), which must not be 0.
fn timeout(
    get: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    default_ms: u64,
) -> Result<std::time::Duration, ConfigError> {
    let value = millis(get, name)?.unwrap_or(std::time::Duration::from_millis(default_ms));
    if value.is_zero() {
        return Err(ConfigError::Invalid {
            name,
            reason: "must be more than 0".into(),
        });
    }
    Ok(value)
}

impl Config {
    /// Reads `OMNIBOX_*` variables through `get` (the process environment in
    /// production, a map in tests).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let non_empty = |name: &str| get(name).filter(|v| !v.trim().is_empty());
        let listen_text = non_empty("OMNIBOX_LISTEN").unwrap_or_else(|| DEFAULT_LISTEN.to_owned());
        let listen: SocketAddr =
            listen_text
                .parse()
                .map_err(|e: std::net::AddrParseError| ConfigError::Invalid {
                    name: "OMNIBOX_LISTEN",
                    reason: format!(
                        "{listen_text:?}: {e} (expected host:port, e.g. 127.0.0.1:8080)"
                    ),
                })?;
        let line_api_url = non_empty("OMNIBOX_LINE_API_URL");
        let platform_timeout = millis(&non_empty, "OMNIBOX_PLATFORM_TIMEOUT_MS")?
            .unwrap_or(omnibox_channels::client::REQUEST_TIMEOUT);
        let delivery_lease = match millis(&non_empty, "OMNIBOX_DELIVERY_LEASE_MS")? {
            Some(lease) => chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::MAX),
            None => omnibox_domain::conversation::CLAIM_LEASE,
        };
        if delivery_lease.to_std().unwrap_or_default() <= platform_timeout {
            return Err(ConfigError::Invalid {
                name: "OMNIBOX_DELIVERY_LEASE_MS",
                reason: format!(
                    "the delivery lease ({} ms) must be longer than the platform timeout ({} ms): \
                     a claim must outlive the call it covers",
                    delivery_lease.num_milliseconds(),
                    platform_timeout.as_millis()
                ),
            });
        }
        Ok(Self {
            database_url: non_empty("OMNIBOX_DATABASE_URL")
                .unwrap_or_else(|| DEFAULT_DATABASE_URL.to_owned()),
            public_url: non_empty("OMNIBOX_PUBLIC_URL")
                .map(|url| url.trim_end_matches('/').to_owned())
                .unwrap_or_else(|| format!("http://{listen}")),
            listen,
            secret_key: non_empty("OMNIBOX_SECRET_KEY"),
            facebook_app_secret: non_empty("OMNIBOX_FACEBOOK_APP_SECRET"),
            facebook_verify_token: non_empty("OMNIBOX_FACEBOOK_VERIFY_TOKEN"),
            facebook_graph_url: non_empty("OMNIBOX_FACEBOOK_GRAPH_URL")
                .unwrap_or_else(|| "https://graph.facebook.com/v25.0".to_owned()),
            line_data_url: non_empty("OMNIBOX_LINE_DATA_URL")
                .or_else(|| line_api_url.clone())
                .unwrap_or_else(|| "https://api-data.line.me".to_owned()),
            line_api_url: line_api_url.unwrap_or_else(|| "https://api.line.me".to_owned()),
            media_dir: non_empty("OMNIBOX_MEDIA_DIR").map(std::path::PathBuf::from),
            platform_timeout,
            delivery_lease,
            trusted_media_origin: non_empty("OMNIBOX_TRUSTED_MEDIA_ORIGIN"),
            header_timeout: timeout(&non_empty, "OMNIBOX_HTTP_HEADER_TIMEOUT_MS", 10_000)?,
            request_timeout: timeout(&non_empty, "OMNIBOX_HTTP_REQUEST_TIMEOUT_MS", 30_000)?,
            websocket_init_timeout: timeout(&non_empty, "OMNIBOX_WS_INIT_TIMEOUT_MS", 10_000)?,
            seal_personal_data: match non_empty("OMNIBOX_SEAL_PERSONAL_DATA").as_deref() {
                None | Some("true" | "1" | "yes" | "on") => true,
                Some("false" | "0" | "no" | "off") => false,
                Some(other) => {
                    return Err(ConfigError::Invalid {
                        name: "OMNIBOX_SEAL_PERSONAL_DATA",
                        reason: format!("{other:?} is not true or false"),
                    })
                }
            },
            max_replay_events: match non_empty("OMNIBOX_MAX_REPLAY_EVENTS") {
                Some(n) => n.parse().map_err(|_| ConfigError::Invalid {
                    name: "OMNIBOX_MAX_REPLAY_EVENTS",
                    reason: format!("{n:?} is not a whole number of events"),
                })?,
                None => DEFAULT_MAX_REPLAY_EVENTS,
            },
        })
    }

    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|name| vars.get(name).cloned())
    }

    #[test]
    fn defaults_run_on_sqlite_on_loopback() {
        let c = config(&[]).expect("defaults");
        assert_eq!(c.database_url, "sqlite://omnibox.db");
        assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.public_url, "http://127.0.0.1:8080");
        assert_eq!(c.line_data_url, "https://api-data.line.me");
    }

    #[test]
    fn line_data_url_falls_back_to_the_api_url() {
        let c = config(&[("OMNIBOX_LINE_API_URL", "http://127.0.0.1:9000")]).expect("config");
        assert_eq!(c.line_data_url, "http://127.0.0.1:9000");
        let c = config(&[("OMNIBOX_PUBLIC_URL", "https://inbox.example.com/")]).expect("config");
        assert_eq!(c.public_url, "https://inbox.example.com");
    }

    #[test]
    fn a_bad_listen_address_is_a_clear_error() {
        let err = config(&[("OMNIBOX_LISTEN", "localhost")]).expect_err("refused");
        assert!(err.to_string().contains("OMNIBOX_LISTEN"), "{err}");
    }

    #[test]
    fn database_passwords_stay_out_of_logs() {
        assert_eq!(
            redact_url("postgres://app:hunter2@db:5432/omnibox"),
            "postgres://app:***@db:5432/omnibox"
        );
        assert_eq!(redact_url("sqlite://omnibox.db"), "sqlite://omnibox.db");
        let shown = redact_url(
            "postgres://app@db/omnibox?sslmode=require&password=hunter2&sslpassword=x&options=-c%20a%3Db",
        );
        assert!(
            !shown.contains("hunter2") && shown.contains("sslmode=require"),
            "{shown}"
        );
        assert!(
            shown.contains("password=***") || shown.contains("password=%2A%2A%2A"),
            "{shown}"
        );
        assert!(
            !redact_url("postgres://a:secret@%zz").contains("secret"),
            "{}",
            redact_url("postgres://a:secret@%zz")
        );
        let c = config(&[
            ("OMNIBOX_DATABASE_URL", "postgres://a:hunter2@h/d"),
            ("OMNIBOX_FACEBOOK_APP_SECRET", "s3cr3t"),
        ])
        .expect("config");
        let shown = format!("{c:?}");
        assert!(
            !shown.contains("hunter2") && !shown.contains("s3cr3t"),
            "{shown}"
        );
    }
}
