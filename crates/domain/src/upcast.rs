//! Schema evolution: stored events never change, so an event type whose
//! shape improves gets a new version, and older versions are turned into
//! the current shape whenever they are read (an *upcaster* per step).
//!
//! An event's version is its data's `"v"` field; an event without one is
//! version 1 (every event written before versions existed). Writers stamp
//! the current version of the types listed in [`VERSIONS`]; types not
//! listed are at version 1 and carry no field.
//!
//! To change a shape: add or bump the type in [`VERSIONS`], add the step
//! from the previous version to [`step`] (a function of the JSON alone,
//! tested with an event of the old shape), and change the Rust type. Old
//! logs, fixtures and exports keep their shape; every reader (projections,
//! aggregates, history, replay) sees the new one.

use serde_json::Value;

/// Event types whose current version is above 1.
pub const VERSIONS: &[(&str, u64)] = &[
    // v2: `route` is required (v1 had none: only Facebook sends were claimed).
    ("ReplyBubbleSending", 2),
];

/// The current version of `event_type`.
pub fn current(event_type: &str) -> u64 {
    VERSIONS
        .iter()
        .find(|(name, _)| *name == event_type)
        .map_or(1, |(_, version)| *version)
}

/// Why stored data could not be brought to the current shape.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{event_type} version {version}: {reason}")]
pub struct UpcastError {
    pub event_type: String,
    pub version: u64,
    pub reason: String,
}

/// Brings `data` of `event_type` from its stored version to the current
/// one; false when it already was.
pub fn upcast(event_type: &str, data: &mut Value) -> Result<bool, UpcastError> {
    let target = current(event_type);
    let mut version = data.get("v").and_then(Value::as_u64).unwrap_or(1);
    if version >= target {
        return Ok(false);
    }
    while version < target {
        step(event_type, version, data).map_err(|reason| UpcastError {
            event_type: event_type.to_owned(),
            version,
            reason,
        })?;
        version += 1;
    }
    if let Some(object) = data.as_object_mut() {
        object.insert("v".into(), Value::from(target));
    }
    Ok(true)
}

/// Marks freshly written `data` of `event_type` with its current version
/// (nothing for types at version 1).
pub fn stamp(event_type: &str, data: &mut Value) {
    let version = current(event_type);
    if version > 1 {
        if let Some(object) = data.as_object_mut() {
            object.insert("v".into(), Value::from(version));
        }
    }
}

/// One upcaster: `data` of `event_type` from `from` to `from + 1`.
fn step(event_type: &str, from: u64, data: &mut Value) -> Result<(), String> {
    let object = data
        .as_object_mut()
        .ok_or_else(|| "the data is not a JSON object".to_owned())?;
    match (event_type, from) {
        ("ReplyBubbleSending", 1) => {
            object
                .entry("route")
                .or_insert_with(|| Value::from("FACEBOOK_SEND"));
            Ok(())
        }
        _ => Err(format!("no upcaster from version {from}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conversation::{ConversationEvent, SendRoute};

    #[test]
    fn a_claim_written_before_routes_reads_as_a_facebook_send() {
        // The shape stored before version 2 (see fixtures/events/).
        let stored = r#"{"type":"ReplyBubbleSending","conversation_id":"0198f1a2-0000-7000-8000-000000000001","org_id":"0198f1a2-0000-7000-8000-000000000002","reply_id":"0198f1a2-0000-7000-8000-000000000003","index":0,"at":"2026-11-23T02:30:00Z"}"#;
        let mut data: Value = serde_json::from_str(stored).expect("json");
        assert!(
            serde_json::from_value::<ConversationEvent>(data.clone()).is_err(),
            "the old shape alone no longer reads"
        );
        assert!(upcast("ReplyBubbleSending", &mut data).expect("upcast"));
        assert_eq!(data["v"], 2);
        match serde_json::from_value::<ConversationEvent>(data.clone()).expect("current shape") {
            ConversationEvent::ReplyBubbleSending { route, .. } => {
                assert_eq!(route, SendRoute::FacebookSend)
            }
            other => panic!("{other:?}"),
        }
        assert!(
            !upcast("ReplyBubbleSending", &mut data).expect("again"),
            "once"
        );
    }

    #[test]
    fn current_shapes_and_unversioned_types_pass_through() {
        let mut data = serde_json::json!({ "route": "LINE_PUSH", "v": 2 });
        assert!(!upcast("ReplyBubbleSending", &mut data).expect("current"));
        let mut other = serde_json::json!({ "type": "MessageReceived" });
        assert!(!upcast("MessageReceived", &mut other).expect("v1 is current"));
        stamp("MessageReceived", &mut other);
        assert!(other.get("v").is_none());
        let mut fresh = serde_json::json!({ "route": "LINE_REPLY" });
        stamp("ReplyBubbleSending", &mut fresh);
        assert_eq!(fresh["v"], 2);
    }
}
