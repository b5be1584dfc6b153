//! Members: who am I, who is on my team, adding agents, availability.

use async_graphql::{Context, Enum, Object, SimpleObject, Subscription};
use futures_util::stream::Stream;
use omnibox_app::auth::issue_token;
use omnibox_app::commands::{execute, Actor, CommandError};
use omnibox_app::AppError;
use omnibox_domain::ids::{MemberId, OrgId};
use omnibox_domain::org::{self, Email, NewMember, OrgCommand, OrgError, Organization};
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

fn org_error(error: CommandError<OrgError>) -> ApiError {
    match error {
        CommandError::Rejected(
            error @ (OrgError::Forbidden(_)
            | OrgError::RemoveForbidden(_)
            | OrgError::OwnerCannotBeRemoved),
        ) => ApiError::App(AppError::Forbidden(error.to_string())),
        CommandError::Rejected(error @ OrgError::EmailTaken(_)) => {
            ApiError::App(AppError::Conflict(error.to_string()))
        }
        CommandError::Rejected(OrgError::NotFound | OrgError::MemberNotFound) => ApiError::App(
            AppError::NotFound("no such member in your organization".into()),
        ),
        CommandError::Rejected(error) => ApiError::App(AppError::Validation(error.to_string())),
        CommandError::Contended => ApiError::App(AppError::Conflict(
            CommandError::<OrgError>::Contended.to_string(),
        )),
        other => ApiError::internal(other),
    }
}

/// Runs an organization command for the session's member.
async fn run(ctx: &Context<'_>, command: OrgCommand) -> Result<(OrgId, MemberId), ApiError> {
    let me = &session(ctx)?.member;
    let app = state(ctx)?;
    let now = app.clock.now();
    let actor = Actor::member(me);
    let executed = execute::<Organization, _>(&*app.store, me.org_id.0, &actor, |org| {
        org::decide(org, command.clone(), now)
    })
    .await
    .map_err(org_error)?;
    app.read_your_writes(executed.position).await;
    Ok((me.org_id, me.id))
}

async fn member_row(ctx: &Context<'_>, org: OrgId, id: MemberId) -> Result<Member, ApiError> {
    read::member(&state(ctx)?.db, org, id)
        .await?
        .map(Member::from)
        .ok_or_else(|| {
            ApiError::App(AppError::NotFound(
                "no such member in your organization".into(),
            ))
        })
}

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
        if !me.role.can_administer() {
            return Err(ApiError::App(AppError::Forbidden(format!(
                "only an OWNER or PRIMARY_ADMIN may add members; you are {}",
                me.role.as_str()
            )))
            .into());
        }
        let email =
            Email::parse(&email).map_err(|e| ApiError::App(AppError::Validation(e.to_string())))?;
        let issued = issue_token();
        let member_id = MemberId::generate();
        let new_member = NewMember {
            member_id,
            email,
            role: role.into(),
            token_sha256: issued.hash,
        };
        let (org, _) = run(
            ctx,
            OrgCommand::AddMember {
                by: me.id,
                member: new_member,
            },
        )
        .await?;
        Ok(MemberWithToken {
            member: member_row(ctx, org, member_id).await?,
            token: issued.token,
        })
    }

    /// Removes a member from the caller's organization (OWNER or
    /// PRIMARY_ADMIN; the owner cannot be removed). Their token stops
    /// working at once, and their open subscriptions are closed. Answers
    /// the member as they were.
    async fn remove_member(&self, ctx: &Context<'_>, id: Uuid) -> async_graphql::Result<Member> {
        let me = &session(ctx)?.member;
        let removed = member_row(ctx, me.org_id, MemberId(id)).await?;
        run(
            ctx,
            OrgCommand::RemoveMember {
                by: me.id,
                member_id: MemberId(id),
            },
        )
        .await?;
        Ok(removed)
    }

    /// Replaces the caller's token: the answer carries the new one (shown
    /// only here), and the old one stops working at once, on HTTP and on
    /// open WebSockets.
    async fn rotate_token(&self, ctx: &Context<'_>) -> async_graphql::Result<MemberWithToken> {
        let me = session(ctx)?.member.id;
        let issued = issue_token();
        let (org, me) = run(
            ctx,
            OrgCommand::RotateToken {
                member_id: me,
                token_sha256: issued.hash,
            },
        )
        .await?;
        Ok(MemberWithToken {
            member: member_row(ctx, org, me).await?,
            token: issued.token,
        })
    }

    /// Says whether the caller may be given new conversations automatically.
    async fn set_availability(
        &self,
        ctx: &Context<'_>,
        available: bool,
    ) -> async_graphql::Result<Member> {
        let me = session(ctx)?.member.id;
        let (org, me) = run(
            ctx,
            OrgCommand::SetAvailability {
                member_id: me,
                available,
            },
        )
        .await?;
        Ok(member_row(ctx, org, me).await?)
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
