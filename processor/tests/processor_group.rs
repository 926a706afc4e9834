//! Two instances in one group split the partitions and together produce
//! correct chains.

mod common;

use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_split_the_partitions() {
    let fx = common::Fixture::new(4, true).await;
    let a = fx.start("group-a");
    let b = fx.start("group-b");

    // Wait for both to be members of the group before any record exists, so
    // each is assigned partitions.
    let probe: BaseConsumer = common::client_config().create().expect("probe");
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let groups = tokio::task::block_in_place(|| {
            probe.fetch_group_list(Some(&fx.group), Duration::from_secs(10))
        })
        .expect("group list");
        let stable_with_two = groups
            .groups()
            .iter()
            .any(|g| g.state() == "Stable" && g.members().len() == 2);
        if stable_with_two {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the two instances never formed a stable group: {:?}",
            groups
                .groups()
                .iter()
                .map(|g| (
                    g.name().to_string(),
                    g.state().to_string(),
                    g.members().len()
                ))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let produced = fx.produce(&fx.spec(1200, 16, 1)).await;
    fx.wait_caught_up(&[&a, &b], Duration::from_secs(120)).await;
    let sa = a.stop();
    let sb = b.stop();

    let (trail, report) = tokio::task::block_in_place(|| fx.verify());
    common::assert_verified(&report);
    assert_eq!(
        trail.chained.len() + trail.quarantined.len(),
        produced.records.len()
    );
    assert!(sa.stats.chained > 0, "instance a chained nothing");
    assert!(sb.stats.chained > 0, "instance b chained nothing");
    assert_eq!(sa.stats.chained + sb.stats.chained, 1200);
    let writers: std::collections::BTreeSet<&str> = trail
        .anchors
        .iter()
        .map(|a| a.processor_id.as_str())
        .collect();
    assert_eq!(writers.len(), 2, "{writers:?}");
}
