//! The transactional sink against librdkafka's mock cluster (issue #9).
//!
//! Each test pushes protocol errors onto one request type of a
//! [`MockCluster`] — `AddOffsetsToTxn`, `TxnOffsetCommit`, `EndTxn` or
//! `Produce`, with a retriable, an abortable and a fatal code — and drives a
//! [`Sink`] through one transaction: begin, send a few records, commit with
//! the offsets of a consumer group. It asserts the class of what `commit`
//! returns and that no transaction is ever committed without its offsets or
//! with a failed output.
//!
//! # What the mock cluster cannot show, and what is asserted instead
//!
//! librdkafka 2.12's mock broker implements the transactional *protocol*
//! but not transactional *storage* (see `mock_cluster_keeps_no_transactional_state`,
//! which pins this down and fails if a later librdkafka changes it):
//!
//! * `EndTxn` writes no control records and `Fetch` reports no aborted
//!   transactions and a last stable offset equal to the high watermark, so a
//!   `read_committed` consumer sees the records of an *aborted* transaction.
//! * `TxnOffsetCommit` validates its request and answers, but stores
//!   nothing: a group's committed offsets never move, even after a
//!   transaction committed.
//!
//! Asserting "not visible to read_committed" or "offsets did not move" on
//! the mock could therefore never fail. Instead the tests read what the
//! producer did on the wire, from librdkafka's own `eos` and `protocol`
//! debug log (captured through the `log` facade rust-rdkafka logs to): every
//! transaction (`-> InTransaction` ... the end) is checked for
//!
//! * committed (`CommittingTransaction -> CommitNotAcked`: the coordinator
//!   accepted `EndTxn(commit)`) ⇒ `send_offsets_to_transaction` succeeded in
//!   that same transaction (`AddOffsetsToTxn` and `TxnOffsetCommit`
//!   accepted) and no transaction error (`TXNERR`, e.g. a failed produce)
//!   was raised in it;
//! * after an error, no commit was accepted, and the abort was
//!   (`AbortingTransaction -> AbortedNotAcked`).
//!
//! On success the records are also read back (`read_committed`). The
//! real-broker tests (`broker_transactions.rs`, `fault_injection.rs`) check
//! the same properties against what Kafka stores.
//!
//! # What librdkafka does with each code (librdkafka 2.12, `rdkafka_txnmgr.c`)
//!
//! Retriable coordinator errors (`COORDINATOR_NOT_AVAILABLE`,
//! `NOT_COORDINATOR`, `COORDINATOR_LOAD_IN_PROGRESS`) on `AddOffsetsToTxn`,
//! `TxnOffsetCommit` and `EndTxn`, and `NOT_ENOUGH_REPLICAS` on `Produce`,
//! are retried *inside* librdkafka until the call's timeout (60 s in the
//! sink), so the application only sees success. The sink's own retry loop is
//! reachable only through [`Faults`] (see the `faults_*` tests).
//!
//! The log capture is process-wide, so the tests take a lock and run one at
//! a time; each is fast (well under a second, a few seconds where librdkafka
//! backs off).

use std::sync::{Arc, Mutex, MutexGuard, Once};
use std::time::{Duration, Instant};

use auditchain::config::Config;
use auditchain::error::{Error, ErrorClass};
use auditchain::faults::{CommitCause, FaultPoint, Faults};
use auditchain::sink::Sink;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerGroupMetadata};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use rdkafka::{Offset, TopicPartitionList};

use RDKafkaRespErr::*;

/// Records sent per transaction.
const RECORDS: usize = 5;
/// How many times a rewind may hit an abortable error before committing.
const MAX_REWINDS: usize = 3;
/// The input offset committed with each transaction.
const INPUT_OFFSET: i64 = 42;

// ---------------------------------------------------------------------------
// librdkafka log capture
// ---------------------------------------------------------------------------

/// Every line librdkafka logged since the current test started.
static LINES: Mutex<Vec<String>> = Mutex::new(Vec::new());
/// One test at a time: the capture is process-wide.
static SERIAL: Mutex<()> = Mutex::new(());
static INSTALL: Once = Once::new();

struct Capture {
    echo: bool,
}

