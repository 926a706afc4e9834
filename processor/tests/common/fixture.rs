//! The processor fixture: keys, key set, config and topics of one test;
//! producing, running, waiting and verifying.

use super::*;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use auditchain::config::Config;
use auditchain::produce::{Inject, NamedKey, Spec};

/// Keys, key set and a config with topics of its own for one test.
pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub prefix: String,
    pub group: String,
    pub registry: bool,
    pub partitions: i32,
    pub extra_librdkafka: Vec<(String, String)>,
    /// The cluster's bootstrap servers (the local stack's unless told).
    pub bootstrap: String,
}

impl Fixture {
    /// Creates keys and the input topic with `partitions` partitions.
    pub async fn new(partitions: i32, registry: bool) -> Fixture {
        Self::new_on(
            partitions,
            registry,
            bootstrap(),
            Vec::new(),
            &client_config(),
        )
        .await
    }

    /// [`Fixture::new`] on the cluster at `bootstrap`, the processor's
    /// clients configured with `librdkafka` (credentials), the input topic
    /// created through `admin`.
    pub async fn new_on(
        partitions: i32,
        registry: bool,
        bootstrap: String,
        librdkafka: Vec<(String, String)>,
        admin: &ClientConfig,
    ) -> Fixture {
        // Processor logs go to the test's captured output, shown on failure.
        let _ = tracing_subscriber::fmt()
            .with_test_writer()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,librdkafka=warn")),
            )
            .try_init();
        let dir = tempfile::tempdir().expect("tempdir");
        let keys = dir.path();
        for id in ["processor-1", "good", "revoked", "restricted"] {
            auditchain::keys::keygen(keys, id).expect("keygen");
        }
        let public = |id: &str| {
            std::fs::read_to_string(keys.join(format!("{id}.pub")))
                .expect("pub")
                .trim()
                .to_string()
        };
        std::fs::write(
            keys.join("producers.toml"),
            format!(
                "[[keys]]\nkey_id = \"good\"\npublic_key = \"{}\"\n\n\
                 [[keys]]\nkey_id = \"revoked\"\npublic_key = \"{}\"\nrevoked = true\n\n\
                 [[keys]]\nkey_id = \"restricted\"\npublic_key = \"{}\"\ntenants = [\"nobody\"]\n",
                public("good"),
                public("revoked"),
                public("restricted")
            ),
        )
        .expect("key set");
        let f = Fixture {
            dir,
            prefix: unique("ac"),
            group: random_group(),
            registry,
            partitions,
            // Production client settings: a test about a setting sets it itself.
            extra_librdkafka: librdkafka,
            bootstrap,
        };
        create_topic_with(admin, &f.config("setup").topics.input, partitions, &[]).await;
        f
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The config text of instance `instance_id`.
    pub fn config_text(&self, instance_id: &str) -> String {
        self.config_text_with(instance_id, &self.extra_librdkafka)
    }

    /// The config text of instance `instance_id` with these `[librdkafka]`
    /// properties (another principal's credentials, say).
    pub fn config_text_with(&self, instance_id: &str, librdkafka: &[(String, String)]) -> String {
        let registry = if self.registry {
            format!("[schema_registry]\nurl = \"{}\"\n", registry_url())
        } else {
            String::new()
        };
        let librdkafka: String = librdkafka
            .iter()
            .map(|(k, v)| format!("\"{k}\" = \"{v}\"\n"))
            .collect();
        format!(
            "[kafka]\nbootstrap_servers = \"{bootstrap}\"\ngroup_id = \"{group}\"\ninstance_id = \"{instance_id}\"\n\
             session_timeout_ms = 6000\n\
             [topics]\ninput = \"{p}.events\"\nchained = \"{p}.chained\"\nanchors = \"{p}.anchors\"\n\
             quarantine = \"{p}.quarantine\"\nstate = \"{p}.state\"\n\
             {registry}\
             [signing]\nkey_file = \"{key}\"\nkey_id = \"processor-1\"\n\
             [producer_keys]\nfile = \"{keyset}\"\nreload_interval_ms = 200\n\
             [processing]\ncommit_interval_ms = 300\nmax_batch_records = 500\nmax_record_bytes = 16384\n\
             [http]\nbind = \"127.0.0.1:0\"\n\
             [librdkafka]\n{librdkafka}",
            bootstrap = self.bootstrap,
            group = self.group,
            p = self.prefix,
            key = self.path("processor-1.secret").display(),
            keyset = self.path("producers.toml").display(),
        )
    }

    /// The config of instance `instance_id`.
    pub fn config(&self, instance_id: &str) -> Config {
        Config::from_toml_with_env(&self.config_text(instance_id), std::iter::empty())
            .expect("test config")
    }

