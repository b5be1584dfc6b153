//! Erasing a contact's personal data without rewriting history.
//!
//! A contact's name, avatar, texts and file names are sealed in events
//! under the contact's own key (see `omnibox_store::personal`). Erasure
//! destroys those keys first — from then on nothing sealed under them can
//! be read, wherever a copy of the log went — then deletes the contact's
//! media files and appends `ContactErased`, so the read models (and any
//! rebuild of them) show the contact as erased. Run again, it finishes what
//! an interrupted run left undone.
//!
//! Meta's user data deletion callback (`POST /webhooks/facebook/data-deletion`,
//! answered in the HTTP layer) erases every Facebook contact with the user
//! id it names.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Mac, SimpleHmac};
use omnibox_domain::conversation::ContactEvent;
use omnibox_domain::ids::{ContactId, MemberId, OrgId};
use omnibox_projections::inbox as read;
use omnibox_projections::members::MemberRow;
use omnibox_store::{ExpectedRevision, Metadata, NewEvent, StreamName};
use serde::Deserialize;
use sha2::Sha256;
use uuid::Uuid;

use crate::context::AppContext;
use crate::error::AppError;
use crate::media_store::storage_key;

/// What an erasure did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Erasure {
    pub contact_id: ContactId,
    pub keys_destroyed: u64,
    pub media_files_deleted: u64,
}

/// Member `me` erases contact `contact` of their organization (OWNER or
/// PRIMARY_ADMIN only).
pub async fn erase_contact_by_member(
    app: &AppContext,
    me: &MemberRow,
    contact: ContactId,
) -> Result<Erasure, AppError> {
    if !me.role.can_administer() {
        return Err(AppError::Forbidden(
            "only an OWNER or PRIMARY_ADMIN may erase a contact".into(),
        ));
    }
    erase_contact(app, me.org_id, contact, Some(me.id), "erased by a member").await
}

/// Erases contact `contact` of `org`: keys, media files, then the event.
pub async fn erase_contact(
    app: &AppContext,
    org: OrgId,
    contact: ContactId,
    by: Option<MemberId>,
    reason: &str,
) -> Result<Erasure, AppError> {
    if read::contact_erased(&app.db, org, contact).await?.is_none() {
        return Err(AppError::NotFound(
            "no such contact in your organization".into(),
        ));
    }
    let keys_destroyed = app
        .personal
        .erase(contact.0)
        .await
        .map_err(AppError::internal)?;
    let mut media_files_deleted = 0;
    for (message_id, index) in read::contact_media(&app.db, contact).await? {
        let key = storage_key(message_id, index);
        if app.media.delete(&key).await.map_err(AppError::internal)? {
            media_files_deleted += 1;
        }
    }
    let event = ContactEvent::ContactErased {
        contact_id: contact,
        org_id: org,
        by,
        reason: reason.to_owned(),
        at: app.clock.now(),
    };
    let stream = StreamName::new(ContactId::CATEGORY, contact.0).map_err(AppError::internal)?;
    let appended = app
        .store
        .append(
            &stream,
            ExpectedRevision::Any,
            vec![NewEvent {
                id: Uuid::now_v7(),
                event_type: event.event_type().to_owned(),
                data: serde_json::to_string(&event).map_err(AppError::internal)?,
                metadata: Metadata {
                    correlation_id: Uuid::now_v7(),
                    causation_id: None,
                    actor: Some(match by {
                        Some(member) => format!("member:{member}"),
                        None => "system:data-deletion".into(),
                    }),
                },
            }],
        )
        .await?;
    app.read_your_writes(Some(appended.position)).await;
    tracing::info!(
        contact = %contact,
        keys_destroyed,
        media_files_deleted,
        "contact erased"
    );
    Ok(Erasure {
        contact_id: contact,
        keys_destroyed,
        media_files_deleted,
    })
}

/// What a verified `signed_request` says.
#[derive(Deserialize)]
pub struct DeletionRequest {
    pub user_id: String,
    #[serde(default)]
    algorithm: Option<String>,
}

/// Checks a `signed_request` (`<signature>.<payload>`, both base64url, the
/// signature an HMAC-SHA256 of the payload's text under the app secret).
pub fn verify_signed_request(secret: &str, signed: &str) -> Result<DeletionRequest, String> {
    let (signature, payload) = signed
        .split_once('.')
        .ok_or("signed_request is not <signature>.<payload>")?;
    let decode = |text: &str| URL_SAFE_NO_PAD.decode(text.trim_end_matches('='));
    let signature = decode(signature).map_err(|_| "the signature is not base64url")?;
    let mut mac = <SimpleHmac<Sha256> as Mac>::new_from_slice(secret.as_bytes())
        .map_err(|_| "the app secret cannot key HMAC")?;
    mac.update(payload.as_bytes());
    mac.verify_slice(&signature)
        .map_err(|_| "the signature does not match the app secret")?;
    let payload = decode(payload).map_err(|_| "the payload is not base64url")?;
    let request: DeletionRequest = serde_json::from_slice(&payload)
        .map_err(|e| format!("the payload is not a request: {e}"))?;
    match request.algorithm.as_deref() {
        None | Some("HMAC-SHA256") => Ok(request),
        Some(other) => Err(format!("algorithm {other} is not HMAC-SHA256")),
    }
}

/// The stream that records one deletion request, by its confirmation code.
pub fn request_stream(code: Uuid) -> Option<StreamName> {
    StreamName::new("data_deletion", code).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signed(secret: &str, payload: &str) -> String {
        let payload = URL_SAFE_NO_PAD.encode(payload);
        let mut mac = <SimpleHmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(payload.as_bytes());
        format!(
            "{}.{payload}",
            URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
        )
    }

    #[test]
    fn a_signed_request_is_checked_against_the_app_secret() {
        let request = signed(
            "s3cret",
            r#"{"algorithm":"HMAC-SHA256","user_id":"123","issued_at":1}"#,
        );
        assert_eq!(
            verify_signed_request("s3cret", &request).unwrap().user_id,
            "123"
        );
        assert!(verify_signed_request("other", &request).is_err());
        // Meta pads the signature with "=": accepted.
        let (signature, payload) = request.split_once('.').unwrap();
        assert!(verify_signed_request("s3cret", &format!("{signature}=.{payload}")).is_ok());
        for bad in ["", "no-dot", "a.b", "!!.??"] {
            assert!(verify_signed_request("s3cret", bad).is_err(), "{bad}");
        }
        let other_algorithm = signed("s3cret", r#"{"algorithm":"MD5","user_id":"1"}"#);
        assert!(verify_signed_request("s3cret", &other_algorithm).is_err());
    }
}
