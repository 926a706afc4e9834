//! The publisher the integration test (sdk/integration/run.py) drives.
//! Configured from the environment:
//!
//!   KAFKA_BOOTSTRAP_SERVERS, AUDITCHAIN_TOPIC, AUDITCHAIN_KEY_FILE, AUDITCHAIN_KEY_ID,
//!   SCHEMA_REGISTRY_URL (or AUDITCHAIN_SCHEMA_ID without a registry),
//!   AUDITCHAIN_TENANTS (comma-separated), AUDITCHAIN_EVENTS (total, round-robin),
//!   AUDITCHAIN_TRANSACTIONAL_ID (optional: all in one transaction).
//!
//! Prints one JSON line with the publish rate (encoding and signing included).

use std::time::{Duration, Instant};

use auditchain_producer::{AuditEvent, AuditProducer, Outcome, SigningKey};
use futures::stream::{self, StreamExt, TryStreamExt};

fn env(name: &str) -> Result<String, String> {
    std::env::var(name).map_err(|_| format!("{name} is not set"))
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let tenants: Vec<String> = env("AUDITCHAIN_TENANTS")?
        .split(',')
        .map(String::from)
        .collect();
    let events: usize = env("AUDITCHAIN_EVENTS")?.parse()?;
    let txn = std::env::var("AUDITCHAIN_TRANSACTIONAL_ID")
        .ok()
        .filter(|s| !s.is_empty());
    let key = SigningKey::from_file(env("AUDITCHAIN_KEY_FILE")?, env("AUDITCHAIN_KEY_ID")?)?;
    let mut builder = AuditProducer::builder(
        &env("KAFKA_BOOTSTRAP_SERVERS")?,
        env("AUDITCHAIN_TOPIC")?,
        key,
    );
    builder = match std::env::var("SCHEMA_REGISTRY_URL")
        .ok()
        .filter(|s| !s.is_empty())
    {
        Some(url) => builder.schema_registry(url),
        None => builder.schema_id(env("AUDITCHAIN_SCHEMA_ID")?.parse()?),
    };
    if let Some(id) = &txn {
        builder = builder.transactional_id(id);
    }
    let producer = builder.build().await?;
    let started = Instant::now();
    if txn.is_some() {
        producer.begin_transaction()?;
    }
    let producer_ref = &producer;
    stream::iter(0..events)
        .map(|i| {
            let mut e = AuditEvent::new(
                tenants[i % tenants.len()].clone(),
                format!("user-{}", i % 97),
                "document.read",
                format!("doc/{i}"),
            );
            e.outcome = if i % 10 == 0 {
                Outcome::Denied
            } else {
                Outcome::Success
            };
            e.attributes.insert("sdk".into(), "rust".into());
            async move { producer_ref.publish(&e).await }
        })
        .buffered(10_000)
        .try_for_each(|_| async { Ok(()) })
        .await?;
    if txn.is_some() {
        producer.commit_transaction(Duration::from_secs(30))?;
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{{\"sdk\": \"rust\", \"published\": {events}, \"seconds\": {secs:.3}, \"events_per_second\": {}}}",
        (events as f64 / secs) as u64
    );
    Ok(())
}

#[tokio::main]
async fn main() {
    if let Err(e) = run().await {
        eprintln!("publish: {e}");
        std::process::exit(1);
    }
}