    /// The config of instance `instance_id` written to a file, for the binary.
    pub fn config_file(&self, instance_id: &str) -> PathBuf {
        let path = self.path(&format!("{instance_id}.toml"));
        std::fs::write(&path, self.config_text(instance_id)).expect("write config");
        path
    }

    /// Starts `auditchain run` as a child process, logging to `<instance>.log`.
    pub fn spawn(&self, instance_id: &str) -> Child {
        self.spawn_with(instance_id, &[])
    }

    /// Starts `auditchain run` with its HTTP endpoint on a free loopback
    /// port and waits until it reports the address: (child, "host:port").
    pub async fn spawn_http(&self, instance_id: &str) -> (Child, String) {
        self.spawn_http_with(instance_id, &[]).await
    }

    /// Like [`Fixture::spawn_http`], with extra environment variables.
    pub async fn spawn_http_with(
        &self,
        instance_id: &str,
        env: &[(&str, &str)],
    ) -> (Child, String) {
        let mut child = self.spawn_with(instance_id, env);
        let address_file = child.http_address_file.clone();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            child.assert_alive();
            match std::fs::read_to_string(&address_file) {
                Ok(a) if !a.is_empty() => return (child, a),
                _ => {}
            }
            assert!(
                Instant::now() < deadline,
                "the processor never reported its HTTP address"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Like `spawn`, with extra environment variables.
    pub fn spawn_with(&self, instance_id: &str, env: &[(&str, &str)]) -> Child {
        let config = self.config_file(instance_id);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.path(&format!("{instance_id}.log")))
            .expect("log file");
        // Every instance reports its endpoint, so a failing test can show
        // its metrics.
        let http_address_file = self.path(&format!("{instance_id}.http-address"));
        let _ = std::fs::remove_file(&http_address_file);
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_auditchain"))
            .arg("run")
            .arg("--config")
            .arg(&config)
            .env("RUST_LOG", "info,librdkafka=warn")
            .env("NO_COLOR", "1")
            .env("AUDITCHAIN_HTTP_ADDRESS_FILE", &http_address_file)
            .envs(env.iter().copied())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn auditchain run");
        Child {
            child,
            log: self.path(&format!("{instance_id}.log")),
            http_address_file,
        }
    }

    fn key(&self, id: &str) -> NamedKey {
        NamedKey::from_file(self.path(&format!("{id}.secret")), id).expect("key")
    }

    /// A production spec: `events` good events over `tenants` tenants plus
    /// `each_bad` records of every bad kind.
    pub fn spec(&self, events: usize, tenants: usize, each_bad: usize) -> Spec {
        Spec {
            events,
            tenants,
            tenant_prefix: "tenant".into(),
            key: self.key("good"),
            revoked_key: Some(self.key("revoked")),
            restricted_key: Some(self.key("restricted")),
            inject: if each_bad == 0 {
                Vec::new()
            } else {
                Inject::ALL.iter().map(|k| (*k, each_bad)).collect()
            },
            payload_bytes: 32,
            run_id: unique("run"),
            traceparent: false,
        }
    }

    /// Publishes `spec` to the input topic.
    pub async fn produce(&self, spec: &Spec) -> auditchain::produce::Report {
        auditchain::produce::produce(&self.config("producer"), spec)
            .await
            .expect("produce")
    }

    /// Starts a processor instance on its own thread.
    pub fn start(&self, instance_id: &str) -> Running {
        self.start_traced(instance_id, auditchain::telemetry::Traces::off())
    }

    /// Like [`Fixture::start`], with spans going to `traces`.
    pub fn start_traced(
        &self,
        instance_id: &str,
        traces: auditchain::telemetry::Traces,
    ) -> Running {
        self.start_with(instance_id, auditchain::processor::RunOptions::new(traces))
    }

    /// Like [`Fixture::start`], with options (injected faults, shared metrics).
    pub fn start_with(
        &self,
        instance_id: &str,
        options: auditchain::processor::RunOptions,
    ) -> Running {
        self.start_config(self.config(instance_id), options)
    }

    /// Starts a processor with a config of the test's own making (for a
    /// test about a setting).
    pub fn start_config(
        &self,
        config: Config,
        options: auditchain::processor::RunOptions,
    ) -> Running {
        let instance_id = config.kafka.instance_id.clone();
        let config = Arc::new(config);
        let shutdown = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&shutdown);
        let rt = tokio::runtime::Handle::current();
        let failure = Arc::new(std::sync::Mutex::new(None));
        let failed = Arc::clone(&failure);
        let thread = std::thread::Builder::new()
            .name(format!("processor-{instance_id}"))
            .spawn(move || {
                let result = auditchain::processor::run_with(config, flag, rt, options);
                if let Err(e) = &result {
                    if let Ok(mut f) = failed.lock() {
                        *f = Some(e.to_string());
                    }
                }
                result
            })
            .expect("spawn processor");
        Running {
            shutdown,
            thread,
            failure,
        }
    }

