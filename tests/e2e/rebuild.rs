//! Rebuilding read models from position 0 gives exactly what incremental
//! projection gave, after a realistic, messy history.

use serde_json::json;

use crate::inbound::inbox;
use crate::support::{in_process_on_both_backends, App};

/// Every read-model table, every row, in primary-key order, as text.
async fn dump(app: &App) -> String {
    dump_read_models(&app.state.db).await
}

/// What a rebuild must leave as it found it besides the rows: every index
/// and constraint of every table, by name (later migrations name them).
/// Only this test's own schema: tests share one PostgreSQL database, a
/// schema each, and others create and drop schemas meanwhile.
async fn dump_shape(db: &omnibox_store::Database) -> String {
    let lines: Vec<String> = match db {
        omnibox_store::Database::Sqlite {
            read_pool: pool, ..
        } => sqlx::query_scalar(
            "SELECT type || ' ' || name || ' ' || coalesce(sql, '') FROM sqlite_master
             WHERE type IN ('index', 'table') ORDER BY type, name",
        )
        .fetch_all(pool)
        .await
        .expect("shape"),
        omnibox_store::Database::Postgres { pool } => sqlx::query_scalar(
            "SELECT 'index ' || schemaname || ' ' || indexdef FROM pg_indexes
               WHERE schemaname = current_schema()
             UNION ALL
             SELECT 'constraint ' || conrelid::regclass || ' ' || conname || ' '
                    || pg_get_constraintdef(oid)
               FROM pg_constraint WHERE connamespace = current_schema()::regnamespace
             ORDER BY 1",
        )
        .fetch_all(pool)
        .await
        .expect("shape"),
    };
    lines.iter().map(|line| format!("{line}\n")).collect()
}

/// Every row of the read models of `db`, in key order, as text.
pub(crate) async fn dump_read_models(db: &omnibox_store::Database) -> String {
    use sqlx::Row;
    let tables = [
        ("rm_organizations", "org_id"),
        ("rm_members", "member_id"),
        ("rm_channels", "channel_id"),
        ("rm_conversations", "conversation_id"),
        ("rm_messages", "message_id"),
        ("rm_contacts", "contact_id"),
        ("rm_media", "message_id, idx"),
        ("rm_deliveries", "message_id"),
    ];
    let mut text = String::new();
    for (table, key) in tables {
        text.push_str(&format!("== {table}\n"));
        match db {
            omnibox_store::Database::Sqlite {
                read_pool: pool, ..
            } => {
                let columns: Vec<String> =
                    sqlx::query(&format!("SELECT name FROM pragma_table_info('{table}')"))
                        .fetch_all(pool)
                        .await
                        .expect("columns")
                        .iter()
                        .map(|r| r.get::<String, _>(0))
                        .collect();
                let quoted: Vec<String> = columns.iter().map(|c| format!("quote({c})")).collect();
                let sql = format!(
                    "SELECT {} FROM {table} ORDER BY {key}",
                    quoted.join(" || '|' || ")
                );
                for row in sqlx::query(&sql).fetch_all(pool).await.expect("rows") {
                    text.push_str(&row.get::<String, _>(0));
                    text.push('\n');
                }
            }
            omnibox_store::Database::Postgres { pool } => {
                let sql = format!(
                    "SELECT row_to_json(t)::text FROM (SELECT * FROM {table} ORDER BY {key}) t"
                );
                for row in sqlx::query(&sql).fetch_all(pool).await.expect("rows") {
                    text.push_str(&row.get::<String, _>(0));
                    text.push('\n');
                }
            }
        }
    }
    text
}

