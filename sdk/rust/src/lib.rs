//! Sign and publish auditchain `AuditEvent`s to Kafka.
//!
//! An event (the v1 fields of DESIGN.md §1.1) is encoded as Confluent-framed
//! Avro, signed with the producer's Ed25519 key over `event_msg` of §4.1,
//! and published keyed by its tenant with the `auditchain-key-id` and
//! `auditchain-sig` headers, through an idempotent rdkafka producer
//! (`acks=all`, idempotence on, murmur2 partitioning like the Java client).
//!
//! ```no_run
//! # async fn run() -> Result<(), auditchain_producer::Error> {
//! use auditchain_producer::{AuditEvent, AuditProducer, SigningKey};
//! let key = SigningKey::from_file("keys/billing-2026.secret", "billing-2026")?;
//! let producer = AuditProducer::builder("kafka:9092", "audit.events", key)
//!     .schema_registry("http://registry:8081/apis/ccompat/v7")
//!     .build()
//!     .await?;
//! producer.publish(&AuditEvent::new("acme", "alice", "invoice.approve", "invoice/42")).await?;
//! # Ok(()) }
//! ```

mod error;
mod event;
mod key;
mod producer;
mod registry;

pub use error::{Error, Result};
pub use event::{frame, AuditEvent, Outcome, AUDIT_EVENT_AVSC};
pub use key::{event_msg, SigningKey};
pub use producer::{AuditProducer, Builder, Delivery, SchemaSource, SignedRecord, Signer};
pub use registry::schema_id;

/// The header carrying the signing key's id.
pub const KEY_ID_HEADER: &str = "auditchain-key-id";
/// The header carrying the 64-byte Ed25519 signature.
pub const SIG_HEADER: &str = "auditchain-sig";

#[cfg(test)]
mod tests;
