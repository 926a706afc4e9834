//! `auditchain run`: the processor, until SIGINT or SIGTERM.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::Context;

/// Arguments of `run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The configuration file (TOML; AUDITCHAIN__SECTION__FIELD overrides).
    #[arg(long, short)]
    config: PathBuf,
}

/// Runs the processor until a signal asks it to stop, then logs what the
/// run did.
pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    let config = auditchain::config::Config::load(&args.config)
        .with_context(|| format!("loading {}", args.config.display()))?;
    let export = auditchain::telemetry::OtlpExport::from_env(&config.kafka.instance_id)?;
    let traces = match &export {
        Some(export) => {
            tracing::info!(endpoint = %export.endpoint, "exporting traces over OTLP/HTTP");
            export.traces()
        }
        None => auditchain::telemetry::Traces::off(),
    };
    let shutdown = Arc::new(AtomicBool::new(false));
    stop_on_signal(Arc::clone(&shutdown));
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

/// Sets `shutdown` on SIGINT or SIGTERM: the loop finishes the open
/// transaction and leaves the group.
fn stop_on_signal(shutdown: Arc<AtomicBool>) {
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
        shutdown.store(true, Ordering::Relaxed);
    });
}
