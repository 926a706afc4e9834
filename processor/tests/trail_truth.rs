//! The trail is the source of truth (DESIGN.md §3): its topics keep every
//! record for good, the state topic is exactly compacted, and the trail
//! verifies while it is being written — with an appended forgery still
//! found.

mod common;

use std::time::Duration;

use auditchain::records::ChainedRecord;
use auditchain::verify::Kind;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_trail_being_written_verifies_and_an_appended_forgery_still_fails() {
    let fx = common::Fixture::new(2, false).await;
    let running = fx.start("live-1");
    fx.produce(&fx.spec(200, 9, 0)).await;
    fx.wait_caught_up(&[&running], Duration::from_secs(120))
        .await;

    // Verify again and again while a stream is chained: transactions
    // commit during most runs (the processor commits every 300 ms).
    let stream = fx.stream(40, 50, Duration::from_millis(250));
    let (mut runs, mut live) = (0, 0);
    while !stream.is_finished() || runs < 3 {
        let before = fx.committed_total();
        let report = fx.verify_streaming();
        common::assert_verified(&report);
        runs += 1;
        if fx.committed_total() > before {
            live += 1;
        }
    }
    let sent = 200 + stream.await.expect("stream");
    println!("{runs} verify runs while the trail was written, {live} with commits during the run");
    assert!(
        live > 0,
        "no verify run overlapped a commit: the test did not see a live trail"
    );

    // A forgery appended to the live trail: the last chained record of
    // partition 0, continued by one more entry whose chain links and whose
    // producer signature holds (the event is the original's), at an input
    // offset far past the input. Only the processor's key could anchor it.
    let config = fx.config("forger");
    let chained = common::read_to_end(&config.topics.chained, 1, "read_committed");
    let last = chained.last().expect("a chained record");
    let tip =
        ChainedRecord::decode(rdkafka::Message::payload(last).expect("value")).expect("decodes");
    let forged = common::forged_successor(&tip, 1_000_000);
    let stream = fx.stream(10, 50, Duration::from_millis(250));
    common::produce_plain(
        &config.topics.chained,
        0,
        forged.tenant_id.as_bytes(),
        &forged.encode(1).expect("encodes"),
    )
    .await;
    let report = fx.verify_streaming();
    let forgery = |p: &auditchain::verify::Problem| match p.kind {
        // The last record before the cut: no anchor covers it.
        Kind::Uncovered => p.place == format!("{}/0@{}", config.topics.input, forged.source_offset),
        // Records of later transactions follow it: out of source order.
        Kind::Extra => p.what.contains(&format!(
            "source offset {} stands before",
            forged.source_offset
        )),
        _ => false,
    };
    assert!(
        report.problems.iter().any(forgery),
        "the forged record was not reported: {:#?}",
        report.problems
    );
    let sent = sent + stream.await.expect("stream");
    fx.wait_caught_up(&[&running], Duration::from_secs(120))
        .await;
    running.stop();
    // Once the processor is idle the forgery is still found, and all the
    // input is in the trail once.
    let report = fx.verify_streaming();
    assert!(
        report.problems.iter().any(forgery),
        "{:#?}",
        report.problems
    );
    assert!(
        report.problems.iter().all(|p| p.kind != Kind::Lost),
        "{:#?}",
        report.problems
    );
    assert_eq!(report.input_records, Some(sent));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn created_trail_topics_keep_every_record_for_good() {
    let fx = common::Fixture::new(1, false).await;
    let config = fx.config("topics-1");
    let report = auditchain::kafka::ensure_topics(&config)
        .await
        .expect("topics");
    let admin = auditchain::kafka::admin_client(&config).expect("admin");
    let t = &config.topics;
    for topic in [&t.chained, &t.anchors, &t.quarantine] {
        // As the broker describes the topic, not as we asked for it.
        let described = auditchain::kafka::topic_configs(&admin, topic)
            .await
            .expect("describe")
            .expect("described");
        for (setting, value) in [
            ("retention.ms", "-1"),
            ("retention.bytes", "-1"),
            ("cleanup.policy", "delete"),
        ] {
            assert_eq!(
                described.get(setting).map(String::as_str),
                Some(value),
                "{topic} {setting}"
            );
        }
        let (_, retention, warning) = report
            .trail_retention
            .iter()
            .find(|(name, ..)| name == topic)
            .expect("reported");
        assert_eq!((retention.loss(), warning), (None, &None), "{topic}");
    }
    let state = auditchain::kafka::topic_configs(&admin, &t.state)
        .await
        .expect("describe")
        .expect("described");
    assert_eq!(
        state.get("cleanup.policy").map(String::as_str),
        Some("compact")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_trail_topic_that_deletes_records_stops_start_up_naming_it() {
    let fx = common::Fixture::new(1, false).await;
    let config = fx.config("strict-1");
    // As `kafka-topics --create` makes it with the broker's default: a week.
    common::create_topic(&config.topics.anchors, 1, &[("retention.ms", "604800000")]).await;
    let file = fx.config_file("strict-1");
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_auditchain"))
        .args(["run", "--config"])
        .arg(&file)
        .env("NO_COLOR", "1")
        .output()
        .expect("run auditchain");
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(!run.status.success(), "run started: {stderr}");
    for expected in [
        format!("topic `{}`", config.topics.anchors),
        "retention.ms is `604800000`".to_string(),
        format!(
            "--entity-name {} --add-config retention.ms=-1",
            config.topics.anchors
        ),
    ] {
        assert!(stderr.contains(&expected), "no `{expected}` in: {stderr}");
    }

    // The operator's word that an archive keeps the trail: accepted, loudly.
    let topics = std::process::Command::new(env!("CARGO_BIN_EXE_auditchain"))
        .args(["topics", "--config"])
        .arg(&file)
        .env("NO_COLOR", "1")
        .env("AUDITCHAIN__TOPICS__TRAIL_ARCHIVED", "true")
        .output()
        .expect("run auditchain topics");
    let stdout = String::from_utf8_lossy(&topics.stdout);
    assert!(
        topics.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&topics.stderr)
    );
    assert!(
        stdout.contains(&format!(
            "WARNING: trail topic `{}` can lose records (retention.ms=604800000)",
            config.topics.anchors
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("trail `{}`: kept for good", config.topics.chained)),
        "{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_state_topic_that_also_deletes_stops_start_up() {
    let fx = common::Fixture::new(1, false).await;
    let config = fx.config("state-policy-1");
    common::create_topic(
        &config.topics.state,
        1,
        &[("cleanup.policy", "compact,delete")],
    )
    .await;
    let err = auditchain::kafka::ensure_topics(&config)
        .await
        .expect_err("compact,delete is refused")
        .to_string();
    assert!(
        err.contains(&config.topics.state) && err.contains("exactly cleanup.policy=compact"),
        "{err}"
    );
    assert!(err.contains("--add-config cleanup.policy=compact"), "{err}");
}

/// Starts the processor, publishes `events` more, waits until they are
/// processed and stops it: its metrics as it stopped.
async fn process_more(fx: &common::Fixture, events: usize) -> String {
    let metrics = auditchain::metrics::Metrics::new();
    let options = auditchain::processor::RunOptions {
        traces: auditchain::telemetry::Traces::off(),
        faults: None,
        metrics: Some(std::sync::Arc::clone(&metrics)),
    };
    let running = fx.start_with("rebuild-1", options);
    fx.produce(&fx.spec(events, 9, 0)).await;
    fx.wait_caught_up(&[&running], Duration::from_secs(120))
        .await;
    let text = metrics.render();
    running.stop();
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lost_state_topic_is_rebuilt_from_the_trail_and_no_chain_restarts() {
    let fx = common::Fixture::new(2, false).await;
    let config = fx.config("rebuild-1");
    fx.produce(&fx.spec(300, 9, 0)).await;
    let running = fx.start("rebuild-1");
    fx.wait_caught_up(&[&running], Duration::from_secs(120))
        .await;
    running.stop();

    // The state topic is gone (deleted by mistake, a cluster rebuilt).
    let admin = auditchain::kafka::admin_client(&config).expect("admin");
    let deleted = admin
        .delete_topics(
            &[config.topics.state.as_str()],
            &rdkafka::admin::AdminOptions::new(),
        )
        .await
        .expect("delete_topics");
    assert!(deleted.iter().all(Result::is_ok), "{deleted:?}");
    common::wait_topic_gone(&config.topics.state).await;

    let text = process_more(&fx, 300).await;

    // Every chain continued: no seq repeated, nothing lost or duplicated.
    let report = fx.verify_streaming();
    common::assert_verified(&report);
    assert_eq!(report.input_records, Some(600));
    let longest = report.chains.values().max().copied().unwrap_or(0);
    assert!(
        longest > 40,
        "chains continued past the restart: {:?}",
        report.chains
    );
    let rebuilt = common::metric(
        &text,
        "auditchain_state_rebuilds_total",
        "reason=\"missing\"",
    );
    assert_eq!(rebuilt, 2.0, "both partitions rebuilt: {text}");

    // The rebuilt heads were written back whole: a further restart restores
    // them from the state topic and finds it consistent.
    let text = process_more(&fx, 100).await;
    assert!(
        !text.contains("auditchain_state_rebuilds_total{"),
        "restored state matched the trail: {text}"
    );
    let report = fx.verify_streaming();
    common::assert_verified(&report);
    assert_eq!(report.input_records, Some(700));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_state_topic_made_again_under_a_running_processor_is_rebuilt_once() {
    let fx = common::Fixture::new(2, false).await;
    let config = fx.config("rebuild-1");
    fx.produce(&fx.spec(300, 9, 0)).await;
    let running = fx.start("rebuild-1");
    fx.wait_caught_up(&[&running], Duration::from_secs(120))
        .await;
    // The state topic deleted and made again (as a second instance's
    // start-up makes a missing one) under the running processor, which goes
    // on writing the heads of the tenants it chains: other tenants only, so
    // the new topic has a current anchor head and none of the first nine's.
    let admin = auditchain::kafka::admin_client(&config).expect("admin");
    let deleted = admin
        .delete_topics(
            &[config.topics.state.as_str()],
            &rdkafka::admin::AdminOptions::new(),
        )
        .await
        .expect("delete_topics");
    assert!(deleted.iter().all(Result::is_ok), "{deleted:?}");
    common::wait_topic_gone(&config.topics.state).await;
    let made = auditchain::kafka::ensure_topics(&config)
        .await
        .expect("topics");
    assert_eq!(made.created, vec![config.topics.state.clone()]);
    let mut others = fx.spec(100, 5, 0);
    others.tenant_prefix = "other".into();
    fx.produce(&others).await;
    fx.wait_caught_up(&[&running], Duration::from_secs(120))
        .await;
    running.stop();

    // No whole write of the heads in the new topic: rebuilt from the
    // trail, and the first tenants' chains continue.
    let text = process_more(&fx, 100).await;
    let report = fx.verify_streaming();
    common::assert_verified(&report);
    assert_eq!(report.input_records, Some(500));
    let rebuilt = common::metric(
        &text,
        "auditchain_state_rebuilds_total",
        "reason=\"missing\"",
    );
    assert_eq!(rebuilt, 2.0, "both partitions rebuilt: {text}");

    // The heads were then written whole after a `w` record: the next
    // restore trusts the state topic.
    let text = process_more(&fx, 100).await;
    assert!(
        !text.contains("auditchain_state_rebuilds_total{"),
        "restored state matched the trail: {text}"
    );
    let report = fx.verify_streaming();
    common::assert_verified(&report);
    assert_eq!(report.input_records, Some(600));
}
