//! The read side: projectors follow `$all` and keep SQL read models.
//!
//! A [`Projector`] turns events into rows. The [`runtime`] feeds it batches
//! from its checkpoint and commits each batch's rows *and* the new
//! checkpoint in one transaction, so a crash can neither apply an event
//! twice nor skip one, and several server processes can run the same
//! projector safely (the checkpoint is compare-and-set: one wins each batch,
//! the others re-read). After a commit, the runtime publishes
//! [`LiveUpdate`]s for GraphQL subscriptions: a client that re-queries on an
//! update sees at least the state the update announced.
//!
//! Read models live in the same database as the log, as tables named `rm_*`.

pub mod channels;
pub mod inbox;
pub mod members;
pub mod qr_codes;
mod refill;
pub mod runtime;
pub mod templates;
#[macro_use]
pub mod sql;
mod updates;

pub use runtime::{
    is_transient, Fold, ProjectionError, ProjectionRunner, Projections, Projector, RunnerStatus,
};
pub use sql::ReadTx;
pub use updates::{follow_other_servers, Change, LiveUpdate, NodeId, UpdateBus};
