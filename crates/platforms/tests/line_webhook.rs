//! The LINE fixtures, as LINE would POST them: each must verify with the
//! fixture channel secret and parse into what `fixtures/README.md` promises.

use chrono::DateTime;
use omnibox_platforms::line::{
    self, ContentProvider, Emoji, EventKind, File, ImageSet, Location, Media, Mentionee,
    MentioneeKind, MessageContent, Mode, Postback, Source, Sticker,
};
use omnibox_platforms::{verify_line_signature, ParseError, SignatureError};

macro_rules! fixture {
    ($name:literal) => {
        include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../fixtures/line/",
            $name
        ))
    };
}

const CHANNEL_SECRET: &[u8] = b"fixture-channel-secret";
const DESTINATION: &str = "Ua3f09c2e71b84d56e0f1a2b3c4d5e6f7";
const LU1: &str = "U8e2b1f6c0d9a4e7b3c5f1a2d4e6b8c0a";
const LU2: &str = "U1c7d3e9f0a2b4c6d8e0f1a3b5c7d9e1f";
const LU3: &str = "U5f0e2d4c6b8a0f1e3d5c7b9a1f3e5d70";
const LU4: &str = "U9b4e6a2c8d0f1b3e5a7c9d1f3b5e7a09";

const TEXT: &[u8] = fixture!("text_message.json");
const REDELIVERY: &[u8] = fixture!("redelivery.json");
const IMAGE: &[u8] = fixture!("image_message.json");
const FOLLOW: &[u8] = fixture!("follow.json");
const UNFOLLOW: &[u8] = fixture!("unfollow.json");
const POSTBACK: &[u8] = fixture!("postback.json");
const MULTIPLE: &[u8] = fixture!("multiple_events.json");
const GROUP: &[u8] = fixture!("group_message.json");
const EMPTY: &[u8] = fixture!("verify_empty_events.json");

/// Each webhook fixture with the `x-line-signature` listed in the fixtures README.
const SIGNED: [(&[u8], &str); 9] = [
    (TEXT, "6d3CURbnLUUuZiP56PtmhsqWTV9bk9dDxrkpRqF5S4g="),
    (REDELIVERY, "D6EVIGOlz5PsvEog2QbH0HSdntCuGF7VTEpXpbsI1Qw="),
    (IMAGE, "neIIR+m0cDnyogx+ajPpVcnyXAP0xSelWEvG8mnEhFc="),
    (FOLLOW, "wk4NegswbVeHYX0FM3ZIn7FkesVypxy9OIV9iq3okuA="),
    (UNFOLLOW, "lFYPTbDD8b6R98N6c9of5U5uhvFpSQ003BWynycZJ0M="),
    (POSTBACK, "iLOjw60gpwEe0ukjNx8GMe2Tznt4TijV8yazrfG5doU="),
    (MULTIPLE, "8mLHMe/ShXZkoZSKwegjVdNWyurOtvWznJ/TWGQiAC0="),
    (GROUP, "9hF87pVOig8MmwOhsW7BZF50S09G10Yl1y9B5Hpgg9E="),
    (EMPTY, "8/3oClVVKUsy+yW62yvEmRObbcTkb1xCT1n6a/qPuiM="),
];

fn parse(body: &[u8]) -> line::Webhook {
    let webhook = line::parse_webhook(body).expect("fixture parses");
    assert_eq!(webhook.destination, DESTINATION);
    webhook
}

fn only_event(body: &[u8]) -> line::Event {
    let mut events = parse(body).events;
    assert_eq!(events.len(), 1);
    events.remove(0)
}

fn user(id: &str) -> Option<Source> {
    Some(Source::User {
        user_id: id.to_owned(),
    })
}

fn text_of(kind: &EventKind) -> &str {
    match kind {
        EventKind::Message(line::Message {
            content: MessageContent::Text(text),
            ..
        }) => &text.text,
        other => panic!("expected a text message, got {other:?}"),
    }
}

#[test]
fn every_fixture_verifies_and_any_changed_byte_does_not() {
    for (body, header) in SIGNED {
        assert_eq!(
            verify_line_signature(CHANNEL_SECRET, Some(header), body),
            Ok(())
        );
        assert_eq!(
            verify_line_signature(b"another-secret", Some(header), body),
            Err(SignatureError::Mismatch)
        );
        for position in 0..body.len() {
            let mut tampered = body.to_vec();
            tampered[position] ^= 0x01;
            assert_eq!(
                verify_line_signature(CHANNEL_SECRET, Some(header), &tampered),
                Err(SignatureError::Mismatch),
                "byte {position} of {header}"
            );
        }
    }
}

