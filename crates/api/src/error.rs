//! The one place where errors become the codes of the external contract.

use async_graphql::ErrorExtensions;

/// An error a client can act on, with its `extensions.code`.
///
/// Deliberately not `Display`: async-graphql turns any `Display` error into
/// a bare message, and every error here must keep its code.
#[derive(Debug)]
pub enum ApiError {
    Unauthenticated,
    Forbidden(String),
    NotFound(String),
    Validation(String),
    Conflict(String),
    /// The Facebook page belongs to another organization.
    PageTaken(String),
    /// The channel cannot send now (expired or disconnected).
    ChannelNotConnected(String),
    WindowClosed(String),
    PromotionalNotAllowed(String),
    AttachmentNotAllowed(String),
    NotSupportedOnChannel(String),
    /// A live subscriber missed updates and must re-query.
    Resync(String),
    /// The request asks for more work than one request may cause.
    QueryTooCostly(String),
    /// A platform could not be reached to check something (not a refusal).
    PlatformUnavailable(String),
    /// Something broke on our side; the details go to the log, not the client.
    Internal,
}

impl ApiError {
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Unauthenticated => "UNAUTHENTICATED",
            ApiError::Forbidden(_) => "FORBIDDEN",
            ApiError::NotFound(_) => "NOT_FOUND",
            ApiError::Validation(_) => "VALIDATION",
            ApiError::Conflict(_) => "CONFLICT",
            ApiError::PageTaken(_) => "PAGE_TAKEN",
            ApiError::ChannelNotConnected(_) => "CHANNEL_NOT_CONNECTED",
            ApiError::WindowClosed(_) => "WINDOW_CLOSED",
            ApiError::PromotionalNotAllowed(_) => "PROMOTIONAL_NOT_ALLOWED",
            ApiError::AttachmentNotAllowed(_) => "ATTACHMENT_NOT_ALLOWED",
            ApiError::NotSupportedOnChannel(_) => "NOT_SUPPORTED_ON_CHANNEL",
            ApiError::Resync(_) => "RESYNC",
            ApiError::QueryTooCostly(_) => "QUERY_TOO_COSTLY",
            ApiError::PlatformUnavailable(_) => "PLATFORM_UNAVAILABLE",
            ApiError::Internal => "INTERNAL",
        }
    }

    /// What a person reads.
    pub fn message(&self) -> String {
        match self {
            ApiError::Unauthenticated => {
                "a valid bearer token is required (Authorization: Bearer <token>)".into()
            }
            ApiError::Forbidden(message)
            | ApiError::NotFound(message)
            | ApiError::Validation(message)
            | ApiError::Conflict(message)
            | ApiError::PageTaken(message)
            | ApiError::ChannelNotConnected(message)
            | ApiError::WindowClosed(message)
            | ApiError::PromotionalNotAllowed(message)
            | ApiError::AttachmentNotAllowed(message)
            | ApiError::NotSupportedOnChannel(message)
            | ApiError::Resync(message)
            | ApiError::QueryTooCostly(message)
            | ApiError::PlatformUnavailable(message) => message.clone(),
            ApiError::Internal => "internal error; the server log has the details".into(),
        }
    }

    /// Logs `error` and hides it from the client.
    pub fn internal(error: impl std::fmt::Display) -> Self {
        tracing::error!(%error, "request failed");
        ApiError::Internal
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(error: sqlx::Error) -> Self {
        ApiError::internal(error)
    }
}

impl From<omnibox_store::StoreError> for ApiError {
    fn from(error: omnibox_store::StoreError) -> Self {
        ApiError::internal(error)
    }
}

impl From<ApiError> for async_graphql::Error {
    fn from(error: ApiError) -> Self {
        let code = error.code();
        async_graphql::Error::new(error.message()).extend_with(|_, e| e.set("code", code))
    }
}
