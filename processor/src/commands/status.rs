//! `auditchain status`: the group's lag per input partition.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;

/// Arguments of `status`.
#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// The processor's configuration file.
    #[arg(long, short)]
    config: PathBuf,
    /// Wait until the lag is 0 on every partition, failing after this many seconds.
    #[arg(long, value_name = "SECONDS")]
    wait_caught_up: Option<u64>,
}

/// Runs `status`: prints the lag, after waiting for it to reach 0 when
/// asked (blocking: call it off the async runtime).
pub fn run(args: StatusArgs) -> anyhow::Result<()> {
    let (config, wait) = (args.config, args.wait_caught_up);
    let config = auditchain::config::Config::load(&config)
        .with_context(|| format!("loading {}", config.display()))?;
    auditchain::kafka::check_connection(&config)?;
    let lag = match wait {
        Some(secs) => auditchain::kafka::wait_caught_up(&config, Duration::from_secs(secs))?,
        None => auditchain::kafka::group_lag(&config)?,
    };
    let total: i64 = lag.iter().map(|l| l.records()).sum();
    println!("partition  high-watermark  committed  lag");
    for l in &lag {
        println!(
            "{:>9}  {:>14}  {:>9}  {:>3}",
            l.partition,
            l.high,
            l.committed,
            l.records()
        );
    }
    println!("group `{}` lag: {total} records", config.kafka.group_id);
    Ok(())
}
