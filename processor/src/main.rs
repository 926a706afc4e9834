//! The `auditchain` binary: argument parsing and logging only; the work is in
//! the library.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
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
    Run {
        /// The configuration file (TOML; AUDITCHAIN__SECTION__FIELD overrides).
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Write a new Ed25519 key pair: DIR/KEY_ID.secret (mode 0600) and DIR/KEY_ID.pub.
    Keygen {
        /// Directory to write the files into.
        #[arg(long)]
        dir: PathBuf,
        /// The key id (file name and the id producers or anchors carry).
        #[arg(long)]
        key_id: String,
    },
    /// Publish signed AuditEvents to the input topic, optionally mixed with bad records.
    Produce(commands::produce::ProduceArgs),
    /// Show the consumer group's lag on every input partition.
    Status {
        /// The processor's configuration file.
        #[arg(long, short)]
        config: PathBuf,
        /// Wait until the lag is 0 on every partition, failing after this many seconds.
        #[arg(long, value_name = "SECONDS")]
        wait_caught_up: Option<u64>,
    },
    /// Verify the audit trail: chains, anchors, signatures, and completeness against the input.
    /// Exit code 0: verified; 1: a verification failure; 2: could not run.
    Verify(commands::verify::VerifyArgs),
    /// Build the proof for one record: the record, its Merkle audit path and the signed anchor,
    /// as JSON that `check-proof` checks offline with public keys only.
    Prove {
        /// The processor's configuration file (topics, broker).
        #[arg(long, short)]
        config: PathBuf,
        /// Source partition of the record.
        #[arg(long)]
        partition: Option<u32>,
        /// Source offset of the record (with --partition).
        #[arg(long, requires = "partition", conflicts_with_all = ["tenant", "seq"])]
        offset: Option<u64>,
        /// Tenant of the record (with --seq).
        #[arg(long, requires = "seq")]
        tenant: Option<String>,
        /// Seq of the record in the tenant's chain (with --tenant).
        #[arg(long, requires = "tenant")]
        seq: Option<u64>,
        /// Write the proof here instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Work with quarantined records.
    #[command(subcommand)]
    Quarantine(QuarantineCommand),
    /// Export one tenant's records with the signed anchors that cover them and each record's
    /// Merkle audit path: a bundle (JSON Lines) that `check-bundle` verifies offline. It holds
    /// no other tenant's records.
    Export(commands::bundle::ExportArgs),
    /// Check a bundle from `export` offline, with public keys only. Exit code 0: it holds;
    /// 1: it does not; 2: could not run.
    CheckBundle(commands::bundle::CheckBundleArgs),
    /// Check a proof from `prove` offline. Exit code 0: it holds; 1: it does not; 2: could not run.
    CheckProof {
        /// The proof (JSON).
        #[arg(long)]
        proof: PathBuf,
        /// A processor public key, as KEY_ID=FILE (repeatable).
        #[arg(long = "processor-key", value_name = "KEY_ID=FILE", required = true)]
        processor_keys: Vec<String>,
        /// The producer key set (TOML), to check the producer's signature too.
        #[arg(long)]
        producer_keys: Option<PathBuf>,
    },
    /// Check that a Kafka cluster (and schema registry) supports what auditchain needs:
    /// a committed and an aborted transaction on a scratch topic, read back read_committed.
    Smoke {
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
    },
    /// Print the least-privilege Kafka ACLs of this deployment as `kafka-acls` commands
    /// (a shell script to run with an administrator's credentials), derived from the
    /// configuration: topics, group id, transactional id prefix.
    Acls(AclsArgs),
    /// Create missing output topics and check existing ones against the input topic.
    Topics {
        /// The processor's configuration file.
        #[arg(long, short)]
        config: PathBuf,
        /// Also create the input topic, with this many partitions, if it does not exist.
        #[arg(long)]
        create_input: Option<i32>,
    },
}

#[derive(Debug, clap::Args)]
struct AclsArgs {
    /// The processor's configuration file (topics, group id).
    #[arg(long, short)]
    config: PathBuf,
    /// Print the commands (the only mode: review them, then run them).
    #[arg(long, required = true)]
    print: bool,
    /// The processor's principal (`name` means `User:name`).
    #[arg(long, value_name = "PRINCIPAL")]
    processor: Option<String>,
    /// The principal of the services that publish events.
    #[arg(long, value_name = "PRINCIPAL")]
    producer: Option<String>,
    /// The auditors' principal (verify, prove).
    #[arg(long, value_name = "PRINCIPAL")]
    auditor: Option<String>,
    /// Let the producer use transactional ids with this prefix.
    #[arg(long, value_name = "PREFIX", requires = "producer")]
    producer_transactional_id_prefix: Option<String>,
    /// Bootstrap servers for kafka-acls (default: the config's).
    #[arg(long)]
    bootstrap_server: Option<String>,
    /// Client properties file with the administrator's credentials (--command-config).
    #[arg(long)]
    command_config: Option<String>,
    /// The kafka-acls executable.
    #[arg(long, default_value = "kafka-acls.sh")]
    kafka_acls: String,
}

#[derive(Debug, Subcommand)]
enum QuarantineCommand {
    /// Re-publish selected quarantined records to the input topic (key, value and headers
    /// preserved) in one transaction, once their cause is fixed.
    Replay {
        /// The processor's configuration file.
        #[arg(long, short)]
        config: PathBuf,
        /// Only this reason code (repeatable), e.g. UNKNOWN_KEY.
        #[arg(long)]
        reason: Vec<String>,
        /// Only records keyed by this tenant.
        #[arg(long)]
        tenant: Option<String>,
        /// Only this source partition (repeatable).
        #[arg(long)]
        partition: Vec<u32>,
        /// Only source offsets from this one on.
        #[arg(long)]
        from_offset: Option<u64>,
        /// ... up to this one.
        #[arg(long)]
        to_offset: Option<u64>,
        /// Count what would be replayed; write nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

async fn run_processor(config_path: PathBuf) -> anyhow::Result<()> {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let config = auditchain::config::Config::load(&config_path)
        .with_context(|| format!("loading {}", config_path.display()))?;
    let export = auditchain::telemetry::OtlpExport::from_env(&config.kafka.instance_id)?;
    let traces = match &export {
        Some(export) => {
            tracing::info!(endpoint = %export.endpoint, "exporting traces over OTLP/HTTP");
            export.traces()
        }
        None => auditchain::telemetry::Traces::off(),
    };
    let shutdown = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&shutdown);
    tokio::spawn(async move {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(error = %e, "cannot listen for SIGTERM");
                    return;
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        tracing::info!("shutdown requested: finishing the open transaction");
        flag.store(true, Ordering::Relaxed);
    });
    let rt = tokio::runtime::Handle::current();
    let summary = tokio::task::spawn_blocking(move || {
        let summary = auditchain::processor::run(Arc::new(config), shutdown, rt, traces);
        // Send the last spans before the process exits.
        if let Some(export) = export {
            export.shutdown();
        }
        summary
    })
    .await
    .context("the processor thread panicked")??;
    let s = &summary.stats;
    let quarantined: u64 = s.quarantined.values().sum();
    tracing::info!(
        chained = s.chained,
        quarantined,
        anchors = s.anchors,
        commits = s.commits,
        aborts = s.aborts,
        sessions = summary.sessions,
        "auditchain stopped"
    );
    Ok(())
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
    match cli.command {
        Command::Run { config } => run_processor(config).await,
        Command::Keygen { dir, key_id } => {
            let generated = auditchain::keys::keygen(&dir, &key_id)?;
            println!(
                "keygen: wrote {} (secret, mode 0600) and {}\npublic key: {}",
                generated.secret_path.display(),
                generated.public_path.display(),
                hex::encode(generated.public_key.to_bytes())
            );
            Ok(())
        }
        Command::Produce(args) => commands::produce::run(args).await,
        Command::Status {
            config,
            wait_caught_up,
        } => {
            tokio::task::spawn_blocking(move || commands::status::run(config, wait_caught_up))
                .await?
        }
        Command::Verify(args) => {
            tokio::task::spawn_blocking(move || commands::verify::run(args)).await?
        }
        Command::Prove {
            config,
            partition,
            offset,
            tenant,
            seq,
            out,
        } => {
            let target = match (offset, tenant, seq) {
                (Some(offset), _, _) => auditchain::prove::Target::Offset {
                    partition: partition.context("--offset needs --partition")?,
                    offset,
                },
                (None, Some(tenant), Some(seq)) => auditchain::prove::Target::Seq {
                    tenant,
                    seq,
                    partition,
                },
                _ => anyhow::bail!(
                    "name the record with --partition and --offset, or --tenant and --seq"
                ),
            };
            tokio::task::spawn_blocking(move || commands::prove::prove(config, target, out)).await?
        }
        Command::Quarantine(QuarantineCommand::Replay {
            config,
            reason,
            tenant,
            partition,
            from_offset,
            to_offset,
            dry_run,
        }) => {
            let config = auditchain::config::Config::load(&config)
                .with_context(|| format!("loading {}", config.display()))?;
            let reasons = reason
                .iter()
                .map(|r| {
                    auditchain::route::Reason::from_code(r)
                        .with_context(|| format!("--reason `{r}` is not a reason code"))
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            let selection = auditchain::replay::Selection {
                reasons,
                tenant,
                partitions: partition,
                offsets: match (from_offset, to_offset) {
                    (None, None) => None,
                    (lo, hi) => Some((lo.unwrap_or(0), hi.unwrap_or(u64::MAX))),
                },
            };
            let outcome = tokio::task::spawn_blocking(move || {
                auditchain::replay::replay(&config, &selection, dry_run)
            })
            .await??;
            let total: usize = outcome.by_reason.values().sum();
            println!("quarantine replay: {total} matching records");
            for (reason, n) in &outcome.by_reason {
                println!("  {reason}: {n}");
            }
            for (key, n) in &outcome.by_key {
                println!("  key {key}: {n}");
            }
            if dry_run {
                println!("quarantine replay: dry run, nothing written");
            } else {
                println!(
                    "quarantine replay: re-published {} records in one transaction",
                    outcome.published
                );
            }
            Ok(())
        }
        Command::CheckProof {
            proof,
            processor_keys,
            producer_keys,
        } => commands::prove::check_proof(proof, processor_keys, producer_keys),
        Command::Export(args) => {
            tokio::task::spawn_blocking(move || commands::bundle::export(args)).await?
        }
        Command::CheckBundle(args) => commands::bundle::check(args),
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
        Command::Acls(args) => {
            let config = auditchain::config::Config::load(&args.config)
                .with_context(|| format!("loading {}", args.config.display()))?;
            anyhow::ensure!(
                args.processor.is_some() || args.producer.is_some() || args.auditor.is_some(),
                "name at least one principal: --processor, --producer, --auditor"
            );
            let who = auditchain::acls::Principals {
                processor: args.processor,
                producer: args.producer,
                auditor: args.auditor,
                producer_transactional_id_prefix: args.producer_transactional_id_prefix,
            };
            let target = auditchain::acls::Target {
                command: args.kafka_acls,
                bootstrap_server: args
                    .bootstrap_server
                    .unwrap_or_else(|| config.kafka.bootstrap_servers.clone()),
                command_config: args.command_config,
            };
            debug_assert!(args.print);
            print!("{}", auditchain::acls::script(&config, &who, &target));
            Ok(())
        }
        Command::Topics {
            config,
            create_input,
        } => {
            let config = auditchain::config::Config::load(&config)
                .with_context(|| format!("loading {}", config.display()))?;
            if let Some(partitions) = create_input {
                if auditchain::kafka::create_topic_if_missing(
                    &config,
                    &config.topics.input,
                    partitions,
                )
                .await?
                {
                    println!(
                        "topics: created input `{}` with {partitions} partitions",
                        config.topics.input
                    );
                }
            }
            let report = auditchain::kafka::ensure_topics(&config).await?;
            println!(
                "topics: input `{}` has {} partitions and max.message.bytes {}; output records up to {} bytes; created: {}",
                config.topics.input,
                report.input_partitions,
                report.input_max_message_bytes,
                report.max_output_record_bytes,
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
        Err(e) if e.is::<NotVerified>() => ExitCode::from(EXIT_NOT_VERIFIED),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