impl log::Log for Capture {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.target() == "librdkafka"
    }

    fn log(&self, record: &log::Record<'_>) {
        if record.target() != "librdkafka" {
            return;
        }
        let line = record.args().to_string();
        if self.echo {
            eprintln!("{line}");
        }
        LINES.lock().unwrap_or_else(|p| p.into_inner()).push(line);
    }

    fn flush(&self) {}
}

/// Installs the capture (before any client is configured: rust-rdkafka
/// reads the log level when a `ClientConfig` is made), takes the test lock
/// and clears the capture. `MOCK_TXN_LOG=1` echoes librdkafka's log.
fn serial() -> MutexGuard<'static, ()> {
    INSTALL.call_once(|| {
        let echo = std::env::var_os("MOCK_TXN_LOG").is_some();
        log::set_boxed_logger(Box::new(Capture { echo })).expect("no other logger in this test");
        log::set_max_level(log::LevelFilter::Debug);
    });
    let guard = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    LINES.lock().unwrap_or_else(|p| p.into_inner()).clear();
    guard
}

fn captured() -> Vec<String> {
    LINES.lock().unwrap_or_else(|p| p.into_inner()).clone()
}

/// One transaction as the producer's debug log tells it.
#[derive(Debug, Default)]
struct Txn {
    /// `send_offsets_to_transaction` returned success (both
    /// `AddOffsetsToTxn` and `TxnOffsetCommit` were accepted).
    offsets_accepted: bool,
    /// `commit_transaction` was called.
    commit_called: bool,
    /// The coordinator accepted `EndTxn(commit)`.
    commit_acked: bool,
    /// The abort completed (`EndTxn(abort)` accepted, or not needed).
    abort_acked: bool,
    /// The producer entered its fatal state.
    fatal: bool,
    /// Transaction errors raised (failed produce, failed offsets, ...).
    errors: Vec<String>,
}

/// What the sink's producer did, from its `eos`/`protocol` debug log.
#[derive(Debug)]
struct Trace {
    lines: Vec<String>,
    txns: Vec<Txn>,
}

impl Trace {
    fn read() -> Trace {
        let lines = captured();
        let mut txns: Vec<Txn> = Vec::new();
        for line in &lines {
            if line.contains("Transaction state change") && line.ends_with("-> InTransaction") {
                txns.push(Txn::default());
            }
            let Some(txn) = txns.last_mut() else {
                continue;
            };
            if line.contains("Transactional API send_offsets_to_transaction return")
                && line.ends_with(": Success")
            {
                txn.offsets_accepted = true;
            }
            if line.contains("Transactional API called: commit_transaction") {
                txn.commit_called = true;
            }
            if line.contains("Transaction state change CommittingTransaction -> CommitNotAcked") {
                txn.commit_acked = true;
            }
            // From AbortingTransaction (EndTxn(abort) accepted) or straight
            // from BeginAbort (nothing was registered with the coordinator,
            // so there was nothing to abort there).
            if line.contains("Transaction state change") && line.ends_with("-> AbortedNotAcked") {
                txn.abort_acked = true;
            }
            if line.contains("Transaction state change") && line.ends_with("-> FatalError") {
                txn.fatal = true;
            }
            if line.contains("TXNERR") && !line.contains("Ignoring sub-sequent") {
                txn.errors.push(line.clone());
            }
        }
        Trace { lines, txns }
    }

    /// How many `<api>Request`s the producer sent.
    fn sent(&self, api: &str) -> usize {
        let needle = format!("Sent {api}Request ");
        self.lines.iter().filter(|l| l.contains(&needle)).count()
    }

    /// The invariant of issue #9: a transaction the coordinator committed
    /// carried its offsets and had no failed output. Returns the number of
    /// committed transactions.
    fn assert_atomic(&self) -> usize {
        for (i, t) in self.txns.iter().enumerate() {
            if t.commit_acked {
                assert!(
                    t.offsets_accepted,
                    "transaction {i} committed without its offsets: {t:?}\n{}",
                    self.dump()
                );
                assert!(
                    t.errors.is_empty(),
                    "transaction {i} committed despite a transaction error: {t:?}\n{}",
                    self.dump()
                );
                assert!(!t.fatal, "transaction {i} committed in a fatal state");
            }
        }
        self.txns.iter().filter(|t| t.commit_acked).count()
    }

