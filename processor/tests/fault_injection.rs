//! Faults injected into the processor's transactions against the real
//! broker: a failure that leaves the producer usable is the path where an
//! engine that forgets to rewind loses records, and a retried commit is
//! where one could commit outputs without their offsets. Each test checks
//! that the planned fault really fired, then that `verify` finds nothing
//! lost, duplicated or forked.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use auditchain::faults::{CommitCause, FaultPoint, Faults};
use auditchain::metrics::Metrics;
use rdkafka::error::RDKafkaErrorCode;

/// Abortable by librdkafka's classification, and leaves the producer usable.
const ABORTABLE: RDKafkaErrorCode = RDKafkaErrorCode::NotEnoughReplicas;
/// Retriable: the same call is made again.
const RETRIABLE: RDKafkaErrorCode = RDKafkaErrorCode::CoordinatorNotAvailable;

/// A config whose transactions stay open until something other than the
/// commit interval closes them: these tests are about what closes them.
fn long_transactions(fx: &common::Fixture, instance: &str) -> auditchain::config::Config {
    let mut config = fx.config(instance);
    config.processing.commit_interval_ms = 40_000;
    config.processing.max_batch_records = 1_000_000;
    config.kafka.transaction_timeout_ms = 60_000;
    config
}

/// Waits until `n` input records sit in the instance's open transaction.
async fn wait_open_records(metrics: &Metrics, running: &common::Running, n: i64) {
    let deadline = Instant::now() + Duration::from_secs(90);
    while metrics.open_transaction_records.get() < n {
        running.assert_alive();
        assert!(
            Instant::now() < deadline,
            "only {} records reached the open transaction",
            metrics.open_transaction_records.get()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn assert_fired(faults: &Faults, point: FaultPoint, cause: CommitCause, times: usize) {
    let fired = faults
        .fired()
        .iter()
        .filter(|f| f.point == point && f.cause == Some(cause))
        .count();
    assert_eq!(fired, times, "injected faults fired: {:?}", faults.fired());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_retried_send_offsets_commits_the_offsets_with_the_outputs() {
    let fx = common::Fixture::new(1, false).await;
    let produced = fx.produce(&fx.spec(300, 5, 0)).await;
    let faults = Arc::new(Faults::new());
    // Fewer than the sink's retries: the commit must go through with its
    // offsets on a later attempt, not without them.
    faults.fail(
        FaultPoint::SendOffsets,
        Some(CommitCause::Due),
        RETRIABLE,
        3,
    );
    // One transaction holds the whole input and is closed by the batch
    // bound; no later transaction can commit cumulative offsets that would
    // hide a commit made without its own (the interval is a minute and the
    // input is not transactional, so no commit past markers either).
    let mut config = long_transactions(&fx, "offsets-1");
    config.processing.max_batch_records = 300;
    let metrics = Metrics::new();
    let running = fx.start_config(config, common::fault_options(&faults, &metrics));
    let deadline = Instant::now() + Duration::from_secs(90);
    while metrics.stats().commits == 0 {
        running.assert_alive();
        assert!(Instant::now() < deadline, "the transaction never committed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Right after the faulted commit, before any other: the group's offset
    // is past every record that commit wrote.
    let lag = tokio::task::block_in_place(|| fx.lag());
    assert_eq!(metrics.stats().commits, 1, "a second transaction committed");
    assert_eq!(
        lag[&0],
        (300, 300),
        "the faulted commit did not commit its offsets (high, committed)"
    );
    let first = running.stop();
    assert_fired(&faults, FaultPoint::SendOffsets, CommitCause::Due, 3);
    assert_eq!(first.stats.aborts, 0, "a retriable error must not abort");
    assert_eq!(first.stats.chained, 300);

    // A restart reads the committed offsets: nothing is chained twice.
    let running = fx.start("offsets-1");
    fx.wait_caught_up(&[&running], Duration::from_secs(120))
        .await;
    let second = running.stop();
    assert_eq!(second.stats.chained, 0);
    let (trail, report) = tokio::task::block_in_place(|| fx.verify());
    common::assert_verified(&report);
    assert_eq!(trail.chained.len(), produced.records.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_abortable_commit_failure_before_a_pause_loses_nothing() {
    let fx = common::Fixture::new(2, false).await;
    fx.produce(&fx.spec(400, 6, 0)).await;
    let faults = Arc::new(Faults::new());
    faults.fail(FaultPoint::Commit, Some(CommitCause::Pause), ABORTABLE, 1);
    let metrics = Metrics::new();
    let running = fx.start_config(
        long_transactions(&fx, "pause-1"),
        common::fault_options(&faults, &metrics),
    );
    wait_open_records(&metrics, &running, 400).await;

    metrics
        .pause_requested
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let deadline = Instant::now() + Duration::from_secs(60);
    while faults.fired().is_empty() {
        running.assert_alive();
        assert!(Instant::now() < deadline, "the pause never tried to commit");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    metrics
        .pause_requested
        .store(false, std::sync::atomic::Ordering::Relaxed);
    // More records after the resume, committed by the commit interval.
    fx.produce(&fx.spec(100, 6, 1)).await;
    fx.wait_caught_up(&[&running], Duration::from_secs(120))
        .await;
    let summary = running.stop();
    assert_fired(&faults, FaultPoint::Commit, CommitCause::Pause, 1);
    assert!(
        summary.stats.aborts >= 1,
        "the failed commit was not aborted"
    );

    let (trail, report) = tokio::task::block_in_place(|| fx.verify());
    common::assert_verified(&report);
    assert_eq!(
        trail.chained.len() + trail.quarantined.len(),
        400 + 100 + 10
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_abortable_commit_failure_during_a_partial_revoke_loses_nothing() {
    let fx = common::Fixture::new(4, false).await;
    fx.produce(&fx.spec(800, 8, 0)).await;
    let faults = Arc::new(Faults::new());
    faults.fail(FaultPoint::Commit, Some(CommitCause::Revoke), ABORTABLE, 1);
    let metrics = Metrics::new();
    let a = fx.start_config(
        long_transactions(&fx, "revoke-a"),
        common::fault_options(&faults, &metrics),
    );
    wait_open_records(&metrics, &a, 800).await;

    // A second member makes the group move some of a's partitions (a
    // cooperative, partial revoke): a's commit before the revoke fails.
    let b = fx.start("revoke-b");
    let deadline = Instant::now() + Duration::from_secs(90);
    while faults.fired().is_empty() {
        a.assert_alive();
        b.assert_alive();
        assert!(Instant::now() < deadline, "no revoke reached instance a");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    fx.produce(&fx.spec(200, 8, 0)).await;
    fx.wait_caught_up(&[&a, &b], Duration::from_secs(180)).await;
    let sa = a.stop();
    let sb = b.stop();
    assert_fired(&faults, FaultPoint::Commit, CommitCause::Revoke, 1);
    assert!(sa.stats.aborts >= 1, "the failed commit was not aborted");
    assert!(sb.stats.chained > 0, "b never got a partition");

    let (trail, report) = tokio::task::block_in_place(|| fx.verify());
    common::assert_verified(&report);
    assert_eq!(trail.chained.len(), 1000);
    assert_eq!(sa.stats.chained + sb.stats.chained, 1000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_produce_failure_mid_transaction_is_aborted_and_redone() {
    let fx = common::Fixture::new(2, false).await;
    fx.produce(&fx.spec(500, 5, 0)).await;
    let faults = Arc::new(Faults::new());
    faults.fail(FaultPoint::Produce, None, ABORTABLE, 1);
    let metrics = Metrics::new();
    let running = fx.start_with("produce-1", common::fault_options(&faults, &metrics));
    fx.wait_caught_up(&[&running], Duration::from_secs(120))
        .await;
    let summary = running.stop();
    assert_eq!(faults.fired().len(), 1);
    assert!(summary.stats.aborts >= 1);
    assert_eq!(
        summary.stats.chained, 500,
        "every record chained exactly once"
    );
    let (_, report) = tokio::task::block_in_place(|| fx.verify());
    common::assert_verified(&report);
}
