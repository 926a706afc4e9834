//! `auditchain run`: the consumer side and the loop that drives the engine.
//!
//! One thread owns the consumer and the engine. Records are polled in
//! micro-batches, routed in parallel, written to the open transaction, and
//! the transaction is closed every `commit_interval_ms` or
//! `max_batch_records` (or early, when an anchor would grow too large). The
//! pool routes a micro-batch chunk by chunk while this thread commits the
//! due transaction and writes the chunks already routed.
//! Rebalance callbacks run inside `poll` on the same thread: a revoke
//! commits the open transaction first (aborts it when the assignment was
//! lost); an assignment only records the new partitions, which the loop
//! restores — after committing what is open, never inside a transaction —
//! before a single record of theirs is processed.
//!
//! Errors are handled by class (see `error.rs`): abortable errors abort,
//! which drops the open transaction and rewinds every owned partition to
//! its committed next offset (the engine's committed state never saw the
//! aborted records, so nothing needs restoring); fatal ones end the session
//! and a new one starts with a fresh producer, a new group membership and a
//! full restore.

pub mod engine;
pub mod txn;
pub mod watch;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use opentelemetry::KeyValue;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::{ClientConfig, ClientContext, Offset, TopicPartitionList};

use crate::config::Config;
use crate::error::{Error, ErrorClass, Result};
use crate::faults::{CommitCause, Faults};
use crate::kafka::{base_client_config, ensure_topics};
use crate::keys::{load_signing_key, WatchedKeySet};
pub use crate::metrics::Stats;
use crate::metrics::{KindLabel, Metrics, PartitionLabel, ResultLabel};
use crate::registry::{Lookup, Registry};
use crate::route::{missing_schema_ids, Decoders};
use crate::schema::{
    schemas, EventDecoder, ANCHOR_BATCH_AVSC, CHAINED_RECORD_AVSC, QUARANTINE_RECORD_AVSC,
};
use crate::telemetry::{self, Traces};
use engine::{Engine, OutputSchemaIds, Outputs, Routed};
use watch::{FetchWatch, Stall};

/// What `run` needs besides the configuration.
#[allow(missing_debug_implementations)] // Traces and Metrics hold exporters and registries
pub struct RunOptions {
    /// Where spans go ([`Traces::off`] for none).
    pub traces: Traces,
    /// Faults to inject at the sink (tests only; `None` in production).
    pub faults: Option<Arc<Faults>>,
    /// The metrics to report to (and read pause requests from); a new set
    /// when `None`.
    pub metrics: Option<Arc<Metrics>>,
}

impl RunOptions {
    /// What the binary uses: no faults, new metrics, spans to `traces`.
    pub fn new(traces: Traces) -> RunOptions {
        RunOptions {
            traces,
            faults: None,
            metrics: None,
        }
    }
}

/// Records taken from the consumer per routing round.
pub const MICRO_BATCH: usize = 2_000;
/// Records routed per job of a batch: small enough that the first is
/// written soon and a due commit waits little, large enough to spread
/// over the pool.
const ROUTE_CHUNK: usize = 256;

/// Longest single poll, so shutdown and due commits are noticed promptly.
pub const MAX_POLL: Duration = Duration::from_millis(200);
/// Timeout of group-coordinator calls made while rebalancing.
const COORDINATOR_TIMEOUT: Duration = Duration::from_secs(30);
/// How often consumer lag is sampled for the metrics.
const LAG_SAMPLE_INTERVAL: Duration = Duration::from_secs(5);
/// How often the loop looks for a partition whose fetcher stopped (the lag
/// it compares with is sampled every `LAG_SAMPLE_INTERVAL`).
const WATCH_INTERVAL: Duration = Duration::from_secs(1);
/// A session that lasted this long before it failed resets the back-off
/// before the next one.
const HEALTHY_SESSION: Duration = Duration::from_secs(60);
/// A gap this long between two polls means the loop was busy elsewhere
/// (a slow commit, a back-off): no partition could have delivered.
const POLL_GAP: Duration = Duration::from_secs(5);

fn lock(engine: &Mutex<Engine>) -> MutexGuard<'_, Engine> {
    match engine.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

/// The consumer context: rebalance handling against the shared engine.
struct Ctx {
    engine: Arc<Mutex<Engine>>,
    input: String,
    metrics: Arc<Metrics>,
    traces: Traces,
}

impl ClientContext for Ctx {}

