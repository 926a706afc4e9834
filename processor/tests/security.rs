//! Security on a real secured cluster (issue 12), against the stack of
//! `scripts/stack up --secure`: SASL_SSL with SCRAM-SHA-512, the
//! `StandardAuthorizer` with `allow.everyone.if.no.acl.found=false`, and the
//! ACL set `auditchain acls --print` emits, applied exactly as an operator
//! would (the printed script, run with the administrator's credentials).
//!
//! Each test skips without the secured stack's environment, and fails
//! instead when `AUDITCHAIN_REQUIRE_SECURE=1` (`scripts/test`).

mod common;

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use auditchain::config::Config;
use auditchain::records::ChainedRecord;
use common::secure::{self, SecureStack};
use common::Fixture;
use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, FutureProducer, FutureRecord, Producer};
use rdkafka::util::Timeout;
use rdkafka::TopicPartitionList;

const BIN: &str = env!("CARGO_BIN_EXE_auditchain");

/// A fixture on the secured cluster: the processor logs in as `processor`,
/// the input topic is created by `admin`.
async fn fixture(
    stack: &SecureStack,
    partitions: i32,
    librdkafka: Vec<(String, String)>,
) -> Fixture {
    Fixture::new_on(
        partitions,
        false,
        stack.bootstrap.clone(),
        librdkafka,
        &stack.client_config("admin"),
    )
    .await
}

/// The fixture's config, logged in as `user`.
fn config_as(fx: &Fixture, stack: &SecureStack, user: &str, instance: &str) -> Config {
    Config::from_toml_with_env(
        &fx.config_text_with(instance, &stack.librdkafka(user)),
        std::iter::empty(),
    )
    .expect("config")
}

/// The same written to a file, for the binary.
fn config_file_as(fx: &Fixture, stack: &SecureStack, user: &str) -> PathBuf {
    let path = fx.path(&format!("{user}.toml"));
    std::fs::write(&path, fx.config_text_with("cli", &stack.librdkafka(user))).expect("write");
    path
}

/// What an operator does: `auditchain acls --print` for this deployment,
/// run as a script with the administrator's credentials.
fn apply_acls(fx: &Fixture, stack: &SecureStack) -> String {
    let out = Command::new(BIN)
        .args(["acls", "--print", "--config"])
        .arg(fx.config_file("acls"))
        .args([
            "--processor",
            "processor",
            "--producer",
            "producer",
            "--auditor",
            "auditor",
            "--bootstrap-server",
            &stack.bootstrap,
            "--command-config",
        ])
        .arg(&stack.admin_properties)
        .arg("--kafka-acls")
        .arg(&stack.kafka_acls)
        .output()
        .expect("auditchain acls");
    assert!(
        out.status.success(),
        "acls --print: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let script = String::from_utf8(out.stdout).expect("utf-8 script");
    let file = fx.path("acls.sh");
    std::fs::write(&file, &script).expect("write the script");
    let run = Command::new("sh").arg(&file).output().expect("sh");
    assert!(
        run.status.success(),
        "applying the ACLs failed:\n{}\n{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    script
}

/// Waits until `user` is authorized to see `topic` (the broker applies new
/// ACLs from its metadata log, moments after the controller took them).
fn wait_visible(stack: &SecureStack, user: &str, topic: &str) {
    let probe: BaseConsumer = stack.client_config(user).create().expect("client");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let visible = probe
            .fetch_metadata(Some(topic), Duration::from_secs(5))
            .map(|md| {
                md.topics()
                    .iter()
                    .any(|t| t.name() == topic && t.error().is_none())
            })
            .unwrap_or(false);
        if visible {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{user} never got access to {topic}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn is_authorization_error(e: &KafkaError) -> bool {
    matches!(
        e.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::TopicAuthorizationFailed
                | RDKafkaErrorCode::GroupAuthorizationFailed
                | RDKafkaErrorCode::TransactionalIdAuthorizationFailed
                | RDKafkaErrorCode::ClusterAuthorizationFailed
        )
    )
}

/// `user` writes one record to `topic`: the broker's answer.
async fn try_write(stack: &SecureStack, user: &str, topic: &str) -> Result<(), KafkaError> {
    let producer: FutureProducer = stack.client_config(user).create().expect("producer");
    let send = producer.send(
        FutureRecord::to(topic)
            .partition(0)
            .key("tenant-0")
            .payload(b"forged by an unauthorized writer".as_slice()),
        Timeout::Never,
    );
    // A bound on a hung broker, not a synchronisation: the answer comes at
    // once (librdkafka fails messages of an unauthorized topic).
    match tokio::time::timeout(Duration::from_secs(120), send).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err((e, _))) => Err(e),
        Err(_) => panic!("{user} writing {topic}: no answer within 120 s"),
    }
}

/// `user` reads partition 0 of `topic` from the beginning: Ok at the first
/// record, the error once the broker refuses the topic. Other errors (the
/// throwaway group librdkafka needs for an assignment may be refused too)
/// do not settle the question and are read past.
fn try_read(stack: &SecureStack, user: &str, topic: &str) -> Result<(), KafkaError> {
    let consumer: BaseConsumer = stack
        .client_config(user)
        .set("group.id", common::unique("auditchain-verify-probe"))
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    // A principal without even Describe on the topic gets no metadata for
    // it, so it cannot fetch at all: the broker's refusal is that answer.
    let md = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(30))
        .expect("metadata request");
    if let Some(code) = md
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .and_then(|t| t.error())
    {
        let code = RDKafkaErrorCode::from(code);
        assert_eq!(
            code,
            RDKafkaErrorCode::TopicAuthorizationFailed,
            "{user} describing {topic}"
        );
        return Err(KafkaError::MetadataFetch(code));
    }
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, rdkafka::Offset::Beginning)
        .expect("partition");
    consumer.assign(&tpl).expect("assign");
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut seen = Vec::new();
    while Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(500)) {
            Some(Ok(_)) => return Ok(()),
            Some(Err(e))
                if e.rdkafka_error_code() == Some(RDKafkaErrorCode::TopicAuthorizationFailed) =>
            {
                return Err(e)
            }
            Some(Err(e)) => seen.push(e.to_string()),
            None => {}
        }
    }
    panic!("{user} reading {topic}: neither a record nor a topic authorization error within 120 s; other errors: {seen:?}");
}

