//! Signing events into records, and publishing them with an idempotent
//! rdkafka producer.

use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::util::Timeout;

use crate::error::{Error, Result};
use crate::event::AuditEvent;
use crate::key::SigningKey;
use crate::{KEY_ID_HEADER, SIG_HEADER};

/// A signed record, ready for any producer (an outbox relay's own
/// transactional producer, say).
#[derive(Debug, Clone)]
pub struct SignedRecord {
    /// The tenant id, UTF-8.
    pub key: Vec<u8>,
    /// The Confluent-framed Avro value, exactly as signed.
    pub value: Vec<u8>,
    /// `auditchain-key-id` and `auditchain-sig`.
    pub headers: OwnedHeaders,
}

impl SignedRecord {
    /// The record for `topic`, to give to `FutureProducer::send`.
    pub fn future_record<'a>(&'a self, topic: &'a str) -> FutureRecord<'a, [u8], [u8]> {
        FutureRecord::to(topic)
            .key(self.key.as_slice())
            .payload(self.value.as_slice())
            .headers(self.headers.clone())
    }
}

/// Encodes and signs events without touching Kafka.
#[derive(Debug, Clone)]
pub struct Signer {
    key: SigningKey,
    schema_id: u32,
}

impl Signer {
    /// Signs with `key`, framing values with `schema_id`.
    pub fn new(key: SigningKey, schema_id: u32) -> Self {
        Signer { key, schema_id }
    }

    /// The schema id values are framed with.
    pub fn schema_id(&self) -> u32 {
        self.schema_id
    }

    /// The signing key.
    pub fn key(&self) -> &SigningKey {
        &self.key
    }

    /// The signature headers for `value` of `tenant_id`.
    pub fn headers(&self, tenant_id: &str, value: &[u8]) -> OwnedHeaders {
        let sig = self.key.sign(tenant_id, value);
        OwnedHeaders::new()
            .insert(Header {
                key: KEY_ID_HEADER,
                value: Some(self.key.key_id().as_bytes()),
            })
            .insert(Header {
                key: SIG_HEADER,
                value: Some(&sig[..]),
            })
    }

    /// The signed record of `event`.
    pub fn record(&self, event: &AuditEvent) -> Result<SignedRecord> {
        let value = event.encode(self.schema_id)?;
        Ok(SignedRecord {
            key: event.tenant_id.as_bytes().to_vec(),
            headers: self.headers(&event.tenant_id, &value),
            value,
        })
    }
}

/// Where the schema id comes from.
#[derive(Debug, Clone)]
pub enum SchemaSource {
    /// Registered (or looked up) under `<topic>-value`.
    Registry {
        /// Base URL of the Confluent-compatible API.
        url: String,
        /// Basic authentication: user and password.
        auth: Option<(String, Option<String>)>,
        /// Take the subject's latest version instead of registering.
        lookup_only: bool,
    },
    /// A configured id, when there is no registry.
    Id(u32),
}

/// Where a record landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivery {
    /// The partition.
    pub partition: i32,
    /// The offset.
    pub offset: i64,
}

/// Configures an [`AuditProducer`].
#[derive(Debug)]
pub struct Builder {
    config: ClientConfig,
    topic: String,
    key: SigningKey,
    schema: Option<SchemaSource>,
    transactional_id: Option<String>,
}

impl Builder {
    /// Registers the schema with the registry at `url`.
    pub fn schema_registry(mut self, url: impl Into<String>) -> Self {
        self.schema = Some(SchemaSource::Registry {
            url: url.into(),
            auth: None,
            lookup_only: false,
        });
        self
    }

    /// Where the schema id comes from.
    pub fn schema(mut self, source: SchemaSource) -> Self {
        self.schema = Some(source);
        self
    }

    /// Frames values with `id` (no registry).
    pub fn schema_id(self, id: u32) -> Self {
        self.schema(SchemaSource::Id(id))
    }

    /// Publishes in transactions ([`AuditProducer::begin_transaction`]).
    pub fn transactional_id(mut self, id: impl Into<String>) -> Self {
        self.transactional_id = Some(id.into());
        self
    }

    /// A librdkafka property; `acks` and `enable.idempotence` are forced.
    pub fn set(mut self, key: &str, value: impl Into<String>) -> Self {
        self.config.set(key, value);
        self
    }

