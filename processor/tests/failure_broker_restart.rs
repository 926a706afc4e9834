//! The broker restarts mid-stream (through `scripts/stack restart-kafka`,
//! so this test needs the local stack). The processor rides it out: open
//! transactions abort or fail, it recovers, and the trail verifies with
//! nothing lost, duplicated or forked.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn broker_restart_mid_stream() {
    let stack = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/stack");
    let status = Command::new(&stack)
        .arg("status")
        .output()
        .expect("scripts/stack status");
    assert!(
        String::from_utf8_lossy(&status.stdout).contains("kafka     running"),
        "this test restarts the broker with scripts/stack, which is not running it; start it with scripts/stack up"
    );

    let fx = common::Fixture::new(3, false).await;
    let stream = fx.stream(60, 100, Duration::from_millis(400));
    let mut child = fx.spawn("restart-broker");
    let target = fx.committed_total() + 800;
    fx.wait_for(
        "before the restart",
        || child.assert_alive(),
        |l| l.values().map(|(_, d)| d).sum::<i64>() >= target,
        Duration::from_secs(120),
    )
    .await;

    let restart =
        tokio::task::spawn_blocking(move || Command::new(&stack).arg("restart-kafka").output())
            .await
            .expect("restart task")
            .expect("scripts/stack restart-kafka");
    assert!(
        restart.status.success(),
        "restart-kafka failed: {}",
        String::from_utf8_lossy(&restart.stderr)
    );

    let sent = stream.await.expect("producer task");
    fx.wait_for(
        "after the restart",
        || child.assert_alive(),
        |l| l.values().all(|(h, d)| d >= h),
        Duration::from_secs(240),
    )
    .await;
    child.stop();

    let (_, report) = tokio::task::block_in_place(|| fx.verify());
    common::assert_verified(&report);
    assert_eq!(report.input_records, Some(sent));
}
