//! Omnibox's domain: identifiers, events, commands and the product rules,
//! written as pure functions.
//!
//! This crate does no I/O, spawns nothing and never reads the system clock
//! inside a rule: every decision takes `now` as an argument, so every rule can
//! be tested with a table of instants. The [`clock`] module is the one place
//! that knows how to ask the operating system for the time, and only the
//! edges (server, CLI) call it.

#[macro_use]
mod tagged;

pub mod aggregate;
pub mod assignment;
pub mod channel;
pub mod channel_kind;
pub mod clock;
pub mod conversation;
pub mod ids;
pub mod org;
pub mod policy;
pub mod qr;
pub mod template;
pub mod upcast;

pub use aggregate::Aggregate;
pub use channel_kind::ChannelKind;
pub use clock::{Clock, ManualClock, SystemClock};
