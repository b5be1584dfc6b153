//! The Facebook fixtures, as Meta would POST them: each must verify with the
//! fixture app secret and parse into what `fixtures/README.md` promises.

use chrono::{DateTime, Utc};
use omnibox_platforms::facebook::{self, AttachmentKind, Coordinates, EventKind};
use omnibox_platforms::{verify_facebook_signature, ParseError, SignatureError};

macro_rules! fixture {
    ($name:literal) => {
        include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../fixtures/facebook/",
            $name
        ))
    };
}

const APP_SECRET: &[u8] = b"fixture-app-secret";
const PAGE_A: &str = "104729381650237";
const PAGE_B: &str = "108813467701552";
const PSID_1: &str = "7294018365520341";
const PSID_2: &str = "6602957718843910";

const TEXT: &[u8] = fixture!("text_message.json");
const IMAGE: &[u8] = fixture!("image_attachment.json");
const BATCHED: &[u8] = fixture!("multiple_entries_batched.json");
const ECHO: &[u8] = fixture!("echo_message.json");
const POSTBACK: &[u8] = fixture!("postback.json");
const DELIVERY_AND_READ: &[u8] = fixture!("delivery_and_read.json");
const STICKER: &[u8] = fixture!("sticker_transition.json");

/// Each webhook fixture with the `X-Hub-Signature-256` listed in the fixtures README.
const SIGNED: [(&[u8], &str); 7] = [
    (
        TEXT,
        "sha256=7d863337a8f45fd130a20d708305211d3f125cefcc37f7429c0122775192d59e",
    ),
    (
        IMAGE,
        "sha256=23a761f51eb7be9d16c57036880f24b74647b641cab826ca154144dffc5ea9d9",
    ),
    (
        BATCHED,
        "sha256=2c1f8c9c651a42293f98488eb8463eeeac6a0983130b4f6e1b1e27fcaa01a7a7",
    ),
    (
        ECHO,
        "sha256=35de4a1c711d14a0b8465e8d21e2508480dcf5f9a81032db6837d6707bcc896b",
    ),
    (
        POSTBACK,
        "sha256=c6226ed329c2492facc7bd198f4019e5b412fad1520c4ec6aaa743ac0c9e763c",
    ),
    (
        DELIVERY_AND_READ,
        "sha256=bda4c1c0494869b3509d432da46bf0399d28700ab4cf14facc05916b6151750d",
    ),
    (
        STICKER,
        "sha256=fb5bba9fbe4e41bd7d2903412967109229b1ea7908456a4b74d23ed6e93766c3",
    ),
];

fn at(millis: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(millis).expect("fixture timestamps are in range")
}

fn parse(body: &[u8]) -> Vec<facebook::Event> {
    facebook::parse_webhook(body).expect("fixture parses")
}

/// The single customer message of a fixture, with its PSID.
fn only_message(body: &[u8]) -> (facebook::Event, String, facebook::Message) {
    let mut events = parse(body);
    assert_eq!(events.len(), 1);
    let event = events.remove(0);
    match event.kind.clone() {
        EventKind::Message { psid, message } => (event, psid, message),
        other => panic!("expected a message, got {other:?}"),
    }
}

#[test]
fn every_fixture_verifies_and_any_changed_byte_does_not() {
    for (body, header) in SIGNED {
        assert_eq!(
            verify_facebook_signature(APP_SECRET, Some(header), body),
            Ok(())
        );
        assert_eq!(
            verify_facebook_signature(b"another-secret", Some(header), body),
            Err(SignatureError::Mismatch)
        );
        for position in 0..body.len() {
            let mut tampered = body.to_vec();
            tampered[position] ^= 0x01;
            assert_eq!(
                verify_facebook_signature(APP_SECRET, Some(header), &tampered),
                Err(SignatureError::Mismatch),
                "byte {position} of {header}"
            );
        }
    }
}

