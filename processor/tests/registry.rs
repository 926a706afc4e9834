//! Avro through the real schema registry with `schema_registry_converter`:
//! what its encoder writes, its decoder and auditchain's own decoder read
//! back identically, and through Kafka too.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use apache_avro::types::Value;
use auditchain::registry::{Lookup, Registry};
use auditchain::schema::{split_frame, AuditEvent, EventDecoder, Outcome, AUDIT_EVENT_AVSC};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use schema_registry_converter::async_impl::avro::{AvroDecoder, AvroEncoder};
use schema_registry_converter::schema_registry_common::{
    SchemaType, SubjectNameStrategy, SuppliedSchema,
};

fn event() -> AuditEvent {
    AuditEvent {
        event_id: "evt-1".into(),
        tenant_id: "tenant-ä".into(),
        occurred_at: 1_732_000_000_123_456,
        actor: "bob".into(),
        action: "invoice.approve".into(),
        resource: "invoice/42".into(),
        outcome: Outcome::Success,
        correlation_id: None,
        attributes: HashMap::from([("amount".to_string(), "12.50".to_string())]),
        payload: Some(b"{}".to_vec()),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn avro_round_trip_through_registry_and_kafka() {
    let topic = common::random_topic();
    common::create_topic(&topic, 1, &[]).await;
    let registry = Registry::from_url(&common::registry_url()).expect("registry client");

    let encoder = AvroEncoder::new(registry.settings().clone());
    let strategy = SubjectNameStrategy::TopicNameStrategyWithSchema(
        topic.clone(),
        false,
        SuppliedSchema::new(None, SchemaType::Avro, AUDIT_EVENT_AVSC.to_string()),
    );
    let bytes = encoder
        .encode_value(event().to_value(), &strategy)
        .await
        .expect("encode through the registry");
    let (schema_id, body) = split_frame(&bytes).expect("Confluent framing");

    // The registry knows the id, and auditchain's own client finds the same schema.
    match registry.lookup(schema_id).await.expect("lookup") {
        Lookup::Found(text) => {
            let decoder = EventDecoder::from_writer_schema(&text).expect("decoder");
            assert_eq!(decoder.decode(body).expect("decode"), event());
        }
        Lookup::Unknown => panic!("registry does not know id {schema_id}"),
    }
    // An id that was never registered is a definite "unknown", not an error.
    assert_eq!(
        registry.lookup(987_654_321).await.expect("lookup"),
        Lookup::Unknown
    );
    // Registering the same schema again is idempotent.
    let again = registry
        .register(&format!("{topic}-value"), AUDIT_EVENT_AVSC)
        .await
        .expect("register");
    assert_eq!(again, schema_id);

    let producer: ThreadedProducer<_> = common::client_config().create().expect("producer");
    producer
        .send(BaseRecord::to(&topic).key("tenant-ä").payload(&bytes))
        .map_err(|(e, _)| e)
        .expect("send");
    producer.flush(Duration::from_secs(30)).expect("flush");
    let read = common::read_to_end(&topic, 1, "read_committed");
    assert_eq!(read.len(), 1);
    let value = read[0].payload().expect("payload");
    assert_eq!(value, &bytes[..]);

    let decoded = AvroDecoder::new(registry.settings().clone())
        .decode(Some(value))
        .await
        .expect("schema_registry_converter decodes");
    let Value::Record(fields) = decoded.value else {
        panic!("not a record: {:?}", decoded.value);
    };
    let tenant = fields
        .iter()
        .find(|(n, _)| n == "tenant_id")
        .map(|(_, v)| v.clone());
    assert_eq!(tenant, Some(Value::String("tenant-ä".into())));
}

#[tokio::test(flavor = "multi_thread")]
async fn smoke_command_core_passes_against_the_local_stack() {
    let report = auditchain::smoke::run(&common::bootstrap(), Some(&common::registry_url()))
        .await
        .expect("smoke");
    assert_eq!(report.committed, 3);
    assert_eq!(report.read_committed.len(), 3);
    assert_eq!(report.read_uncommitted, 5);
    assert!(report.read_committed.iter().all(|e| e.tenant_id == "smoke"));
}
