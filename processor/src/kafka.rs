//! Kafka client configuration and topic administration.
//!
//! Every client is built from the same base so TLS/SASL settings given once
//! in `[librdkafka]` reach all of them; role-specific properties that
//! exactly-once depends on are set after the base and cannot be overridden
//! (`Config::validate` refuses them).

use std::time::Duration;

use rdkafka::admin::{
    AdminClient, AdminOptions, NewPartitions, NewTopic, ResourceSpecifier, TopicReplication,
};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::ClientContext;

use crate::config::Config;
use crate::error::{Error, Result};

/// A client context for readers that consume to the end of a partition:
/// reaching the end (`PartitionEOF`) is how they know they are done, not an
/// error worth a log line. Other errors are logged as warnings.
#[derive(Debug, Clone, Copy, Default)]
pub struct QuietContext;

impl ClientContext for QuietContext {
    fn error(&self, error: KafkaError, reason: &str) {
        let at_end = matches!(
            error,
            KafkaError::PartitionEOF(_) | KafkaError::Global(RDKafkaErrorCode::PartitionEOF)
        );
        if !at_end {
            tracing::warn!(error = %error, reason, "librdkafka error");
        }
    }
}

impl ConsumerContext for QuietContext {}

/// How long metadata and admin calls may take before the broker is reported
/// unreachable.
pub const ADMIN_TIMEOUT: Duration = Duration::from_secs(30);

/// How long start-up waits for a just-created input topic to appear.
const INPUT_TOPIC_GRACE: Duration = Duration::from_secs(15);

/// The base client configuration: bootstrap servers, then the raw
/// `[librdkafka]` properties.
pub fn base_client_config(config: &Config, client_id: &str) -> ClientConfig {
    let mut cc = ClientConfig::new();
    cc.set("bootstrap.servers", &config.kafka.bootstrap_servers)
        .set("client.id", client_id);
    for (k, v) in &config.librdkafka {
        cc.set(k, v);
    }
    cc
}

/// An admin client.
pub fn admin_client(config: &Config) -> Result<AdminClient<DefaultClientContext>> {
    base_client_config(
        config,
        &format!("auditchain-admin-{}", config.kafka.instance_id),
    )
    .create()
    .map_err(|e| Error::kafka("creating the Kafka admin client", e))
}

/// Partition count of `topic`, or `None` if it does not exist. Fails when the
/// broker cannot be reached, naming the bootstrap servers.
pub fn partition_count<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topic: &str,
    bootstrap: &str,
) -> Result<Option<usize>> {
    let md = consumer
        .fetch_metadata(Some(topic), ADMIN_TIMEOUT)
        .map_err(|e| Error::kafka(format!("reading metadata of `{topic}` from {bootstrap}"), e))?;
    let Some(t) = md.topics().iter().find(|t| t.name() == topic) else {
        return Ok(None);
    };
    match t.error() {
        None => Ok(Some(t.partitions().len())),
        Some(code) => {
            let code = RDKafkaErrorCode::from(code);
            if code == RDKafkaErrorCode::UnknownTopicOrPartition {
                Ok(None)
            } else {
                Err(Error::Topic {
                    topic: topic.into(),
                    message: format!("metadata error: {code}"),
                })
            }
        }
    }
}

/// Creates `topic` with `partitions` partitions (replication per config)
/// unless it exists; true if it was created.
pub async fn create_topic_if_missing(
    config: &Config,
    topic: &str,
    partitions: i32,
) -> Result<bool> {
    let admin = admin_client(config)?;
    let replication = TopicReplication::Fixed(config.topics.replication_factor);
    let opts = AdminOptions::new().operation_timeout(Some(ADMIN_TIMEOUT));
    let results = admin
        .create_topics(&[NewTopic::new(topic, partitions, replication)], &opts)
        .await
        .map_err(|e| {
            Error::kafka(
                format!("creating `{topic}` on {}", config.kafka.bootstrap_servers),
                e,
            )
        })?;
    match results.into_iter().next() {
        Some(Ok(_)) => Ok(true),
        Some(Err((_, RDKafkaErrorCode::TopicAlreadyExists))) | None => Ok(false),
        Some(Err((name, code))) => Err(Error::Topic {
            topic: name,
            message: format!("could not be created: {code}"),
        }),
    }
}