#[test]
fn text_message_keeps_thai_text_tokens_and_ids() {
    let event = only_event(TEXT);
    assert_eq!(event.webhook_event_id, "01M83389YNAV12QRM6NHX6545M");
    assert_eq!(event.timestamp.timestamp_millis(), 1_795_400_411_093);
    assert_eq!(event.mode, Mode::Active);
    assert_eq!(event.source, user(LU1));
    assert!(!event.is_redelivery);
    assert_eq!(
        event.reply_token.as_deref(),
        Some("375cc1a68a62c33cf056c7bab8184e4c")
    );
    let EventKind::Message(message) = &event.kind else {
        panic!("expected a message: {event:?}")
    };
    assert_eq!(message.id, "537216233912020329");
    assert!(message
        .quote_token
        .as_deref()
        .is_some_and(|t| t.starts_with("mtfUukMkwvnl")));
    assert!(message
        .mark_as_read_token
        .as_deref()
        .is_some_and(|t| t.starts_with("dqJmvjab8q")));
    assert_eq!(message.quoted_message_id, None);
    assert_eq!(
        text_of(&event.kind),
        "สวัสดีครับ ขอสอบถามเรื่องการจัดส่งไปเชียงใหม่ครับ"
    );
}

#[test]
fn redelivery_is_the_same_event_flagged() {
    let original = only_event(TEXT);
    assert_eq!(
        only_event(REDELIVERY),
        line::Event {
            is_redelivery: true,
            ..original
        }
    );
}

#[test]
fn image_message_is_fetched_from_line() {
    let event = only_event(IMAGE);
    let EventKind::Message(message) = event.kind else {
        panic!("expected a message")
    };
    assert_eq!(message.id, "557395339533760240");
    assert_eq!(
        message.content,
        MessageContent::Image(Media {
            content_provider: ContentProvider::Line,
            duration: None,
            image_set: None,
        })
    );
}

#[test]
fn follow_and_unfollow_change_contact_state() {
    let follow = only_event(FOLLOW);
    assert_eq!(
        follow.kind,
        EventKind::Follow {
            is_unblocked: false,
        }
    );
    assert_eq!(follow.source, user(LU2));
    assert!(follow.reply_token.is_some());

    let unfollow = only_event(UNFOLLOW);
    assert_eq!(unfollow.kind, EventKind::Unfollow);
    assert_eq!(unfollow.source, user(LU3));
    assert_eq!(unfollow.reply_token, None);
}

#[test]
fn postback_keeps_its_data() {
    let event = only_event(POSTBACK);
    assert_eq!(event.source, user(LU1));
    assert_eq!(
        event.kind,
        EventKind::Postback(Postback {
            data: "action=talk_to_agent&topic=shipping".to_owned(),
            params: None,
        })
    );
}

#[test]
fn multiple_events_are_read_independently() {
    let events = parse(MULTIPLE).events;
    let [message, follow, unfollow] = events.as_slice() else {
        panic!("expected three: {events:?}")
    };
    assert_eq!(message.source, user(LU2));
    assert_eq!(
        text_of(&message.kind),
        "Hi! I just added you. Do you have size L?"
    );
    assert_eq!(
        (follow.source.clone(), &follow.kind),
        (user(LU4), &EventKind::Follow { is_unblocked: true })
    );
    assert_eq!(
        (unfollow.source.clone(), &unfollow.kind),
        (user(LU3), &EventKind::Unfollow)
    );
}

#[test]
fn group_message_names_the_group_the_author_and_the_mention() {
    let event = only_event(GROUP);
    assert_eq!(
        event.source,
        Some(Source::Group {
            group_id: "C5d2a8e1f3b7c9d0e4f6a2b8c1d3e5f7a".to_owned(),
            user_id: Some(LU2.to_owned()),
        })
    );
    let EventKind::Message(line::Message {
        content: MessageContent::Text(text),
        ..
    }) = event.kind
    else {
        panic!("expected a text message")
    };
    let mention = text.mention.expect("the bot is mentioned");
    assert_eq!(
        mention.mentionees,
        [Mentionee {
            index: 0,
            length: 19,
            kind: MentioneeKind::User,
            user_id: Some(DESTINATION.to_owned()),
            is_self: true,
        }]
    );
    assert_eq!(
        text.text.chars().take(19).collect::<String>(),
        "@Omnibox Demo Store"
    );
}

