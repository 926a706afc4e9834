//! `auditchain verify`.

use std::path::PathBuf;

use anyhow::Context;

use super::NotVerified;

/// `verify`'s arguments.
#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// The processor's configuration file (topics, broker, producer key set).
    #[arg(long, short)]
    config: PathBuf,
    /// A processor public key that anchors may be signed with, as KEY_ID=FILE (repeatable:
    /// every key used since the trail began, for rotation).
    #[arg(long = "processor-key", value_name = "KEY_ID=FILE", required = true)]
    processor_keys: Vec<String>,
    /// Skip the completeness check against the input topic.
    #[arg(long)]
    no_input: bool,
    /// Only this source partition (repeatable).
    #[arg(long)]
    partition: Vec<i32>,
    /// Only this tenant's chains (completeness is then not checked).
    #[arg(long)]
    tenant: Option<String>,
    /// Check completeness for input offsets from this one on.
    #[arg(long)]
    from_offset: Option<u64>,
    /// ... up to this one.
    #[arg(long)]
    to_offset: Option<u64>,
    /// Verify incrementally: resume from this checkpoint file when it
    /// exists (checking only what follows the anchors it recorded), and
    /// write the new one there when the trail verifies. Only for a whole
    /// verify (not with --no-input, --tenant or an offset range). Keep it
    /// as evidence: it is what the next run trusts.
    #[arg(long, value_name = "FILE")]
    checkpoint: Option<PathBuf>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

/// Runs `verify`.
pub fn run(args: VerifyArgs) -> anyhow::Result<()> {
    use std::io::IsTerminal;
    let config = auditchain::config::Config::load(&args.config)
        .with_context(|| format!("loading {}", args.config.display()))?;
    anyhow::ensure!(
        args.checkpoint.is_none()
            || !(args.no_input || args.tenant.is_some() || args.from_offset.is_some() || args.to_offset.is_some()),
        "--checkpoint needs a whole verify: not with --no-input, --tenant, --from-offset or --to-offset (a checkpoint vouches for everything before it)"
    );
    let keys = auditchain::keys::load_processor_keys(&args.processor_keys)?;
    let producer_keys = auditchain::keys::KeySet::load(&config.producer_keys.file)?;
    auditchain::kafka::check_connection(&config)?;
    let options = auditchain::verify::Options {
        partitions: (!args.partition.is_empty()).then(|| args.partition.clone()),
        tenant: args.tenant.clone(),
        offsets: match (args.from_offset, args.to_offset) {
            (None, None) => None,
            (lo, hi) => Some((lo.unwrap_or(0), hi.unwrap_or(u64::MAX))),
        },
        check_input: !args.no_input,
        checkpoint: args.checkpoint.is_some(),
        resume: args
            .checkpoint
            .as_deref()
            .map(auditchain::verify::Checkpoint::load)
            .transpose()?
            .flatten(),
    };
    let resumed = options.resume.is_some();
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = indicatif::ProgressBar::new(0);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "verifying {human_pos}/{human_len} records {wide_bar} {per_sec} ETA {eta}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar
    });
    let report =
        auditchain::verify::verify(&config, &producer_keys, &keys, &options, |done, total| {
            if let Some(bar) = &bar {
                bar.set_length(total);
                bar.set_position(done);
            }
        })?;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let saved = match (&args.checkpoint, report.ok()) {
        (Some(path), true) => {
            auditchain::verify::Checkpoint::of(&config, options.resume.as_ref(), &report.states)
                .save(path)?;
            Some(path.display().to_string())
        }
        _ => None,
    };
    if args.json {
        let mut json = report.to_json();
        json["resumed_from_checkpoint"] = resumed.into();
        json["checkpoint_written"] = saved.clone().into();
        println!("{}", serde_json::to_string_pretty(&json)?);
    } else {
        print_text(&report, resumed, saved.as_deref());
    }
    if report.ok() {
        Ok(())
    } else {
        Err(NotVerified.into())
    }
}

/// The report as text: counts, then the first problems.
fn print_text(report: &auditchain::verify::Report, resumed: bool, saved: Option<&str>) {
    println!(
        "verify: {} chained records in {} chains, {} quarantined, {} anchors",
        report.chained,
        report.chains.len(),
        report.quarantined,
        report.anchors
    );
    for (reason, n) in &report.quarantined_by_reason {
        println!("  quarantined {reason}: {n}");
    }
    if resumed {
        println!("  resumed from the checkpoint: only what follows it was read");
    }
    match report.input_records {
        Some(n) => println!("  input records compared: {n}"),
        None => println!("  completeness against the input: not checked"),
    }
    if let Some(n) = report.pending.filter(|n| *n > 0) {
        println!("  input records not processed yet (past the group's committed offsets): {n}");
    }
    if let Some(n) = report.input_trimmed.filter(|n| *n > 0) {
        println!(
            "  output records whose input retention has deleted: {n} (checked in every way but completeness)"
        );
    }
    if let Some(path) = &saved {
        println!("  checkpoint written: {path}");
    }
    if report.ok() {
        println!("verify: OK — nothing lost, altered, duplicated or reordered");
    } else {
        println!(
            "verify: FAILED with {} problems; first broken place: {}",
            report.problems.len() + report.omitted,
            report.problems.first().map_or("", |p| p.place.as_str())
        );
        for p in report.problems.iter().take(20) {
            println!("  {}: {}", p.place, p.what);
        }
    }
}
