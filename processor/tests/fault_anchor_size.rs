//! An anchor carries one tenant head per tenant that grew in its
//! transaction. 30,000 tenants with 68-character ids on one partition make a
//! 10,000-record transaction's anchor larger than the broker's default 1 MB
//! record limit. A new anchors topic is created large enough; one that
//! already exists with the broker default (a deployment from before sized
//! topics) is not, and the processor must close transactions early rather
//! than abort and retry forever. The processor runs with default settings.

mod common;

use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thirty_thousand_long_tenant_ids_in_one_partition_do_not_stall() {
    let fx = common::Fixture::new(1, false).await;
    let anchors_topic = fx.config("setup").topics.anchors;
    // An existing anchors topic, kept for good as a trail topic must be,
    // with the broker's default max.message.bytes.
    common::create_topic(
        &anchors_topic,
        1,
        &auditchain::retention::TRAIL_TOPIC_CONFIG,
    )
    .await;
    let mut spec = fx.spec(30_000, 30_000, 0);
    // `<prefix>-<i>`: 68 characters for the larger ids.
    spec.tenant_prefix = format!("tenant-{}", "x".repeat(56));
    let produced = fx.produce(&spec).await;
    assert_eq!(produced.records.len(), 30_000);
    // The production record bound (the fixture's smaller batches would keep
    // every anchor small). The commit interval is long (and the transaction
    // timeout above it, as `validate` requires) so that the anchor limit,
    // not how fast this machine chains, is what closes a transaction before
    // its 10,000 records.
    let mut config = fx.config("anchors-1");
    config.kafka.transaction_timeout_ms = 60_000;
    config.processing.commit_interval_ms = 30_000;
    config.processing.max_batch_records = 10_000;
    let running = fx.start_config(
        config,
        auditchain::processor::RunOptions::new(auditchain::telemetry::Traces::off()),
    );
    fx.wait_caught_up(&[&running], Duration::from_secs(300))
        .await;
    let summary = running.stop();
    assert_eq!(summary.stats.chained, 30_000);
    assert_eq!(summary.stats.aborts, 0, "no transaction may be aborted");
    assert!(
        summary.stats.early_commits > 0,
        "the test did not reach the anchor size limit"
    );
    let (trail, report) = tokio::task::block_in_place(|| fx.verify());
    common::assert_verified(&report);
    assert_eq!(report.chains.len(), 30_000);
    let largest = trail
        .anchors
        .iter()
        .map(|a| a.anchor.tenant_heads.len())
        .max()
        .unwrap_or(0);
    assert!(largest > 1_000, "anchors carry many heads each: {largest}");
}
