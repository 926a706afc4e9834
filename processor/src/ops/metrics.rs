//! Metrics, health and the operator endpoints (DESIGN.md §6).
//!
//! Every metric is defined here, named `auditchain_<what>_<unit>`, with
//! low-cardinality labels only (outcome, reason, result, kind, partition).
//! The HTTP server serves `/metrics` (Prometheus text), `/healthz`,
//! `/readyz`, and `POST /admin/pause` / `POST /admin/resume` (stop and
//! restart consumption without leaving the group — containment during an
//! incident). It binds to 127.0.0.1 unless configured otherwise; the admin
//! endpoints take a bearer token whenever one is configured, which `run`
//! requires on any address but loopback ([`crate::auth`]).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Router;
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use crate::auth::AdminAuth;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::kafka::{base_client_config, group_lag, QuietContext};
use crate::route::Reason;

/// `outcome` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    /// `chained` or `quarantined`.
    pub outcome: &'static str,
}

/// `reason` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    /// A quarantine reason code.
    pub reason: &'static str,
}

/// `result` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    /// `committed`/`aborted`, or `ok`/`failed`.
    pub result: &'static str,
}

/// `kind` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    /// `assign`, `revoke` or `lost`.
    pub kind: &'static str,
}

/// `partition` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PartitionLabel {
    /// Input partition.
    pub partition: i32,
}

/// What a run did, as its counters say ([`Metrics::stats`]): for the log
/// line at the end of a run, and for tests.
#[derive(Debug, Default, Clone)]
pub struct Stats {
    /// Records appended to chains.
    pub chained: u64,
    /// Records quarantined, by reason.
    pub quarantined: BTreeMap<Reason, u64>,
    /// Anchors written.
    pub anchors: u64,
    /// Committed transactions.
    pub commits: u64,
    /// Aborted transactions.
    pub aborts: u64,
    /// Tenants that appeared on a second partition of this instance.
    pub tenants_on_several_partitions: u64,
    /// Transactions closed early so an anchor stays under the size limit.
    pub early_commits: u64,
}

/// Every metric of the processor.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Input records by outcome.
    pub records: Family<OutcomeLabel, Counter>,
    /// Quarantined records by reason.
    pub quarantined: Family<ReasonLabel, Counter>,
    /// Anchors written.
    pub anchors: Counter,
    /// Transactions by result.
    pub transactions: Family<ResultLabel, Counter>,
    /// Duration of a transaction, first record to commit.
    pub transaction_seconds: Histogram,
    /// Input record timestamp to the commit that made it durable.
    pub end_to_end_seconds: Histogram,
    /// Rebalance events by kind.
    pub rebalances: Family<KindLabel, Counter>,
    /// Time to restore chain state on assignment.
    pub restore_seconds: Histogram,
    /// Tenant chains held in memory.
    pub tenants: Gauge,
    /// Input partitions owned.
    pub assigned_partitions: Gauge,
    /// Producer key set reloads by result.
    pub keyset_reloads: Family<ResultLabel, Counter>,
    /// 1 while the key-set file changed and did not load.
    pub keyset_stale: Gauge,
    /// Group lag per input partition, records.
    pub lag_records: Family<PartitionLabel, Gauge>,
    /// Age of the oldest unprocessed record per input partition, seconds.
    pub lag_seconds: Family<PartitionLabel, Gauge<f64, AtomicU64>>,
    /// Tenants that appeared on a second partition of this instance.
    pub tenants_on_several_partitions: Counter,
    /// Restored partitions whose group offset disagreed with the chain
    /// state's (or was missing while the state had one).
    pub offset_mismatches: Counter,
    /// Restored partitions whose chain state did not match the trail's
    /// last anchor, by finding (`missing`, `behind`, `other_history`: the
    /// state was rebuilt from the trail; `ahead`: the partition was refused).
    pub state_rebuilds: Family<ReasonLabel, Counter>,
    /// Transactions committed early so an anchor stays under the size limit.
    pub early_commits: Counter,
    /// Sessions ended because an owned partition's fetcher stopped
    /// (`processing.fetch_stall_timeout_ms`).
    pub fetch_stalls: Counter,
    /// Input records written in the open transaction (0 when none is open).
    pub open_transaction_records: Gauge,
    /// Seconds a partition has had lag without its committed offset moving.
    pub partition_stalled_seconds: Family<PartitionLabel, Gauge<f64, AtomicU64>>,
    /// 1 when ready (producer initialised, not restoring, no fatal error).
    pub ready: Gauge,
    /// 1 while consumption is paused by an operator.
    pub paused: Gauge,
    /// Set by `/admin/pause`, cleared by `/admin/resume`.
    pub pause_requested: AtomicBool,
    restoring: AtomicBool,
    producer_ready: AtomicBool,
    /// Seconds the processing loop has not come round (0 while it turns
    /// or no session runs), as of the last lag sample.
    pub loop_stuck_seconds: Gauge<f64, AtomicU64>,
    created: Instant,
    /// When the processing loop last came round, in milliseconds since
    /// `created` (0: no session loop runs).
    loop_turned_ms: AtomicU64,
    /// `http.liveness_timeout_ms` (0: not set, never unhealthy).
    liveness_ms: AtomicU64,
}