    /// Input high watermarks vs the group's committed offsets, per partition.
    /// A group's coordinator may still be loading right after the group
    /// appears (NOT_COORDINATOR): such answers are asked again.
    pub fn lag(&self) -> HashMap<i32, (i64, i64)> {
        let config = self.config("lag-probe");
        let deadline = Instant::now() + Duration::from_secs(30);
        let lag = loop {
            match auditchain::kafka::group_lag(&config) {
                Ok(lag) => break lag,
                Err(e) if Instant::now() < deadline => {
                    eprintln!("group lag not available yet: {e}");
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(e) => panic!("group lag: {e}"),
            }
        };
        lag.into_iter()
            .map(|l| (l.partition, (l.high, l.committed)))
            .collect()
    }

    /// Waits until the group has committed every input record (or `limit`
    /// passes, which fails the test).
    pub async fn wait_caught_up(&self, running: &[&Running], limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            running.iter().for_each(|r| r.assert_alive());
            let lag = tokio::task::block_in_place(|| self.lag());
            if lag.values().all(|(high, done)| done >= high) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "processor did not catch up within {limit:?}: {lag:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Waits until the group has committed at least `n` records in total.
    pub async fn wait_progress(&self, running: &Running, n: i64, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            running.assert_alive();
            let lag = tokio::task::block_in_place(|| self.lag());
            if lag.values().map(|(_, done)| done).sum::<i64>() >= n {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "processor made no progress within {limit:?}: {lag:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Committed input records of the group, over all partitions.
    pub fn committed_total(&self) -> i64 {
        tokio::task::block_in_place(|| self.lag())
            .values()
            .map(|(_, done)| done)
            .sum()
    }

    /// Waits until `done(lag)` holds, calling `alive` between looks (it
    /// panics when a processor died); fails after `limit`.
    pub async fn wait_for(
        &self,
        what: &str,
        mut alive: impl FnMut(),
        done: impl Fn(&HashMap<i32, (i64, i64)>) -> bool,
        limit: Duration,
    ) {
        let deadline = Instant::now() + limit;
        loop {
            alive();
            let lag = tokio::task::block_in_place(|| self.lag());
            if done(&lag) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: not within {limit:?}: {lag:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until the group has committed every input record, calling
    /// `alive` between looks.
    pub async fn wait_all_committed(&self, what: &str, alive: impl FnMut(), limit: Duration) {
        self.wait_for(what, alive, |l| l.values().all(|(h, d)| d >= h), limit)
            .await
    }

    /// Waits until the group has committed `more` records beyond what it
    /// had committed when called.
    pub async fn wait_committed_more(
        &self,
        what: &str,
        alive: impl FnMut(),
        more: i64,
        limit: Duration,
    ) {
        let target = self.committed_total() + more;
        self.wait_for(
            what,
            alive,
            |l| l.values().map(|(_, d)| d).sum::<i64>() >= target,
            limit,
        )
        .await
    }

    /// Starts an instance (with its HTTP endpoint) whose transactions close
    /// only when a rebalance or a fault closes them: an 8 s commit interval
    /// and no batch bound, so one is certain to be open when a test strikes.
    pub async fn spawn_long_transactions(
        &self,
        instance_id: &str,
        env: &[(&str, &str)],
    ) -> (Child, String) {
        let mut vars = vec![
            ("AUDITCHAIN__PROCESSING__COMMIT_INTERVAL_MS", "8000"),
            ("AUDITCHAIN__PROCESSING__MAX_BATCH_RECORDS", "1000000"),
        ];
        vars.extend_from_slice(env);
        self.spawn_http_with(instance_id, &vars).await
    }

    /// Verifies the trail and that it holds exactly the `sent` input records.
    pub fn assert_exactly_once(&self, sent: usize) {
        let (_, report) = tokio::task::block_in_place(|| self.verify());
        assert_verified(&report);
        assert_eq!(report.input_records, Some(sent));
    }

    /// Publishes `batches` batches of `per_batch` good events in the
    /// background, `gap` apart, so a stream flows while a test breaks things.
    /// The task returns how many records it published.
    pub fn stream(
        &self,
        batches: usize,
        per_batch: usize,
        gap: Duration,
    ) -> tokio::task::JoinHandle<usize> {
        let config = self.config("producer");
        let specs: Vec<Spec> = (0..batches).map(|_| self.spec(per_batch, 9, 0)).collect();
        tokio::spawn(async move {
            let mut sent = 0;
            for spec in specs {
                let report = auditchain::produce::produce(&config, &spec)
                    .await
                    .expect("produce");
                sent += report.records.len();
                // Pacing the input, not waiting for anything.
                tokio::time::sleep(gap).await;
            }
            sent
        })
    }

    /// Reads the trail and checks it against the committed input, twice:
    /// in memory (which hands the test the trail to look at) and with the
    /// streaming `verify` the CLI runs. The two must agree.
    pub fn verify(&self) -> (auditchain::verify::Trail, auditchain::verify::Report) {
        let config = self.config("verifier");
        let trail = auditchain::verify::read_trail(&config).expect("read trail");
        let input = auditchain::verify::read_input_coords(&config).expect("read input");
        let keys = auditchain::keys::KeySet::load(&self.path("producers.toml")).expect("keys");
        let processor_keys = self.processor_keys();
        let report = auditchain::verify::check(&trail, &keys, &processor_keys, Some(&input));
        let streamed = self.verify_streaming();
        assert!(
            streamed.ok() == report.ok() && streamed.input_records == report.input_records,
            "the streaming verify disagrees with the in-memory check:\n\
             streaming: ok {} input {:?} problems {:#?}\nin memory: ok {} input {:?} problems {:#?}",
            streamed.ok(),
            streamed.input_records,
            &streamed.problems[..streamed.problems.len().min(10)],
            report.ok(),
            report.input_records,
            &report.problems[..report.problems.len().min(10)],
        );
        (trail, report)
    }

    /// The streaming `verify` the CLI runs, over the whole trail and the
    /// input; safe to run while processors write the trail.
    pub fn verify_streaming(&self) -> auditchain::verify::Report {
        let config = self.config("verifier");
        let keys = auditchain::keys::KeySet::load(&self.path("producers.toml")).expect("keys");
        let options = auditchain::verify::Options {
            check_input: true,
            ..auditchain::verify::Options::default()
        };
        let processor_keys = self.processor_keys();
        tokio::task::block_in_place(|| {
            auditchain::verify::verify(&config, &keys, &processor_keys, &options, |_, _| {})
        })
        .expect("verify runs")
    }

    /// Runs the streaming `verify` while the trail is being written and
    /// asserts it found nothing wrong: a live trail verifies (DESIGN.md §3).
    pub fn assert_verifies_live(&self, when: &str) {
        let report = self.verify_streaming();
        assert!(
            report.ok(),
            "{when}: verify of the live trail failed with {} problems, first: {:#?}",
            report.problems.len(),
            &report.problems[..report.problems.len().min(10)]
        );
    }

    fn processor_keys(&self) -> HashMap<String, ed25519_dalek::VerifyingKey> {
        let processor_key =
            auditchain::keys::load_verifying_key(&self.path("processor-1.pub")).expect("pub");
        HashMap::from([("processor-1".to_string(), processor_key)])
    }
}

/// Whether the group has committed `target` records in total, or everything
/// published so far (the stream may be between batches or over).
pub fn progressed(lag: &HashMap<i32, (i64, i64)>, target: i64) -> bool {
    lag.values().map(|(_, done)| done).sum::<i64>() >= target
        || lag.values().all(|(high, done)| done >= high)
}

/// Asserts `report` found nothing wrong, printing what it found otherwise.
pub fn assert_verified(report: &auditchain::verify::Report) {
    assert!(
        report.ok(),
        "verification failed with {} problems, first: {:#?}",
        report.problems.len(),
        &report.problems[..report.problems.len().min(10)]
    );
}

/// Run options for a test that injects `faults` and reads `metrics`.
pub fn fault_options(
    faults: &std::sync::Arc<auditchain::faults::Faults>,
    metrics: &std::sync::Arc<auditchain::metrics::Metrics>,
) -> auditchain::processor::RunOptions {
    auditchain::processor::RunOptions {
        traces: auditchain::telemetry::Traces::off(),
        faults: Some(std::sync::Arc::clone(faults)),
        metrics: Some(std::sync::Arc::clone(metrics)),
    }
}

/// The record a forger with write access to the chained topic would append
/// after `tip`: the next seq, linked to it, the same signed event (so its
/// producer signature holds), `gap` input offsets further, its entry hash
/// recomputed. Only the processor's key could sign an anchor over it.
pub fn forged_successor(
    tip: &auditchain::records::ChainedRecord,
    gap: u64,
) -> auditchain::records::ChainedRecord {
    let mut forged = tip.clone();
    forged.seq = tip.seq + 1;
    forged.prev_hash = tip.entry_hash;
    forged.source_offset = tip.source_offset + gap;
    forged.entry_hash = auditchain::chain::hash::entry_hash(
        &forged.tenant_id,
        forged.seq,
        &forged.prev_hash,
        &forged.event_digest,
        forged.source(),
    );
    forged
}
