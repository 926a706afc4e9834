//! A zombie: one of two instances is frozen (SIGSTOP) past the session
//! timeout, its partitions move to the other, then it wakes (SIGCONT) with a
//! transaction it believes is open. Nothing it writes may survive: the trail
//! verifies, with every input record exactly once. The test checks the
//! zombie really had an open transaction when it froze and that its commit
//! was refused after it woke, so it cannot pass without a zombie.

mod common;

use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_frozen_instance_cannot_write_after_it_wakes() {
    let fx = common::Fixture::new(4, false).await;
    let stream = fx.stream(100, 100, Duration::from_millis(400));
    // The zombie's transactions close only when the broker or a rebalance
    // closes them: it is certain to hold one open when frozen.
    let (mut a, a_http) = fx.spawn_long_transactions("zombie-a", &[]).await;
    let mut b = fx.spawn("zombie-b");
    fx.wait_committed_more(
        "both running",
        || {
            a.assert_alive();
            b.assert_alive();
        },
        500,
        Duration::from_secs(120),
    )
    .await;

    let open_records = || {
        let (_, text) = common::http(&a_http, "GET", "/metrics");
        common::metric(&text, "auditchain_transaction_open_records", "")
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while open_records() < 1.0 {
        a.assert_alive();
        assert!(
            std::time::Instant::now() < deadline,
            "a never held records in a transaction"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    a.pause();
    // While a is frozen, b must take over all partitions: every partition's
    // committed offset moves on past where it was at the freeze.
    let frozen_at = tokio::task::block_in_place(|| fx.lag());
    fx.wait_for(
        "b takes over the frozen instance's partitions",
        || b.assert_alive(),
        |l| l.iter().all(|(p, (_, d))| *d > frozen_at[p].1),
        Duration::from_secs(120),
    )
    .await;
    a.resume();
    // The zombie's commit is refused (fenced, or its transaction aborted by
    // the coordinator): it counts a failed or aborted transaction.
    let refused = || {
        let (_, text) = common::http(&a_http, "GET", "/metrics");
        common::metric(&text, "auditchain_transactions_total", "result=\"failed\"")
            + common::metric(&text, "auditchain_transactions_total", "result=\"aborted\"")
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while refused() < 1.0 {
        a.assert_alive();
        assert!(
            std::time::Instant::now() < deadline,
            "the zombie's transaction was never refused"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    fx.assert_verifies_live("after the zombie's commit was refused");
    let sent = stream.await.expect("producer task");
    fx.wait_for(
        "catch-up after the zombie woke",
        || {
            a.assert_alive();
            b.assert_alive();
        },
        |l| l.values().all(|(h, d)| d >= h),
        Duration::from_secs(180),
    )
    .await;
    a.stop();
    b.stop();

    let (_, report) = tokio::task::block_in_place(|| fx.verify());
    common::assert_verified(&report);
    assert_eq!(report.input_records, Some(sent));
}
