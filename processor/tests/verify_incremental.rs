//! Incremental verification against a real trail: input the processor has
//! not processed yet is pending, not lost; a checkpoint of one run lets the
//! next read only what follows it and still knows every chain; a checkpoint
//! that does not match the trail is refused; and the `verify --checkpoint`
//! command writes and resumes one as an auditor would run it.

mod common;

use std::collections::HashMap;
use std::process::Command;
use std::time::Duration;

use auditchain::verify::{Checkpoint, Options, Report};

fn verify(fx: &common::Fixture, resume: Option<Checkpoint>) -> Report {
    let keys = auditchain::keys::KeySet::load(&fx.path("producers.toml")).expect("keys");
    let processor = HashMap::from([(
        "processor-1".to_string(),
        auditchain::keys::load_verifying_key(&fx.path("processor-1.pub")).expect("pub"),
    )]);
    let options = Options {
        check_input: true,
        checkpoint: true,
        resume,
        ..Options::default()
    };
    tokio::task::block_in_place(|| {
        auditchain::verify::verify(
            &fx.config("auditor"),
            &keys,
            &processor,
            &options,
            |_, _| {},
        )
    })
    .expect("verify runs")
}

async fn process_all(fx: &common::Fixture, instance: &str) {
    let running = fx.start(instance);
    fx.wait_caught_up(&[&running], Duration::from_secs(120))
        .await;
    running.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_checkpoint_carries_verification_forward() {
    let fx = common::Fixture::new(2, false).await;
    let first_batch = fx.produce(&fx.spec(200, 5, 1)).await.records.len();
    process_all(&fx, "incremental-1").await;

    // Published while no processor runs: not processed yet, so pending.
    let unprocessed = fx.produce(&fx.spec(50, 5, 0)).await.records.len();
    let first = verify(&fx, None);
    common::assert_verified(&first);
    assert_eq!(first.pending, Some(unprocessed));
    assert_eq!(first.input_records, Some(first_batch));
    let checkpoint = Checkpoint::of(&fx.config("auditor"), None, &first.states);
    assert_eq!(checkpoint.partitions.len(), 2, "{checkpoint:#?}");

    process_all(&fx, "incremental-2").await;
    let more = fx.produce(&fx.spec(100, 7, 1)).await.records.len();
    process_all(&fx, "incremental-3").await;

    // Only what follows the checkpoint is read, every chain still known.
    let second = verify(&fx, Some(checkpoint.clone()));
    common::assert_verified(&second);
    assert_eq!(second.chained + second.quarantined, unprocessed + more);
    assert_eq!(second.input_records, Some(unprocessed + more));
    assert_eq!(second.pending, Some(0));
    let (_, whole) = tokio::task::block_in_place(|| fx.verify());
    common::assert_verified(&whole);
    assert_eq!(second.chains, whole.chains);

    // A checkpoint whose anchor is not the trail's is refused, and no new
    // state comes of it.
    let mut forged = checkpoint.clone();
    let state = forged.partitions.values_mut().next().expect("a partition");
    state.anchor_hash = hex::encode([7u8; 32]);
    let refused = verify(&fx, Some(forged));
    assert!(
        refused
            .problems
            .iter()
            .any(|p| p.what.contains("not the anchor the checkpoint ended with")),
        "{:#?}",
        refused.problems
    );

    // A chain head the trail does not continue from is a broken link.
    let mut forged = checkpoint;
    let state = forged.partitions.values_mut().next().expect("a partition");
    state.heads[0].entry_hash = hex::encode([7u8; 32]);
    let broken = verify(&fx, Some(forged));
    assert!(
        broken
            .problems
            .iter()
            .any(|p| p.what.contains("prev_hash") && p.what.contains("does not link")),
        "{:#?}",
        broken.problems
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_checkpoint_option_writes_and_resumes() {
    let fx = common::Fixture::new(2, false).await;
    fx.produce(&fx.spec(120, 4, 0)).await;
    process_all(&fx, "incremental-cli-1").await;
    let checkpoint = fx.path("verify.checkpoint.json");
    let run = || {
        let out = Command::new(env!("CARGO_BIN_EXE_auditchain"))
            .arg("verify")
            .arg("--config")
            .arg(fx.config_file("auditor"))
            .arg("--processor-key")
            .arg(format!(
                "processor-1={}",
                fx.path("processor-1.pub").display()
            ))
            .arg("--checkpoint")
            .arg(&checkpoint)
            .arg("--json")
            .output()
            .expect("run verify");
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "verify printed no JSON ({e}): {}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
        (out.status.code(), json)
    };

    let (code, json) = tokio::task::block_in_place(run);
    assert_eq!(code, Some(0), "{json:#}");
    assert_eq!(json["resumed_from_checkpoint"], false);
    assert_eq!(json["chained"], 120);
    assert!(checkpoint.exists(), "no checkpoint written: {json:#}");

    fx.produce(&fx.spec(30, 4, 0)).await;
    process_all(&fx, "incremental-cli-2").await;
    let (code, json) = tokio::task::block_in_place(run);
    assert_eq!(code, Some(0), "{json:#}");
    assert_eq!(json["resumed_from_checkpoint"], true);
    assert_eq!(json["chained"], 30, "{json:#}");
    assert_eq!(json["input_records"], 30, "{json:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn input_deleted_by_retention_is_trimmed_not_extra() {
    use rdkafka::admin::{AdminClient, AdminOptions};
    use rdkafka::client::DefaultClientContext;
    use rdkafka::TopicPartitionList;

    let fx = common::Fixture::new(2, false).await;
    let first_batch = fx.produce(&fx.spec(200, 5, 0)).await.records.len();
    process_all(&fx, "retention-1").await;
    let first = verify(&fx, None);
    common::assert_verified(&first);
    let checkpoint = Checkpoint::of(&fx.config("auditor"), None, &first.states);
    let second_batch = fx.produce(&fx.spec(100, 5, 0)).await.records.len();
    process_all(&fx, "retention-2").await;

    // Retention (here DeleteRecords) removes the input up to a little past
    // where the checkpoint resumes reading it.
    let input = fx.config("auditor").topics.input;
    let mut below = TopicPartitionList::new();
    for (p, state) in &checkpoint.partitions {
        below
            .add_partition_offset(&input, *p, rdkafka::Offset::Offset(state.next.input + 10))
            .expect("offset");
    }
    let admin: AdminClient<DefaultClientContext> =
        common::client_config().create().expect("admin client");
    let deleted = admin
        .delete_records(&below, &AdminOptions::new())
        .await
        .expect("delete records");
    assert!(
        deleted.elements().iter().all(|e| e.error().is_ok()),
        "{deleted:?}"
    );

    // Every output record is checked; those whose input is gone are counted,
    // not reported as records no input has.
    let whole = verify(&fx, None);
    common::assert_verified(&whole);
    let trimmed = whole.input_trimmed.expect("input compared");
    assert!(trimmed > first_batch, "{trimmed}");
    assert_eq!(
        whole.input_records.expect("input compared") + trimmed,
        first_batch + second_batch
    );
    // The checkpoint's input position is gone too: the resumed run reads
    // what is left of the input.
    let resumed = verify(&fx, Some(checkpoint));
    common::assert_verified(&resumed);
    let trimmed = resumed.input_trimmed.expect("input compared");
    assert!(trimmed > 0);
    assert_eq!(
        resumed.input_records.expect("input compared") + trimmed,
        second_batch
    );
}
