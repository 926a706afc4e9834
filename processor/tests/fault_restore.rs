//! A restore must read the state to the high watermark, not to the last
//! stable offset. A foreign transaction left open on the state partition (as
//! a dead previous owner's would be) holds the LSO back; the heads the
//! processor commits after it lie beyond the LSO. A restart while that
//! transaction is open must still continue every chain from its real head:
//! no repeated seq, no repeated anchor_seq.

mod common;

use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};

/// (last stable offset, high watermark) of `topic` partition `p`.
fn lso_and_high_watermark(topic: &str, p: i32) -> (i64, i64) {
    let end = |isolation: &str| {
        let consumer: BaseConsumer = common::client_config()
            .set("isolation.level", isolation)
            .create()
            .expect("watermark client");
        consumer
            .fetch_watermarks(topic, p, Duration::from_secs(30))
            .expect("watermarks")
            .1
    };
    // ListOffsets answers with the LSO for a read_committed client and with
    // the high watermark for a read_uncommitted one.
    (end("read_committed"), end("read_uncommitted"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restore_reads_past_an_open_foreign_transaction() {
    let fx = common::Fixture::new(1, false).await;
    let config = fx.config("fault-restore");
    let state_topic = config.topics.state.clone();

    let first = fx.produce(&fx.spec(100, 3, 0)).await;
    let running = fx.start("fault-restore");
    fx.wait_caught_up(&[&running], Duration::from_secs(120))
        .await;

    // A foreign producer (as a dead owner would have) opens a transaction on
    // state partition 0 and leaves it open. Its record names a tenant that
    // does not exist, so even if it were read it could not touch a real chain;
    // it is aborted by the coordinator anyway.
    let (key, value) = auditchain::state::tenant_record(
        &config.topics.input,
        "ghost-tenant-that-never-writes",
        &auditchain::state::ChainHead {
            seq: 1,
            entry_hash: [0x55; 32],
        },
    );
    let foreign = common::open_foreign_transaction(&state_topic, 0, key.as_bytes(), &value);
    let opened = Instant::now();

    // The processor commits heads after the foreign record: beyond the LSO.
    let second = fx.produce(&fx.spec(100, 3, 0)).await;
    fx.wait_caught_up(&[&running], Duration::from_secs(120))
        .await;
    let before = running.stop();

    // The defect needs the foreign transaction still open when the restart
    // restores; say so rather than pass without having exercised it.
    let (lso, high) = tokio::task::block_in_place(|| lso_and_high_watermark(&state_topic, 0));
    println!(
        "state partition 0 before the restart: LSO {lso}, high watermark {high}, \
         foreign transaction open for {:.1} s",
        opened.elapsed().as_secs_f64()
    );
    assert!(
        lso < high,
        "the foreign transaction ended before the restart (LSO {lso} = high watermark {high}); \
         the test did not exercise a restore behind an open transaction"
    );

    let restarted = Instant::now();
    let running = fx.start("fault-restore");
    let third = fx.produce(&fx.spec(100, 3, 0)).await;
    fx.wait_caught_up(&[&running], Duration::from_secs(180))
        .await;
    println!(
        "restart to caught up: {:.1} s (foreign transaction opened {:.1} s before the restart)",
        restarted.elapsed().as_secs_f64(),
        (restarted - opened).as_secs_f64()
    );
    let after = running.stop();

    let (trail, report) = tokio::task::block_in_place(|| fx.verify());
    common::assert_verified(&report);
    let total = first.records.len() + second.records.len() + third.records.len();
    assert_eq!(total, 300);
    assert_eq!(trail.chained.len(), 300);
    assert_eq!(
        report.chains.values().sum::<u64>(),
        300,
        "{:?}",
        report.chains
    );
    assert_eq!(before.stats.chained + after.stats.chained, 300);
    // The coordinator aborted the foreign transaction on its timeout (the
    // fixed restore waited for exactly that); nothing is left to end here.
    drop(foreign);
}
