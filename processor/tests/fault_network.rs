//! Network faults between one processor and the broker, through a TCP proxy
//! (`common::proxy`) that carries all of that instance's traffic:
//!
//! - **cut**: every connection closed and new ones refused while the
//!   instance holds an open transaction, past the session timeout, so the
//!   other instance takes its partitions; then the network heals;
//! - **stall**: the same, but the connections stay open and nothing moves,
//!   so when the network heals the cut-off instance's stale requests
//!   (produce, offsets, commit of a transaction the cluster has moved past)
//!   arrive late;
//! - **slow**: every chunk delayed while a lone instance processes a stream.
//!
//! Each ends with `verify`: every input record exactly once, nothing forked.
//! The proxy listens on the stack's fixed proxy ports, so the tests take
//! turns.

mod common;

use std::time::{Duration, Instant};

use common::proxy::{self, Mode, Proxy};

static PROXY_PORTS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const PROXIED_ENV: &str = "AUDITCHAIN__KAFKA__BOOTSTRAP_SERVERS";

/// Polls `value` until it reaches `at_least`, checking `alive` in between.
async fn wait_metric(
    what: &str,
    mut alive: impl FnMut(),
    value: impl Fn() -> f64,
    at_least: f64,
    limit: Duration,
) {
    let deadline = Instant::now() + limit;
    while value() < at_least {
        alive();
        assert!(Instant::now() < deadline, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Instance `a` (through the proxy) holds an open transaction when the
/// network fault `fault` starts; instance `b` (direct) must take over every
/// partition while it lasts; `a`'s transaction must be refused once the
/// network heals; the trail must verify with every record exactly once.
async fn partitioned_instance_loses_its_transaction(fault: Mode) {
    let _turn = PROXY_PORTS.lock().await;
    let proxy = Proxy::start();
    let fx = common::Fixture::new(4, false).await;
    let stream = fx.stream(100, 100, Duration::from_millis(400));
    let bootstrap = proxy::proxied_bootstrap();
    let (mut a, a_http) = fx
        .spawn_long_transactions("net-a", &[(PROXIED_ENV, bootstrap.as_str())])
        .await;
    let mut b = fx.spawn("net-b");
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
    assert!(
        proxy.connections() > 0 && proxy.forwarded() > 0,
        "a's traffic does not go through the proxy"
    );

    let metric = |name: &str, labels: &str| {
        let (_, text) = common::http(&a_http, "GET", "/metrics");
        common::metric(&text, name, labels)
    };
    wait_metric(
        "a holds records in a transaction",
        || a.assert_alive(),
        || metric("auditchain_transaction_open_records", ""),
        1.0,
        Duration::from_secs(60),
    )
    .await;
    let refused_before = metric("auditchain_transactions_total", "result=\"failed\"")
        + metric("auditchain_transactions_total", "result=\"aborted\"");
    proxy.set(fault);
    let frozen_at = tokio::task::block_in_place(|| fx.lag());
    fx.wait_for(
        "b takes over the cut-off instance's partitions",
        || {
            a.assert_alive();
            b.assert_alive();
        },
        |l| l.iter().all(|(p, (_, d))| *d > frozen_at[p].1),
        Duration::from_secs(180),
    )
    .await;
    proxy.set(Mode::Pass);

    wait_metric(
        "a's open transaction is refused after the network heals",
        || a.assert_alive(),
        || {
            metric("auditchain_transactions_total", "result=\"failed\"")
                + metric("auditchain_transactions_total", "result=\"aborted\"")
        },
        refused_before + 1.0,
        Duration::from_secs(180),
    )
    .await;

    let sent = stream.await.expect("producer task");
    fx.wait_all_committed(
        "catch-up after the network healed",
        || {
            a.assert_alive();
            b.assert_alive();
        },
        Duration::from_secs(240),
    )
    .await;
    a.stop();
    b.stop();
    fx.assert_exactly_once(sent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cut_off_instance_cannot_commit_after_the_network_heals() {
    partitioned_instance_loses_its_transaction(Mode::Cut).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stalled_instance_cannot_commit_after_the_network_heals() {
    partitioned_instance_loses_its_transaction(Mode::Stall).await;
}

/// A slow network: every chunk to and from the broker waits 50 ms. The lone
/// instance keeps committing through it, and the trail verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slow_network_delays_but_loses_nothing() {
    let _turn = PROXY_PORTS.lock().await;
    let proxy = Proxy::start();
    let fx = common::Fixture::new(4, false).await;
    let bootstrap = proxy::proxied_bootstrap();
    let mut a = fx.spawn_with("slow-a", &[(PROXIED_ENV, bootstrap.as_str())]);
    let stream = fx.stream(40, 100, Duration::from_millis(250));
    fx.wait_committed_more(
        "a commits",
        || a.assert_alive(),
        200,
        Duration::from_secs(120),
    )
    .await;

    proxy.set(Mode::Slow(Duration::from_millis(50)));
    let before = proxy.forwarded();
    fx.wait_committed_more(
        "a commits through the slow network",
        || a.assert_alive(),
        500,
        Duration::from_secs(180),
    )
    .await;
    assert!(
        proxy.forwarded() > before,
        "the commits went around the proxy"
    );
    proxy.set(Mode::Pass);

    let sent = stream.await.expect("producer task");
    fx.wait_all_committed(
        "catch-up after the slow spell",
        || a.assert_alive(),
        Duration::from_secs(180),
    )
    .await;
    a.stop();
    fx.assert_exactly_once(sent);
}
