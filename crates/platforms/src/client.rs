//! The HTTP client every platform call goes through.
//!
//! One `reqwest::Client` for the whole process (connection pooling), with
//! connect and request timeouts so a slow platform can never hold a request
//! open for ever. Tokens travel in the `Authorization` header, never in a
//! URL, and errors are stripped of URLs before they can reach a log.

use std::time::Duration;

/// Time to establish a connection to a platform.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Time for a whole platform request, unless configured.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);

/// Builds the process's platform HTTP client; a request that takes longer
/// than `timeout` fails as unreachable (and is retried where that is safe).
pub fn http_client(timeout: Duration) -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT.min(timeout))
        .timeout(timeout)
        .user_agent(concat!("omnibox/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// A Facebook Graph API error body (`{"error": {...}}`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct FacebookError {
    #[serde(default)]
    pub message: String,
    #[serde(rename = "type", default)]
    pub kind: String,
    #[serde(default)]
    pub code: i64,
    #[serde(default)]
    pub error_subcode: Option<i64>,
    #[serde(default)]
    pub fbtrace_id: Option<String>,
}

/// A LINE API error body (`{"message", "details"?}`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct LineError {
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub details: Vec<LineErrorDetail>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct LineErrorDetail {
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub property: String,
}

/// Why a platform call failed.
#[derive(Debug, thiserror::Error)]
pub enum PlatformError {
    /// No answer: connection refused, timeout, TLS failure.
    #[error("the platform could not be reached: {0}")]
    Unreachable(reqwest::Error),
    /// Facebook answered with an error (branch on `code`/`error_subcode`).
    #[error("Facebook answered HTTP {status} with error {} (subcode {:?}): {}", .error.code, .error.error_subcode, .error.message)]
    Facebook { status: u16, error: FacebookError },
    /// LINE answered with an error status.
    #[error("LINE answered HTTP {status}: {}", .error.message)]
    Line { status: u16, error: LineError },
    /// The platform answered with something we cannot read.
    #[error("the platform answered HTTP {status} with an unexpected body: {reason}")]
    UnexpectedAnswer { status: u16, reason: String },
    /// A payload URL Omnibox will not fetch (see [`crate::untrusted`]).
    #[error("refused to fetch it: {0}")]
    Refused(Refused),
}

/// Redirect hops followed when fetching a payload URL, each checked like
/// the first URL.
pub const MAX_REDIRECTS: usize = 3;

/// Why a payload URL was not fetched (see [`crate::untrusted`], which
/// re-exports it).
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    #[error("not a URL: {0}")]
    Malformed(String),
    #[error("only https URLs are fetched, not {0}")]
    Scheme(String),
    #[error("{0} is not a public address")]
    Address(std::net::IpAddr),
    #[error("{host} resolves to no public address")]
    Host { host: String },
    #[error("more than {MAX_REDIRECTS} redirects")]
    Redirects,
}

impl PlatformError {
    /// The platform says the token is invalid or expired: Facebook OAuth
    /// error 190, LINE 401.
    pub fn is_token_rejected(&self) -> bool {
        match self {
            PlatformError::Facebook { error, .. } => error.code == 190,
            PlatformError::Line { status, .. } => *status == 401,
            _ => false,
        }
    }

    pub(crate) fn unreachable(error: reqwest::Error) -> Self {
        PlatformError::Unreachable(error.without_url())
    }
}

/// Reads a Facebook answer: the body as `T` on success, else the typed error.
pub(crate) async fn facebook_answer<T: serde::de::DeserializeOwned>(
    response: reqwest::Response,
) -> Result<T, PlatformError> {
    #[derive(serde::Deserialize)]
    struct Envelope {
        error: FacebookError,
    }
    let status = response.status();
    let body = response.bytes().await.map_err(PlatformError::unreachable)?;
    if let Ok(Envelope { error }) = serde_json::from_slice::<Envelope>(&body) {
        return Err(PlatformError::Facebook {
            status: status.as_u16(),
            error,
        });
    }
    if !status.is_success() {
        return Err(PlatformError::UnexpectedAnswer {
            status: status.as_u16(),
            reason: "an error status without a Graph error body".into(),
        });
    }
    serde_json::from_slice(&body).map_err(|e| PlatformError::UnexpectedAnswer {
        status: status.as_u16(),
        reason: e.to_string(),
    })
}

/// Reads a LINE answer: the body as `T` on success, else the typed error.
pub(crate) async fn line_answer<T: serde::de::DeserializeOwned>(
    response: reqwest::Response,
) -> Result<T, PlatformError> {
    let status = response.status();
    let body = response.bytes().await.map_err(PlatformError::unreachable)?;
    if !status.is_success() {
        let error = serde_json::from_slice::<LineError>(&body).unwrap_or_else(|_| LineError {
            message: String::from_utf8_lossy(&body).chars().take(200).collect(),
            details: Vec::new(),
        });
        return Err(PlatformError::Line {
            status: status.as_u16(),
            error,
        });
    }
    serde_json::from_slice(&body).map_err(|e| PlatformError::UnexpectedAnswer {
        status: status.as_u16(),
        reason: e.to_string(),
    })
}

/// Bytes fetched from a platform, with the content type it declared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Download {
    pub bytes: Vec<u8>,
    pub content_type: Option<String>,
}

/// Reads a successful response's body, refusing more than `max_bytes`.
pub(crate) async fn read_limited(
    mut response: reqwest::Response,
    max_bytes: usize,
) -> Result<Download, PlatformError> {
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let too_large = || PlatformError::UnexpectedAnswer {
        status,
        reason: format!("the file is larger than {max_bytes} bytes"),
    };
    if response
        .content_length()
        .is_some_and(|n| n > max_bytes as u64)
    {
        return Err(too_large());
    }
    let mut bytes = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(PlatformError::unreachable)? {
        if bytes.len() + chunk.len() > max_bytes {
            return Err(too_large());
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(Download {
        bytes,
        content_type,
    })
}
