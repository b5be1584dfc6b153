//! The HTTP routes other than GraphQL: the platforms' webhooks, Meta's
//! data deletion callback, media, QR code images, the web pages, and the
//! request metrics middleware. Each handler extracts what it needs, calls
//! the application, and answers with a status.

pub mod erasure;
pub mod graphql;
pub mod health;
pub mod media;
pub mod metrics;
pub mod qr;
pub mod web;
pub mod webhooks;

/// The token in an `Authorization: Bearer <token>` value.
pub fn bearer(authorization: &str) -> Option<&str> {
    let (scheme, token) = authorization.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_headers_are_parsed_strictly() {
        assert_eq!(bearer("Bearer obx_abc"), Some("obx_abc"));
        assert_eq!(bearer("bearer   obx_abc "), Some("obx_abc"));
        assert_eq!(bearer("Basic dXNlcjpwYXNz"), None);
        assert_eq!(bearer("Bearer "), None);
        assert_eq!(bearer("obx_abc"), None);
    }
}
