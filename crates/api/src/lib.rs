//! Omnibox's HTTP server.
//!
//! Everything a client or a platform talks to enters here: GraphQL (queries,
//! mutations, subscriptions over WebSocket), health and metrics, and (in
//! later modules) the platforms' webhooks. Handlers turn requests into
//! commands for the domain, append the resulting events, and answer from
//! the read models; no handler writes a read model itself.
//!
//! [`server::router`] shows a request's whole life: the layers it passes
//! and the routes it can reach.

pub mod assignment;
pub mod auth;
pub mod bootstrap;
pub mod channels;
pub mod commands;
pub mod config;
pub mod delivery;
pub mod directory;
pub mod erasure;
mod error;
pub mod faults;
pub mod graphql;
pub mod inbound;
pub mod leadership;
pub mod live;
pub mod media;
pub mod metrics;
pub mod profiles;
pub mod qr;
pub mod server;
pub mod simulator;
mod state;
pub mod templates;
pub mod transfer;
pub mod upcasting;
pub mod web;
pub mod webhooks;

pub use config::Config;
pub use error::ApiError;
pub use state::AppState;
