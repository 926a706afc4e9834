//! The HTTP endpoints: `/healthz`, `/readyz`, `/metrics` with values that
//! move. Consumption is paused through `/admin/pause` while records keep
//! arriving: lag in records and in seconds rises; after `/admin/resume` it
//! returns to 0 and nothing is lost.

mod common;

use std::time::{Duration, Instant};

async fn wait_metric(
    addr: &str,
    what: &str,
    child: &mut common::Child,
    done: impl Fn(&str) -> bool,
    limit: Duration,
) -> String {
    let deadline = Instant::now() + limit;
    loop {
        child.assert_alive();
        let (status, text) = common::http(addr, "GET", "/metrics");
        assert_eq!(status, 200);
        if done(&text) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not within {limit:?}; /metrics:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn metrics_move_and_lag_rises_while_paused() {
    let fx = common::Fixture::new(2, false).await;
    let (mut child, addr) = fx.spawn_http("metrics-1").await;
    assert!(addr.starts_with("127.0.0.1:"), "binds to loopback: {addr}");
    assert_eq!(common::http(&addr, "GET", "/healthz").0, 200);
    wait_metric(
        &addr,
        "ready",
        &mut child,
        |t| common::metric(t, "auditchain_ready", "") == 1.0,
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(common::http(&addr, "GET", "/readyz").0, 200);

    fx.produce(&fx.spec(200, 4, 1)).await;
    let text = wait_metric(
        &addr,
        "first batch processed",
        &mut child,
        |t| common::metric(t, "auditchain_records_total", "outcome=\"chained\"") == 200.0,
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(
        common::metric(&text, "auditchain_records_total", "outcome=\"quarantined\""),
        10.0
    );
    assert_eq!(
        common::metric(
            &text,
            "auditchain_quarantined_total",
            "reason=\"OVERSIZED\""
        ),
        1.0
    );
    assert!(common::metric(&text, "auditchain_anchors_total", "") >= 1.0);
    assert!(
        common::metric(
            &text,
            "auditchain_transactions_total",
            "result=\"committed\""
        ) >= 1.0
    );
    assert!(common::metric(&text, "auditchain_end_to_end_latency_seconds_count", "") >= 210.0);
    assert_eq!(
        common::metric(&text, "auditchain_assigned_partitions", ""),
        2.0
    );
    assert_eq!(
        common::metric(&text, "auditchain_tenants_in_state", ""),
        4.0
    );

    // Pause, then let records pile up.
    assert_eq!(common::http(&addr, "POST", "/admin/pause").0, 202);
    wait_metric(
        &addr,
        "paused",
        &mut child,
        |t| common::metric(t, "auditchain_paused", "") == 1.0,
        Duration::from_secs(30),
    )
    .await;
    fx.produce(&fx.spec(300, 4, 0)).await;
    let text = wait_metric(
        &addr,
        "lag rises while paused",
        &mut child,
        |t| {
            common::metric(t, "auditchain_consumer_lag_records", "") == 300.0
                && common::metric(t, "auditchain_consumer_lag_seconds", "") > 0.0
        },
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(
        common::metric(&text, "auditchain_records_total", "outcome=\"chained\""),
        200.0
    );

    assert_eq!(common::http(&addr, "POST", "/admin/resume").0, 202);
    wait_metric(
        &addr,
        "lag back to 0 after resume",
        &mut child,
        |t| {
            common::metric(t, "auditchain_records_total", "outcome=\"chained\"") == 500.0
                && common::metric(t, "auditchain_consumer_lag_records", "") == 0.0
                && common::metric(t, "auditchain_consumer_lag_seconds", "") == 0.0
        },
        Duration::from_secs(60),
    )
    .await;
    child.stop();

    let (_, report) = tokio::task::block_in_place(|| fx.verify());
    common::assert_verified(&report);
    assert_eq!(report.input_records, Some(510));
}
