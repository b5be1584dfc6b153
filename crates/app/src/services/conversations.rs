//! Conversation commands a member gives: mark read, assign, unassign,
//! resolve, reopen.

use omnibox_domain::conversation::{self as domain, ConversationCommand, ConversationError};
use omnibox_domain::ids::{ConversationId, MemberId};
use omnibox_domain::org::Organization;
use omnibox_projections::members::MemberRow;

use crate::commands::{execute, load, Actor, CommandError};
use crate::context::AppContext;
use crate::error::AppError;

/// Runs `command` on conversation `id` for member `me`, and waits until
/// the read models show it.
pub async fn run(
    app: &AppContext,
    me: &MemberRow,
    id: ConversationId,
    command: ConversationCommand,
) -> Result<(), AppError> {
    let now = app.clock.now();
    let org = me.org_id;
    let executed = execute::<domain::Conversation, _>(&*app.store, id.0, &Actor::member(me), |c| {
        domain::decide(c, org, command.clone(), now)
    })
    .await
    .map_err(|e| match e {
        CommandError::Rejected(ConversationError::NotFound) => {
            AppError::NotFound("no such conversation in your organization".into())
        }
        CommandError::Rejected(error @ ConversationError::AgentsTakeOnlyForThemselves) => {
            AppError::Forbidden(error.to_string())
        }
        CommandError::Rejected(error @ ConversationError::AssignedMeanwhile) => {
            AppError::Conflict(error.to_string())
        }
        CommandError::Contended => {
            AppError::Conflict("the conversation kept changing; try again".into())
        }
        other => AppError::internal(other),
    })?;
    app.read_your_writes(executed.position).await;
    Ok(())
}

/// Assigns conversation `id` to `agent`, who must be a member of `me`'s
/// organization (by the organization's events, not a read model).
pub async fn assign(
    app: &AppContext,
    me: &MemberRow,
    id: ConversationId,
    agent: MemberId,
) -> Result<(), AppError> {
    let (org, _) = load::<Organization>(&*app.store, me.org_id.0)
        .await
        .map_err(|e| AppError::internal(format!("{e:?}")))?;
    if org.member(agent).is_none() {
        return Err(AppError::NotFound(
            "no such member in your organization".into(),
        ));
    }
    // What the caller decides on: the assignee as it is now; if another
    // assignment lands first, this one answers CONFLICT.
    let (current, _) = load::<domain::Conversation>(&*app.store, id.0)
        .await
        .map_err(|e| AppError::internal(format!("{e:?}")))?;
    let command = ConversationCommand::AssignByHand {
        assignee: agent,
        by: me.id,
        role: me.role,
        seen: current.assignee,
    };
    run(app, me, id, command).await
}