impl Metrics {
    /// A fresh set of metrics, registered.
    pub fn new() -> Arc<Metrics> {
        let mut registry = Registry::default();
        let records = Family::<OutcomeLabel, Counter>::default();
        let quarantined = Family::<ReasonLabel, Counter>::default();
        let anchors = Counter::default();
        let transactions = Family::<ResultLabel, Counter>::default();
        let transaction_seconds = Histogram::new(exponential_buckets(0.01, 2.0, 12));
        let end_to_end_seconds = Histogram::new(exponential_buckets(0.01, 2.0, 16));
        let rebalances = Family::<KindLabel, Counter>::default();
        let restore_seconds = Histogram::new(exponential_buckets(0.05, 2.0, 12));
        let tenants = Gauge::default();
        let assigned_partitions = Gauge::default();
        let keyset_reloads = Family::<ResultLabel, Counter>::default();
        let keyset_stale = Gauge::default();
        let lag_records = Family::<PartitionLabel, Gauge>::default();
        let lag_seconds = Family::<PartitionLabel, Gauge<f64, AtomicU64>>::default();
        let tenants_on_several_partitions = Counter::default();
        let offset_mismatches = Counter::default();
        let state_rebuilds = Family::<ReasonLabel, Counter>::default();
        let fetch_stalls = Counter::default();
        let early_commits = Counter::default();
        let open_transaction_records = Gauge::default();
        let partition_stalled_seconds = Family::<PartitionLabel, Gauge<f64, AtomicU64>>::default();
        let ready = Gauge::default();
        let paused = Gauge::default();
        let loop_stuck_seconds = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "auditchain_records",
            "Input records by outcome",
            records.clone(),
        );
        registry.register(
            "auditchain_quarantined",
            "Quarantined records by reason",
            quarantined.clone(),
        );
        registry.register(
            "auditchain_anchors",
            "Signed anchors written",
            anchors.clone(),
        );
        registry.register(
            "auditchain_transactions",
            "Kafka transactions by result",
            transactions.clone(),
        );
        registry.register(
            "auditchain_transaction_duration_seconds",
            "Transaction duration, first record to commit",
            transaction_seconds.clone(),
        );
        registry.register(
            "auditchain_end_to_end_latency_seconds",
            "Input record timestamp to the commit that made it durable",
            end_to_end_seconds.clone(),
        );
        registry.register(
            "auditchain_rebalances",
            "Rebalance events by kind",
            rebalances.clone(),
        );
        registry.register(
            "auditchain_restore_duration_seconds",
            "Time to restore chain state on assignment",
            restore_seconds.clone(),
        );
        registry.register(
            "auditchain_tenants_in_state",
            "Tenant chains held in memory",
            tenants.clone(),
        );
        registry.register(
            "auditchain_assigned_partitions",
            "Input partitions owned",
            assigned_partitions.clone(),
        );
        registry.register(
            "auditchain_keyset_reloads",
            "Producer key set reloads by result",
            keyset_reloads.clone(),
        );
        registry.register(
            "auditchain_keyset_stale",
            "1 while the producer key-set file changed and does not load: the set in force is older than the file, so a key revoked in it is still accepted",
            keyset_stale.clone(),
        );
        registry.register(
            "auditchain_consumer_lag_records",
            "Consumer group lag per input partition, in records",
            lag_records.clone(),
        );
        registry.register(
            "auditchain_consumer_lag_seconds",
            "Age of the oldest unprocessed record per input partition (0 when caught up)",
            lag_seconds.clone(),
        );
        registry.register(
            "auditchain_tenants_on_several_partitions",
            "New chains started for a tenant this instance already holds on another partition",
            tenants_on_several_partitions.clone(),
        );
        registry.register(
            "auditchain_offset_mismatches",
            "Restored partitions whose committed group offset disagreed with the chain state's next offset (the state's wins)",
            offset_mismatches.clone(),
        );
        registry.register(
            "auditchain_state_rebuilds",
            "Restored partitions whose chain state did not match the trail's last anchor, by finding: missing, behind, other_history (rebuilt from the trail) or ahead (refused)",
            state_rebuilds.clone(),
        );
        registry.register(
            "auditchain_early_commits",
            "Transactions committed before their interval so an anchor stays under the largest record the producer may send",
            early_commits.clone(),
        );
        registry.register(
            "auditchain_fetch_stalls",
            "Sessions restarted because an owned partition lagged while none of its records arrived (a stopped fetcher)",
            fetch_stalls.clone(),
        );
        registry.register(
            "auditchain_transaction_open_records",
            "Input records written in the open transaction, not yet committed",
            open_transaction_records.clone(),
        );
        registry.register(
            "auditchain_partition_stalled_seconds",
            "Seconds an input partition has had lag while its committed offset did not move (0 when it moves or has no lag)",
            partition_stalled_seconds.clone(),
        );
        registry.register(
            "auditchain_ready",
            "1 when the processor is ready",
            ready.clone(),
        );
        registry.register(
            "auditchain_processing_loop_stuck_seconds",
            "Seconds the processing loop has not come round (0 while it turns); /healthz fails past http.liveness_timeout_ms",
            loop_stuck_seconds.clone(),
        );
        registry.register(
            "auditchain_paused",
            "1 while consumption is paused by an operator",
            paused.clone(),
        );
        Arc::new(Metrics {
            registry,
            records,
            quarantined,
            anchors,
            transactions,
            transaction_seconds,
            end_to_end_seconds,
            rebalances,
            restore_seconds,
            tenants,
            assigned_partitions,
            keyset_reloads,
            keyset_stale,
            lag_records,
            lag_seconds,
            tenants_on_several_partitions,
            offset_mismatches,
            state_rebuilds,
            fetch_stalls,
            early_commits,
            open_transaction_records,
            partition_stalled_seconds,
            ready,
            paused,
            pause_requested: AtomicBool::new(false),
            restoring: AtomicBool::new(false),
            producer_ready: AtomicBool::new(false),
            loop_stuck_seconds,
            created: Instant::now(),
            loop_turned_ms: AtomicU64::new(0),
            liveness_ms: AtomicU64::new(0),
        })
    }

    /// What the processor did since these metrics were made, read from
    /// the counters (one set of counters: the run summary and `/metrics`
    /// cannot disagree).
    pub fn stats(&self) -> Stats {
        let records = |outcome| {
            self.records
                .get(&OutcomeLabel { outcome })
                .map_or(0, |c| c.get())
        };
        let transactions = |result| {
            self.transactions
                .get(&ResultLabel { result })
                .map_or(0, |c| c.get())
        };
        let quarantined = Reason::ALL
            .iter()
            .filter_map(|reason| {
                let n = self.quarantined.get(&ReasonLabel {
                    reason: reason.code(),
                })?;
                Some((*reason, n.get()))
            })
            .filter(|(_, n)| *n > 0)
            .collect();
        Stats {
            chained: records("chained"),
            quarantined,
            anchors: self.anchors.get(),
            commits: transactions("committed"),
            aborts: transactions("aborted"),
            tenants_on_several_partitions: self.tenants_on_several_partitions.get(),
            early_commits: self.early_commits.get(),
        }
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }

    fn update_ready(&self) {
        let ready =
            self.producer_ready.load(Ordering::Relaxed) && !self.restoring.load(Ordering::Relaxed);
        self.ready.set(i64::from(ready));
    }

    /// The producer is initialised (true) or gone after a fatal error (false).
    pub fn set_producer_ready(&self, ready: bool) {
        self.producer_ready.store(ready, Ordering::Relaxed);
        self.update_ready();
    }

    /// A restored partition's chain state did not match the trail
    /// ([`crate::rebuild::Finding::reason`]).
    pub fn state_rebuilt(&self, reason: &'static str) {
        self.state_rebuilds
            .get_or_create(&ReasonLabel { reason })
            .inc();
    }

    /// A restore started (true) or ended (false).
    pub fn set_restoring(&self, restoring: bool) {
        self.restoring.store(restoring, Ordering::Relaxed);
        self.update_ready();
    }

    /// Whether `/readyz` says ready.
    pub fn is_ready(&self) -> bool {
        self.ready.get() == 1
    }

    /// `/healthz` fails once the processing loop has not come round for
    /// `limit` (`http.liveness_timeout_ms`).
    pub fn set_liveness_limit(&self, limit: Duration) {
        self.liveness_ms
            .store(limit.as_millis() as u64, Ordering::Relaxed);
    }

    /// The processing loop came round (called every turn).
    pub fn loop_turned(&self) {
        let now = (self.created.elapsed().as_millis() as u64).max(1);
        self.loop_turned_ms.store(now, Ordering::Relaxed);
    }

    /// No session loop runs (between sessions, after the last).
    pub fn loop_ended(&self) {
        self.loop_turned_ms.store(0, Ordering::Relaxed);
    }

    /// How long the running processing loop has not come round.
    pub fn loop_stuck_for(&self) -> Duration {
        match self.loop_turned_ms.load(Ordering::Relaxed) {
            0 => Duration::ZERO,
            at => self
                .created
                .elapsed()
                .saturating_sub(Duration::from_millis(at)),
        }
    }

    /// How long the loop has been stuck, when that is past the liveness
    /// limit.
    pub fn stuck_past_limit(&self) -> Option<Duration> {
        let limit = self.liveness_ms.load(Ordering::Relaxed);
        let stuck = self.loop_stuck_for();
        (limit > 0 && stuck >= Duration::from_millis(limit)).then_some(stuck)
    }

    /// Records the end-to-end latency of records with these timestamps
    /// (milliseconds since the epoch), committed now.
    pub fn observe_committed(&self, timestamps_ms: &[i64]) {
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        for ts in timestamps_ms.iter().filter(|t| **t > 0) {
            self.end_to_end_seconds
                .observe((now_ms - ts).max(0) as f64 / 1000.0);
        }
    }
}

