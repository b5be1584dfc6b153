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
    /// Every problem found, one per variable.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Several(Vec<ConfigError>),
}

/// What a variable holds, for checking it before anything starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `sqlite://FILE` or `postgres://…`.
    DatabaseUrl,
    /// `host:port`, the host a name or an address.
    Listen,
    /// An absolute `http://` or `https://` URL.
    HttpUrl,
    /// Milliseconds, more than 0.
    Millis,
    /// A whole number.
    Count,
    /// true/false (also 1/0, yes/no, on/off).
    Flag,
    /// A log filter (`info`, `omnibox_api=debug,warn`).
    LogFilter,
    /// `text` or `json`.
    LogFormat,
    /// Any text (a secret, a token, a path).
    Text,
}

/// Every variable Omnibox reads: name, default, what it is, and its kind.
/// `omnibox serve --help` prints them; config files may set the same ones.
pub const VARIABLES: &[(&str, &str, &str, Kind)] = &[
    (
        "OMNIBOX_DATABASE_URL",
        DEFAULT_DATABASE_URL,
        "sqlite://FILE (created if missing) or postgres://…",
        Kind::DatabaseUrl,
    ),
    (
        "OMNIBOX_LISTEN",
        DEFAULT_LISTEN,
        "the address HTTP listens on (host:port; a host name is resolved)",
        Kind::Listen,
    ),
    (
        "OMNIBOX_PUBLIC_URL",
        "http:// + the listen address",
        "the https address platforms reach this server at (shown in webhookUrl)",
        Kind::HttpUrl,
    ),
    (
        "OMNIBOX_SECRET_KEY",
        "a development key in the data folder",
        "32 random bytes, standard base64: seals platform secrets and personal-data keys",
        Kind::Text,
    ),
    (
        "OMNIBOX_FACEBOOK_APP_SECRET",
        "none",
        "checks X-Hub-Signature-256 of Facebook webhooks and data deletion requests",
        Kind::Text,
    ),
    (
        "OMNIBOX_FACEBOOK_VERIFY_TOKEN",
        "none",
        "answers Facebook's webhook verification handshake",
        Kind::Text,
    ),
    (
        "OMNIBOX_FACEBOOK_GRAPH_URL",
        "https://graph.facebook.com/v25.0",
        "the Graph API, with its version",
        Kind::HttpUrl,
    ),
    (
        "OMNIBOX_LINE_API_URL",
        "https://api.line.me",
        "the LINE Messaging API",
        Kind::HttpUrl,
    ),
    (
        "OMNIBOX_LINE_DATA_URL",
        "https://api-data.line.me (or OMNIBOX_LINE_API_URL)",
        "LINE's content host",
        Kind::HttpUrl,
    ),
    (
        "OMNIBOX_MEDIA_DIR",
        "omnibox-media beside the database",
        "where inbound media files are kept (must be writable)",
        Kind::Text,
    ),
    (
        "OMNIBOX_PLATFORM_TIMEOUT_MS",
        "20000",
        "how long a platform call may take",
        Kind::Millis,
    ),
    (
        "OMNIBOX_DELIVERY_LEASE_MS",
        "120000",
        "how long a delivery claim lasts (longer than the platform timeout)",
        Kind::Millis,
    ),
    (
        "OMNIBOX_MAX_REPLAY_EVENTS",
        "100000",
        "how far back inboxUpdates(after:) may resume",
        Kind::Count,
    ),
    (
        "OMNIBOX_SEAL_PERSONAL_DATA",
        "true",
        "seal customers' personal data so it can be erased (false only to measure)",
        Kind::Flag,
    ),
    (
        "OMNIBOX_HTTP_HEADER_TIMEOUT_MS",
        "10000",
        "time to send a request's headers; idle keep-alive limit",
        Kind::Millis,
    ),
    (
        "OMNIBOX_HTTP_REQUEST_TIMEOUT_MS",
        "30000",
        "time for one HTTP request, body included",
        Kind::Millis,
    ),
    (
        "OMNIBOX_WS_INIT_TIMEOUT_MS",
        "10000",
        "time a WebSocket may take to send connection_init",
        Kind::Millis,
    ),
    (
        "OMNIBOX_TRUSTED_MEDIA_ORIGIN",
        "none",
        "one origin fetched without the public-https checks (tests and the demo only)",
        Kind::HttpUrl,
    ),
    (
        "OMNIBOX_LOG",
        "info",
        "log filter, e.g. info or omnibox_api=debug,warn",
        Kind::LogFilter,
    ),
    (
        "OMNIBOX_LOG_FORMAT",
        "text",
        "text or json",
        Kind::LogFormat,
    ),
];