    fn dump(&self) -> String {
        self.lines
            .iter()
            .filter(|l| {
                ["TXN", "ADDOFFSETS", "ENDTXN", "Sent ", "Received "]
                    .iter()
                    .any(|k| l.contains(k))
            })
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    }
}

// ---------------------------------------------------------------------------
// The rig: a mock cluster, topics, a group, a sink
// ---------------------------------------------------------------------------

struct Rig {
    // Field order is drop order: clients before the cluster they talk to.
    sink: Option<Sink>,
    member: BaseConsumer,
    group_id: String,
    input: String,
    output: String,
    mock: MockCluster<'static, DefaultProducerContext>,
}

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

impl Rig {
    /// A mock cluster of three brokers with an input and an output topic, a
    /// group member, and a sink (with `faults`, if given) whose
    /// transactions are initialised.
    fn new(faults: Option<Arc<Faults>>) -> Rig {
        let mock = MockCluster::new(3).expect("mock cluster");
        let input = unique("in");
        let output = unique("out");
        let group_id = unique("group");
        mock.create_topic(&input, 1, 3).expect("mock input topic");
        mock.create_topic(&output, 1, 3).expect("mock output topic");
        let bootstrap = mock.bootstrap_servers();

        // The group's metadata (group id, generation, member id) is what
        // TxnOffsetCommit carries; the mock does not check the generation.
        let member: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .set("group.id", &group_id)
            .set("enable.auto.commit", "false")
            .create()
            .expect("group member");

        let text = format!(
            "[kafka]\nbootstrap_servers = \"{bootstrap}\"\ngroup_id = \"{group_id}\"\n\
             instance_id = \"{instance}\"\ntransaction_timeout_ms = 10000\n\
             [topics]\ninput = \"{input}\"\nchained = \"{output}\"\n\
             [signing]\nkey_file = \"unused.secret\"\nkey_id = \"mock\"\n\
             [producer_keys]\nfile = \"unused-keys.toml\"\n\
             [librdkafka]\ndebug = \"eos,protocol,metadata\"\n",
            instance = unique("i"),
        );
        let config = Config::from_toml_with_env(&text, std::iter::empty()).expect("config");
        let sink =
            Sink::new(&config, faults, 1_000_000).expect("sink with initialised transactions");
        Rig {
            sink: Some(sink),
            member,
            group_id,
            input,
            output,
            mock,
        }
    }

    /// The producer's log up to now. rust-rdkafka routes librdkafka's log
    /// through the client's main queue, which the producer's polling thread
    /// serves later, so a line can arrive after the call that logged it
    /// returned. To read everything logged so far, this asks the producer
    /// for the metadata of a new topic and waits (bounded) for the line
    /// describing it: the queue is in order, so every earlier line is in.
    fn trace(&mut self) -> Trace {
        let sentinel = unique("sync");
        self.mock
            .create_topic(&sentinel, 1, 1)
            .expect("mock sentinel topic");
        if let Some(sink) = self.sink.as_ref() {
            sink.refresh_metadata(&[&sentinel])
                .expect("metadata request as a log sentinel");
            let needle = format!("Topic {sentinel} with");
            let deadline = Instant::now() + Duration::from_secs(10);
            while !captured().iter().any(|l| l.contains(&needle)) {
                assert!(
                    Instant::now() < deadline,
                    "the producer's log did not catch up"
                );
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        Trace::read()
    }

    /// What `send_offsets_to_transaction` needs of the group.
    fn group(&self) -> ConsumerGroupMetadata {
        self.member
            .group_metadata()
            .expect("consumer group metadata")
    }

    fn sink(&mut self) -> &mut Sink {
        self.sink.as_mut().expect("sink still open")
    }

    /// Begins a transaction, sends `RECORDS` records tagged `tag` and
    /// commits with the input offset.
    fn transaction(&mut self, tag: &str) -> auditchain::error::Result<()> {
        let output = self.output.clone();
        let mut offsets = TopicPartitionList::new();
        offsets
            .add_partition_offset(&self.input, 0, Offset::Offset(INPUT_OFFSET))
            .expect("offset list");
        let group = self.group();
        let sink = self.sink();
        sink.ensure_open()?;
        for i in 0..RECORDS {
            sink.send(
                &output,
                0,
                Some(b"tenant"),
                format!("{tag}-{i}").as_bytes(),
                None,
            )?;
        }
        sink.commit(&offsets, &group, CommitCause::Due)
    }

    /// The values of the output topic as a `read_committed` consumer sees
    /// them (on the mock: every record written, see the module docs).
    fn read_committed(&self) -> Vec<String> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", self.mock.bootstrap_servers())
            .set("group.id", unique("reader"))
            .set("isolation.level", "read_committed")
            .set("enable.partition.eof", "true")
            .set("enable.auto.commit", "false")
            .create()
            .expect("reader");
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&self.output, 0, Offset::Beginning)
            .expect("reader assignment");
        consumer.assign(&tpl).expect("assign reader");
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut values = Vec::new();
        loop {
            assert!(
                Instant::now() < deadline,
                "reading {} did not reach its end",
                self.output
            );
            match consumer.poll(Duration::from_millis(100)) {
                None => {}
                Some(Ok(m)) => {
                    use rdkafka::Message;
                    let v = m.payload().map(|p| String::from_utf8_lossy(p).into_owned());
                    values.push(v.expect("record with a value"));
                }
                Some(Err(KafkaError::PartitionEOF(_))) => return values,
                Some(Err(e)) => panic!("reading {}: {e}", self.output),
            }
        }
    }

