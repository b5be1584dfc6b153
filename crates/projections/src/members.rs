//! Organizations and members: who may call the API, in which organization and role.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use omnibox_domain::ids::{MemberId, OrgId};
use omnibox_domain::org::{OrgEvent, Role, TokenHash};
use omnibox_store::{Database, RecordedEvent};
use sqlx::Row;
use uuid::Uuid;

use crate::runtime::ApplyError;
use crate::{execute, fetch_all, fetch_optional, Change, Projector, ReadTx};

/// Projects `org-*` streams into `rm_organizations` and `rm_members`.
pub struct MembersProjector;

#[async_trait]
impl Projector for MembersProjector {
    fn name(&self) -> &'static str {
        "members"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["rm_organizations", "rm_members"]
    }

    fn handles(&self, event: &RecordedEvent) -> bool {
        event.stream.category() == OrgId::CATEGORY
    }

    async fn apply(
        &self,
        tx: &mut ReadTx,
        event: &RecordedEvent,
        changes: &mut Vec<(OrgId, Change)>,
    ) -> Result<(), ApplyError> {
        if !self.handles(event) {
            return Ok(());
        }
        match serde_json::from_str::<OrgEvent>(&event.data)? {
            OrgEvent::OrganizationCreated {
                org_id,
                name,
                created_at,
            } => {
                execute!(
                    tx,
                    "INSERT INTO rm_organizations (org_id, name, created_at) VALUES ($1, $2, $3)",
                    org_id.0,
                    name,
                    created_at
                )?;
            }
            OrgEvent::MemberAdded {
                org_id,
                member,
                added_at,
                ..
            } => {
                execute!(
                    tx,
                    "INSERT INTO rm_members (member_id, org_id, email, role, available, token_sha256, added_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                    member.member_id.0,
                    org_id.0,
                    member.email.as_str(),
                    member.role.as_str(),
                    true,
                    member.token_sha256.0,
                    added_at
                )?;
                changes.push((org_id, Change::Member(member.member_id)));
            }
            OrgEvent::MemberAvailabilityChanged {
                org_id,
                member_id,
                available,
                ..
            } => {
                execute!(
                    tx,
                    "UPDATE rm_members SET available = $1 WHERE member_id = $2",
                    available,
                    member_id.0
                )?;
                changes.push((org_id, Change::Member(member_id)));
            }
            OrgEvent::MemberRemoved {
                org_id, member_id, ..
            } => {
                execute!(
                    tx,
                    "DELETE FROM rm_members WHERE member_id = $1",
                    member_id.0
                )?;
                changes.push((org_id, Change::Member(member_id)));
            }
            OrgEvent::MemberTokenRotated {
                org_id,
                member_id,
                token_sha256,
                ..
            } => {
                execute!(
                    tx,
                    "UPDATE rm_members SET token_sha256 = $1 WHERE member_id = $2",
                    token_sha256.0,
                    member_id.0
                )?;
                changes.push((org_id, Change::Member(member_id)));
            }
        }
        Ok(())
    }
}

/// A member as the API shows them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberRow {
    pub id: MemberId,
    pub org_id: OrgId,
    pub email: String,
    pub role: Role,
    pub available: bool,
    pub added_at: DateTime<Utc>,
}

const MEMBER_COLUMNS: &str = "member_id, org_id, email, role, available, added_at";

fn member_row<R: Row>(row: &R) -> Result<MemberRow, sqlx::Error>
where
    for<'r> Uuid: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> bool: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> DateTime<Utc>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    usize: sqlx::ColumnIndex<R>,
{
    let role: String = row.try_get(3)?;
    Ok(MemberRow {
        id: MemberId(row.try_get(0)?),
        org_id: OrgId(row.try_get(1)?),
        email: row.try_get(2)?,
        role: Role::parse(&role)
            .ok_or_else(|| sqlx::Error::Decode(format!("unknown role {role:?}").into()))?,
        available: row.try_get(4)?,
        added_at: row.try_get(5)?,
    })
}

/// The member whose API token hashes to `hash`.
pub async fn member_by_token(
    db: &Database,
    hash: &TokenHash,
) -> Result<Option<MemberRow>, sqlx::Error> {
    let sql = format!("SELECT {MEMBER_COLUMNS} FROM rm_members WHERE token_sha256 = $1");
    fetch_optional!(db, &sql, [&hash.0], |row| member_row(row))
}

/// One member of `org`.
pub async fn member(
    db: &Database,
    org: OrgId,
    id: MemberId,
) -> Result<Option<MemberRow>, sqlx::Error> {
    let sql =
        format!("SELECT {MEMBER_COLUMNS} FROM rm_members WHERE org_id = $1 AND member_id = $2");
    fetch_optional!(db, &sql, [org.0, id.0], |row| member_row(row))
}

/// Every member of `org`, by e-mail address.
pub async fn members(db: &Database, org: OrgId) -> Result<Vec<MemberRow>, sqlx::Error> {
    let sql = format!("SELECT {MEMBER_COLUMNS} FROM rm_members WHERE org_id = $1 ORDER BY email");
    fetch_all!(db, &sql, [org.0], |row| member_row(row))
}
