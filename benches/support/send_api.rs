//! A stand-in for Facebook's Send API (`benches/replies.rs`,
//! `benches/scaleout.rs`).

use std::sync::{Arc, Mutex};

use serde_json::{json, Value};
use uuid::Uuid;

/// One call to the stand-in Send API: the message id Omnibox put in
/// `metadata`, and the text.
pub struct PlatformCall {
    pub metadata: String,
    pub text: String,
}

/// Facebook's Send API, answering at once and recording every call.
pub async fn platform() -> (String, Arc<Mutex<Vec<PlatformCall>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("address"));
    let sends: Arc<Mutex<Vec<PlatformCall>>> = Arc::default();
    let recorded = sends.clone();
    let app = axum::Router::new().route(
        "/{page}/messages",
        axum::routing::post(move |axum::Json(body): axum::Json<Value>| {
            let recorded = recorded.clone();
            async move {
                recorded.lock().expect("lock").push(PlatformCall {
                    metadata: body["metadata"].as_str().unwrap_or_default().to_owned(),
                    text: body["message"]["text"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                });
                axum::Json(json!({
                    "recipient_id": body["recipient"]["id"],
                    "message_id": format!("m_{}", Uuid::new_v4().simple()),
                }))
            }
        }),
    );
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (url, sends)
}
