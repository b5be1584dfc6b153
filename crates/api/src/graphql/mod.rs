//! The GraphQL API: one schema, split by concern.
//!
//! Resolvers find the request's [`Session`] (set by the HTTP layer from the
//! bearer token, or by the WebSocket's `connection_init`), the
//! [`AppState`] and the live hub in the context. Queries read the read
//! models; anything that decides or records goes through `omnibox_app`'s
//! services, whose errors reach the client through `ApiError::from`. A
//! member only ever sees its own organization: every read is scoped by the
//! session's org id, and another organization's ids answer NOT_FOUND.

mod channels;
mod conversations;
pub mod guard;
mod history;
pub mod live;
mod members;
mod qr;
mod replies;
mod templates;

use std::sync::Arc;

use async_graphql::{Context, MergedObject, MergedSubscription, Schema};
use omnibox_app::auth::Session;
use omnibox_app::AppError;

use self::live::LiveHub;
use crate::error::ApiError;
use crate::state::AppState;

pub(crate) use conversations::{Conversation, Message};
pub use members::Member;

#[derive(MergedObject, Default)]
pub struct QueryRoot(
    members::MembersQuery,
    channels::ChannelsQuery,
    conversations::ConversationsQuery,
    templates::TemplatesQuery,
    history::HistoryQuery,
    qr::QrQuery,
);

#[derive(MergedObject, Default)]
pub struct MutationRoot(
    members::MembersMutation,
    channels::ChannelsMutation,
    conversations::ConversationsMutation,
    replies::RepliesMutation,
    templates::TemplatesMutation,
    qr::QrMutation,
);

#[derive(MergedSubscription, Default)]
pub struct SubscriptionRoot(
    members::MembersSubscription,
    channels::ChannelsSubscription,
    conversations::ConversationsSubscription,
);

pub type OmniboxSchema = Schema<QueryRoot, MutationRoot, SubscriptionRoot>;

/// A connection's cost: its page size (`requested`, else `default`) times
/// the cost of what is selected under it. Used in `complexity` attributes.
pub(crate) fn page_cost(requested: Option<i32>, default: i32, selection: usize) -> usize {
    let page = usize::try_from(requested.unwrap_or(default).max(1)).unwrap_or(usize::MAX);
    page.saturating_mul(selection.max(1)).saturating_add(1)
}

/// Refuses a list argument longer than [`guard::MAX_LIST_ARGUMENT`].
pub(crate) fn check_list<T>(name: &str, list: &Option<Vec<T>>) -> Result<(), ApiError> {
    match list {
        Some(items) if items.len() > guard::MAX_LIST_ARGUMENT => {
            Err(ApiError::QueryTooCostly(format!(
                "{name} lists {} ids; at most {} are accepted",
                items.len(),
                guard::MAX_LIST_ARGUMENT
            )))
        }
        _ => Ok(()),
    }
}

pub fn schema(state: Option<AppState>) -> OmniboxSchema {
    let builder = Schema::build(
        QueryRoot::default(),
        MutationRoot::default(),
        SubscriptionRoot::default(),
    )
    // Deep or costly queries are refused before they run (see `guard`).
    .limit_depth(guard::MAX_DEPTH)
    .limit_complexity(guard::MAX_COST)
    .extension(guard::QueryGuard);
    match state {
        // The bus's updates per organization, for subscriptions.
        Some(state) => builder
            .data(LiveHub::new(state.bus.clone()))
            .data(state)
            .finish(),
        None => builder.finish(),
    }
}

/// The schema's SDL, as committed in `schema/schema.graphql`.
pub fn sdl() -> String {
    schema(None).sdl()
}

/// The member making the request, or UNAUTHENTICATED.
pub(crate) fn session<'a>(ctx: &'a Context<'_>) -> Result<&'a Session, ApiError> {
    ctx.data_opt::<Session>()
        .ok_or(ApiError::App(AppError::Unauthenticated))
}

/// `org`'s live updates. A subscriber that falls further behind than the
/// hub holds is not allowed to slow the others or to grow memory: it gets
/// one RESYNC error ("re-query what you show"), then continues live.
pub(crate) fn org_updates(
    hub: &LiveHub,
    org: omnibox_domain::ids::OrgId,
) -> impl futures_util::Stream<Item = Result<Arc<live::Shared>, async_graphql::Error>> + use<> {
    use futures_util::StreamExt;
    let resync = |missed: u64| {
        ApiError::Resync(format!(
            "this subscription fell behind and missed {missed} updates; re-query, then keep listening"
        ))
        .into()
    };
    tokio_stream::wrappers::BroadcastStream::new(hub.subscribe(org)).map(move |item| match item {
        Ok(live::Item::Update(shared)) => Ok(shared),
        Ok(live::Item::Missed(missed))
        | Err(tokio_stream::wrappers::errors::BroadcastStreamRecvError::Lagged(missed)) => {
            Err(resync(missed))
        }
    })
}

/// A subscription's stream: the organization's changes that `pick` selects,
/// each turned into its current row by `load` (rows gone meanwhile are
/// skipped), with RESYNC errors passed through.
pub(crate) fn live_rows<K, T, Fut>(
    app: AppState,
    hub: &LiveHub,
    org: omnibox_domain::ids::OrgId,
    pick: impl Fn(&omnibox_projections::Change) -> Option<K> + Send + 'static,
    load: impl Fn(AppState, Arc<live::Shared>, K) -> Fut + Send + Sync + Clone + 'static,
) -> impl futures_util::Stream<Item = async_graphql::Result<T>>
where
    K: Send + 'static,
    T: Send + 'static,
    Fut: std::future::Future<Output = Option<T>> + Send,
{
    use futures_util::StreamExt;
    org_updates(hub, org)
        .filter_map(move |update| {
            std::future::ready(match update {
                Ok(shared) => pick(&shared.update.change).map(|key| Ok((shared, key))),
                Err(error) => Some(Err(error)),
            })
        })
        .then(move |wanted| {
            let (app, load) = (app.clone(), load.clone());
            async move {
                match wanted {
                    Ok((shared, key)) => load(app, shared, key).await.map(Ok),
                    Err(error) => Some(Err(error)),
                }
            }
        })
        .filter_map(std::future::ready)
}

/// The schema's fan-out of live updates.
pub(crate) fn hub<'a>(ctx: &'a Context<'_>) -> Result<&'a LiveHub, ApiError> {
    ctx.data::<LiveHub>()
        .map_err(|e| ApiError::internal(e.message))
}

pub(crate) fn state<'a>(ctx: &'a Context<'_>) -> Result<&'a AppState, ApiError> {
    ctx.data::<AppState>()
        .map_err(|e| ApiError::internal(e.message))
}
