//! Prometheus metrics: what the server did, how often and how fast.

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use omnibox_store::{
    AppendOutcome, Direction, EventStore, ExpectedRevision, NewEvent, Position, RecordedEvent,
    StoreError, StreamName,
};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use tokio::sync::watch;

type Labels = Vec<(&'static str, String)>;

fn latency_histogram() -> Histogram {
    // 100 µs to ~3 s.
    Histogram::new(exponential_buckets(0.0001, 2.0, 16))
}

/// The server's metrics, rendered at `GET /metrics`.
pub struct Metrics {
    registry: Registry,
    http_requests: Family<Labels, Counter>,
    http_duration: Family<Labels, Histogram, fn() -> Histogram>,
    appends: Family<Labels, Counter>,
    events_appended: Counter,
    append_duration: Histogram,
    webhooks_unknown_target: Family<Labels, Counter>,
    projection_running: Family<Labels, prometheus_client::metrics::gauge::Gauge>,
    webhooks: Family<Labels, Counter>,
    messages_received: Family<Labels, Counter>,
    messages_sent: Family<Labels, Counter>,
    delivery_outcomes: Family<Labels, Counter>,
    delivery_retries: Family<Labels, Counter>,
    platform_calls: Family<Labels, Histogram, fn() -> Histogram>,
    platform_errors: Family<Labels, Counter>,
    /// Set at scrape time.
    pub delivery_queue: Gauge,
    pub projection_lag: Family<Labels, Gauge>,
    pub websocket_subscribers: Gauge,
}

type Gauge = prometheus_client::metrics::gauge::Gauge;

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every family (one statement each, kept together so the
    /// registry's contents read as one list, hence the length).
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("omnibox");
        let http_requests = Family::<Labels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests answered, by method, route and status",
            http_requests.clone(),
        );
        let http_duration = Family::<Labels, Histogram, fn() -> Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        registry.register(
            "http_request_duration_seconds",
            "Time to answer an HTTP request, by route",
            http_duration.clone(),
        );
        let appends = Family::<Labels, Counter>::default();
        registry.register(
            "appends",
            "Appends to the event log, by outcome (written, duplicate, conflict, error)",
            appends.clone(),
        );
        let events_appended = Counter::default();
        registry.register(
            "events_appended",
            "Events written to the log",
            events_appended.clone(),
        );
        let append_duration = latency_histogram();
        registry.register(
            "append_duration_seconds",
            "Time from asking for an append to its durable commit",
            append_duration.clone(),
        );
        let webhooks_unknown_target = Family::<Labels, Counter>::default();
        registry.register(
            "webhooks_unknown_target",
            "Webhook deliveries for a page or channel that no organization has connected, by platform",
            webhooks_unknown_target.clone(),
        );
        let projection_running =
            Family::<Labels, prometheus_client::metrics::gauge::Gauge>::default();
        registry.register(
            "projection_running",
            "1 while a projector runs (catching up or live), 0 while a failure holds it (see /readyz for why)",
            projection_running.clone(),
        );
        let counter = |registry: &mut Registry, name: &str, help: &str| {
            let family = Family::<Labels, Counter>::default();
            registry.register(name, help, family.clone());
            family
        };
        let webhooks = counter(
            &mut registry,
            "webhooks",
            "Webhook deliveries, by platform and outcome (accepted, bad_signature, malformed, unknown_target, unavailable)",
        );
        let messages_received = counter(
            &mut registry,
            "messages_received",
            "Customer messages taken in from webhooks, by platform",
        );
        let messages_sent = counter(
            &mut registry,
            "messages_sent",
            "Reply bubbles the platforms accepted, by platform",
        );
        let delivery_outcomes = counter(
            &mut registry,
            "delivery_outcomes",
            "Delivery attempts, by platform and outcome (delivered, failed, retry, waiting, unknown)",
        );
        let delivery_retries = counter(
            &mut registry,
            "delivery_retries",
            "Deliveries to be tried again (throttling, server errors, dropped connections), by platform",
        );
        let platform_calls = Family::<Labels, Histogram, fn() -> Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        registry.register(
            "platform_call_duration_seconds",
            "Time the platforms took to answer Omnibox's calls, by platform and call",
            platform_calls.clone(),
        );
        let platform_errors = counter(
            &mut registry,
            "platform_call_errors",
            "Platform calls that failed (an error answer or no answer), by platform and call",
        );
        let delivery_queue = Gauge::default();
        registry.register(
            "delivery_queue_depth",
            "Reply bubbles queued and not yet delivered or failed",
            delivery_queue.clone(),
        );
        let projection_lag = Family::<Labels, Gauge>::default();
        registry.register(
            "projection_lag_events",
            "Events in the log a projector has not applied yet (counted up to 10,000)",
            projection_lag.clone(),
        );
        let websocket_subscribers = Gauge::default();
        registry.register(
            "websocket_subscribers",
            "Open subscription WebSockets",
            websocket_subscribers.clone(),
        );
        let build = Family::<Labels, Gauge>::default();
        registry.register(
            "build_info",
            "The running build: 1, labelled with its version",
            build.clone(),
        );
        build
            .get_or_create(&vec![("version", env!("CARGO_PKG_VERSION").to_owned())])
            .set(1);
        Self {
            registry,
            webhooks,
            messages_received,
            messages_sent,
            delivery_outcomes,
            delivery_retries,
            platform_calls,
            platform_errors,
            delivery_queue,
            projection_lag,
            websocket_subscribers,
            projection_running,
            http_requests,
            http_duration,
            appends,
            events_appended,
            append_duration,
            webhooks_unknown_target,
        }
    }

    /// The metrics in the OpenMetrics text format.
    pub fn render(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut text, &self.registry);
        text
    }

    /// The metrics in Prometheus's classic text format (0.0.4), which every
    /// scraper and parser reads: counters named with their `_total`, no
    /// `# UNIT` or `# EOF` lines.
    pub fn render_classic(&self) -> String {
        classic(&self.render())
    }

    pub fn webhook(&self, platform: &'static str, outcome: &'static str) {
        self.webhooks
            .get_or_create(&vec![
                ("platform", platform.to_owned()),
                ("outcome", outcome.to_owned()),
            ])
            .inc();
    }

    pub fn messages_received(&self, platform: &'static str, count: u64) {
        self.messages_received
            .get_or_create(&vec![("platform", platform.to_owned())])
            .inc_by(count);
    }

    /// One delivery attempt's outcome; `sent` bubbles were accepted.
    pub fn delivery(&self, platform: &'static str, outcome: &'static str, sent: u64) {
        let platform_label = vec![("platform", platform.to_owned())];
        self.delivery_outcomes
            .get_or_create(&vec![
                ("platform", platform.to_owned()),
                ("outcome", outcome.to_owned()),
            ])
            .inc();
        if outcome == "retry" {
            self.delivery_retries.get_or_create(&platform_label).inc();
        }
        if sent > 0 {
            self.messages_sent
                .get_or_create(&platform_label)
                .inc_by(sent);
        }
    }

    /// A platform call took `seconds`; `failed` when it errored or went unanswered.
    pub fn platform_call(
        &self,
        platform: &'static str,
        call: &'static str,
        seconds: f64,
        failed: bool,
    ) {
        let labels = vec![("platform", platform.to_owned()), ("call", call.to_owned())];
        self.platform_calls.get_or_create(&labels).observe(seconds);
        if failed {
            self.platform_errors.get_or_create(&labels).inc();
        }
    }

    /// Records whether projector `name` is running.
    pub fn projection_running(&self, name: &'static str, running: bool) {
        self.projection_running
            .get_or_create(&vec![("projection", name.to_owned())])
            .set(i64::from(running));
    }

    /// One HTTP request answered: its method, route template and status,
    /// and how long it took.
    pub fn http_request(&self, method: String, route: String, status: String, seconds: f64) {
        self.http_requests
            .get_or_create(&vec![
                ("method", method),
                ("route", route.clone()),
                ("status", status),
            ])
            .inc();
        self.http_duration
            .get_or_create(&vec![("route", route)])
            .observe(seconds);
    }

    pub fn webhook_for_unknown_target(&self, platform: &'static str) {
        self.webhooks_unknown_target
            .get_or_create(&vec![("platform", platform.to_owned())])
            .inc();
    }
}

