//! The one place where errors become the codes of the external contract.

use async_graphql::ErrorExtensions;
use omnibox_app::AppError;

/// An error a client can act on, with its `extensions.code`.
///
/// Deliberately not `Display`: async-graphql turns any `Display` error into
/// a bare message, and every error here must keep its code. For the same
/// reason a service's [`AppError`] (which is `Display`) reaches a client
/// only through `ApiError::from`.
#[derive(Debug)]
pub enum ApiError {
    /// What a service refused or failed with.
    App(AppError),
    /// A live subscriber missed updates and must re-query.
    Resync(String),
    /// The request asks for more work than one request may cause.
    QueryTooCostly(String),
}

impl ApiError {
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::App(error) => match error {
                AppError::Unauthenticated => "UNAUTHENTICATED",
                AppError::Forbidden(_) => "FORBIDDEN",
                AppError::NotFound(_) => "NOT_FOUND",
                AppError::Validation(_) => "VALIDATION",
                AppError::Conflict(_) => "CONFLICT",
                AppError::PageTaken(_) => "PAGE_TAKEN",
                AppError::ChannelNotConnected(_) => "CHANNEL_NOT_CONNECTED",
                AppError::WindowClosed(_) => "WINDOW_CLOSED",
                AppError::PromotionalNotAllowed(_) => "PROMOTIONAL_NOT_ALLOWED",
                AppError::AttachmentNotAllowed(_) => "ATTACHMENT_NOT_ALLOWED",
                AppError::NotSupportedOnChannel(_) => "NOT_SUPPORTED_ON_CHANNEL",
                AppError::PlatformUnavailable(_) => "PLATFORM_UNAVAILABLE",
                AppError::Internal => "INTERNAL",
            },
            ApiError::Resync(_) => "RESYNC",
            ApiError::QueryTooCostly(_) => "QUERY_TOO_COSTLY",
        }
    }

    /// What a person reads.
    pub fn message(&self) -> String {
        match self {
            ApiError::App(error) => error.to_string(),
            ApiError::Resync(message) | ApiError::QueryTooCostly(message) => message.clone(),
        }
    }

    /// Logs `error` and hides it from the client.
    pub fn internal(error: impl std::fmt::Display) -> Self {
        ApiError::App(AppError::internal(error))
    }
}

impl From<AppError> for ApiError {
    fn from(error: AppError) -> Self {
        ApiError::App(error)
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
