//! Kafka client configuration and topic administration.
//!
//! Every client is built from the same base so TLS/SASL settings given once
//! in `[librdkafka]` reach all of them; role-specific properties that
//! exactly-once depends on are set after the base and cannot be overridden
//! (`Config::validate` refuses them).

use std::collections::HashMap;
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
use crate::retention::{check_state_topic, check_trail_topic, Retention, TRAIL_TOPIC_CONFIG};

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

/// Why a client cannot connect, as its callbacks reported it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectFailure {
    /// SASL credentials refused (wrong user name, password or mechanism).
    Authentication,
    /// The TLS handshake failed: the broker's certificate is not trusted
    /// (or does not name the host), or the protocols do not match.
    Tls,
}

impl ConnectFailure {
    /// The failure a librdkafka error or log line describes, if any.
    pub fn classify(code: Option<RDKafkaErrorCode>, text: &str) -> Option<ConnectFailure> {
        match code {
            Some(RDKafkaErrorCode::Authentication | RDKafkaErrorCode::SaslAuthenticationFailed) => {
                return Some(ConnectFailure::Authentication)
            }
            Some(RDKafkaErrorCode::SSL) => return Some(ConnectFailure::Tls),
            _ => {}
        }
        if text.contains("SASL authentication error") || text.contains("Authentication failed") {
            Some(ConnectFailure::Authentication)
        } else if text.contains("SSL handshake failed")
            || text.contains("certificate verify failed")
        {
            Some(ConnectFailure::Tls)
        } else {
            None
        }
    }

    fn cause(self) -> &'static str {
        match self {
            ConnectFailure::Authentication => {
                "SASL authentication failed (check sasl.mechanism, sasl.username and sasl.password in [librdkafka])"
            }
            ConnectFailure::Tls => {
                "TLS handshake failed: the broker's certificate could not be verified (check ssl.ca.location in [librdkafka] names the CA that signed it, and that it names this host)"
            }
        }
    }
}

/// A client context that remembers the first authentication or TLS failure
/// its callbacks report (and logs the rest as warnings).
#[derive(Debug, Default)]
pub struct ProbeContext {
    failure: std::sync::Mutex<Option<(ConnectFailure, String)>>,
}

impl ProbeContext {
    fn note(&self, code: Option<RDKafkaErrorCode>, text: &str) {
        if let Some(kind) = ConnectFailure::classify(code, text) {
            if let Ok(mut f) = self.failure.lock() {
                f.get_or_insert_with(|| (kind, text.to_string()));
            }
        }
    }

    /// The first failure seen, with librdkafka's description.
    pub fn failure(&self) -> Option<(ConnectFailure, String)> {
        self.failure.lock().ok().and_then(|f| f.clone())
    }
}

impl ClientContext for ProbeContext {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
        use rdkafka::config::RDKafkaLogLevel as L;
        if matches!(
            level,
            L::Emerg | L::Alert | L::Critical | L::Error | L::Warning
        ) {
            self.note(None, message);
            tracing::warn!(target: "librdkafka", facility = fac, "{message}");
        } else {
            tracing::debug!(target: "librdkafka", facility = fac, "{message}");
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.note(error.rdkafka_error_code(), reason);
        tracing::warn!(error = %error, reason, "librdkafka error");
    }
}

impl ConsumerContext for ProbeContext {}

