//! A processing loop stuck in a call that does not return: the process is
//! alive and its lag sampler still reports, but nothing moves. `/healthz`
//! must fail while it is stuck (so an orchestrator restarts the process)
//! and recover once it turns again, and the trail must not suffer.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use auditchain::faults::Faults;
use auditchain::metrics::Metrics;

/// Polls `/healthz` until its status is `want`; returns the body.
async fn health_becomes(addr: &str, want: u16, running: &common::Running) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        running.assert_alive();
        let (status, body) = tokio::task::block_in_place(|| common::http(addr, "GET", "/healthz"));
        if status == want {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "/healthz never answered {want}: {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn healthz_fails_while_the_loop_is_stuck_and_recovers() {
    let fx = common::Fixture::new(1, false).await;
    fx.produce(&fx.spec(100, 3, 0)).await;
    let faults = Arc::new(Faults::new());
    let metrics = Metrics::new();
    // The test is about this setting: a short limit, and a known port.
    let mut config = fx.config("stuck-1");
    config.http.liveness_timeout_ms = 2_000;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    config.http.bind = ([127, 0, 0, 1], port).into();
    let addr = config.http.bind.to_string();
    let running = fx.start_config(config, common::fault_options(&faults, &metrics));
    fx.wait_caught_up(&[&running], Duration::from_secs(120))
        .await;
    assert_eq!(health_becomes(&addr, 200, &running).await, "ok\n");

    // Stuck four times longer than the limit.
    faults.block_loop(Duration::from_secs(8));
    let body = health_becomes(&addr, 503, &running).await;
    assert!(body.contains("has not come round"), "{body}");
    assert_eq!(health_becomes(&addr, 200, &running).await, "ok\n");

    fx.produce(&fx.spec(50, 3, 0)).await;
    fx.wait_caught_up(&[&running], Duration::from_secs(120))
        .await;
    running.stop();
    let (trail, report) = tokio::task::block_in_place(|| fx.verify());
    common::assert_verified(&report);
    assert_eq!(trail.chained.len(), 150);
}
