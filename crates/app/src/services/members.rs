//! Members: adding and removing them, their tokens, their availability.

use omnibox_domain::ids::{MemberId, OrgId};
use omnibox_domain::org::{self, Email, NewMember, OrgCommand, OrgError, Organization, Role};
use omnibox_projections::members::{self as read, MemberRow};

use crate::auth::issue_token;
use crate::commands::{execute, Actor, CommandError};
use crate::context::AppContext;
use crate::error::AppError;

/// A member and their new API token (shown to them once).
pub struct MemberWithToken {
    pub member: MemberRow,
    pub token: String,
}

fn org_error(error: CommandError<OrgError>) -> AppError {
    match error {
        CommandError::Rejected(
            error @ (OrgError::Forbidden(_)
            | OrgError::RemoveForbidden(_)
            | OrgError::OwnerCannotBeRemoved),
        ) => AppError::Forbidden(error.to_string()),
        CommandError::Rejected(error @ OrgError::EmailTaken(_)) => {
            AppError::Conflict(error.to_string())
        }
        CommandError::Rejected(OrgError::NotFound | OrgError::MemberNotFound) => {
            AppError::NotFound("no such member in your organization".into())
        }
        CommandError::Rejected(error) => AppError::Validation(error.to_string()),
        CommandError::Contended => {
            AppError::Conflict(CommandError::<OrgError>::Contended.to_string())
        }
        other => AppError::internal(other),
    }
}

/// Runs an organization command for member `me`.
async fn run(
    app: &AppContext,
    me: &MemberRow,
    command: OrgCommand,
) -> Result<(OrgId, MemberId), AppError> {
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

/// Member `id` of `org`, as the read model shows them.
pub async fn member(app: &AppContext, org: OrgId, id: MemberId) -> Result<MemberRow, AppError> {
    read::member(&app.db, org, id)
        .await?
        .ok_or_else(|| AppError::NotFound("no such member in your organization".into()))
}

/// Adds a member to `me`'s organization (OWNER or PRIMARY_ADMIN only;
/// only an OWNER may add another OWNER) and issues their token.
pub async fn add_member(
    app: &AppContext,
    me: &MemberRow,
    email: &str,
    role: Role,
) -> Result<MemberWithToken, AppError> {
    if !me.role.can_administer() {
        return Err(AppError::Forbidden(format!(
            "only an OWNER or PRIMARY_ADMIN may add members; you are {}",
            me.role.as_str()
        )));
    }
    let email = Email::parse(email).map_err(|e| AppError::Validation(e.to_string()))?;
    let issued = issue_token();
    let member_id = MemberId::generate();
    let new_member = NewMember {
        member_id,
        email,
        role,
        token_sha256: issued.hash,
    };
    let command = OrgCommand::AddMember {
        by: me.id,
        member: new_member,
    };
    let (org, _) = run(app, me, command).await?;
    Ok(MemberWithToken {
        member: member(app, org, member_id).await?,
        token: issued.token,
    })
}

/// Removes member `id` from `me`'s organization; answers the member as
/// they were.
pub async fn remove_member(
    app: &AppContext,
    me: &MemberRow,
    id: MemberId,
) -> Result<MemberRow, AppError> {
    let removed = member(app, me.org_id, id).await?;
    let command = OrgCommand::RemoveMember {
        by: me.id,
        member_id: id,
    };
    run(app, me, command).await?;
    Ok(removed)
}

/// Replaces `me`'s token; the old one stops working at once.
pub async fn rotate_token(app: &AppContext, me: &MemberRow) -> Result<MemberWithToken, AppError> {
    let issued = issue_token();
    let command = OrgCommand::RotateToken {
        member_id: me.id,
        token_sha256: issued.hash,
    };
    let (org, me) = run(app, me, command).await?;
    Ok(MemberWithToken {
        member: member(app, org, me).await?,
        token: issued.token,
    })
}

/// Says whether `me` may be given new conversations automatically.
pub async fn set_availability(
    app: &AppContext,
    me: &MemberRow,
    available: bool,
) -> Result<MemberRow, AppError> {
    let command = OrgCommand::SetAvailability {
        member_id: me.id,
        available,
    };
    let (org, me) = run(app, me, command).await?;
    member(app, org, me).await
}