async fn a_rebuild_from_zero_equals_incremental_projection(app: App) {
    let inbox = inbox(app, true).await;
    let token = inbox.owner.token.clone();
    inbox
        .app
        .graphql(
            &token,
            "mutation { addMember(email: \"agent@example.com\", role: AGENT) { token } }",
            json!({}),
        )
        .await;
    // Out of order, duplicated, both platforms.
    for file in [
        "facebook/image_attachment.json",
        "facebook/text_message.json",
        "facebook/sticker_transition.json",
        "facebook/echo_message.json",
        "facebook/text_message.json",
        "facebook/multiple_entries_batched.json",
        "facebook/delivery_and_read.json",
        "facebook/postback.json",
        "facebook/image_attachment.json",
    ] {
        assert_eq!(inbox.facebook(file).await, 200, "{file}");
    }
    for file in [
        "line/redelivery.json",
        "line/text_message.json",
        "line/image_message.json",
        "line/follow.json",
        "line/multiple_events.json",
        "line/unfollow.json",
        "line/group_message.json",
        "line/postback.json",
    ] {
        assert_eq!(inbox.line(file).await, 200, "{file}");
    }
    inbox.app.settle().await;
    let list = inbox
        .app
        .graphql(
            &token,
            "{ conversations(first: 50) { nodes { id } } me { id } }",
            json!({}),
        )
        .await;
    let me = list["data"]["me"]["id"].clone();
    let ids: Vec<_> = list["data"]["conversations"]["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .map(|n| n["id"].clone())
        .collect();
    for (n, id) in ids.iter().enumerate() {
        let (mutation, variables) = match n % 3 {
            0 => (
                "mutation($c: UUID!, $a: UUID!) { assignConversation(conversationId: $c, agentId: $a) { id } }",
                json!({ "c": id, "a": me }),
            ),
            1 => ("mutation($c: UUID!) { markRead(conversationId: $c) { id } }", json!({ "c": id })),
            _ => ("mutation($c: UUID!) { resolveConversation(conversationId: $c) { id } }", json!({ "c": id })),
        };
        let answer = inbox.app.graphql(&token, mutation, variables).await;
        assert!(answer["errors"].is_null(), "{answer}");
    }
    // Replies: one delivered by the platform, one still waiting.
    inbox.app.clock.set(
        chrono::DateTime::parse_from_rfc3339("2026-11-23T02:30:00Z")
            .expect("instant")
            .to_utc(),
    );
    let reply = "mutation($i: SendReplyInput!) { sendReply(input: $i) { id } }";
    for round in ["delivered", "waiting"] {
        let mut queued = 0;
        // Some conversations refuse (window closed, channel rules): fine.
        for id in &ids {
            let bubbles =
                json!([{ "text": format!("{round} reply") }, { "text": "Anything else?" }]);
            let answer = inbox
                .app
                .graphql(
                    &token,
                    reply,
                    json!({ "i": { "conversationId": id, "bubbles": bubbles } }),
                )
                .await;
            queued += usize::from(answer["errors"].is_null());
        }
        assert!(queued > 0, "no {round} reply was queued");
        if round == "delivered" {
            inbox.app.settle().await;
            omnibox_app::reactors::delivery::DeliveryWorker::with_backoff(
                std::time::Duration::ZERO,
            )
            .run_once(&inbox.app.state)
            .await
            .expect("delivery");
        }
    }
    omnibox_app::reactors::media::MediaFetcher::default()
        .run_once(&inbox.app.state)
        .await
        .expect("media");
    omnibox_app::reactors::profiles::ProfileFetcher::default()
        .run_once(&inbox.app.state)
        .await
        .expect("profiles");
    // Time passes; a token idles out; a channel is disconnected.
    inbox.app.clock.advance(chrono::Duration::days(91));
    omnibox_app::services::channels::expire_due_channels(&inbox.app.state)
        .await
        .expect("expiry");
    inbox
        .app
        .graphql(
            &token,
            "mutation($id: UUID!) { disconnectChannel(id: $id) { id } }",
            json!({ "id": inbox.line_channel }),
        )
        .await;
    inbox.app.settle().await;

    let incremental = dump(&inbox.app).await;
    assert!(
        incremental.matches('\n').count() > 40,
        "a realistic history:\n{incremental}"
    );
    let shape = dump_shape(&inbox.app.state.db).await;
    assert!(shape.contains("rm_messages_by_platform_id"), "{shape}");
    for runner in inbox.app.state.projections.runners() {
        runner.rebuild().await.expect("rebuild");
    }
    let rebuilt = dump(&inbox.app).await;
    assert!(
        incremental == rebuilt,
        "rebuild differs:\n--- incremental\n{incremental}\n--- rebuilt\n{rebuilt}"
    );
    let rebuilt_shape = dump_shape(&inbox.app.state.db).await;
    assert!(
        shape == rebuilt_shape,
        "the rebuild changed the tables' shape:\n--- before\n{shape}\n--- after\n{rebuilt_shape}"
    );
}

/// Projectors following the log write their checkpoint only with batches
/// they have something to do for. A restart then re-reads the batches it
/// skipped, and must neither apply anything twice nor miss anything.
async fn a_restart_after_following_the_log_applies_nothing_twice(app: App) {
    let inbox = inbox(app, true).await;
    let add = |email: &'static str| {
        let (app, token) = (&inbox.app, inbox.owner.token.clone());
        async move {
            let answer = app
                .graphql(
                    &token,
                    "mutation($e: String!) { addMember(email: $e, role: AGENT) { token } }",
                    json!({ "e": email }),
                )
                .await;
            assert!(answer["errors"].is_null(), "{answer}");
        }
    };
    add("first@example.com").await;
    // Nothing here for the members projection: its checkpoint stays behind.
    assert_eq!(inbox.facebook("facebook/text_message.json").await, 200);
    assert_eq!(inbox.line("line/text_message.json").await, 200);
    inbox.app.settle().await;
    let before = dump(&inbox.app).await;
    assert!(before.contains("first@example.com"), "{before}");
    let restarted = inbox.app.reopen().await;
    assert_eq!(
        dump(&inbox.app).await,
        before,
        "the restart changed nothing"
    );
    restarted.projections.spawn();
    add("second@example.com").await;
    inbox.app.settle().await;
    let after = dump(&inbox.app).await;
    assert_eq!(
        after.matches("@example.com").count(),
        before.matches("@example.com").count() + 1,
        "{after}"
    );
}

