//! The event store contract, run against every backend.
//!
//! Each test gets a fresh database. PostgreSQL variants are skipped when no
//! server is reachable, unless `OMNIBOX_REQUIRE_POSTGRES=1`. EventStoreDB
//! variants (feature `eventstoredb`) run against
//! `OMNIBOX_TEST_EVENTSTOREDB_URL`, and are skipped when it is not set.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use omnibox_store::testing::{Backend, TestDatabase};
use omnibox_store::{
    AppendOutcome, Database, Direction, EventStore, ExpectedRevision, Metadata, NewEvent,
    StoreError, StreamName, Subscription,
};
use uuid::Uuid;

fn stream(category: &str) -> StreamName {
    StreamName::new(category, Uuid::now_v7()).expect("valid stream name")
}

fn event(n: usize) -> NewEvent {
    NewEvent {
        id: Uuid::now_v7(),
        event_type: "Tested".into(),
        data: format!(r#"{{"n":{n},"text":"สวัสดี 👋🏽"}}"#),
        metadata: Metadata {
            correlation_id: Uuid::now_v7(),
            causation_id: Some(Uuid::now_v7()),
            actor: Some("member:test".into()),
        },
    }
}

fn events(count: usize) -> Vec<NewEvent> {
    (0..count).map(event).collect()
}

struct Fixture {
    store: Arc<dyn EventStore>,
    log: Log,
    /// Whether an id stored in one stream must make an append of it to
    /// another a duplicate (the SQL backends); EventStoreDB only promises to
    /// look in the stream appended to.
    ids_unique_across_streams: bool,
}

/// Where the fixture's log is, to open more stores on it.
enum Log {
    Sql {
        db: Database,
        _owner: TestDatabase,
    },
    #[cfg(feature = "eventstoredb")]
    EventStoreDb(omnibox_store::testing::TestEventStoreDb),
}

impl Fixture {
    /// Another store on the same log, as another process would open it.
    async fn open(&self) -> Arc<dyn EventStore> {
        match &self.log {
            Log::Sql { db, .. } => db.event_store().await.expect("open the event store"),
            #[cfg(feature = "eventstoredb")]
            Log::EventStoreDb(server) => server.connect().await,
        }
    }
}

async fn fixture(backend: Backend) -> Option<Fixture> {
    let owner = TestDatabase::create(backend).await?;
    let db = owner.connect().await;
    let store = db.event_store().await.expect("open the event store");
    Some(Fixture {
        store,
        log: Log::Sql { db, _owner: owner },
        ids_unique_across_streams: true,
    })
}

#[cfg(feature = "eventstoredb")]
async fn eventstoredb_fixture() -> Option<Fixture> {
    let server = omnibox_store::testing::TestEventStoreDb::create()?;
    Some(Fixture {
        store: server.connect().await,
        log: Log::EventStoreDb(server),
        ids_unique_across_streams: false,
    })
}

/// Every event `$all` shows, once it shows at least `expected` of them.
///
/// On PostgreSQL an event becomes visible in `$all` only when no older
/// transaction is still running anywhere in the cluster (other tests', for
/// instance): a reader may briefly see less than was committed, never more
/// and never out of order. Tests that count therefore wait for the count.
async fn visible_all(store: &dyn EventStore, expected: usize) -> Vec<omnibox_store::RecordedEvent> {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let mut all = Vec::new();
        let mut after = None;
        loop {
            let page = store.read_all(after, 1000).await.expect("read $all");
            let Some(last) = page.last() else { break };
            after = Some(last.position);
            all.extend(page);
        }
        if all.len() >= expected || std::time::Instant::now() > deadline {
            return all;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn count_all(store: &dyn EventStore, expected: usize) -> usize {
    visible_all(store, expected).await.len()
}

async fn expected_revisions_are_enforced(f: Fixture) {
    let s = stream("order");
    let first = f
        .store
        .append(&s, ExpectedRevision::NoStream, events(2))
        .await
        .expect("create");
    assert_eq!((first.revision, first.duplicate), (1, false));

    let err = f
        .store
        .append(&s, ExpectedRevision::NoStream, events(1))
        .await
        .expect_err("stream exists");
    assert!(
        matches!(
            err,
            StoreError::WrongExpectedRevision {
                actual: Some(1),
                ..
            }
        ),
        "{err:?}"
    );
    let err = f
        .store
        .append(&s, ExpectedRevision::Exact(0), events(1))
        .await
        .expect_err("stale");
    assert!(
        matches!(
            err,
            StoreError::WrongExpectedRevision {
                actual: Some(1),
                ..
            }
        ),
        "{err:?}"
    );
    let err = f
        .store
        .append(&stream("order"), ExpectedRevision::Exact(0), events(1))
        .await
        .expect_err("missing");
    assert!(
        matches!(err, StoreError::WrongExpectedRevision { actual: None, .. }),
        "{err:?}"
    );

    let next = f
        .store
        .append(&s, ExpectedRevision::Exact(1), events(1))
        .await
        .expect("in order");
    assert_eq!(next.revision, 2);
    assert!(next.position > first.position);
    let any = f
        .store
        .append(&s, ExpectedRevision::Any, events(1))
        .await
        .expect("any");
    assert_eq!(any.revision, 3);
    assert_eq!(
        count_all(&*f.store, 4).await,
        4,
        "refused appends wrote nothing"
    );
}

async fn appends_are_atomic_and_read_back_exactly(f: Fixture) {
    let s = stream("conversation");
    let written = events(5);
    f.store
        .append(&s, ExpectedRevision::NoStream, written.clone())
        .await
        .expect("append");
    let read = f
        .store
        .read_stream(&s, 0, Direction::Forwards, 100)
        .await
        .expect("read");
    assert_eq!(read.len(), 5);
    for (i, (r, w)) in read.iter().zip(&written).enumerate() {
        assert_eq!(r.id, w.id);
        assert_eq!(r.revision, i as u64);
        assert_eq!(r.stream, s);
        assert_eq!(r.event_type, w.event_type);
        assert_eq!(r.data, w.data, "data is stored byte for byte");
        assert_eq!(r.metadata, w.metadata);
    }
    assert!(read.windows(2).all(|w| w[0].position < w[1].position));

    // One bad event (an id used twice) fails the whole append.
    let mut bad = events(3);
    bad[2].id = bad[0].id;
    let err = f
        .store
        .append(&s, ExpectedRevision::Any, bad)
        .await
        .expect_err("duplicate id inside an append");
    assert!(matches!(err, StoreError::DuplicateIdInAppend(_)), "{err:?}");
    assert!(matches!(
        f.store.append(&s, ExpectedRevision::Any, vec![]).await,
        Err(StoreError::EmptyAppend)
    ));
    assert_eq!(
        f.store
            .read_stream(&s, 0, Direction::Forwards, 100)
            .await
            .expect("read")
            .len(),
        5
    );
}

async fn stored_ids_make_appends_idempotent(f: Fixture) {
    let s = stream("conversation");
    let batch = events(3);
    let first = f
        .store
        .append(&s, ExpectedRevision::NoStream, batch.clone())
        .await
        .expect("first");
    // Retried with a now-stale expectation: still a success, and nothing new.
    let again = f
        .store
        .append(&s, ExpectedRevision::NoStream, batch.clone())
        .await
        .expect("retry");
    assert_eq!(
        again,
        AppendOutcome {
            duplicate: true,
            ..first
        }
    );
    // The same ids sent to another stream are not a second copy either.
    let elsewhere = f
        .store
        .append(
            &stream("conversation"),
            ExpectedRevision::Any,
            batch.clone(),
        )
        .await
        .expect("elsewhere");
    if f.ids_unique_across_streams {
        assert!(elsewhere.duplicate);
    }
    // A mix of stored and new ids is refused: ids were reused for other events.
    let mut mixed = events(2);
    mixed[0].id = batch[0].id;
    let err = f
        .store
        .append(&s, ExpectedRevision::Any, mixed)
        .await
        .expect_err("mixed");
    assert!(matches!(err, StoreError::PartiallyStored { .. }), "{err:?}");
    // Likewise when only a later event's id is stored.
    let mut stored_last = events(2);
    stored_last[1].id = batch[2].id;
    let err = f
        .store
        .append(&s, ExpectedRevision::Any, stored_last)
        .await
        .expect_err("mixed, stored id last");
    assert!(matches!(err, StoreError::PartiallyStored { .. }), "{err:?}");
    let stored = if elsewhere.duplicate { 3 } else { 6 };
    assert_eq!(count_all(&*f.store, stored).await, stored);
}

async fn streams_read_forwards_and_backwards(f: Fixture) {
    let s = stream("contact");
    f.store
        .append(&s, ExpectedRevision::NoStream, events(10))
        .await
        .expect("append");
    f.store
        .append(&stream("contact"), ExpectedRevision::NoStream, events(3))
        .await
        .expect("other");
    let revisions = |events: Vec<omnibox_store::RecordedEvent>| {
        events.iter().map(|e| e.revision).collect::<Vec<_>>()
    };
    assert_eq!(
        revisions(
            f.store
                .read_stream(&s, 4, Direction::Forwards, 3)
                .await
                .expect("fwd")
        ),
        [4, 5, 6]
    );
    assert_eq!(
        revisions(
            f.store
                .read_stream(&s, u64::MAX, Direction::Backwards, 3)
                .await
                .expect("bwd")
        ),
        [9, 8, 7]
    );
    assert_eq!(
        revisions(
            f.store
                .read_stream(&s, 1, Direction::Backwards, 5)
                .await
                .expect("bwd")
        ),
        [1, 0]
    );
    assert!(f
        .store
        .read_stream(&stream("contact"), 0, Direction::Forwards, 5)
        .await
        .expect("none")
        .is_empty());
}

async fn all_reads_in_pages_in_position_order(f: Fixture) {
    let a = stream("a");
    let b = stream("b");
    let mut ids = Vec::new();
    for round in 0..5 {
        for s in [&a, &b] {
            let batch = events(round + 1);
            ids.extend(batch.iter().map(|e| e.id));
            f.store
                .append(s, ExpectedRevision::Any, batch)
                .await
                .expect("append");
        }
    }
    visible_all(&*f.store, ids.len()).await;
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = f.store.read_all(after, 4).await.expect("page");
        assert!(page.len() <= 4);
        let Some(last) = page.last() else { break };
        after = Some(last.position);
        seen.extend(page);
    }
    assert_eq!(seen.iter().map(|e| e.id).collect::<Vec<_>>(), ids);
    assert!(seen.windows(2).all(|w| w[0].position < w[1].position));
    // Positions survive a round trip through text (cursors in GraphQL).
    let middle = seen[7].position;
    let resumed = f
        .store
        .read_all(Some(middle.to_string().parse().expect("parse")), 100)
        .await
        .expect("resume");
    assert_eq!(resumed.first().map(|e| e.id), Some(seen[8].id));
}

async fn subscriptions_catch_up_then_go_live(f: Fixture) {
    let s = stream("live");
    f.store
        .append(&s, ExpectedRevision::NoStream, events(3))
        .await
        .expect("history");
    let mut subscription = Subscription::new(f.store.clone(), None, 2);
    let mut got = Vec::new();
    while got.len() < 3 {
        got.extend(subscription.next_batch().await.expect("catch up"));
    }
    let store = f.store.clone();
    let writer = tokio::spawn(async move {
        for n in 0..5 {
            store
                .append(&s, ExpectedRevision::Any, vec![event(n)])
                .await
                .expect("live append");
        }
    });
    while got.len() < 8 {
        let batch = tokio::time::timeout(Duration::from_secs(30), subscription.next_batch())
            .await
            .expect("a live event arrives")
            .expect("read");
        got.extend(batch);
    }
    writer.await.expect("writer");
    assert_eq!(got.len(), 8);
    assert!(got.windows(2).all(|w| w[0].position < w[1].position));
    assert_eq!(got.iter().map(|e| e.id).collect::<HashSet<_>>().len(), 8);
}

async fn concurrent_single_appends_are_each_durable_when_acknowledged(f: Fixture) {
    const APPENDS: usize = 400;
    // An independent reader: a second store opened on the same database sees
    // only what was committed.
    let observer = f.open().await;
    let mut tasks = Vec::new();
    for n in 0..APPENDS {
        let store = f.store.clone();
        let observer = observer.clone();
        tasks.push(tokio::spawn(async move {
            let s = stream("webhook");
            let e = event(n);
            let id = e.id;
            store
                .append(&s, ExpectedRevision::NoStream, vec![e])
                .await
                .expect("append");
            let seen = observer
                .read_stream(&s, 0, Direction::Forwards, 10)
                .await
                .expect("read");
            assert_eq!(
                seen.iter().map(|e| e.id).collect::<Vec<_>>(),
                [id],
                "acknowledged before committed"
            );
            id
        }));
    }
    let mut ids = HashSet::new();
    for task in tasks {
        ids.insert(task.await.expect("task"));
    }
    assert_eq!(ids.len(), APPENDS);
    assert_eq!(count_all(&*f.store, APPENDS).await, APPENDS);
}

async fn concurrent_appends_to_one_stream_never_fork_it(f: Fixture) {
    let s = stream("contended");
    f.store
        .append(&s, ExpectedRevision::NoStream, events(1))
        .await
        .expect("create");
    let mut tasks = Vec::new();
    for n in 0..50 {
        let store = f.store.clone();
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            // Optimistic loop, as the command layer does it.
            loop {
                let head = store
                    .read_stream(&s, u64::MAX, Direction::Backwards, 1)
                    .await
                    .expect("head")[0]
                    .revision;
                match store
                    .append(&s, ExpectedRevision::Exact(head), vec![event(n)])
                    .await
                {
                    Ok(outcome) => return outcome.revision,
                    Err(StoreError::WrongExpectedRevision { .. }) => continue,
                    Err(other) => panic!("{other}"),
                }
            }
        }));
    }
    let mut revisions = Vec::new();
    for task in tasks {
        revisions.push(task.await.expect("task"));
    }
    revisions.sort_unstable();
    assert_eq!(revisions, (1..=50).collect::<Vec<u64>>());
}