fn assert_denied(what: &str, result: Result<(), KafkaError>) {
    match result {
        Ok(()) => panic!("{what}: allowed"),
        Err(e) => assert!(
            is_authorization_error(&e),
            "{what}: failed, but not with an authorization error: {e}"
        ),
    }
}

/// `auditchain verify --json` as `user`: (exit code, JSON).
fn verify_cli(fx: &Fixture, stack: &SecureStack, user: &str) -> (i32, serde_json::Value) {
    let out = Command::new(BIN)
        .args(["verify", "--json", "--config"])
        .arg(config_file_as(fx, stack, user))
        .arg("--processor-key")
        .arg(format!(
            "processor-1={}",
            fx.path("processor-1.pub").display()
        ))
        .env("RUST_LOG", "warn")
        .output()
        .expect("auditchain verify");
    let code = out.status.code().unwrap_or(-1);
    let json = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
        panic!(
            "verify printed no report (exit {code}): {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (code, json)
}

/// The whole deployment on the secured cluster: topics made by the admin,
/// the ACLs of `acls --print` applied, events published by the producer
/// principal, processed over SASL_SSL by the processor principal, verified
/// by the auditor principal; then every principal tries what it must not,
/// and the admin forges a record that `verify` catches.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_secured_deployment_processes_verifies_and_refuses_everyone_else() {
    let Some(stack) = secure::stack() else { return };
    let fx = fixture(&stack, 2, stack.librdkafka("processor")).await;
    let t = fx.config("p1").topics.clone();

    // The processor may not create topics: the administrator does.
    let mut admin = fx.config("admin");
    admin.librdkafka.clear();
    admin.librdkafka.extend(stack.librdkafka("admin"));
    let report = auditchain::kafka::ensure_topics(&admin)
        .await
        .expect("topics as admin");
    assert_eq!(report.created.len(), 4, "{report:?}");

    let script = apply_acls(&fx, &stack);
    assert!(
        !script.contains("--operation Create") && !script.contains("--operation All"),
        "{script}"
    );
    wait_visible(&stack, "producer", &t.input);
    wait_visible(&stack, "processor", &t.state);
    wait_visible(&stack, "auditor", &t.chained);

    // The producer principal publishes signed events (and one of each bad kind).
    let spec = fx.spec(300, 6, 1);
    let produced =
        auditchain::produce::produce(&config_as(&fx, &stack, "producer", "producer"), &spec)
            .await
            .expect("publish as the producer principal");
    let sent = produced.records.len();

    // The processor principal processes them over SASL_SSL.
    let mut processor = fx.spawn("p1");
    fx.wait_all_committed(
        "processing over SASL_SSL",
        || processor.assert_alive(),
        Duration::from_secs(240),
    )
    .await;
    let log = processor.log.clone();
    processor.stop();
    // The least-privilege set is enough: nothing the processor did was refused.
    let log = std::fs::read_to_string(&log).expect("processor log");
    assert!(
        !log.contains("AuthorizationFailed")
            && !log.to_lowercase().contains("authorization failed"),
        "the processor was refused something under the ACLs of acls --print:\n{log}"
    );

    // The auditor verifies: everything chained or quarantined exactly once.
    let (code, json) = tokio::task::block_in_place(|| verify_cli(&fx, &stack, "auditor"));
    assert_eq!(code, 0, "verify as the auditor: {json:#}");
    assert_eq!(
        json["input_records"].as_u64(),
        Some(sent as u64),
        "{json:#}"
    );
    assert_eq!(json["ok"], serde_json::Value::Bool(true));

    // The rogue (authenticated, no ACLs) cannot write any output, nor the
    // input, nor read anything, nor delete the trail, nor fence the
    // processor by taking its transactional id.
    for topic in [&t.chained, &t.anchors, &t.state, &t.quarantine, &t.input] {
        assert_denied(
            &format!("rogue writing {topic}"),
            try_write(&stack, "rogue", topic).await,
        );
    }
    for topic in [&t.input, &t.chained] {
        assert_denied(
            &format!("rogue reading {topic}"),
            tokio::task::block_in_place(|| try_read(&stack, "rogue", topic)),
        );
    }
    let rogue_admin: AdminClient<DefaultClientContext> =
        stack.client_config("rogue").create().expect("admin client");
    let deleted = rogue_admin
        .delete_topics(&[&t.chained], &AdminOptions::new())
        .await
        .expect("delete_topics request");
    assert!(
        matches!(
            deleted.first(),
            Some(Err((_, RDKafkaErrorCode::TopicAuthorizationFailed)))
        ),
        "rogue deleting {}: {deleted:?}",
        t.chained
    );
    let fencer: BaseProducer = stack
        .client_config("rogue")
        .set("transactional.id", fx.config("p1").transactional_id())
        .create()
        .expect("producer");
    let fenced = tokio::task::block_in_place(|| fencer.init_transactions(Duration::from_secs(60)));
    match fenced {
        Ok(()) => panic!("rogue took the processor's transactional id"),
        Err(e) => assert!(
            e.to_string().contains("TransactionalIdAuthorizationFailed")
                || e.to_string().to_lowercase().contains("authoriz"),
            "rogue init_transactions: {e}"
        ),
    }

    // The producer principal writes the input only, and reads nothing —
    // not even the input, where every tenant's events are.
    for topic in [&t.chained, &t.anchors, &t.state, &t.quarantine] {
        assert_denied(
            &format!("producer writing {topic}"),
            try_write(&stack, "producer", topic).await,
        );
    }
    assert_denied(
        "producer reading the input (other tenants' events)",
        tokio::task::block_in_place(|| try_read(&stack, "producer", &t.input)),
    );

    // The auditor reads (it just verified) and writes nothing.
    for topic in [&t.chained, &t.anchors, &t.input] {
        assert_denied(
            &format!("auditor writing {topic}"),
            try_write(&stack, "auditor", topic).await,
        );
    }
    assert_denied(
        "auditor reading the state topic",
        tokio::task::block_in_place(|| try_read(&stack, "auditor", &t.state)),
    );

    // A compromised administrator (write access to everything) appends a
    // well-formed record to a chain: right seq, right link, a real signed
    // event, entry hash recomputed. No signed anchor covers it.
    let mut last: HashMap<i32, ChainedRecord> = HashMap::new();
    tokio::task::block_in_place(|| {
        auditchain::verify::read_topic(&admin, &t.chained, |p, _, _, v| {
            let r = ChainedRecord::decode(v.unwrap_or_default()).expect("chained record");
            if last
                .get(&p)
                .is_none_or(|l| r.source_offset > l.source_offset)
            {
                last.insert(p, r);
            }
        })
    })
    .expect("read the chained topic as admin");
    let (partition, tip) = last.into_iter().next().expect("a chained record");
    let forged = common::forged_successor(&tip, 1_000);
    let value = forged
        .encode(admin.schemas.chained_record_id)
        .expect("encode the forged record");
    let producer: FutureProducer = stack.client_config("admin").create().expect("producer");
    producer
        .send(
            FutureRecord::to(&t.chained)
                .partition(partition)
                .key(forged.tenant_id.as_bytes())
                .payload(&value),
            Timeout::Never,
        )
        .await
        .map_err(|(e, _)| e)
        .expect("the administrator may write the chained topic");
    let (code, json) = tokio::task::block_in_place(|| verify_cli(&fx, &stack, "auditor"));
    assert_eq!(code, 1, "verify must fail on a forged record: {json:#}");
    let problems = json["problems"].as_array().expect("problems");
    assert!(
        problems.iter().any(|p| p["what"]
            .as_str()
            .is_some_and(|w| w.contains("not covered by any anchor"))
            && p["place"]
                .as_str()
                .is_some_and(|pl| pl.ends_with(&format!("@{}", forged.source_offset)))),
        "the forged record is not reported as outside every anchor: {json:#}"
    );
}

