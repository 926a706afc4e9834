//! The live drill: a real Prometheus scrapes the processor with the
//! project's alert rules. Consumption is paused while events keep arriving;
//! the backlog-age alert (SLO 60 s, for 2 m) fires; consumption resumes; the
//! alert clears, the backlog drains, and nothing is lost.
//!
//! Needs the `prometheus` server binary (Debian package `prometheus`, which
//! scripts/install-deps installs); PROMETHEUS_BIN overrides its path.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

struct Prometheus(std::process::Child);

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn alert_state(prom: &str, name: &str) -> Option<String> {
    let (status, body) = common::http(prom, "GET", "/api/v1/alerts");
    if status != 200 {
        return None;
    }
    let json: serde_json::Value = serde_json::from_str(&body).ok()?;
    json["data"]["alerts"]
        .as_array()?
        .iter()
        .find(|a| a["labels"]["alertname"] == name)
        .and_then(|a| a["state"].as_str().map(str::to_string))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lag_alert_fires_while_paused_and_clears_after() {
    let fx = common::Fixture::new(2, false).await;
    let (mut child, addr) = fx.spawn_http("drill-1").await;

    let rules = Path::new(env!("CARGO_MANIFEST_DIR")).join("../ops/prometheus/alerts.yml");
    let prom_config = fx.path("prometheus.yml");
    std::fs::write(
        &prom_config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\n\
             scrape_configs:\n  - job_name: auditchain\n    static_configs:\n      - targets: [\"{addr}\"]\n",
            rules.display()
        ),
    )
    .expect("prometheus config");
    let prom_addr = format!("127.0.0.1:{}", free_port());
    let bin = std::env::var("PROMETHEUS_BIN").unwrap_or_else(|_| "prometheus".into());
    let _prometheus = Prometheus(
        Command::new(&bin)
            .arg(format!("--config.file={}", prom_config.display()))
            .arg(format!("--storage.tsdb.path={}", fx.path("tsdb").display()))
            .arg(format!("--web.listen-address={prom_addr}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("starting {bin} (install Debian's prometheus package): {e}")
            }),
    );

    fx.produce(&fx.spec(200, 4, 0)).await;
    fx.wait_for(
        "first batch",
        || child.assert_alive(),
        |l| l.values().all(|(h, d)| d >= h),
        Duration::from_secs(60),
    )
    .await;

    assert_eq!(common::http(&addr, "POST", "/admin/pause").0, 202);
    let stream = fx.stream(40, 20, Duration::from_secs(5));
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        child.assert_alive();
        if alert_state(&prom_addr, "AuditchainBacklogAgeOverSLO").as_deref() == Some("firing") {
            break;
        }
        assert!(Instant::now() < deadline, "the backlog alert never fired");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }

    assert_eq!(common::http(&addr, "POST", "/admin/resume").0, 202);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        child.assert_alive();
        if alert_state(&prom_addr, "AuditchainBacklogAgeOverSLO").is_none() {
            break;
        }
        assert!(Instant::now() < deadline, "the backlog alert never cleared");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let sent = stream.await.expect("producer task");
    fx.wait_for(
        "backlog drained",
        || child.assert_alive(),
        |l| l.values().all(|(h, d)| d >= h),
        Duration::from_secs(120),
    )
    .await;
    child.stop();

    let (_, report) = tokio::task::block_in_place(|| fx.verify());
    common::assert_verified(&report);
    assert_eq!(report.input_records, Some(200 + sent));
}
