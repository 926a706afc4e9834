//! Offsets and state drift apart: a consumer group that stays empty longer
//! than the broker's `offsets.retention.minutes` loses its committed
//! offsets while the state topic keeps the chain heads. With
//! `auto.offset.reset=earliest` a restart would then replay the input on
//! top of heads that already contain it. The state's own next offset,
//! written in the same transaction as the heads, must win.

mod common;

use std::sync::Arc;
use std::time::Duration;

use auditchain::metrics::Metrics;
use auditchain::processor::RunOptions;
use auditchain::telemetry::Traces;
use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use rdkafka::types::RDKafkaErrorCode;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn expired_group_offsets_do_not_replay_the_input() {
    let fx = common::Fixture::new(2, false).await;
    fx.produce(&fx.spec(300, 6, 0)).await;
    let running = fx.start("offsets-a");
    fx.wait_caught_up(&[&running], Duration::from_secs(120))
        .await;
    let first = running.stop();
    assert_eq!(first.stats.chained, 300);

    // What offset expiry does to an empty group: its offsets are gone.
    // The coordinator takes the member's LeaveGroup a moment after the
    // processor returns; until then the group is not empty.
    let admin: AdminClient<DefaultClientContext> =
        common::client_config().create().expect("admin client");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let deleted = admin
            .delete_groups(&[&fx.group], &AdminOptions::new())
            .await
            .expect("delete_groups request");
        match deleted.into_iter().next().expect("one group result") {
            Ok(_) => break,
            Err((_, RDKafkaErrorCode::NonEmptyGroup)) if std::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err((g, code)) => panic!("deleting group {g}: {code}"),
        }
    }
    let lag = tokio::task::block_in_place(|| fx.lag());
    assert!(
        lag.values().all(|(_, committed)| *committed <= 0),
        "the group still has offsets: {lag:?}"
    );

    fx.produce(&fx.spec(100, 6, 0)).await;
    let metrics = Metrics::new();
    let running = fx.start_with(
        "offsets-a",
        RunOptions {
            traces: Traces::off(),
            faults: None,
            metrics: Some(Arc::clone(&metrics)),
        },
    );
    fx.wait_caught_up(&[&running], Duration::from_secs(120))
        .await;
    let second = running.stop();
    assert_eq!(
        second.stats.chained, 100,
        "only the new records are chained"
    );
    assert_eq!(metrics.offset_mismatches.get(), 2, "one per partition");

    let (trail, report) = tokio::task::block_in_place(|| fx.verify());
    common::assert_verified(&report);
    assert_eq!(trail.chained.len(), 400);
}

/// An upstream that publishes in transactions leaves offsets that hold no
/// record (its commit and abort markers, the records of an aborted
/// transaction). Where a partition ends in them, no record's offset covers
/// them: the processor commits its position past them in a transaction of
/// its own, or the group's lag never reaches 0. The planned (retriable)
/// fault on that commit shows the path ran; the lag shows it committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn offsets_past_an_aborted_upstream_transaction_are_committed() {
    use auditchain::faults::{CommitCause, FaultPoint, Faults};
    use rdkafka::producer::Producer;

    let fx = common::Fixture::new(2, false).await;
    fx.produce(&fx.spec(200, 6, 0)).await;
    let input = fx.config("upstream").topics.input;
    for partition in 0..2 {
        let upstream =
            common::open_foreign_transaction(&input, partition, b"tenant-aborted", b"aborted");
        upstream
            .abort_transaction(Duration::from_secs(30))
            .expect("abort");
    }
    // Each partition now ends in an aborted record and the abort marker.
    let highs: i64 = tokio::task::block_in_place(|| fx.lag())
        .values()
        .map(|(high, _)| high)
        .sum();
    assert_eq!(highs, 200 + 2 * 2);
    let faults = Arc::new(Faults::new());
    faults.fail(
        FaultPoint::Commit,
        Some(CommitCause::Markers),
        RDKafkaErrorCode::CoordinatorNotAvailable,
        1,
    );
    let metrics = Metrics::new();
    let running = fx.start_with("markers-1", common::fault_options(&faults, &metrics));
    fx.wait_caught_up(&[&running], Duration::from_secs(120))
        .await;
    let summary = running.stop();
    let fired = faults.fired();
    let markers = fired
        .iter()
        .filter(|f| f.cause == Some(CommitCause::Markers));
    assert_eq!(markers.count(), 1, "no commit past the markers was made");
    assert_eq!(summary.stats.chained, 200);
    assert_eq!(summary.stats.aborts, 0);

    let (_, report) = tokio::task::block_in_place(|| fx.verify());
    common::assert_verified(&report);
    assert_eq!(report.input_records, Some(200));
}
