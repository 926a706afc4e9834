//! The broker is a real, transactional Kafka: a committed transaction is
//! visible to `read_committed` consumers, an aborted one is not, and
//! `read_uncommitted` consumers see both.

mod common;

use std::time::Duration;

use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};

#[tokio::test(flavor = "multi_thread")]
async fn read_committed_sees_only_the_committed_transaction() {
    let topic = common::random_topic();
    common::create_topic(&topic, 2, &[]).await;

    let producer: ThreadedProducer<_> = common::client_config()
        .set("transactional.id", common::random_transactional_id())
        .set("transaction.timeout.ms", "10000")
        .create()
        .expect("transactional producer");
    let t = Duration::from_secs(30);
    producer.init_transactions(t).expect("init_transactions");

    producer.begin_transaction().expect("begin 1");
    for i in 0..4 {
        let payload = format!("committed-{i}");
        producer
            .send(
                BaseRecord::to(&topic)
                    .key("k")
                    .partition(i % 2)
                    .payload(&payload),
            )
            .map_err(|(e, _)| e)
            .expect("send");
    }
    producer.commit_transaction(t).expect("commit");

    producer.begin_transaction().expect("begin 2");
    for i in 0..3 {
        let payload = format!("aborted-{i}");
        producer
            .send(
                BaseRecord::to(&topic)
                    .key("k")
                    .partition(i % 2)
                    .payload(&payload),
            )
            .map_err(|(e, _)| e)
            .expect("send");
    }
    producer.flush(t).expect("flush");
    producer.abort_transaction(t).expect("abort");

    let payloads = |isolation: &str| {
        let mut v: Vec<String> = common::read_to_end(&topic, 2, isolation)
            .iter()
            .map(|m| String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned())
            .collect();
        v.sort();
        v
    };
    // Blocking reads are fine here: the test owns its runtime's threads.
    let committed = payloads("read_committed");
    assert_eq!(
        committed,
        vec!["committed-0", "committed-1", "committed-2", "committed-3"]
    );
    let uncommitted = payloads("read_uncommitted");
    assert_eq!(
        uncommitted,
        vec![
            "aborted-0",
            "aborted-1",
            "aborted-2",
            "committed-0",
            "committed-1",
            "committed-2",
            "committed-3"
        ]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_producer_with_the_same_transactional_id_fences_the_first() {
    let topic = common::random_topic();
    common::create_topic(&topic, 1, &[]).await;
    let txn_id = common::random_transactional_id();
    let make = || -> ThreadedProducer<_> {
        common::client_config()
            .set("transactional.id", &txn_id)
            .set("transaction.timeout.ms", "10000")
            .create()
            .expect("producer")
    };
    let t = Duration::from_secs(30);
    let zombie = make();
    zombie.init_transactions(t).expect("init zombie");
    zombie.begin_transaction().expect("begin zombie");
    zombie
        .send(BaseRecord::to(&topic).key("k").payload("from-zombie"))
        .map_err(|(e, _)| e)
        .expect("send");

    let successor = make();
    successor.init_transactions(t).expect("init successor");
    successor.begin_transaction().expect("begin successor");
    successor
        .send(BaseRecord::to(&topic).key("k").payload("from-successor"))
        .map_err(|(e, _)| e)
        .expect("send");
    successor.commit_transaction(t).expect("successor commits");

    let err = zombie
        .commit_transaction(t)
        .expect_err("the zombie must be fenced");
    assert_eq!(
        auditchain::error::classify(&err),
        auditchain::error::ErrorClass::Fatal,
        "{err}"
    );

    let seen: Vec<String> = common::read_to_end(&topic, 1, "read_committed")
        .iter()
        .map(|m| String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned())
        .collect();
    assert_eq!(seen, vec!["from-successor"]);
}
