//! Channels: connect, reauthorize, disconnect; status and the expiry watchlist.

use async_graphql::{Context, Enum, InputObject, Object, Subscription};
use chrono::{DateTime, Utc};
use futures_util::stream::Stream;
use omnibox_app::services::channels::{self as service, ConnectRequest};
use omnibox_app::AppError;
use omnibox_domain::channel::{self as domain, ChannelStatus as DomainStatus};
use omnibox_domain::ids::ChannelId;
use omnibox_projections::channels::{self as read, ChannelRow};
use omnibox_projections::Change;
use uuid::Uuid;

use super::{session, state};
use crate::error::ApiError;

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum ChannelKind {
    Line,
    Facebook,
}

impl From<omnibox_domain::ChannelKind> for ChannelKind {
    fn from(kind: omnibox_domain::ChannelKind) -> Self {
        match kind {
            omnibox_domain::ChannelKind::Line => ChannelKind::Line,
            omnibox_domain::ChannelKind::Facebook => ChannelKind::Facebook,
        }
    }
}

impl From<ChannelKind> for omnibox_domain::ChannelKind {
    fn from(kind: ChannelKind) -> Self {
        match kind {
            ChannelKind::Line => omnibox_domain::ChannelKind::Line,
            ChannelKind::Facebook => omnibox_domain::ChannelKind::Facebook,
        }
    }
}

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum ChannelStatus {
    Connected,
    /// "Connection expired": still receives; replies wait for reauthorization.
    Expired,
    Disconnected,
}

impl From<DomainStatus> for ChannelStatus {
    fn from(status: DomainStatus) -> Self {
        match status {
            DomainStatus::Connected => ChannelStatus::Connected,
            DomainStatus::Expired => ChannelStatus::Expired,
            DomainStatus::Disconnected => ChannelStatus::Disconnected,
        }
    }
}

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum AssignmentMode {
    Off,
    RoundRobin,
}

impl From<domain::AssignmentMode> for AssignmentMode {
    fn from(mode: domain::AssignmentMode) -> Self {
        match mode {
            domain::AssignmentMode::Off => AssignmentMode::Off,
            domain::AssignmentMode::RoundRobin => AssignmentMode::RoundRobin,
        }
    }
}

impl From<AssignmentMode> for domain::AssignmentMode {
    fn from(mode: AssignmentMode) -> Self {
        match mode {
            AssignmentMode::Off => domain::AssignmentMode::Off,
            AssignmentMode::RoundRobin => domain::AssignmentMode::RoundRobin,
        }
    }
}

/// A LINE Official Account or Facebook Page connected to the organization.
pub struct Channel {
    pub row: ChannelRow,
    /// For a channel as it was (time travel): the instant its status is
    /// told at by default.
    pub as_of: Option<DateTime<Utc>>,
}

impl Channel {
    /// The channel as it is now.
    pub fn now(row: ChannelRow) -> Self {
        Self { row, as_of: None }
    }
}

#[Object]
impl Channel {
    async fn id(&self) -> Uuid {
        self.row.id.0
    }

    async fn kind(&self) -> ChannelKind {
        self.row.kind.into()
    }

    /// The page id (Facebook) or the bot user id, the webhooks' `destination` (LINE).
    async fn external_id(&self) -> &str {
        &self.row.external_id
    }

    async fn name(&self) -> &str {
        &self.row.name
    }

    /// The connection's status at `asOf` (default: now). A token past its
    /// 90-day deadline counts as EXPIRED even before the timer records it.
    async fn status(
        &self,
        ctx: &Context<'_>,
        as_of: Option<DateTime<Utc>>,
    ) -> async_graphql::Result<ChannelStatus> {
        let at = match as_of.or(self.as_of) {
            Some(at) => at,
            None => state(ctx)?.clock.now(),
        };
        Ok(self.row.status_at(at).into())
    }

    /// When the Facebook page token stops working unless the channel sends
    /// or is reauthorized first; null for LINE.
    async fn token_expires_at(&self) -> Option<DateTime<Utc>> {
        self.row.token_expires_at
    }

    async fn assignment_mode(&self) -> AssignmentMode {
        self.row.assignment_mode.into()
    }

    /// Where the platform must send this channel's webhooks.
    async fn webhook_url(&self, ctx: &Context<'_>) -> async_graphql::Result<String> {
        let base = &state(ctx)?.config.public_url;
        Ok(match self.row.kind {
            omnibox_domain::ChannelKind::Line => format!("{base}/webhooks/line/{}", self.row.id),
            omnibox_domain::ChannelKind::Facebook => format!("{base}/webhooks/facebook"),
        })
    }
}

#[derive(InputObject)]
pub struct ConnectChannelInput {
    pub kind: ChannelKind,
    /// Facebook: the page id. LINE: the bot user id (checked against the token).
    pub external_id: String,
    pub name: String,
    /// Never stored in plain text, never shown again.
    pub access_token: String,
    /// LINE only: the channel secret that signs webhooks.
    pub channel_secret: Option<String>,
}

#[derive(Default)]
pub struct ChannelsQuery;