/// Grows output topics with fewer than `needed` partitions (the input topic
/// grew: output partition i receives input partition i).
pub async fn ensure_output_partitions(config: &Config, needed: usize) -> Result<Vec<String>> {
    let probe: BaseConsumer<QuietContext> = base_client_config(config, "auditchain-metadata")
        .create_with_context(QuietContext)
        .map_err(|e| Error::kafka("creating a metadata client", e))?;
    let mut grow = Vec::new();
    for (topic, _) in output_topics(config) {
        match partition_count(&probe, topic, &config.kafka.bootstrap_servers)? {
            Some(n) if n >= needed => {}
            Some(_) => grow.push(NewPartitions::new(topic, needed)),
            None => {
                return Err(Error::Topic {
                    topic: topic.into(),
                    message: "disappeared while the processor was running".into(),
                })
            }
        }
    }
    if grow.is_empty() {
        return Ok(Vec::new());
    }
    let admin = admin_client(config)?;
    let opts = AdminOptions::new().operation_timeout(Some(ADMIN_TIMEOUT));
    let results = admin
        .create_partitions(&grow, &opts)
        .await
        .map_err(|e| Error::kafka("adding partitions to output topics", e))?;
    let mut grown = Vec::new();
    for r in results {
        match r {
            Ok(name) => grown.push(name),
            // Another instance grew it first.
            Err((_, RDKafkaErrorCode::InvalidPartitions)) => {}
            Err((name, code)) => {
                return Err(Error::Topic {
                    topic: name,
                    message: format!("could not add partitions: {code}"),
                })
            }
        }
    }
    Ok(grown)
}

/// Consumer lag of the group on one input partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionLag {
    /// Partition.
    pub partition: i32,
    /// High watermark (next offset to be written).
    pub high: i64,
    /// The group's committed offset (next offset to process), 0 if none.
    pub committed: i64,
}

impl PartitionLag {
    /// Records not yet processed. Counts transaction markers of a
    /// transactional upstream too, so it can read 1 per open or recently
    /// finished upstream transaction when fully caught up.
    pub fn records(&self) -> i64 {
        (self.high - self.committed).max(0)
    }
}

/// The group's lag on every partition of the input topic. Blocking.
pub fn group_lag(config: &Config) -> Result<Vec<PartitionLag>> {
    let consumer: BaseConsumer<QuietContext> = base_client_config(config, "auditchain-status")
        .set("group.id", &config.kafka.group_id)
        .set("enable.auto.commit", "false")
        .create_with_context(QuietContext)
        .map_err(|e| Error::kafka("creating a status client", e))?;
    let topic = &config.topics.input;
    let partitions = partition_count(&consumer, topic, &config.kafka.bootstrap_servers)?
        .ok_or_else(|| Error::Topic {
            topic: topic.clone(),
            message: "does not exist".into(),
        })?;
    let mut tpl = rdkafka::TopicPartitionList::new();
    for p in 0..partitions as i32 {
        tpl.add_partition(topic, p);
    }
    let committed = consumer
        .committed_offsets(tpl, ADMIN_TIMEOUT)
        .map_err(|e| {
            Error::kafka(
                format!(
                    "reading the committed offsets of group `{}`",
                    config.kafka.group_id
                ),
                e,
            )
        })?;
    let mut out = Vec::with_capacity(partitions);
    for p in 0..partitions as i32 {
        let (_, high) = consumer
            .fetch_watermarks(topic, p, ADMIN_TIMEOUT)
            .map_err(|e| {
                Error::kafka(
                    format!("reading the watermarks of `{topic}` partition {p}"),
                    e,
                )
            })?;
        let committed = match committed.find_partition(topic, p).map(|e| e.offset()) {
            Some(rdkafka::Offset::Offset(o)) => o,
            _ => 0,
        };
        out.push(PartitionLag {
            partition: p,
            high,
            committed,
        });
    }
    Ok(out)
}

/// The output topics and their required layout.
fn output_topics(config: &Config) -> [(&str, bool); 4] {
    let t = &config.topics;
    [
        (t.chained.as_str(), false),
        (t.anchors.as_str(), false),
        (t.quarantine.as_str(), false),
        (t.state.as_str(), true),
    ]
}

/// What `ensure_topics` found or did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicReport {
    /// Partitions of the input topic.
    pub input_partitions: usize,
    /// Output topics that were created now.
    pub created: Vec<String>,
}