    /// Resolves the schema id and creates the producer. With a
    /// transactional id this also runs `init_transactions`, which blocks.
    pub async fn build(self) -> Result<AuditProducer> {
        if self.topic.is_empty() {
            return Err(Error::Config("the topic must not be empty".into()));
        }
        let schema_id = match self.schema {
            None => {
                return Err(Error::Config(
                    "set a schema registry, or a schema id when there is no registry".into(),
                ))
            }
            Some(SchemaSource::Id(id)) => id,
            Some(SchemaSource::Registry {
                url,
                auth,
                lookup_only,
            }) => {
                let auth = auth.as_ref().map(|(u, p)| (u.as_str(), p.as_deref()));
                crate::registry::schema_id(&url, auth, &self.topic, lookup_only).await?
            }
        };
        let mut cc = self.config;
        // murmur2, as the Java client: a tenant lands on the same partition
        // whichever SDK publishes it, so it has one chain.
        if cc.get("partitioner").is_none() {
            cc.set("partitioner", "murmur2_random");
        }
        if cc.get("linger.ms").is_none() {
            cc.set("linger.ms", "5");
        }
        cc.set("enable.idempotence", "true").set("acks", "all");
        if let Some(id) = &self.transactional_id {
            cc.set("transactional.id", id);
        }
        let producer: FutureProducer = cc
            .create()
            .map_err(|e| Error::kafka("creating the producer", e))?;
        if self.transactional_id.is_some() {
            producer
                .init_transactions(Timeout::After(Duration::from_secs(30)))
                .map_err(|e| Error::kafka("initialising transactions", e))?;
        }
        Ok(AuditProducer {
            producer,
            topic: self.topic,
            signer: Signer::new(self.key, schema_id),
        })
    }
}

/// Signs and publishes [`AuditEvent`]s with an idempotent producer.
pub struct AuditProducer {
    producer: FutureProducer,
    topic: String,
    signer: Signer,
}

impl std::fmt::Debug for AuditProducer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditProducer")
            .field("topic", &self.topic)
            .field("signer", &self.signer)
            .finish_non_exhaustive()
    }
}

impl AuditProducer {
    /// A producer for `topic` on `bootstrap_servers`, signing with `key`.
    pub fn builder(bootstrap_servers: &str, topic: impl Into<String>, key: SigningKey) -> Builder {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", bootstrap_servers);
        Self::builder_with(config, topic, key)
    }

    /// Like [`AuditProducer::builder`], from a client configuration of the
    /// caller's (TLS, SASL, ...).
    pub fn builder_with(
        config: ClientConfig,
        topic: impl Into<String>,
        key: SigningKey,
    ) -> Builder {
        Builder {
            config,
            topic: topic.into(),
            key,
            schema: None,
            transactional_id: None,
        }
    }

    /// The signer (schema id and key).
    pub fn signer(&self) -> &Signer {
        &self.signer
    }

    /// The topic.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The underlying rdkafka producer.
    pub fn kafka(&self) -> &FutureProducer {
        &self.producer
    }

    /// Signs and publishes `event`; resolves when Kafka has it. Run many
    /// at once for throughput (`futures::StreamExt::buffered` keeps order).
    pub async fn publish(&self, event: &AuditEvent) -> Result<Delivery> {
        let record = self.signer.record(event)?;
        self.publish_signed(&record).await
    }

    /// Publishes a record already signed.
    pub async fn publish_signed(&self, record: &SignedRecord) -> Result<Delivery> {
        self.producer
            .send(record.future_record(&self.topic), Timeout::Never)
            .await
            .map(|d| Delivery {
                partition: d.partition,
                offset: d.offset,
            })
            .map_err(|(e, _)| Error::kafka(format!("publishing to {}", self.topic), e))
    }

    /// Waits until everything sent is delivered or failed (blocks).
    pub fn flush(&self, timeout: Duration) -> Result<()> {
        self.producer
            .flush(Timeout::After(timeout))
            .map_err(|e| Error::kafka("flushing", e))
    }

    /// Opens a transaction (needs a transactional id).
    pub fn begin_transaction(&self) -> Result<()> {
        self.producer
            .begin_transaction()
            .map_err(|e| Error::kafka("beginning a transaction", e))
    }

    /// Commits the open transaction (blocks).
    pub fn commit_transaction(&self, timeout: Duration) -> Result<()> {
        self.producer
            .commit_transaction(Timeout::After(timeout))
            .map_err(|e| Error::kafka("committing the transaction", e))
    }

    /// Aborts the open transaction (blocks).
    pub fn abort_transaction(&self, timeout: Duration) -> Result<()> {
        self.producer
            .abort_transaction(Timeout::After(timeout))
            .map_err(|e| Error::kafka("aborting the transaction", e))
    }
}
