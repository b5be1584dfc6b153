//! The Graph API calls a channel needs: checking a page token and
//! (un)subscribing the page to our app's webhook fields.

use reqwest::{Method, Url};
use serde::Deserialize;

use crate::client::{facebook_answer, PlatformError};

/// The webhook fields Omnibox subscribes a page to.
pub const SUBSCRIBED_FIELDS: &str =
    "messages,messaging_postbacks,message_echoes,message_deliveries,message_reads";

/// A page as the Graph API describes it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct PageInfo {
    pub id: String,
    pub name: String,
}

/// A Messenger user as the User Profile API describes them.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct UserProfile {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub first_name: Option<String>,
    #[serde(default)]
    pub last_name: Option<String>,
    #[serde(default)]
    pub profile_pic: Option<String>,
}

/// The Send API's answer.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct SendResult {
    #[serde(default)]
    pub recipient_id: Option<String>,
    pub message_id: String,
}

#[derive(Deserialize)]
struct Success {
    #[serde(default)]
    success: bool,
}

/// A Graph API client rooted at a versioned base URL
/// (`https://graph.facebook.com/v25.0`, or a local stand-in in tests).
#[derive(Clone, Debug)]
pub struct GraphClient {
    http: reqwest::Client,
    base: String,
}

impl GraphClient {
    pub fn new(http: reqwest::Client, base_url: &str) -> Self {
        Self {
            http,
            base: base_url.trim_end_matches('/').to_owned(),
        }
    }

    fn url(&self, segments: &[&str]) -> Result<Url, PlatformError> {
        let mut url = Url::parse(&self.base).map_err(|e| PlatformError::UnexpectedAnswer {
            status: 0,
            reason: format!("the Graph API base URL is invalid: {e}"),
        })?;
        url.path_segments_mut()
            .map_err(|()| PlatformError::UnexpectedAnswer {
                status: 0,
                reason: "the Graph API base URL cannot take a path".into(),
            })?
            .extend(segments);
        Ok(url)
    }

    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        method: Method,
        url: Url,
        token: &str,
    ) -> Result<T, PlatformError> {
        let response = self
            .http
            .request(method, url)
            .bearer_auth(token)
            .send()
            .await
            .map_err(PlatformError::unreachable)?;
        facebook_answer(response).await
    }

    /// The page `page_id` as `token` sees it: proves the token is a working
    /// token for that page.
    pub async fn page(&self, page_id: &str, token: &str) -> Result<PageInfo, PlatformError> {
        let mut url = self.url(&[page_id])?;
        url.query_pairs_mut().append_pair("fields", "id,name");
        self.call(Method::GET, url, token).await
    }

    /// The customer `psid` as the page sees them (name, picture; the picture
    /// URL expires).
    pub async fn user_profile(
        &self,
        psid: &str,
        token: &str,
    ) -> Result<UserProfile, PlatformError> {
        let mut url = self.url(&[psid])?;
        url.query_pairs_mut()
            .append_pair("fields", "first_name,last_name,name,profile_pic");
        self.call(Method::GET, url, token).await
    }

    /// Sends one message through the Send API (`POST /{page-id}/messages`).
    /// `body` is the Send API request (recipient, messaging_type, tag,
    /// message, metadata); the answer is the message id.
    pub async fn send(
        &self,
        page_id: &str,
        token: &str,
        body: &serde_json::Value,
    ) -> Result<SendResult, PlatformError> {
        let url = self.url(&[page_id, "messages"])?;
        let response = self
            .http
            .post(url)
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .map_err(PlatformError::unreachable)?;
        facebook_answer(response).await
    }

    /// Subscribes the page to our app's webhook fields.
    pub async fn subscribe_app(&self, page_id: &str, token: &str) -> Result<(), PlatformError> {
        let mut url = self.url(&[page_id, "subscribed_apps"])?;
        url.query_pairs_mut()
            .append_pair("subscribed_fields", SUBSCRIBED_FIELDS);
        self.expect_success(Method::POST, url, token).await
    }

    /// Stops the page's webhooks to our app.
    pub async fn unsubscribe_app(&self, page_id: &str, token: &str) -> Result<(), PlatformError> {
        let url = self.url(&[page_id, "subscribed_apps"])?;
        self.expect_success(Method::DELETE, url, token).await
    }

    async fn expect_success(
        &self,
        method: Method,
        url: Url,
        token: &str,
    ) -> Result<(), PlatformError> {
        let answer: Success = self.call(method, url, token).await?;
        if answer.success {
            Ok(())
        } else {
            Err(PlatformError::UnexpectedAnswer {
                status: 200,
                reason: "the Graph API did not report success".into(),
            })
        }
    }
}