    /// The group's committed offset of the input partition.
    fn committed_offset(&self) -> Offset {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(&self.input, 0);
        let committed = self
            .member
            .committed_offsets(tpl, Duration::from_secs(10))
            .expect("committed offsets of the group");
        committed
            .find_partition(&self.input, 0)
            .expect("input partition in the answer")
            .offset()
    }
}

fn expect_err(r: auditchain::error::Result<()>, what: &str) -> Error {
    match r {
        Ok(()) => panic!(
            "{what}: expected an error, the transaction committed\n{}",
            Trace::read().dump()
        ),
        Err(e) => e,
    }
}

// ---------------------------------------------------------------------------
// The three outcomes
// ---------------------------------------------------------------------------

/// The mock answers `errors` (in order) to the next requests of `api`, and
/// the transaction still commits: librdkafka retried. Asserts both the
/// outputs and the offsets made it into the one committed transaction, and
/// that librdkafka sent the request once per error plus once more.
fn retried_then_committed(api: RDKafkaApiKey, errors: &[RDKafkaRespErr]) -> Trace {
    let mut rig = Rig::new(None);
    rig.mock.request_errors(api, errors);
    rig.transaction("t1").unwrap_or_else(|e| {
        panic!(
            "{api:?} {errors:?}: expected a commit, got {e} ({:?})\n{}",
            e.class(),
            Trace::read().dump()
        )
    });
    let trace = rig.trace();
    assert_eq!(trace.txns.len(), 1, "{}", trace.dump());
    assert_eq!(
        trace.assert_atomic(),
        1,
        "one committed transaction\n{}",
        trace.dump()
    );
    let api_name = format!("{api:?}");
    assert!(
        trace.sent(&api_name) > errors.len(),
        "{api_name} sent {} times for {} injected errors\n{}",
        trace.sent(&api_name),
        errors.len(),
        trace.dump()
    );
    assert!(trace.sent("AddOffsetsToTxn") >= 1, "{}", trace.dump());
    assert_eq!(
        rig.read_committed(),
        (0..RECORDS).map(|i| format!("t1-{i}")).collect::<Vec<_>>(),
        "the committed outputs"
    );
    trace
}