/// Enough conversations that the rebuild's multi-row inserts on PostgreSQL
/// take several statements per table (one holds at most 65,535 parameters:
/// 5,041 conversations or 5,461 messages).
async fn a_rebuild_spanning_several_statements_per_table_loses_no_row(app: App) {
    use omnibox_domain::conversation::{contact_id, conversation_id, ConversationEvent, Thread};
    use omnibox_store::{ExpectedRevision, Metadata, NewEvent, StreamName};

    const CONVERSATIONS: usize = 5_600;
    let owner =
        omnibox_app::services::bootstrap::bootstrap(&app.state, "Big Shop", "owner@example.com")
            .await
            .expect("bootstrap");
    let channel = omnibox_domain::ids::ChannelId::generate();
    let start = crate::support::start_of_test();
    let mut appends = Vec::new();
    for n in 0..CONVERSATIONS {
        let store = app.state.store.clone();
        let org = owner.org_id;
        appends.push(tokio::spawn(async move {
            let user = format!("U{n:032x}");
            let thread = Thread::User(user.clone());
            let conversation = conversation_id(channel, &thread);
            let event = ConversationEvent::MessageReceived {
                conversation_id: conversation,
                org_id: org,
                channel_id: channel,
                channel_kind: omnibox_domain::ChannelKind::Line,
                contact_id: contact_id(channel, &user),
                thread,
                author: Some(user),
                platform_message_id: n.to_string(),
                sent_at: start + chrono::Duration::milliseconds(n as i64),
                text: Some(format!("message {n} ✓")),
                attachments: vec![],
                postback: None,
                quick_reply_payload: None,
                reply_to: None,
                reply_token: None,
                standby: false,
            };
            let new = NewEvent {
                id: uuid::Uuid::now_v7(),
                event_type: event.event_type().into(),
                data: serde_json::to_string(&event).expect("json"),
                metadata: Metadata::default(),
            };
            let stream = StreamName::new("conversation", conversation.0).expect("stream");
            store
                .append(&stream, ExpectedRevision::NoStream, vec![new])
                .await
                .expect("append");
        }));
        if appends.len() == 256 {
            for append in appends.drain(..) {
                append.await.expect("append task");
            }
        }
    }
    for append in appends {
        append.await.expect("append task");
    }
    app.settle().await;
    let incremental = dump(&app).await;
    let rows = |dump: &str, table: &str| {
        dump.split(&format!("== {table}\n"))
            .nth(1)
            .map_or(0, |rest| {
                rest.lines().take_while(|l| !l.starts_with("== ")).count()
            })
    };
    for table in ["rm_contacts", "rm_conversations", "rm_messages"] {
        assert_eq!(rows(&incremental, table), CONVERSATIONS, "{table}");
    }
    let inbox = app
        .state
        .projections
        .runner("inbox")
        .expect("inbox projector");
    inbox.rebuild().await.expect("rebuild");
    let rebuilt = dump(&app).await;
    assert!(
        incremental == rebuilt,
        "the rebuild differs from incremental projection"
    );
}