async fn metrics_handler(State(m): State<Arc<Metrics>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        m.render(),
    )
}

async fn health_handler(State(m): State<Arc<Metrics>>) -> impl IntoResponse {
    match m.stuck_past_limit() {
        None => (StatusCode::OK, "ok\n".to_string()),
        Some(stuck) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "the processing loop has not come round for {} s\n",
                stuck.as_secs()
            ),
        ),
    }
}

async fn ready_handler(State(m): State<Arc<Metrics>>) -> impl IntoResponse {
    if m.is_ready() {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
    }
}

async fn pause_handler(State(m): State<Arc<Metrics>>) -> impl IntoResponse {
    m.pause_requested.store(true, Ordering::Relaxed);
    tracing::warn!("consumption pause requested through /admin/pause");
    (StatusCode::ACCEPTED, "pausing\n")
}

async fn resume_handler(State(m): State<Arc<Metrics>>) -> impl IntoResponse {
    m.pause_requested.store(false, Ordering::Relaxed);
    tracing::warn!("consumption resume requested through /admin/resume");
    (StatusCode::ACCEPTED, "resuming\n")
}

/// Lets an admin request through only with the configured bearer token.
async fn require_admin_token(
    State(auth): State<Arc<AdminAuth>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let authorization = request
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.as_bytes());
    if auth.allows(authorization) {
        return next.run(request).await;
    }
    // The path only: never the header, which may hold a near-miss token.
    tracing::warn!(
        path = %request.uri().path(),
        "refused an admin request without a valid bearer token"
    );
    (
        StatusCode::UNAUTHORIZED,
        [(
            header::WWW_AUTHENTICATE,
            "Bearer realm=\"auditchain-admin\"",
        )],
        "unauthorized: POST /admin/* needs Authorization: Bearer <admin token>\n",
    )
        .into_response()
}

