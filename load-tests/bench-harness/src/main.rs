//! `auditchain-bench`: the benchmark suite behind `load-tests/bench`
//! (see load-tests/README.md). `run` measures everything and writes
//! `results.json` and `table.md`; `passthrough` is the EOS copy loop the
//! run starts as a process of its own, so its CPU and memory are measured
//! like auditchain's.

mod kafka;
mod pace;
mod passthrough;
mod probe;
mod procstat;
mod report;
mod run;
mod verify_rate;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "auditchain-bench",
    about = "auditchain beside its baselines and a Kafka Streams peer"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Run the benchmark (load-tests/bench calls this).
    Run(RunArgs),
    /// The EOS passthrough baseline: copy INPUT to OUTPUT exactly once until SIGTERM.
    Passthrough {
        /// Kafka bootstrap servers.
        #[arg(long, env = "KAFKA_BOOTSTRAP_SERVERS")]
        bootstrap: String,
        /// Input topic.
        #[arg(long)]
        input: String,
        /// Output topic (as many partitions as the input).
        #[arg(long)]
        output: String,
        /// Consumer group.
        #[arg(long)]
        group: String,
    },
}

#[derive(clap::Args, Debug)]
struct RunArgs {
    /// Results directory (load-tests/results/bench-YYYYmmdd-HHMMSS).
    #[arg(long)]
    out: PathBuf,
    /// The repository root.
    #[arg(long, default_value = ".")]
    repo: PathBuf,
    /// Kafka bootstrap servers.
    #[arg(long, env = "KAFKA_BOOTSTRAP_SERVERS")]
    bootstrap: String,
    /// The stack's directory (`scripts/stack env`), to find the broker JVMs.
    #[arg(long, env = "AUDITCHAIN_STACK_DIR")]
    stack_dir: Option<PathBuf>,
    /// The auditchain binary to measure.
    #[arg(long)]
    auditchain_bin: PathBuf,
    /// The Kafka Streams peer's jar.
    #[arg(long)]
    peer_jar: PathBuf,
    /// Do not run the Kafka Streams peer.
    #[arg(long)]
    skip_peer: bool,
    /// `--threads` for the peer (its own default otherwise).
    #[arg(long)]
    peer_threads: Option<u32>,
    /// `--commit-interval-ms` for the peer (its own default otherwise).
    #[arg(long)]
    peer_commit_interval_ms: Option<u64>,
    /// Also run the scaling matrix (tenants, partitions, payload, instances).
    #[arg(long)]
    scaling: bool,
    /// Small backlog and 15 s latency steps: checks the harness, not the numbers.
    #[arg(long)]
    quick: bool,
    /// Backlog events (default 200,000; 50,000 with --quick).
    #[arg(long)]
    events: Option<u64>,
    /// Backlog tenants.
    #[arg(long, default_value_t = 200)]
    tenants: usize,
    /// Event payload bytes.
    #[arg(long, default_value_t = 256)]
    payload: usize,
    /// Input partitions.
    #[arg(long, default_value_t = 4)]
    partitions: i32,
    /// Seconds per latency step (default 60; 15 with --quick).
    #[arg(long)]
    step_seconds: Option<u64>,
    /// Do not run `cargo bench --bench pure_path` (never run with --quick).
    #[arg(long)]
    no_pure_path: bool,
    /// Keep the run's topics on the broker (deleted at the end otherwise).
    #[arg(long)]
    keep_topics: bool,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Cmd::Run(a) => {
            let quick = a.quick;
            let options = run::Options {
                out: a.out,
                repo: a.repo,
                bootstrap: a.bootstrap,
                stack_dir: a.stack_dir,
                auditchain_bin: a.auditchain_bin,
                bench_bin: std::env::current_exe().context("finding this binary")?,
                peer_jar: a.peer_jar,
                skip_peer: a.skip_peer,
                peer_threads: a.peer_threads,
                peer_commit_interval_ms: a.peer_commit_interval_ms,
                scaling: a.scaling,
                quick,
                events: a.events.unwrap_or(if quick { 50_000 } else { 200_000 }),
                tenants: a.tenants,
                payload: a.payload,
                partitions: a.partitions,
                step_seconds: a.step_seconds.unwrap_or(if quick { 15 } else { 60 }),
                warmup_seconds: if quick { 3 } else { 10 },
                verify_seconds: if quick { 1 } else { 3 },
                pure_path: !quick && !a.no_pure_path,
                keep_topics: a.keep_topics,
            };
            run::run(options)
        }
        Cmd::Passthrough {
            bootstrap,
            input,
            output,
            group,
        } => {
            let stop = Arc::new(AtomicBool::new(false));
            let flag = Arc::clone(&stop);
            // SIGTERM (from the bench) or ^C: commit what is open and exit.
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("starting the signal runtime")?;
            std::thread::Builder::new()
                .name("signals".into())
                .spawn(move || {
                    rt.block_on(async {
                        let term = tokio::signal::unix::signal(
                            tokio::signal::unix::SignalKind::terminate(),
                        );
                        match term {
                            Ok(mut term) => {
                                tokio::select! {
                                    _ = term.recv() => {}
                                    _ = tokio::signal::ctrl_c() => {}
                                }
                            }
                            Err(_) => {
                                let _ = tokio::signal::ctrl_c().await;
                            }
                        }
                    });
                    flag.store(true, Ordering::Relaxed);
                })
                .context("starting the signal thread")?;
            let args = passthrough::Args {
                bootstrap,
                input,
                output,
                group,
            };
            let copied = passthrough::run(&args, &stop)?;
            eprintln!("passthrough: copied {copied} records");
            Ok(())
        }
    }
}
