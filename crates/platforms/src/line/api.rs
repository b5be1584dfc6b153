//! The LINE Messaging API calls a channel needs.

use serde::Deserialize;

use crate::client::{line_answer, read_limited, Download, PlatformError};

/// A LINE user as the profile API describes them.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Profile {
    pub display_name: String,
    pub user_id: String,
    #[serde(default)]
    pub picture_url: Option<String>,
    #[serde(default)]
    pub language: Option<String>,
}

/// A message LINE accepted.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct SentMessage {
    pub id: String,
    #[serde(default)]
    pub quote_token: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Sent {
    #[serde(default)]
    sent_messages: Vec<SentMessage>,
}

/// What the content endpoint gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    Ready(Download),
    /// 202: LINE is still preparing it (video, audio); ask again later.
    NotReady,
}

/// The bot behind a channel access token (`GET /v2/bot/info`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BotInfo {
    /// The bot's user id: the `destination` of its webhooks.
    pub user_id: String,
    #[serde(default)]
    pub basic_id: Option<String>,
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default)]
    pub picture_url: Option<String>,
}

/// A LINE API client: `api_base` for the Messaging API, `data_base` for
/// content downloads (`https://api.line.me`, `https://api-data.line.me`, or a
/// local stand-in in tests).
#[derive(Clone, Debug)]
pub struct LineClient {
    http: reqwest::Client,
    api_base: String,
    data_base: String,
}

impl LineClient {
    pub fn new(http: reqwest::Client, api_base: &str, data_base: &str) -> Self {
        Self {
            http,
            api_base: api_base.trim_end_matches('/').to_owned(),
            data_base: data_base.trim_end_matches('/').to_owned(),
        }
    }

    /// The content host, for media downloads.
    pub fn data_base(&self) -> &str {
        &self.data_base
    }

    /// The bot `token` belongs to: proves the token works.
    pub async fn bot_info(&self, token: &str) -> Result<BotInfo, PlatformError> {
        let response = self
            .http
            .get(format!("{}/v2/bot/info", self.api_base))
            .bearer_auth(token)
            .send()
            .await
            .map_err(PlatformError::unreachable)?;
        line_answer(response).await
    }

    async fn get<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        token: &str,
    ) -> Result<T, PlatformError> {
        let response = self
            .http
            .get(format!("{}{path}", self.api_base))
            .bearer_auth(token)
            .send()
            .await
            .map_err(PlatformError::unreachable)?;
        line_answer(response).await
    }

    /// A friend's profile (`GET /v2/bot/profile/{userId}`); 404 when the
    /// user is not a friend or blocked the account.
    pub async fn profile(&self, user_id: &str, token: &str) -> Result<Profile, PlatformError> {
        self.get(&format!("/v2/bot/profile/{}", encode(user_id)), token)
            .await
    }

    /// A group member's profile (`GET /v2/bot/group/{groupId}/member/{userId}`).
    pub async fn group_member_profile(
        &self,
        group_id: &str,
        user_id: &str,
        token: &str,
    ) -> Result<Profile, PlatformError> {
        self.get(
            &format!(
                "/v2/bot/group/{}/member/{}",
                encode(group_id),
                encode(user_id)
            ),
            token,
        )
        .await
    }

    /// Replies with a single-use reply token (free of quota).
    pub async fn reply(
        &self,
        token: &str,
        reply_token: &str,
        messages: &[serde_json::Value],
    ) -> Result<Vec<SentMessage>, PlatformError> {
        let response = self
            .http
            .post(format!("{}/v2/bot/message/reply", self.api_base))
            .bearer_auth(token)
            .json(&serde_json::json!({ "replyToken": reply_token, "messages": messages }))
            .send()
            .await
            .map_err(PlatformError::unreachable)?;
        let sent: Sent = line_answer(response).await?;
        Ok(sent.sent_messages)
    }

    /// Pushes to a user, group or room. `retry_key` makes a repeat of an
    /// accepted request answer 409 with the original `sentMessages`, which
    /// counts as success: a retried push is never delivered twice.
    pub async fn push(
        &self,
        token: &str,
        to: &str,
        messages: &[serde_json::Value],
        retry_key: uuid::Uuid,
    ) -> Result<Vec<SentMessage>, PlatformError> {
        let response = self
            .http
            .post(format!("{}/v2/bot/message/push", self.api_base))
            .bearer_auth(token)
            .header("X-Line-Retry-Key", retry_key.to_string())
            .json(&serde_json::json!({ "to": to, "messages": messages }))
            .send()
            .await
            .map_err(PlatformError::unreachable)?;
        if response.status().as_u16() == 409 {
            let body = response.bytes().await.map_err(PlatformError::unreachable)?;
            let sent: Sent = serde_json::from_slice(&body).unwrap_or_default();
            return Ok(sent.sent_messages);
        }
        let sent: Sent = line_answer(response).await?;
        Ok(sent.sent_messages)
    }

    /// A message's media bytes from the content host.
    pub async fn content(
        &self,
        message_id: &str,
        token: &str,
        max_bytes: usize,
    ) -> Result<Content, PlatformError> {
        let response = self
            .http
            .get(format!(
                "{}/v2/bot/message/{}/content",
                self.data_base,
                encode(message_id)
            ))
            .bearer_auth(token)
            .send()
            .await
            .map_err(PlatformError::unreachable)?;
        match response.status().as_u16() {
            202 => Ok(Content::NotReady),
            200 => Ok(Content::Ready(read_limited(response, max_bytes).await?)),
            _ => line_answer::<serde_json::Value>(response)
                .await
                .map(|_| Content::NotReady),
        }
    }
}

/// Platform ids are alphanumeric; anything else is percent-encoded so it can
/// never change the path.
fn encode(segment: &str) -> String {
    segment
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}