/// Binds `addr` and serves the endpoints on the current tokio runtime;
/// returns the bound address (useful with port 0). `auth` guards
/// `POST /admin/*`.
pub async fn serve(addr: SocketAddr, metrics: Arc<Metrics>, auth: AdminAuth) -> Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| Error::config("http.bind", format!("cannot listen on {addr}: {e}")))?;
    let bound = listener
        .local_addr()
        .map_err(|e| Error::config("http.bind", e.to_string()))?;
    let guarded = auth.requires_token();
    let admin = Router::new()
        .route("/admin/pause", post(pause_handler))
        .route("/admin/resume", post(resume_handler))
        .route_layer(axum::middleware::from_fn_with_state(
            Arc::new(auth),
            require_admin_token,
        ));
    let app = Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(health_handler))
        .route("/readyz", get(ready_handler))
        .merge(admin)
        .with_state(metrics);
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "the HTTP endpoint stopped");
        }
    });
    tracing::info!(
        address = %bound,
        admin_token_required = guarded,
        "serving /metrics, /healthz, /readyz and POST /admin/*"
    );
    Ok(bound)
}

/// Samples the group's lag every `interval` on a thread of its own, so lag
/// keeps being reported when the processing loop is stalled or paused: in
/// records (high watermark − committed offset) and in seconds (age of the
/// record at the committed offset; 0 when caught up).
pub fn start_lag_sampler(
    config: Arc<Config>,
    metrics: Arc<Metrics>,
    interval: Duration,
    stop: Arc<AtomicBool>,
) -> Result<()> {
    let reader: BaseConsumer<QuietContext> = base_client_config(&config, "auditchain-lag")
        .set("group.id", format!("{}-lag-probe", config.kafka.group_id))
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .create_with_context(QuietContext)
        .map_err(|e| Error::kafka("creating the lag sampler", e))?;
    std::thread::Builder::new()
        .name("lag-sampler".into())
        .spawn(move || {
            let mut progress = Progress::default();
            let mut stuck_logged: Option<Instant> = None;
            while !stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                match group_lag(&config) {
                    Ok(lag) => {
                        for l in lag {
                            let label = PartitionLabel {
                                partition: l.partition,
                            };
                            let stalled =
                                progress.observe(l.partition, l.committed, l.records(), started);
                            metrics
                                .partition_stalled_seconds
                                .get_or_create(&label)
                                .set(stalled.as_secs_f64());
                            metrics.lag_records.get_or_create(&label).set(l.records());
                            let age = if l.records() > 0 {
                                oldest_age(&reader, &config.topics.input, l.partition, l.committed)
                                    .unwrap_or(0.0)
                            } else {
                                0.0
                            };
                            metrics.lag_seconds.get_or_create(&label).set(age);
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "sampling consumer lag failed"),
                }
                report_stuck_loop(&metrics, &mut stuck_logged);
                std::thread::park_timeout(interval.saturating_sub(started.elapsed()));
            }
        })
        .map_err(|e| Error::Thread(format!("starting the lag sampler: {e}")))?;
    Ok(())
}

