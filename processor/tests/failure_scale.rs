//! Scale out and in while the stream flows: 1 → 3 → 1 instances. Every
//! instance writes part of the trail; together nothing is lost, duplicated
//! or forked.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn scale_one_to_three_to_one() {
    let fx = common::Fixture::new(6, true).await;
    let stream = fx.stream(80, 100, Duration::from_millis(400));
    let mut a = fx.spawn("scale-a");
    let step = |n: i64| n + 600;

    let target = step(fx.committed_total());
    fx.wait_for(
        "one instance",
        || a.assert_alive(),
        |l| l.values().map(|(_, d)| d).sum::<i64>() >= target,
        Duration::from_secs(120),
    )
    .await;

    let mut b = fx.spawn("scale-b");
    let mut c = fx.spawn("scale-c");
    let target = step(fx.committed_total());
    fx.wait_for(
        "three instances",
        || {
            a.assert_alive();
            b.assert_alive();
            c.assert_alive();
        },
        |l| l.values().map(|(_, d)| d).sum::<i64>() >= target,
        Duration::from_secs(120),
    )
    .await;
    // Make sure b and c took part: wait for each to have written an anchor.
    fx.wait_for(
        "b and c anchored something",
        || {
            a.assert_alive();
            b.assert_alive();
            c.assert_alive();
        },
        |_| {
            let writers = writers(&fx);
            writers.contains("scale-b") && writers.contains("scale-c")
        },
        Duration::from_secs(120),
    )
    .await;
    fx.assert_verifies_live("three instances writing");
    b.stop();
    c.stop();

    let sent = stream.await.expect("producer task");
    fx.wait_for(
        "back to one",
        || a.assert_alive(),
        |l| l.values().all(|(h, d)| d >= h),
        Duration::from_secs(180),
    )
    .await;
    a.stop();

    let (_, report) = tokio::task::block_in_place(|| fx.verify());
    common::assert_verified(&report);
    assert_eq!(report.input_records, Some(sent));
    assert_eq!(
        writers(&fx),
        BTreeSet::from([
            "scale-a".to_string(),
            "scale-b".to_string(),
            "scale-c".to_string()
        ])
    );
}

fn writers(fx: &common::Fixture) -> BTreeSet<String> {
    let config = fx.config("probe");
    let mut out = BTreeSet::new();
    tokio::task::block_in_place(|| {
        auditchain::verify::read_topic(&config, &config.topics.anchors, |_, _, _, v| {
            if let Ok(a) = auditchain::records::AnchorBatch::decode(v.unwrap_or_default()) {
                out.insert(a.processor_id);
            }
        })
    })
    .expect("read anchors");
    out
}
