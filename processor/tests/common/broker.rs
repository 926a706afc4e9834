//! Where the broker and registry are, unique names so tests never share
//! state, topic administration, reading topics, foreign transactions.

use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::OwnedMessage;

use auditchain::verify::{Isolation, PartitionReader};

/// Broker bootstrap servers.
pub fn bootstrap() -> String {
    std::env::var("KAFKA_BOOTSTRAP_SERVERS").unwrap_or_else(|_| "127.0.0.1:9092".into())
}

/// Schema registry base URL (Confluent-compatible API).
pub fn registry_url() -> String {
    std::env::var("SCHEMA_REGISTRY_URL")
        .unwrap_or_else(|_| "http://127.0.0.1:8081/apis/ccompat/v7".into())
}

/// A name no other test (or earlier run) uses: `<prefix>-<uuid>`.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

/// A random topic name.
pub fn random_topic() -> String {
    unique("test-topic")
}

/// A random consumer group id.
pub fn random_group() -> String {
    unique("test-group")
}

/// A random transactional id.
pub fn random_transactional_id() -> String {
    unique("test-txn")
}

/// A client configuration pointing at the test broker.
pub fn client_config() -> ClientConfig {
    let mut cc = ClientConfig::new();
    cc.set("bootstrap.servers", bootstrap());
    cc
}

/// Creates `topic` with `partitions` partitions and the given topic configs.
pub async fn create_topic(topic: &str, partitions: i32, configs: &[(&str, &str)]) {
    create_topic_with(&client_config(), topic, partitions, configs).await
}

/// [`create_topic`] through a client configured by `cc` (another cluster,
/// or credentials).
pub async fn create_topic_with(
    cc: &ClientConfig,
    topic: &str,
    partitions: i32,
    configs: &[(&str, &str)],
) {
    let admin: AdminClient<DefaultClientContext> = cc.create().expect("admin client");
    // The broker's default replication: 1 on the one-node stack, 3 on three.
    let mut new_topic = NewTopic::new(topic, partitions, TopicReplication::Fixed(-1));
    for (k, v) in configs {
        new_topic = new_topic.set(k, v);
    }
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = admin
        .create_topics(&[new_topic], &opts)
        .await
        .expect("create_topics request");
    for r in results {
        r.unwrap_or_else(|(name, code)| panic!("creating topic {name}: {code}"));
    }
    // The controller has created it; wait until the broker's metadata shows
    // every partition with a leader, so clients see it at once.
    let probe: BaseConsumer = cc.create().expect("metadata client");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ready = tokio::task::block_in_place(|| {
            probe.fetch_metadata(Some(topic), Duration::from_secs(5))
        })
        .map(|md| {
            md.topics().iter().any(|t| {
                t.name() == topic
                    && t.error().is_none()
                    && t.partitions().len() == partitions as usize
                    && t.partitions().iter().all(|p| p.leader() >= 0)
            })
        })
        .unwrap_or(false);
        if ready {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "topic {topic} did not become available"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every record of `topic`'s first `partitions` partitions, from the
/// beginning to the high watermark each has now, with the isolation level
/// given (`read_committed` or `read_uncommitted`): the library's reader.
pub fn read_to_end(topic: &str, partitions: i32, isolation: &str) -> Vec<OwnedMessage> {
    let isolation = match isolation {
        "read_committed" => Isolation::Committed,
        "read_uncommitted" => Isolation::Uncommitted,
        other => panic!("no isolation level `{other}`"),
    };
    let probe: BaseConsumer = client_config().create().expect("consumer");
    let mut out = Vec::new();
    for p in 0..partitions {
        let ends = probe
            .fetch_watermarks(topic, p, Duration::from_secs(30))
            .expect("watermarks");
        let mut reader =
            PartitionReader::with_client(client_config(), isolation, topic, p, ends, None)
                .expect("reader");
        while let Some(m) = reader
            .next_record()
            .unwrap_or_else(|e| panic!("reading {topic}: {e}"))
        {
            out.push(m.detach());
        }
    }
    out
}

/// A transactional producer of no processor's that writes one record to
/// `topic` partition `partition` and leaves its transaction open, as an
/// instance that died mid-transaction would (the coordinator aborts it after
/// its 10 s `transaction.timeout.ms`, the processor's own default). Keep it
/// alive for as long as the transaction should stay open.
pub fn open_foreign_transaction(
    topic: &str,
    partition: i32,
    key: &[u8],
    value: &[u8],
) -> rdkafka::producer::ThreadedProducer<rdkafka::producer::DefaultProducerContext> {
    use rdkafka::producer::{BaseRecord, Producer};
    let foreign: rdkafka::producer::ThreadedProducer<_> = client_config()
        .set("transactional.id", random_transactional_id())
        .set("transaction.timeout.ms", "10000")
        .create()
        .expect("foreign transactional producer");
    let t = Duration::from_secs(30);
    foreign.init_transactions(t).expect("init_transactions");
    foreign.begin_transaction().expect("begin");
    foreign
        .send(
            BaseRecord::to(topic)
                .partition(partition)
                .key(key)
                .payload(value),
        )
        .map_err(|(e, _)| e)
        .expect("send the foreign record");
    foreign.flush(t).expect("flush");
    foreign
}

/// Appends one record to `topic`/`partition` outside any transaction, as
/// anyone with write access to the topic could.
pub async fn produce_plain(topic: &str, partition: i32, key: &[u8], value: &[u8]) {
    let producer: rdkafka::producer::FutureProducer = client_config().create().expect("producer");
    producer
        .send(
            rdkafka::producer::FutureRecord::to(topic)
                .partition(partition)
                .key(key)
                .payload(value),
            rdkafka::util::Timeout::Never,
        )
        .await
        .map_err(|(e, _)| e)
        .expect("produce");
}

/// Waits until the cluster's metadata no longer has `topic` (deleted).
pub async fn wait_topic_gone(topic: &str) {
    let probe: BaseConsumer = client_config().create().expect("metadata client");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let present = tokio::task::block_in_place(|| {
            probe.fetch_metadata(Some(topic), Duration::from_secs(5))
        })
        .map(|md| {
            md.topics()
                .iter()
                .any(|t| t.name() == topic && t.error().is_none())
        })
        .unwrap_or(true);
        if !present {
            return;
        }
        assert!(Instant::now() < deadline, "topic {topic} was not deleted");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
