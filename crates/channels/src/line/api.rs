//! The LINE Messaging API calls a channel needs.

use serde::Deserialize;

use crate::client::{line_answer, PlatformError};

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
}