/// Runs `auditchain run` until it exits on its own (it must: no wait here
/// is bounded by anything but librdkafka's and auditchain's own timeouts);
/// its exit status and log.
fn run_to_exit(
    fx: &Fixture,
    instance: &str,
    env: &[(&str, &str)],
) -> (std::process::ExitStatus, String) {
    let mut child = fx.spawn_with(instance, env);
    let status = tokio::task::block_in_place(|| child.child.wait()).expect("wait");
    let log = std::fs::read_to_string(&child.log).expect("log");
    (status, log)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_stops_start_up_naming_authentication() {
    let Some(stack) = secure::stack() else { return };
    let wrong = stack.librdkafka_with("processor", "not-the-processors-password", &stack.ca);
    let fx = fixture(&stack, 1, wrong).await;
    let started = Instant::now();
    let (status, log) = run_to_exit(&fx, "p1", &[]);
    assert!(!status.success(), "exited {status}; log:\n{log}");
    let last = log
        .lines()
        .rev()
        .find(|l| l.starts_with("error:"))
        .unwrap_or_default();
    assert!(
        last.contains("SASL authentication failed") && last.contains(&stack.bootstrap),
        "the start-up error does not name authentication: `{last}`; log:\n{log}"
    );
    eprintln!("refused in {:?}: {last}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_certificate_stops_start_up_naming_the_certificate() {
    let Some(stack) = secure::stack() else { return };
    let untrusted = stack.librdkafka_with(
        "processor",
        &stack.password("processor"),
        &stack.untrusted_ca,
    );
    let fx = fixture(&stack, 1, untrusted).await;
    let (status, log) = run_to_exit(&fx, "p1", &[]);
    assert!(!status.success(), "exited {status}; log:\n{log}");
    let last = log
        .lines()
        .rev()
        .find(|l| l.starts_with("error:"))
        .unwrap_or_default();
    assert!(
        last.contains("TLS handshake failed") && last.contains("certificate"),
        "the start-up error does not name the certificate: `{last}`; log:\n{log}"
    );
}

/// Every place a secret could show: log lines at debug level (librdkafka's
/// own debug output included), the start-up error, `--help`, `/metrics`,
/// and the admin endpoint's refusals.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_never_reach_logs_errors_help_or_metrics() {
    let Some(stack) = secure::stack() else { return };
    let id = uuid::Uuid::new_v4().simple().to_string();
    let sasl_password = format!("sasl-{id}");
    let registry_password = format!("registry-{id}");
    let url_password = format!("urlpass-{id}");
    let token = format!("token-{id}");
    let near_miss = format!("{token}x");
    let secrets = [
        &sasl_password,
        &registry_password,
        &url_password,
        &token,
        &near_miss,
    ];
    let registry = format!(
        "\n[schema_registry]\nurl = \"http://reg-user:{url_password}@127.0.0.1:9/apis/ccompat/v7\"\n\
         username = \"reg-user\"\npassword = \"{registry_password}\"\n"
    );
    let debug_env = [
        ("RUST_LOG", "debug"),
        ("AUDITCHAIN_ADMIN_TOKEN", token.as_str()),
    ];
    let assert_clean = |what: &str, text: &str| {
        for s in &secrets {
            assert!(!text.contains(s.as_str()), "{what} shows a secret:\n{text}");
        }
    };

    // 1. The real broker refuses the SASL password: debug logs, librdkafka's
    //    `debug=all`, and the start-up error.
    let mut librdkafka = stack.librdkafka_with("processor", &sasl_password, &stack.ca);
    librdkafka.push(("debug".into(), "all".into()));
    let fx = fixture(&stack, 1, librdkafka.clone()).await;
    let config = fx.path("refused.toml");
    std::fs::write(
        &config,
        fx.config_text_with("refused", &librdkafka) + &registry,
    )
    .expect("write");
    let out = tokio::task::block_in_place(|| {
        Command::new(BIN)
            .args(["run", "--config"])
            .arg(&config)
            .envs(debug_env)
            .env("NO_COLOR", "1")
            .output()
    })
    .expect("auditchain run");
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success());
    assert!(log.contains("SASL authentication failed"), "{log}");
    assert!(log.lines().count() > 50, "debug logging was not on:\n{log}");
    assert_clean("a refused start-up at debug level", &log);

    // 2. No broker at all (nothing listens on port 9): while it waits, the
    //    HTTP endpoint is up; scrape it and use the admin endpoint with a
    //    near-miss token and the real one.
    let unreachable = fx.path("unreachable.toml");
    let text = fx
        .config_text_with("unreachable", &librdkafka)
        .replace(&stack.bootstrap, "127.0.0.1:9")
        + &registry;
    std::fs::write(&unreachable, text).expect("write");
    let address_file = fx.path("unreachable.address");
    let log_file = fx.path("unreachable.log");
    let log = std::fs::File::create(&log_file).expect("log");
    let child = Command::new(BIN)
        .args(["run", "--config"])
        .arg(&unreachable)
        .envs(debug_env)
        .env("AUDITCHAIN_HTTP_ADDRESS_FILE", &address_file)
        .env("NO_COLOR", "1")
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("spawn");
    let mut child = common::Child {
        child,
        log: log_file.clone(),
        http_address_file: address_file.clone(),
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let addr = loop {
        child.assert_alive();
        match std::fs::read_to_string(&address_file) {
            Ok(a) if !a.is_empty() => break a,
            _ => {}
        }
        assert!(Instant::now() < deadline, "no HTTP address");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let (status, metrics) = common::http(&addr, "GET", "/metrics");
    assert_eq!(status, 200);
    assert!(metrics.contains("auditchain_ready"), "{metrics}");
    assert_clean("/metrics", &metrics);
    let (status, body) = common::http_with(
        &addr,
        "POST",
        "/admin/pause",
        &[("Authorization", &format!("Bearer {near_miss}"))],
    );
    assert_eq!(status, 401, "{body}");
    assert_clean("a refusal", &body);
    let (status, _) = common::http_with(
        &addr,
        "POST",
        "/admin/pause",
        &[("Authorization", &format!("Bearer {token}"))],
    );
    assert_eq!(status, 202);
    child.kill9();
    let log = std::fs::read_to_string(&log_file).expect("log");
    assert!(log.contains("refused an admin request"), "{log}");
    assert_clean("logs while the broker is unreachable", &log);

    // 3. --help, with every secret in the environment (clap shows the
    //    values of the variables arguments read unless told not to).
    for args in [
        &["--help"][..],
        &["run", "--help"],
        &["smoke", "--help"],
        &["verify", "--help"],
        &["acls", "--help"],
    ] {
        let out = Command::new(BIN)
            .args(args)
            .env(
                "SCHEMA_REGISTRY_URL",
                format!("http://reg-user:{url_password}@127.0.0.1:9"),
            )
            .env(
                "KAFKA_BOOTSTRAP_SERVERS",
                format!("reg-user:{url_password}@127.0.0.1:9"),
            )
            .env("AUDITCHAIN_ADMIN_TOKEN", &token)
            .env("AUDITCHAIN_LOG_JSON", &registry_password)
            .env("AUDITCHAIN__LIBRDKAFKA__sasl.password", &sasl_password)
            .output()
            .expect("--help");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(text.contains("Usage"), "{args:?}: {text}");
        assert_clean(&format!("auditchain {}", args.join(" ")), &text);
    }
}
