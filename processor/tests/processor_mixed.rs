//! A mixed stream of valid and every kind of invalid record gives exactly the
//! expected chained and quarantined sets, by source offset, with the right
//! reasons; chains link; anchors recompute and their signatures verify.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use auditchain::route::Reason;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mixed_stream_is_chained_and_quarantined_exactly() {
    let fx = common::Fixture::new(3, true).await;
    let running = fx.start("mixed-1");
    let report = fx.produce(&fx.spec(600, 7, 2)).await;
    assert_eq!(report.records.len(), 620);
    fx.wait_caught_up(&[&running], Duration::from_secs(120))
        .await;
    let summary = running.stop();

    let (trail, verdict) = tokio::task::block_in_place(|| fx.verify());
    common::assert_verified(&verdict);

    let topic = fx.config("x").topics.input;
    let expected_chained: BTreeSet<(u32, u64)> = report
        .records
        .iter()
        .filter(|r| r.expected.is_none())
        .map(|r| (r.partition as u32, r.offset as u64))
        .collect();
    let expected_quarantine: BTreeMap<(u32, u64), Reason> = report
        .records
        .iter()
        .filter_map(|r| {
            r.expected
                .map(|e| ((r.partition as u32, r.offset as u64), e))
        })
        .collect();
    let chained: BTreeSet<(u32, u64)> = trail
        .chained
        .iter()
        .map(|c| {
            assert_eq!(c.source_topic, topic);
            (c.source_partition, c.source_offset)
        })
        .collect();
    let quarantined: BTreeMap<(u32, u64), Reason> = trail
        .quarantined
        .iter()
        .map(|q| ((q.source_partition, q.source_offset), q.reason))
        .collect();
    assert_eq!(chained, expected_chained);
    assert_eq!(quarantined, expected_quarantine);
    // Every reason the producer can inject is present.
    let reasons: BTreeSet<Reason> = quarantined.values().copied().collect();
    assert_eq!(reasons.len(), 9, "{reasons:?}");
    // Quarantine keeps the raw record: the missing-signature ones have no
    // signature header, the others keep theirs.
    for q in &trail.quarantined {
        assert!(q.raw_value.is_some());
        let has_sig = q.headers.iter().any(|(k, _)| k == "auditchain-sig");
        assert_eq!(has_sig, q.reason != Reason::MissingSignature, "{q:?}");
        assert_eq!(q.raw_key.is_none(), q.reason == Reason::MissingKey, "{q:?}");
    }
    // One chain per tenant: each tenant key hashes to one partition.
    assert_eq!(verdict.chains.len(), 7, "{:?}", verdict.chains);
    assert_eq!(verdict.chains.values().sum::<u64>(), 600);
    assert_eq!(summary.stats.chained, 600);
    assert_eq!(summary.stats.quarantined.values().sum::<u64>(), 20);
    assert!(summary.stats.anchors >= 3);
}