#[test]
fn text_message_keeps_the_thai_text_and_the_item_timestamp() {
    let (event, psid, message) = only_message(TEXT);
    assert_eq!((event.page_id.as_str(), psid.as_str()), (PAGE_A, PSID_1));
    assert!(!event.standby);
    assert_eq!(
        message.text.as_deref(),
        Some("Hi! Do you ship to Chiang Mai? ขอบคุณค่ะ")
    );
    assert!(message.mid.starts_with("m__UWLwxXDJM2i"));
    assert!(message.attachments.is_empty());
    assert_eq!(event.timestamp, Some(at(1_795_399_805_412)));
    assert_eq!(
        event.timestamp.map(|t| t.to_rfc3339()),
        Some("2026-11-23T02:10:05.412+00:00".to_owned())
    );
}

#[test]
fn image_attachment_has_no_text_and_an_unescaped_url() {
    let (_, psid, message) = only_message(IMAGE);
    assert_eq!(psid, PSID_1);
    assert_eq!(message.text, None);
    let [image] = message.attachments.as_slice() else {
        panic!("expected one attachment: {:?}", message.attachments)
    };
    assert_eq!(image.kind, AttachmentKind::Image);
    let url = image.url.as_deref().expect("image has a URL");
    assert!(url.starts_with("https://scontent.xx.fbcdn.net/v/t1.15752-9/468213590_"));
    assert!(!url.contains('\\'));
}

#[test]
fn multiple_entries_batched_yields_every_item_of_every_entry() {
    let conversations: Vec<_> = parse(BATCHED)
        .into_iter()
        .map(|event| match event.kind {
            EventKind::Message { psid, message } => (event.page_id, psid, message.text),
            other => panic!("expected a message, got {other:?}"),
        })
        .collect();
    let text = |s: &str| Some(s.to_owned());
    assert_eq!(
        conversations,
        [
            (
                PAGE_A.to_owned(),
                PSID_2.to_owned(),
                text("Is the blue linen shirt back in stock?")
            ),
            (
                PAGE_B.to_owned(),
                "5529083147762018".to_owned(),
                text("I'd like to book a check-up for Friday.")
            ),
            (
                PAGE_B.to_owned(),
                "9034417728851306".to_owned(),
                text("Are you open on Sunday?")
            ),
        ]
    );
}

#[test]
fn echo_is_outbound_to_the_recipient_and_matches_the_send_response() {
    let send_success: serde_json::Value =
        serde_json::from_slice(fixture!("send_success.json")).expect("valid JSON");
    let events = parse(ECHO);
    let [event] = events.as_slice() else {
        panic!("expected one event: {events:?}")
    };
    assert_eq!(event.page_id, PAGE_A);
    let EventKind::Echo {
        psid,
        app_id,
        metadata,
        message,
    } = &event.kind
    else {
        panic!("expected an echo, got {:?}", event.kind)
    };
    assert_eq!(psid, PSID_1);
    assert_eq!(*app_id, Some(1_482_093_717_745_102));
    assert_eq!(
        metadata.as_deref(),
        Some("omnibox:msg:5b0e1c7a-3f2d-4e8b-9a61-7d2c4f0e9b13")
    );
    assert_eq!(
        Some(message.mid.as_str()),
        send_success["message_id"].as_str()
    );
    assert_eq!(
        message.text.as_deref(),
        Some("Yes, we ship to Chiang Mai in 2-3 days. Shipping is free over 990 THB.")
    );
    assert_eq!(event.timestamp, Some(at(1_795_399_951_880)));
}

#[test]
fn postback_keeps_mid_title_and_payload() {
    let events = parse(POSTBACK);
    let [event] = events.as_slice() else {
        panic!("expected one event: {events:?}")
    };
    assert_eq!(
        event.kind,
        EventKind::Postback {
            psid: PSID_2.to_owned(),
            mid: Some("m_n4kbE1bdGmhXhKT2nUMgdBNEU7z-gYMLOp8m9TjcwIg5gPoUy0lBZF7b1qg41V9cFndXLEXUAMY4d9aE2Zn5nS".to_owned()),
            title: Some("Talk to a person".to_owned()),
            payload: Some("CONTACT_AGENT".to_owned()),
        }
    );
}