/// The mock answers `error` to the next request of `api`; `commit` must
/// fail with an abortable error, the abort must complete, and nothing may
/// have been committed. Then the caller's rewind: the same work again in a
/// new transaction, aborting again on an abortable error the way the
/// processor does, until one commits (at most `MAX_REWINDS` attempts) with
/// its outputs and offsets together. Returns the trace and the number of
/// attempts the rewind needed.
fn aborted(api: RDKafkaApiKey, error: RDKafkaRespErr) -> (Trace, usize) {
    let mut rig = Rig::new(None);
    rig.mock.request_errors(api, &[error]);
    let e = expect_err(rig.transaction("t1"), &format!("{api:?} {error:?}"));
    assert_eq!(
        e.class(),
        Some(ErrorClass::Abortable),
        "{api:?} {error:?}: {e}\n{}",
        Trace::read().dump()
    );
    rig.sink().abort().expect("abort after an abortable error");
    let trace = rig.trace();
    assert_eq!(
        trace.assert_atomic(),
        0,
        "nothing committed\n{}",
        trace.dump()
    );
    let first = trace.txns.first().expect("a transaction was begun");
    assert!(first.abort_acked, "the abort completed\n{}", trace.dump());
    assert!(
        !first.errors.is_empty(),
        "librdkafka raised a transaction error"
    );

    let mut attempts = 0;
    loop {
        attempts += 1;
        match rig.transaction("t2") {
            Ok(()) => break,
            Err(e) if e.class() == Some(ErrorClass::Abortable) && attempts < MAX_REWINDS => {
                rig.sink().abort().expect("abort of a failed rewind");
            }
            Err(e) => panic!(
                "rewind attempt {attempts} after {api:?} {error:?}: {e}\n{}",
                Trace::read().dump()
            ),
        }
    }
    let trace = rig.trace();
    assert_eq!(trace.txns.len(), 1 + attempts, "{}", trace.dump());
    assert_eq!(trace.assert_atomic(), 1, "{}", trace.dump());
    assert!(trace.txns.last().is_some_and(|t| t.commit_acked));
    let seen = rig.read_committed();
    let committed: Vec<String> = (0..RECORDS).map(|i| format!("t2-{i}")).collect();
    assert!(
        seen.ends_with(&committed),
        "the rewound transaction's outputs: {seen:?}"
    );
    (trace, attempts)
}

/// The mock answers `error` to the next request of `api`; `commit` must
/// fail with a fatal error, nothing may have been committed, and the
/// producer must refuse to go on (an abort fails fatally too: the caller
/// has to build a new producer, whose `init_transactions` aborts the open
/// transaction).
fn fatal(api: RDKafkaApiKey, error: RDKafkaRespErr) -> Trace {
    let mut rig = Rig::new(None);
    rig.mock.request_errors(api, &[error]);
    let e = expect_err(rig.transaction("t1"), &format!("{api:?} {error:?}"));
    assert_eq!(
        e.class(),
        Some(ErrorClass::Fatal),
        "{api:?} {error:?}: {e}\n{}",
        Trace::read().dump()
    );
    let abort = rig.sink().abort();
    let abort_err = expect_err(abort, "abort of a fenced producer");
    assert_eq!(abort_err.class(), Some(ErrorClass::Fatal), "{abort_err}");
    let trace = rig.trace();
    assert_eq!(
        trace.assert_atomic(),
        0,
        "nothing committed\n{}",
        trace.dump()
    );
    assert!(
        trace.txns.iter().any(|t| t.fatal),
        "the producer entered its fatal state\n{}",
        trace.dump()
    );
    trace
}

/// The sink's promise: when the offsets were refused, `commit_transaction`
/// is not even called (librdkafka would refuse it too, so only the call
/// itself shows a sink that carries on after a failed
/// `send_offsets_to_transaction`).
fn assert_no_commit_attempt(trace: &Trace) {
    let first = trace.txns.first().expect("a transaction was begun");
    assert!(!first.offsets_accepted, "{}", trace.dump());
    assert!(
        !first.commit_called,
        "commit_transaction called after the offsets were refused\n{}",
        trace.dump()
    );
}

// ---------------------------------------------------------------------------
// AddOffsetsToTxn (transaction coordinator, first half of send_offsets)
// ---------------------------------------------------------------------------

#[test]
fn add_offsets_retriable_is_retried_by_librdkafka_and_commits() {
    let _g = serial();
    let trace = retried_then_committed(
        RDKafkaApiKey::AddOffsetsToTxn,
        &[
            RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE,
            RD_KAFKA_RESP_ERR_NOT_COORDINATOR,
            RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS,
        ],
    );
    // The offsets went to the group coordinator once, after the retries.
    assert_eq!(trace.sent("TxnOffsetCommit"), 1, "{}", trace.dump());
}

#[test]
fn add_offsets_abortable_aborts_without_committing() {
    let _g = serial();
    let (trace, attempts) = aborted(
        RDKafkaApiKey::AddOffsetsToTxn,
        RD_KAFKA_RESP_ERR_GROUP_AUTHORIZATION_FAILED,
    );
    assert_eq!(attempts, 1, "the first rewind commits");
    assert_no_commit_attempt(&trace);
    // The failed transaction never reached the group coordinator.
    assert_eq!(trace.sent("TxnOffsetCommit"), 1, "the rewind's only");
}

