//! `POST /admin/*` on the real HTTP server of `auditchain run` (issue 12):
//! off loopback the processor refuses to start without an admin token, and
//! with one, the admin endpoints answer only to `Authorization: Bearer
//! <token>` while `/metrics`, `/healthz` and `/readyz` stay open.

mod common;

use std::time::{Duration, Instant};

use common::Fixture;

/// `addr` as the HTTP server reported it, reachable from here (a server on
/// `0.0.0.0` answers on loopback too).
fn local(addr: &str) -> String {
    addr.replace("0.0.0.0", "127.0.0.1")
}

async fn wait_metric(addr: &str, name: &str, want: f64, child: &mut common::Child) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        child.assert_alive();
        let (_, text) = common::http(addr, "GET", "/metrics");
        if common::metric(&text, name, "") == want {
            return;
        }
        assert!(Instant::now() < deadline, "{name} never became {want}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn off_loopback_the_admin_endpoint_needs_the_token() {
    let fx = Fixture::new(1, false).await;
    let pod_address = ("AUDITCHAIN__HTTP__BIND", "0.0.0.0:0");

    // No token on a pod address: start-up fails naming the field, before
    // anything listens.
    let mut open = fx.spawn_with("open", &[pod_address]);
    let status = tokio::task::block_in_place(|| open.child.wait()).expect("wait");
    let log = std::fs::read_to_string(&open.log).expect("log");
    assert!(!status.success(), "started without an admin token:\n{log}");
    assert!(
        log.contains("http.admin_token_file") && log.contains("AUDITCHAIN_ADMIN_TOKEN"),
        "{log}"
    );

    let token = format!("admin-{}", uuid::Uuid::new_v4().simple());
    let (mut child, addr) = fx
        .spawn_http_with(
            "guarded",
            &[pod_address, ("AUDITCHAIN_ADMIN_TOKEN", &token)],
        )
        .await;
    let addr = local(&addr);
    for path in ["/metrics", "/healthz"] {
        assert_eq!(common::http(&addr, "GET", path).0, 200, "{path}");
    }
    assert_ne!(common::http(&addr, "GET", "/readyz").0, 401);

    let bearer = format!("Bearer {token}");
    let wrong = format!("Bearer {token}0");
    let basic = format!("Basic {token}");
    for path in ["/admin/pause", "/admin/resume"] {
        assert_eq!(
            common::http(&addr, "POST", path).0,
            401,
            "{path} without a token"
        );
        for header in [&wrong, &basic, &token] {
            let (status, _) = common::http_with(&addr, "POST", path, &[("Authorization", header)]);
            assert_eq!(status, 401, "{path} with `{header}`");
        }
    }
    // Still running, not paused, then paused and resumed with the token.
    wait_metric(&addr, "auditchain_ready", 1.0, &mut child).await;
    assert_eq!(
        common::metric(
            &common::http(&addr, "GET", "/metrics").1,
            "auditchain_paused",
            ""
        ),
        0.0
    );
    let (status, _) =
        common::http_with(&addr, "POST", "/admin/pause", &[("Authorization", &bearer)]);
    assert_eq!(status, 202);
    wait_metric(&addr, "auditchain_paused", 1.0, &mut child).await;
    let (status, _) = common::http_with(
        &addr,
        "POST",
        "/admin/resume",
        &[("Authorization", &bearer)],
    );
    assert_eq!(status, 202);
    wait_metric(&addr, "auditchain_paused", 0.0, &mut child).await;

    let log = std::fs::read_to_string(&child.log).expect("log");
    assert!(!log.contains(&token), "the token is in the log:\n{log}");
    assert!(log.contains("refused an admin request"), "{log}");
    child.stop();
}