/// Many independent writers (separate stores: separate pools, as separate
/// processes would have) append while a reader follows `$all`. The reader
/// must see every committed event exactly once, in the final order of the
/// log: no event may appear behind its cursor after it passed.
async fn a_reader_following_all_under_concurrent_writers_skips_nothing(f: Fixture) {
    const WRITERS: usize = 8;
    const TASKS_PER_WRITER: usize = 10;
    const EVENTS_PER_TASK: usize = 125;
    const TOTAL: usize = WRITERS * TASKS_PER_WRITER * EVENTS_PER_TASK;

    let mut subscription = Subscription::new(f.open().await, None, 500);
    let reader = tokio::spawn(async move {
        let mut seen = Vec::with_capacity(TOTAL);
        while seen.len() < TOTAL {
            let batch = tokio::time::timeout(Duration::from_secs(120), subscription.next_batch())
                .await
                .expect("the reader keeps up")
                .expect("read");
            seen.extend(batch.into_iter().map(|e| (e.position, e.id)));
        }
        seen
    });
    let mut tasks = Vec::new();
    for _ in 0..WRITERS {
        let store = f.open().await;
        for _ in 0..TASKS_PER_WRITER {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                let streams: Vec<StreamName> = (0..5).map(|_| stream("conversation")).collect();
                for n in 0..EVENTS_PER_TASK {
                    store
                        .append(&streams[n % 5], ExpectedRevision::Any, vec![event(n)])
                        .await
                        .expect("append");
                }
            }));
        }
    }
    for task in tasks {
        task.await.expect("writer task");
    }
    let seen = reader.await.expect("reader");

    let final_order: Vec<_> = visible_all(&*f.store, TOTAL)
        .await
        .into_iter()
        .map(|e| (e.position, e.id))
        .collect();
    assert_eq!(final_order.len(), TOTAL);
    assert_eq!(seen.len(), TOTAL, "the reader saw each event once");
    assert!(
        seen == final_order,
        "the reader's sequence differs from the log's final order"
    );
}

