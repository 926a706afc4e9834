//! `auditchain run`: the consumer side and the loop that drives the engine.
//!
//! One thread owns the consumer and the engine. Records are polled in
//! micro-batches, routed in parallel, written to the open transaction, and
//! the transaction is closed every `commit_interval_ms` or
//! `max_batch_records`. Rebalance callbacks run inside `poll` on the same
//! thread: a revoke commits the open transaction first (aborts it when the
//! assignment was lost), an assignment restores chain state before a single
//! record of the new partitions is processed.
//!
//! Errors are handled by class (see `error.rs`): abortable errors abort,
//! rewind to the committed offsets and restore; fatal ones end the session
//! and a new one starts with a fresh producer, a new group membership and a
//! full restore.

pub mod engine;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use opentelemetry::KeyValue;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use crate::config::Config;
use crate::error::{Error, ErrorClass, Result};
use crate::kafka::{base_client_config, ensure_topics};
use crate::keys::{load_signing_key, WatchedKeySet};
use crate::metrics::{KindLabel, Metrics, ResultLabel};
use crate::registry::{Lookup, Registry};
use crate::route::{missing_schema_ids, Decoders};
use crate::schema::{
    schemas, EventDecoder, ANCHOR_BATCH_AVSC, CHAINED_RECORD_AVSC, QUARANTINE_RECORD_AVSC,
};
use crate::telemetry::{self, Traces};
use engine::{Engine, OutputSchemaIds, Stats};

