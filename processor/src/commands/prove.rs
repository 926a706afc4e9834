//! `auditchain prove` and `auditchain check-proof`.

use std::path::PathBuf;

use anyhow::Context;

use super::NotVerified;

/// Runs `prove`.
pub fn prove(
    config: PathBuf,
    target: auditchain::prove::Target,
    out: Option<PathBuf>,
) -> anyhow::Result<()> {
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
pub fn check_proof(
    proof: PathBuf,
    processor: Vec<String>,
    producer_keys: Option<PathBuf>,
) -> anyhow::Result<()> {
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