#[test]
fn add_offsets_fatal_invalid_producer_epoch() {
    let _g = serial();
    let trace = fatal(
        RDKafkaApiKey::AddOffsetsToTxn,
        RD_KAFKA_RESP_ERR_INVALID_PRODUCER_EPOCH,
    );
    assert_no_commit_attempt(&trace);
}

/// librdkafka 2.12 lists INVALID_PRODUCER_EPOCH, not PRODUCER_FENCED, as
/// fatal for AddOffsetsToTxn: PRODUCER_FENCED falls into "all unhandled
/// errors are permanent" and is raised as an *abortable* error (normalised
/// to `_FENCED`). Pinned here; aborting then works because the mock did
/// not actually fence the producer.
#[test]
fn add_offsets_producer_fenced_is_abortable_in_librdkafka() {
    let _g = serial();
    let (trace, attempts) = aborted(
        RDKafkaApiKey::AddOffsetsToTxn,
        RD_KAFKA_RESP_ERR_PRODUCER_FENCED,
    );
    assert_eq!(attempts, 1, "the first rewind commits");
    assert_no_commit_attempt(&trace);
}

// ---------------------------------------------------------------------------
// TxnOffsetCommit (group coordinator, second half of send_offsets)
// ---------------------------------------------------------------------------

#[test]
fn txn_offset_commit_retriable_is_retried_by_librdkafka_and_commits() {
    let _g = serial();
    let trace = retried_then_committed(
        RDKafkaApiKey::TxnOffsetCommit,
        &[
            RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS,
            RD_KAFKA_RESP_ERR_NOT_COORDINATOR,
        ],
    );
    assert_eq!(trace.sent("AddOffsetsToTxn"), 1, "{}", trace.dump());
}

#[test]
fn txn_offset_commit_abortable_aborts_without_committing() {
    let _g = serial();
    let (trace, attempts) = aborted(
        RDKafkaApiKey::TxnOffsetCommit,
        RD_KAFKA_RESP_ERR_GROUP_AUTHORIZATION_FAILED,
    );
    assert_eq!(attempts, 1, "the first rewind commits");
    assert_no_commit_attempt(&trace);
    // AddOffsetsToTxn had been accepted; only the group coordinator refused.
    assert!(trace.sent("AddOffsetsToTxn") >= 1);
}

#[test]
fn txn_offset_commit_abortable_illegal_generation() {
    let _g = serial();
    let (trace, attempts) = aborted(
        RDKafkaApiKey::TxnOffsetCommit,
        RD_KAFKA_RESP_ERR_ILLEGAL_GENERATION,
    );
    assert_eq!(attempts, 1, "the first rewind commits");
    assert_no_commit_attempt(&trace);
}

#[test]
fn txn_offset_commit_fatal_invalid_producer_epoch() {
    let _g = serial();
    let trace = fatal(
        RDKafkaApiKey::TxnOffsetCommit,
        RD_KAFKA_RESP_ERR_INVALID_PRODUCER_EPOCH,
    );
    assert_no_commit_attempt(&trace);
}

// ---------------------------------------------------------------------------
// EndTxn (commit_transaction)
// ---------------------------------------------------------------------------

#[test]
fn end_txn_retriable_is_retried_by_librdkafka_and_commits() {
    let _g = serial();
    let trace = retried_then_committed(
        RDKafkaApiKey::EndTxn,
        &[
            RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS,
            RD_KAFKA_RESP_ERR_CONCURRENT_TRANSACTIONS,
        ],
    );
    // The offsets were not sent again for the retried commit.
    assert_eq!(trace.sent("AddOffsetsToTxn"), 1, "{}", trace.dump());
    assert_eq!(trace.sent("TxnOffsetCommit"), 1, "{}", trace.dump());
}

