//! A platform simulator for demonstrations (`omnibox demo`): one local
//! HTTP server playing the Facebook Graph API, the LINE Messaging API and
//! LINE's content host the way Omnibox's clients call them, and the
//! customers of a small shop who write in through both.
//!
//! As the platforms do, the simulator:
//! - accepts only the page token and the LINE channel access token of its
//!   [`Accounts`], so `connectChannel`'s checks run for real (Graph OAuth
//!   error 190 or LINE 401 for any other token);
//! - answers profiles (customers writing in Thai, Japanese, English,
//!   Spanish, French, Vietnamese, Chinese, German, Korean) and serves
//!   pictures (generated PNGs) on a CDN path, and LINE message content (an
//!   image, a PDF) on the content path;
//! - takes Facebook sends, refusing them outside the messaging window with
//!   code 10 as Meta does, and echoes each one back as a signed `is_echo`
//!   webhook carrying the `metadata` Omnibox set, then delivery and read
//!   receipts; takes LINE replies (single-use reply tokens, good for a
//!   minute) and pushes (`X-Line-Retry-Key`: a repeat answers 409);
//! - lets a customer answer an agent's reply a few seconds later.
//!
//! [`Simulator::run_traffic`] plays the customers: a seed of conversations
//! (images, a sticker, a file, a Facebook customer whose last message is 30
//! hours old and one 8 days old, a customer who answered the page), then one
//! new message every few seconds. Every webhook is signed as the platforms
//! sign theirs and carries their timestamps, so Omnibox handles it exactly
//! as it would handle real traffic.
//!
//! [`OmniboxClient`] is the shop's administrator: it sets the channels up
//! through Omnibox's GraphQL API over HTTP, as a person in the inbox would.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use base64::Engine;
use hmac::Mac;
use rand::Rng;
use serde_json::{json, Value};
use uuid::Uuid;

/// The Graph API version the simulator answers under (its Graph base URL
/// is [`Simulator::graph_url`]).
pub const GRAPH_VERSION: &str = "v25.0";
/// How long a LINE reply token can be used after its event was sent.
const REPLY_TOKEN_LIFETIME: Duration = Duration::from_secs(60);
/// When a Facebook send's echo, delivery receipt and read receipt follow it.
const ECHO_AFTER: Duration = Duration::from_millis(300);
const DELIVERED_AFTER: Duration = Duration::from_millis(900);
const READ_AFTER: Duration = Duration::from_millis(2500);
/// Attempts to deliver one webhook while Omnibox answers 5xx or cannot be
/// reached (the platforms retry too).
const DELIVERY_ATTEMPTS: u32 = 5;
/// How long one webhook or GraphQL request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// How long [`Simulator::stop`] waits for open connections to finish.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// The app id on echoes of messages the page sent from its own inbox
/// (another app than Omnibox).
const PAGE_INBOX_APP_ID: u64 = 263_902_037_430_900;
/// Facebook's "like" sticker.
const FACEBOOK_LIKE_STICKER: u64 = 369_239_263_222_822;
/// The LINE emoji the simulated customers use, as `(love)` in a text.
const LINE_EMOJI_PRODUCT: &str = "5ac1bfd5040ab15980c9b435";
/// What the order PDF a customer sends on LINE says.
const ORDER_LINES: &[&str] = &[
    "Baan Suan Ceramics",
    "Order 2042",
    "2 x Celadon tea bowl      890 THB",
    "1 x Elephant mug          450 THB",
    "Total                   2,230 THB",
];

const SECOND_MS: i64 = 1_000;
const MINUTE_MS: i64 = 60 * SECOND_MS;
const HOUR_MS: i64 = 60 * MINUTE_MS;
const DAY_MS: i64 = 24 * HOUR_MS;

#[derive(Debug, thiserror::Error)]
pub enum SimulatorError {
    #[error("the simulator could not listen: {0}")]
    Io(#[from] std::io::Error),
    #[error("HTTP request failed: {0}")]
    Http(#[from] reqwest::Error),
    #[error("Omnibox answered a webhook with HTTP {status}: {body}")]
    WebhookRefused { status: u16, body: String },
    #[error("Omnibox's GraphQL API answered: {0}")]
    GraphQl(String),
}

// ---------------------------------------------------------------------------
// The simulated accounts

/// The shop's accounts on both platforms: the Facebook app and page, the
/// LINE Official Account, and the secrets the platforms and the app share.
#[derive(Clone)]
pub struct Accounts {
    pub page_id: String,
    pub page_name: String,
    /// The only token the Graph API accepts for the page.
    pub page_token: String,
    /// The Facebook app Omnibox runs as (echoes of its sends carry it).
    pub app_id: u64,
    /// The app secret Meta signs webhooks with.
    pub app_secret: String,
    /// What Meta's subscription handshake would send.
    pub verify_token: String,
    /// The bot user id: LINE webhooks' `destination`.
    pub line_bot_user_id: String,
    pub line_name: String,
    /// The only channel access token the LINE API accepts.
    pub line_token: String,
    /// The LINE channel secret webhooks are signed with.
    pub line_channel_secret: String,
}

impl std::fmt::Debug for Accounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Accounts")
            .field("page_id", &self.page_id)
            .field("app_id", &self.app_id)
            .field("line_bot_user_id", &self.line_bot_user_id)
            .finish_non_exhaustive()
    }
}

impl Accounts {
    /// The shop's accounts, with fresh random tokens and secrets.
    pub fn generate() -> Self {
        const ALPHANUMERIC: &[u8] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
        Self {
            page_id: "108352190476231".into(),
            page_name: "Baan Suan Ceramics".into(),
            page_token: format!("EAAB{}", random_string(ALPHANUMERIC, 160)),
            app_id: 1_094_281_735_520_316,
            app_secret: random_string(b"0123456789abcdef", 32),
            verify_token: random_string(ALPHANUMERIC, 24),
            line_bot_user_id: "Ub7d2f9a4c1e8053d6b2f9a4c7e1d8053".into(),
            line_name: "Baan Suan Ceramics".into(),
            line_token: random_string(ALPHANUMERIC, 172),
            line_channel_secret: random_string(b"0123456789abcdef", 32),
        }
    }
}

/// Where simulated traffic goes: one Omnibox and the channels its admin
/// connected there for the simulated accounts.
#[derive(Clone)]
pub struct Target {
    /// `http://host:port`, no trailing slash.
    pub omnibox_url: String,
    pub facebook_app_secret: String,
    pub page_id: String,
    /// Omnibox's id of the LINE channel (its webhook path).
    pub line_channel_id: Uuid,
    pub line_channel_secret: String,
    pub line_bot_user_id: String,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("omnibox_url", &self.omnibox_url)
            .field("page_id", &self.page_id)
            .field("line_channel_id", &self.line_channel_id)
            .finish_non_exhaustive()
    }
}

// ---------------------------------------------------------------------------
// The customers and what they say

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Platform {
    Facebook,
    Line,
}

#[derive(Debug)]
struct Customer {
    platform: Platform,
    /// The PSID (Facebook) or user id (LINE).
    id: &'static str,
    /// As the profile APIs give it (Facebook `name`, LINE `displayName`).
    name: &'static str,
    first_name: &'static str,
    last_name: &'static str,
    language: &'static str,
    status_message: Option<&'static str>,
    /// What they say when an agent answers them, in turn.
    answers: &'static [&'static str],
}

static NATTAYA: Customer = Customer {
    platform: Platform::Facebook,
    id: "7301946652081734",
    name: "Nattaya Srisuk",
    first_name: "Nattaya",
    last_name: "Srisuk",
    language: "th",
    status_message: None,
    answers: &["ขอบคุณค่ะ 🙏 งั้นสั่ง 2 ใบนะคะ", "โอนเงินแล้วค่ะ เดี๋ยวส่งสลิปให้นะคะ 😊"],
};
static LUCIA: Customer = Customer {
    platform: Platform::Facebook,
    id: "6820447190315528",
    name: "Lucía Fernández",
    first_name: "Lucía",
    last_name: "Fernández",
    language: "es",
    status_message: None,
    answers: &[
        "¡Genial, gracias! 😊",
        "¿Y cuánto cuesta el envío a Madrid?",
    ],
};
static JAMES: Customer = Customer {
    platform: Platform::Facebook,
    id: "5973018846210457",
    name: "James Carter",
    first_name: "James",
    last_name: "Carter",
    language: "en",
    status_message: None,
    answers: &[
        "Great, thanks for checking! 👍",
        "Perfect, I'll keep an eye out for it.",
    ],
};
static MARIE: Customer = Customer {
    platform: Platform::Facebook,
    id: "7716290384452019",
    name: "Marie Dubois",
    first_name: "Marie",
    last_name: "Dubois",
    language: "fr",
    status_message: None,
    answers: &["Merci beaucoup ! 😊"],
};
static MINH_ANH: Customer = Customer {
    platform: Platform::Facebook,
    id: "6408815527739046",
    name: "Nguyễn Minh Anh",
    first_name: "Minh Anh",
    last_name: "Nguyễn",
    language: "vi",
    status_message: None,
    answers: &["Dạ em cảm ơn shop ạ 🥰"],
};
static ANNA: Customer = Customer {
    platform: Platform::Facebook,
    id: "6199038472615580",
    name: "Anna Müller",
    first_name: "Anna",
    last_name: "Müller",
    language: "de",
    status_message: None,
    answers: &["Danke schön! 😊"],
};
static SAKURA: Customer = Customer {
    platform: Platform::Line,
    id: "U4f1c8e2a9b3d7061f5e2c4a8b9d0e1f3",
    name: "田中さくら",
    first_name: "さくら",
    last_name: "田中",
    language: "ja",
    status_message: Some("陶器が好き 🍵"),
    answers: &["ありがとうございます！🙇‍♀️", "では2つお願いします😊"],
};
static SOMCHAI: Customer = Customer {
    platform: Platform::Line,
    id: "U7b2e9d4c1a6f3085e7d2b9c4a1f6e3d8",
    name: "สมชาย ใจดี",
    first_name: "สมชาย",
    last_name: "ใจดี",
    language: "th",
    status_message: Some("งานเยอะ แต่ยังไหว 💪"),
    answers: &["ขอบคุณครับ 🙏", "โอเคครับ รอของใหม่นะครับ"],
};
static CHEN: Customer = Customer {
    platform: Platform::Line,
    id: "U2d8a5f1e7c3b9046d2e8a5f1c7b3e9a0",
    name: "陈伟",
    first_name: "伟",
    last_name: "陈",
    language: "zh",
    status_message: None,
    answers: &["好的，谢谢！👍"],
};
static EMMA: Customer = Customer {
    platform: Platform::Line,
    id: "U9c3f6a0d2e8b5174c9f3a6d0e2b8c5f7",
    name: "Emma Wilson",
    first_name: "Emma",
    last_name: "Wilson",
    language: "en",
    status_message: Some("Tea, clay and sunshine ☀️"),
    answers: &["Lovely, thank you! 🎁"],
};
static MINJI: Customer = Customer {
    platform: Platform::Line,
    id: "U5e0b7c3f9a1d6248e5b0c7f3a9d1e6b4",
    name: "김민지",
    first_name: "민지",
    last_name: "김",
    language: "ko",
    status_message: None,
    answers: &["감사합니다! 😊"],
};

