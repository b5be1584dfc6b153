//! Omnibox's application layer: everything between the HTTP/GraphQL
//! adapters and the domain, with no web framework in it.
//!
//! - [`commands`]: running a command against an aggregate (load, decide,
//!   append, retry on conflict).
//! - [`services`]: what members and operators ask for (channels, replies,
//!   templates, QR codes, erasure, bootstrap, export and import), each
//!   answering with one error type, [`AppError`].
//! - [`inbound`]: platform webhooks turned into events.
//! - [`reactors`]: delivery, media, profiles, the expiry timer and
//!   automatic assignment, under one start function and the context's
//!   shutdown signal.
//! - [`context`]: what they all share ([`AppContext`]).

pub mod auth;
pub mod commands;
pub mod config;
pub mod context;
pub mod directory;
pub mod error;
pub mod faults;
pub mod inbound;
pub mod leadership;
pub mod media_store;
pub mod metrics;
pub mod reactors;
pub mod services;
pub mod upcasting;

pub use config::Config;
pub use context::{AppContext, StartError};
pub use error::AppError;
