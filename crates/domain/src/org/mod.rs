//! Organizations and their members.
//!
//! One stream per organization (`org-<id>`) holds the organization and its
//! members, so "one e-mail address per organization" is checked against a
//! single consistent state.

mod command;
mod email;
mod event;
mod role;
mod state;

pub use command::{decide, OrgCommand, OrgError};
pub use email::{Email, EmailError};
pub use event::{NewMember, OrgEvent, TokenHash};
pub use role::Role;
pub use state::{Member, Organization};
