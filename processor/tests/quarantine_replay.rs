//! Quarantine replay after a key fix: records signed with a key the key set
//! does not know are quarantined; the key is added (the key set reloads
//! without a restart); a dry run counts them, the replay re-publishes them
//! with key, value and headers intact, and they chain. The trail verifies.

mod common;

use std::time::Duration;

use auditchain::replay::{replay, Selection};
use auditchain::route::Reason;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replay_after_the_missing_key_is_added() {
    let fx = common::Fixture::new(2, false).await;
    let (mut child, addr) = fx.spawn_http("replay-1").await;
    let mut spec = fx.spec(100, 3, 0);
    spec.inject = vec![(auditchain::produce::Inject::UnknownKey, 4)];
    fx.produce(&spec).await;
    fx.wait_for(
        "first pass",
        || child.assert_alive(),
        |l| l.values().all(|(h, d)| d >= h),
        Duration::from_secs(120),
    )
    .await;

    let config = fx.config("operator");
    let selection = Selection {
        reasons: vec![Reason::UnknownKey],
        ..Default::default()
    };
    let dry = tokio::task::block_in_place(|| replay(&config, &selection, true)).expect("dry run");
    assert_eq!(dry.by_reason.get("UNKNOWN_KEY"), Some(&4));
    assert_eq!(dry.published, 0);

    // The fix: the producer's new key id joins the key set.
    let keyset = fx.path("producers.toml");
    let good = std::fs::read_to_string(fx.path("good.pub")).expect("pub");
    let mut text = std::fs::read_to_string(&keyset).expect("key set");
    text.push_str(&format!(
        "\n[[keys]]\nkey_id = \"unknown-{}\"\npublic_key = \"{}\"\n",
        spec.run_id,
        good.trim()
    ));
    std::fs::write(&keyset, text).expect("write key set");
    // Wait until the processor has picked it up: its reload counter moves.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        child.assert_alive();
        let (_, text) = common::http(&addr, "GET", "/metrics");
        if common::metric(&text, "auditchain_keyset_reloads_total", "result=\"ok\"") >= 1.0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the key set was not reloaded"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let done = tokio::task::block_in_place(|| replay(&config, &selection, false)).expect("replay");
    assert_eq!(done.published, 4);
    // The replay is transactional, so each input partition now ends with a
    // commit marker that is not a record: wait for the records themselves,
    // then for the group's lag to reach 0 all the same (the processor
    // commits its position past the markers).
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        child.assert_alive();
        let (_, text) = common::http(&addr, "GET", "/metrics");
        if common::metric(&text, "auditchain_records_total", "outcome=\"chained\"") >= 104.0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the replayed records were not chained"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    fx.wait_all_committed(
        "lag 0 past the replay's commit markers",
        || child.assert_alive(),
        Duration::from_secs(120),
    )
    .await;
    child.stop();

    let (trail, report) = tokio::task::block_in_place(|| fx.verify());
    common::assert_verified(&report);
    assert_eq!(report.input_records, Some(108));
    let unknown = trail
        .quarantined
        .iter()
        .filter(|q| q.reason == Reason::UnknownKey)
        .count();
    assert_eq!(unknown, 4, "only the original four stay quarantined");
    assert_eq!(trail.chained.len(), 104, "the replayed four chained");
}
