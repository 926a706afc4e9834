//! The broker restarts mid-stream (through `scripts/stack`, so this test
//! needs the local stack). On one broker it is a clean restart, an outage;
//! on a three-broker stack (`scripts/stack up --brokers 3`, with the
//! `STACK_BROKERS=3` that `scripts/stack env` prints) every broker in turn
//! is killed with -9 and started again, each time moving partition leaders
//! and the group and transaction coordinators. The processor rides it out:
//! open transactions abort or fail, it recovers, and the trail verifies with
//! nothing lost, duplicated or forked.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

async fn stack(script: &Path, args: &[&str]) {
    let script: PathBuf = script.into();
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let shown = args.join(" ");
    let out = tokio::task::spawn_blocking(move || Command::new(&script).args(&args).output())
        .await
        .expect("stack task")
        .expect("scripts/stack");
    assert!(
        out.status.success(),
        "scripts/stack {shown} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn broker_restart_mid_stream() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/stack");
    let status = Command::new(&script)
        .arg("status")
        .output()
        .expect("scripts/stack status");
    assert!(
        String::from_utf8_lossy(&status.stdout).contains("kafka     running"),
        "this test restarts the broker with scripts/stack, which is not running it; start it with scripts/stack up"
    );
    let brokers: u32 = std::env::var("STACK_BROKERS")
        .ok()
        .and_then(|b| b.parse().ok())
        .unwrap_or(1);

    let fx = common::Fixture::new(3, false).await;
    // Enough stream for the progress awaited between broker faults.
    let stream = fx.stream(60 * brokers as usize, 100, Duration::from_millis(400));
    let mut child = fx.spawn("restart-broker");
    let mut target = fx.committed_total() + 800;
    for node in 1..=brokers {
        fx.wait_for(
            "progress before the broker goes",
            || child.assert_alive(),
            |l| l.values().map(|(_, d)| d).sum::<i64>() >= target,
            Duration::from_secs(180),
        )
        .await;
        if brokers == 1 {
            stack(&script, &["restart-kafka"]).await;
        } else {
            let node = node.to_string();
            stack(&script, &["kill-broker", &node]).await;
            stack(&script, &["restart-kafka", &node]).await;
        }
        target = fx.committed_total() + 300;
    }
    fx.wait_for(
        "progress after the broker is back",
        || child.assert_alive(),
        |l| common::progressed(l, target),
        Duration::from_secs(180),
    )
    .await;
    fx.assert_verifies_live("after the broker restart");

    let sent = stream.await.expect("producer task");
    fx.wait_all_committed(
        "after the restart",
        || child.assert_alive(),
        Duration::from_secs(240),
    )
    .await;
    child.stop();
    fx.assert_exactly_once(sent);
}
