//! `verify` run right after a processor died mid-transaction: the dead
//! instance's transaction stays open on an output partition until the
//! coordinator aborts it, and holds back everything committed after it from
//! `read_committed` readers. Reading only to that point would report the
//! later records as lost — a false SEV-1. `verify` must read to the high
//! watermark it saw at the start, waiting for the open transaction to end.

mod common;

use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn verify_waits_for_an_open_transaction_instead_of_reporting_loss() {
    let fx = common::Fixture::new(1, false).await;
    let config = fx.config("verify-open");
    fx.produce(&fx.spec(100, 3, 0)).await;
    let running = fx.start("verify-open");
    fx.wait_caught_up(&[&running], Duration::from_secs(120))
        .await;

    // As a dead instance's would: a transaction left open on the chained
    // partition, with a record the coordinator will abort.
    let foreign = common::open_foreign_transaction(
        &config.topics.chained,
        0,
        b"ghost",
        b"not a chained record",
    );
    let opened = Instant::now();

    // Committed after the open transaction: beyond the LSO for a while.
    fx.produce(&fx.spec(100, 3, 0)).await;
    fx.wait_caught_up(&[&running], Duration::from_secs(120))
        .await;
    running.stop();
    let (trail, report) = tokio::task::block_in_place(|| fx.verify());
    println!(
        "verify finished {:.1} s after the foreign transaction opened",
        opened.elapsed().as_secs_f64()
    );
    common::assert_verified(&report);
    assert_eq!(trail.chained.len(), 200);
    drop(foreign);
}