static CUSTOMERS: &[&Customer] = &[
    &NATTAYA, &LUCIA, &JAMES, &MARIE, &MINH_ANH, &ANNA, &SAKURA, &SOMCHAI, &CHEN, &EMMA, &MINJI,
];

fn customer(platform: Platform, id: &str) -> Option<&'static Customer> {
    CUSTOMERS
        .iter()
        .copied()
        .find(|c| c.platform == platform && c.id == id)
}

/// Something a customer does.
#[derive(Debug, Clone, Copy)]
enum Says {
    Text(&'static str),
    /// A LINE text starting with the `(love)` LINE emoji placeholder.
    TextWithLineEmoji(&'static str),
    /// A photo, by name (on the CDN, or LINE content).
    Image(&'static str),
    Sticker,
    /// A PDF, by file name.
    File(&'static str),
    /// LINE: added the account as a friend.
    Follow,
    /// Facebook: the page answered from its own inbox (an echo from
    /// another app than Omnibox).
    PageReply(&'static str),
}

struct Step {
    customer: &'static Customer,
    /// How long before the seed is sent it happened.
    ago_ms: i64,
    says: Says,
}

/// The conversations the inbox starts with, oldest first.
static SEED: &[Step] = &[
    // Facebook, 8 days ago: the messaging window is CLOSED.
    Step {
        customer: &MARIE,
        ago_ms: 8 * DAY_MS + 3 * HOUR_MS,
        says: Says::Text("Bonjour ! Est-ce que le vase « Lotus » existe en vert ? 🌿"),
    },
    Step {
        customer: &MARIE,
        ago_ms: 8 * DAY_MS + 2 * HOUR_MS + 50 * MINUTE_MS,
        says: Says::Text("Merci d'avance 🙂"),
    },
    // Facebook, 30 hours ago: only a human agent may answer (HUMAN_AGENT).
    Step {
        customer: &JAMES,
        ago_ms: 30 * HOUR_MS + 20 * MINUTE_MS,
        says: Says::Text(
            "Hi! I ordered the blue bowl set last week. Any news on the tracking number? 📦",
        ),
    },
    Step {
        customer: &JAMES,
        ago_ms: 30 * HOUR_MS,
        says: Says::Text("Order #4821, in case that helps."),
    },
    // Facebook: the page answered, and the customer answered back.
    Step {
        customer: &LUCIA,
        ago_ms: 42 * MINUTE_MS,
        says: Says::Text("¡Hola! ¿Hacen envíos a Madrid? 🇪🇸"),
    },
    Step {
        customer: &LUCIA,
        ago_ms: 38 * MINUTE_MS,
        says: Says::PageReply("¡Hola Lucía! Sí, enviamos a España en 7–10 días 📦"),
    },
    Step {
        customer: &LUCIA,
        ago_ms: 35 * MINUTE_MS,
        says: Says::Text("¡Perfecto, muchas gracias! 🙌 Entonces pido dos tazas."),
    },
    Step {
        customer: &SAKURA,
        ago_ms: 20 * MINUTE_MS,
        says: Says::Text("こんにちは！🌸 抹茶碗はまだ在庫がありますか？"),
    },
    Step {
        customer: &SAKURA,
        ago_ms: 19 * MINUTE_MS,
        says: Says::Sticker,
    },
    Step {
        customer: &SOMCHAI,
        ago_ms: 15 * MINUTE_MS,
        says: Says::Text("ได้รับของแล้วครับ แต่จานใบหนึ่งมีรอยร้าว 😢"),
    },
    Step {
        customer: &SOMCHAI,
        ago_ms: 14 * MINUTE_MS,
        says: Says::Image("cracked-plate"),
    },
    Step {
        customer: &NATTAYA,
        ago_ms: 12 * MINUTE_MS,
        says: Says::Text("สวัสดีค่ะ 😊 แก้วมัคลายช้างยังมีของไหมคะ"),
    },
    Step {
        customer: &NATTAYA,
        ago_ms: 11 * MINUTE_MS,
        says: Says::Image("elephant-mug"),
    },
    Step {
        customer: &NATTAYA,
        ago_ms: 11 * MINUTE_MS - 20 * SECOND_MS,
        says: Says::Text("อยากได้แบบในรูปค่ะ 🐘"),
    },
    Step {
        customer: &CHEN,
        ago_ms: 9 * MINUTE_MS,
        says: Says::File("订单-2042.pdf"),
    },
    Step {
        customer: &CHEN,
        ago_ms: 9 * MINUTE_MS - 30 * SECOND_MS,
        says: Says::Text("请查看附件中的订单，谢谢！📎"),
    },
    Step {
        customer: &MINH_ANH,
        ago_ms: 5 * MINUTE_MS,
        says: Says::Sticker,
    },
    Step {
        customer: &MINH_ANH,
        ago_ms: 5 * MINUTE_MS - 10 * SECOND_MS,
        says: Says::Text("Shop ơi, bộ chén này còn màu xanh không ạ? 💚"),
    },
    Step {
        customer: &EMMA,
        ago_ms: 4 * MINUTE_MS,
        says: Says::Follow,
    },
    Step {
        customer: &EMMA,
        ago_ms: 3 * MINUTE_MS,
        says: Says::TextWithLineEmoji("(love) Just found you! Do you offer gift wrapping? 🎁"),
    },
];

/// What customers say after the seed, one at a time, in turn. The
/// customers whose windows the seed shows HUMAN_AGENT and CLOSED stay
/// silent, so those phases last.
static TRICKLE: &[(&Customer, Says)] = &[
    (&NATTAYA, Says::Text("ส่งไปเชียงใหม่กี่วันคะ 🚚")),
    (&SAKURA, Says::Text("送料はいくらですか？📮")),
    (
        &ANNA,
        Says::Text("Hallo! Kann ich bei euch auch mit PayPal bezahlen? 💳"),
    ),
    (&SOMCHAI, Says::Image("second-angle")),
    (
        &MINJI,
        Says::Text("안녕하세요! 머그컵 세트 선물 포장 되나요? 🎀"),
    ),
    (&LUCIA, Says::Image("tile-sample")),
    (&EMMA, Says::Sticker),
    (&CHEN, Says::Text("大概什么时候发货？🚀")),
    (
        &MINH_ANH,
        Says::Text("Mình ở Hà Nội, ship mất mấy ngày ạ? 🛵"),
    ),
    (
        &ANNA,
        Says::Text("Und liefert ihr auch nach Österreich? 🇦🇹"),
    ),
    (&MINJI, Says::Sticker),
    (&NATTAYA, Says::Text("ขอบคุณค่ะ ร้านน่ารักมาก 💕")),
];

// ---------------------------------------------------------------------------
// Webhooks, signed as the platforms sign them

/// One webhook request as a platform sends it.
#[derive(Debug, Clone)]
pub struct Webhook {
    /// `/webhooks/facebook` or `/webhooks/line/{channelId}`.
    pub path: String,
    pub signature_header: &'static str,
    pub signature: String,
    /// The exact bytes signed.
    pub body: Vec<u8>,
}

fn hmac_sha256(key: &str, body: &[u8]) -> Vec<u8> {
    // HMAC takes keys of any length.
    let mut mac = <hmac::Hmac<sha2::Sha256> as Mac>::new_from_slice(key.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
    mac.update(body);
    mac.finalize().into_bytes().to_vec()
}

/// `X-Hub-Signature-256`: `sha256=` and the hex HMAC-SHA256 of the body
/// under the app secret.
pub fn facebook_signature(app_secret: &str, body: &[u8]) -> String {
    format!("sha256={}", hex::encode(hmac_sha256(app_secret, body)))
}

/// `x-line-signature`: the base64 HMAC-SHA256 of the body under the
/// channel secret.
pub fn line_signature(channel_secret: &str, body: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(hmac_sha256(channel_secret, body))
}

/// JSON as Meta serialises (and signs) it: non-ASCII as `\uXXXX` (UTF-16
/// units) and `/` as `\/`. Both only ever occur inside strings in JSON, so
/// escaping them character by character keeps the document the same.
fn meta_json(value: &Value) -> Vec<u8> {
    let plain = value.to_string();
    let mut escaped = String::with_capacity(plain.len() + plain.len() / 2);
    for c in plain.chars() {
        match c {
            '/' => escaped.push_str("\\/"),
            c if c.is_ascii() => escaped.push(c),
            c => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    escaped.push_str(&format!("\\u{unit:04x}"));
                }
            }
        }
    }
    escaped.into_bytes()
}

impl Target {
    /// A Facebook webhook for the page: one entry, one messaging item, as
    /// Meta sends them.
    fn facebook(&self, item: Value, time: i64) -> Webhook {
        let body = meta_json(&json!({
            "object": "page",
            "entry": [{ "id": self.page_id, "time": time, "messaging": [item] }],
        }));
        Webhook {
            path: "/webhooks/facebook".into(),
            signature_header: "x-hub-signature-256",
            signature: facebook_signature(&self.facebook_app_secret, &body),
            body,
        }
    }

    /// A LINE webhook for the channel (LINE sends raw UTF-8).
    fn line(&self, events: Vec<Value>) -> Webhook {
        let body = json!({ "destination": self.line_bot_user_id, "events": events })
            .to_string()
            .into_bytes();
        Webhook {
            path: format!("/webhooks/line/{}", self.line_channel_id),
            signature_header: "x-line-signature",
            signature: line_signature(&self.line_channel_secret, &body),
            body,
        }
    }
}

// ---------------------------------------------------------------------------
// What the platforms remember

/// LINE message content the content host serves.
#[derive(Debug, Clone, Copy)]
enum Content {
    Image(&'static str),
    OrderPdf,
}

#[derive(Default)]
struct World {
    /// Where webhooks go, once traffic started.
    target: Option<Target>,
    /// LINE reply tokens handed out: token → (user id, when).
    reply_tokens: HashMap<String, (String, Instant)>,
    /// LINE message content by message id.
    contents: HashMap<String, Content>,
    /// LINE push retry keys already accepted, with what they sent.
    retry_keys: HashMap<String, Value>,
    /// Facebook customers' last message (ms), for the messaging window.
    last_customer_message: HashMap<String, i64>,
    /// Customers about to answer (one answer at a time each).
    answering: HashSet<&'static str>,
    /// The next answer of each customer.
    answer_turns: HashMap<&'static str, usize>,
}

impl World {
    /// `customer` doing `says` at `at` (ms), as a webhook to `target`; the
    /// platform remembers what it must (reply tokens, content, the
    /// window). `None` for what the customer's platform has no webhook for.
    fn customer_webhook(
        &mut self,
        target: &Target,
        cdn: &str,
        customer: &Customer,
        says: Says,
        at: i64,
    ) -> Option<Webhook> {
        match customer.platform {
            Platform::Facebook => {
                let item = self.facebook_item(target, cdn, customer, says, at)?;
                Some(target.facebook(item, at + 350))
            }
            Platform::Line => {
                let event = self.line_event(customer, says, at)?;
                Some(target.line(vec![event]))
            }
        }
    }

    fn facebook_item(
        &mut self,
        target: &Target,
        cdn: &str,
        customer: &Customer,
        says: Says,
        at: i64,
    ) -> Option<Value> {
        let from_customer = |message: Value| {
            json!({
                "sender": { "id": customer.id },
                "recipient": { "id": target.page_id },
                "timestamp": at,
                "message": message,
            })
        };
        let mid = facebook_mid();
        let item = match says {
            Says::Text(text) | Says::TextWithLineEmoji(text) => {
                from_customer(json!({ "mid": mid, "text": text }))
            }
            Says::Image(name) => from_customer(json!({ "mid": mid, "attachments": [{
                "type": "image",
                "payload": { "url": cdn_url(cdn, &format!("v/t1.15752-9/{name}.png")) },
            }] })),
            Says::Sticker => from_customer(json!({ "mid": mid, "attachments": [{
                "type": "sticker",
                "payload": {
                    "url": cdn_url(cdn, "v/t39.1997-6/851557_369239266556155_759568595_n.png"),
                    "sticker_id": FACEBOOK_LIKE_STICKER,
                },
            }] })),
            Says::File(name) => from_customer(json!({ "mid": mid, "attachments": [{
                "type": "file",
                "payload": { "url": cdn_url(cdn, &format!("f/{}.pdf", url_segment(name))) },
            }] })),
            Says::PageReply(text) => {
                return Some(json!({
                    "sender": { "id": target.page_id },
                    "recipient": { "id": customer.id },
                    "timestamp": at,
                    "message": { "mid": mid, "is_echo": true, "app_id": PAGE_INBOX_APP_ID, "text": text },
                }))
            }
            Says::Follow => return None,
        };
        let last = self
            .last_customer_message
            .entry(customer.id.to_owned())
            .or_insert(at);
        *last = (*last).max(at);
        Some(item)
    }

    fn line_event(&mut self, customer: &Customer, says: Says, at: i64) -> Option<Value> {
        let id = line_message_id();
        let message = match says {
            Says::Text(text) => json!({
                "type": "text", "id": id, "quoteToken": quote_token(), "text": text,
            }),
            Says::TextWithLineEmoji(text) => json!({
                "type": "text", "id": id, "quoteToken": quote_token(), "text": text,
                "emojis": [{ "index": 0, "length": 6, "productId": LINE_EMOJI_PRODUCT, "emojiId": "002" }],
            }),
            Says::Image(name) => {
                self.contents.insert(id.clone(), Content::Image(name));
                json!({
                    "type": "image", "id": id, "quoteToken": quote_token(),
                    "contentProvider": { "type": "line" },
                })
            }
            Says::Sticker => json!({
                "type": "sticker", "id": id, "quoteToken": quote_token(),
                "packageId": "446", "stickerId": "1989", "stickerResourceType": "STATIC",
                "keywords": ["happy", "thanks", "smile"],
            }),
            Says::File(name) => {
                self.contents.insert(id.clone(), Content::OrderPdf);
                json!({
                    "type": "file", "id": id, "fileName": name,
                    "fileSize": order_pdf().len(),
                })
            }
            Says::Follow => {
                return Some(self.line_envelope(
                    customer,
                    at,
                    "follow",
                    json!({ "isUnblocked": false }),
                ))
            }
            Says::PageReply(_) => return None,
        };
        Some(self.line_envelope(customer, at, "message", message))
    }

    /// A LINE event of `kind` with its payload under the key named like it,
    /// and a fresh reply token.
    fn line_envelope(&mut self, customer: &Customer, at: i64, kind: &str, payload: Value) -> Value {
        let reply_token = random_string(b"0123456789abcdef", 32);
        self.reply_tokens.insert(
            reply_token.clone(),
            (customer.id.to_owned(), Instant::now()),
        );
        let mut event = json!({
            "type": kind,
            "webhookEventId": ulid(at),
            "deliveryContext": { "isRedelivery": false },
            "timestamp": at,
            "source": { "type": "user", "userId": customer.id },
            "replyToken": reply_token,
            "mode": "active",
        });
        event[kind] = payload;
        event
    }
}

// ---------------------------------------------------------------------------
// The simulator

struct Shared {
    accounts: Accounts,
    /// `http://127.0.0.1:PORT`: the API hosts and the CDN.
    url: String,
    http: reqwest::Client,
    answer_after: Option<Duration>,
    world: Mutex<World>,
    /// Webhooks scheduled for later (echoes, receipts, answers).
    tasks: Mutex<tokio::task::JoinSet<()>>,
}

/// The running simulator. Dropping it stops the server and every webhook
/// still scheduled; [`Simulator::stop`] also waits for the server.
pub struct Simulator {
    shared: Arc<Shared>,
    stop: tokio::sync::watch::Sender<bool>,
    server: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Simulator {
    /// Starts playing both platforms on a free port of 127.0.0.1. With
    /// `answer_after`, a customer an agent replied to answers after that long.
    pub async fn start(
        accounts: Accounts,
        answer_after: Option<Duration>,
    ) -> Result<Self, SimulatorError> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let shared = Arc::new(Shared {
            accounts,
            url,
            http: local_client()?,
            answer_after,
            world: Mutex::default(),
            tasks: Mutex::default(),
        });
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let app = router(shared.clone());
        let server = tokio::spawn(async move {
            let shutdown = async move {
                let _ = stopped.wait_for(|stop| *stop).await;
            };
            if let Err(error) = axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await
            {
                tracing::warn!(%error, "the platform simulator stopped serving");
            }
        });
        Ok(Self {
            shared,
            stop,
            server: Mutex::new(Some(server)),
        })
    }

    /// `http://127.0.0.1:PORT`: the LINE API, LINE's content host and the
    /// CDN (also the origin to trust for media).
    pub fn url(&self) -> &str {
        &self.shared.url
    }

    /// The Graph API base URL, with its version.
    pub fn graph_url(&self) -> String {
        format!("{}/{GRAPH_VERSION}", self.shared.url)
    }

    pub fn accounts(&self) -> &Accounts {
        &self.shared.accounts
    }

    /// Plays the customers against `target`: posts the seed, then one
    /// message every `every` (none if zero), for ever; stop by dropping the
    /// future. Echoes and answers go to `target` from now on. A webhook
    /// Omnibox does not take is logged and skipped.
    pub async fn run_traffic(&self, target: Target, every: Duration) {
        match self.send_seed(&target).await {
            Ok(sent) => tracing::info!(webhooks = sent, "simulated customers' first messages sent"),
            Err(error) => {
                tracing::warn!(%error, "the simulated customers' first messages were not all taken")
            }
        }
        if every.is_zero() {
            return std::future::pending().await;
        }
        let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        for turn in 0.. {
            ticks.tick().await;
            let (customer, says) = TRICKLE[turn % TRICKLE.len()];
            let webhook = self.shared.world().customer_webhook(
                &target,
                &self.shared.url,
                customer,
                says,
                now_ms(),
            );
            if let Some(webhook) = webhook {
                if let Err(error) = self.shared.deliver(&target, &webhook).await {
                    tracing::warn!(%error, "a simulated customer's message was not taken");
                }
            }
        }
    }

    /// Posts the seed conversations to `target` (and sends echoes and
    /// answers there from now on); how many webhooks were taken.
    pub async fn send_seed(&self, target: &Target) -> Result<usize, SimulatorError> {
        self.shared.world().target = Some(target.clone());
        let webhooks = seed_webhooks(&mut self.shared.world(), target, &self.shared.url, now_ms());
        let mut sent = 0;
        for webhook in &webhooks {
            self.shared.deliver(target, webhook).await?;
            sent += 1;
        }
        Ok(sent)
    }

    /// Stops the server (after the requests in flight, at most a few
    /// seconds) and drops every webhook still scheduled.
    pub async fn stop(&self) {
        self.stop.send_replace(true);
        self.shared.tasks().abort_all();
        let server = self.server.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(mut server) = server {
            if tokio::time::timeout(STOP_GRACE, &mut server).await.is_err() {
                server.abort();
            }
        }
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        self.stop.send_replace(true);
        self.shared.tasks().abort_all();
        if let Some(server) = self.server.lock().unwrap_or_else(|p| p.into_inner()).take() {
            server.abort();
        }
    }
}

/// The seed's webhooks for `target`, as if sent at `now` (ms), oldest first.
fn seed_webhooks(world: &mut World, target: &Target, cdn: &str, now: i64) -> Vec<Webhook> {
    SEED.iter()
        .filter_map(|step| {
            world.customer_webhook(target, cdn, step.customer, step.says, now - step.ago_ms)
        })
        .collect()
}

impl Shared {
    fn world(&self) -> MutexGuard<'_, World> {
        self.world.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn tasks(&self) -> MutexGuard<'_, tokio::task::JoinSet<()>> {
        self.tasks.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `job` after `delay`, unless the simulator stops first.
    fn later(&self, delay: Duration, job: impl Future<Output = ()> + Send + 'static) {
        let mut tasks = self.tasks();
        while tasks.try_join_next().is_some() {}
        tasks.spawn(async move {
            tokio::time::sleep(delay).await;
            job.await;
        });
    }

    /// Posts `webhook` to `target`, retrying while Omnibox answers 5xx or
    /// cannot be reached, as the platforms do.
    async fn deliver(&self, target: &Target, webhook: &Webhook) -> Result<(), SimulatorError> {
        let url = format!("{}{}", target.omnibox_url, webhook.path);
        let mut backoff = Duration::from_millis(200);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let answer = self
                .http
                .post(&url)
                .header(header::CONTENT_TYPE, "application/json")
                .header(webhook.signature_header, &webhook.signature)
                .body(webhook.body.clone())
                .send()
                .await;
            match answer {
                Ok(response) if response.status().is_success() => return Ok(()),
                Ok(response)
                    if response.status().is_server_error() && attempt < DELIVERY_ATTEMPTS => {}
                Ok(response) => {
                    let status = response.status().as_u16();
                    let body = response.text().await.unwrap_or_default();
                    return Err(SimulatorError::WebhookRefused { status, body });
                }
                Err(error) if attempt == DELIVERY_ATTEMPTS => return Err(error.into()),
                Err(_) => {}
            }
            tokio::time::sleep(backoff).await;
            backoff *= 2;
        }
    }

    /// Posts a Facebook item (an echo, a receipt) to the current target.
    async fn post_facebook_item(&self, item: Value) {
        let Some(target) = self.world().target.clone() else {
            return;
        };
        let webhook = target.facebook(item, now_ms());
        if let Err(error) = self.deliver(&target, &webhook).await {
            tracing::warn!(%error, "a simulated Facebook webhook was not taken");
        }
    }

    /// Has `customer` answer an agent's reply after a while (once for a
    /// burst of replies).
    fn answer_later(self: &Arc<Self>, customer: &'static Customer) {
        let Some(delay) = self.answer_after else {
            return;
        };
        if customer.answers.is_empty() || !self.world().answering.insert(customer.id) {
            return;
        }
        let shared = self.clone();
        self.later(delay, async move {
            let answer = {
                let mut world = shared.world();
                world.answering.remove(customer.id);
                let turn = world.answer_turns.entry(customer.id).or_insert(0);
                let text = customer.answers[*turn % customer.answers.len()];
                *turn += 1;
                world.target.clone().and_then(|target| {
                    world
                        .customer_webhook(
                            &target,
                            &shared.url,
                            customer,
                            Says::Text(text),
                            now_ms(),
                        )
                        .map(|webhook| (target, webhook))
                })
            };
            if let Some((target, webhook)) = answer {
                if let Err(error) = shared.deliver(&target, &webhook).await {
                    tracing::warn!(%error, "a simulated customer's answer was not taken");
                }
            }
        });
    }
}

/// An HTTP client for local calls: never through a proxy.
fn local_client() -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(REQUEST_TIMEOUT)
        .build()
}

fn router(shared: Arc<Shared>) -> Router {
    let graph = Router::new()
        .route("/{node}", get(graph_node))
        .route(
            "/{page_id}/subscribed_apps",
            post(subscribed_apps).delete(subscribed_apps),
        )
        .route("/{page_id}/messages", post(facebook_send));
    Router::new()
        .nest(&format!("/{GRAPH_VERSION}"), graph)
        .route("/v2/bot/info", get(line_bot_info))
        .route("/v2/bot/profile/{user_id}", get(line_profile))
        .route("/v2/bot/message/reply", post(line_reply))
        .route("/v2/bot/message/push", post(line_push))
        .route("/v2/bot/message/{message_id}/content", get(line_content))
        .route("/cdn/{*file}", get(cdn))
        .with_state(shared)
}

type Sim = State<Arc<Shared>>;
type Params = Query<HashMap<String, String>>;

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
}

// ---------------------------------------------------------------------------
// Facebook Graph API

/// A Graph error body (`{"error": {...}}`), answered with HTTP 400.
fn graph_error(code: i64, subcode: Option<i64>, message: &str) -> Response {
    let mut error = json!({
        "message": message,
        "type": "OAuthException",
        "code": code,
        "fbtrace_id": random_string(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789", 11),
    });
    if let Some(subcode) = subcode {
        error["error_subcode"] = json!(subcode);
    }
    (
        StatusCode::BAD_REQUEST,
        axum::Json(json!({ "error": error })),
    )
        .into_response()
}

fn invalid_token() -> Response {
    graph_error(
        190,
        None,
        "Invalid OAuth access token - Cannot parse access token",
    )
}

/// Whether the request carries the page token (in the header, or as
/// `access_token` as Graph also allows).
fn page_token_ok(shared: &Shared, headers: &HeaderMap, query: &HashMap<String, String>) -> bool {
    let token = bearer(headers).or(query.get("access_token").map(String::as_str));
    token == Some(shared.accounts.page_token.as_str())
}

/// `GET /{node}`: the page (checks a token) or a customer's profile.
async fn graph_node(
    State(shared): Sim,
    Path(node): Path<String>,
    Query(query): Params,
    headers: HeaderMap,
) -> Response {
    if !page_token_ok(&shared, &headers, &query) {
        return invalid_token();
    }
    if node == shared.accounts.page_id {
        return axum::Json(json!({ "id": node, "name": shared.accounts.page_name }))
            .into_response();
    }
    match customer(Platform::Facebook, &node) {
        Some(customer) => axum::Json(json!({
            "first_name": customer.first_name,
            "last_name": customer.last_name,
            "name": customer.name,
            "profile_pic": avatar_url(&shared.url, customer),
            "id": customer.id,
        }))
        .into_response(),
        None => graph_error(
            100,
            Some(33),
            &format!(
                "Unsupported get request. Object with ID '{node}' does not exist, cannot be loaded due to missing permissions, or does not support this operation."
            ),
        ),
    }
}

/// `POST`/`DELETE /{page-id}/subscribed_apps`.
async fn subscribed_apps(
    State(shared): Sim,
    Path(page_id): Path<String>,
    Query(query): Params,
    headers: HeaderMap,
) -> Response {
    if !page_token_ok(&shared, &headers, &query) || page_id != shared.accounts.page_id {
        return invalid_token();
    }
    axum::Json(json!({ "success": true })).into_response()
}

/// `POST /{page-id}/messages`: the Send API. Refuses what Meta refuses
/// (outside the window, unknown recipients, retired tags), answers the
/// message id, then echoes the message back with its metadata and sends
/// the receipts.
async fn facebook_send(
    State(shared): Sim,
    Path(page_id): Path<String>,
    Query(query): Params,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !page_token_ok(&shared, &headers, &query) || page_id != shared.accounts.page_id {
        return invalid_token();
    }
    let Ok(request) = serde_json::from_slice::<Value>(&body) else {
        return graph_error(100, None, "(#100) The request body is not valid JSON");
    };
    let Some(customer) = request["recipient"]["id"]
        .as_str()
        .and_then(|psid| customer(Platform::Facebook, psid))
    else {
        return graph_error(100, Some(2_018_001), "(#100) No matching user found");
    };
    let message = &request["message"];
    let has_content = message["text"].is_string() || message["attachment"].is_object();
    if !has_content {
        return graph_error(100, None, "(#100) param message must be non-empty.");
    }
    if message["text"]
        .as_str()
        .is_some_and(|text| text.encode_utf16().count() > 2000)
    {
        return graph_error(
            100,
            None,
            "(#100) Length of param message[text] must be less than or equal to 2000",
        );
    }
    let now = now_ms();
    let age = shared
        .world()
        .last_customer_message
        .get(customer.id)
        .map(|last| now - last);
    let within = |limit: i64| age.is_some_and(|age| age <= limit);
    let outside_window = || {
        graph_error(
            10,
            Some(2_018_278),
            "(#10) This message is sent outside of allowed window.",
        )
    };
    match (request["messaging_type"].as_str(), request["tag"].as_str()) {
        (Some("RESPONSE" | "UPDATE"), _) if !within(DAY_MS) => return outside_window(),
        (Some("RESPONSE" | "UPDATE"), _) => {}
        (Some("MESSAGE_TAG"), Some("HUMAN_AGENT")) if !within(7 * DAY_MS) => {
            return outside_window()
        }
        (Some("MESSAGE_TAG"), Some("HUMAN_AGENT")) => {}
        (Some("MESSAGE_TAG"), _) => {
            return graph_error(
                100,
                None,
                "(#100) Tag is not supported or no longer allowed",
            )
        }
        _ => {
            return graph_error(
                100,
                None,
                "(#100) Param messaging_type must be one of {RESPONSE, UPDATE, MESSAGE_TAG}",
            )
        }
    }
    let mid = facebook_mid();
    let accounts = &shared.accounts;
    let echo = json!({
        "sender": { "id": accounts.page_id },
        "recipient": { "id": customer.id },
        "timestamp": now,
        "message": echo_message(&mid, accounts.app_id, request["metadata"].as_str(), message),
    });
    let delivery = json!({
        "sender": { "id": customer.id },
        "recipient": { "id": accounts.page_id },
        "delivery": { "mids": [mid], "watermark": now },
    });
    let read = json!({
        "sender": { "id": customer.id },
        "recipient": { "id": accounts.page_id },
        "timestamp": now + READ_AFTER.as_millis() as i64,
        "read": { "watermark": now },
    });
    for (delay, item) in [
        (ECHO_AFTER, echo),
        (DELIVERED_AFTER, delivery),
        (READ_AFTER, read),
    ] {
        let sender = shared.clone();
        shared.later(delay, async move { sender.post_facebook_item(item).await });
    }
    shared.answer_later(customer);
    axum::Json(json!({ "recipient_id": customer.id, "message_id": mid })).into_response()
}

/// The `message` of an echo: what was sent, as Meta describes it back.
fn echo_message(mid: &str, app_id: u64, metadata: Option<&str>, sent: &Value) -> Value {
    let mut message = json!({ "mid": mid, "is_echo": true, "app_id": app_id });
    if let Some(metadata) = metadata {
        message["metadata"] = json!(metadata);
    }
    if let Some(text) = sent["text"].as_str() {
        message["text"] = json!(text);
    }
    if let Some(attachment) = sent.get("attachment").filter(|a| a.is_object()) {
        message["attachments"] = json!([{
            "type": attachment["type"],
            "payload": { "url": attachment["payload"]["url"] },
        }]);
    }
    message
}

// ---------------------------------------------------------------------------
// LINE Messaging API and content host

/// A LINE answer: JSON with the `x-line-request-id` every answer carries.
fn line_answer(status: StatusCode, body: Value) -> Response {
    (
        status,
        [("x-line-request-id", Uuid::new_v4().to_string())],
        axum::Json(body),
    )
        .into_response()
}

fn line_token_ok(shared: &Shared, headers: &HeaderMap) -> bool {
    bearer(headers) == Some(shared.accounts.line_token.as_str())
}

fn line_unauthorized() -> Response {
    line_answer(
        StatusCode::UNAUTHORIZED,
        json!({ "message": "Authentication failed. Confirm that the access token in the authorization header is valid." }),
    )
}

fn line_not_found() -> Response {
    line_answer(StatusCode::NOT_FOUND, json!({ "message": "Not found" }))
}

/// `GET /v2/bot/info`: the bot the token belongs to.
async fn line_bot_info(State(shared): Sim, headers: HeaderMap) -> Response {
    if !line_token_ok(&shared, &headers) {
        return line_unauthorized();
    }
    line_answer(
        StatusCode::OK,
        json!({
            "userId": shared.accounts.line_bot_user_id,
            "basicId": "@baansuan",
            "displayName": shared.accounts.line_name,
            "pictureUrl": format!("{}/cdn/avatar/shop.png", shared.url),
            "chatMode": "chat",
            "markAsReadMode": "manual",
        }),
    )
}

/// `GET /v2/bot/profile/{userId}`: a friend's profile.
async fn line_profile(
    State(shared): Sim,
    Path(user_id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if !line_token_ok(&shared, &headers) {
        return line_unauthorized();
    }
    let Some(customer) = customer(Platform::Line, &user_id) else {
        return line_not_found();
    };
    let mut profile = json!({
        "displayName": customer.name,
        "userId": customer.id,
        "language": customer.language,
        "pictureUrl": avatar_url(&shared.url, customer),
    });
    if let Some(status) = customer.status_message {
        profile["statusMessage"] = json!(status);
    }
    line_answer(StatusCode::OK, profile)
}

/// Checks a reply or push's `messages` as LINE does: 1 to 5 objects, texts
/// of at most 5000 UTF-16 units. Their number, or LINE's refusal.
fn check_line_messages(request: &Value) -> Result<usize, Box<Response>> {
    let invalid = |message: &str, property: &str| {
        Box::new(line_answer(
            StatusCode::BAD_REQUEST,
            json!({
                "message": "The request body has 1 error(s)",
                "details": [{ "message": message, "property": property }],
            }),
        ))
    };
    let Some(messages) = request["messages"].as_array() else {
        return Err(invalid("May not be empty", "messages"));
    };
    if messages.is_empty() || messages.len() > 5 {
        return Err(invalid("Size must be between 1 and 5", "messages"));
    }
    for (index, message) in messages.iter().enumerate() {
        if message["text"]
            .as_str()
            .is_some_and(|text| text.encode_utf16().count() > 5000)
        {
            return Err(invalid(
                "Length must be between 0 and 5000",
                &format!("messages[{index}].text"),
            ));
        }
    }
    Ok(messages.len())
}

fn sent_messages(count: usize) -> Value {
    let sent: Vec<Value> = (0..count)
        .map(|_| json!({ "id": line_message_id(), "quoteToken": quote_token() }))
        .collect();
    json!(sent)
}

/// `POST /v2/bot/message/reply`: each reply token works once, for a minute.
async fn line_reply(State(shared): Sim, headers: HeaderMap, body: Bytes) -> Response {
    if !line_token_ok(&shared, &headers) {
        return line_unauthorized();
    }
    let Ok(request) = serde_json::from_slice::<Value>(&body) else {
        return line_answer(
            StatusCode::BAD_REQUEST,
            json!({ "message": "The request body could not be parsed as JSON" }),
        );
    };
    let count = match check_line_messages(&request) {
        Ok(count) => count,
        Err(refused) => return *refused,
    };
    let user = request["replyToken"].as_str().and_then(|token| {
        shared
            .world()
            .reply_tokens
            .remove(token)
            .filter(|(_, issued)| issued.elapsed() <= REPLY_TOKEN_LIFETIME)
            .map(|(user, _)| user)
    });
    let Some(user) = user else {
        return line_answer(
            StatusCode::BAD_REQUEST,
            json!({ "message": "Invalid reply token" }),
        );
    };
    if let Some(customer) = customer(Platform::Line, &user) {
        shared.answer_later(customer);
    }
    line_answer(
        StatusCode::OK,
        json!({ "sentMessages": sent_messages(count) }),
    )
}

/// `POST /v2/bot/message/push`: a repeated `X-Line-Retry-Key` answers 409
/// with what the first request sent.
async fn line_push(State(shared): Sim, headers: HeaderMap, body: Bytes) -> Response {
    if !line_token_ok(&shared, &headers) {
        return line_unauthorized();
    }
    let retry_key = headers
        .get("x-line-retry-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    if let Some(sent) = retry_key
        .as_ref()
        .and_then(|key| shared.world().retry_keys.get(key).cloned())
    {
        return (
            StatusCode::CONFLICT,
            [
                ("x-line-request-id", Uuid::new_v4().to_string()),
                ("x-line-accepted-request-id", Uuid::new_v4().to_string()),
            ],
            axum::Json(json!({
                "message": "The retry key is already accepted",
                "sentMessages": sent,
            })),
        )
            .into_response();
    }
    let Ok(request) = serde_json::from_slice::<Value>(&body) else {
        return line_answer(
            StatusCode::BAD_REQUEST,
            json!({ "message": "The request body could not be parsed as JSON" }),
        );
    };
    let count = match check_line_messages(&request) {
        Ok(count) => count,
        Err(refused) => return *refused,
    };
    let Some(customer) = request["to"]
        .as_str()
        .and_then(|to| customer(Platform::Line, to))
    else {
        return line_answer(
            StatusCode::BAD_REQUEST,
            json!({ "message": "The property, 'to', in the request body is invalid (line: -, column: -)" }),
        );
    };
    let sent = sent_messages(count);
    if let Some(key) = retry_key {
        shared.world().retry_keys.insert(key, sent.clone());
    }
    shared.answer_later(customer);
    line_answer(StatusCode::OK, json!({ "sentMessages": sent }))
}

/// `GET /v2/bot/message/{messageId}/content`: the bytes of an image or file
/// a customer sent.
async fn line_content(
    State(shared): Sim,
    Path(message_id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if !line_token_ok(&shared, &headers) {
        return line_unauthorized();
    }
    let content = shared.world().contents.get(&message_id).copied();
    match content {
        Some(Content::Image(name)) => png_response(picture(640, 480, name)),
        Some(Content::OrderPdf) => {
            ([(header::CONTENT_TYPE, "application/pdf")], order_pdf()).into_response()
        }
        None => line_not_found(),
    }
}

// ---------------------------------------------------------------------------
// The CDN: pictures and files

/// `GET /cdn/{file}`: a picture (PNG) for anything but `.pdf`. Query
/// strings (the signed-URL look of Meta's CDN) are ignored.
async fn cdn(Path(file): Path<String>) -> Response {
    if file.ends_with(".pdf") {
        return ([(header::CONTENT_TYPE, "application/pdf")], order_pdf()).into_response();
    }
    let name = file
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .trim_end_matches(".png");
    let (width, height) = if file.starts_with("avatar/") {
        (160, 160)
    } else {
        (640, 480)
    };
    png_response(picture(width, height, name))
}

fn png_response(png: Result<Vec<u8>, png::EncodingError>) -> Response {
    match png {
        Ok(bytes) => (
            [
                (header::CONTENT_TYPE, "image/png"),
                (header::CACHE_CONTROL, "max-age=3600"),
            ],
            bytes,
        )
            .into_response(),
        Err(error) => (StatusCode::INTERNAL_SERVER_ERROR, error.to_string()).into_response(),
    }
}

/// A CDN URL with the signed-URL query Meta's CDN links carry.
fn cdn_url(cdn: &str, path: &str) -> String {
    format!(
        "{cdn}/cdn/{path}?_nc_cat=108&ccb=1-7&_nc_sid=fc17b8&oh=03_{}&oe={:08X}",
        random_string(
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
            40
        ),
        (now_ms() / 1000 + 7 * 24 * 3600) as u32
    )
}

fn avatar_url(cdn: &str, customer: &Customer) -> String {
    format!("{cdn}/cdn/avatar/{}.png", customer.id)
}

/// A name as a URL path segment (percent-encoded beyond ASCII letters,
/// digits, `-`, `_` and `.`).
fn url_segment(name: &str) -> String {
    name.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Soft colours pictures are drawn in.
const PALETTE: &[[u8; 3]] = &[
    [0x6a, 0x9c, 0x89],
    [0xc9, 0x7b, 0x63],
    [0x4f, 0x7c, 0xac],
    [0xd8, 0xa4, 0x7f],
    [0x8e, 0x7d, 0xbe],
    [0x5b, 0x8e, 0x7d],
    [0xb5, 0x6b, 0x8a],
    [0x7a, 0x9e, 0x4f],
];

fn mix(a: [u8; 3], b: [u8; 3], share_of_b: f32) -> [u8; 3] {
    let channel = |i: usize| (a[i] as f32 * (1.0 - share_of_b) + b[i] as f32 * share_of_b) as u8;
    [channel(0), channel(1), channel(2)]
}

/// A `width`×`height` PNG: a disc on a background, with a darker band below,
/// in colours chosen by `name` (so the same name is the same picture).
pub fn picture(width: u32, height: u32, name: &str) -> Result<Vec<u8>, png::EncodingError> {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(name.as_bytes());
    let background = PALETTE[digest[0] as usize % PALETTE.len()];
    let disc = mix(background, [0xff, 0xff, 0xff], 0.55);
    let band = mix(background, [0, 0, 0], 0.3);
    let (cx, cy) = (width as f32 / 2.0, height as f32 * 0.45);
    let radius = width.min(height) as f32 * 0.28;
    let band_from = height as f32 * 0.8;
    let mut pixels = Vec::with_capacity(width as usize * height as usize * 3);
    for y in 0..height {
        for x in 0..width {
            let (dx, dy) = (x as f32 + 0.5 - cx, y as f32 + 0.5 - cy);
            let colour = if dx * dx + dy * dy <= radius * radius {
                disc
            } else if y as f32 >= band_from {
                band
            } else {
                background
            };
            pixels.extend_from_slice(&colour);
        }
    }
    let mut bytes = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut bytes, width, height);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header()?;
        writer.write_image_data(&pixels)?;
        writer.finish()?;
    }
    Ok(bytes)
}

/// A one-page PDF: the order a customer sends as a file.
pub fn order_pdf() -> Vec<u8> {
    let escape = |line: &str| {
        line.replace('\\', "\\\\")
            .replace('(', "\\(")
            .replace(')', "\\)")
    };
    let mut content = String::from("BT /F1 18 Tf 26 TL 72 760 Td\n");
    for line in ORDER_LINES {
        content.push_str(&format!("({}) Tj T*\n", escape(line)));
    }
    content.push_str("ET");
    let objects = [
        "<< /Type /Catalog /Pages 2 0 R >>".to_owned(),
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_owned(),
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] \
         /Resources << /Font << /F1 5 0 R >> >> /Contents 4 0 R >>"
            .to_owned(),
        format!(
            "<< /Length {} >>\nstream\n{content}\nendstream",
            content.len()
        ),
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>".to_owned(),
    ];
    let mut pdf = b"%PDF-1.4\n".to_vec();
    let mut offsets = Vec::with_capacity(objects.len());
    for (number, object) in objects.iter().enumerate() {
        offsets.push(pdf.len());
        pdf.extend_from_slice(format!("{} 0 obj\n{object}\nendobj\n", number + 1).as_bytes());
    }
    let xref = pdf.len();
    let mut tail = format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1);
    for offset in offsets {
        tail.push_str(&format!("{offset:010} 00000 n \n"));
    }
    tail.push_str(&format!(
        "trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n",
        objects.len() + 1
    ));
    pdf.extend_from_slice(tail.as_bytes());
    pdf
}

// ---------------------------------------------------------------------------
// Ids and times as the platforms make them

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn random_string(alphabet: &[u8], len: usize) -> String {
    let mut rng = rand::thread_rng();
    (0..len)
        .map(|_| alphabet[rng.gen_range(0..alphabet.len())] as char)
        .collect()
}

/// A Messenger message id: `m_` and 86 URL-safe base64 characters.
fn facebook_mid() -> String {
    let bytes: [u8; 64] = std::array::from_fn(|_| rand::random());
    format!(
        "m_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

/// A LINE message id: an 18-digit number.
fn line_message_id() -> String {
    rand::thread_rng()
        .gen_range(100_000_000_000_000_000u64..1_000_000_000_000_000_000)
        .to_string()
}

fn quote_token() -> String {
    random_string(
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_",
        96,
    )
}

/// A ULID (LINE's `webhookEventId`): 48 bits of milliseconds, 80 random
/// bits, in Crockford's base32.
fn ulid(at_ms: i64) -> String {
    const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    let time = (at_ms.max(0) as u128) & ((1 << 48) - 1);
    let random = rand::random::<u128>() & ((1 << 80) - 1);
    let value = (time << 80) | random;
    (0..26)
        .rev()
        .map(|i| ALPHABET[((value >> (i * 5)) & 31) as usize] as char)
        .collect()
}

// ---------------------------------------------------------------------------
// The shop's administrator, through Omnibox's public API

/// Talks to an Omnibox's GraphQL API over HTTP, as an administrator in the
/// inbox would.
pub struct OmniboxClient {
    http: reqwest::Client,
    url: String,
}

impl OmniboxClient {
    /// A client of the Omnibox at `url` (`http://host:port`).
    pub fn new(url: &str) -> Result<Self, SimulatorError> {
        Ok(Self {
            http: local_client()?,
            url: url.trim_end_matches('/').to_owned(),
        })
    }

    /// Runs a GraphQL operation with `token`; its `data`, or the errors'
    /// messages (with their codes).
    pub async fn graphql(
        &self,
        token: &str,
        query: &str,
        variables: Value,
    ) -> Result<Value, SimulatorError> {
        let body = json!({ "query": query, "variables": variables }).to_string();
        let response = self
            .http
            .post(format!("{}/graphql", self.url))
            .bearer_auth(token)
            .header(header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await?;
        let status = response.status();
        let bytes = response.bytes().await?;
        let answer: Value = serde_json::from_slice(&bytes).map_err(|_| {
            SimulatorError::GraphQl(format!(
                "HTTP {status}: {}",
                String::from_utf8_lossy(&bytes)
                    .chars()
                    .take(200)
                    .collect::<String>()
            ))
        })?;
        if let Some(errors) = answer["errors"].as_array().filter(|e| !e.is_empty()) {
            let messages: Vec<String> = errors
                .iter()
                .map(|e| {
                    format!(
                        "{} ({})",
                        e["message"].as_str().unwrap_or("an error"),
                        e["extensions"]["code"].as_str().unwrap_or("no code")
                    )
                })
                .collect();
            return Err(SimulatorError::GraphQl(messages.join("; ")));
        }
        Ok(answer["data"].clone())
    }

    /// Adds a member (`role`: AGENT, ADMIN, …); their token.
    pub async fn add_member(
        &self,
        token: &str,
        email: &str,
        role: &str,
    ) -> Result<String, SimulatorError> {
        let data = self
            .graphql(
                token,
                "mutation($email: String!, $role: Role!) { addMember(email: $email, role: $role) { token } }",
                json!({ "email": email, "role": role }),
            )
            .await?;
        data["addMember"]["token"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| SimulatorError::GraphQl("addMember answered no token".into()))
    }

    /// Connects the simulator's LINE Official Account and Facebook page with
    /// `connectChannel` (so Omnibox checks their tokens with the
    /// simulator); where their traffic must go.
    pub async fn connect_channels(
        &self,
        token: &str,
        simulator: &Simulator,
    ) -> Result<Target, SimulatorError> {
        const CONNECT: &str =
            "mutation($input: ConnectChannelInput!) { connectChannel(input: $input) { id externalId } }";
        let accounts = simulator.accounts();
        let line = self
            .graphql(
                token,
                CONNECT,
                json!({ "input": {
                    "kind": "LINE",
                    "externalId": accounts.line_bot_user_id,
                    "name": accounts.line_name,
                    "accessToken": accounts.line_token,
                    "channelSecret": accounts.line_channel_secret,
                } }),
            )
            .await?;
        let line_channel_id = line["connectChannel"]["id"]
            .as_str()
            .and_then(|id| Uuid::parse_str(id).ok())
            .ok_or_else(|| SimulatorError::GraphQl("connectChannel answered no id".into()))?;
        self.graphql(
            token,
            CONNECT,
            json!({ "input": {
                "kind": "FACEBOOK",
                "externalId": accounts.page_id,
                "name": accounts.page_name,
                "accessToken": accounts.page_token,
            } }),
        )
        .await?;
        Ok(Target {
            omnibox_url: self.url.clone(),
            facebook_app_secret: accounts.app_secret.clone(),
            page_id: accounts.page_id.clone(),
            line_channel_id,
            line_channel_secret: accounts.line_channel_secret.clone(),
            line_bot_user_id: accounts.line_bot_user_id.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use omnibox_platforms::client::http_client;
    use omnibox_platforms::facebook::{self, GraphClient};
    use omnibox_platforms::line::{self, LineClient};

    use super::*;

    fn target(accounts: &Accounts, omnibox_url: &str) -> Target {
        Target {
            omnibox_url: omnibox_url.to_owned(),
            facebook_app_secret: accounts.app_secret.clone(),
            page_id: accounts.page_id.clone(),
            line_channel_id: Uuid::new_v4(),
            line_channel_secret: accounts.line_channel_secret.clone(),
            line_bot_user_id: accounts.line_bot_user_id.clone(),
        }
    }

    /// Every webhook of `webhooks`, checked and read as Omnibox does.
    fn read_all(webhooks: &[Webhook], target: &Target) -> (Vec<facebook::Event>, Vec<line::Event>) {
        let (mut facebook_events, mut line_events) = (Vec::new(), Vec::new());
        for webhook in webhooks {
            if webhook.path == "/webhooks/facebook" {
                assert_eq!(webhook.signature_header, "x-hub-signature-256");
                omnibox_platforms::verify_facebook_signature(
                    target.facebook_app_secret.as_bytes(),
                    Some(&webhook.signature),
                    &webhook.body,
                )
                .expect("a valid Facebook signature");
                assert!(webhook.body.is_ascii(), "Meta escapes non-ASCII");
                facebook_events.extend(facebook::parse_webhook(&webhook.body).expect("parses"));
            } else {
                assert_eq!(
                    webhook.path,
                    format!("/webhooks/line/{}", target.line_channel_id)
                );
                omnibox_platforms::verify_line_signature(
                    target.line_channel_secret.as_bytes(),
                    Some(&webhook.signature),
                    &webhook.body,
                )
                .expect("a valid LINE signature");
                let parsed = line::parse_webhook(&webhook.body).expect("parses");
                assert_eq!(parsed.destination, target.line_bot_user_id);
                line_events.extend(parsed.events);
            }
        }
        (facebook_events, line_events)
    }

    #[test]
    fn the_seed_is_signed_and_reads_as_platform_traffic() {
        let accounts = Accounts::generate();
        let target = target(&accounts, "http://127.0.0.1:1");
        let cdn = "http://127.0.0.1:2";
        let now = 1_795_400_000_000;
        let mut world = World::default();
        let webhooks = seed_webhooks(&mut world, &target, cdn, now);
        let (facebook_events, line_events) = read_all(&webhooks, &target);

        // Facebook: texts in several languages, an image on the CDN, a
        // sticker, and the page's own reply from another app.
        let mut texts = Vec::new();
        let mut last_by_psid: HashMap<String, i64> = HashMap::new();
        let mut images = 0;
        let mut stickers = 0;
        let mut page_replies = 0;
        for event in &facebook_events {
            assert_eq!(event.page_id, accounts.page_id);
            let at = event.timestamp.expect("timestamped").timestamp_millis();
            match &event.kind {
                facebook::EventKind::Message { psid, message } => {
                    texts.extend(message.text.clone());
                    let last = last_by_psid.entry(psid.clone()).or_insert(at);
                    *last = (*last).max(at);
                    for attachment in &message.attachments {
                        match attachment.kind {
                            facebook::AttachmentKind::Image => {
                                images += 1;
                                let url = attachment.url.as_deref().expect("url");
                                assert!(url.starts_with(&format!("{cdn}/cdn/")), "{url}");
                            }
                            facebook::AttachmentKind::Sticker => stickers += 1,
                            ref other => panic!("unexpected {other:?}"),
                        }
                    }
                }
                facebook::EventKind::Echo {
                    app_id, metadata, ..
                } => {
                    assert_eq!(*app_id, Some(PAGE_INBOX_APP_ID));
                    assert_eq!(*metadata, None);
                    page_replies += 1;
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        assert!(images >= 1 && stickers >= 1 && page_replies == 1);
        for sample in ["สวัสดี", "¡Hola!", "Hi!", "Bonjour", "💚"] {
            assert!(
                texts.iter().any(|t| t.contains(sample)),
                "{sample} in {texts:?}"
            );
        }
        // One Facebook customer last wrote 30 hours ago, one 8 days ago.
        let ages: Vec<i64> = last_by_psid.values().map(|at| now - at).collect();
        assert!(
            ages.iter()
                .any(|age| (24 * HOUR_MS + 1..7 * DAY_MS).contains(age)),
            "{ages:?}"
        );
        assert!(ages.iter().any(|age| *age > 7 * DAY_MS), "{ages:?}");
        assert!(ages.iter().any(|age| *age < HOUR_MS), "{ages:?}");
        assert_eq!(world.last_customer_message.len(), last_by_psid.len());

        // LINE: texts (Japanese, a LINE emoji), an image and a file served
        // by the content host, a sticker, a follow.
        let (mut image, mut file, mut sticker, mut follow, mut japanese, mut emoji) =
            (false, false, false, false, false, false);
        for event in &line_events {
            assert!(event.reply_token.is_some());
            assert_eq!(event.webhook_event_id.len(), 26);
            match &event.kind {
                line::EventKind::Message(message) => match &message.content {
                    line::MessageContent::Text(text) => {
                        japanese |= text.text.contains("こんにちは");
                        emoji |= !text.emojis.is_empty();
                    }
                    line::MessageContent::Image(media) => {
                        assert_eq!(media.content_provider, line::ContentProvider::Line);
                        assert!(matches!(
                            world.contents.get(&message.id),
                            Some(Content::Image(_))
                        ));
                        image = true;
                    }
                    line::MessageContent::File(f) => {
                        assert_eq!(f.file_size, order_pdf().len() as u64);
                        assert!(f.file_name.ends_with(".pdf"));
                        assert!(matches!(
                            world.contents.get(&message.id),
                            Some(Content::OrderPdf)
                        ));
                        file = true;
                    }
                    line::MessageContent::Sticker(_) => sticker = true,
                    other => panic!("unexpected {other:?}"),
                },
                line::EventKind::Follow { is_unblocked } => follow = !is_unblocked,
                other => panic!("unexpected {other:?}"),
            }
        }
        assert!(image && file && sticker && follow && japanese && emoji);
        assert_eq!(world.reply_tokens.len(), line_events.len());

        // Oldest first, as a platform would have sent them.
        let times: Vec<i64> = SEED.iter().map(|s| now - s.ago_ms).collect();
        assert!(times.windows(2).all(|w| w[0] <= w[1]));
    }

    #[test]
    fn every_trickle_and_answer_message_reads_as_platform_traffic() {
        let accounts = Accounts::generate();
        let target = target(&accounts, "http://127.0.0.1:1");
        let mut world = World::default();
        let mut webhooks: Vec<Webhook> = TRICKLE
            .iter()
            .filter_map(|(customer, says)| {
                world.customer_webhook(&target, "http://127.0.0.1:2", customer, *says, 1_000)
            })
            .collect();
        assert_eq!(webhooks.len(), TRICKLE.len());
        for customer in CUSTOMERS {
            for answer in customer.answers {
                webhooks.extend(world.customer_webhook(
                    &target,
                    "http://127.0.0.1:2",
                    customer,
                    Says::Text(answer),
                    2_000,
                ));
            }
        }
        let (facebook_events, line_events) = read_all(&webhooks, &target);
        assert!(!facebook_events.is_empty() && !line_events.is_empty());
        // The customers whose windows the seed ages stay silent.
        assert!(!TRICKLE
            .iter()
            .any(|(c, _)| std::ptr::eq(*c, &JAMES) || std::ptr::eq(*c, &MARIE)));
    }

    #[test]
    fn facebook_bodies_are_escaped_as_meta_escapes_them() {
        let body = meta_json(&json!({ "text": "ขอบคุณ 🙏 a/b \\/ \"q\"" }));
        let text = String::from_utf8(body.clone()).expect("ASCII");
        assert!(text.contains("\\u0e02"), "{text}");
        assert!(text.contains("\\ud83d\\ude4f"), "{text}");
        assert!(text.contains("a\\/b"), "{text}");
        let back: Value = serde_json::from_slice(&body).expect("JSON");
        assert_eq!(back["text"], "ขอบคุณ 🙏 a/b \\/ \"q\"");
    }

    #[test]
    fn ids_look_like_the_platforms_ids() {
        let ulid = ulid(1_795_400_411_093);
        assert_eq!(ulid.len(), 26);
        assert!(ulid.chars().all(|c| c.is_ascii_alphanumeric()));
        assert_eq!(facebook_mid().len(), 88);
        assert_eq!(line_message_id().len(), 18);
        let accounts = Accounts::generate();
        for id in CUSTOMERS
            .iter()
            .filter(|c| c.platform == Platform::Line)
            .map(|c| c.id)
            .chain([accounts.line_bot_user_id.as_str()])
        {
            assert!(
                id.len() == 33
                    && id.starts_with('U')
                    && id[1..].bytes().all(|b| b.is_ascii_hexdigit()),
                "{id}"
            );
        }
        for customer in CUSTOMERS
            .iter()
            .filter(|c| c.platform == Platform::Facebook)
        {
            assert!(
                customer.id.len() == 16 && customer.id.bytes().all(|b| b.is_ascii_digit()),
                "{}",
                customer.id
            );
        }
    }

    #[test]
    fn pictures_are_pngs_and_the_order_is_a_pdf() {
        let bytes = picture(64, 48, "elephant-mug").expect("encodes");
        let decoder = png::Decoder::new(std::io::Cursor::new(bytes.clone()));
        let reader = decoder.read_info().expect("a PNG");
        assert_eq!((reader.info().width, reader.info().height), (64, 48));
        assert_eq!(picture(64, 48, "elephant-mug").expect("encodes"), bytes);
        let pdf = order_pdf();
        let text = String::from_utf8(pdf.clone()).expect("ASCII");
        assert!(text.starts_with("%PDF-1.4\n") && text.ends_with("%%EOF\n"));
        // The cross-reference table points at each object.
        let xref_at: usize = text
            .rsplit("startxref\n")
            .next()
            .and_then(|rest| rest.lines().next())
            .and_then(|n| n.parse().ok())
            .expect("startxref");
        assert!(text[xref_at..].starts_with("xref\n"));
        for (number, line) in text[xref_at..].lines().skip(3).take(5).enumerate() {
            let offset: usize = line[..10].parse().expect("offset");
            assert!(
                text[offset..].starts_with(&format!("{} 0 obj", number + 1)),
                "{line}"
            );
        }
    }

    #[tokio::test]
    async fn the_simulator_answers_omnibox_clients_as_the_platforms_do() {
        let accounts = Accounts::generate();
        let simulator = Simulator::start(accounts.clone(), None)
            .await
            .expect("start");
        let http = http_client(Duration::from_secs(5)).expect("client");
        let graph = GraphClient::new(http.clone(), &simulator.graph_url());
        let line = LineClient::new(http, simulator.url(), simulator.url());

        // Facebook: the page token, and only it.
        let page = graph
            .page(&accounts.page_id, &accounts.page_token)
            .await
            .expect("page");
        assert_eq!(
            (page.id.as_str(), page.name.as_str()),
            (accounts.page_id.as_str(), "Baan Suan Ceramics")
        );
        let refused = graph
            .page(&accounts.page_id, "EAABnot-the-token")
            .await
            .expect_err("refused");
        assert!(refused.is_token_rejected(), "{refused}");
        graph
            .subscribe_app(&accounts.page_id, &accounts.page_token)
            .await
            .expect("subscribed");
        let profile = graph
            .user_profile(LUCIA.id, &accounts.page_token)
            .await
            .expect("profile");
        assert_eq!(profile.name.as_deref(), Some("Lucía Fernández"));
        assert!(profile
            .profile_pic
            .is_some_and(|url| url.starts_with(simulator.url())));

        // Outside the window (nobody wrote yet), Meta refuses with code 10.
        let outside = graph
            .send(
                &accounts.page_id,
                &accounts.page_token,
                &json!({ "recipient": { "id": LUCIA.id }, "messaging_type": "RESPONSE", "message": { "text": "Hi" } }),
            )
            .await
            .expect_err("outside the window");
        assert!(
            matches!(&outside, omnibox_platforms::client::PlatformError::Facebook { error, .. } if error.code == 10 && error.error_subcode == Some(2_018_278)),
            "{outside}"
        );

        // LINE: the channel token, and only it.
        let bot = line.bot_info(&accounts.line_token).await.expect("bot");
        assert_eq!(bot.user_id, accounts.line_bot_user_id);
        let refused = line.bot_info("not-the-token").await.expect_err("refused");
        assert!(refused.is_token_rejected(), "{refused}");
        let profile = line
            .profile(SAKURA.id, &accounts.line_token)
            .await
            .expect("profile");
        assert_eq!(
            (profile.display_name.as_str(), profile.language.as_deref()),
            ("田中さくら", Some("ja"))
        );

        // What the seed sent is served: LINE content and the CDN's pictures.
        let target = target(&accounts, "http://127.0.0.1:1");
        let webhooks = seed_webhooks(
            &mut simulator.shared.world(),
            &target,
            simulator.url(),
            now_ms(),
        );
        let (facebook_events, line_events) = read_all(&webhooks, &target);
        let mut reply_token = None;
        for event in &line_events {
            let line::EventKind::Message(message) = &event.kind else {
                continue;
            };
            let expected = match message.content {
                line::MessageContent::Image(_) => "image/png",
                line::MessageContent::File(_) => "application/pdf",
                _ => {
                    reply_token = reply_token.or(event.reply_token.clone());
                    continue;
                }
            };
            let omnibox_platforms::line::Content::Ready(download) = line
                .content(&message.id, &accounts.line_token, 1 << 20)
                .await
                .expect("content")
            else {
                panic!("content not ready");
            };
            assert_eq!(download.content_type.as_deref(), Some(expected));
            assert!(!download.bytes.is_empty());
        }
        let fetcher = omnibox_platforms::untrusted::UntrustedFetcher::new(
            Duration::from_secs(5),
            Some(simulator.url().to_owned()),
        )
        .expect("fetcher");
        let image_url = facebook_events
            .iter()
            .find_map(|event| match &event.kind {
                facebook::EventKind::Message { message, .. } => message
                    .attachments
                    .iter()
                    .find(|a| a.kind == facebook::AttachmentKind::Image)
                    .and_then(|a| a.url.clone()),
                _ => None,
            })
            .expect("an image");
        let image = fetcher.download(&image_url, 1 << 20).await.expect("image");
        assert_eq!(image.content_type.as_deref(), Some("image/png"));
        png::Decoder::new(std::io::Cursor::new(image.bytes))
            .read_info()
            .expect("a PNG");

        // Reply tokens work once; a push with a retry key is taken once.
        let reply_token = reply_token.expect("a reply token");
        let text = [json!({ "type": "text", "text": "ありがとうございます" })];
        let sent = line
            .reply(&accounts.line_token, &reply_token, &text)
            .await
            .expect("reply");
        assert_eq!(sent.len(), 1);
        let used = line
            .reply(&accounts.line_token, &reply_token, &text)
            .await
            .expect_err("a used token");
        assert!(
            matches!(&used, omnibox_platforms::client::PlatformError::Line { status: 400, error } if error.message == "Invalid reply token"),
            "{used}"
        );
        let key = Uuid::new_v4();
        let first = line
            .push(&accounts.line_token, SAKURA.id, &text, key)
            .await
            .expect("push");
        let again = line
            .push(&accounts.line_token, SAKURA.id, &text, key)
            .await
            .expect("a repeat counts as sent");
        assert_eq!(first, again);
        simulator.stop().await;
    }

    /// A stand-in Omnibox that records the webhooks it receives.
    async fn receiver() -> (String, Arc<Mutex<Vec<(HeaderMap, Bytes)>>>) {
        let received: Arc<Mutex<Vec<(HeaderMap, Bytes)>>> = Arc::default();
        let sink = received.clone();
        let app = Router::new().route(
            "/webhooks/{*rest}",
            post(move |headers: HeaderMap, body: Bytes| {
                let sink = sink.clone();
                async move {
                    sink.lock().expect("lock").push((headers, body));
                    StatusCode::OK
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        (url, received)
    }

    #[tokio::test]
    async fn sends_are_echoed_with_their_metadata_and_the_customer_answers() {
        let (omnibox_url, received) = receiver().await;
        let accounts = Accounts::generate();
        let simulator = Simulator::start(accounts.clone(), Some(Duration::from_millis(100)))
            .await
            .expect("start");
        let target = target(&accounts, &omnibox_url);
        simulator.send_seed(&target).await.expect("seed");
        let seeded = received.lock().expect("lock").len();
        assert_eq!(seeded, SEED.len());

        let graph = GraphClient::new(
            http_client(Duration::from_secs(5)).expect("client"),
            &simulator.graph_url(),
        );
        let metadata = format!("omnibox:msg:{}", Uuid::new_v4());
        let sent = graph
            .send(
                &accounts.page_id,
                &accounts.page_token,
                &json!({
                    "recipient": { "id": NATTAYA.id },
                    "messaging_type": "RESPONSE",
                    "message": { "text": "มีค่ะ 😊" },
                    "metadata": metadata,
                }),
            )
            .await
            .expect("sent");

        // The echo, the receipts and the customer's answer arrive, signed.
        let deadline = Instant::now() + Duration::from_secs(10);
        let events = loop {
            let bodies: Vec<(HeaderMap, Bytes)> = received.lock().expect("lock")[seeded..].to_vec();
            let mut events = Vec::new();
            for (headers, body) in &bodies {
                omnibox_platforms::verify_facebook_signature(
                    accounts.app_secret.as_bytes(),
                    headers
                        .get("x-hub-signature-256")
                        .and_then(|v| v.to_str().ok()),
                    body,
                )
                .expect("signed");
                events.extend(facebook::parse_webhook(body).expect("parses"));
            }
            if events.len() >= 4 || Instant::now() > deadline {
                break events;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let echo = events
            .iter()
            .find_map(|event| match &event.kind {
                facebook::EventKind::Echo {
                    psid,
                    app_id,
                    metadata,
                    message,
                } => Some((psid, app_id, metadata, message)),
                _ => None,
            })
            .expect("an echo");
        assert_eq!(echo.0, NATTAYA.id);
        assert_eq!(*echo.1, Some(accounts.app_id));
        assert_eq!(echo.2.as_deref(), Some(metadata.as_str()));
        assert_eq!(echo.3.mid, sent.message_id);
        assert_eq!(echo.3.text.as_deref(), Some("มีค่ะ 😊"));
        assert!(events.iter().any(|e| matches!(&e.kind,
            facebook::EventKind::Delivery { mids, .. } if mids == &vec![sent.message_id.clone()])));
        assert!(events
            .iter()
            .any(|e| matches!(&e.kind, facebook::EventKind::Read { .. })));
        assert!(events.iter().any(|e| matches!(&e.kind,
            facebook::EventKind::Message { psid, message } if psid == NATTAYA.id && message.text.as_deref() == Some(NATTAYA.answers[0]))));
        simulator.stop().await;
    }
}
