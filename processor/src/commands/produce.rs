//! `auditchain produce`: signed events the way a service publishes them.

use std::path::PathBuf;

use anyhow::Context;

/// `produce`'s arguments.
#[derive(Debug, clap::Args)]
pub struct ProduceArgs {
    /// The processor's configuration file (input topic, registry, size bound).
    #[arg(long, short)]
    config: PathBuf,
    /// Secret key that signs the good events.
    #[arg(long)]
    key_file: PathBuf,
    /// Its key id.
    #[arg(long)]
    key_id: String,
    /// Good events to publish.
    #[arg(long, default_value_t = 1000)]
    events: usize,
    /// Number of tenants the events are spread over.
    #[arg(long, default_value_t = 10)]
    tenants: usize,
    /// Tenant name prefix.
    #[arg(long, default_value = "tenant")]
    tenant_prefix: String,
    /// Bad records to mix in, as KIND=COUNT (repeatable). KIND is one of bad-signature,
    /// unknown-key, revoked-key, key-not-allowed, tenant-mismatch, missing-signature,
    /// missing-key, truncated-avro, unknown-schema-id, oversized; or all=COUNT.
    #[arg(long, value_parser = parse_inject)]
    inject: Vec<(String, usize)>,
    /// A revoked key (needed by revoked-key injections).
    #[arg(long, requires = "revoked_key_id")]
    revoked_key_file: Option<PathBuf>,
    /// Its key id.
    #[arg(long)]
    revoked_key_id: Option<String>,
    /// A key bound to other tenants (needed by key-not-allowed injections).
    #[arg(long, requires = "restricted_key_id")]
    restricted_key_file: Option<PathBuf>,
    /// Its key id.
    #[arg(long)]
    restricted_key_id: Option<String>,
    /// Bytes of opaque payload per event.
    #[arg(long, default_value_t = 0)]
    payload_bytes: usize,
    /// Give every record its own W3C `traceparent` header, as an instrumented
    /// service would (the processor's transaction spans link to them).
    #[arg(long)]
    traceparent: bool,
}

fn parse_inject(s: &str) -> Result<(String, usize), String> {
    let (kind, count) = s.split_once('=').ok_or("expected KIND=COUNT")?;
    let count = count.parse().map_err(|e| format!("COUNT: {e}"))?;
    if kind != "all" {
        kind.parse::<auditchain::produce::Inject>()?;
    }
    Ok((kind.to_string(), count))
}

fn named_key(
    file: &std::path::Path,
    key_id: &str,
) -> anyhow::Result<auditchain::produce::NamedKey> {
    Ok(auditchain_producer::SigningKey::from_file(file, key_id)?)
}

/// Runs `produce`.
pub async fn run(args: ProduceArgs) -> anyhow::Result<()> {
    use auditchain::produce::{Inject, Spec};
    let config = auditchain::config::Config::load(&args.config)
        .with_context(|| format!("loading {}", args.config.display()))?;
    let mut inject = Vec::new();
    for (kind, count) in &args.inject {
        if kind == "all" {
            inject.extend(Inject::ALL.iter().map(|k| (*k, *count)));
        } else {
            inject.push((kind.parse::<Inject>().map_err(anyhow::Error::msg)?, *count));
        }
    }
    let optional = |file: &Option<PathBuf>, id: &Option<String>| -> anyhow::Result<_> {
        match (file, id) {
            (Some(f), Some(i)) => Ok(Some(named_key(f, i)?)),
            _ => Ok(None),
        }
    };
    let spec = Spec {
        events: args.events,
        tenants: args.tenants,
        tenant_prefix: args.tenant_prefix,
        key: named_key(&args.key_file, &args.key_id)?,
        revoked_key: optional(&args.revoked_key_file, &args.revoked_key_id)?,
        restricted_key: optional(&args.restricted_key_file, &args.restricted_key_id)?,
        inject,
        payload_bytes: args.payload_bytes,
        traceparent: args.traceparent,
        run_id: uuid::Uuid::new_v4().simple().to_string(),
    };
    let report = auditchain::produce::produce(&config, &spec).await?;
    let bad = report
        .records
        .iter()
        .filter(|r| r.expected.is_some())
        .count();
    let secs = report.elapsed.as_secs_f64().max(1e-9);
    println!(
        "produce: {} records to `{}` ({} signed events, {} bad) in {:.2} s ({:.0} records/s)",
        report.records.len(),
        config.topics.input,
        report.records.len() - bad,
        bad,
        secs,
        report.records.len() as f64 / secs
    );
    Ok(())
}