#[test]
fn verify_button_sends_no_events() {
    assert!(parse(EMPTY).events.is_empty());
}

#[test]
fn every_message_type_and_unknown_kinds() {
    let event = |kind: &str, extra: &str| {
        format!(
            r#"{{"type":"{kind}",{extra},"webhookEventId":"01X","deliveryContext":{{"isRedelivery":false}},"timestamp":1,"source":{{"type":"user","userId":"U1"}},"mode":"active"}}"#
        )
    };
    let message = |content: &str| event("message", &format!(r#""message":{{"id":"1",{content}}}"#));
    let events = [
        message(
            r#""type":"text","text":"(love) hi","emojis":[{"index":0,"length":6,"productId":"p","emojiId":"e"}],"quotedMessageId":"0""#,
        ),
        message(
            r#""type":"video","duration":6000,"contentProvider":{"type":"external","originalContentUrl":"https://o","previewImageUrl":"https://p"}"#,
        ),
        message(
            r#""type":"image","contentProvider":{"type":"line"},"imageSet":{"id":"set","index":1,"total":2}"#,
        ),
        message(r#""type":"audio","duration":3000,"contentProvider":{"type":"line"}"#),
        message(r#""type":"file","fileName":"quote.pdf","fileSize":2048"#),
        message(
            r#""type":"location","title":"Shop","address":"Bangkok","latitude":13.75,"longitude":100.5"#,
        ),
        message(
            r#""type":"sticker","packageId":"446","stickerId":"1988","stickerResourceType":"ANIMATION","keywords":["yay"]"#,
        ),
        message(r#""type":"hologram","markAsReadToken":"t""#),
        event("unsend", r#""unsend":{"messageId":"325708"}"#),
        event(
            "postback",
            r#""postback":{"data":"d","params":{"date":"2026-11-23"}}"#,
        ),
        event("memberJoined", r#""joined":{"members":[]}"#),
    ];
    let body = format!(r#"{{"destination":"U0","events":[{}]}}"#, events.join(","));
    let kinds: Vec<_> = line::parse_webhook(body.as_bytes())
        .expect("parses")
        .events
        .into_iter()
        .map(|event| event.kind)
        .collect();
    let plain = |content| line::Message {
        id: "1".to_owned(),
        quote_token: None,
        quoted_message_id: None,
        mark_as_read_token: None,
        content,
    };
    let message = |content| EventKind::Message(plain(content));
    let external = ContentProvider::External {
        original_content_url: Some("https://o".to_owned()),
        preview_image_url: Some("https://p".to_owned()),
    };
    let mut params = serde_json::Map::new();
    params.insert("date".to_owned(), "2026-11-23".into());
    assert_eq!(
        kinds,
        [
            EventKind::Message(line::Message {
                quoted_message_id: Some("0".to_owned()),
                ..plain(MessageContent::Text(line::Text {
                    text: "(love) hi".to_owned(),
                    emojis: vec![Emoji {
                        index: 0,
                        length: 6,
                        product_id: "p".to_owned(),
                        emoji_id: "e".to_owned(),
                    }],
                    mention: None,
                }))
            }),
            message(MessageContent::Video(Media {
                content_provider: external,
                duration: Some(6000),
                image_set: None,
            })),
            message(MessageContent::Image(Media {
                content_provider: ContentProvider::Line,
                duration: None,
                image_set: Some(ImageSet {
                    id: "set".to_owned(),
                    index: Some(1),
                    total: Some(2),
                }),
            })),
            message(MessageContent::Audio(Media {
                content_provider: ContentProvider::Line,
                duration: Some(3000),
                image_set: None,
            })),
            message(MessageContent::File(File {
                file_name: "quote.pdf".to_owned(),
                file_size: 2048,
            })),
            message(MessageContent::Location(Location {
                title: Some("Shop".to_owned()),
                address: Some("Bangkok".to_owned()),
                latitude: 13.75,
                longitude: 100.5,
            })),
            message(MessageContent::Sticker(Sticker {
                package_id: "446".to_owned(),
                sticker_id: "1988".to_owned(),
                sticker_resource_type: "ANIMATION".to_owned(),
                keywords: vec!["yay".to_owned()],
                text: None,
            })),
            EventKind::Message(line::Message {
                mark_as_read_token: Some("t".to_owned()),
                ..plain(MessageContent::Unsupported {
                    kind: "hologram".to_owned(),
                })
            }),
            EventKind::Unsend {
                message_id: "325708".to_owned(),
            },
            EventKind::Postback(Postback {
                data: "d".to_owned(),
                params: Some(params),
            }),
            EventKind::Unsupported {
                kind: "memberJoined".to_owned(),
            },
        ]
    );
}

#[test]
fn standby_rooms_and_account_events() {
    let body = br#"{"destination":"U0","events":[
        {"type":"message","mode":"standby","timestamp":1,"webhookEventId":"a","deliveryContext":{"isRedelivery":true},
         "source":{"type":"room","roomId":"R1"},"message":{"type":"text","id":"1","text":"x"}},
        {"type":"botSuspended","mode":"active","timestamp":2,"webhookEventId":"b","deliveryContext":{"isRedelivery":false}},
        {"type":"join","mode":"someday","timestamp":3,"webhookEventId":"c","deliveryContext":{"isRedelivery":false},"source":{"type":"square","squareId":"S"}}]}"#;
    let events = line::parse_webhook(body).expect("parses").events;
    let summary: Vec<_> = events
        .iter()
        .map(|e| {
            (
                e.mode,
                e.source.clone(),
                e.reply_token.is_some(),
                e.is_redelivery,
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (
                Mode::Standby,
                Some(Source::Room {
                    room_id: "R1".to_owned(),
                    user_id: None,
                }),
                false,
                true
            ),
            (Mode::Active, None, false, false),
            (Mode::Standby, Some(Source::Unsupported), false, false),
        ]
    );
    assert_eq!(
        events[1].kind,
        EventKind::Unsupported {
            kind: "botSuspended".to_owned(),
        }
    );
    assert_eq!(
        events[1].timestamp,
        DateTime::from_timestamp_millis(2).expect("in range")
    );
}

#[test]
fn unreadable_bodies_are_typed_errors() {
    let body = |event: &str| format!(r#"{{"destination":"U0","events":[{event}]}}"#);
    let common = r#""webhookEventId":"a","deliveryContext":{"isRedelivery":false},"mode":"active""#;
    let cases = [
        (b"{\"destination\":\"U0\"}".to_vec(), "json"),
        (body(&format!(r#"{{"type":"message",{common},"timestamp":1}}"#)).into_bytes(), "json"),
        (body(&format!(r#"{{"type":"message",{common},"timestamp":1,"message":{{"type":"file","id":"1"}}}}"#)).into_bytes(), "json"),
        (body(&format!(r#"{{"type":"unfollow",{common},"timestamp":-9223372036854775808}}"#)).into_bytes(), "time"),
    ];
    for (body, expected) in cases {
        let found = match line::parse_webhook(&body) {
            Err(ParseError::Json(_)) => "json",
            Err(ParseError::TimestampOutOfRange(_)) => "time",
            other => panic!("unexpected {other:?}"),
        };
        assert_eq!(found, expected, "{}", String::from_utf8_lossy(&body));
    }
}

#[test]
fn truncated_and_garbage_bodies_never_panic() {
    for (body, _) in SIGNED {
        for end in 0..body.len() {
            assert!(
                line::parse_webhook(&body[..end]).is_err(),
                "prefix of {end} bytes"
            );
        }
    }
    let deep = "{\"a\":".repeat(100_000);
    let garbage: [&[u8]; 8] = [
        b"",
        b"null",
        b"\"events\"",
        b"\xc3\x28",
        br#"{"destination":"U0","events":{}}"#,
        br#"{"destination":"U0","events":[null]}"#,
        fixture!("../facebook/text_message.json"),
        deep.as_bytes(),
    ];
    for body in garbage {
        assert!(
            line::parse_webhook(body).is_err(),
            "{}",
            String::from_utf8_lossy(body)
        );
    }
}
