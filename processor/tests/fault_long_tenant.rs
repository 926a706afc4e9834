//! A tenant id so long that its chain head cannot be written to the state
//! topic (one created before sized topics, with a small `max.message.bytes`)
//! would make every transaction holding it fail, forever, and stall every
//! partition of the instance. Such a record is quarantined instead, with a
//! reason, and everything else flows.

mod common;

use std::time::Duration;

use auditchain::route::Reason;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_tenant_id_too_long_for_the_state_topic_is_quarantined() {
    let fx = common::Fixture::new(1, false).await;
    let state_topic = fx.config("setup").topics.state;
    common::create_topic(
        &state_topic,
        1,
        &[
            ("cleanup.policy", "compact"),
            ("max.message.bytes", "10000"),
        ],
    )
    .await;
    let mut long = fx.spec(1, 1, 0);
    long.tenant_prefix = "t".repeat(12_000);
    fx.produce(&fx.spec(50, 3, 0)).await;
    fx.produce(&long).await;
    fx.produce(&fx.spec(50, 3, 0)).await;

    let running = fx.start("long-tenant-1");
    fx.wait_caught_up(&[&running], Duration::from_secs(120))
        .await;
    let summary = running.stop();
    assert_eq!(summary.stats.chained, 100);
    assert_eq!(
        summary.stats.quarantined.get(&Reason::InvalidField),
        Some(&1)
    );
    assert_eq!(summary.stats.aborts, 0);

    let (trail, report) = tokio::task::block_in_place(|| fx.verify());
    common::assert_verified(&report);
    assert_eq!(trail.quarantined.len(), 1);
    assert!(
        trail.quarantined[0]
            .detail
            .contains("fit the state and anchors topics"),
        "{}",
        trail.quarantined[0].detail
    );
}