macro_rules! conformance {
    ($($test:ident),+ $(,)?) => {
        mod sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $test() {
                let f = super::fixture(super::Backend::Sqlite).await.expect("sqlite is always there");
                super::$test(f).await;
            })+
        }
        mod postgres {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $test() {
                if let Some(f) = super::fixture(super::Backend::Postgres).await {
                    super::$test(f).await;
                }
            })+
        }
        #[cfg(feature = "eventstoredb")]
        mod eventstoredb {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $test() {
                if let Some(f) = super::eventstoredb_fixture().await {
                    super::$test(f).await;
                }
            })+
        }
    };
}

conformance!(
    expected_revisions_are_enforced,
    appends_are_atomic_and_read_back_exactly,
    stored_ids_make_appends_idempotent,
    streams_read_forwards_and_backwards,
    all_reads_in_pages_in_position_order,
    subscriptions_catch_up_then_go_live,
    concurrent_single_appends_are_each_durable_when_acknowledged,
    concurrent_appends_to_one_stream_never_fork_it,
    a_reader_following_all_under_concurrent_writers_skips_nothing,
);

/// Tables here start empty and grow, and autovacuum may never analyze them:
/// a generic plan cached while `events` was small must not keep scanning
/// the whole table for every id lookup once it is large. Pooled
/// connections rule sequential scans out, so even a plan made for a small
/// table, and kept, looks ids up through the index. They never JIT-compile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_plans_kept_from_a_small_table_still_use_the_index() {
    let Some(f) = fixture(Backend::Postgres).await else {
        return;
    };
    let pool = postgres_pool(&f);
    let mut connection = pool.acquire().await.expect("a pooled connection");
    let jit: String = sqlx::query_scalar("SHOW jit")
        .fetch_one(&mut *connection)
        .await
        .expect("show jit");
    assert_eq!(jit, "off");
    // The plan PostgreSQL would keep after a few executions, made while
    // `events` is small (and analyzed as such).
    for statement in [
        "INSERT INTO events (event_id, stream, revision, event_type, data, metadata)
         SELECT gen_random_uuid(), 'contact-' || n, 0, 'Test', '{}', '{}'
         FROM generate_series(1, 20) AS n",
        "ANALYZE events",
        "SET plan_cache_mode = force_generic_plan",
        "PREPARE lookup(uuid[]) AS SELECT event_id FROM events WHERE event_id = ANY($1)",
        "EXECUTE lookup(ARRAY[gen_random_uuid()])",
        "INSERT INTO events (event_id, stream, revision, event_type, data, metadata)
         SELECT gen_random_uuid(), 'conversation-' || n, 0, 'Test', '{}', '{}'
         FROM generate_series(1, 20000) AS n",
    ] {
        sqlx::raw_sql(statement)
            .execute(&mut *connection)
            .await
            .unwrap_or_else(|e| panic!("{statement}: {e}"));
    }
    let plan: Vec<String> = sqlx::query_scalar("EXPLAIN EXECUTE lookup(ARRAY[gen_random_uuid()])")
        .fetch_all(&mut *connection)
        .await
        .expect("explain");
    let plan = plan.join("\n");
    assert!(
        plan.contains("Index") && !plan.contains("Seq Scan"),
        "the kept plan scans the table:\n{plan}"
    );
    sqlx::raw_sql("DEALLOCATE lookup; RESET plan_cache_mode")
        .execute(&mut *connection)
        .await
        .expect("clean up");
}