// The defaults listed above are the ones the code uses.
const _: () = {
    assert!(omnibox_platforms::client::REQUEST_TIMEOUT.as_millis() == 20_000);
    assert!(omnibox_domain::conversation::CLAIM_LEASE.num_milliseconds() == 120_000);
};

/// Checks one value of a variable of `kind`; why it is not valid.
fn check(kind: Kind, value: &str) -> Result<(), String> {
    let value = value.trim();
    match kind {
        Kind::DatabaseUrl => {
            let known = ["sqlite://", "postgres://", "postgresql://"];
            if !known.iter().any(|scheme| value.starts_with(scheme)) {
                return Err(format!(
                    "{:?} is not sqlite://FILE or postgres://USER@HOST/DB",
                    redact_url(value)
                ));
            }
            if value.starts_with("sqlite://") && value.len() == "sqlite://".len() {
                return Err("sqlite:// needs a file name".into());
            }
            Ok(())
        }
        Kind::Listen => resolve(value).map(|_| ()),
        Kind::HttpUrl => match reqwest::Url::parse(value) {
            Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => Ok(()),
            Ok(url) => Err(format!(
                "{value:?}: {} URLs are not allowed here (http or https)",
                url.scheme()
            )),
            Err(error) => Err(format!("{value:?} is not a URL: {error}")),
        },
        Kind::Millis => match value.parse::<u64>() {
            Ok(0) => Err("must be more than 0".into()),
            Ok(ms) if ms > 86_400_000 => Err(format!("{ms} ms is more than a day")),
            Ok(_) => Ok(()),
            Err(_) => Err(format!("{value:?} is not a number of milliseconds")),
        },
        Kind::Count => value
            .parse::<usize>()
            .map(|_| ())
            .map_err(|_| format!("{value:?} is not a whole number")),
        Kind::Flag => parse_flag(value).map(|_| ()),
        Kind::LogFilter => check_log_filter(value),
        Kind::LogFormat => match value {
            "text" | "json" => Ok(()),
            other => Err(format!("{other:?} is not text or json")),
        },
        Kind::Text => Ok(()),
    }
}

/// A log filter as `tracing_subscriber`'s `EnvFilter` reads it: directives
/// separated by commas, each `target=level`, `target` or `level`.
fn check_log_filter(value: &str) -> Result<(), String> {
    const LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];
    for directive in value.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        let level = match directive.rsplit_once('=') {
            Some((target, level)) if !target.is_empty() => level,
            Some(_) => return Err(format!("{directive:?} has no target before '='")),
            None if directive.contains(['[', '{']) => continue,
            None => {
                // A bare target (all levels) or a bare level.
                if directive
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':' || c == '-')
                {
                    continue;
                }
                return Err(format!("{directive:?} is not a log directive"));
            }
        };
        if !LEVELS.contains(&level.to_ascii_lowercase().as_str()) {
            return Err(format!(
                "{directive:?}: {level:?} is not a level ({})",
                LEVELS.join(", ")
            ));
        }
    }
    Ok(())
}

fn parse_flag(value: &str) -> Result<bool, String> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        other => Err(format!("{other:?} is not true or false")),
    }
}

/// `host:port` to the first address it names (a host name is resolved).
fn resolve(value: &str) -> Result<SocketAddr, String> {
    use std::net::ToSocketAddrs;
    if let Ok(address) = value.parse::<SocketAddr>() {
        return Ok(address);
    }
    let hint = "expected host:port, e.g. 127.0.0.1:8080 or localhost:8080";
    if !value.contains(':') {
        return Err(format!("{value:?} has no port ({hint})"));
    }
    value
        .to_socket_addrs()
        .map_err(|e| format!("{value:?}: {e} ({hint})"))?
        .next()
        .ok_or_else(|| format!("{value:?} names no address ({hint})"))
}

