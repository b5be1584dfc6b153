//! Members: who am I, who is on my team, adding agents, availability.

use async_graphql::{Context, Enum, Object, SimpleObject, Subscription};
use futures_util::stream::Stream;
use omnibox_app::services::members as service;
use omnibox_domain::ids::MemberId;
use omnibox_domain::org;
use omnibox_projections::members::{self as read, MemberRow};
use omnibox_projections::Change;
use uuid::Uuid;

use super::{session, state};
use crate::error::ApiError;

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(name = "Role")]
pub enum Role {
    Owner,
    PrimaryAdmin,
    Admin,
    Agent,
}

impl From<org::Role> for Role {
    fn from(role: org::Role) -> Self {
        match role {
            org::Role::Owner => Role::Owner,
            org::Role::PrimaryAdmin => Role::PrimaryAdmin,
            org::Role::Admin => Role::Admin,
            org::Role::Agent => Role::Agent,
        }
    }
}

impl From<Role> for org::Role {
    fn from(role: Role) -> Self {
        match role {
            Role::Owner => org::Role::Owner,
            Role::PrimaryAdmin => org::Role::PrimaryAdmin,
            Role::Admin => org::Role::Admin,
            Role::Agent => org::Role::Agent,
        }
    }
}

/// A member of the caller's organization.
#[derive(SimpleObject, Clone, Debug)]
pub struct Member {
    pub id: Uuid,
    pub email: String,
    pub role: Role,
    /// Whether automatic assignment may give this member new conversations.
    pub available: bool,
}

impl From<MemberRow> for Member {
    fn from(row: MemberRow) -> Self {
        Self {
            id: row.id.0,
            email: row.email,
            role: row.role.into(),
            available: row.available,
        }
    }
}

/// A new member and their API token. The token is shown only here, once.
#[derive(SimpleObject)]
pub struct MemberWithToken {
    pub member: Member,
    pub token: String,
}

impl From<service::MemberWithToken> for MemberWithToken {
    fn from(issued: service::MemberWithToken) -> Self {
        Self {
            member: issued.member.into(),
            token: issued.token,
        }
    }
}

#[derive(Default)]
pub struct MembersQuery;

#[Object]
impl MembersQuery {
    /// The member the bearer token belongs to.
    async fn me(&self, ctx: &Context<'_>) -> async_graphql::Result<Member> {
        Ok(session(ctx)?.member.clone().into())
    }

    /// Everyone in the caller's organization, by e-mail address.
    async fn members(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<Member>> {
        let me = &session(ctx)?.member;
        let rows = read::members(&state(ctx)?.db, me.org_id)
            .await
            .map_err(ApiError::from)?;
        Ok(rows.into_iter().map(Member::from).collect())
    }
}

#[derive(Default)]
pub struct MembersMutation;

#[Object]
impl MembersMutation {
    /// Adds a member to the caller's organization (OWNER or PRIMARY_ADMIN
    /// only; only an OWNER may add another OWNER) and issues their token.
    async fn add_member(
        &self,
        ctx: &Context<'_>,
        email: String,
        role: Role,
    ) -> async_graphql::Result<MemberWithToken> {
        let me = &session(ctx)?.member;
        let added = service::add_member(state(ctx)?, me, &email, role.into())
            .await
            .map_err(ApiError::from)?;
        Ok(added.into())
    }

    /// Removes a member from the caller's organization (OWNER or
    /// PRIMARY_ADMIN; the owner cannot be removed). Their token stops
    /// working at once, and their open subscriptions are closed. Answers
    /// the member as they were.
    async fn remove_member(&self, ctx: &Context<'_>, id: Uuid) -> async_graphql::Result<Member> {
        let me = &session(ctx)?.member;
        let removed = service::remove_member(state(ctx)?, me, MemberId(id))
            .await
            .map_err(ApiError::from)?;
        Ok(removed.into())
    }

    /// Replaces the caller's token: the answer carries the new one (shown
    /// only here), and the old one stops working at once, on HTTP and on
    /// open WebSockets.
    async fn rotate_token(&self, ctx: &Context<'_>) -> async_graphql::Result<MemberWithToken> {
        let me = &session(ctx)?.member;
        let rotated = service::rotate_token(state(ctx)?, me)
            .await
            .map_err(ApiError::from)?;
        Ok(rotated.into())
    }

    /// Says whether the caller may be given new conversations automatically.
    async fn set_availability(
        &self,
        ctx: &Context<'_>,
        available: bool,
    ) -> async_graphql::Result<Member> {
        let me = &session(ctx)?.member;
        let member = service::set_availability(state(ctx)?, me, available)
            .await
            .map_err(ApiError::from)?;
        Ok(member.into())
    }
}

#[derive(Default)]
pub struct MembersSubscription;

#[Subscription]
impl MembersSubscription {
    /// Every change to a member of the caller's organization (added,
    /// availability), after the read model shows it.
    async fn member_updates(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<impl Stream<Item = async_graphql::Result<Member>>> {
        let org = session(ctx)?.member.org_id;
        Ok(super::live_rows(
            state(ctx)?.clone(),
            super::hub(ctx)?,
            org,
            |change| match change {
                Change::Member(id) => Some(*id),
                _ => None,
            },
            move |app, _, id| async move {
                read::member(&app.db, org, id)
                    .await
                    .ok()
                    .flatten()
                    .map(Member::from)
            },
        ))
    }
}