#[test]
fn delivery_without_timestamp_and_read_both_cover_the_echoed_mid() {
    let mid_out =
        "m_VAfk2thMnuqkIE9MuFjTHL2fFSsGWFp38b4XPiSvVdqeDTOVcNGBGXkHbTVgx8cInTXxKzwi7GaYiUWmuFbU2J";
    let events = parse(DELIVERY_AND_READ);
    let [delivery, read] = events.as_slice() else {
        panic!("expected two events: {events:?}")
    };
    assert_eq!(delivery.timestamp, None);
    assert_eq!(
        delivery.kind,
        EventKind::Delivery {
            psid: PSID_1.to_owned(),
            mids: vec![mid_out.to_owned()],
            watermark: at(1_795_399_951_895),
        }
    );
    assert_eq!(read.timestamp, Some(at(1_795_399_982_519)));
    assert_eq!(
        read.kind,
        EventKind::Read {
            psid: PSID_1.to_owned(),
            watermark: at(1_795_399_951_895),
        }
    );
    assert!(events.iter().all(|event| event.page_id == PAGE_A));
}

#[test]
fn transition_sticker_collapses_into_one_sticker() {
    let (event, _, message) = only_message(STICKER);
    let [sticker] = message.attachments.as_slice() else {
        panic!("expected one attachment: {:?}", message.attachments)
    };
    assert_eq!(sticker.kind, AttachmentKind::Sticker);
    assert_eq!(sticker.sticker_id, Some(369_239_263_222_822));
    assert!(sticker
        .url
        .as_deref()
        .is_some_and(|url| url.starts_with("https://scontent.xx.fbcdn.net/")));
    assert_eq!(event.timestamp, Some(at(1_787_192_204_250)));
}

#[test]
fn standby_quick_replies_links_and_unknown_kinds() {
    let body = br#"{"object":"page","entry":[
        {"id":"1","time":1,"standby":[
            {"sender":{"id":"9"},"recipient":{"id":"1"},"timestamp":2,"postback":{"title":"Start"}},
            {"sender":{"id":"1"},"recipient":{"id":"9"},"timestamp":3,"message":{"mid":"m_e","is_echo":true,"app_id":263902037430900,"text":"hi"}}]},
        {"id":"2","time":1,"messaging":[
            {"sender":{"id":"8"},"recipient":{"id":"2"},"timestamp":4,"message":{"mid":"m_q","text":"Red \ud83d\udc4d","quick_reply":{"payload":"COLOR_RED"},"reply_to":{"mid":"m_prev"},
              "attachments":[{"type":"fallback","payload":null,"title":"Shop","url":"https://example.com/a"},
                             {"type":"location","payload":{"coordinates":{"lat":13.75,"long":100.5}}},
                             {"type":"template","payload":{"template_type":"generic"}},
                             {"type":"ig_reel","payload":{"url":"https://example.com/reel","title":"Reel"}},
                             {"type":"image","payload":{"url":"https://example.com/thumb.png","sticker_id":7}}]}},
            {"sender":{"id":"8"},"recipient":{"id":"2"},"timestamp":5,"referral":{"ref":"x","source":"SHORTLINK","type":"OPEN_THREAD"}},
            {"sender":{"user_ref":"u"},"recipient":{"id":"2"},"timestamp":6,"reaction":{"reaction":"love","action":"react","mid":"m_q"}}]},
        {"id":"3","time":1,"changes":[{"field":"feed","value":{}}]}]}"#;
    let events = facebook::parse_webhook(body).expect("parses");
    let summary: Vec<_> = events
        .iter()
        .map(|e| (e.page_id.as_str(), e.standby))
        .collect();
    assert_eq!(
        summary,
        [
            ("1", true),
            ("1", true),
            ("2", false),
            ("2", false),
            ("2", false),
            ("3", false)
        ]
    );
    assert_eq!(
        events[0].kind,
        EventKind::Postback {
            psid: "9".to_owned(),
            mid: None,
            title: Some("Start".to_owned()),
            payload: None,
        }
    );
    assert!(
        matches!(&events[1].kind, EventKind::Echo { psid, app_id: Some(263_902_037_430_900), metadata: None, .. } if psid == "9")
    );

    let EventKind::Message { psid, message } = &events[2].kind else {
        panic!("expected a message, got {:?}", events[2].kind)
    };
    assert_eq!(psid, "8");
    assert_eq!(message.text.as_deref(), Some("Red 👍"));
    assert_eq!(message.quick_reply_payload.as_deref(), Some("COLOR_RED"));
    assert_eq!(message.reply_to_mid.as_deref(), Some("m_prev"));
    let kinds: Vec<_> = message.attachments.iter().map(|a| a.kind.clone()).collect();
    assert_eq!(
        kinds,
        [
            AttachmentKind::Link,
            AttachmentKind::Location,
            AttachmentKind::Other("template".to_owned()),
            AttachmentKind::Other("ig_reel".to_owned()),
            AttachmentKind::Sticker,
        ]
    );
    let link = &message.attachments[0];
    assert_eq!(
        (link.url.as_deref(), link.title.as_deref()),
        (Some("https://example.com/a"), Some("Shop"))
    );
    assert_eq!(
        message.attachments[1].coordinates,
        Some(Coordinates {
            lat: 13.75,
            long: 100.5,
        })
    );
    assert_eq!(message.attachments[3].title.as_deref(), Some("Reel"));

    assert_eq!(
        events[3].kind,
        EventKind::Unsupported {
            kind: "referral".to_owned(),
        }
    );
    assert_eq!(
        events[4].kind,
        EventKind::Unsupported {
            kind: "reaction".to_owned(),
        }
    );
    assert_eq!(
        events[5].kind,
        EventKind::Unsupported {
            kind: "feed".to_owned(),
        }
    );
}

