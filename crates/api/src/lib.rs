//! Omnibox's HTTP and GraphQL layer.
//!
//! Everything a client or a platform talks to enters here: GraphQL (queries,
//! mutations, subscriptions over WebSocket), the platforms' webhooks, media,
//! the web pages, health and metrics. This crate only adapts: a handler or
//! resolver extracts what the request carries, calls the application
//! (`omnibox_app`), and turns its answer or its error into HTTP or GraphQL
//! (the codes in one place, [`error`]). No handler writes a read model.
//!
//! - [`server`]: every route and layer, and the server's life (connections,
//!   timeouts, shutdown).
//! - [`http`]: the route handlers other than GraphQL's resolvers.
//! - [`graphql`]: the schema and its resolvers, live updates, the cost guard.
//! - [`state`]: what handlers share ([`AppState`]).
//! - [`simulator`]: the fake platforms `omnibox demo` runs.

pub mod error;
pub mod graphql;
pub mod http;
pub mod server;
pub mod simulator;
pub mod state;

pub use error::ApiError;
pub use omnibox_app::Config;
pub use state::AppState;