/// OpenMetrics text to the classic format.
fn classic(openmetrics: &str) -> String {
    let counters: Vec<&str> = openmetrics
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.strip_suffix(" counter"))
        .collect();
    let mut text = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ')?;
            counters
                .contains(&name)
                .then(|| format!("{prefix}{name}_total {tail}"))
        });
        match renamed {
            Some(line) => text.push_str(&line),
            None => text.push_str(line),
        }
        text.push('\n');
    }
    text
}

/// An event store that reports its appends to [`Metrics`].
pub struct InstrumentedStore {
    inner: Arc<dyn EventStore>,
    metrics: Arc<Metrics>,
}

impl InstrumentedStore {
    pub fn new(inner: Arc<dyn EventStore>, metrics: Arc<Metrics>) -> Self {
        Self { inner, metrics }
    }
}

#[async_trait]
impl EventStore for InstrumentedStore {
    async fn append(
        &self,
        stream: &StreamName,
        expected: ExpectedRevision,
        events: Vec<NewEvent>,
    ) -> Result<AppendOutcome, StoreError> {
        let started = Instant::now();
        let count = events.len() as u64;
        let result = self.inner.append(stream, expected, events).await;
        let outcome = match &result {
            Ok(AppendOutcome {
                duplicate: false, ..
            }) => {
                self.events_appended(count);
                "written"
            }
            Ok(_) => "duplicate",
            Err(StoreError::WrongExpectedRevision { .. } | StoreError::Contended { .. }) => {
                "conflict"
            }
            Err(_) => "error",
        };
        self.metrics
            .appends
            .get_or_create(&vec![("outcome", outcome.to_owned())])
            .inc();
        self.metrics
            .append_duration
            .observe(started.elapsed().as_secs_f64());
        result
    }

    async fn read_stream(
        &self,
        stream: &StreamName,
        from: u64,
        direction: Direction,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        self.inner.read_stream(stream, from, direction, limit).await
    }

    async fn read_all(
        &self,
        after: Option<Position>,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        self.inner.read_all(after, limit).await
    }

    fn read_all_recent(&self, after: Option<Position>, limit: usize) -> Option<Vec<RecordedEvent>> {
        self.inner.read_all_recent(after, limit)
    }

    fn changes(&self) -> watch::Receiver<u64> {
        self.inner.changes()
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }

    fn backend(&self) -> &'static str {
        self.inner.backend()
    }
}

impl InstrumentedStore {
    fn events_appended(&self, count: u64) {
        self.metrics.events_appended.inc_by(count);
    }
}
