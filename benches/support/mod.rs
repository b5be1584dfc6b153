//! What the end-to-end benchmarks share: an application on a fresh
//! database, and Facebook pages connected straight through their command.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use omnibox_api::{AppState, Config};
use omnibox_app::commands::{execute, Actor};
use omnibox_app::services::bootstrap::Bootstrapped;
use omnibox_domain::channel::{
    self, page_reservation_id, Channel, ChannelCommand, PageReservation, Requester, SecretRef,
};
use omnibox_domain::ids::ChannelId;
use omnibox_domain::org::Role;
use omnibox_domain::{ChannelKind, SystemClock};
use omnibox_store::testing::{Backend, TestDatabase};

/// The server's allocator (see `src/main.rs`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

pub const APP_SECRET: &str = "bench-app-secret";

/// The application on a fresh database of `backend`, its background work
/// started; `extra` adds or overrides environment variables.
pub async fn open_app(
    backend: Backend,
    extra: &[(&str, &str)],
) -> Option<(TestDatabase, AppState)> {
    let database = TestDatabase::create(backend).await?;
    let mut vars: HashMap<String, String> = [
        ("OMNIBOX_DATABASE_URL", database.url.as_str()),
        (
            "OMNIBOX_SECRET_KEY",
            "dGVzdC1rZXktMzItYnl0ZXMtbG9uZy0tLS0tLS0tLS0=",
        ),
        ("OMNIBOX_FACEBOOK_APP_SECRET", APP_SECRET),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    vars.extend(
        extra
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    let config = Config::from_lookup(|name| vars.get(name).cloned()).expect("config");
    let app = AppState::open(config, Arc::new(SystemClock))
        .await
        .expect("open");
    app.start_background();
    Some((database, app))
}

/// Connects Facebook page `page` to `owner`'s organization through the
/// channel command (no Graph API round trip: the benchmarks measure what
/// follows), and waits until the read models show it.
pub async fn connect_page(app: &AppState, owner: &Bootstrapped, page: &str) -> ChannelId {
    let token = app
        .secrets
        .put("bench token", &omnibox_store::secrets::Secret::new("bench"))
        .await
        .expect("secret");
    // The page's reservation first, as `connectChannel` does: webhooks find
    // their channel through it.
    let fresh = ChannelId::generate();
    let now = chrono::Utc::now();
    let claimed = std::sync::Mutex::new(fresh);
    execute::<PageReservation, _>(
        &*app.store,
        page_reservation_id(page),
        &Actor::system("bench"),
        |reservation| {
            let (events, channel_id) =
                channel::claim_page(reservation, page, owner.org_id, fresh, now)?;
            *claimed.lock().unwrap_or_else(|p| p.into_inner()) = channel_id;
            Ok::<_, channel::ChannelError>(events)
        },
    )
    .await
    .expect("claim the page");
    let channel_id = claimed.into_inner().unwrap_or_else(|p| p.into_inner());
    let command = ChannelCommand::Connect {
        by: Requester {
            member_id: owner.user_id,
            org_id: owner.org_id,
            role: Role::Owner,
        },
        channel_id,
        kind: ChannelKind::Facebook,
        external_id: page.into(),
        name: format!("Page {page}"),
        access_token: SecretRef {
            id: token.id,
            fingerprint: token.fingerprint,
        },
        channel_secret: None,
    };
    let connected =
        execute::<Channel, _>(&*app.store, channel_id.0, &Actor::system("bench"), |c| {
            channel::decide(c, command.clone(), now)
        })
        .await
        .expect("connect");
    if let Some(position) = connected.position {
        app.projections
            .catch_up_to(position, Duration::from_secs(30))
            .await
            .expect("catch up");
    }
    channel_id
}
