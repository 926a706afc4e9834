//! The `auditchain` binary: argument parsing and logging only; the work is in
//! the library.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod commands;

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
    #[arg(
        long,
        global = true,
        env = "AUDITCHAIN_LOG_JSON",
        hide_env_values = true
    )]
    log_json: bool,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the processor: consume, verify, chain, quarantine, anchor, exactly-once.
    /// Stops cleanly on SIGINT or SIGTERM (the open transaction is committed).
    ///
    /// Traces: set OTEL_EXPORTER_OTLP_ENDPOINT (e.g. http://otel-collector:4318)
    /// to export a span per transaction, linked to the input records'
    /// `traceparent` headers, over OTLP/HTTP; the other standard OTEL_*
    /// variables apply. Off when unset.
    Run(commands::run::RunArgs),
    /// Write a new Ed25519 key pair: DIR/KEY_ID.secret (mode 0600) and DIR/KEY_ID.pub.
    Keygen(commands::keygen::KeygenArgs),
    /// Publish signed AuditEvents to the input topic, optionally mixed with bad records.
    Produce(commands::produce::ProduceArgs),
    /// Show the consumer group's lag on every input partition.
    Status(commands::status::StatusArgs),
    /// Verify the audit trail: chains, anchors, signatures, and completeness against the input.
    /// Exit code 0: verified; 1: a verification failure; 2: could not run.
    Verify(commands::verify::VerifyArgs),
    /// Build the proof for one record: the record, its Merkle audit path and the signed anchor,
    /// as JSON that `check-proof` checks offline with public keys only.
    Prove(commands::prove::ProveArgs),
    /// Work with quarantined records.
    #[command(subcommand)]
    Quarantine(commands::quarantine::QuarantineCommand),
    /// Export one tenant's records with the signed anchors that cover them and each record's
    /// Merkle audit path: a bundle (JSON Lines) that `check-bundle` verifies offline. It holds
    /// no other tenant's records.
    Export(commands::bundle::ExportArgs),
    /// Check a bundle from `export` offline, with public keys only. Exit code 0: it holds;
    /// 1: it does not; 2: could not run.
    CheckBundle(commands::bundle::CheckBundleArgs),
    /// Check a proof from `prove` offline. Exit code 0: it holds; 1: it does not; 2: could not run.
    CheckProof(commands::prove::CheckProofArgs),
    /// Check that a Kafka cluster (and schema registry) supports what auditchain needs:
    /// a committed and an aborted transaction on a scratch topic, read back read_committed.
    Smoke(commands::smoke::SmokeArgs),
    /// Print the least-privilege Kafka ACLs of this deployment as `kafka-acls` commands
    /// (a shell script to run with an administrator's credentials), derived from the
    /// configuration: topics, group id, transactional id prefix.
    Acls(commands::acls::AclsArgs),
    /// Create missing output topics and check existing ones against the input topic; show
    /// what each trail topic keeps (it must keep every record for good).
    Topics(commands::topics::TopicsArgs),
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

/// Exit code for "verification failed" (2 is "could not run").
const EXIT_NOT_VERIFIED: u8 = 1;

use commands::NotVerified;

async fn run(cli: Cli) -> anyhow::Result<()> {
    use commands::*;
    // Commands that block on Kafka run off the async runtime.
    match cli.command {
        Command::Run(args) => run::run(args).await,
        Command::Keygen(args) => keygen::run(args),
        Command::Produce(args) => produce::run(args).await,
        Command::Status(args) => tokio::task::spawn_blocking(move || status::run(args)).await?,
        Command::Verify(args) => tokio::task::spawn_blocking(move || verify::run(args)).await?,
        Command::Prove(args) => tokio::task::spawn_blocking(move || prove::prove(args)).await?,
        Command::Quarantine(command) => quarantine::run(command).await,
        Command::CheckProof(args) => prove::check_proof(args),
        Command::Export(args) => tokio::task::spawn_blocking(move || bundle::export(args)).await?,
        Command::CheckBundle(args) => bundle::check(args),
        Command::Smoke(args) => smoke::run(args).await,
        Command::Acls(args) => acls::run(args),
        Command::Topics(args) => topics::run(args).await,
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
        Err(e) if e.is::<NotVerified>() => ExitCode::from(EXIT_NOT_VERIFIED),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