fn postgres_pool(f: &Fixture) -> &sqlx::PgPool {
    match &f.log {
        Log::Sql {
            db: Database::Postgres { pool },
            ..
        } => pool,
        _ => panic!("a PostgreSQL fixture opens a PostgreSQL database"),
    }
}

/// An append that drew its transaction id first but commits last holds
/// back every later one: a reader never passes it and finds it behind its
/// cursor afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_an_append_in_flight_holds_back_later_ones() {
    let Some(f) = fixture(Backend::Postgres).await else {
        return;
    };
    let early = Uuid::now_v7();
    let mut in_flight = postgres_pool(&f).begin().await.expect("begin");
    sqlx::query(
        "INSERT INTO events (event_id, stream, revision, event_type, data, metadata)
         VALUES ($1, $2, 0, 'Tested', '{}', $3::json)",
    )
    .bind(early)
    .bind(stream("conversation").as_str())
    .bind(serde_json::to_string(&event(0).metadata).expect("metadata"))
    .execute(&mut *in_flight)
    .await
    .expect("insert");
    f.store
        .append(
            &stream("conversation"),
            ExpectedRevision::NoStream,
            events(1),
        )
        .await
        .expect("a later append commits first");
    assert!(
        f.store.read_all(None, 10).await.expect("read").is_empty(),
        "a reader passed an append still in flight"
    );
    in_flight.commit().await.expect("commit");
    let seen = visible_all(&*f.store, 2).await;
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].id, early, "the earlier transaction comes first");
}

