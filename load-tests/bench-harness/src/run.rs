//! The whole benchmark, in order: the strict-verify ceiling (and the pure
//! path criterion bench), a backlog, the EOS passthrough, auditchain and
//! the Kafka Streams peer draining it, latency under paced load for
//! auditchain and the peer, and (optionally) scaling. Every system runs
//! alone, one after the other, on the same stack.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use auditchain_producer::SigningKey;
use serde::Serialize;

use crate::kafka::{
    committed_sum, create_topics, high_watermarks, offsets_reader, partitions, TopicSpec,
};
use crate::pace::Pacer;
use crate::probe::{Mode, Probe, Sample};
use crate::procstat::{self, Machine};
use crate::report;
use crate::verify_rate::{self, VerifyRate};

/// What to run, from the command line.
#[derive(Debug, Clone)]
pub struct Options {
    /// Results directory (created).
    pub out: PathBuf,
    /// The repository root (for `cargo bench`).
    pub repo: PathBuf,
    /// Kafka bootstrap servers.
    pub bootstrap: String,
    /// The stack's directory, to find the broker JVMs.
    pub stack_dir: Option<PathBuf>,
    /// The auditchain binary measured.
    pub auditchain_bin: PathBuf,
    /// This binary (for the passthrough child process).
    pub bench_bin: PathBuf,
    /// The Kafka Streams peer's jar.
    pub peer_jar: PathBuf,
    /// Skip the peer.
    pub skip_peer: bool,
    /// `--threads` for the peer, if given.
    pub peer_threads: Option<u32>,
    /// `--commit-interval-ms` for the peer, if given.
    pub peer_commit_interval_ms: Option<u64>,
    /// Run the scaling matrix.
    pub scaling: bool,
    /// Small sizes, short steps.
    pub quick: bool,
    /// Backlog events.
    pub events: u64,
    /// Backlog tenants.
    pub tenants: usize,
    /// Payload bytes.
    pub payload: usize,
    /// Input partitions.
    pub partitions: i32,
    /// Seconds of each latency step.
    pub step_seconds: u64,
    /// Seconds of warm-up before the latency steps.
    pub warmup_seconds: u64,
    /// Seconds per rate of the strict-verify measurement.
    pub verify_seconds: u64,
    /// Run `cargo bench --bench pure_path`.
    pub pure_path: bool,
    /// Leave the run's topics on the broker (for a second look with
    /// `auditchain verify`); deleted at the end otherwise.
    pub keep_topics: bool,
}

/// One drain of a pre-filled backlog.
#[derive(Debug, Clone, Serialize)]
pub struct Drain {
    /// Which system.
    pub system: String,
    /// Instances.
    pub instances: usize,
    /// Backlog records.
    pub events: u64,
    /// Process start to the first output record visible to a
    /// `read_committed` consumer.
    pub startup_s: Option<f64>,
    /// Process start to the group's first committed offsets.
    pub first_commit_s: f64,
    /// Process start to lag 0.
    pub total_s: f64,
    /// The steady window: first commit to lag 0.
    pub window_s: f64,
    /// Records committed in the steady window.
    pub window_events: u64,
    /// Steady-state events/s (`None` when one transaction held the whole
    /// backlog: make the backlog larger).
    pub steady_per_s: Option<f64>,
    /// CPU seconds of the system's processes in the window.
    pub cpu_s: f64,
    /// ... of the broker JVM(s) in the window (`None`: not found).
    pub broker_cpu_s: Option<f64>,
    /// Processor CPU per event in the window, µs.
    pub cpu_us_per_event: Option<f64>,
    /// Broker CPU per event in the window, µs.
    pub broker_cpu_us_per_event: Option<f64>,
    /// Cores busy in the window (system processes / broker).
    pub cores_busy: Option<f64>,
    /// Broker cores busy in the window.
    pub broker_cores_busy: Option<f64>,
    /// Peak RSS of each instance (VmHWM), MiB.
    pub peak_rss_mib: Vec<f64>,
    /// The trail's verification (auditchain only).
    pub verify: Option<Verified>,
    /// Samples of the group's offsets taken in the steady window (about
    /// one per 50 ms; far fewer means slow offset requests, and a coarse
    /// window).
    pub window_samples: u32,
}

/// `auditchain verify`'s verdict.
#[derive(Debug, Clone, Serialize)]
pub struct Verified {
    /// OK?
    pub ok: bool,
    /// Chained records it read.
    pub chained: u64,
    /// First lines of its report when it failed.
    pub detail: String,
}

/// One offered load.
#[derive(Debug, Clone, Serialize)]
pub struct LatencyStep {
    /// Fraction of the measured maximum.
    pub fraction: f64,
    /// Offered events/s.
    pub offered_per_s: f64,
    /// Sent events/s.
    pub achieved_per_s: f64,
    /// Latency samples counted (produced in the step, after its first second).
    pub samples: usize,
    /// Percentiles, ms.
    pub p50_ms: Option<f64>,
    /// p99, ms.
    pub p99_ms: Option<f64>,
    /// p99.9, ms.
    pub p999_ms: Option<f64>,
    /// max, ms.
    pub max_ms: Option<f64>,
}

/// Latency under load of one system.
#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    /// Which system.
    pub system: String,
    /// The maximum the loads are fractions of (its steady drain rate).
    pub max_per_s: f64,
    /// Seconds per step.
    pub step_s: u64,
    /// The steps.
    pub steps: Vec<LatencyStep>,
    /// Records delivered to the input but never seen by the probe.
    pub unseen: u64,
    /// Records the probe could not decode.
    pub undecodable: u64,
    /// Peak RSS of the instance, MiB.
    pub peak_rss_mib: Vec<f64>,
    /// The trail's verification (auditchain only).
    pub verify: Option<Verified>,
}

