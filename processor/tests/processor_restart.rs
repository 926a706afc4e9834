//! Chain state lives in Kafka: stop the processor mid-stream, start it again,
//! and the same chains continue with no gap and no fork.

mod common;

use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn chains_continue_across_a_restart_mid_stream() {
    // Compiled-in schemas this time (no registry).
    let fx = common::Fixture::new(2, false).await;
    let first = fx.produce(&fx.spec(1500, 5, 0)).await;

    let running = fx.start("restart-1");
    fx.wait_progress(&running, 200, Duration::from_secs(60))
        .await;
    let before = running.stop();
    let lag = tokio::task::block_in_place(|| fx.lag());
    let done: i64 = lag.values().map(|(_, d)| d).sum();
    assert!(done >= 200, "{lag:?}");

    // More records arrive while it is down.
    let second = fx.produce(&fx.spec(500, 5, 1)).await;
    let running = fx.start("restart-1");
    fx.wait_caught_up(&[&running], Duration::from_secs(120))
        .await;
    let after = running.stop();

    let (trail, report) = tokio::task::block_in_place(|| fx.verify());
    common::assert_verified(&report);
    assert_eq!(report.chains.len(), 5, "{:?}", report.chains);
    assert_eq!(report.chains.values().sum::<u64>(), 2000);
    let total = first.records.len() + second.records.len();
    assert_eq!(trail.chained.len() + trail.quarantined.len(), total);
    // Both runs did part of the work, and no record was written twice.
    assert!(before.stats.chained > 0 && after.stats.chained > 0);
    assert_eq!(
        before.stats.chained + after.stats.chained,
        2000,
        "chained {} before and {} after the restart",
        before.stats.chained,
        after.stats.chained
    );
    // Anchors of each partition continue one chain across the restart.
    let per_partition = trail
        .anchors
        .iter()
        .filter(|a| a.anchor.source_partition == 0)
        .count();
    assert!(per_partition >= 2);
}