in_process_on_both_backends!(
    a_rebuild_from_zero_equals_incremental_projection,
    a_restart_after_following_the_log_applies_nothing_twice,
    a_rebuild_spanning_several_statements_per_table_loses_no_row,
);

/// PostgreSQL swaps rebuilt tables in (see `refill.rs`): a reader that holds
/// one of them in an open transaction and then reaches for another must
/// neither deadlock with the swap nor make the rebuild fail. Taking the
/// tables' locks one after another and waiting would: the swap would hold
/// `rm_conversations` while waiting for the reader's `rm_messages`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_rebuild_swap_lets_go_of_a_reader_it_would_deadlock_with() {
    let Some(app) = App::start(omnibox_store::testing::Backend::Postgres).await else {
        return;
    };
    let inbox = inbox(app, false).await;
    assert_eq!(inbox.line("line/text_message.json").await, 200);
    inbox.app.settle().await;
    let omnibox_store::Database::Postgres { pool } = inbox.app.state.db.clone() else {
        panic!("a PostgreSQL app");
    };
    let mut reader = pool.begin().await.expect("begin");
    let messages: i64 = sqlx::query_scalar("SELECT count(*) FROM rm_messages")
        .fetch_one(&mut *reader)
        .await
        .expect("messages");
    assert!(messages > 0);

    let runner = inbox
        .app
        .state
        .projections
        .runner("inbox")
        .expect("inbox projector");
    let rebuild = tokio::spawn(async move { runner.rebuild().await });
    // Wait, bounded, until the rebuild is at its swap.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let swapping: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity
             WHERE datname = current_database() AND query LIKE 'SAVEPOINT refill_swap%'",
        )
        .fetch_one(&pool)
        .await
        .expect("activity");
        if swapping > 0 {
            break;
        }
        assert!(!rebuild.is_finished(), "the rebuild ended before its swap");
        assert!(std::time::Instant::now() < deadline, "no swap began");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let conversations: i64 = sqlx::query_scalar("SELECT count(*) FROM rm_conversations")
        .fetch_one(&mut *reader)
        .await
        .expect("the reader reaches another table");
    assert!(conversations > 0);
    reader.commit().await.expect("the reader commits");
    let applied = rebuild
        .await
        .expect("rebuild task")
        .expect("the rebuild succeeds");
    assert!(applied > 0);
    assert_eq!(
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM rm_messages")
            .fetch_one(&pool)
            .await
            .expect("messages after"),
        messages
    );
}