/// Every variable that is set but not valid, each once with its name.
pub fn problems(get: &impl Fn(&str) -> Option<String>) -> Vec<ConfigError> {
    VARIABLES
        .iter()
        .filter_map(|(name, _, _, kind)| {
            let value = get(name).filter(|v| !v.trim().is_empty())?;
            check(*kind, &value)
                .err()
                .map(|reason| ConfigError::Invalid { name, reason })
        })
        .collect()
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
        let mut found = problems(&get);
        match found.len() {
            0 => {}
            1 => return Err(found.remove(0)),
            _ => return Err(ConfigError::Several(found)),
        }
        let non_empty = |name: &str| get(name).filter(|v| !v.trim().is_empty());
        let listen_text = non_empty("OMNIBOX_LISTEN").unwrap_or_else(|| DEFAULT_LISTEN.to_owned());
        let listen = resolve(listen_text.trim()).map_err(|reason| ConfigError::Invalid {
            name: "OMNIBOX_LISTEN",
            reason,
        })?;
        let line_api_url = non_empty("OMNIBOX_LINE_API_URL");
        let platform_timeout = millis(&non_empty, "OMNIBOX_PLATFORM_TIMEOUT_MS")?
            .unwrap_or(omnibox_platforms::client::REQUEST_TIMEOUT);
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
            seal_personal_data: match non_empty("OMNIBOX_SEAL_PERSONAL_DATA") {
                None => true,
                Some(text) => parse_flag(&text).map_err(|reason| ConfigError::Invalid {
                    name: "OMNIBOX_SEAL_PERSONAL_DATA",
                    reason,
                })?,
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
    fn every_bad_value_is_reported_once_with_its_name() {
        let err = config(&[
            ("OMNIBOX_DATABASE_URL", "mysql://db"),
            ("OMNIBOX_PUBLIC_URL", "ftp://inbox.example.com"),
            ("OMNIBOX_FACEBOOK_GRAPH_URL", "not a url"),
            ("OMNIBOX_PLATFORM_TIMEOUT_MS", "soon"),
            ("OMNIBOX_HTTP_REQUEST_TIMEOUT_MS", "0"),
            ("OMNIBOX_LOG", "omnibox=loud"),
            ("OMNIBOX_LOG_FORMAT", "xml"),
            ("OMNIBOX_SEAL_PERSONAL_DATA", "maybe"),
            ("OMNIBOX_LISTEN", "nowhere"),
        ])
        .expect_err("refused");
        let text = err.to_string();
        for name in [
            "OMNIBOX_DATABASE_URL",
            "OMNIBOX_PUBLIC_URL",
            "OMNIBOX_FACEBOOK_GRAPH_URL",
            "OMNIBOX_PLATFORM_TIMEOUT_MS",
            "OMNIBOX_HTTP_REQUEST_TIMEOUT_MS",
            "OMNIBOX_LOG is",
            "OMNIBOX_LOG_FORMAT",
            "OMNIBOX_SEAL_PERSONAL_DATA",
            "OMNIBOX_LISTEN",
        ] {
            assert_eq!(
                text.matches(&format!("{name} ")).count(),
                1,
                "{name} in:\n{text}"
            );
        }
        assert_eq!(text.lines().count(), 9, "{text}");
    }

    #[test]
    fn good_values_pass() {
        for (name, value) in [
            ("OMNIBOX_LISTEN", "localhost:8080"),
            ("OMNIBOX_LISTEN", "[::1]:0"),
            ("OMNIBOX_LOG", "info"),
            ("OMNIBOX_LOG", "omnibox_api=debug,tower_http=warn,info"),
            ("OMNIBOX_DATABASE_URL", "postgresql://app@db/omnibox"),
            ("OMNIBOX_SEAL_PERSONAL_DATA", "off"),
        ] {
            config(&[(name, value)]).unwrap_or_else(|e| panic!("{name}={value}: {e}"));
        }
        let c = config(&[("OMNIBOX_LISTEN", "localhost:8080")]).expect("a host name");
        assert!(c.listen.ip().is_loopback() && c.listen.port() == 8080);
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
