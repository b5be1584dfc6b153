//! QR assignment codes, for listing them.

use async_trait::async_trait;
use omnibox_domain::ids::{ChannelId, MemberId, OrgId};
use omnibox_domain::qr::{QrEvent, CATEGORY};
use omnibox_store::{Database, RecordedEvent};
use sqlx::Row;
use uuid::Uuid;

use crate::channels::micros;
use crate::runtime::ApplyError;
use crate::{execute, fetch_all, Change, Projector, ReadTx};

pub struct QrCodesProjector;

#[async_trait]
impl Projector for QrCodesProjector {
    fn name(&self) -> &'static str {
        "qr_codes"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["rm_qr_codes"]
    }

    fn handles(&self, event: &RecordedEvent) -> bool {
        event.stream.category() == CATEGORY
    }

    async fn apply(
        &self,
        tx: &mut ReadTx,
        event: &RecordedEvent,
        _changes: &mut Vec<(OrgId, Change)>,
    ) -> Result<(), ApplyError> {
        if !self.handles(event) {
            return Ok(());
        }
        match serde_json::from_str(&event.data)? {
            QrEvent::QrCodeCreated {
                code_id,
                org_id,
                channel_id,
                agent_id,
                code,
                line_url,
                at,
                ..
            } => {
                execute!(
                    tx,
                    "INSERT INTO rm_qr_codes (code_id, org_id, channel_id, agent_id, code, line_url, revoked, created_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                    code_id,
                    org_id.0,
                    channel_id.0,
                    agent_id.0,
                    code,
                    line_url,
                    false,
                    micros(at)
                )?;
            }
            QrEvent::QrCodeRevoked { code_id, .. } => {
                execute!(
                    tx,
                    "UPDATE rm_qr_codes SET revoked = $1 WHERE code_id = $2",
                    true,
                    code_id
                )?;
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QrCodeRow {
    pub id: Uuid,
    pub channel_id: ChannelId,
    pub agent_id: MemberId,
    pub code: String,
    pub line_url: String,
    pub revoked: bool,
}

/// `org`'s codes (of `channel` if given), oldest first.
pub async fn qr_codes(
    db: &Database,
    org: OrgId,
    channel: Option<ChannelId>,
) -> Result<Vec<QrCodeRow>, sqlx::Error> {
    let channel = channel.map_or_else(Uuid::nil, |c| c.0);
    fetch_all!(
        db,
        "SELECT code_id, channel_id, agent_id, code, line_url, revoked FROM rm_qr_codes
         WHERE org_id = $1 AND ($2 = $3 OR channel_id = $2) ORDER BY created_at, code_id",
        [org.0, channel, Uuid::nil()],
        |row| Ok(QrCodeRow {
            id: row.try_get(0)?,
            channel_id: ChannelId(row.try_get(1)?),
            agent_id: MemberId(row.try_get(2)?),
            code: row.try_get(3)?,
            line_url: row.try_get(4)?,
            revoked: row.try_get(5)?,
        })
    )
}
