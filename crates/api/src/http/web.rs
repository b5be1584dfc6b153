//! The pages the binary serves itself: the web inbox at `/` and GraphiQL at
//! `GET /graphql`, with every asset embedded (no build step, no CDN, no
//! request leaves the server's origin). The vendored GraphiQL bundle's
//! versions, checksums and licences are in `assets/graphiql/VERSIONS.md`.

use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

const INBOX_HTML: &str = include_str!("../../assets/inbox/index.html");
const INBOX_JS: &str = include_str!("../../assets/inbox/inbox.js");
const INBOX_CSS: &str = include_str!("../../assets/inbox/inbox.css");
const GRAPHIQL_HTML: &str = include_str!("../../assets/graphiql/index.html");

/// The vendored GraphiQL files by name, with their content types.
const GRAPHIQL_ASSETS: &[(&str, &str, &[u8])] = &[
    (
        "graphiql.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../assets/graphiql/graphiql.min.js"),
    ),
    (
        "graphiql.min.css",
        "text/css; charset=utf-8",
        include_bytes!("../../assets/graphiql/graphiql.min.css"),
    ),
    (
        "react.production.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../assets/graphiql/react.production.min.js"),
    ),
    (
        "react-dom.production.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../assets/graphiql/react-dom.production.min.js"),
    ),
];

/// The inbox may talk to its own origin only (WebSockets included), and
/// shows media it fetched itself as blobs.
const INBOX_POLICY: &str =
    "default-src 'self'; img-src 'self' blob: data:; media-src 'self' blob:; \
     connect-src 'self' ws: wss:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";
/// GraphiQL adds inline styles and its page has one inline script.
const GRAPHIQL_POLICY: &str = "default-src 'self'; script-src 'self' 'unsafe-inline'; \
     style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; font-src 'self' data:; \
     connect-src 'self' ws: wss:; frame-ancestors 'none'; base-uri 'none'";

fn page(body: &'static str, policy: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CONTENT_SECURITY_POLICY, policy),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

fn asset(content_type: &'static str, body: &'static [u8]) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // Revalidated each time: the binary may be upgraded under the same names.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// `GET /`: the web inbox.
pub async fn inbox() -> Response {
    page(INBOX_HTML, INBOX_POLICY)
}

/// `GET /assets/inbox.js`.
pub async fn inbox_js() -> Response {
    asset("text/javascript; charset=utf-8", INBOX_JS.as_bytes())
}

/// `GET /assets/inbox.css`.
pub async fn inbox_css() -> Response {
    asset("text/css; charset=utf-8", INBOX_CSS.as_bytes())
}

/// GraphiQL's page, for `GET /graphql` from a browser.
pub fn graphiql() -> Response {
    page(GRAPHIQL_HTML, GRAPHIQL_POLICY)
}

/// `GET /assets/graphiql/{file}`.
pub async fn graphiql_asset(Path(file): Path<String>) -> Response {
    match GRAPHIQL_ASSETS.iter().find(|(name, _, _)| *name == file) {
        Some((_, content_type, body)) => asset(content_type, body),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}