#[Object]
impl ChannelsQuery {
    async fn channels(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<Channel>> {
        let me = &session(ctx)?.member;
        let rows = read::channels(&state(ctx)?.db, me.org_id)
            .await
            .map_err(ApiError::from)?;
        Ok(rows.into_iter().map(Channel::now).collect())
    }

    /// One channel of the caller's organization; NOT_FOUND for any other id.
    async fn channel(&self, ctx: &Context<'_>, id: Uuid) -> async_graphql::Result<Option<Channel>> {
        let me = &session(ctx)?.member;
        let row = read::channel(&state(ctx)?.db, me.org_id, ChannelId(id))
            .await
            .map_err(ApiError::from)?;
        match row {
            Some(row) => Ok(Some(Channel::now(row))),
            None => Err(ApiError::App(AppError::NotFound(
                "no such channel in your organization".into(),
            ))
            .into()),
        }
    }

    /// The channel as its events made it up to `at` (time travel): its
    /// name, token deadline and status then; `status` defaults to `at`.
    async fn channel_as_of(
        &self,
        ctx: &Context<'_>,
        id: Uuid,
        at: DateTime<Utc>,
    ) -> async_graphql::Result<Option<Channel>> {
        let me = &session(ctx)?.member;
        let app = state(ctx)?;
        let then = omnibox_app::commands::load_as_of::<omnibox_domain::channel::Channel>(
            &*app.store,
            id,
            at,
        )
        .await
        .map_err(|e| ApiError::internal(format!("{e:?}")))?;
        if then.org_id != Some(me.org_id) {
            return Ok(None);
        }
        let (Some(channel_id), Some(kind), Some(status), Some(authorized_at)) =
            (then.id, then.kind, then.recorded_status, then.authorized_at)
        else {
            return Ok(None);
        };
        let row = ChannelRow {
            id: channel_id,
            org_id: me.org_id,
            kind,
            external_id: then.external_id.clone(),
            name: then.name.clone(),
            recorded_status: status,
            authorized_at,
            last_used_at: then.last_used_at,
            token_expires_at: then.token_expires_at(),
            access_token_secret: then.access_token.as_ref().map(|s| s.id).unwrap_or_default(),
            channel_secret: then.channel_secret.as_ref().map(|s| s.id),
            assignment_mode: then.assignment_mode,
        };
        Ok(Some(Channel {
            row,
            as_of: Some(at),
        }))
    }

    /// The token-expiry watchlist: channels (not disconnected) whose token
    /// expires within `withinDays` of `asOf` (default now), soonest first.
    /// Already-expired tokens are included.
    async fn expiring_channels(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 14)] within_days: i32,
        as_of: Option<DateTime<Utc>>,
    ) -> async_graphql::Result<Vec<Channel>> {
        let me = &session(ctx)?.member;
        let app = state(ctx)?;
        let until = service::watch_until(as_of.unwrap_or_else(|| app.clock.now()), within_days)
            .map_err(ApiError::from)?;
        let rows = read::expiring(&app.db, me.org_id, until)
            .await
            .map_err(ApiError::from)?;
        Ok(rows.into_iter().map(Channel::now).collect())
    }
}

#[derive(Default)]
pub struct ChannelsMutation;

#[Object]
impl ChannelsMutation {
    /// Connects a LINE Official Account or Facebook Page (OWNER or
    /// PRIMARY_ADMIN). The token is checked with the platform first; a
    /// Facebook page belongs to at most one organization, for ever.
    async fn connect_channel(
        &self,
        ctx: &Context<'_>,
        input: ConnectChannelInput,
    ) -> async_graphql::Result<Channel> {
        let request = ConnectRequest {
            kind: input.kind.into(),
            external_id: input.external_id,
            name: input.name,
            access_token: input.access_token,
            channel_secret: input.channel_secret,
        };
        Ok(Channel::now(
            service::connect(state(ctx)?, session(ctx)?, request)
                .await
                .map_err(ApiError::from)?,
        ))
    }

    /// Replaces the channel's token (checked with the platform) and makes it
    /// CONNECTED again; the 90 days start over.
    async fn reauthorize_channel(
        &self,
        ctx: &Context<'_>,
        id: Uuid,
        access_token: String,
    ) -> async_graphql::Result<Channel> {
        Ok(Channel::now(
            service::reauthorize(state(ctx)?, session(ctx)?, ChannelId(id), &access_token)
                .await
                .map_err(ApiError::from)?,
        ))
    }

    /// Stops receiving and sending; conversations and messages stay readable.
    async fn disconnect_channel(
        &self,
        ctx: &Context<'_>,
        id: Uuid,
    ) -> async_graphql::Result<Channel> {
        Ok(Channel::now(
            service::disconnect(state(ctx)?, session(ctx)?, ChannelId(id))
                .await
                .map_err(ApiError::from)?,
        ))
    }

    /// How new conversations of the channel are assigned: by hand (OFF) or
    /// round robin among available agents, each holding at most
    /// `maxOpenPerAgent` open conversations (no cap when null); the others
    /// wait, oldest first. OWNER, PRIMARY_ADMIN and ADMIN only.
    async fn set_assignment_mode(
        &self,
        ctx: &Context<'_>,
        channel_id: Uuid,
        mode: AssignmentMode,
        max_open_per_agent: Option<i32>,
    ) -> async_graphql::Result<Channel> {
        let row = service::set_assignment_mode(
            state(ctx)?,
            session(ctx)?,
            ChannelId(channel_id),
            mode.into(),
            max_open_per_agent,
        )
        .await
        .map_err(ApiError::from)?;
        Ok(Channel::now(row))
    }
}

#[derive(Default)]
pub struct ChannelsSubscription;

#[Subscription]
impl ChannelsSubscription {
    /// Every change to one of the organization's channels (connected,
    /// reauthorized, expired, disconnected, assignment mode), after the read
    /// model shows it.
    async fn channel_updates(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<impl Stream<Item = async_graphql::Result<Channel>>> {
        let org = session(ctx)?.member.org_id;
        Ok(super::live_rows(
            state(ctx)?.clone(),
            super::hub(ctx)?,
            org,
            |change| match change {
                Change::Channel(id) => Some(*id),
                _ => None,
            },
            move |app, _, id| async move {
                read::channel(&app.db, org, id)
                    .await
                    .ok()
                    .flatten()
                    .map(Channel::now)
            },
        ))
    }
}
