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
//! Meta's user data deletion callback (`POST /webhooks/facebook/data-deletion`)
//! erases every Facebook contact with the user id it names.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Form;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Mac, SimpleHmac};
use omnibox_domain::conversation::ContactEvent;
use omnibox_domain::ids::{ContactId, MemberId, OrgId};
use omnibox_projections::inbox as read;
use omnibox_store::{Direction, ExpectedRevision, Metadata, NewEvent, StreamName};
use serde::Deserialize;
use sha2::Sha256;
use uuid::Uuid;

use crate::{ApiError, AppState};

/// What an erasure did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Erasure {
    pub contact_id: ContactId,
    pub keys_destroyed: u64,
    pub media_files_deleted: u64,
}

/// Erases contact `contact` of `org`: keys, media files, then the event.
pub async fn erase_contact(
    app: &AppState,
    org: OrgId,
    contact: ContactId,
    by: Option<MemberId>,
    reason: &str,
) -> Result<Erasure, ApiError> {
    if read::contact_erased(&app.db, org, contact).await?.is_none() {
        return Err(ApiError::NotFound(
            "no such contact in your organization".into(),
        ));
    }
    let keys_destroyed = app
        .personal
        .erase(contact.0)
        .await
        .map_err(ApiError::internal)?;
    let mut media_files_deleted = 0;
    for (message_id, index) in read::contact_media(&app.db, contact).await? {
        let key = crate::media::storage_key(message_id, index);
        if app.media.delete(&key).await.map_err(ApiError::internal)? {
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
    let stream = StreamName::new(ContactId::CATEGORY, contact.0).map_err(ApiError::internal)?;
    let appended = app
        .store
        .append(
            &stream,
            ExpectedRevision::Any,
            vec![NewEvent {
                id: Uuid::now_v7(),
                event_type: event.event_type().to_owned(),
                data: serde_json::to_string(&event).map_err(ApiError::internal)?,
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

/// The form Meta posts.
#[derive(Deserialize)]
pub struct DeletionForm {
    signed_request: Option<String>,
}

/// What a verified `signed_request` says.
#[derive(Deserialize)]
struct DeletionRequest {
    user_id: String,
    #[serde(default)]
    algorithm: Option<String>,
}

/// Checks a `signed_request` (`<signature>.<payload>`, both base64url, the
/// signature an HMAC-SHA256 of the payload's text under the app secret).
fn verify_signed_request(secret: &str, signed: &str) -> Result<DeletionRequest, String> {
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

fn unavailable(error: impl std::fmt::Debug) -> Response {
    tracing::error!(
        ?error,
        "a data deletion request could not be completed; Meta may retry"
    );
    (StatusCode::SERVICE_UNAVAILABLE, "try again").into_response()
}

/// The stream that records one deletion request, by its confirmation code.
fn request_stream(code: Uuid) -> Option<StreamName> {
    StreamName::new("data_deletion", code).ok()
}

/// `POST /webhooks/facebook/data-deletion`.
pub async fn facebook_data_deletion(
    State(app): State<AppState>,
    Form(form): Form<DeletionForm>,
) -> Response {
    let Some(secret) = app.config.facebook_app_secret.as_deref() else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "OMNIBOX_FACEBOOK_APP_SECRET is not set: deletion requests cannot be checked",
        )
            .into_response();
    };
    let Some(signed) = form.signed_request else {
        return (StatusCode::BAD_REQUEST, "signed_request is missing").into_response();
    };
    let request = match verify_signed_request(secret, &signed) {
        Ok(request) => request,
        Err(reason) => {
            tracing::info!(%reason, "data deletion request refused");
            return (StatusCode::UNAUTHORIZED, reason).into_response();
        }
    };
    // One code per user: Meta may send the same request again.
    let code = Uuid::new_v5(
        &Uuid::NAMESPACE_OID,
        format!("fb-deletion:{}", request.user_id).as_bytes(),
    );
    let contacts = match read::facebook_contacts(&app.db, &request.user_id).await {
        Ok(contacts) => contacts,
        Err(error) => return unavailable(error),
    };
    let mut erased = 0u64;
    for (org, contact) in &contacts {
        if let Err(error) =
            erase_contact(&app, *org, *contact, None, "Facebook data deletion request").await
        {
            return unavailable(error);
        }
        erased += 1;
    }
    let recorded = serde_json::json!({
        "type": "DataDeletionCompleted",
        "contacts_erased": erased,
        "at": app.clock.now(),
    });
    if let Some(stream) = request_stream(code) {
        let event = NewEvent {
            id: Uuid::now_v7(),
            event_type: "DataDeletionCompleted".into(),
            data: recorded.to_string(),
            metadata: Metadata {
                correlation_id: Uuid::now_v7(),
                causation_id: None,
                actor: Some("system:data-deletion".into()),
            },
        };
        if let Err(error) = app
            .store
            .append(&stream, ExpectedRevision::Any, vec![event])
            .await
        {
            return unavailable(error);
        }
    }
    let code = code.simple().to_string();
    axum::Json(serde_json::json!({
        "url": format!("{}/data-deletion/{code}", app.config.public_url),
        "confirmation_code": code,
    }))
    .into_response()
}

/// `GET /data-deletion/{code}`: what became of a deletion request, in words.
pub async fn deletion_status(State(app): State<AppState>, Path(code): Path<String>) -> Response {
    let unknown = || {
        (
            StatusCode::NOT_FOUND,
            "No data deletion request has this confirmation code.",
        )
            .into_response()
    };
    let Some(stream) = Uuid::try_parse(&code).ok().and_then(request_stream) else {
        return unknown();
    };
    let events = match app
        .store
        .read_stream(&stream, 0, Direction::Backwards, 1)
        .await
    {
        Ok(events) => events,
        Err(error) => return unavailable(error),
    };
    let Some(last) = events.first() else {
        return unknown();
    };
    let data: serde_json::Value = serde_json::from_str(&last.data).unwrap_or_default();
    let erased = data["contacts_erased"].as_u64().unwrap_or(0);
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; charset=utf-8",
        )],
        format!(
            "Data deletion request {code}: completed on {}.\n\
             {erased} conversation contact(s) were erased: their names, pictures, messages \
             and files can no longer be read by anyone, and their media files are deleted.\n",
            last.recorded_at.format("%Y-%m-%d %H:%M UTC"),
        ),
    )
        .into_response()
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
