//! Moving one organization between stores: `omnibox export` and `import`.
//!
//! An export is NDJSON: a header line, then every event of the
//! organization in log order (stream, revision, id, type, data, metadata:
//! complete, token hashes included, since this is an operator's command),
//! then the platform secrets its channels refer to and its contacts'
//! personal-data keys (both still sealed: the target needs the same
//! `OMNIBOX_SECRET_KEY`; personal fields in events stay sealed, and an
//! erased contact's have no key to travel with), then its stored media
//! files (base64). An import appends the events into an empty store at their
//! original streams and revisions, with their ids and metadata, restores
//! secrets and media, and the read models are built from the log as usual,
//! so they equal the original's, and members' tokens keep working. Events
//! get the import's time as their recorded time.

use std::io::{BufRead, Write};

use base64::Engine;
use omnibox_domain::ids::OrgId;
use omnibox_store::secrets::SealedSecret;
use omnibox_store::{ExpectedRevision, Metadata, NewEvent, StreamName};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::context::AppContext;

const FORMAT: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    #[error("the event store: {0}")]
    Store(#[from] omnibox_store::StoreError),
    #[error("secrets: {0}")]
    Secret(#[from] omnibox_store::secrets::SecretError),
    #[error("reading or writing: {0}")]
    Io(#[from] std::io::Error),
    #[error("line {line}: {reason}")]
    Format { line: usize, reason: String },
    #[error("the target store is not empty: import only into a new database")]
    NotEmpty,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Line {
    Header {
        omnibox_export: u32,
        org_id: Uuid,
    },
    Event {
        stream: String,
        revision: u64,
        id: Uuid,
        #[serde(rename = "type")]
        event_type: String,
        data: serde_json::Value,
        metadata: Metadata,
        recorded_at: chrono::DateTime<chrono::Utc>,
    },
    Secret(SealedSecret),
    /// A contact's personal-data key, sealed as stored (an erased contact
    /// has none, so its fields stay unreadable in the copy too).
    PersonalKey(omnibox_store::personal::SealedKey),
    Media {
        key: String,
        bytes: String,
    },
}

/// What an export or import moved.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Moved {
    pub events: usize,
    pub secrets: usize,
    pub personal_keys: usize,
    pub media: usize,
}

fn write_line(out: &mut impl Write, line: &Line) -> Result<(), TransferError> {
    serde_json::to_writer(&mut *out, line).map_err(std::io::Error::other)?;
    out.write_all(b"\n")?;
    Ok(())
}

/// Writes organization `org`'s whole history to `out`.
pub async fn export(
    app: &AppContext,
    org: OrgId,
    out: &mut impl Write,
) -> Result<Moved, TransferError> {
    let mut moved = Moved::default();
    write_line(
        out,
        &Line::Header {
            omnibox_export: FORMAT,
            org_id: org.0,
        },
    )?;
    let mut secrets = Vec::new();
    let mut media = Vec::new();
    let mut after = None;
    loop {
        let page = app.store.read_all(after, 1000).await?;
        let Some(last) = page.last().map(|e| e.position) else {
            break;
        };
        after = Some(last);
        for event in page {
            let data = crate::commands::organization_data(&event, org).map_err(|e| {
                omnibox_store::StoreError::Corrupt(format!("event {}: {e}", event.id))
            })?;
            let Some(data) = data else {
                continue;
            };
            for field in ["access_token", "channel_secret"] {
                if let Some(id) = data[field]["id"]
                    .as_str()
                    .and_then(|id| Uuid::parse_str(id).ok())
                {
                    secrets.push(id);
                }
            }
            if event.event_type == "MediaStored" {
                if let Some(key) = data["storage_key"].as_str() {
                    media.push(key.to_owned());
                }
            }
            write_line(
                out,
                &Line::Event {
                    stream: event.stream.to_string(),
                    revision: event.revision,
                    id: event.id,
                    event_type: event.event_type,
                    data,
                    metadata: event.metadata,
                    recorded_at: event.recorded_at,
                },
            )?;
            moved.events += 1;
        }
    }
    secrets.sort();
    secrets.dedup();
    for id in secrets {
        if let Some(sealed) = app.secrets.sealed(id).await? {
            write_line(out, &Line::Secret(sealed))?;
            moved.secrets += 1;
        }
    }
    for key in app
        .personal
        .sealed_keys(org.0)
        .await
        .map_err(|e| omnibox_store::StoreError::Corrupt(e.to_string()))?
    {
        write_line(out, &Line::PersonalKey(key))?;
        moved.personal_keys += 1;
    }
    media.sort();
    media.dedup();
    for key in media {
        if let Some(bytes) = app.media.get(&key).await? {
            let bytes = base64::engine::general_purpose::STANDARD.encode(bytes);
            write_line(out, &Line::Media { key, bytes })?;
            moved.media += 1;
        }
    }
    out.flush()?;
    Ok(moved)
}

/// Appends an export into this (empty) store.
pub async fn import(app: &AppContext, input: impl BufRead) -> Result<Moved, TransferError> {
    if !app.store.read_all(None, 1).await?.is_empty() {
        return Err(TransferError::NotEmpty);
    }
    let mut moved = Moved::default();
    for (n, text) in input.lines().enumerate() {
        let text = text?;
        if text.trim().is_empty() {
            continue;
        }
        let format = |reason: String| TransferError::Format {
            line: n + 1,
            reason,
        };
        let line: Line = serde_json::from_str(&text).map_err(|e| format(e.to_string()))?;
        match line {
            Line::Header { omnibox_export, .. } if omnibox_export == FORMAT => {}
            Line::Header { omnibox_export, .. } => {
                return Err(format(format!(
                    "export format {omnibox_export} is not known"
                )))
            }
            Line::Event {
                stream,
                revision,
                id,
                event_type,
                data,
                metadata,
                ..
            } => {
                let stream = StreamName::parse(&stream).map_err(|e| format(e.to_string()))?;
                let expected = match revision {
                    0 => ExpectedRevision::NoStream,
                    r => ExpectedRevision::Exact(r - 1),
                };
                app.store
                    .append(
                        &stream,
                        expected,
                        vec![NewEvent {
                            id,
                            event_type,
                            data: data.to_string(),
                            metadata,
                        }],
                    )
                    .await?;
                moved.events += 1;
            }
            Line::Secret(sealed) => {
                app.secrets.put_sealed(&sealed).await?;
                moved.secrets += 1;
            }
            Line::PersonalKey(key) => {
                app.personal
                    .put_sealed(&key)
                    .await
                    .map_err(|e| format(e.to_string()))?;
                moved.personal_keys += 1;
            }
            Line::Media { key, bytes } => {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(bytes)
                    .map_err(|e| format(e.to_string()))?;
                app.media.put(&key, &bytes).await?;
                moved.media += 1;
            }
        }
    }
    Ok(moved)
}
