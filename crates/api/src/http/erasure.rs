//! Meta's user data deletion callback and its status page.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Form;
use omnibox_app::services::erasure::{erase_contact, request_stream, verify_signed_request};
use omnibox_projections::inbox as read;
use omnibox_store::{Direction, ExpectedRevision, Metadata, NewEvent};
use serde::Deserialize;
use uuid::Uuid;

use crate::state::AppState;

/// The form Meta posts.
#[derive(Deserialize)]
pub struct DeletionForm {
    signed_request: Option<String>,
}

fn unavailable(error: impl std::fmt::Debug) -> Response {
    tracing::error!(
        ?error,
        "a data deletion request could not be completed; Meta may retry"
    );
    (StatusCode::SERVICE_UNAVAILABLE, "try again").into_response()
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
