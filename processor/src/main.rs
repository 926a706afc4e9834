//! The `auditchain` binary: argument parsing and logging only; the work is in
//! the library.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "auditchain",
    version,
    about = "Turns tenant-keyed, signed audit events on Kafka into a tamper-evident, verifiable audit trail",
    long_about = "auditchain consumes signed Avro audit events from Kafka, verifies each producer's \
Ed25519 signature, hash-chains every tenant's events with BLAKE3, quarantines what fails (never \
dropping it) and commits signed Merkle anchors, all exactly-once with Kafka transactions."
)]
struct Cli {
    /// Log as JSON lines instead of human-readable text.
    #[arg(long, global = true, env = "AUDITCHAIN_LOG_JSON")]
    log_json: bool,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check that a Kafka cluster (and schema registry) supports what auditchain needs:
    /// a committed and an aborted transaction on a scratch topic, read back read_committed.
    Smoke {
        /// Kafka bootstrap servers.
        #[arg(
            long,
            env = "KAFKA_BOOTSTRAP_SERVERS",
            default_value = "127.0.0.1:9092"
        )]
        bootstrap_servers: String,
        /// Confluent-compatible schema registry URL; without it the compiled-in schema is used.
        #[arg(long, env = "SCHEMA_REGISTRY_URL")]
        registry_url: Option<String>,
    },
    /// Create missing output topics and check existing ones against the input topic.
    Topics {
        /// The processor's configuration file.
        #[arg(long, short)]
        config: PathBuf,
    },
}

fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Smoke {
            bootstrap_servers,
            registry_url,
        } => {
            let report = auditchain::smoke::run(&bootstrap_servers, registry_url.as_deref())
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
        Command::Topics { config } => {
            let config = auditchain::config::Config::load(&config)
                .with_context(|| format!("loading {}", config.display()))?;
            let report = auditchain::kafka::ensure_topics(&config).await?;
            println!(
                "topics: input `{}` has {} partitions; created: {}",
                config.topics.input,
                report.input_partitions,
                if report.created.is_empty() {
                    "none".to_string()
                } else {
                    report.created.join(", ")
                }
            );
            Ok(())
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_json);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
