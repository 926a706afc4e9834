//! `auditchain export` and `auditchain check-bundle`.

use std::path::PathBuf;

use anyhow::Context;

use super::NotVerified;

/// `export`'s arguments.
#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// The processor's configuration file (topics, broker, producer key set).
    #[arg(long, short)]
    config: PathBuf,
    /// The tenant.
    #[arg(long)]
    tenant: String,
    /// First seq of its chain to export.
    #[arg(long, default_value_t = 1)]
    from_seq: u64,
    /// Last seq to export (the end of the trail when absent).
    #[arg(long)]
    to_seq: Option<u64>,
    /// Only this source partition (repeatable; all when absent).
    #[arg(long)]
    partition: Vec<i32>,
    /// Where to write the bundle.
    #[arg(long)]
    out: PathBuf,
}

/// `check-bundle`'s arguments.
#[derive(Debug, clap::Args)]
pub struct CheckBundleArgs {
    /// The bundle (from `export`).
    #[arg(long)]
    bundle: PathBuf,
    /// A processor public key, as KEY_ID=FILE (repeatable).
    #[arg(long = "processor-key", value_name = "KEY_ID=FILE", required = true)]
    processor_keys: Vec<String>,
    /// The producer key set (TOML) to check producer signatures against; without it they are
    /// checked against the keys the bundle carries, which proves less.
    #[arg(long)]
    producer_keys: Option<PathBuf>,
}

/// Runs `export`.
pub fn export(args: ExportArgs) -> anyhow::Result<()> {
    let config = auditchain::config::Config::load(&args.config)
        .with_context(|| format!("loading {}", args.config.display()))?;
    auditchain::kafka::check_connection(&config)?;
    let selection = auditchain::bundle::Selection {
        tenant: args.tenant.clone(),
        from_seq: args.from_seq,
        to_seq: args.to_seq,
        partitions: (!args.partition.is_empty()).then(|| args.partition.clone()),
    };
    let file = std::fs::File::create(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let mut out = std::io::BufWriter::new(file);
    let exported = auditchain::bundle::export(&config, &selection, &mut out)?;
    anyhow::ensure!(
        exported.records > 0,
        "tenant `{}` has no chained records in seqs {}..{} of the trail",
        args.tenant,
        args.from_seq,
        args.to_seq.map_or(String::new(), |s| s.to_string())
    );
    println!(
        "export: {} records of `{}` under {} anchors (partitions {:?}) written to {}",
        exported.records,
        args.tenant,
        exported.anchors,
        exported.partitions,
        args.out.display()
    );
    Ok(())
}

/// Runs `check-bundle`.
pub fn check(args: CheckBundleArgs) -> anyhow::Result<()> {
    let keys = auditchain::keys::load_processor_keys(&args.processor_keys)?;
    let producer = args
        .producer_keys
        .as_deref()
        .map(auditchain::keys::KeySet::load)
        .transpose()?;
    // Opened once more for the keys it carries when no key set is given.
    let open = || {
        std::fs::File::open(&args.bundle)
            .map(std::io::BufReader::new)
            .map_err(|e| auditchain::Error::Io {
                path: args.bundle.clone(),
                source: e,
            })
    };
    let report = auditchain::bundle::check_bundle(open, &keys, producer.as_ref())?;
    for (partition, (first, last)) in &report.chains {
        println!(
            "check-bundle: `{}` partition {partition}: seqs {first}..={last}",
            report.tenant_id
        );
    }
    if !report.producer_keys_given {
        println!("check-bundle: producer signatures checked against the keys the bundle carries (give --producer-keys to check them against yours)");
    }
    if report.ok() {
        // What a bundle cannot show: records after its last seq (its last
        // anchor signs the tenant's head as of then, nothing later).
        println!(
            "check-bundle: OK — {} records under {} signed anchors, each chain unbroken from its first seq to its last{}",
            report.records,
            report.anchors,
            if report.complete_from_start() {
                ", complete from seq 1"
            } else {
                ""
            }
        );
        Ok(())
    } else {
        println!(
            "check-bundle: FAILED with {} problems",
            report.problems.len()
        );
        for p in report.problems.iter().take(20) {
            println!("  {p}");
        }
        Err(NotVerified.into())
    }
}
