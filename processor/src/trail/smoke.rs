//! `auditchain smoke`: checks that a Kafka cluster (and, when given, a schema
//! registry) can do what the processor relies on — transactions, and
//! `read_committed` consumers that never see aborted records — using a
//! scratch topic it creates. Operators run it against a new cluster before
//! deploying; the demo runs it first.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};

use crate::error::{Error, Result};
use crate::kafka::QuietContext;
use crate::registry::Registry;
use crate::schema::{split_frame, AuditEvent, EventDecoder, Outcome, AUDIT_EVENT_AVSC};
use crate::verify::{Isolation, PartitionReader};

/// What the smoke test saw.
#[derive(Debug, Clone)]
pub struct SmokeReport {
    /// The scratch topic.
    pub topic: String,
    /// Schema id the events were framed with (from the registry, or 1).
    pub schema_id: u32,
    /// Events in the committed transaction.
    pub committed: usize,
    /// Events in the aborted transaction.
    pub aborted: usize,
    /// Events a `read_committed` consumer read back, decoded.
    pub read_committed: Vec<AuditEvent>,
    /// Records a `read_uncommitted` consumer read back.
    pub read_uncommitted: usize,
    /// Wall time of the whole check.
    pub elapsed: Duration,
}

fn event(i: usize, run: &str) -> AuditEvent {
    AuditEvent {
        event_id: format!("smoke-{run}-{i}"),
        tenant_id: "smoke".into(),
        occurred_at: 0,
        actor: "auditchain-smoke".into(),
        action: "smoke.check".into(),
        resource: "kafka".into(),
        outcome: Outcome::Success,
        correlation_id: None,
        attributes: HashMap::new(),
        payload: None,
    }
}

/// Runs the check against `bootstrap` (and `registry_url` when given).
pub async fn run(bootstrap: &str, registry_url: Option<&str>) -> Result<SmokeReport> {
    let started = Instant::now();
    let run_id = uuid::Uuid::new_v4().simple().to_string();
    let topic = format!("auditchain-smoke-{run_id}");
    let schema_id = match registry_url {
        Some(url) => {
            Registry::from_url(url)?
                .register(&format!("{topic}-value"), AUDIT_EVENT_AVSC)
                .await?
        }
        None => 1,
    };

    let admin: AdminClient<DefaultClientContext> = client(bootstrap)
        .create()
        .map_err(|e| Error::kafka("creating the admin client", e))?;
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let created = admin
        .create_topics(
            // The broker's default replication: a scratch topic with fewer
            // replicas than the cluster's min.insync.replicas refuses the
            // transactional writes this check makes.
            &[NewTopic::new(&topic, 1, TopicReplication::Fixed(-1))],
            &opts,
        )
        .await
        .map_err(|e| Error::kafka(format!("creating scratch topic on {bootstrap}"), e))?;
    for result in created {
        result.map_err(|(name, code)| Error::Topic {
            topic: name,
            message: format!("could not be created: {code}"),
        })?;
    }

    let committed: Vec<AuditEvent> = (0..3).map(|i| event(i, &run_id)).collect();
    let aborted: Vec<AuditEvent> = (3..5).map(|i| event(i, &run_id)).collect();
    let (bootstrap_owned, topic_owned) = (bootstrap.to_string(), topic.clone());
    let (committed_values, aborted_values) = (
        committed
            .iter()
            .map(|e| e.encode(schema_id))
            .collect::<Result<Vec<_>>>()?,
        aborted
            .iter()
            .map(|e| e.encode(schema_id))
            .collect::<Result<Vec<_>>>()?,
    );
    // librdkafka's transaction calls block; keep them off the async workers.
    let (read_committed, read_uncommitted) = tokio::task::spawn_blocking(move || {
        produce_two_transactions(
            &bootstrap_owned,
            &topic_owned,
            &committed_values,
            &aborted_values,
        )?;
        let committed = read_to_end(&bootstrap_owned, &topic_owned, Isolation::Committed)?;
        let uncommitted = read_to_end(&bootstrap_owned, &topic_owned, Isolation::Uncommitted)?;
        Ok::<_, Error>((committed, uncommitted))
    })
    .await
    .map_err(|e| Error::Thread(format!("smoke worker panicked: {e}")))??;

    let decoder = EventDecoder::compiled();
    let mut decoded = Vec::with_capacity(read_committed.len());
    for value in &read_committed {
        let (id, body) = split_frame(value)
            .ok_or_else(|| Error::Avro("record without Confluent framing".into()))?;
        if id != schema_id {
            return Err(Error::Avro(format!(
                "read schema id {id}, wrote {schema_id}"
            )));
        }
        decoded.push(decoder.decode(body).map_err(Error::Avro)?);
    }

    let _ = admin.delete_topics(&[&topic], &opts).await;
    Ok(SmokeReport {
        topic,
        schema_id,
        committed: committed.len(),
        aborted: aborted.len(),
        read_committed: decoded,
        read_uncommitted: read_uncommitted.len(),
        elapsed: started.elapsed(),
    })
}

