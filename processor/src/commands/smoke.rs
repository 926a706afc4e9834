//! `auditchain smoke`: does a cluster support what auditchain needs?

use anyhow::Context;

/// Arguments of `smoke`.
#[derive(Debug, clap::Args)]
pub struct SmokeArgs {
    /// Kafka bootstrap servers.
    #[arg(
        long,
        env = "KAFKA_BOOTSTRAP_SERVERS",
        hide_env_values = true,
        default_value = "127.0.0.1:9092"
    )]
    bootstrap_servers: String,
    /// Confluent-compatible schema registry URL; without it the compiled-in schema is used.
    // Values hidden from --help: a URL may carry credentials.
    #[arg(long, env = "SCHEMA_REGISTRY_URL", hide_env_values = true)]
    registry_url: Option<String>,
}

/// A committed and an aborted transaction on a scratch topic, read back
/// `read_committed`: exactly the committed records must be seen.
pub async fn run(args: SmokeArgs) -> anyhow::Result<()> {
    let report = auditchain::smoke::run(&args.bootstrap_servers, args.registry_url.as_deref())
        .await
        .context("smoke check failed")?;
    println!(
        "smoke: topic {} schema id {}: committed {} and aborted {} records; \
read_committed saw {}, read_uncommitted saw {} ({} ms)",
        report.topic,
        report.schema_id,
        report.committed,
        report.aborted,
        report.read_committed.len(),
        report.read_uncommitted,
        report.elapsed.as_millis()
    );
    anyhow::ensure!(
        report.read_committed.len() == report.committed,
        "read_committed consumer saw {} records, expected exactly the {} committed ones",
        report.read_committed.len(),
        report.committed
    );
    Ok(())
}