/// Records taken from the consumer per routing round.
const MICRO_BATCH: usize = 2_000;
/// Longest single poll, so shutdown and due commits are noticed promptly.
const MAX_POLL: Duration = Duration::from_millis(200);
/// Timeout of group-coordinator calls made while rebalancing.
const COORDINATOR_TIMEOUT: Duration = Duration::from_secs(30);
/// How often consumer lag is sampled for the metrics.
const LAG_SAMPLE_INTERVAL: Duration = Duration::from_secs(5);

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
                        Some(group) => engine.commit(&group),
                        None => Err(Error::State(
                            "no consumer group metadata while revoking".into(),
                        )),
                    };
                    if let Err(e) = result {
                        tracing::warn!(error = %e, "commit before revoke failed: aborting");
                        if let Err(e) = engine.abort() {
                            engine.fatal = Some(e);
                        }
                    }
                }
                engine.revoke(partitions);
                tracing::info!(?partitions, "partitions revoked");
            }
            Rebalance::Assign(tpl) => {
                self.metrics
                    .rebalances
                    .get_or_create(&KindLabel { kind })
                    .inc();
                let committed =
                    match consumer.committed_offsets((*tpl).clone(), COORDINATOR_TIMEOUT) {
                        Ok(c) => committed_map(&c, &self.input),
                        Err(e) => {
                            engine.fatal =
                                Some(Error::kafka("reading committed offsets on assignment", e));
                            return;
                        }
                    };
                if let Err(e) = engine.assign(partitions, &committed) {
                    engine.fatal = Some(e);
                }
            }
            Rebalance::Error(e) => tracing::warn!(error = %e, "rebalance error"),
        }
    }
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
    /// Counters of the last session.
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
    let signing_key = load_signing_key(&config.signing.key_file)?;
    let metrics = Metrics::new();
    let address = rt.block_on(crate::metrics::serve(
        config.http.bind,
        Arc::clone(&metrics),
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
    let result = run_with(config, shutdown, rt, signing_key, metrics, traces);
    sampler_stop.store(true, Ordering::Relaxed);
    result
}

fn run_with(
    config: Arc<Config>,
    shutdown: Arc<AtomicBool>,
    rt: tokio::runtime::Handle,
    signing_key: ed25519_dalek::SigningKey,
    metrics: Arc<Metrics>,
    traces: Traces,
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
        registry = config.schema_registry.as_ref().map(|r| r.url.as_str()).unwrap_or("none (compiled-in schemas)"),
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
            schema_ids,
            rt.clone(),
            Arc::clone(&metrics),
            traces.clone(),
        )?;
        let engine = Arc::new(Mutex::new(engine));
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
        match outcome {
            Ok(()) => {
                let stats = lock(&engine).stats.clone();
                return Ok(RunSummary { stats, sessions });
            }
            Err(e) if shutdown.load(Ordering::Relaxed) => return Err(e),
            Err(e) => {
                tracing::error!(error = %e, retry_in_ms = backoff.as_millis() as u64, "session ended; starting a new producer, rejoining and restoring");
                // Waiting out a broker or coordinator that just failed, not
                // synchronising anything.
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
    }
}

fn new_consumer(
    config: &Config,
    traces: &Traces,
    engine: &Arc<Mutex<Engine>>,
    metrics: &Arc<Metrics>,
) -> Result<BaseConsumer<Ctx>> {
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
    cc.create_with_context(Ctx {
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
    let mut needs_rewind = false;
    let mut paused = false;
    let mut batch: Vec<BorrowedMessage<'_>> = Vec::with_capacity(MICRO_BATCH);
    loop {
        if shutdown.load(Ordering::Relaxed) {
            drop(batch);
            return close(&consumer, engine);
        }
        report_reloads(keys, metrics);
        let want_pause = metrics.pause_requested.load(Ordering::Relaxed);
        if want_pause || paused {
            batch.clear();
            set_paused(&consumer, engine, want_pause, &mut paused)?;
        }
        if let Some(e) = lock(engine).fatal.take() {
            return Err(e);
        }
        if needs_rewind {
            batch.clear();
            rewind(&consumer, engine)?;
            needs_rewind = false;
        }

        let wait = lock(engine)
            .txn_remaining()
            .map_or(MAX_POLL, |r| r.min(MAX_POLL));
        batch.clear();
        let mut timeout = wait;
        while batch.len() < MICRO_BATCH {
            match consumer.poll(timeout) {
                None => break,
                Some(Ok(m)) => batch.push(m),
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "consumer error");
                    break;
                }
            }
            timeout = Duration::ZERO;
        }
        if let Some(e) = lock(engine).fatal.take() {
            return Err(e);
        }

        if !batch.is_empty() {
            if let Err(e) = catalog.resolve(&batch, rt) {
                tracing::warn!(error = %e, "schema registry unavailable; committing what is done and rewinding");
                let mut eng = lock(engine);
                commit_or_abort(&consumer, &mut eng)?;
                needs_rewind = true;
                continue;
            }
            let current_keys = keys.current();
            let mut eng = lock(engine);
            if let Err(e) = eng.process(&batch, &catalog.decoders, &current_keys) {
                handle(e, &mut eng)?;
                needs_rewind = true;
                continue;
            }
        }
        let mut eng = lock(engine);
        if batch.is_empty() && !eng.has_open_transaction() {
            if let Err(e) = commit_past_markers(&consumer, &mut eng) {
                handle(e, &mut eng)?;
                needs_rewind = true;
                continue;
            }
        }
        if eng.txn_due() {
            if let Err(e) = commit_with_retry(&consumer, &mut eng) {
                handle(e, &mut eng)?;
                needs_rewind = true;
            }
        }
    }
}

fn commit_with_retry(consumer: &BaseConsumer<Ctx>, engine: &mut Engine) -> Result<()> {
    let group = consumer
        .group_metadata()
        .ok_or_else(|| Error::State("no consumer group metadata to commit with".into()))?;
    let mut attempts = 0;
    loop {
        match engine.commit(&group) {
            Err(e) if e.class() == Some(ErrorClass::Retriable) && attempts < 3 => {
                attempts += 1;
                tracing::warn!(error = %e, attempts, "retrying commit");
            }
            other => return other,
        }
    }
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
            commit_or_abort(consumer, &mut eng)?;
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

/// Aborts after an abortable error; a fatal one (or a failed abort) ends the session.
fn handle(e: Error, engine: &mut Engine) -> Result<()> {
    if e.class() == Some(ErrorClass::Fatal) {
        return Err(e);
    }
    tracing::warn!(error = %e, "aborting the transaction and rewinding to the committed offsets");
    engine.abort()
}

fn commit_or_abort(consumer: &BaseConsumer<Ctx>, engine: &mut Engine) -> Result<()> {
    if let Err(e) = commit_with_retry(consumer, engine) {
        handle(e, engine)?;
    }
    Ok(())
}

/// Seeks every owned partition back to its committed offset and restores its
/// state, so records processed in an aborted transaction are processed again.
fn rewind(consumer: &BaseConsumer<Ctx>, engine: &Arc<Mutex<Engine>>) -> Result<()> {
    let assignment = consumer
        .assignment()
        .map_err(|e| Error::kafka("reading the assignment", e))?;
    let committed_tpl = consumer
        .committed_offsets(assignment.clone(), COORDINATOR_TIMEOUT)
        .map_err(|e| Error::kafka("reading committed offsets to rewind", e))?;
    let topic = lock(engine).owned_topic().to_string();
    let committed = committed_map(&committed_tpl, &topic);
    let partitions = input_partitions(&assignment, &topic);
    let mut seek = TopicPartitionList::new();
    for p in &partitions {
        let offset = committed
            .get(p)
            .map_or(Offset::Beginning, |o| Offset::Offset(*o));
        seek.add_partition_offset(&topic, *p, offset)
            .map_err(|e| Error::kafka("building the rewind positions", e))?;
    }
    if seek.count() > 0 {
        consumer
            .seek_partitions(seek, COORDINATOR_TIMEOUT)
            .map_err(|e| Error::kafka("seeking to the committed offsets", e))?;
    }
    let mut eng = lock(engine);
    eng.revoke_all();
    eng.assign(&partitions, &committed)
}

/// Shutdown: commit what is open, leave the group.
fn close(consumer: &BaseConsumer<Ctx>, engine: &Arc<Mutex<Engine>>) -> Result<()> {
    {
        let mut eng = lock(engine);
        commit_or_abort(consumer, &mut eng)?;
    }
    consumer.unsubscribe();
    // Serve the revoke callback that leaving the group triggers.
    let _ = consumer.poll(Duration::from_millis(100));
    tracing::info!("left the consumer group");
    Ok(())
}
