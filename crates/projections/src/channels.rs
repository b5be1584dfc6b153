//! Channels and the token-expiry watchlist.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use omnibox_domain::channel::{AssignmentMode, ChannelEvent, ChannelStatus};
use omnibox_domain::ids::{ChannelId, OrgId};
use omnibox_domain::policy::token_expires_at;
use omnibox_domain::ChannelKind;
use omnibox_store::{Database, RecordedEvent};
use sqlx::Row;
use uuid::Uuid;

use crate::runtime::ApplyError;
use crate::{execute, fetch_all, fetch_optional, fetch_optional_tx, Change, Projector, ReadTx};

/// Read-model instants are epoch microseconds.
pub fn micros(at: DateTime<Utc>) -> i64 {
    at.timestamp_micros()
}

fn instant(micros: i64) -> Result<DateTime<Utc>, sqlx::Error> {
    DateTime::from_timestamp_micros(micros)
        .ok_or_else(|| sqlx::Error::Decode(format!("instant {micros} out of range").into()))
}

fn kind_name(kind: ChannelKind) -> &'static str {
    kind.as_str()
}

/// Projects `channel-*` streams into `rm_channels`.
pub struct ChannelsProjector;

#[async_trait]
impl Projector for ChannelsProjector {
    fn name(&self) -> &'static str {
        "channels"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["rm_channels"]
    }

    fn handles(&self, event: &RecordedEvent) -> bool {
        event.stream.category() == ChannelId::CATEGORY
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
        let event: ChannelEvent = serde_json::from_str(&event.data)?;
        let (channel_id, org_id) = (event.channel_id(), event.org_id());
        match event {
            ChannelEvent::ChannelConnected {
                kind,
                external_id,
                name,
                access_token,
                channel_secret,
                at,
                ..
            } => {
                execute!(
                    tx,
                    "INSERT INTO rm_channels (channel_id, org_id, kind, external_id, name, status, authorized_at,
                         last_used_at, token_expires_at, access_token_secret, channel_secret, assignment_mode, connected_at)
                     VALUES ($1, $2, $3, $4, $5, 'CONNECTED', $6, NULL, $7, $8, $9, 'OFF', $6)
                     ON CONFLICT (channel_id) DO UPDATE SET
                         name = excluded.name, status = 'CONNECTED', authorized_at = excluded.authorized_at,
                         last_used_at = NULL, token_expires_at = excluded.token_expires_at,
                         access_token_secret = excluded.access_token_secret, channel_secret = excluded.channel_secret",
                    channel_id.0,
                    org_id.0,
                    kind_name(kind),
                    external_id,
                    name,
                    micros(at),
                    token_expires_at(kind, at, None).map(micros),
                    access_token.id,
                    channel_secret.map(|s| s.id)
                )?;
            }
            ChannelEvent::ChannelReauthorized {
                name,
                access_token,
                at,
                ..
            } => {
                let kind = channel_kind(tx, channel_id).await?;
                execute!(
                    tx,
                    "UPDATE rm_channels SET name = $1, status = 'CONNECTED', authorized_at = $2, last_used_at = NULL,
                         token_expires_at = $3, access_token_secret = $4
                     WHERE channel_id = $5",
                    name,
                    micros(at),
                    kind.and_then(|k| token_expires_at(k, at, None)).map(micros),
                    access_token.id,
                    channel_id.0
                )?;
            }
            ChannelEvent::ChannelTokenUsed { at, .. } => {
                let row = fetch_optional_tx!(
                    tx,
                    "SELECT kind, authorized_at, last_used_at FROM rm_channels WHERE channel_id = $1",
                    [channel_id.0],
                    |row| Ok((row.try_get::<String, _>(0)?, row.try_get::<i64, _>(1)?, row.try_get::<Option<i64>, _>(2)?))
                )?;
                if let Some((kind, authorized, last_used)) = row {
                    let last_used = last_used.map_or(micros(at), |l| l.max(micros(at)));
                    let expires = match (
                        ChannelKind::parse(&kind),
                        instant(authorized),
                        instant(last_used),
                    ) {
                        (Some(kind), Ok(authorized), Ok(used)) => {
                            token_expires_at(kind, authorized, Some(used)).map(micros)
                        }
                        _ => None,
                    };
                    execute!(
                        tx,
                        "UPDATE rm_channels SET last_used_at = $1, token_expires_at = $2 WHERE channel_id = $3",
                        last_used,
                        expires,
                        channel_id.0
                    )?;
                }
            }
            ChannelEvent::ChannelConnectionExpired { .. } => {
                set_status(tx, channel_id, ChannelStatus::Expired).await?
            }
            ChannelEvent::ChannelDisconnected { .. } => {
                set_status(tx, channel_id, ChannelStatus::Disconnected).await?
            }
            ChannelEvent::AssignmentModeChanged { mode, .. } => {
                execute!(
                    tx,
                    "UPDATE rm_channels SET assignment_mode = $1 WHERE channel_id = $2",
                    mode.as_str(),
                    channel_id.0
                )?;
            }
        }
        changes.push((org_id, Change::Channel(channel_id)));
        Ok(())
    }
}