/// Connects to the cluster the way every client of `config` does and
/// fails fast, naming the cause, when the credentials are refused or the
/// broker's certificate is not trusted — conditions librdkafka itself only
/// retries (a metadata call would just time out). Returns once the broker
/// answers a metadata request; fails after [`ADMIN_TIMEOUT`] naming the
/// bootstrap servers when it never does. Blocking.
pub fn check_connection(config: &Config) -> Result<()> {
    let bootstrap = &config.kafka.bootstrap_servers;
    let probe: BaseConsumer<ProbeContext> = base_client_config(
        config,
        &format!("auditchain-connect-{}", config.kafka.instance_id),
    )
    .create_with_context(ProbeContext::default())
    .map_err(|e| Error::kafka("creating a connection probe", e))?;
    let deadline = std::time::Instant::now() + ADMIN_TIMEOUT;
    loop {
        let attempt = probe.fetch_metadata(Some(&config.topics.input), Duration::from_millis(500));
        if attempt.is_ok() {
            // Answered: nothing was refused, and start-up pays no more.
            return Ok(());
        }
        // Serves the log and error callbacks queued meanwhile (rust-rdkafka
        // routes both through the client's queue; at librdkafka's debug
        // level thousands of log lines can be waiting).
        let _ = probe.poll(Duration::from_millis(250));
        if let Some((kind, detail)) = probe.context().failure() {
            return Err(Error::Connect {
                bootstrap: bootstrap.clone(),
                cause: kind.cause().to_string(),
                detail,
            });
        }
        match attempt {
            Ok(_) => return Ok(()),
            Err(e) if std::time::Instant::now() >= deadline => {
                return Err(Error::kafka(
                    format!(
                        "connecting to {bootstrap} (no broker answered within {} s)",
                        ADMIN_TIMEOUT.as_secs()
                    ),
                    e,
                ))
            }
            Err(_) => {}
        }
    }
}

/// How long metadata and admin calls may take before the broker is reported
/// unreachable.
pub const ADMIN_TIMEOUT: Duration = Duration::from_secs(30);

/// How long start-up waits for a just-created input topic to appear.
const INPUT_TOPIC_GRACE: Duration = Duration::from_secs(15);

/// Longest wait between reconnection attempts to a broker. librdkafka's
/// default (10 s) lets a 2-second network blip cost a group member its
/// session: its backoff has grown by the time the network is back, it
/// reconnects only after the session timeout, and its partitions move.
/// 1 s is the Java client's default; a few processors retrying once a
/// second is no load for a broker. `[librdkafka]` can still override it.
pub const RECONNECT_BACKOFF_MAX_MS: &str = "1000";