fn client(bootstrap: &str) -> ClientConfig {
    let mut cc = ClientConfig::new();
    cc.set("bootstrap.servers", bootstrap);
    cc
}

fn produce_two_transactions(
    bootstrap: &str,
    topic: &str,
    committed: &[Vec<u8>],
    aborted: &[Vec<u8>],
) -> Result<()> {
    let producer: ThreadedProducer<_> = client(bootstrap)
        .set("transactional.id", format!("{topic}-txn"))
        .set("transaction.timeout.ms", "10000")
        .create()
        .map_err(|e| Error::kafka("creating the transactional producer", e))?;
    let timeout = Duration::from_secs(30);
    producer
        .init_transactions(timeout)
        .map_err(|e| Error::kafka(format!("initialising transactions on {bootstrap}"), e))?;
    for (values, commit) in [(committed, true), (aborted, false)] {
        producer
            .begin_transaction()
            .map_err(|e| Error::kafka("beginning a transaction", e))?;
        for value in values {
            send_retrying(&producer, BaseRecord::to(topic).key("smoke").payload(value))?;
        }
        if commit {
            producer
                .commit_transaction(timeout)
                .map_err(|e| Error::kafka("committing the transaction", e))?;
        } else {
            producer
                .flush(timeout)
                .map_err(|e| Error::kafka("flushing before abort", e))?;
            producer
                .abort_transaction(timeout)
                .map_err(|e| Error::kafka("aborting the transaction", e))?;
        }
    }
    Ok(())
}

fn send_retrying<'a>(
    producer: &ThreadedProducer<rdkafka::producer::DefaultProducerContext>,
    mut record: BaseRecord<'a, str, Vec<u8>>,
) -> Result<()> {
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                record = r;
                producer.poll(Duration::from_millis(50));
            }
            Err((e, _)) => return Err(Error::kafka("producing", e)),
        }
    }
}

/// Reads partition 0 of `topic` from the beginning to its end (its high
/// watermark; both transactions have ended, so for `read_committed` that is
/// the last stable offset too), returning the values.
pub fn read_to_end(bootstrap: &str, topic: &str, isolation: Isolation) -> Result<Vec<Vec<u8>>> {
    let probe: BaseConsumer<QuietContext> = client(bootstrap)
        .create_with_context(QuietContext)
        .map_err(|e| Error::kafka("creating a consumer", e))?;
    let ends = probe
        .fetch_watermarks(topic, 0, Duration::from_secs(30))
        .map_err(|e| Error::kafka(format!("reading the watermarks of `{topic}`"), e))?;
    let mut reader =
        PartitionReader::with_client(client(bootstrap), isolation, topic, 0, ends, None)?;
    let mut values = Vec::new();
    while let Some(m) = reader.next_record()? {
        values.push(m.payload().unwrap_or_default().to_vec());
    }
    Ok(values)
}