async fn channel_kind(
    tx: &mut ReadTx,
    channel_id: ChannelId,
) -> Result<Option<ChannelKind>, sqlx::Error> {
    let kind = fetch_optional_tx!(
        tx,
        "SELECT kind FROM rm_channels WHERE channel_id = $1",
        [channel_id.0],
        |row| row.try_get::<String, _>(0)
    )?;
    Ok(kind.as_deref().and_then(ChannelKind::parse))
}

async fn set_status(
    tx: &mut ReadTx,
    channel_id: ChannelId,
    status: ChannelStatus,
) -> Result<(), sqlx::Error> {
    execute!(
        tx,
        "UPDATE rm_channels SET status = $1 WHERE channel_id = $2",
        status.as_str(),
        channel_id.0
    )?;
    Ok(())
}

/// A channel as the read model holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelRow {
    pub id: ChannelId,
    pub org_id: OrgId,
    pub kind: ChannelKind,
    pub external_id: String,
    pub name: String,
    /// The status events recorded; see [`ChannelRow::status_at`].
    pub recorded_status: ChannelStatus,
    pub authorized_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub token_expires_at: Option<DateTime<Utc>>,
    pub access_token_secret: Uuid,
    pub channel_secret: Option<Uuid>,
    pub assignment_mode: AssignmentMode,
}

impl ChannelRow {
    /// The status at `at`: a deadline that passed counts even before the
    /// expiry timer has recorded it.
    pub fn status_at(&self, at: DateTime<Utc>) -> ChannelStatus {
        match self.recorded_status {
            ChannelStatus::Connected
                if self.token_expires_at.is_some_and(|deadline| deadline <= at) =>
            {
                ChannelStatus::Expired
            }
            status => status,
        }
    }
}

const COLUMNS: &str =
    "channel_id, org_id, kind, external_id, name, status, authorized_at, last_used_at,
    token_expires_at, access_token_secret, channel_secret, assignment_mode";

/// [`COLUMNS`] of the table named `ch`, for a query that joins it.
pub(crate) const JOINED_COLUMNS: &str =
    "ch.channel_id, ch.org_id, ch.kind, ch.external_id, ch.name, ch.status, ch.authorized_at,
    ch.last_used_at, ch.token_expires_at, ch.access_token_secret, ch.channel_secret, ch.assignment_mode";