/// The base client configuration: bootstrap servers and auditchain's client
/// defaults, then the raw `[librdkafka]` properties.
pub fn base_client_config(config: &Config, client_id: &str) -> ClientConfig {
    let mut cc = ClientConfig::new();
    cc.set("bootstrap.servers", &config.kafka.bootstrap_servers)
        .set("client.id", client_id)
        .set("reconnect.backoff.max.ms", RECONNECT_BACKOFF_MAX_MS);
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
    let md = asked_again(|| consumer.fetch_metadata(Some(topic), ADMIN_TIMEOUT))
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
/// The group's lag once it is 0 on every partition, polling every 250 ms;
/// an error naming the lag left when `limit` passes first.
pub fn wait_caught_up(config: &Config, limit: Duration) -> Result<Vec<PartitionLag>> {
    let deadline = std::time::Instant::now() + limit;
    loop {
        let lag = group_lag(config)?;
        let total: i64 = lag.iter().map(|l| l.records()).sum();
        if total <= 0 {
            return Ok(lag);
        }
        if std::time::Instant::now() >= deadline {
            return Err(Error::Timeout(format!(
                "group `{}` still lags {total} records after {} s",
                config.kafka.group_id,
                limit.as_secs()
            )));
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// `ask`, asked again while it fails with a transient error
/// ([`crate::error::is_transient`]: a broker failing over, a leader or
/// coordinator moving) for up to [`ADMIN_TIMEOUT`], so a `verify`, `status`
/// or restore during a failover waits instead of failing.
pub fn asked_again<T>(
    mut ask: impl FnMut() -> std::result::Result<T, KafkaError>,
) -> std::result::Result<T, KafkaError> {
    let deadline = std::time::Instant::now() + ADMIN_TIMEOUT;
    loop {
        match ask() {
            Err(e) if crate::error::is_transient(&e) && std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(250));
            }
            answer => return answer,
        }
    }
}

/// Per input partition, its high watermark and the group's committed offset.
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
    let committed = asked_again(|| consumer.committed_offsets(tpl.clone(), ADMIN_TIMEOUT))
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
        let (_, high) = asked_again(|| consumer.fetch_watermarks(topic, p, ADMIN_TIMEOUT))
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
    /// The input topic's effective `max.message.bytes`.
    pub input_max_message_bytes: usize,
    /// The largest output record (key, value and batch framing) the chained
    /// and quarantine topics hold and the producer may send: see
    /// [`max_output_record_bytes`]. Both topics were checked (or created) to
    /// hold it.
    pub max_output_record_bytes: usize,
    /// The largest anchor the anchors topic and the producer accept.
    pub max_anchor_bytes: usize,
    /// The largest record the state topic and the producer accept.
    pub max_state_bytes: usize,
    /// What each trail topic (chained, anchors, quarantine) keeps, and the
    /// warning given for one that can lose records while
    /// `topics.trail_archived` is set.
    pub trail_retention: Vec<(String, Retention, Option<String>)>,
}

/// Checks the input topic exists; creates missing output topics with the
/// input's partition count (the chained and quarantine topics sized from the
/// input, see [`max_output_record_bytes`]; the state topic compacted and
/// tuned for short restores, see [`STATE_TOPIC_CONFIG`]); checks existing ones
/// have at least as many partitions as the input, that the chained and
/// quarantine topics hold the largest output record, that the trail topics
/// keep their records for good (created so: [`TRAIL_TOPIC_CONFIG`]) and that
/// the state topic is exactly compacted. Every mismatch is a clear error
/// naming the topic, the setting and the command that fixes it.
pub async fn ensure_topics(config: &Config) -> Result<TopicReport> {
    // Refused credentials or an untrusted certificate: say so now, rather
    // than time out below.
    check_connection(config)?;
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

    let input_max_message_bytes = input_max_message_bytes(&admin, config).await?;
    let max_output_record_bytes = derive_output_limit(config, input_max_message_bytes)?;

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

    let max_output_bytes = max_output_record_bytes.to_string();
    let new_topics: Vec<NewTopic> = missing
        .iter()
        .map(|(topic, compacted)| {
            let partitions = i32::try_from(input_partitions).unwrap_or(i32::MAX);
            let replication = TopicReplication::Fixed(config.topics.replication_factor);
            let t = NewTopic::new(topic, partitions, replication);
            if *compacted {
                STATE_TOPIC_CONFIG
                    .iter()
                    .fold(t, |t, (name, value)| t.set(name, value))
                    // A state record's key is a tenant id, as long as a key.
                    .set("max.message.bytes", &max_output_bytes)
            } else {
                // Every other output topic is part of the trail: kept for
                // good, and sized to hold the largest record.
                TRAIL_TOPIC_CONFIG
                    .iter()
                    .fold(t, |t, (name, value)| t.set(name, value))
                    .set("max.message.bytes", &max_output_bytes)
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
    check_compacted(&admin, config).await?;
    let trail_retention = check_trail_retention(&admin, config).await?;
    check_output_limits(
        &admin,
        config,
        input_max_message_bytes,
        max_output_record_bytes,
    )
    .await?;
    // An anchor's size grows with the tenants of its transaction; the
    // engine closes transactions early to stay under what the anchors topic
    // takes (created with the output limit; an older one may take less).
    let max_anchor_bytes = max_message_bytes(&admin, &config.topics.anchors)
        .await?
        .min(max_output_record_bytes);
    // A tenant's state record is its id and ~150 bytes; an older state topic
    // may take less than the output limit.
    let max_state_bytes = max_message_bytes(&admin, &config.topics.state)
        .await?
        .min(max_output_record_bytes);
    Ok(TopicReport {
        input_partitions,
        created,
        input_max_message_bytes,
        max_output_record_bytes,
        max_anchor_bytes,
        max_state_bytes,
        trail_retention,
    })
}

/// The trail topics: what the processor writes and verify reads, kept for
/// good (DESIGN.md §3).
fn trail_topics(config: &Config) -> [&str; 3] {
    let t = &config.topics;
    [
        t.chained.as_str(),
        t.anchors.as_str(),
        t.quarantine.as_str(),
    ]
}

/// Checks the state topic is exactly `compact` (see [`check_state_topic`]).
async fn check_compacted(admin: &AdminClient<DefaultClientContext>, config: &Config) -> Result<()> {
    let topic = &config.topics.state;
    let policy = described(topic, "its cleanup.policy", || cleanup_policy(admin, topic)).await?;
    check_state_topic(&config.kafka.bootstrap_servers, topic, &policy)
}

/// Checks every trail topic keeps its records for good (see
/// [`check_trail_topic`]); what each keeps, with the warning for one
/// accepted under `topics.trail_archived`, which is also logged.
async fn check_trail_retention(
    admin: &AdminClient<DefaultClientContext>,
    config: &Config,
) -> Result<Vec<(String, Retention, Option<String>)>> {
    let mut out = Vec::new();
    for topic in trail_topics(config) {
        let retention = described(topic, "its retention settings", || async {
            match topic_configs(admin, topic).await? {
                Some(configs) => Retention::from_configs(topic, &configs),
                None => Ok(None),
            }
        })
        .await?;
        let warning = check_trail_topic(
            &config.kafka.bootstrap_servers,
            topic,
            &retention,
            config.topics.trail_archived,
        )?;
        if let Some(w) = &warning {
            tracing::warn!(topic = %topic, "{w}");
        }
        out.push((topic.to_string(), retention, warning));
    }
    Ok(out)
}

/// What `ask` finds, asked again for a few seconds while it finds nothing:
/// right after a topic is created (by us or a sibling instance) the broker
/// may describe it without its configuration yet. `what` names it in the
/// error when it never appears.
async fn described<T, F, Fut>(topic: &str, what: &str, mut ask: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>>>,
{
    let deadline = std::time::Instant::now() + INPUT_TOPIC_GRACE;
    loop {
        match ask().await? {
            Some(v) => return Ok(v),
            None if std::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            None => {
                return Err(Error::Topic {
                    topic: topic.into(),
                    message: format!("the broker does not report {what}"),
                })
            }
        }
    }
}

async fn cleanup_policy(
    admin: &AdminClient<DefaultClientContext>,
    topic: &str,
) -> Result<Option<String>> {
    topic_config(admin, topic, "cleanup.policy").await
}

/// The effective value of topic configuration `name` (the topic's own or the
/// broker's default), or `None` while the broker does not describe it (a
/// topic created moments ago).
async fn topic_config(
    admin: &AdminClient<DefaultClientContext>,
    topic: &str,
    name: &str,
) -> Result<Option<String>> {
    Ok(topic_configs(admin, topic)
        .await?
        .and_then(|mut configs| configs.remove(name)))
}

/// Every effective configuration value of `topic` that the broker reports
/// (empty values left out), or `None` while it does not describe the topic.
pub async fn topic_configs(
    admin: &AdminClient<DefaultClientContext>,
    topic: &str,
) -> Result<Option<HashMap<String, String>>> {
    let opts = AdminOptions::new().request_timeout(Some(ADMIN_TIMEOUT));
    let results = admin
        .describe_configs([&ResourceSpecifier::Topic(topic)], &opts)
        .await
        .map_err(|e| Error::kafka(format!("describing the configuration of `{topic}`"), e))?;
    match results.into_iter().next() {
        Some(Ok(resource)) => Ok(Some(
            resource
                .entries
                .into_iter()
                .filter_map(|e| Some((e.name, e.value.filter(|v| !v.is_empty())?)))
                .collect(),
        )),
        Some(Err(RDKafkaErrorCode::UnknownTopicOrPartition)) | None => Ok(None),
        Some(Err(code)) => Err(Error::Topic {
            topic: topic.into(),
            message: format!("could not describe its configuration: {code}"),
        }),
    }
}

/// The effective `max.message.bytes` of `topic`, asked again for a few
/// seconds while a just-created topic is not described yet.
async fn max_message_bytes(
    admin: &AdminClient<DefaultClientContext>,
    topic: &str,
) -> Result<usize> {
    let v = described(topic, "its max.message.bytes", || {
        topic_config(admin, topic, "max.message.bytes")
    })
    .await?;
    v.trim().parse().map_err(|_| Error::Topic {
        topic: topic.into(),
        message: format!("the broker reports max.message.bytes `{v}`, not a byte count"),
    })
}

// ---------------------------------------------------------------------------
// Size limits (DESIGN.md §3: size limits come from the input)
// ---------------------------------------------------------------------------

/// librdkafka's ceiling for the producer's `message.max.bytes`.
pub const LIBRDKAFKA_MAX_MESSAGE_BYTES: usize = 1_000_000_000;

/// What a record batch holding a single record adds to the record's key,
/// value and headers: the v2 batch header (61 bytes, the 12-byte log
/// overhead included, which is what the broker compares with the topic's
/// `max.message.bytes`) and librdkafka's worst-case per-record framing
/// (`RD_KAFKAP_MESSAGE_V2_MAX_OVERHEAD`, 36 bytes: length, attributes,
/// timestamp and offset deltas, key and value lengths, header count).
pub const BATCH_FRAMING_BYTES: usize = 61 + 36;

/// Everything an output record adds besides the input record's own bytes
/// (counted by [`max_output_record_bytes`]), with room to spare. The
/// worst case, spelled out (Avro `long`/`int` varints at most 10/5 bytes):
///
/// * `QuarantineRecord` — Confluent framing 5; `reason` 1; `detail` at most
///   [`crate::records::MAX_DETAIL_BYTES`] + its length 2; `source_topic` at
///   most 249 (Kafka's limit on topic names) + 2; `source_partition` 5,
///   `source_offset` 10, `source_timestamp_ms` 10; the union index and
///   length of `raw_key` and `raw_value` 6 each; the `headers` array's block
///   count 10 and end marker 1; `quarantine_hash` 32; `anchor_seq` 10:
///   349 bytes + the detail, 1,373 bytes.
/// * `ChainedRecord` — framing 5; `tenant_id` length 5; `seq` 10; three
///   hashes 96; `source_topic` 251; `source_partition` 5; `source_offset` 10;
///   `source_timestamp_ms` 10; `key_id` length 5; `producer_sig` 65 (the
///   router chains only 64-byte signatures); `event` length 5; `anchor_seq`
///   10: 477 bytes.
/// * Plus [`BATCH_FRAMING_BYTES`] (97) either way: at most 1,470 bytes.
///
/// 4,096 covers that with 2.6 KiB to spare, so a small change of either
/// record cannot silently break the bound; the unit test
/// `worst_case_records_fit_the_derived_limit` encodes worst cases and checks
/// it.
pub const OUTPUT_ENVELOPE_BYTES: usize = 4096;

/// The largest output record, batch framing included, that an input record
/// can become, given the input topic's `max.message.bytes` (`m`):
/// `2·m + OUTPUT_ENVELOPE_BYTES`.
///
/// An input record travels alone in an uncompressed batch at worst, so its
/// key `K`, value `V` and headers as written on the wire `Hw` satisfy
/// `K + V + Hw ≤ m`. Wrapped:
///
/// * a `ChainedRecord` is keyed by the tenant and carries it again as
///   `tenant_id`, plus the value and the key id (a header):
///   `2K + V + Hw` + envelope;
/// * a `QuarantineRecord` is keyed by the input key and carries it again as
///   `raw_key`, plus the value and the headers, whose Avro form costs at most
///   one byte more per header than the wire form (a union index), while every
///   header costs at least two bytes on the wire: `2K + V + 1.5·Hw` +
///   envelope.
///
/// Both are at most `2(K + V + Hw)` + envelope `≤ 2m` + envelope. The key is
/// counted twice because it is written twice; `processing.max_record_bytes`
/// bounds only the value, so it cannot tighten this. A compressed input batch
/// can hold more than `m` uncompressed bytes: such a record may still not
/// fit, and is quarantined without its value (docs/decisions.md, "Output
/// size limits").
pub fn max_output_record_bytes(input_max_message_bytes: usize) -> usize {
    input_max_message_bytes
        .saturating_mul(2)
        .saturating_add(OUTPUT_ENVELOPE_BYTES)
}

/// Whether an output record of `key_len` and `value_len` bytes (no headers)
/// fits, batch framing included, into topics and a producer whose limit is
/// `limit` (the `max_output_record_bytes` of [`TopicReport`]).
pub fn output_record_fits(key_len: usize, value_len: usize, limit: usize) -> bool {
    key_len
        .checked_add(value_len)
        .and_then(|n| n.checked_add(BATCH_FRAMING_BYTES))
        .is_some_and(|n| n <= limit)
}

/// The topics sized from the input: they receive wrapped input records.
fn sized_topics(config: &Config) -> [&str; 2] {
    [
        config.topics.chained.as_str(),
        config.topics.quarantine.as_str(),
    ]
}

/// The input topic's effective `max.message.bytes`.
async fn input_max_message_bytes(
    admin: &AdminClient<DefaultClientContext>,
    config: &Config,
) -> Result<usize> {
    max_message_bytes(admin, &config.topics.input).await
}

/// The output limit for an input topic whose `max.message.bytes` is
/// `input_max_message_bytes`, checked against what the processor's own
/// configuration allows: librdkafka's ceiling, an explicit
/// `[librdkafka] message.max.bytes` (applied after the derived one, so it
/// must not be lower) and `processing.max_record_bytes` (a value at the
/// bound, wrapped, must fit).
pub fn derive_output_limit(config: &Config, input_max_message_bytes: usize) -> Result<usize> {
    let input = &config.topics.input;
    let limit = max_output_record_bytes(input_max_message_bytes);
    if limit > LIBRDKAFKA_MAX_MESSAGE_BYTES {
        return Err(Error::Topic {
            topic: input.clone(),
            message: format!(
                "its max.message.bytes is {input_max_message_bytes}; wrapped, its records need output records of up to {limit} bytes, above librdkafka's ceiling of {LIBRDKAFKA_MAX_MESSAGE_BYTES}; lower the input topic's max.message.bytes to at most {}",
                (LIBRDKAFKA_MAX_MESSAGE_BYTES - OUTPUT_ENVELOPE_BYTES) / 2
            ),
        });
    }
    let bound = config.processing.max_record_bytes;
    if bound.saturating_add(OUTPUT_ENVELOPE_BYTES) > limit {
        return Err(Error::config(
            "processing.max_record_bytes",
            format!(
                "is {bound}, but output records are sized from the input topic `{input}` (max.message.bytes {input_max_message_bytes}) to at most {limit} bytes, so a value at the bound could not be chained; lower it to at most {} or raise the input topic's max.message.bytes",
                limit - OUTPUT_ENVELOPE_BYTES
            ),
        ));
    }
    if let Some(raw) = config.librdkafka.get("message.max.bytes") {
        if let Ok(set) = raw.trim().parse::<usize>() {
            if set < limit {
                return Err(Error::config(
                    "librdkafka.\"message.max.bytes\"",
                    format!(
                        "is {set}, below the {limit} bytes output records can reach (derived from the input topic `{input}`'s max.message.bytes {input_max_message_bytes}); remove it or raise it"
                    ),
                ));
            }
        }
    }
    Ok(limit)
}

/// Checks the chained and quarantine topics hold records of `limit` bytes.
async fn check_output_limits(
    admin: &AdminClient<DefaultClientContext>,
    config: &Config,
    input_max_message_bytes: usize,
    limit: usize,
) -> Result<()> {
    for topic in sized_topics(config) {
        let has = max_message_bytes(admin, topic).await?;
        if has < limit {
            return Err(Error::Topic {
                topic: topic.into(),
                message: format!(
                    "its max.message.bytes is {has}, but output records can reach {limit} bytes (twice the input topic `{}`'s max.message.bytes {input_max_message_bytes}, plus {OUTPUT_ENVELOPE_BYTES}); raise it: kafka-configs --alter --entity-type topics --entity-name {topic} --add-config max.message.bytes={limit}",
                    config.topics.input
                ),
            });
        }
    }
    Ok(())
}

/// Derives the output limit from the input topic as it is now and checks the
/// chained and quarantine topics hold it: what [`ensure_topics`] reports as
/// `max_output_record_bytes`, for a caller that does not have the report.
pub async fn output_record_limit(config: &Config) -> Result<usize> {
    let admin = admin_client(config)?;
    let input_max = input_max_message_bytes(&admin, config).await?;
    let limit = derive_output_limit(config, input_max)?;
    check_output_limits(&admin, config, input_max, limit).await?;
    Ok(limit)
}

/// Configuration of a created state topic. A restore reads a partition of
/// it from the beginning to the end, so what it reads is the live heads plus
/// whatever compaction has not removed yet; these keep that small:
///
/// * `segment.ms` 10 minutes and `segment.bytes` 64 MiB: the active segment
///   is never compacted, so it is rolled often (defaults: 7 days, 1 GiB) and
///   holds at most 10 minutes (or 64 MiB) of head updates;
/// * `min.cleanable.dirty.ratio` 0.1 (default 0.5): the cleaner runs once a
///   tenth of the log is superseded updates, so the compacted part stays
///   within about 1.1× the live heads instead of 2×; the state topic is
///   small, so the extra cleaning is cheap;
/// * `delete.retention.ms` 1 hour (default 1 day): how long a tombstone
///   stays readable. The processor writes none today (heads are only ever
///   superseded); should it, a restore takes seconds, far less than an hour,
///   so no reader would miss one, and none would linger for a day.
pub const STATE_TOPIC_CONFIG: [(&str, &str); 5] = [
    ("cleanup.policy", "compact"),
    ("segment.ms", "600000"),
    ("segment.bytes", "67108864"),
    ("min.cleanable.dirty.ratio", "0.1"),
    ("delete.retention.ms", "3600000"),
];

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: &str) -> Config {
        let text = format!(
            "[kafka]\nbootstrap_servers = \"127.0.0.1:9092\"\ninstance_id = \"i-1\"\n\
             [signing]\nkey_file = \"p.secret\"\nkey_id = \"p\"\n\
             [producer_keys]\nfile = \"keys.toml\"\n{extra}"
        );
        Config::from_toml_with_env(&text, std::iter::empty()).expect("config")
    }

    #[test]
    fn clients_reconnect_within_a_second_unless_the_operator_says_otherwise() {
        let cc = base_client_config(&config(""), "c");
        assert_eq!(cc.get("reconnect.backoff.max.ms"), Some("1000"));
        let cc = base_client_config(
            &config("[librdkafka]\n\"reconnect.backoff.max.ms\" = \"5000\"\n"),
            "c",
        );
        assert_eq!(cc.get("reconnect.backoff.max.ms"), Some("5000"));
    }

    /// The broker's default `max.message.bytes` (1 MiB + 12 bytes of log
    /// overhead).
    const BROKER_DEFAULT: usize = 1_048_588;

    #[test]
    fn the_default_broker_gives_twice_its_limit_plus_the_envelope() {
        let limit = derive_output_limit(&config(""), BROKER_DEFAULT).expect("fits");
        assert_eq!(limit, 2_101_272);
        assert_eq!(limit, max_output_record_bytes(BROKER_DEFAULT));
        // The event (a 1,030,066-byte value) fits, wrapped, with its
        // key and the envelope; librdkafka's default (1,000,000) did not.
        assert!(output_record_fits(
            64,
            1_030_066 + 64 + OUTPUT_ENVELOPE_BYTES,
            limit
        ));
    }

    #[test]
    fn a_bound_the_output_cannot_hold_names_the_field() {
        let c = config("[processing]\nmax_record_bytes = 3000000\n");
        let err = derive_output_limit(&c, BROKER_DEFAULT)
            .expect_err("3 MB values cannot be chained into 2.1 MB records")
            .to_string();
        assert!(err.contains("processing.max_record_bytes"), "{err}");
        assert!(err.contains("2097176"), "{err}");
        assert!(derive_output_limit(&c, 2 * BROKER_DEFAULT).is_ok());
    }

    #[test]
    fn a_lower_librdkafka_override_is_refused_and_a_higher_one_kept() {
        let low = config("[librdkafka]\n\"message.max.bytes\" = \"2000000\"\n");
        let err = derive_output_limit(&low, BROKER_DEFAULT)
            .expect_err("below the derived limit")
            .to_string();
        assert!(err.contains("librdkafka.\"message.max.bytes\""), "{err}");
        let high = config("[librdkafka]\n\"message.max.bytes\" = \"5000000\"\n");
        assert_eq!(
            derive_output_limit(&high, BROKER_DEFAULT).expect("fits"),
            2_101_272
        );
    }

    #[test]
    fn an_input_limit_beyond_librdkafka_names_the_input_topic() {
        let err = derive_output_limit(&config(""), 600_000_000)
            .expect_err("beyond 1e9")
            .to_string();
        assert!(
            err.contains("audit.events") && err.contains("max.message.bytes"),
            "{err}"
        );
    }

    #[test]
    fn records_fit_with_their_batch_framing() {
        assert!(output_record_fits(3, 100 - 3 - BATCH_FRAMING_BYTES, 100));
        assert!(!output_record_fits(3, 101 - 3 - BATCH_FRAMING_BYTES, 100));
        assert!(!output_record_fits(usize::MAX, 1, usize::MAX));
    }

    #[test]
    fn the_state_topic_is_compacted() {
        assert!(STATE_TOPIC_CONFIG.contains(&("cleanup.policy", "compact")));
    }
}