#[test]
fn end_txn_abortable_aborts_without_committing() {
    let _g = serial();
    let (trace, attempts) = aborted(
        RDKafkaApiKey::EndTxn,
        RD_KAFKA_RESP_ERR_INVALID_PRODUCER_ID_MAPPING,
    );
    assert_eq!(attempts, 1, "the first rewind commits");
    // The offsets had been accepted into the transaction that was aborted:
    // they are discarded with its outputs.
    assert!(trace.txns[0].offsets_accepted);
}

#[test]
fn end_txn_fatal_producer_fenced() {
    let _g = serial();
    fatal(RDKafkaApiKey::EndTxn, RD_KAFKA_RESP_ERR_PRODUCER_FENCED);
}

// ---------------------------------------------------------------------------
// Produce (the outputs)
// ---------------------------------------------------------------------------

#[test]
fn produce_retriable_is_retried_by_librdkafka_and_commits() {
    let _g = serial();
    retried_then_committed(
        RDKafkaApiKey::Produce,
        &[
            RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS,
            RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS,
        ],
    );
}

/// A permanent produce error fails the transaction in librdkafka; it
/// reaches the application at `send_offsets_to_transaction` or at
/// `commit_transaction`, whichever comes after the delivery failed.
///
/// The rewind needs a second abort: the failed batch used up sequence
/// numbers the broker never stored, so the next transaction's first
/// produce is refused as out of order, librdkafka bumps the epoch ("skipped
/// sequence numbers") and fails that transaction too (abortable). The one
/// after it commits. An engine that gave up after one failed rewind, or
/// treated the second abortable error as fatal, would stall here.
#[test]
fn produce_abortable_aborts_without_committing() {
    let _g = serial();
    let (_trace, attempts) = aborted(RDKafkaApiKey::Produce, RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE);
    assert_eq!(attempts, 2, "one more abortable failure, then a commit");
}

#[test]
fn produce_fatal_invalid_producer_epoch() {
    let _g = serial();
    fatal(
        RDKafkaApiKey::Produce,
        RD_KAFKA_RESP_ERR_INVALID_PRODUCER_EPOCH,
    );
}

// ---------------------------------------------------------------------------
// The sink's own retry loop (reachable only by fault injection: librdkafka
// keeps retriable coordinator errors to itself until the call's timeout)
// ---------------------------------------------------------------------------

/// A retriable `send_offsets_to_transaction` failure, then success: the
/// sink calls it again and the commit carries outputs and offsets, the
/// offsets sent to the coordinators exactly once.
#[test]
fn faults_send_offsets_retriable_then_success_commits_both() {
    let _g = serial();
    let faults = Arc::new(Faults::new());
    faults.fail(
        FaultPoint::SendOffsets,
        None,
        RDKafkaErrorCode::CoordinatorNotAvailable,
        2,
    );
    let mut rig = Rig::new(Some(faults.clone()));
    rig.transaction("t1")
        .expect("commit after two retriable failures");
    let trace = rig.trace();
    assert_eq!(trace.assert_atomic(), 1, "{}", trace.dump());
    assert_eq!(faults.fired().len(), 2, "both planned failures were seen");
    assert_eq!(trace.sent("AddOffsetsToTxn"), 1, "{}", trace.dump());
    assert_eq!(trace.sent("TxnOffsetCommit"), 1, "{}", trace.dump());
    assert_eq!(
        rig.read_committed(),
        (0..RECORDS).map(|i| format!("t1-{i}")).collect::<Vec<_>>()
    );
}

/// `send_offsets_to_transaction` still retriable after every retry: the
/// error is returned as it is (retriable), the offsets never reached the
/// coordinator, no commit was attempted, and the caller's abort works.
#[test]
fn faults_send_offsets_retriable_exhausted_never_commits() {
    let _g = serial();
    let faults = Arc::new(Faults::new());
    faults.fail(
        FaultPoint::SendOffsets,
        None,
        RDKafkaErrorCode::NotCoordinator,
        100,
    );
    let mut rig = Rig::new(Some(faults.clone()));
    let e = expect_err(rig.transaction("t1"), "send_offsets retriable forever");
    assert_eq!(e.class(), Some(ErrorClass::Retriable), "{e}");
    assert_eq!(faults.fired().len(), 6, "the call and five retries");
    rig.sink().abort().expect("abort");
    let trace = rig.trace();
    assert_eq!(trace.assert_atomic(), 0, "{}", trace.dump());
    assert_eq!(trace.sent("AddOffsetsToTxn"), 0, "{}", trace.dump());
    assert!(trace.txns[0].abort_acked, "{}", trace.dump());
}

