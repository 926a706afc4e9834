//! An output topic's `max.message.bytes` lowered under the processor's feet
//! (an operator's mistake): every transaction that writes a larger record
//! fails the same way. The processor must not spin in a hot abort loop nor
//! lose anything: it backs off, the partition shows as stalled, and once
//! the setting is put right it carries on with nothing lost or duplicated.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use auditchain::metrics::{Metrics, ResultLabel};
use auditchain::processor::RunOptions;
use auditchain::telemetry::Traces;
use rdkafka::admin::{AdminClient, AdminOptions, AlterConfig, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;

async fn set_max_message_bytes(topic: &str, value: &str) {
    let admin: AdminClient<DefaultClientContext> =
        common::client_config().create().expect("admin client");
    let alter = AlterConfig::new(ResourceSpecifier::Topic(topic)).set("max.message.bytes", value);
    let results = admin
        .alter_configs(&[alter], &AdminOptions::new())
        .await
        .expect("alter_configs request");
    for r in results {
        r.unwrap_or_else(|(res, code)| panic!("altering {res:?}: {code}"));
    }
}

fn aborted(metrics: &Metrics) -> u64 {
    metrics
        .transactions
        .get_or_create(&ResultLabel { result: "aborted" })
        .get()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lowered_output_limit_stalls_visibly_and_recovers_without_loss() {
    let fx = common::Fixture::new(1, false).await;
    let metrics = Metrics::new();
    let running = fx.start_with(
        "limit-1",
        RunOptions {
            traces: Traces::off(),
            faults: None,
            metrics: Some(Arc::clone(&metrics)),
        },
    );
    fx.produce(&fx.spec(100, 4, 0)).await;
    fx.wait_caught_up(&[&running], Duration::from_secs(120))
        .await;

    let chained_topic = fx.config("probe").topics.chained;
    set_max_message_bytes(&chained_topic, "600").await;
    let mut spec = fx.spec(100, 4, 0);
    spec.payload_bytes = 2_000;
    fx.produce(&spec).await;

    // It fails, aborts and retries with backoff; nothing commits.
    let deadline = Instant::now() + Duration::from_secs(120);
    while aborted(&metrics) < 3 {
        running.assert_alive();
        assert!(
            Instant::now() < deadline,
            "no repeated aborts: {}",
            aborted(&metrics)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let lag = tokio::task::block_in_place(|| fx.lag());
    assert!(
        lag[&0].1 < lag[&0].0,
        "the records must not be committed: {lag:?}"
    );

    set_max_message_bytes(&chained_topic, "1048588").await;
    fx.wait_caught_up(&[&running], Duration::from_secs(180))
        .await;
    let summary = running.stop();
    assert!(summary.stats.aborts >= 3);
    assert_eq!(summary.stats.chained, 200);
    let (trail, report) = tokio::task::block_in_place(|| fx.verify());
    common::assert_verified(&report);
    assert_eq!(trail.chained.len(), 200);
}
