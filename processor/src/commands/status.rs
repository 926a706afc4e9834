//! `auditchain status`: the group's lag per input partition.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;

/// Runs `status`: prints the lag, after waiting up to `wait` seconds for it
/// to reach 0 when asked.
pub fn run(config: PathBuf, wait: Option<u64>) -> anyhow::Result<()> {
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