/// A transaction that drew its id before an append and ends after it
/// without appending (a read-model batch, a rebuild) announces nothing when
/// it commits. The event it held back must still reach the process's
/// follower once it is below the horizon, not at the next idle poll, which
/// this store's follower makes an hour.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_an_event_held_back_by_a_silent_transaction_still_reaches_the_follower() {
    let Some(f) = fixture(Backend::Postgres).await else {
        return;
    };
    let pool = postgres_pool(&f).clone();
    let store = omnibox_store::postgres::PgEventStore::start_with(
        pool.clone(),
        omnibox_store::postgres::FollowerTiming {
            idle_poll: Duration::from_secs(3600),
        },
    )
    .await
    .expect("start the store");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while store.read_all_recent(None, 1).is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "the follower never found the log's end"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut silent = pool.begin().await.expect("begin");
    sqlx::query("SELECT pg_current_xact_id()")
        .execute(&mut *silent)
        .await
        .expect("draw a transaction id");
    store
        .append(
            &stream("conversation"),
            ExpectedRevision::NoStream,
            events(1),
        )
        .await
        .expect("append");
    // The append woke the follower, which found the event held back and
    // looked again a few times (for 63 ms in all) before this commits.
    tokio::time::sleep(Duration::from_millis(500)).await;
    silent.commit().await.expect("commit, announcing nothing");
    // The horizon is the cluster's: another test's transaction that began
    // before the append holds the event back too. Wait until nothing does,
    // then give the follower (whose idle poll is an hour) a bound.
    below_the_horizon(&pool).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let seen = store.read_all_recent(None, 10).unwrap_or_default();
        if !seen.is_empty() {
            assert_eq!(seen.len(), 1);
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the follower is waiting for a wake-up that will not come"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits (bounded) until every event of the schema's log is below the
/// horizon; a failure names the transactions still holding it.
async fn below_the_horizon(pool: &sqlx::PgPool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let held = omnibox_store::postgres::events_held_back(pool)
            .await
            .expect("compare with the horizon");
        if !held {
            return;
        }
        if std::time::Instant::now() >= deadline {
            let holding: Vec<(Option<String>, Option<String>)> = sqlx::query_as(
                "SELECT backend_xid::text, left(query, 100) FROM pg_stat_activity
                 WHERE backend_xid IS NOT NULL ORDER BY age(backend_xid) DESC",
            )
            .fetch_all(pool)
            .await
            .unwrap_or_default();
            panic!("the horizon never passed the event; running: {holding:?}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Two writers whose batches were decided from the same heads collide on
/// the same (stream, revision) keys. Inserted in opposite orders (stream A
/// then B, and B then A) they would wait for each other until PostgreSQL's
/// deadlock check ended one, a second later; in one order, one simply waits
/// for the other. Many callers appending to a few hot streams, in random
/// order, make such batches by the hundred.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_colliding_batches_never_deadlock() {
    let Some(f) = fixture(Backend::Postgres).await else {
        return;
    };
    // Four processes' stores on one log: eight writers.
    let mut stores = Vec::new();
    for _ in 0..4 {
        stores.push(Arc::new(
            omnibox_store::postgres::PgEventStore::start(postgres_pool(&f).clone())
                .await
                .expect("start a store"),
        ));
    }
    let hot: Vec<StreamName> = (0..12).map(|_| stream("conversation")).collect();
    let (callers, appends) = (48, 60);
    const EVENTS: usize = 20;
    let tasks: Vec<_> = (0..callers)
        .map(|caller| {
            let (store, hot) = (stores[caller % stores.len()].clone(), hot.clone());
            tokio::spawn(async move {
                for n in 0..appends {
                    let target = &hot[(caller * 7 + n * 13) % hot.len()];
                    let batch = events(EVENTS);
                    // Contention this heavy can outlast the store's own
                    // retries, which it says as `Contended`; the caller
                    // then retries the same events, as the commands do.
                    let mut attempt = 0;
                    loop {
                        match store
                            .append(target, ExpectedRevision::Any, batch.clone())
                            .await
                        {
                            Ok(_) => break,
                            Err(StoreError::Contended { .. }) if attempt < 50 => {
                                attempt += 1;
                                tokio::time::sleep(Duration::from_millis(attempt)).await;
                            }
                            Err(error) => panic!("append: {error:?}"),
                        }
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("caller");
    }
    assert_eq!(
        count_all(&*f.store, callers * appends * EVENTS).await,
        callers * appends * EVENTS
    );
    let deadlocks: u64 = stores.iter().map(|s| s.deadlocks()).sum();
    assert_eq!(deadlocks, 0, "append batches deadlocked");
}

/// Two processes on one SQLite file (the server and an `omnibox` command):
/// each writer sees the other's appends, even to a stream whose head it has
/// cached.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_writers_sharing_a_file_see_each_others_heads() {
    let owner = TestDatabase::create(Backend::Sqlite)
        .await
        .expect("sqlite is always there");
    let first = owner.connect().await.event_store().await.expect("open");
    let second = owner.connect().await.event_store().await.expect("open");
    let s = stream("shared");
    first
        .append(&s, ExpectedRevision::NoStream, events(1))
        .await
        .expect("first writer creates the stream");
    second
        .append(&s, ExpectedRevision::Exact(0), events(1))
        .await
        .expect("second writer appends revision 1");
    let outcome = first
        .append(&s, ExpectedRevision::Exact(1), events(1))
        .await
        .expect("the first writer knows the stream is at revision 1");
    assert_eq!(outcome.revision, 2);
    let stale = first
        .append(&s, ExpectedRevision::Exact(1), events(1))
        .await;
    assert!(
        matches!(
            stale,
            Err(StoreError::WrongExpectedRevision {
                actual: Some(2),
                ..
            })
        ),
        "{stale:?}"
    );
}

/// A process's own followers read what its writer has just committed from
/// memory. Another process writing to the same file in between must not
/// leave a hole: every read equals the file's, event for event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_reads_near_the_end_match_the_file_when_processes_interleave() {
    let owner = TestDatabase::create(Backend::Sqlite)
        .await
        .expect("sqlite is always there");
    let server = owner.connect().await.event_store().await.expect("open");
    let command = owner.connect().await.event_store().await.expect("open");
    let file = owner.connect().await.event_store().await.expect("open");
    let mut follower = Subscription::new(server.clone(), None, 4);
    let mut followed = Vec::new();
    let streams = [stream("conversation"), stream("conversation")];
    for (round, (writer, count)) in [
        (&server, 3),
        (&command, 2),
        (&server, 5),
        (&server, 1),
        (&command, 1),
        (&command, 3),
        (&server, 2),
    ]
    .into_iter()
    .enumerate()
    {
        writer
            .append(&streams[round % 2], ExpectedRevision::Any, events(count))
            .await
            .expect("append");
        followed.extend(follower.poll().await.expect("follow"));
    }
    loop {
        let batch = follower.poll().await.expect("follow");
        if batch.is_empty() {
            break;
        }
        followed.extend(batch);
    }
    let stored = visible_all(&*file, 17).await;
    assert_eq!(stored.len(), 17);
    assert_eq!(
        followed, stored,
        "the follower saw the file's events in its order"
    );
    for (n, event) in stored.iter().enumerate() {
        let page = server
            .read_all(Some(event.position), 3)
            .await
            .expect("read");
        let expected: Vec<_> = stored[n + 1..].iter().take(3).cloned().collect();
        assert_eq!(page, expected, "the page after position {}", event.position);
    }
    // Caught up with its own commits, the follower still sees another
    // process's append, with no commit of its own to wake it.
    let last = command
        .append(&streams[0], ExpectedRevision::Any, events(1))
        .await
        .expect("append");
    let next = tokio::time::timeout(Duration::from_secs(10), follower.next_batch())
        .await
        .expect("the follower looks at the file when no wake-up comes")
        .expect("follow");
    assert_eq!(
        next.iter().map(|e| e.position).collect::<Vec<_>>(),
        vec![last.position]
    );
}