fn input_partitions(tpl: &TopicPartitionList, topic: &str) -> Vec<i32> {
    tpl.elements()
        .iter()
        .filter(|e| e.topic() == topic)
        .map(|e| e.partition())
        .collect()
}

impl ConsumerContext for Ctx {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let (kind, partitions) = match rebalance {
            Rebalance::Revoke(tpl) if consumer.assignment_lost() => {
                ("lost", input_partitions(tpl, &self.input))
            }
            Rebalance::Revoke(tpl) => ("revoke", input_partitions(tpl, &self.input)),
            Rebalance::Assign(tpl) => ("assign", input_partitions(tpl, &self.input)),
            Rebalance::Error(_) => ("error", Vec::new()),
        };
        // The commit before a revoke and the restore after an assignment
        // become children of this span.
        let span = self.traces.enter(
            telemetry::REBALANCE_SPAN,
            vec![
                KeyValue::new("auditchain.rebalance.kind", kind),
                KeyValue::new(
                    "auditchain.partitions",
                    telemetry::partitions_value(&partitions),
                ),
                KeyValue::new("messaging.destination.name", self.input.clone()),
            ],
        );
        self.rebalance(consumer, rebalance, kind, &partitions);
        if let Some(span) = span {
            if let Some(e) = &lock(&self.engine).fatal {
                span.fail(e);
            } else if let Rebalance::Error(e) = rebalance {
                span.fail(e);
            }
        }
    }
}

impl Ctx {
    /// `kind` and `partitions` are what `pre_rebalance` read off `rebalance`.
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        rebalance: &Rebalance<'_>,
        kind: &'static str,
        partitions: &[i32],
    ) {
        let mut engine = lock(&self.engine);
        match rebalance {
            Rebalance::Revoke(_) => {
                let lost = kind == "lost";
                self.metrics
                    .rebalances
                    .get_or_create(&KindLabel { kind })
                    .inc();
                if lost {
                    tracing::warn!(
                        ?partitions,
                        "assignment lost: aborting the open transaction"
                    );
                    if let Err(e) = engine.abort() {
                        engine.fatal = Some(e);
                    }
                } else if engine.has_open_transaction() {
                    let result = match consumer.group_metadata() {
                        Some(group) => engine.commit(&group, CommitCause::Revoke),
                        None => Err(Error::State(
                            "no consumer group metadata while revoking".into(),
                        )),
                    };
                    if let Err(e) = result {
                        tracing::warn!(error = %e, "commit before revoke failed: aborting; the partitions kept are rewound");
                        if e.class() == Some(ErrorClass::Fatal) {
                            engine.fatal = Some(e);
                        } else if let Err(e) = engine.abort() {
                            engine.fatal = Some(e);
                        }
                    }
                }
                engine.revoke(partitions);
                tracing::info!(?partitions, "partitions revoked");
            }
            Rebalance::Assign(_) => {
                self.metrics
                    .rebalances
                    .get_or_create(&KindLabel { kind })
                    .inc();
                tracing::info!(
                    ?partitions,
                    "partitions assigned; restoring their chain state"
                );
                engine.assign(partitions);
            }
            Rebalance::Error(e) => tracing::warn!(error = %e, "rebalance error"),
        }
    }
}

/// The group's committed offsets of input `partitions` (those it has).
fn group_offsets(consumer: &BaseConsumer<Ctx>, partitions: &[i32]) -> Result<HashMap<i32, i64>> {
    let input = &consumer.context().input;
    let mut tpl = TopicPartitionList::new();
    for p in partitions {
        tpl.add_partition(input, *p);
    }
    let committed =
        crate::kafka::asked_again(|| consumer.committed_offsets(tpl.clone(), COORDINATOR_TIMEOUT))
            .map_err(|e| Error::kafka("reading the committed offsets of assigned partitions", e))?;
    Ok(committed_map(&committed, input))
}

fn committed_map(tpl: &TopicPartitionList, topic: &str) -> HashMap<i32, i64> {
    tpl.elements()
        .iter()
        .filter(|e| e.topic() == topic)
        .filter_map(|e| match e.offset() {
            Offset::Offset(o) => Some((e.partition(), o)),
            _ => None,
        })
        .collect()
}

/// Schema ids → decoders, resolved through the registry when there is one.
struct Catalog {
    registry: Option<Registry>,
    decoders: Decoders,
}

