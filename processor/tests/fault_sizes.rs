//! Size limits come from the input (DESIGN.md §3, issue #9 finding 1): with
//! the default `processing.max_record_bytes` (1 MiB), a signed event just
//! under the bound — above librdkafka's default `message.max.bytes` once
//! wrapped in a `ChainedRecord` — is chained, and one just above the bound is
//! quarantined `OVERSIZED` with its value. Neither stalls the partition.

mod common;

use std::time::{Duration, Instant};

use auditchain::config::Config;
use auditchain::produce::Inject;
use auditchain::route::Reason;
use rdkafka::admin::{AdminClient, AdminOptions, AlterConfig, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;

/// `processing.max_record_bytes`'s default.
const DEFAULT_MAX_RECORD_BYTES: usize = 1 << 20;

/// The input topic must hold a record whose value is above the bound; the
/// broker's default `max.message.bytes` (1048588) does not.
const INPUT_MAX_MESSAGE_BYTES: &str = "2097152";

/// The fixture's config pins `max_record_bytes` low for the other tests;
/// this one runs the processor (and sizes the `oversized` injection) with
/// the default, as a deployment without that line would.
const DEFAULT_BOUND: (&str, &str) = ("AUDITCHAIN__PROCESSING__MAX_RECORD_BYTES", "1048576");

/// Sets the input topic's `max.message.bytes` and waits until the broker
/// describes it so (an alteration is applied asynchronously).
async fn raise_input_limit(topic: &str) {
    let admin: AdminClient<DefaultClientContext> =
        common::client_config().create().expect("admin client");
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let alter = AlterConfig::new(ResourceSpecifier::Topic(topic))
        .set("max.message.bytes", INPUT_MAX_MESSAGE_BYTES);
    for r in admin
        .alter_configs([&alter], &opts)
        .await
        .expect("alter_configs request")
    {
        r.unwrap_or_else(|(name, code)| panic!("altering {name:?}: {code}"));
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let described = admin
            .describe_configs([&ResourceSpecifier::Topic(topic)], &opts)
            .await
            .expect("describe_configs request");
        let value = described
            .into_iter()
            .next()
            .and_then(|r| r.ok())
            .and_then(|r| r.get("max.message.bytes").and_then(|e| e.value.clone()));
        if value.as_deref() == Some(INPUT_MAX_MESSAGE_BYTES) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{topic}: max.message.bytes still {value:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The effective value of `name` in `topic`'s configuration.
async fn topic_config(topic: &str, name: &str) -> Option<String> {
    let admin: AdminClient<DefaultClientContext> =
        common::client_config().create().expect("admin client");
    let opts = AdminOptions::new().request_timeout(Some(Duration::from_secs(30)));
    admin
        .describe_configs([&ResourceSpecifier::Topic(topic)], &opts)
        .await
        .expect("describe_configs request")
        .into_iter()
        .next()
        .and_then(|r| r.ok())
        .and_then(|r| r.get(name).and_then(|e| e.value.clone()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn near_limit_event_is_chained_and_an_oversized_one_quarantined() {
    let fx = common::Fixture::new(1, true).await;
    let input = fx.config("x").topics.input;
    raise_input_limit(&input).await;
    let producer = Config::from_toml_with_env(
        &fx.config_text("producer"),
        [(DEFAULT_BOUND.0.to_string(), DEFAULT_BOUND.1.to_string())],
    )
    .expect("producer config");
    let produce = |spec: auditchain::produce::Spec| {
        let producer = producer.clone();
        async move {
            auditchain::produce::produce(&producer, &spec)
                .await
                .expect("produce")
        }
    };

    // Good events, then one whose value is just under the bound (its payload
    // leaves room for the event's other fields), then good events with one
    // value just above the bound among them. One partition: all in order.
    let before = produce(fx.spec(20, 3, 0)).await;
    let mut near = fx.spec(1, 1, 0);
    near.payload_bytes = DEFAULT_MAX_RECORD_BYTES - 1024;
    let near = produce(near).await;
    let mut after = fx.spec(20, 3, 0);
    after.inject = vec![(Inject::Oversized, 1)];
    let after = produce(after).await;

    let mut child = fx.spawn_with("sizes-1", &[DEFAULT_BOUND]);
    fx.wait_for(
        "the group catches up past the near-limit and the oversized event",
        || child.assert_alive(),
        |lag| lag.values().all(|(high, done)| done >= high),
        Duration::from_secs(120),
    )
    .await;
    child.stop();

    // The outputs were created sized from the input: 2 × 2097152 + 4096.
    let topics = fx.config("x").topics;
    for topic in [&topics.chained, &topics.quarantine] {
        assert_eq!(
            topic_config(topic, "max.message.bytes").await.as_deref(),
            Some("4198400"),
            "{topic}"
        );
    }
    assert_eq!(
        topic_config(&topics.state, "segment.ms").await.as_deref(),
        Some("600000")
    );

    let (trail, verdict) = tokio::task::block_in_place(|| fx.verify());
    common::assert_verified(&verdict);

    let near_offset = near.records[0].offset as u64;
    let chained = trail
        .chained
        .iter()
        .find(|c| c.source_offset == near_offset)
        .expect("the near-limit event is chained");
    assert!(
        chained.event.len() > 1_000_000 && chained.event.len() <= DEFAULT_MAX_RECORD_BYTES,
        "the near-limit event's value is {} bytes",
        chained.event.len()
    );
    let oversized = after
        .records
        .iter()
        .find(|r| r.expected == Some(Reason::Oversized))
        .expect("an oversized record was produced");
    assert_eq!(trail.quarantined.len(), 1, "{:?}", trail.quarantined);
    let q = &trail.quarantined[0];
    assert_eq!(q.reason, Reason::Oversized);
    assert_eq!(q.source_offset, oversized.offset as u64);
    assert_eq!(
        q.raw_value.as_ref().map(Vec::len),
        Some(DEFAULT_MAX_RECORD_BYTES + 1),
        "the oversized value is kept whole"
    );
    let good = before.records.len() + near.records.len() + after.records.len() - 1;
    assert_eq!(trail.chained.len(), good);
}

/// An existing output topic too small for the derived limit fails start-up
/// naming the topic and the setting.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_undersized_output_topic_fails_start_up_naming_it() {
    let fx = common::Fixture::new(1, false).await;
    let config = fx.config("x");
    // Kept for good, as a trail topic must be: only its size is wrong.
    common::create_topic(
        &config.topics.quarantine,
        1,
        &auditchain::retention::TRAIL_TOPIC_CONFIG,
    )
    .await;
    let err = auditchain::kafka::ensure_topics(&config)
        .await
        .expect_err("the broker default (1048588) is below 2 × 1048588 + 4096")
        .to_string();
    assert!(
        err.contains(&config.topics.quarantine)
            && err.contains("max.message.bytes")
            && err.contains("2101272"),
        "{err}"
    );
}
