//! `auditchain prove` and `auditchain check-proof`.

use std::path::PathBuf;

use anyhow::Context;

use super::NotVerified;

/// Arguments of `prove`.
#[derive(Debug, clap::Args)]
pub struct ProveArgs {
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
}

/// Arguments of `check-proof`.
#[derive(Debug, clap::Args)]
pub struct CheckProofArgs {
    /// The proof (JSON).
    #[arg(long)]
    proof: PathBuf,
    /// A processor public key, as KEY_ID=FILE (repeatable).
    #[arg(long = "processor-key", value_name = "KEY_ID=FILE", required = true)]
    processor_keys: Vec<String>,
    /// The producer key set (TOML), to check the producer's signature too.
    #[arg(long)]
    producer_keys: Option<PathBuf>,
}

/// Runs `prove` (blocking: call it off the async runtime).
pub fn prove(args: ProveArgs) -> anyhow::Result<()> {
    let target = match (args.offset, args.tenant, args.seq) {
        (Some(offset), _, _) => auditchain::prove::Target::Offset {
            partition: args.partition.context("--offset needs --partition")?,
            offset,
        },
        (None, Some(tenant), Some(seq)) => auditchain::prove::Target::Seq {
            tenant,
            seq,
            partition: args.partition,
        },
        _ => anyhow::bail!("name the record with --partition and --offset, or --tenant and --seq"),
    };
    let (config, out) = (args.config, args.out);
    let config = auditchain::config::Config::load(&config)
        .with_context(|| format!("loading {}", config.display()))?;
    let proof = auditchain::prove::prove(&config, &target)?;
    let text = serde_json::to_string_pretty(&proof)? + "\n";
    match out {
        Some(path) => {
            std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?
        }
        None => print!("{text}"),
    }
    Ok(())
}

/// Runs `check-proof`.
pub fn check_proof(args: CheckProofArgs) -> anyhow::Result<()> {
    let CheckProofArgs {
        proof,
        processor_keys: processor,
        producer_keys,
    } = args;
    let text =
        std::fs::read_to_string(&proof).with_context(|| format!("reading {}", proof.display()))?;
    let proof: auditchain::prove::Proof =
        serde_json::from_str(&text).with_context(|| format!("{} is not a proof", "the file"))?;
    let keys = auditchain::keys::load_processor_keys(&processor)?;
    let producer = producer_keys
        .map(|p| auditchain::keys::KeySet::load(&p))
        .transpose()?;
    let problems = auditchain::prove::check_proof(&proof, &keys, producer.as_ref());
    if problems.is_empty() {
        println!(
            "check-proof: OK — {}/{}@{} is committed by anchor {} (signed by `{}`)",
            proof.source_topic,
            proof.source_partition,
            proof.source_offset,
            proof.anchor.anchor_seq,
            proof.anchor.signer_key_id
        );
        Ok(())
    } else {
        println!("check-proof: FAILED");
        for p in &problems {
            println!("  {p}");
        }
        Err(NotVerified.into())
    }
}
