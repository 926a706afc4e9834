//! Exactly-once under crashes: SIGKILL the processor at random moments while
//! a stream flows, restart it, ten times; `verify` with completeness finds
//! nothing lost, duplicated or forked.
//!
//! `AUDITCHAIN_SOAK_ROUNDS=N` runs N rounds instead of ten (a longer soak,
//! opt-in because each round costs a group session timeout).

mod common;

use std::time::Duration;

use rand::Rng;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_minus_nine_ten_times_mid_stream() {
    let fx = common::Fixture::new(3, false).await;
    let rounds: usize = std::env::var("AUDITCHAIN_SOAK_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(10);
    let stream = fx.stream(12 * rounds, 80, Duration::from_millis(800));
    let mut rng = rand::thread_rng();
    for round in 0..rounds {
        let mut child = fx.spawn("crashy");
        // A random moment: after a random number of further records is
        // committed, while transactions are open and records are in flight.
        let target = fx.committed_total() + rng.gen_range(1..400);
        fx.wait_for(
            &format!("round {round}: progress to {target}"),
            || child.assert_alive(),
            |lag| common::progressed(lag, target),
            Duration::from_secs(120),
        )
        .await;
        child.kill9();
        // The trail as the killed instance left it, with its open
        // transaction not yet aborted and the stream still flowing. Not
        // before the group's first commit: a verify then checks all of the
        // input (it cannot tell a group that never committed from a wrong
        // group name), and the round may have struck before the stream began.
        if fx.committed_total() > 0 {
            fx.assert_verifies_live(&format!("round {round}, after the kill"));
        }
    }
    let sent = stream.await.expect("producer task");
    let mut child = fx.spawn("crashy");
    fx.wait_for(
        "final catch-up",
        || child.assert_alive(),
        |lag| lag.values().all(|(high, done)| done >= high),
        Duration::from_secs(180),
    )
    .await;
    child.stop();

    let (trail, report) = tokio::task::block_in_place(|| fx.verify());
    common::assert_verified(&report);
    assert_eq!(report.input_records, Some(sent));
    assert_eq!(trail.chained.len(), sent);
}