/// One point of the scaling matrix.
#[derive(Debug, Clone, Serialize)]
pub struct ScalePoint {
    /// `tenants`, `partitions`, `payload` or `instances`.
    pub dimension: String,
    /// Its value.
    pub value: u64,
    /// Backlog.
    pub events: u64,
    /// Tenants.
    pub tenants: usize,
    /// Partitions.
    pub partitions: i32,
    /// Payload bytes.
    pub payload: usize,
    /// The drain.
    pub drain: Drain,
    /// After the drain, a restart of one instance: process start to its
    /// "partitions restored" log line (so process start and the group join
    /// are included: an upper bound on the restore itself). Tenant points only.
    pub restart_restored_s: Option<f64>,
    /// RSS of that restarted instance once restored, MiB.
    pub restart_rss_mib: Option<f64>,
    /// The restore itself, as the restarted instance reports it
    /// (`auditchain_restore_duration_seconds_sum` on its /metrics).
    pub restart_restore_s: Option<f64>,
}

/// Everything measured.
#[derive(Debug, Clone, Serialize)]
pub struct Results {
    /// UTC start, `YYYY-mm-dd HH:MM:SS`.
    pub started_utc: String,
    /// Wall time of the whole run, s.
    pub elapsed_s: f64,
    /// Wall time per part, s.
    pub parts_s: Vec<(String, f64)>,
    /// The machine.
    pub machine: Machine,
    /// Quick mode?
    pub quick: bool,
    /// The binary measured.
    pub auditchain_bin: String,
    /// Backlog layout.
    pub events: u64,
    /// Tenants.
    pub tenants: usize,
    /// Payload bytes.
    pub payload: usize,
    /// Partitions.
    pub partitions: i32,
    /// Broker JVMs found.
    pub brokers: usize,
    /// Strict-verify rate.
    pub verify_rate: Option<VerifyRate>,
    /// `pure_path/all_cores` from criterion, events/s.
    pub pure_path_all_cores_per_s: Option<f64>,
    /// `pure_path/one_core`, events/s.
    pub pure_path_one_core_per_s: Option<f64>,
    /// Drains of the main backlog.
    pub drains: Vec<Drain>,
    /// Latency runs.
    pub latency: Vec<Latency>,
    /// Scaling.
    pub scaling: Vec<ScalePoint>,
    /// Why a part did not run.
    pub notes: Vec<String>,
}

/// A system under test.
#[derive(Debug, Clone)]
enum Sut {
    Auditchain {
        config: PathBuf,
        instances: usize,
    },
    Passthrough {
        input: String,
        output: String,
        group: String,
    },
    Peer {
        input: String,
        output: String,
        quarantine: String,
        app_id: String,
    },
}

impl Sut {
    fn name(&self) -> &'static str {
        match self {
            Sut::Auditchain { .. } => "auditchain",
            Sut::Passthrough { .. } => "passthrough",
            Sut::Peer { .. } => "kstreams-peer",
        }
    }
}

/// A backlog (or latency input) and the auditchain config over it.
#[derive(Debug, Clone)]
struct Topics {
    prefix: String,
    config: PathBuf,
}

impl Topics {
    fn input(&self) -> String {
        format!("{}.events", self.prefix)
    }
    fn chained(&self) -> String {
        format!("{}.chained", self.prefix)
    }
}

struct Bench {
    o: Options,
    work: PathBuf,
    run_id: String,
    ticks: f64,
    brokers: Vec<u32>,
    parts: Vec<(String, f64)>,
    notes: Vec<String>,
    failures: Vec<String>,
}

fn now_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

/// Per second of produce time: samples, p50, p99 and max latency, so a
/// step's tail can be placed in time (a single stall shows as one bad
/// second, a steady queue as every second).
fn timeline(samples: &[Sample]) -> String {
    let mut by_second: std::collections::BTreeMap<i64, Vec<f64>> = Default::default();
    for s in samples {
        by_second
            .entry(s.source_ms.div_euclid(1000))
            .or_default()
            .push(s.latency_ms);
    }
    let first = by_second.keys().next().copied().unwrap_or(0);
    let mut out = String::from("second\tsamples\tp50_ms\tp99_ms\tmax_ms\n");
    for (second, mut lat) in by_second {
        lat.sort_by(f64::total_cmp);
        let ms = |v: Option<f64>| v.map_or("?".into(), |v| format!("{v:.0}"));
        out.push_str(&format!(
            "{}\t{}\t{}\t{}\t{}\n",
            second - first,
            lat.len(),
            ms(percentile(&lat, 0.5)),
            ms(percentile(&lat, 0.99)),
            ms(lat.last().copied())
        ));
    }
    out
}

fn percentile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some(sorted[rank - 1])
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Runs `cmd` to completion, its output to `log`; fails with the log's
/// tail when it fails.
fn run_logged(mut cmd: Command, log: &Path, what: &str) -> Result<()> {
    let file = std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
    let status = cmd
        .stdout(file.try_clone().context("duplicating a log handle")?)
        .stderr(file)
        .status()
        .with_context(|| format!("{what}: starting {cmd:?}"))?;
    if !status.success() {
        bail!("{what} failed ({status}):\n{}", tail(log, 20));
    }
    Ok(())
}