/// A channel from its columns, the first at `at` (0, or after a joined
/// table's).
pub(crate) fn decode_at<R: Row>(row: &R, at: usize) -> Result<ChannelRow, sqlx::Error>
where
    for<'r> Uuid: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Option<Uuid>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Option<i64>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    usize: sqlx::ColumnIndex<R>,
{
    let bad =
        |what: &str, value: &str| sqlx::Error::Decode(format!("unknown {what} {value:?}").into());
    let kind: String = row.try_get(at + 2)?;
    let status: String = row.try_get(at + 5)?;
    let mode: String = row.try_get(at + 11)?;
    Ok(ChannelRow {
        id: ChannelId(row.try_get(at)?),
        org_id: OrgId(row.try_get(at + 1)?),
        kind: ChannelKind::parse(&kind).ok_or_else(|| bad("channel kind", &kind))?,
        external_id: row.try_get(at + 3)?,
        name: row.try_get(at + 4)?,
        recorded_status: ChannelStatus::parse(&status).ok_or_else(|| bad("status", &status))?,
        authorized_at: instant(row.try_get(at + 6)?)?,
        last_used_at: row
            .try_get::<Option<i64>, _>(at + 7)?
            .map(instant)
            .transpose()?,
        token_expires_at: row
            .try_get::<Option<i64>, _>(at + 8)?
            .map(instant)
            .transpose()?,
        access_token_secret: row.try_get(at + 9)?,
        channel_secret: row.try_get(at + 10)?,
        assignment_mode: AssignmentMode::parse(&mode)
            .ok_or_else(|| bad("assignment mode", &mode))?,
    })
}

/// One channel of `org`.
pub async fn channel(
    db: &Database,
    org: OrgId,
    id: ChannelId,
) -> Result<Option<ChannelRow>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM rm_channels WHERE org_id = $1 AND channel_id = $2");
    fetch_optional!(db, &sql, [org.0, id.0], |row| decode_at(row, 0))
}

/// A channel by id alone, for routes that name it (LINE webhooks).
pub async fn channel_by_id(
    db: &Database,
    id: ChannelId,
) -> Result<Option<ChannelRow>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM rm_channels WHERE channel_id = $1");
    fetch_optional!(db, &sql, [id.0], |row| decode_at(row, 0))
}

/// The channel of `kind` with platform id `external_id` (a Facebook page id).
pub async fn channel_by_external_id(
    db: &Database,
    kind: ChannelKind,
    external_id: &str,
) -> Result<Option<ChannelRow>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM rm_channels WHERE kind = $1 AND external_id = $2");
    fetch_optional!(db, &sql, [kind.as_str(), external_id], |row| decode_at(
        row, 0
    ))
}

/// Every channel of `org`, oldest connection first.
pub async fn channels(db: &Database, org: OrgId) -> Result<Vec<ChannelRow>, sqlx::Error> {
    let sql = format!(
        "SELECT {COLUMNS} FROM rm_channels WHERE org_id = $1 ORDER BY connected_at, channel_id"
    );
    fetch_all!(db, &sql, [org.0], |row| decode_at(row, 0))
}

/// The expiry watchlist: `org`'s channels not disconnected whose token
/// expires at or before `until`, soonest first.
pub async fn expiring(
    db: &Database,
    org: OrgId,
    until: DateTime<Utc>,
) -> Result<Vec<ChannelRow>, sqlx::Error> {
    let sql = format!(
        "SELECT {COLUMNS} FROM rm_channels
         WHERE org_id = $1 AND status <> 'DISCONNECTED' AND token_expires_at IS NOT NULL AND token_expires_at <= $2
         ORDER BY token_expires_at, channel_id"
    );
    fetch_all!(db, &sql, [org.0, micros(until)], |row| decode_at(row, 0))
}

/// Channels of every organization still recorded CONNECTED whose deadline
/// has passed at `now`: the expiry timer's work list.
pub async fn due_for_expiry(
    db: &Database,
    now: DateTime<Utc>,
) -> Result<Vec<ChannelRow>, sqlx::Error> {
    let sql = format!(
        "SELECT {COLUMNS} FROM rm_channels
         WHERE status = 'CONNECTED' AND token_expires_at IS NOT NULL AND token_expires_at <= $1
         ORDER BY token_expires_at"
    );
    fetch_all!(db, &sql, [micros(now)], |row| decode_at(row, 0))
}
