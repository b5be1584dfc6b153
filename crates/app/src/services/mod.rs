//! The application services: what a member (or an operator's command)
//! asks of Omnibox, checked, decided by the domain and recorded. Each
//! answers with [`crate::error::AppError`] when it refuses or fails.

pub mod bootstrap;
pub mod channels;
pub mod conversations;
pub mod erasure;
pub mod members;
pub mod qr;
pub mod replies;
pub mod templates;
pub mod transfer;
