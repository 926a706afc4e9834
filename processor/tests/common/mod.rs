//! Helpers shared by the integration tests: where the broker and registry
//! are, unique names so tests never share state, and topic administration.
//!
//! The local stack (`scripts/stack up`) is the default; point the tests
//! elsewhere with `KAFKA_BOOTSTRAP_SERVERS` and `SCHEMA_REGISTRY_URL`.

#![allow(dead_code)]

use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::TopicPartitionList;

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
    let admin: AdminClient<DefaultClientContext> = client_config().create().expect("admin client");
    let mut new_topic = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
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
}

/// Reads every partition of `topic` from the beginning until librdkafka
/// reports the end of each (for `read_committed`, the last stable offset).
/// Panics if that takes longer than `limit`, which only a hung broker does.
pub fn read_to_end(
    topic: &str,
    partitions: i32,
    isolation: &str,
    limit: Duration,
) -> Vec<OwnedMessage> {
    let consumer: BaseConsumer = client_config()
        .set("group.id", random_group())
        .set("isolation.level", isolation)
        .set("enable.partition.eof", "true")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, rdkafka::Offset::Beginning)
            .expect("assignment");
    }
    consumer.assign(&tpl).expect("assign");
    let deadline = Instant::now() + limit;
    let mut at_end = std::collections::HashSet::new();
    let mut out = Vec::new();
    while at_end.len() < partitions as usize {
        assert!(
            Instant::now() < deadline,
            "reading {topic} did not reach the end in {limit:?}"
        );
        match consumer.poll(Duration::from_millis(200)) {
            None => {}
            Some(Ok(m)) => {
                at_end.remove(&m.partition());
                out.push(m.detach());
            }
            Some(Err(KafkaError::PartitionEOF(p))) => {
                at_end.insert(p);
            }
            Some(Err(e)) => panic!("reading {topic}: {e}"),
        }
    }
    out
}
