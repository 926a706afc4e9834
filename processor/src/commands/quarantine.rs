//! `auditchain quarantine replay`: re-publish quarantined records.

use std::path::PathBuf;

use anyhow::Context;

/// `auditchain quarantine ...`.
#[derive(Debug, clap::Subcommand)]
pub enum QuarantineCommand {
    /// Re-publish selected quarantined records to the input topic (key, value and headers
    /// preserved) in one transaction, once their cause is fixed.
    Replay(ReplayArgs),
}

/// Arguments of `quarantine replay`.
#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
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
}

/// Runs a `quarantine` subcommand.
pub async fn run(command: QuarantineCommand) -> anyhow::Result<()> {
    match command {
        QuarantineCommand::Replay(args) => replay(args).await,
    }
}

async fn replay(args: ReplayArgs) -> anyhow::Result<()> {
    let config = auditchain::config::Config::load(&args.config)
        .with_context(|| format!("loading {}", args.config.display()))?;
    let reasons = args
        .reason
        .iter()
        .map(|r| {
            auditchain::route::Reason::from_code(r)
                .with_context(|| format!("--reason `{r}` is not a reason code"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let selection = auditchain::replay::Selection {
        reasons,
        tenant: args.tenant,
        partitions: args.partition,
        offsets: match (args.from_offset, args.to_offset) {
            (None, None) => None,
            (lo, hi) => Some((lo.unwrap_or(0), hi.unwrap_or(u64::MAX))),
        },
    };
    let dry_run = args.dry_run;
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