impl Catalog {
    /// Makes sure every schema id in `batch` has an answer.
    fn resolve(
        &mut self,
        batch: &[BorrowedMessage<'_>],
        rt: &tokio::runtime::Handle,
    ) -> Result<()> {
        let missing = missing_schema_ids(batch.iter().map(|m| m.payload()), &self.decoders);
        for id in missing {
            let decoder = match &self.registry {
                None => None,
                Some(registry) => match rt.block_on(registry.lookup(id))? {
                    Lookup::Unknown => None,
                    Lookup::Found(text) => match EventDecoder::from_writer_schema(&text) {
                        Ok(d) => Some(Arc::new(d)),
                        Err(e) => {
                            tracing::warn!(schema_id = id, error = %e, "registry schema does not parse; records using it are quarantined");
                            None
                        }
                    },
                },
            };
            self.decoders.insert(id, decoder);
        }
        Ok(())
    }
}

/// What a finished run did.
#[derive(Debug, Clone)]
pub struct RunSummary {
    /// What the run did (every session), read from its metrics.
    pub stats: Stats,
    /// Sessions started (more than one after fatal errors).
    pub sessions: u32,
}

/// Runs the processor until `shutdown` is set. Blocking: call it from a
/// dedicated thread; `rt` serves the async registry and admin calls.
/// Spans go to `traces` ([`Traces::off`] for none).
pub fn run(
    config: Arc<Config>,
    shutdown: Arc<AtomicBool>,
    rt: tokio::runtime::Handle,
    traces: Traces,
) -> Result<RunSummary> {
    run_with(config, shutdown, rt, RunOptions::new(traces))
}

/// [`run`] with options (fault injection, shared metrics).
pub fn run_with(
    config: Arc<Config>,
    shutdown: Arc<AtomicBool>,
    rt: tokio::runtime::Handle,
    options: RunOptions,
) -> Result<RunSummary> {
    // First: a processor whose admin endpoint anyone could use must not start.
    let admin_auth = crate::auth::AdminAuth::resolve(
        &config.http,
        std::env::var(crate::auth::ADMIN_TOKEN_ENV).ok(),
    )?;
    let signing_key = load_signing_key(&config.signing.key_file)?;
    let metrics = options.metrics.clone().unwrap_or_else(Metrics::new);
    metrics.set_liveness_limit(Duration::from_millis(config.http.liveness_timeout_ms));
    let address = rt.block_on(crate::metrics::serve(
        config.http.bind,
        Arc::clone(&metrics),
        admin_auth,
    ))?;
    if let Some(path) = std::env::var_os("AUDITCHAIN_HTTP_ADDRESS_FILE") {
        // Lets a supervisor (or a test) find a port chosen with port 0.
        let _ = std::fs::write(path, address.to_string());
    }
    let sampler_stop = Arc::new(AtomicBool::new(false));
    crate::metrics::start_lag_sampler(
        Arc::clone(&config),
        Arc::clone(&metrics),
        LAG_SAMPLE_INTERVAL,
        Arc::clone(&sampler_stop),
    )?;
    let result = run_sessions(config, shutdown, rt, signing_key, metrics, options);
    sampler_stop.store(true, Ordering::Relaxed);
    result
}

fn run_sessions(
    config: Arc<Config>,
    shutdown: Arc<AtomicBool>,
    rt: tokio::runtime::Handle,
    signing_key: ed25519_dalek::SigningKey,
    metrics: Arc<Metrics>,
    options: RunOptions,
) -> Result<RunSummary> {
    let keys = WatchedKeySet::start(
        &config.producer_keys.file,
        Duration::from_millis(config.producer_keys.reload_interval_ms),
    )?;
    let report = rt.block_on(ensure_topics(&config))?;
    if !report.created.is_empty() {
        tracing::info!(created = ?report.created, partitions = report.input_partitions, "output topics created");
    }
    let (schema_ids, mut catalog) = match &config.schema_registry {
        Some(rc) => {
            let registry = Registry::new(rc)?;
            let t = &config.topics;
            let ids = OutputSchemaIds {
                chained: rt.block_on(
                    registry.register(&format!("{}-value", t.chained), CHAINED_RECORD_AVSC),
                )?,
                quarantine: rt.block_on(
                    registry.register(&format!("{}-value", t.quarantine), QUARANTINE_RECORD_AVSC),
                )?,
                anchor: rt.block_on(
                    registry.register(&format!("{}-value", t.anchors), ANCHOR_BATCH_AVSC),
                )?,
            };
            (
                ids,
                Catalog {
                    registry: Some(registry),
                    decoders: HashMap::new(),
                },
            )
        }
        None => {
            let s = &config.schemas;
            let compiled = Arc::new(EventDecoder::compiled());
            (
                OutputSchemaIds {
                    chained: s.chained_record_id,
                    quarantine: s.quarantine_record_id,
                    anchor: s.anchor_batch_id,
                },
                Catalog {
                    registry: None,
                    decoders: s
                        .audit_event_ids
                        .iter()
                        .map(|id| (*id, Some(Arc::clone(&compiled))))
                        .collect(),
                },
            )
        }
    };
    // Touch the schemas once so a defect shows at start-up, not mid-stream.
    let _ = schemas();
    tracing::info!(
        input = %config.topics.input,
        group = %config.kafka.group_id,
        transactional_id = %config.transactional_id(),
        registry = config.schema_registry.as_ref().map(|r| r.display_url()).unwrap_or_else(|| "none (compiled-in schemas)".into()),
        producer_keys = keys.current().len(),
        "auditchain starting"
    );

    let mut sessions = 0u32;
    let mut backoff = Duration::from_millis(500);
    loop {
        sessions += 1;
        let engine = Engine::new(
            Arc::clone(&config),
            signing_key.clone(),
            Outputs {
                schema_ids,
                max_record_bytes: report.max_output_record_bytes,
                max_anchor_bytes: report.max_anchor_bytes,
                max_state_bytes: report.max_state_bytes,
                partitions: report.input_partitions,
            },
            rt.clone(),
            Arc::clone(&metrics),
            options.traces.clone(),
            options.faults.clone(),
        )?;
        let engine = Arc::new(Mutex::new(engine));
        let began = Instant::now();
        let outcome = session(
            &config,
            &engine,
            &mut catalog,
            &keys,
            &shutdown,
            &rt,
            &metrics,
        );
        metrics.set_producer_ready(false);
        metrics.loop_ended();
        match outcome {
            Ok(()) => {
                let stats = metrics.stats();
                return Ok(RunSummary { stats, sessions });
            }
            Err(e) if shutdown.load(Ordering::Relaxed) => return Err(e),
            Err(e) => {
                // A session that ran a while is not part of a failing
                // streak: the back-off starts over.
                if began.elapsed() >= HEALTHY_SESSION {
                    backoff = Duration::from_millis(500);
                }
                tracing::error!(error = %e, retry_in_ms = backoff.as_millis() as u64, "session ended; starting a new producer, rejoining and restoring");
                // Waiting out a broker or coordinator that just failed, not
                // synchronising anything.
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
    }
}

/// The input consumer's settings (the benchmark's passthrough uses them
/// too, so it is measured with what the processor runs with).
pub fn consumer_config(config: &Config) -> ClientConfig {
    let mut cc = base_client_config(config, &format!("auditchain-{}", config.kafka.instance_id));
    cc.set("auto.offset.reset", "earliest")
        .set(
            "session.timeout.ms",
            config.kafka.session_timeout_ms.to_string(),
        )
        // Notice a grown input topic within half a minute, not librdkafka's five.
        .set("topic.metadata.refresh.interval.ms", "30000");
    for (k, v) in &config.librdkafka {
        cc.set(k, v);
    }
    cc.set("group.id", &config.kafka.group_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("isolation.level", "read_committed")
        .set("partition.assignment.strategy", "cooperative-sticky");
    cc
}

fn new_consumer(
    config: &Config,
    traces: &Traces,
    engine: &Arc<Mutex<Engine>>,
    metrics: &Arc<Metrics>,
) -> Result<BaseConsumer<Ctx>> {
    consumer_config(config)
        .create_with_context(Ctx {
            engine: Arc::clone(engine),
            input: config.topics.input.clone(),
            metrics: Arc::clone(metrics),
            traces: traces.clone(),
        })
        .map_err(|e| Error::kafka("creating the consumer", e))
}

/// One group membership with one producer; returns on shutdown (Ok) or on
/// an error only a new session can repair.
fn session(
    config: &Config,
    engine: &Arc<Mutex<Engine>>,
    catalog: &mut Catalog,
    keys: &WatchedKeySet,
    shutdown: &AtomicBool,
    rt: &tokio::runtime::Handle,
    metrics: &Arc<Metrics>,
) -> Result<()> {
    let traces = lock(engine).traces().clone();
    let consumer = new_consumer(config, &traces, engine, metrics)?;
    consumer
        .subscribe(&[&config.topics.input])
        .map_err(|e| Error::kafka(format!("subscribing to `{}`", config.topics.input), e))?;
    let mut paused = false;
    let mut outage = Backoff::new();
    let mut watch = FetchWatch::new(
        (config.processing.fetch_stall_timeout_ms > 0)
            .then(|| Duration::from_millis(config.processing.fetch_stall_timeout_ms)),
    );
    let mut next_watch = Instant::now();
    let mut last_poll = Instant::now();
    let mut batch: Vec<BorrowedMessage<'_>> = Vec::with_capacity(MICRO_BATCH);
    loop {
        batch.clear();
        metrics.loop_turned();
        if shutdown.load(Ordering::Relaxed) {
            drop(batch);
            return close(&consumer, engine);
        }
        report_reloads(keys, metrics);
        let want_pause = metrics.pause_requested.load(Ordering::Relaxed);
        if want_pause || paused {
            set_paused(&consumer, engine, want_pause, &mut paused)?;
        }
        prepare(&consumer, engine)?;
        let consumer_error = poll_batch(
            &consumer,
            engine,
            &mut batch,
            config.processing.max_batch_bytes,
        );
        // Quiet time only counts while the loop polls: a gap between two
        // polls (a slow commit, a back-off) excuses every partition.
        let polled = Instant::now();
        let gap = polled.saturating_duration_since(last_poll);
        last_poll = polled;
        note_arrivals(&mut watch, &batch, consumer_error || gap > POLL_GAP);
        if let Some(e) = lock(engine).fatal.take() {
            return Err(e);
        }
        if polled >= next_watch {
            next_watch = polled + WATCH_INTERVAL;
            if let Some(stall) = fetch_stalled(&consumer, engine, metrics, &mut watch, paused)? {
                drop(batch);
                return end_stalled(&consumer, engine, metrics, stall);
            }
        }
        if !batch.is_empty() {
            if let Err(e) = catalog.resolve(&batch, rt) {
                let wait = outage.next();
                tracing::warn!(error = %e, retry_in_ms = wait.as_millis() as u64, "schema registry unavailable; committing what is done and fetching the batch again");
                let mut eng = lock(engine);
                commit_or_abort(&consumer, &mut eng, CommitCause::Outage)?;
                eng.rewind_all();
                drop(eng);
                // Backing off from a failing registry, not synchronising.
                std::thread::sleep(wait);
                continue;
            }
            outage = Backoff::new();
            process_batch(&consumer, engine, &batch, catalog, keys)?;
        }
        // A due transaction with records waiting is committed by the next
        // `process_batch`, alongside their routing; with none, right here.
        if batch.is_empty() {
            let mut eng = lock(engine);
            if !eng.has_open_transaction() {
                if let Err(e) = commit_past_markers(&consumer, &mut eng) {
                    handle(e, &mut eng)?;
                    continue;
                }
            }
            if eng.txn_due() {
                commit_or_abort(&consumer, &mut eng, CommitCause::Due)?;
            }
        }
    }
}

/// Notes which partitions delivered records just now; `excused` (a
/// consumer error such as brokers down, or a long gap since the last poll)
/// excuses every partition's silence so far.
fn note_arrivals(watch: &mut FetchWatch, batch: &[BorrowedMessage<'_>], excused: bool) {
    let now = Instant::now();
    if excused {
        watch.excuse(now);
    }
    let mut last = None;
    for m in batch {
        if last != Some(m.partition()) {
            last = Some(m.partition());
            watch.received(m.partition(), now);
        }
    }
}

/// An owned partition whose fetcher stopped, if there is one
/// ([`watch::FetchWatch`]). While paused by an operator no partition is
/// expected to deliver, so the watch forgets them all and gives each the
/// whole limit again after the resume. A test's planned fetcher stop and
/// loop block are applied here.
fn fetch_stalled(
    consumer: &BaseConsumer<Ctx>,
    engine: &Arc<Mutex<Engine>>,
    metrics: &Metrics,
    watch: &mut FetchWatch,
    paused: bool,
) -> Result<Option<Stall>> {
    let eng = lock(engine);
    if eng.fetcher_stop_planned() {
        let assignment = consumer
            .assignment()
            .map_err(|e| Error::kafka("reading the assignment", e))?;
        consumer
            .pause(&assignment)
            .map_err(|e| Error::kafka("pausing the assignment (injected)", e))?;
    }
    let owned = if paused {
        Vec::new()
    } else {
        eng.owned_partitions()
    };
    let epoch = eng.assignment_epoch();
    let block = eng.loop_block_planned();
    // A consumer whose position is past a partition's committed next
    // offset is fetching it, whatever holds the commit back (a commit
    // marker at the end of a quiet partition, say): not a stopped fetcher.
    let positions = consumer
        .position()
        .map_err(|e| Error::kafka("reading the consumer position", e))?;
    let positions = committed_map(&positions, eng.owned_topic());
    let now = Instant::now();
    for p in &owned {
        if let (Some(at), Some(next)) = (positions.get(p), eng.next_offset(*p)) {
            if *at > next {
                watch.received(*p, now);
            }
        }
    }
    drop(eng);
    if let Some(time) = block {
        // The injected fault itself: a call that does not return for `time`.
        std::thread::sleep(time);
    }
    if watch.assignment_changed(epoch) {
        watch.excuse(Instant::now());
    }
    let stalled_for = |partition| {
        let seconds = metrics
            .partition_stalled_seconds
            .get_or_create(&PartitionLabel { partition })
            .get();
        Duration::try_from_secs_f64(seconds).unwrap_or(Duration::ZERO)
    };
    Ok(watch.check(&owned, stalled_for, Instant::now()))
}

/// Ends a session whose fetcher stopped: commits what is open, leaves the
/// group, and returns the error that makes `run_sessions` start a new one.
fn end_stalled(
    consumer: &BaseConsumer<Ctx>,
    engine: &Arc<Mutex<Engine>>,
    metrics: &Metrics,
    stall: Stall,
) -> Result<()> {
    let error = Error::FetchStalled {
        partition: stall.partition,
        quiet_secs: stall.quiet.as_secs(),
    };
    metrics.fetch_stalls.inc();
    tracing::error!(
        partition = stall.partition,
        quiet_secs = stall.quiet.as_secs(),
        "{error}"
    );
    close(consumer, engine)?;
    Err(error)
}

/// Before polling: a fatal error from a callback ends the session; waiting
/// partitions are restored (after committing what is open); partitions
/// marked for a rewind are sought back to their committed next offset.
fn prepare(consumer: &BaseConsumer<Ctx>, engine: &Arc<Mutex<Engine>>) -> Result<()> {
    let mut eng = lock(engine);
    if let Some(e) = eng.fatal.take() {
        return Err(e);
    }
    if eng.restore_due() {
        commit_or_abort(consumer, &mut eng, CommitCause::Assign)?;
        // Read with no transaction of ours open: under read_committed the
        // broker holds the answer back while offsets of a transaction are
        // pending (a previous owner's), up to the timeout; in the
        // assignment callback that wait could outlast the transaction this
        // instance had open for its other partitions, and have it aborted.
        let committed = group_offsets(consumer, &eng.unrestored())?;
        eng.restore_pending(&committed)?;
    }
    let rewinds = eng.take_rewinds();
    drop(eng);
    seek(consumer, engine, rewinds)
}

/// Polls one micro-batch: up to `MICRO_BATCH` records or `max_bytes` of
/// keys and values, or until the open transaction is due. Returns whether
/// the consumer reported an error instead of records.
fn poll_batch<'c>(
    consumer: &'c BaseConsumer<Ctx>,
    engine: &Arc<Mutex<Engine>>,
    batch: &mut Vec<BorrowedMessage<'c>>,
    max_bytes: usize,
) -> bool {
    let mut timeout = lock(engine)
        .txn_remaining()
        .map_or(MAX_POLL, |r| r.min(MAX_POLL));
    let mut bytes = 0usize;
    while batch.len() < MICRO_BATCH && bytes < max_bytes {
        match consumer.poll(timeout) {
            None => break,
            Some(Ok(m)) => {
                bytes += m.payload_len() + m.key().map_or(0, <[u8]>::len);
                batch.push(m);
            }
            Some(Err(e)) => {
                tracing::warn!(error = %e, "consumer error");
                return true;
            }
        }
        timeout = Duration::ZERO;
    }
    false
}

/// Routes a batch on the verification pool while this thread writes it:
/// every chunk is queued on the pool at once, and each is written, in
/// order, as soon as it is routed. The open transaction is committed
/// between two chunks as soon as it is due, and the pool goes on routing
/// the rest of the batch meanwhile, so neither the writing nor a commit's
/// round trips leave the cores idle, and a due commit waits for one chunk
/// at most, not a whole batch. An error aborts (and rewinds) or ends the
/// session; chunks not yet routed are then skipped. No poll runs in
/// between, so nothing can move a partition under the routed records; an
/// abort mid-batch drops the rest (they are fetched again).
fn process_batch(
    consumer: &BaseConsumer<Ctx>,
    engine: &Arc<Mutex<Engine>>,
    batch: &[BorrowedMessage<'_>],
    catalog: &Catalog,
    keys: &WatchedKeySet,
) -> Result<()> {
    let current_keys = keys.current();
    let mut eng = lock(engine);
    let accepted = eng.accept(batch);
    let router = eng.router();
    let stop = AtomicBool::new(false);
    let mut step = Ok(());
    router.pool().in_place_scope(|scope| {
        let (ready, routed) = std::sync::mpsc::channel::<(usize, Vec<Routed>)>();
        let mut chunks = 0;
        for (n, chunk) in accepted.chunks(ROUTE_CHUNK).enumerate() {
            chunks += 1;
            let (ready, router, stop, keys) = (ready.clone(), &router, &stop, &current_keys);
            scope.spawn(move |_| {
                let out = if stop.load(Ordering::Relaxed) {
                    Vec::new()
                } else {
                    router.route(batch, chunk, &catalog.decoders, keys)
                };
                // The receiver is gone only once the loop below has ended.
                let _ = ready.send((n, out));
            });
        }
        drop(ready);
        step = write_in_order(consumer, &mut eng, batch, &routed, chunks);
        if step.is_err() {
            stop.store(true, Ordering::Relaxed);
        }
    });
    if let Err(e) = step {
        return handle(e, &mut eng);
    }
    Ok(())
}

/// Writes the routed chunks `0..chunks` in order as they arrive (they
/// may be routed out of order), committing whenever the open transaction
/// is due.
fn write_in_order(
    consumer: &BaseConsumer<Ctx>,
    eng: &mut Engine,
    batch: &[BorrowedMessage<'_>],
    routed: &std::sync::mpsc::Receiver<(usize, Vec<Routed>)>,
    chunks: usize,
) -> Result<()> {
    // A batch none of whose records is taken (a partition waiting for its
    // restore or rewind) still closes a due transaction.
    if chunks == 0 && eng.txn_due() {
        commit(consumer, eng, CommitCause::Due)?;
    }
    let mut early: BTreeMap<usize, Vec<Routed>> = BTreeMap::new();
    for next in 0..chunks {
        let chunk = loop {
            if let Some(chunk) = early.remove(&next) {
                break chunk;
            }
            match routed.recv() {
                Ok((n, chunk)) if n == next => break chunk,
                Ok((n, chunk)) => {
                    early.insert(n, chunk);
                }
                // Every sender is gone without chunk `next`: its routing
                // panicked, and the scope re-raises that panic.
                Err(_) => return Err(Error::State("routing a chunk failed".into())),
            }
        };
        write_routed(consumer, eng, batch, chunk)?;
        if eng.txn_due() {
            commit(consumer, eng, CommitCause::Due)?;
        }
    }
    Ok(())
}

/// Writes routed records, committing early whenever an anchor would grow
/// past the size limit.
fn write_routed(
    consumer: &BaseConsumer<Ctx>,
    eng: &mut Engine,
    batch: &[BorrowedMessage<'_>],
    mut routed: Vec<Routed>,
) -> Result<()> {
    while !routed.is_empty() {
        routed = eng.write(batch, routed)?;
        if !routed.is_empty() {
            tracing::debug!("an anchor reached its size limit: committing early");
            commit(consumer, eng, CommitCause::Full)?;
        }
    }
    Ok(())
}

/// Seeks partitions back to where their committed state ends. A partition
/// whose seek fails stays marked, so its records keep being ignored.
fn seek(
    consumer: &BaseConsumer<Ctx>,
    engine: &Arc<Mutex<Engine>>,
    rewinds: Vec<engine::Rewind>,
) -> Result<()> {
    if rewinds.is_empty() {
        return Ok(());
    }
    let topic = lock(engine).owned_topic().to_string();
    let mut tpl = TopicPartitionList::new();
    for (p, offset) in &rewinds {
        tpl.add_partition_offset(&topic, *p, *offset)
            .map_err(|e| Error::kafka("building the rewind positions", e))?;
    }
    let failed: Vec<i32> = match consumer.seek_partitions(tpl, COORDINATOR_TIMEOUT) {
        Ok(result) => result
            .elements()
            .iter()
            .filter(|e| e.error().is_err())
            .map(|e| e.partition())
            .collect(),
        Err(e) => {
            tracing::warn!(error = %e, "seeking to the committed offsets failed; trying again");
            rewinds.iter().map(|(p, _)| *p).collect()
        }
    };
    if !failed.is_empty() {
        tracing::warn!(partitions = ?failed, "seek failed; their records stay ignored until it succeeds");
        lock(engine).rewind_again(failed);
    }
    tracing::debug!(?rewinds, "partitions rewound to their committed offsets");
    Ok(())
}

/// Exponential backoff for an outage (the schema registry).
struct Backoff(Duration);

impl Backoff {
    fn new() -> Backoff {
        Backoff(Duration::from_millis(250))
    }

    fn next(&mut self) -> Duration {
        let wait = self.0;
        self.0 = (self.0 * 2).min(Duration::from_secs(30));
        wait
    }
}

fn commit(consumer: &BaseConsumer<Ctx>, engine: &mut Engine, cause: CommitCause) -> Result<()> {
    let group = consumer
        .group_metadata()
        .ok_or_else(|| Error::State("no consumer group metadata to commit with".into()))?;
    engine.commit(&group, cause)
}

/// Pauses (committing first) or resumes consumption of every assigned
/// partition. While paused it re-applies the pause each round, so partitions
/// assigned by a rebalance in the meantime stay paused too.
fn set_paused(
    consumer: &BaseConsumer<Ctx>,
    engine: &Arc<Mutex<Engine>>,
    want: bool,
    paused: &mut bool,
) -> Result<()> {
    let assignment = consumer
        .assignment()
        .map_err(|e| Error::kafka("reading the assignment", e))?;
    if want {
        if !*paused {
            let mut eng = lock(engine);
            commit_or_abort(consumer, &mut eng, CommitCause::Pause)?;
            eng.metrics().paused.set(1);
            tracing::warn!("consumption paused by an operator");
        }
        consumer
            .pause(&assignment)
            .map_err(|e| Error::kafka("pausing the assigned partitions", e))?;
        *paused = true;
    } else if *paused {
        consumer
            .resume(&assignment)
            .map_err(|e| Error::kafka("resuming the assigned partitions", e))?;
        lock(engine).metrics().paused.set(0);
        tracing::warn!("consumption resumed");
        *paused = false;
    }
    Ok(())
}

fn report_reloads(keys: &WatchedKeySet, metrics: &Metrics) {
    metrics.keyset_stale.set(i64::from(keys.stale()));
    for (result, total) in [("ok", keys.reloads()), ("failed", keys.reload_failures())] {
        let counter = metrics
            .keyset_reloads
            .get_or_create(&ResultLabel { result });
        counter.inc_by(total.saturating_sub(counter.get()));
    }
}

/// See `Engine::commit_past_markers`.
fn commit_past_markers(consumer: &BaseConsumer<Ctx>, engine: &mut Engine) -> Result<()> {
    let positions = consumer
        .position()
        .map_err(|e| Error::kafka("reading the consumer position", e))?;
    let positions = committed_map(&positions, engine.owned_topic());
    if positions.is_empty() {
        return Ok(());
    }
    let Some(group) = consumer.group_metadata() else {
        return Ok(());
    };
    engine.commit_past_markers(&positions, &group).map(|_| ())
}

/// Aborts after an abortable error (which rewinds every owned partition);
/// a fatal one, or a failed abort, ends the session.
fn handle(e: Error, engine: &mut Engine) -> Result<()> {
    if e.class() == Some(ErrorClass::Fatal) {
        return Err(e);
    }
    engine.abort()?;
    let wait = engine.abort_backoff();
    tracing::warn!(error = %e, retry_in_ms = wait.as_millis() as u64, "aborted the transaction; rewinding to the committed offsets");
    // Backing off from a fault that repeats, not synchronising.
    std::thread::sleep(wait);
    Ok(())
}

fn commit_or_abort(
    consumer: &BaseConsumer<Ctx>,
    engine: &mut Engine,
    cause: CommitCause,
) -> Result<()> {
    if let Err(e) = commit(consumer, engine, cause) {
        handle(e, engine)?;
    }
    Ok(())
}

/// Shutdown: commit what is open, leave the group.
fn close(consumer: &BaseConsumer<Ctx>, engine: &Arc<Mutex<Engine>>) -> Result<()> {
    {
        let mut eng = lock(engine);
        commit_or_abort(consumer, &mut eng, CommitCause::Shutdown)?;
    }
    consumer.unsubscribe();
    // Serve the revoke callback that leaving the group triggers.
    let _ = consumer.poll(Duration::from_millis(100));
    tracing::info!("left the consumer group");
    Ok(())
}
