//! The bench's own Kafka clients: topic creation, the group's committed
//! offsets (its lag on a fixed backlog) and watermarks.

use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};

use auditchain::kafka::QuietContext;

/// Timeout of metadata, offset and admin requests.
pub const TIMEOUT: Duration = Duration::from_secs(30);

/// A plain client configuration for `bootstrap`.
pub fn client(bootstrap: &str, client_id: &str) -> ClientConfig {
    let mut cc = ClientConfig::new();
    cc.set("bootstrap.servers", bootstrap)
        .set("client.id", client_id);
    cc
}

/// A topic to create: name, partitions, topic configs.
pub type TopicSpec<'a> = (&'a str, i32, &'a [(&'a str, &'a str)]);

/// Creates each topic that does not exist yet.
pub fn create_topics(bootstrap: &str, topics: &[TopicSpec<'_>]) -> Result<()> {
    let admin: AdminClient<DefaultClientContext> = client(bootstrap, "auditchain-bench-admin")
        .create()
        .context("creating an admin client")?;
    let new: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|(name, partitions, configs)| {
            configs.iter().fold(
                NewTopic::new(name, *partitions, TopicReplication::Fixed(-1)),
                |t, (k, v)| t.set(k, v),
            )
        })
        .collect();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting a runtime for the admin client")?;
    let opts = AdminOptions::new().operation_timeout(Some(TIMEOUT));
    let results = rt
        .block_on(admin.create_topics(&new, &opts))
        .with_context(|| format!("creating topics on {bootstrap}"))?;
    for r in results {
        match r {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => bail!("creating topic `{name}`: {code}"),
        }
    }
    Ok(())
}

/// Deletes every topic whose name starts with `prefix` (a run's topics,
/// the Kafka Streams peer's internal ones included); returns how many.
pub fn delete_topics_with_prefix(bootstrap: &str, prefix: &str) -> Result<usize> {
    let probe = offsets_reader(bootstrap, "auditchain-bench-cleanup")?;
    let md = probe
        .fetch_metadata(None, TIMEOUT)
        .context("listing topics")?;
    let names: Vec<String> = md
        .topics()
        .iter()
        .map(|t| t.name().to_string())
        .filter(|n| n.starts_with(prefix))
        .collect();
    if names.is_empty() {
        return Ok(0);
    }
    let admin: AdminClient<DefaultClientContext> = client(bootstrap, "auditchain-bench-admin")
        .create()
        .context("creating an admin client")?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting a runtime for the admin client")?;
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let opts = AdminOptions::new().operation_timeout(Some(TIMEOUT));
    let results = rt
        .block_on(admin.delete_topics(&refs, &opts))
        .context("deleting the run's topics")?;
    Ok(results.iter().filter(|r| r.is_ok()).count())
}

/// A consumer that only asks for metadata, watermarks and the committed
/// offsets of `group` (it never joins the group).
pub fn offsets_reader(bootstrap: &str, group: &str) -> Result<BaseConsumer<QuietContext>> {
    client(bootstrap, "auditchain-bench-lag")
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create_with_context(QuietContext)
        .context("creating an offsets reader")
}

/// Partition count of `topic`, waiting up to 15 s for a topic created
/// moments ago to show up in the metadata.
pub fn partitions<C: rdkafka::consumer::ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topic: &str,
) -> Result<i32> {
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let md = consumer
            .fetch_metadata(Some(topic), TIMEOUT)
            .with_context(|| format!("reading the metadata of `{topic}`"))?;
        let n = md
            .topics()
            .iter()
            .find(|t| t.name() == topic && t.error().is_none())
            .map_or(0, |t| t.partitions().len());
        if n > 0 {
            return i32::try_from(n).map_err(|_| anyhow!("`{topic}` has too many partitions"));
        }
        if std::time::Instant::now() > deadline {
            bail!("topic `{topic}` does not exist");
        }
        // A fresh topic propagates to the metadata asynchronously.
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Sum of the high watermarks of `topic` (records plus transaction markers).
pub fn high_watermarks<C: rdkafka::consumer::ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topic: &str,
) -> Result<i64> {
    let n = partitions(consumer, topic)?;
    let mut sum = 0;
    for p in 0..n {
        let (_, high) = consumer
            .fetch_watermarks(topic, p, TIMEOUT)
            .with_context(|| format!("reading the watermarks of `{topic}` partition {p}"))?;
        sum += high;
    }
    Ok(sum)
}

/// Sums of the group's committed offsets on `topic`'s `partitions`
/// (0 for a partition without one).
pub fn committed_sum<C: rdkafka::consumer::ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topic: &str,
    partitions: i32,
) -> Result<i64> {
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    let committed = consumer
        .committed_offsets(tpl, TIMEOUT)
        .with_context(|| format!("reading committed offsets on `{topic}`"))?;
    Ok(committed
        .elements()
        .iter()
        .map(|e| match e.offset() {
            Offset::Offset(o) => o,
            _ => 0,
        })
        .sum())
}
