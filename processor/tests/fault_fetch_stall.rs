//! A consumer that owns its partitions but stopped fetching them: the
//! silent stall librdkafka can leave after a coordinator error during an
//! assignment (confluentinc/librdkafka#5586), which no log line reports
//! and which only a new consumer ends. The processor must notice it
//! (`processing.fetch_stall_timeout_ms`), commit what is open, start a new
//! session, and catch up, with nothing lost or chained twice.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use auditchain::faults::Faults;
use auditchain::metrics::Metrics;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stopped_fetcher_is_replaced_and_nothing_is_lost() {
    let fx = common::Fixture::new(2, false).await;
    fx.produce(&fx.spec(300, 6, 0)).await;
    let faults = Arc::new(Faults::new());
    let metrics = Metrics::new();
    // The test is about this setting: the lowest it allows, so the test
    // does not wait out the default minute.
    let mut config = fx.config("stall-1");
    config.processing.fetch_stall_timeout_ms = config.processing.commit_interval_ms + 10_000;
    let running = fx.start_config(config, common::fault_options(&faults, &metrics));
    fx.wait_caught_up(&[&running], Duration::from_secs(120))
        .await;

    faults.stop_fetching();
    let deadline = Instant::now() + Duration::from_secs(30);
    while faults.fetcher_stop_pending() {
        running.assert_alive();
        assert!(Instant::now() < deadline, "the loop never stopped fetching");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Records the stopped consumer will never see.
    fx.produce(&fx.spec(200, 6, 0)).await;
    fx.wait_caught_up(&[&running], Duration::from_secs(180))
        .await;
    let summary = running.stop();
    assert_eq!(
        metrics.fetch_stalls.get(),
        1,
        "the stall was not noticed once"
    );
    assert_eq!(summary.sessions, 2, "a new session did not take over");

    let (trail, report) = tokio::task::block_in_place(|| fx.verify());
    common::assert_verified(&report);
    assert_eq!(trail.chained.len(), 500);
}
