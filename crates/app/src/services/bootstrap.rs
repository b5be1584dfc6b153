//! Creating an organization with its first owner (`omnibox bootstrap`).

use omnibox_domain::ids::{MemberId, OrgId};
use omnibox_domain::org::{self, Email, NewMember, OrgCommand, Organization, Role};

use crate::auth::issue_token;
use crate::commands::{execute, Actor};
use crate::context::AppContext;
use crate::error::AppError;

/// What `bootstrap` prints: the new organization, its owner, and the
/// owner's token (shown this once).
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Bootstrapped {
    pub org_id: OrgId,
    pub user_id: MemberId,
    pub token: String,
}

/// Creates an organization and its OWNER, and brings the read models up to
/// date so the token works at once, even before a server catches up.
pub async fn bootstrap(
    app: &AppContext,
    org_name: &str,
    owner_email: &str,
) -> Result<Bootstrapped, AppError> {
    let email = Email::parse(owner_email).map_err(|e| AppError::Validation(e.to_string()))?;
    let org_id = OrgId::generate();
    let issued = issue_token();
    let owner = NewMember {
        member_id: MemberId::generate(),
        email,
        role: Role::Owner,
        token_sha256: issued.hash,
    };
    let user_id = owner.member_id;
    let command = OrgCommand::Create {
        org_id,
        name: org_name.to_owned(),
        owner,
    };
    let now = app.clock.now();
    let executed = execute::<Organization, _>(
        &*app.store,
        org_id.0,
        &Actor::system("system:bootstrap"),
        |state| org::decide(state, command.clone(), now),
    )
    .await
    .map_err(|e| AppError::Validation(e.to_string()))?;
    if let Some(position) = executed.position {
        let caught_up = app
            .projections
            .catch_up_to(position, std::time::Duration::from_secs(30))
            .await
            .map_err(AppError::internal)?;
        if !caught_up {
            tracing::warn!(
                "read models are still behind; the token works once a server catches up"
            );
        }
    }
    Ok(Bootstrapped {
        org_id,
        user_id,
        token: issued.token,
    })
}