#[test]
fn unreadable_bodies_are_typed_errors() {
    let item =
        |item: &str| format!(r#"{{"object":"page","entry":[{{"id":"1","messaging":[{item}]}}]}}"#);
    let cases = [
        (b"not json".to_vec(), "json"),
        (br#"{"object":"instagram","entry":[]}"#.to_vec(), "object"),
        (
            item(r#"{"sender":{"id":"9"},"message":{"text":"no mid"}}"#).into_bytes(),
            "json",
        ),
        (
            item(r#"{"recipient":{"id":"1"},"message":{"mid":"m"}}"#).into_bytes(),
            "customer",
        ),
        (
            item(r#"{"sender":{"id":"9"},"timestamp":9223372036854775807,"message":{"mid":"m"}}"#)
                .into_bytes(),
            "time",
        ),
        (
            item(r#"{"sender":{"id":"9"},"read":{"watermark":-9223372036854775808}}"#).into_bytes(),
            "time",
        ),
    ];
    for (body, expected) in cases {
        let error = facebook::parse_webhook(&body).expect_err("must be refused");
        let found = match error {
            ParseError::Json(_) => "json",
            ParseError::UnexpectedObject(_) => "object",
            ParseError::MissingCustomer { .. } => "customer",
            ParseError::TimestampOutOfRange(_) => "time",
        };
        assert_eq!(found, expected, "{}", String::from_utf8_lossy(&body));
    }
}

#[test]
fn truncated_and_garbage_bodies_never_panic() {
    for (body, _) in SIGNED {
        for end in 0..body.len() {
            assert!(
                facebook::parse_webhook(&body[..end]).is_err(),
                "prefix of {end} bytes"
            );
        }
    }
    let deep = "[".repeat(100_000);
    let garbage: [&[u8]; 9] = [
        b"",
        b"null",
        b"[]",
        b"{}",
        b"\xff\xfe\x00",
        br#"{"object":"page","entry":null}"#,
        br#"{"object":"page","entry":[{"id":1}]}"#,
        fixture!("../line/text_message.json"),
        deep.as_bytes(),
    ];
    for body in garbage {
        assert!(
            facebook::parse_webhook(body).is_err(),
            "{}",
            String::from_utf8_lossy(body)
        );
    }
}