/// Sets the stuck-loop gauge; past the liveness limit, logs an error at
/// most once a minute (`/healthz` fails meanwhile).
fn report_stuck_loop(metrics: &Metrics, logged: &mut Option<Instant>) {
    metrics
        .loop_stuck_seconds
        .set(metrics.loop_stuck_for().as_secs_f64());
    let Some(stuck) = metrics.stuck_past_limit() else {
        *logged = None;
        return;
    };
    if logged.is_none_or(|at| at.elapsed() >= Duration::from_secs(60)) {
        *logged = Some(Instant::now());
        tracing::error!(
            stuck_secs = stuck.as_secs(),
            "the processing loop has not come round for {} s: /healthz fails so that an orchestrator restarts this process",
            stuck.as_secs()
        );
    }
}

/// When each partition's committed offset last moved (or had no lag).
#[derive(Debug, Default)]
struct Progress(std::collections::HashMap<i32, (i64, Instant)>);

impl Progress {
    /// How long `partition` has had lag without its committed offset
    /// moving, as of `now`.
    fn observe(&mut self, partition: i32, committed: i64, lag: i64, now: Instant) -> Duration {
        let entry = self.0.entry(partition).or_insert((committed, now));
        if lag <= 0 || entry.0 != committed {
            *entry = (committed, now);
        }
        now.saturating_duration_since(entry.1)
    }
}

