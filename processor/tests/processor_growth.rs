//! A tenant on a second partition (DESIGN.md §3): grow the input topic while
//! records flow; output topics grow with it, a tenant whose records now land
//! on another partition gets a separate chain there, and every chain is
//! intact.

mod common;

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewPartitions};
use rdkafka::client::DefaultClientContext;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn growing_the_input_topic_keeps_every_chain_intact() {
    let fx = common::Fixture::new(2, false).await;
    let running = fx.start("growth-1");
    fx.produce(&fx.spec(600, 12, 0)).await;
    fx.wait_caught_up(&[&running], Duration::from_secs(120))
        .await;

    let admin: AdminClient<DefaultClientContext> = common::client_config().create().expect("admin");
    let input = fx.config("x").topics.input;
    let results = admin
        .create_partitions(
            &[NewPartitions::new(&input, 4)],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(30))),
        )
        .await
        .expect("create partitions");
    for r in results {
        r.expect("grown");
    }

    fx.produce(&fx.spec(600, 12, 0)).await;
    fx.wait_caught_up(&[&running], Duration::from_secs(120))
        .await;
    let summary = running.stop();

    let (_, report) = tokio::task::block_in_place(|| fx.verify());
    common::assert_verified(&report);
    assert_eq!(report.chains.values().sum::<u64>(), 1200);
    let partitions: std::collections::BTreeSet<u32> =
        report.chains.keys().map(|(_, _, p)| *p).collect();
    assert_eq!(
        partitions.len(),
        4,
        "new partitions were not processed: {:?}",
        report.chains
    );
    let mut per_tenant: std::collections::BTreeMap<&str, usize> = Default::default();
    for (tenant, _, _) in report.chains.keys() {
        *per_tenant.entry(tenant.as_str()).or_default() += 1;
    }
    let split = per_tenant.values().filter(|n| **n > 1).count();
    assert!(split > 0, "no tenant moved partitions: {per_tenant:?}");
    assert_eq!(summary.stats.tenants_on_several_partitions as usize, split);
}

/// With two instances, one grows the output topics on its restore and the
/// other finds them grown: both must produce to the new partitions at once,
/// not after librdkafka's 5-minute metadata refresh.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn growing_the_input_under_two_instances_stalls_neither() {
    let fx = common::Fixture::new(2, false).await;
    let a = fx.start("growth-a");
    let b = fx.start("growth-b");
    fx.produce(&fx.spec(400, 12, 0)).await;
    fx.wait_caught_up(&[&a, &b], Duration::from_secs(120)).await;

    let admin: AdminClient<DefaultClientContext> = common::client_config().create().expect("admin");
    let input = fx.config("x").topics.input;
    let results = admin
        .create_partitions(
            &[NewPartitions::new(&input, 6)],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(30))),
        )
        .await
        .expect("create partitions");
    for r in results {
        r.expect("grown");
    }
    fx.produce(&fx.spec(600, 12, 0)).await;
    // Well inside librdkafka's 5-minute metadata refresh.
    fx.wait_caught_up(&[&a, &b], Duration::from_secs(120)).await;
    a.stop();
    b.stop();
    let (_, report) = tokio::task::block_in_place(|| fx.verify());
    common::assert_verified(&report);
    assert_eq!(report.chains.values().sum::<u64>(), 1000);
    let grown: u64 = report
        .chains
        .iter()
        .filter(|((_, _, p), _)| *p >= 2)
        .map(|(_, n)| n)
        .sum();
    assert!(
        grown > 0,
        "no record on a new partition: {:?}",
        report.chains
    );
}