/// Checks the input topic exists; creates missing output topics with the
/// input's partition count (the state topic compacted); checks existing ones
/// have at least as many partitions as the input and that the state topic is
/// compacted. Every mismatch is a clear error naming the topic.
pub async fn ensure_topics(config: &Config) -> Result<TopicReport> {
    let admin = admin_client(config)?;
    let probe: BaseConsumer = base_client_config(config, "auditchain-metadata")
        .create()
        .map_err(|e| Error::kafka("creating a metadata client", e))?;
    let bootstrap = &config.kafka.bootstrap_servers;
    let input = &config.topics.input;
    // A topic created moments ago may not be in every broker's metadata yet
    // (KRaft propagates it asynchronously): give it a few seconds before
    // calling it missing.
    let deadline = std::time::Instant::now() + INPUT_TOPIC_GRACE;
    let input_partitions = loop {
        match partition_count(&probe, input, bootstrap) {
            Ok(Some(n)) => break n,
            Ok(None) | Err(Error::Topic { .. }) if std::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Ok(None) => {
                return Err(Error::Topic {
                    topic: input.clone(),
                    message: "the input topic does not exist; create it (its partition count is the ceiling on instances) before starting the processor".into(),
                })
            }
            Err(e) => return Err(e),
        }
    };

    let mut missing = Vec::new();
    for (topic, compacted) in output_topics(config) {
        match partition_count(&probe, topic, bootstrap)? {
            None => missing.push((topic, compacted)),
            Some(n) if n < input_partitions => {
                return Err(Error::Topic {
                    topic: topic.into(),
                    message: format!(
                        "has {n} partitions but the input topic `{input}` has {input_partitions}; output partition i receives input partition i, so add partitions to `{topic}` (kafka-topics --alter --partitions {input_partitions})"
                    ),
                })
            }
            Some(_) => {}
        }
    }
    if !missing.is_empty() && !config.topics.create_missing {
        let names: Vec<&str> = missing.iter().map(|(t, _)| *t).collect();
        return Err(Error::Topic {
            topic: names.join(", "),
            message: "missing and topics.create_missing is false".into(),
        });
    }

    let new_topics: Vec<NewTopic> = missing
        .iter()
        .map(|(topic, compacted)| {
            let partitions = i32::try_from(input_partitions).unwrap_or(i32::MAX);
            let replication = TopicReplication::Fixed(config.topics.replication_factor);
            let t = NewTopic::new(topic, partitions, replication);
            if *compacted {
                t.set("cleanup.policy", "compact")
            } else {
                t
            }
        })
        .collect();
    let mut created = Vec::new();
    if !new_topics.is_empty() {
        let opts = AdminOptions::new().operation_timeout(Some(ADMIN_TIMEOUT));
        let results = admin
            .create_topics(&new_topics, &opts)
            .await
            .map_err(|e| Error::kafka("creating output topics", e))?;
        for result in results {
            match result {
                Ok(name) => created.push(name),
                // Another instance starting at the same moment won the race.
                Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((name, code)) => {
                    return Err(Error::Topic {
                        topic: name,
                        message: format!("could not be created: {code}"),
                    })
                }
            }
        }
    }
    check_compacted(&admin, &config.topics.state).await?;
    Ok(TopicReport {
        input_partitions,
        created,
    })
}

async fn check_compacted(admin: &AdminClient<DefaultClientContext>, topic: &str) -> Result<()> {
    // Right after a topic is created (by us or a sibling instance) the broker
    // may describe it without its configuration yet: an unknown policy is
    // asked again for a few seconds, a known wrong one fails at once.
    let deadline = std::time::Instant::now() + INPUT_TOPIC_GRACE;
    loop {
        match cleanup_policy(admin, topic).await? {
            Some(policy) if policy.split(',').any(|p| p.trim() == "compact") => return Ok(()),
            Some(policy) => {
                return Err(Error::Topic {
                    topic: topic.into(),
                    message: format!(
                        "is the chain-state topic and must be compacted (cleanup.policy=compact), but its cleanup.policy is `{policy}`"
                    ),
                })
            }
            None if std::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            None => {
                return Err(Error::Topic {
                    topic: topic.into(),
                    message: "the broker does not report its cleanup.policy; it must be compact".into(),
                })
            }
        }
    }
}

async fn cleanup_policy(
    admin: &AdminClient<DefaultClientContext>,
    topic: &str,
) -> Result<Option<String>> {
    let opts = AdminOptions::new().request_timeout(Some(ADMIN_TIMEOUT));
    let results = admin
        .describe_configs([&ResourceSpecifier::Topic(topic)], &opts)
        .await
        .map_err(|e| Error::kafka(format!("describing the configuration of `{topic}`"), e))?;
    match results.into_iter().next() {
        Some(Ok(resource)) => Ok(resource
            .entries
            .into_iter()
            .find(|e| e.name == "cleanup.policy")
            .and_then(|e| e.value)
            .filter(|v| !v.is_empty())),
        Some(Err(RDKafkaErrorCode::UnknownTopicOrPartition)) | None => Ok(None),
        Some(Err(code)) => Err(Error::Topic {
            topic: topic.into(),
            message: format!("could not describe its configuration: {code}"),
        }),
    }
}