/// Age in seconds of the first committed record at or after `offset`.
fn oldest_age(
    reader: &BaseConsumer<QuietContext>,
    topic: &str,
    partition: i32,
    offset: i64,
) -> Option<f64> {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Offset(offset))
        .ok()?;
    reader.assign(&tpl).ok()?;
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if let Some(Ok(m)) = reader.poll(Duration::from_millis(200)) {
            let ts = m.timestamp().to_millis()?;
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .ok()?
                .as_millis() as i64;
            return Some((now - ts).max(0) as f64 / 1000.0);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partition_is_stalled_while_it_has_lag_and_its_offset_stands_still() {
        let mut p = Progress::default();
        let t0 = Instant::now();
        let s = Duration::from_secs;
        assert_eq!(p.observe(0, 10, 5, t0), s(0));
        assert_eq!(p.observe(0, 10, 5, t0 + s(30)), s(30));
        // It moved: no longer stalled.
        assert_eq!(p.observe(0, 12, 3, t0 + s(35)), s(0));
        assert_eq!(p.observe(0, 12, 3, t0 + s(40)), s(5));
        // Caught up: nothing to make progress on.
        assert_eq!(p.observe(0, 12, 0, t0 + s(100)), s(0));
        assert_eq!(p.observe(0, 12, 4, t0 + s(110)), s(10));
    }

    fn names_in(text: &str) -> Vec<String> {
        let mut names = Vec::new();
        let mut rest = text;
        while let Some(i) = rest.find("auditchain_") {
            let tail = &rest[i..];
            let end = tail
                .find(|c: char| !(c.is_ascii_lowercase() || c == '_'))
                .unwrap_or(tail.len());
            names.push(tail[..end].to_string());
            rest = &tail[end..];
        }
        names
    }

    #[test]
    fn alerts_and_dashboard_use_only_metrics_that_exist() {
        let m = Metrics::new();
        // Touch every labelled family so its series appear.
        let _ = m
            .records
            .get_or_create(&OutcomeLabel { outcome: "chained" });
        let _ = m.quarantined.get_or_create(&ReasonLabel {
            reason: "OVERSIZED",
        });
        let _ = m.transactions.get_or_create(&ResultLabel {
            result: "committed",
        });
        let _ = m.rebalances.get_or_create(&KindLabel { kind: "assign" });
        let _ = m
            .keyset_reloads
            .get_or_create(&ResultLabel { result: "ok" });
        let _ = m
            .state_rebuilds
            .get_or_create(&ReasonLabel { reason: "missing" });
        let _ = m
            .lag_records
            .get_or_create(&PartitionLabel { partition: 0 });
        let _ = m
            .lag_seconds
            .get_or_create(&PartitionLabel { partition: 0 });
        let _ = m
            .partition_stalled_seconds
            .get_or_create(&PartitionLabel { partition: 0 });
        let exported = m.render();
        let exported: std::collections::HashSet<String> = exported
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.split(['{', ' ']).next().map(str::to_string))
            .collect();
        for (file, text) in [
            (
                "alerts.yml",
                include_str!("../../../ops/prometheus/alerts.yml"),
            ),
            (
                "auditchain-dashboard.json",
                include_str!("../../../ops/grafana/auditchain-dashboard.json"),
            ),
        ] {
            for name in names_in(text) {
                assert!(
                    exported.contains(&name),
                    "{file} uses `{name}`, which /metrics does not export"
                );
            }
        }
    }

    #[test]
    fn readiness_needs_a_producer_and_no_restore_in_progress() {
        let m = Metrics::new();
        assert!(!m.is_ready());
        m.set_producer_ready(true);
        assert!(m.is_ready());
        m.set_restoring(true);
        assert!(!m.is_ready());
        m.set_restoring(false);
        m.set_producer_ready(false);
        assert!(!m.is_ready());
    }
}