/// Sends SIGTERM (through `kill(1)`: the crate forbids `unsafe`).
fn terminate(child: &mut Child) -> Result<()> {
    if child.try_wait()?.is_none() {
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .context("running kill")?;
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait()?.is_none() {
        if Instant::now() > deadline {
            eprintln!(
                "bench: pid {} ignored SIGTERM for 60 s; killing it",
                child.id()
            );
            child.kill().context("killing a child")?;
            child.wait().context("reaping a child")?;
            break;
        }
        // Waiting for a process to exit; there is nothing to block on.
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// Children that are stopped (SIGTERM) when dropped, so a failed phase
/// never leaves a processor running into the next one.
struct Running {
    children: Vec<Child>,
    logs: Vec<PathBuf>,
}

impl Running {
    fn pids(&self) -> Vec<u32> {
        self.children.iter().map(Child::id).collect()
    }
    fn check_alive(&mut self, what: &str) -> Result<()> {
        for (c, log) in self.children.iter_mut().zip(&self.logs) {
            if let Some(status) = c.try_wait()? {
                bail!(
                    "{what}: pid {} exited early ({status}); log {}:\n{}",
                    c.id(),
                    log.display(),
                    tail(log, 25)
                );
            }
        }
        Ok(())
    }
    fn peak_rss(&self) -> Vec<f64> {
        self.pids()
            .iter()
            .filter_map(|p| procstat::status_mib(*p, "VmHWM"))
            .collect()
    }
    fn stop(&mut self) -> Result<()> {
        for c in &mut self.children {
            terminate(c)?;
        }
        self.children.clear();
        Ok(())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = terminate(c);
        }
    }
}

/// Measurements at one moment of a drain.
#[derive(Debug, Clone, Copy)]
struct Mark {
    at: Instant,
    committed: i64,
    cpu: u64,
    broker: u64,
}

impl Bench {
    fn write_timeline(&self, name: &str, samples: &[Sample]) -> Result<()> {
        let path = self.work.join(format!("{name}-latency-seconds.tsv"));
        std::fs::write(&path, timeline(samples))
            .with_context(|| format!("writing {}", path.display()))
    }

    fn sum_ticks(pids: &[u32]) -> u64 {
        pids.iter().filter_map(|p| procstat::cpu_ticks(*p)).sum()
    }

    fn part<T>(&mut self, name: &str, f: impl FnOnce(&mut Bench) -> Result<T>) -> Result<T> {
        eprintln!("bench: == {name}");
        let started = Instant::now();
        let r = f(self);
        let secs = started.elapsed().as_secs_f64();
        eprintln!("bench: == {name}: {secs:.1} s");
        self.parts.push((name.to_string(), secs));
        r
    }

    fn keys(&self) -> Result<()> {
        let dir = self.work.join("keys");
        std::fs::create_dir_all(&dir)?;
        for id in ["processor-1", "load-producer"] {
            if !dir.join(format!("{id}.secret")).exists() {
                let mut cmd = Command::new(&self.o.auditchain_bin);
                cmd.args(["keygen", "--key-id", id, "--dir"]).arg(&dir);
                run_logged(cmd, &self.work.join(format!("keygen-{id}.log")), "keygen")?;
            }
        }
        let public = std::fs::read_to_string(dir.join("load-producer.pub"))?;
        std::fs::write(
            dir.join("producers.toml"),
            format!(
                "[[keys]]\nkey_id = \"load-producer\"\npublic_key = \"{}\"\n",
                public.trim()
            ),
        )?;
        Ok(())
    }

    fn producer_key(&self) -> Result<SigningKey> {
        SigningKey::from_file(self.work.join("keys/load-producer.secret"), "load-producer")
            .context("loading the load producer's key")
    }

    /// Writes an auditchain config for topics `<run>.<name>.*` and creates
    /// them (`auditchain topics --create-input`).
    fn topics(&self, name: &str, partitions: i32) -> Result<Topics> {
        let prefix = format!("{}.{name}", self.run_id);
        let config = self.work.join(format!("{name}.toml"));
        let keys = self.work.join("keys");
        let text = format!(
            "[kafka]\nbootstrap_servers = {b:?}\ngroup_id = {g:?}\ninstance_id = \"bench-1\"\n\
             [topics]\ninput = \"{p}.events\"\nchained = \"{p}.chained\"\nanchors = \"{p}.anchors\"\n\
             quarantine = \"{p}.quarantine\"\nstate = \"{p}.state\"\n\
             [signing]\nkey_file = {k:?}\nkey_id = \"processor-1\"\n\
             [producer_keys]\nfile = {f:?}\n[http]\nbind = \"127.0.0.1:0\"\n",
            b = self.o.bootstrap,
            g = prefix,
            p = prefix,
            k = keys.join("processor-1.secret"),
            f = keys.join("producers.toml"),
        );
        std::fs::write(&config, text)?;
        let mut cmd = Command::new(&self.o.auditchain_bin);
        cmd.args([
            "topics",
            "--create-input",
            &partitions.to_string(),
            "--config",
        ])
        .arg(&config);
        run_logged(
            cmd,
            &self.work.join(format!("{name}-topics.log")),
            "auditchain topics",
        )?;
        Ok(Topics { prefix, config })
    }

    /// A backlog: topics, then `events` signed events produced by
    /// `auditchain produce` (the SDK's producer).
    fn backlog(
        &self,
        name: &str,
        partitions: i32,
        events: u64,
        tenants: usize,
        payload: usize,
    ) -> Result<Topics> {
        let t = self.topics(name, partitions)?;
        let keys = self.work.join("keys");
        let mut cmd = Command::new(&self.o.auditchain_bin);
        cmd.arg("produce")
            .arg("--config")
            .arg(&t.config)
            .arg("--key-file")
            .arg(keys.join("load-producer.secret"))
            .args(["--key-id", "load-producer"])
            .args(["--events", &events.to_string()])
            .args(["--tenants", &tenants.to_string()])
            .args(["--payload-bytes", &payload.to_string()]);
        let started = Instant::now();
        run_logged(
            cmd,
            &self.work.join(format!("{name}-produce.log")),
            "auditchain produce",
        )?;
        eprintln!(
            "bench: backlog `{}`: {events} events, {tenants} tenants, {payload} B, {partitions} partitions, produced in {:.1} s",
            t.input(),
            started.elapsed().as_secs_f64()
        );
        Ok(t)
    }

    fn spawn(&self, sut: &Sut, label: &str) -> Result<Running> {
        let mut running = Running {
            children: Vec::new(),
            logs: Vec::new(),
        };
        let instances = match sut {
            Sut::Auditchain { instances, .. } => *instances,
            _ => 1,
        };
        for i in 1..=instances {
            let log = self.work.join(format!("{label}-{i}.log"));
            let file = std::fs::File::create(&log)?;
            let mut cmd = match sut {
                Sut::Auditchain { config, .. } => {
                    let mut c = Command::new(&self.o.auditchain_bin);
                    c.arg("run")
                        .arg("--config")
                        .arg(config)
                        .env("AUDITCHAIN__KAFKA__INSTANCE_ID", format!("bench-{i}"));
                    c
                }
                Sut::Passthrough {
                    input,
                    output,
                    group,
                } => {
                    let mut c = Command::new(&self.o.bench_bin);
                    c.args(["passthrough", "--bootstrap", &self.o.bootstrap])
                        .args(["--input", input, "--output", output, "--group", group]);
                    c
                }
                Sut::Peer {
                    input,
                    output,
                    quarantine,
                    app_id,
                } => {
                    let mut c = Command::new("java");
                    c.arg("-jar")
                        .arg(&self.o.peer_jar)
                        .args(["--bootstrap", &self.o.bootstrap])
                        .args(["--input", input, "--output", output])
                        .args(["--quarantine", quarantine, "--application-id", app_id])
                        .arg("--producer-keys")
                        .arg(self.work.join("keys/producers.toml"))
                        .arg("--state-dir")
                        .arg(self.work.join(format!("{label}-state")));
                    if let Some(n) = self.o.peer_threads {
                        c.args(["--threads", &n.to_string()]);
                    }
                    if let Some(n) = self.o.peer_commit_interval_ms {
                        c.args(["--commit-interval-ms", &n.to_string()]);
                    }
                    c
                }
            };
            let child = cmd
                .stdin(Stdio::null())
                .stdout(file.try_clone()?)
                .stderr(file)
                .spawn()
                .with_context(|| format!("starting {}", sut.name()))?;
            running.children.push(child);
            running.logs.push(log);
        }
        Ok(running)
    }

    fn verify(&self, config: &Path, label: &str) -> Result<Verified> {
        let out = Command::new(&self.o.auditchain_bin)
            .arg("verify")
            .arg("--config")
            .arg(config)
            .arg("--processor-key")
            .arg(format!(
                "processor-1={}",
                self.work.join("keys/processor-1.pub").display()
            ))
            .arg("--json")
            .stderr(Stdio::piped())
            .output()
            .context("running auditchain verify")?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        std::fs::write(
            self.work.join(format!("{label}-verify.json")),
            stdout.as_bytes(),
        )?;
        let json: serde_json::Value = serde_json::from_str(&stdout).unwrap_or_default();
        let ok = out.status.success() && json["ok"].as_bool() == Some(true);
        let chained = json["chained"].as_u64().unwrap_or(0);
        let detail = if ok {
            String::new()
        } else {
            let problems = json["problems"].to_string();
            format!(
                "{} {}",
                problems.chars().take(400).collect::<String>(),
                String::from_utf8_lossy(&out.stderr)
                    .chars()
                    .take(400)
                    .collect::<String>()
            )
        };
        eprintln!(
            "bench: verify {label}: {} ({chained} chained)",
            if ok { "OK" } else { "FAILED" }
        );
        Ok(Verified {
            ok,
            chained,
            detail,
        })
    }

    /// Runs `sut` over the backlog in `input` until its group has committed
    /// every record, measuring start-up, the steady window, CPU and memory.
    fn drain(
        &mut self,
        sut: &Sut,
        label: &str,
        input: &str,
        output: &str,
        group: &str,
    ) -> Result<Drain> {
        let reader = offsets_reader(&self.o.bootstrap, group)?;
        let n = partitions(&reader, input)?;
        let high = high_watermarks(&reader, input)?;
        // One call before the start, so the group's coordinator is known:
        // the first lookup can take seconds, which would push the steady
        // window's start late (a fast system would seem to have committed
        // most of the backlog in its first transaction). Its answer (the
        // group does not exist yet) does not matter.
        let _ = committed_sum(&reader, input, n);
        let probe = Probe::start(&self.o.bootstrap, output, Mode::First)?;
        let t0 = Instant::now();
        let mut running = self.spawn(sut, label)?;
        let pids = running.pids();
        let deadline = t0 + Duration::from_secs(180 + (high as u64) / 500);
        let mut start: Option<Mark> = None;
        let mut errors = 0u32;
        let mut window_samples = 0u32;
        let end = loop {
            running.check_alive(label)?;
            // The group's coordinator is found (or moves) while the system
            // starts: NotCoordinator and the like are asked again.
            let committed = match committed_sum(&reader, input, n) {
                Ok(c) => c,
                Err(e) if errors < 200 => {
                    errors += 1;
                    if errors == 1 {
                        eprintln!("bench: {label}: {e:#}; asking again");
                    }
                    std::thread::sleep(Duration::from_millis(50));
                    continue;
                }
                Err(e) => return Err(e),
            };
            let mark = Mark {
                at: Instant::now(),
                committed,
                cpu: Self::sum_ticks(&pids),
                broker: Self::sum_ticks(&self.brokers),
            };
            if start.is_none() && committed > 0 {
                start = Some(mark);
            }
            if start.is_some() {
                window_samples += 1;
            }
            if committed >= high {
                break mark;
            }
            if mark.at > deadline {
                bail!(
                    "{label}: lag still {} after {:.0} s",
                    high - committed,
                    (mark.at - t0).as_secs_f64()
                );
            }
            // Sampling interval of the group's offsets.
            std::thread::sleep(Duration::from_millis(50));
        };
        let peak_rss_mib = running.peak_rss();
        running.stop()?;
        let first = probe.first();
        drop(probe.finish()?);
        let start = start.unwrap_or(end);
        let window_s = (end.at - start.at).as_secs_f64();
        let window_events = (high - start.committed).max(0) as u64;
        let cpu_s = (end.cpu.saturating_sub(start.cpu)) as f64 / self.ticks;
        let broker_cpu_s = (!self.brokers.is_empty())
            .then(|| (end.broker.saturating_sub(start.broker)) as f64 / self.ticks);
        let per_event = |s: f64| (window_events > 0).then(|| s * 1e6 / window_events as f64);
        let per_window = |s: f64| (window_s > 0.0).then(|| s / window_s);
        let d = Drain {
            system: sut.name().into(),
            instances: pids.len(),
            events: high as u64,
            startup_s: first.map(|f| (f - t0).as_secs_f64()),
            first_commit_s: (start.at - t0).as_secs_f64(),
            total_s: (end.at - t0).as_secs_f64(),
            window_s,
            window_events,
            steady_per_s: (window_events > 0 && window_s > 0.0)
                .then(|| window_events as f64 / window_s),
            cpu_s,
            broker_cpu_s,
            cpu_us_per_event: per_event(cpu_s),
            broker_cpu_us_per_event: broker_cpu_s.and_then(per_event),
            cores_busy: per_window(cpu_s),
            broker_cores_busy: broker_cpu_s.and_then(per_window),
            peak_rss_mib,
            verify: None,
            window_samples,
        };
        eprintln!(
            "bench: {label}: start-up {} s, steady {} events/s over {:.2} s, {} µs CPU/event, peak RSS {:?} MiB",
            d.startup_s.map_or("?".into(), |s| format!("{s:.2}")),
            d.steady_per_s.map_or("?".into(), |r| format!("{r:.0}")),
            d.window_s,
            d.cpu_us_per_event.map_or("?".into(), |c| format!("{c:.1}")),
            d.peak_rss_mib.iter().map(|m| m.round()).collect::<Vec<_>>()
        );
        Ok(d)
    }

    fn auditchain_drain(&mut self, t: &Topics, instances: usize, label: &str) -> Result<Drain> {
        let sut = Sut::Auditchain {
            config: t.config.clone(),
            instances,
        };
        let mut d = self.drain(&sut, label, &t.input(), &t.chained(), &t.prefix)?;
        let v = self.verify(&t.config, label)?;
        if !v.ok {
            self.failures
                .push(format!("verify of {label} FAILED: {}", v.detail));
        }
        d.verify = Some(v);
        Ok(d)
    }

    /// Starts one auditchain instance on `t` again (its trail complete) and
    /// times it to its "partitions restored" log line; then its RSS and the
    /// restore time it reports on /metrics.
    fn restart(
        &mut self,
        t: &Topics,
        label: &str,
    ) -> Result<(Option<f64>, Option<f64>, Option<f64>)> {
        let sut = Sut::Auditchain {
            config: t.config.clone(),
            instances: 1,
        };
        let label = format!("{label}-restart");
        let t0 = Instant::now();
        let mut running = self.spawn(&sut, &label)?;
        let log = running.logs.first().cloned().unwrap_or_default();
        let deadline = t0 + Duration::from_secs(120);
        let restored = loop {
            running.check_alive(&label)?;
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if text.contains("partitions restored") {
                break Some(t0.elapsed().as_secs_f64());
            }
            if Instant::now() > deadline {
                break None;
            }
            // Polling a log file; nothing to block on.
            std::thread::sleep(Duration::from_millis(20));
        };
        let rss = running
            .pids()
            .first()
            .and_then(|p| procstat::status_mib(*p, "VmRSS"));
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let restore = metrics_address(&text)
            .and_then(|a| scrape(&a))
            .and_then(|m| metric(&m, "auditchain_restore_duration_seconds_sum"));
        running.stop()?;
        match restored {
            Some(s) => eprintln!("bench: {label}: restored {s:.2} s after start, RSS {rss:?} MiB"),
            None => self.note(format!(
                "{label}: no \"partitions restored\" line within 120 s"
            )),
        }
        Ok((restored, rss, restore))
    }

    fn peer_available(&mut self) -> bool {
        if self.o.skip_peer {
            self.note("Kafka Streams peer: skipped (--skip-peer)".into());
            return false;
        }
        if !self.o.peer_jar.is_file() {
            self.note(format!(
                "Kafka Streams peer: skipped, {} not found (build it: cd load-tests/peers/kstreams && mvn -q -B package)",
                self.o.peer_jar.display()
            ));
            return false;
        }
        true
    }

    fn note(&mut self, note: String) {
        eprintln!("bench: {note}");
        if !self.notes.contains(&note) {
            self.notes.push(note);
        }
    }

    /// Output topics of the peer (and the passthrough), created like
    /// auditchain's: the input's partition count, room for the largest
    /// wrapped record.
    fn output_topics(&self, topics: &[&str], partitions: i32) -> Result<()> {
        let max = auditchain::kafka::max_output_record_bytes(
            crate::passthrough::BROKER_DEFAULT_MAX_MESSAGE_BYTES,
        )
        .to_string();
        let configs: [(&str, &str); 1] = [("max.message.bytes", &max)];
        let specs: Vec<TopicSpec<'_>> = topics
            .iter()
            .map(|t| (*t, partitions, &configs[..]))
            .collect();
        create_topics(&self.o.bootstrap, &specs)
    }

    /// The peer over `t`'s input: its system, output topic and group (its
    /// application id).
    fn peer_sut(&self, t: &Topics, label: &str) -> Result<(Sut, String, String)> {
        let output = format!("{}.{label}.chained", t.prefix);
        let quarantine = format!("{}.{label}.quarantine", t.prefix);
        let app_id = format!("{}-{label}", t.prefix);
        self.output_topics(&[&output, &quarantine], self.o.partitions)?;
        Ok((
            Sut::Peer {
                input: t.input(),
                output: output.clone(),
                quarantine,
                app_id: app_id.clone(),
            },
            output,
            app_id,
        ))
    }

    /// Latency under paced load of `sut` on fresh topics, at fractions of
    /// `max`.
    fn latency(&mut self, system: &str, max: f64) -> Result<Latency> {
        let name = format!("lat-{system}");
        let t = self.topics(&name, self.o.partitions)?;
        let (sut, output) = if system == "auditchain" {
            (
                Sut::Auditchain {
                    config: t.config.clone(),
                    instances: 1,
                },
                t.chained(),
            )
        } else {
            let (sut, output, _) = self.peer_sut(&t, "kstreams")?;
            (sut, output)
        };
        let pool = (self.o.tenants * 50).clamp(10_000, 50_000);
        let mut pacer = Pacer::new(
            &self.o.bootstrap,
            &t.input(),
            self.producer_key()?,
            self.o.tenants,
            self.o.payload,
            pool,
        )?;
        let probe = Probe::start(&self.o.bootstrap, &output, Mode::Latency)?;
        let mut running = self.spawn(&sut, &format!("{name}-run"))?;
        let fractions = [0.25, 0.5, 0.75];
        let warm = fractions[0] * max;
        // Warm-up: offer the lowest load until the system's first output is
        // visible (start-up, restore, JIT), then a while longer.
        let ready_by = Instant::now() + Duration::from_secs(180);
        while probe.first().is_none() {
            running.check_alive(&name)?;
            if Instant::now() > ready_by {
                bail!("{name}: no output after 180 s");
            }
            pacer.run(warm, Duration::from_secs(1))?;
        }
        pacer.run(warm, Duration::from_secs(self.o.warmup_seconds))?;
        let step = Duration::from_secs(self.o.step_seconds);
        let mut windows = Vec::new();
        for f in fractions {
            running.check_alive(&name)?;
            let from = now_ms();
            let s = pacer.run(f * max, step)?;
            windows.push((f, from, now_ms(), s));
        }
        pacer.flush()?;
        let delivered = pacer
            .deliveries
            .ok
            .load(std::sync::atomic::Ordering::Relaxed);
        // Wait for the tail: every delivered record must be seen (and
        // counted, however late) before the percentiles are taken.
        let drain_by = Instant::now() + Duration::from_secs(120);
        while probe.records() < delivered && Instant::now() < drain_by {
            running.check_alive(&name)?;
            std::thread::sleep(Duration::from_millis(100));
        }
        let peak_rss_mib = running.peak_rss();
        running.stop()?;
        let seen = probe.finish()?;
        let unseen =
            delivered.saturating_sub(seen.records.load(std::sync::atomic::Ordering::Relaxed));
        let undecodable = seen.undecodable.load(std::sync::atomic::Ordering::Relaxed);
        let samples = seen.samples.lock().map(|s| s.clone()).unwrap_or_default();
        self.write_timeline(&name, &samples)?;
        let mut steps = Vec::new();
        for (fraction, from, to, s) in windows {
            // The first second of a step is the change of load settling.
            let settle = 1000.0;
            let mut lat: Vec<f64> = samples
                .iter()
                .filter(|x| (x.source_ms as f64) >= from + settle && (x.source_ms as f64) < to)
                .map(|x| x.latency_ms)
                .collect();
            lat.sort_by(f64::total_cmp);
            let step = LatencyStep {
                fraction,
                offered_per_s: fraction * max,
                achieved_per_s: s.sent as f64 / s.elapsed.as_secs_f64(),
                samples: lat.len(),
                p50_ms: percentile(&lat, 0.5),
                p99_ms: percentile(&lat, 0.99),
                p999_ms: percentile(&lat, 0.999),
                max_ms: lat.last().copied(),
            };
            let ms = |v: Option<f64>| v.map_or("?".into(), |v| format!("{v:.0}"));
            eprintln!(
                "bench: {name} {:.0}% ({:.0}/s): p50 {} p99 {} p99.9 {} max {} ms, {} samples",
                fraction * 100.0,
                step.offered_per_s,
                ms(step.p50_ms),
                ms(step.p99_ms),
                ms(step.p999_ms),
                ms(step.max_ms),
                step.samples
            );
            steps.push(step);
        }
        if unseen > 0 {
            self.note(format!(
                "{system} latency: {unseen} delivered records were not visible 120 s after the last step; percentiles miss them"
            ));
        }
        let verify = if system == "auditchain" {
            let v = self.verify(&t.config, &name)?;
            if !v.ok {
                self.failures
                    .push(format!("verify of {name} FAILED: {}", v.detail));
            }
            Some(v)
        } else {
            None
        };
        Ok(Latency {
            system: sut.name().into(),
            max_per_s: max,
            step_s: self.o.step_seconds,
            steps,
            unseen,
            undecodable,
            peak_rss_mib,
            verify,
        })
    }

    fn pure_path(&mut self) -> Result<(Option<f64>, Option<f64>)> {
        let log = self.work.join("pure_path.log");
        let mut cmd = Command::new("cargo");
        cmd.current_dir(&self.o.repo)
            .args([
                "bench",
                "--locked",
                "-p",
                "auditchain",
                "--bench",
                "pure_path",
                "--",
            ])
            .args([
                "--warm-up-time",
                "1",
                "--measurement-time",
                "3",
                "pure_path/",
            ]);
        run_logged(cmd, &log, "cargo bench --bench pure_path")?;
        let text = std::fs::read_to_string(&log)?;
        Ok((
            criterion_thrpt(&text, "pure_path/all_cores"),
            criterion_thrpt(&text, "pure_path/one_core"),
        ))
    }
}

/// `text` without ANSI colour sequences (the processor colours its log).
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // ESC [ parameters final-letter
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The address the processor serves /metrics on, from its log line.
fn metrics_address(log: &str) -> Option<String> {
    let line = strip_ansi(log.lines().find(|l| l.contains("serving /metrics"))?);
    let at = line.find("address=")? + "address=".len();
    Some(line[at..].split_whitespace().next()?.to_string())
}

/// GET /metrics from `addr`.
fn scrape(addr: &str) -> Option<String> {
    use std::io::Read;
    let mut stream = std::net::TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .ok()?;
    let mut body = String::new();
    stream.read_to_string(&mut body).ok()?;
    Some(body)
}

/// The value of the sample `name` (no labels) in a Prometheus exposition.
fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(name)?.strip_prefix(' ')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// The middle `thrpt:` estimate after the line naming `bench`, in
/// elements/s.
fn criterion_thrpt(text: &str, bench: &str) -> Option<f64> {
    let from = text.find(bench)?;
    let rest = &text[from..];
    let line = rest.lines().find(|l| l.contains("thrpt:"))?;
    let inside = line.split('[').nth(1)?.split(']').next()?;
    let parts: Vec<&str> = inside.split_whitespace().collect();
    // [low unit mid unit high unit]
    let (value, unit) = (parts.get(2)?.parse::<f64>().ok()?, *parts.get(3)?);
    let scale = match unit {
        "elem/s" => 1.0,
        "Kelem/s" => 1e3,
        "Melem/s" => 1e6,
        "Gelem/s" => 1e9,
        _ => return None,
    };
    Some(value * scale)
}

fn utc_now() -> String {
    Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M:%S"])
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// Runs the benchmark; writes `results.json` and `table.md` into the
/// output directory. Fails (after writing them) when a verify failed.
pub fn run(o: Options) -> Result<()> {
    let started = Instant::now();
    let started_utc = utc_now();
    let work = o.out.join("work");
    std::fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    let run_id = o
        .out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "bench".into());
    let brokers = o
        .stack_dir
        .as_deref()
        .map(procstat::broker_pids)
        .unwrap_or_default();
    let machine = procstat::machine()?;
    let mut b = Bench {
        o: o.clone(),
        work,
        run_id,
        ticks: procstat::clock_ticks(),
        brokers,
        parts: Vec::new(),
        notes: Vec::new(),
        failures: Vec::new(),
    };
    if b.brokers.is_empty() {
        b.note("broker JVMs not found (AUDITCHAIN_STACK_DIR unset or another stack): broker CPU not measured".into());
    }
    b.keys()?;

    let pure = if o.pure_path {
        b.part("pure_path criterion bench", |b| b.pure_path())
            .unwrap_or_else(|e| {
                b.note(format!("pure_path bench failed: {e:#}"));
                (None, None)
            })
    } else {
        b.note("pure_path criterion bench: skipped (--quick or --no-pure-path)".into());
        (None, None)
    };
    let verify_rate = b.part("strict-verify rate", |b| {
        verify_rate::measure(Duration::from_secs(b.o.verify_seconds), b.o.payload)
    })?;
    eprintln!(
        "bench: strict verify: {:.0}/s on one core, {:.0}/s on {} threads",
        verify_rate.one_core_per_s, verify_rate.all_cores_per_s, verify_rate.threads
    );

    let backlog = b.part("backlog", |b| {
        b.backlog("main", o.partitions, o.events, o.tenants, o.payload)
    })?;
    let mut drains = Vec::new();
    let pass_out = format!("{}.passthrough", backlog.prefix);
    b.output_topics(&[&pass_out], o.partitions)?;
    let pass = Sut::Passthrough {
        input: backlog.input(),
        output: pass_out.clone(),
        group: format!("{}-passthrough", backlog.prefix),
    };
    let group = format!("{}-passthrough", backlog.prefix);
    drains.push(b.part("EOS passthrough drain", |b| {
        b.drain(&pass, "passthrough", &backlog.input(), &pass_out, &group)
    })?);
    let ac = b.part("auditchain drain", |b| {
        b.auditchain_drain(&backlog, 1, "auditchain")
    })?;
    let ac_max = ac.steady_per_s;
    drains.push(ac.clone());
    let peer = b.peer_available();
    let mut peer_max = None;
    if peer {
        let (sut, output, group) = b.peer_sut(&backlog, "kstreams")?;
        match b.part("Kafka Streams peer drain", |b| {
            b.drain(&sut, "kstreams", &backlog.input(), &output, &group)
        }) {
            Ok(d) => {
                peer_max = d.steady_per_s;
                drains.push(d);
            }
            Err(e) => b.note(format!("Kafka Streams peer drain failed: {e:#}")),
        }
    }

    let mut latency = Vec::new();
    match ac_max {
        Some(max) => latency.push(b.part("auditchain latency", |b| b.latency("auditchain", max))?),
        None => b.note(
            "auditchain latency: skipped, no steady rate was measured (backlog too small)".into(),
        ),
    }
    if let Some(max) = peer_max {
        match b.part("Kafka Streams peer latency", |b| b.latency("kstreams", max)) {
            Ok(l) => latency.push(l),
            Err(e) => b.note(format!("Kafka Streams peer latency failed: {e:#}")),
        }
    }

    let mut scaling = Vec::new();
    if o.scaling {
        scaling = b.part("scaling", |b| scale(b, &ac))?;
    } else {
        b.note("scaling: not run (add --scaling)".into());
    }

    if o.keep_topics || !b.failures.is_empty() {
        // A failed verify is investigated on the topics themselves.
        b.note(format!("topics kept: {}.*", b.run_id));
    } else {
        // The run's topics hold gigabytes after a full run; the numbers are
        // in results.json.
        match crate::kafka::delete_topics_with_prefix(&o.bootstrap, &format!("{}.", b.run_id)) {
            Ok(n) => eprintln!("bench: deleted the run's {n} topics (--keep-topics keeps them)"),
            Err(e) => eprintln!("bench: could not delete the run's topics: {e:#}"),
        }
    }
    let results = Results {
        started_utc,
        elapsed_s: started.elapsed().as_secs_f64(),
        parts_s: b.parts.clone(),
        machine,
        quick: o.quick,
        auditchain_bin: o.auditchain_bin.display().to_string(),
        events: o.events,
        tenants: o.tenants,
        payload: o.payload,
        partitions: o.partitions,
        brokers: b.brokers.len(),
        verify_rate: Some(verify_rate),
        pure_path_all_cores_per_s: pure.0,
        pure_path_one_core_per_s: pure.1,
        drains,
        latency,
        scaling,
        notes: b.notes.clone(),
    };
    let json = serde_json::to_string_pretty(&results)?;
    std::fs::write(o.out.join("results.json"), json)?;
    let table = report::table(&results);
    let mut f = std::fs::File::create(o.out.join("table.md"))?;
    f.write_all(table.as_bytes())?;
    if !b.failures.is_empty() {
        bail!("{}", b.failures.join("\n"));
    }
    Ok(())
}

/// The scaling matrix: one dimension at a time from the main backlog's
/// layout (whose drain is the shared base point).
fn scale(b: &mut Bench, base: &Drain) -> Result<Vec<ScalePoint>> {
    let o = b.o.clone();
    let point =
        |dimension: &str, value: u64, drain: Drain, events, tenants, partitions, payload| {
            ScalePoint {
                dimension: dimension.into(),
                value,
                events,
                tenants,
                partitions,
                payload,
                drain,
                restart_restored_s: None,
                restart_rss_mib: None,
                restart_restore_s: None,
            }
        };
    let mut out = vec![
        point(
            "tenants",
            o.tenants as u64,
            base.clone(),
            o.events,
            o.tenants,
            o.partitions,
            o.payload,
        ),
        point(
            "partitions",
            o.partitions as u64,
            base.clone(),
            o.events,
            o.tenants,
            o.partitions,
            o.payload,
        ),
        point(
            "payload",
            o.payload as u64,
            base.clone(),
            o.events,
            o.tenants,
            o.partitions,
            o.payload,
        ),
        point(
            "instances",
            1,
            base.clone(),
            o.events,
            o.tenants,
            o.partitions,
            o.payload,
        ),
    ];
    let (tenants, parts, payloads): (&[usize], &[i32], &[usize]) = if o.quick {
        (&[100_000], &[32], &[16_384])
    } else {
        (&[10_000, 100_000], &[8, 16, 32], &[1_024, 4_096, 16_384])
    };
    // Large payloads: cap the backlog's bytes (disk, and `produce` holds
    // the whole backlog in memory).
    let cap_bytes: u64 = if o.quick { 200_000_000 } else { 800_000_000 };
    let events_for = |payload: usize| o.events.min(cap_bytes / payload as u64).max(1_000);
    for &n in tenants {
        let name = format!("scale-tenants-{n}");
        // At least two events per tenant, so every chain grows past its head.
        let events = o.events.max(2 * n as u64);
        let t = b.backlog(&name, o.partitions, events, n, o.payload)?;
        let d = b.auditchain_drain(&t, 1, &name)?;
        let (restored, rss, restore) = b.restart(&t, &name)?;
        let mut p = point("tenants", n as u64, d, events, n, o.partitions, o.payload);
        p.restart_restored_s = restored;
        p.restart_rss_mib = rss;
        p.restart_restore_s = restore;
        out.push(p);
    }
    for &p in parts {
        let name = format!("scale-partitions-{p}");
        let t = b.backlog(&name, p, o.events, o.tenants, o.payload)?;
        let d = b.auditchain_drain(&t, 1, &name)?;
        out.push(point(
            "partitions",
            p as u64,
            d,
            o.events,
            o.tenants,
            p,
            o.payload,
        ));
    }
    for &size in payloads {
        let name = format!("scale-payload-{size}");
        let events = events_for(size);
        let t = b.backlog(&name, o.partitions, events, o.tenants, size)?;
        let d = b.auditchain_drain(&t, 1, &name)?;
        out.push(point(
            "payload",
            size as u64,
            d,
            events,
            o.tenants,
            o.partitions,
            size,
        ));
    }
    {
        let name = "scale-instances-2";
        let t = b.backlog(name, o.partitions, o.events, o.tenants, o.payload)?;
        let d = b.auditchain_drain(&t, 2, name)?;
        out.push(point(
            "instances",
            2,
            d,
            o.events,
            o.tenants,
            o.partitions,
            o.payload,
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<f64> = (1..=1000).map(f64::from).collect();
        assert_eq!(percentile(&v, 0.5), Some(500.0));
        assert_eq!(percentile(&v, 0.99), Some(990.0));
        assert_eq!(percentile(&v, 0.999), Some(999.0));
        assert_eq!(percentile(&[], 0.5), None);
        assert_eq!(percentile(&[3.0], 0.999), Some(3.0));
    }

    #[test]
    fn the_metrics_address_and_a_sample_are_found() {
        let log = "\u{1b}[2m2026\u{1b}[0m INFO serving /metrics, /healthz \u{1b}[3maddress\u{1b}[0m\u{1b}[2m=\u{1b}[0m127.0.0.1:35053\n";
        assert_eq!(metrics_address(log).as_deref(), Some("127.0.0.1:35053"));
        let m = "# HELP x\nauditchain_restore_duration_seconds_sum 2.25\nauditchain_restore_duration_seconds_count 1\n";
        assert_eq!(
            metric(m, "auditchain_restore_duration_seconds_sum"),
            Some(2.25)
        );
        assert_eq!(metric(m, "auditchain_restore_duration_seconds"), None);
    }

    #[test]
    fn criterion_throughput_is_read_with_its_unit() {
        let text = "Benchmarking pure_path/all_cores/2000\n\
                    pure_path/all_cores/2000\n                        time:   [52.1 ms 52.5 ms 53.0 ms]\n\
                    thrpt:  [37.7 Kelem/s 38.1 Kelem/s 38.4 Kelem/s]\n";
        assert_eq!(criterion_thrpt(text, "pure_path/all_cores"), Some(38_100.0));
        assert_eq!(criterion_thrpt(text, "pure_path/one_core"), None);
    }
}