/// `commit_transaction` still retriable after every retry: the outcome is
/// unknown, reported as `OutcomeUnknown` (fatal class), and no commit was
/// sent in the meantime.
#[test]
fn faults_commit_retriable_exhausted_is_outcome_unknown() {
    let _g = serial();
    let faults = Arc::new(Faults::new());
    faults.fail(
        FaultPoint::Commit,
        None,
        RDKafkaErrorCode::CoordinatorLoadInProgress,
        100,
    );
    let mut rig = Rig::new(Some(faults.clone()));
    let e = expect_err(rig.transaction("t1"), "commit retriable forever");
    assert!(matches!(e, Error::OutcomeUnknown(_)), "{e:?}");
    assert_eq!(e.class(), Some(ErrorClass::Fatal));
    assert_eq!(faults.fired().len(), 6, "the call and five retries");
    let trace = rig.trace();
    assert_eq!(trace.assert_atomic(), 0, "{}", trace.dump());
    assert_eq!(trace.sent("EndTxn"), 0, "{}", trace.dump());
    // The offsets were accepted into the (still open) transaction exactly
    // once; a new producer's init_transactions will abort it.
    assert!(trace.txns[0].offsets_accepted);
    assert_eq!(trace.sent("TxnOffsetCommit"), 1, "{}", trace.dump());
}

/// After a `commit_transaction` failure the caller may call `commit` again:
/// offsets already accepted are not sent a second time.
#[test]
fn faults_commit_again_after_abortable_commit_failure_does_not_resend_offsets() {
    let _g = serial();
    let faults = Arc::new(Faults::new());
    faults.fail(
        FaultPoint::Commit,
        None,
        RDKafkaErrorCode::NotEnoughReplicas,
        1,
    );
    let mut rig = Rig::new(Some(faults.clone()));
    let e = expect_err(rig.transaction("t1"), "injected abortable commit failure");
    assert_eq!(e.class(), Some(ErrorClass::Abortable), "{e}");
    let mut offsets = TopicPartitionList::new();
    offsets
        .add_partition_offset(&rig.input, 0, Offset::Offset(INPUT_OFFSET))
        .expect("offset list");
    let group = rig.group();
    rig.sink()
        .commit(&offsets, &group, CommitCause::Due)
        .expect("second commit");
    let trace = rig.trace();
    assert_eq!(trace.assert_atomic(), 1, "{}", trace.dump());
    assert_eq!(trace.sent("AddOffsetsToTxn"), 1, "{}", trace.dump());
    assert_eq!(trace.sent("TxnOffsetCommit"), 1, "{}", trace.dump());
}

// ---------------------------------------------------------------------------
// The mock's limits, pinned
// ---------------------------------------------------------------------------

/// Why the tests above read the producer's log instead of the cluster: the
/// mock shows an aborted transaction's records to `read_committed` readers
/// and never stores transactional offsets. If this test fails, a newer
/// librdkafka's mock keeps transactional state, and the tests above should
/// also assert visibility and committed offsets directly.
#[test]
fn mock_cluster_keeps_no_transactional_state() {
    let _g = serial();
    let mut rig = Rig::new(None);
    // An aborted transaction.
    rig.mock.request_errors(
        RDKafkaApiKey::EndTxn,
        &[RD_KAFKA_RESP_ERR_INVALID_PRODUCER_ID_MAPPING],
    );
    expect_err(rig.transaction("aborted"), "injected EndTxn failure");
    rig.sink().abort().expect("abort");
    // A committed one.
    rig.transaction("committed").expect("commit");
    let trace = rig.trace();
    assert_eq!(trace.assert_atomic(), 1, "{}", trace.dump());
    assert!(trace.txns[0].abort_acked && trace.txns[1].commit_acked);

    let seen = rig.read_committed();
    assert_eq!(
        seen.iter().filter(|v| v.starts_with("aborted-")).count(),
        RECORDS,
        "the mock shows aborted records to read_committed: {seen:?}"
    );
    assert_eq!(
        rig.committed_offset(),
        Offset::Invalid,
        "the mock stores no offsets from TxnOffsetCommit (group {})",
        rig.group_id
    );
}
