//! Reading the trail and the input from Kafka (`read_committed`), each
//! topic partition from its beginning to the high watermark it had when
//! reading started.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use crate::config::Config;
use crate::error::{Error, Result};
use crate::kafka::{base_client_config, partition_count, QuietContext};
use crate::records::{AnchorBatch, ChainedRecord, QuarantineRecord};

use super::{Coord, Trail};

/// How long a reader may see no progress before it gives up: only an open
/// transaction holds a `read_committed` reader back that long.
const STALL_LIMIT: Duration = Duration::from_secs(300);

/// What a reader prefetches per partition. librdkafka's default (64 MiB)
/// would make the prefetch queues of verify's four readers the largest
/// thing it holds.
const PREFETCH_KBYTES: &str = "8192";

/// How soon a reader whose prefetch queue was full fetches again.
const FETCH_BACKOFF_MS: &str = "10";

/// Which records a [`PartitionReader`] sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isolation {
    /// Committed records only (`read_committed`): the trail as consumers see it.
    Committed,
    /// Every record, aborted ones too (`read_uncommitted`).
    Uncommitted,
}

impl Isolation {
    /// librdkafka's `isolation.level`.
    pub fn name(self) -> &'static str {
        match self {
            Isolation::Committed => "read_committed",
            Isolation::Uncommitted => "read_uncommitted",
        }
    }
}

/// Reads one topic partition from its beginning to `end`, record by record:
/// the one reader of a topic partition to its end that verify, prove,
/// replay, export, smoke and the tests share. (Restore reads all its state
/// partitions with one consumer, against a deadline, and says which open
/// transaction holds it back: `state::restore`.)
pub struct PartitionReader {
    consumer: Option<BaseConsumer<QuietContext>>,
    topic: String,
    partition: i32,
    end: i64,
    done: bool,
}

impl std::fmt::Debug for PartitionReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartitionReader")
            .field("topic", &self.topic)
            .field("partition", &self.partition)
            .field("end", &self.end)
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl PartitionReader {
    /// A reader of `topic`/`partition` up to `ends` (its low and high
    /// watermarks from [`watermarks`]), from offset `from` when given (a
    /// checkpoint's position), from the beginning otherwise; it sees
    /// committed records only.
    ///
    /// The end is the high watermark, not the LSO: right after a processor
    /// died its open transaction holds the LSO back until the coordinator
    /// aborts it, and stopping there would report the records committed
    /// after it as lost (a false alarm). Records written after reading
    /// started are left for the next run.
    pub fn open(
        config: &Config,
        topic: &str,
        partition: i32,
        ends: (i64, i64),
        from: Option<i64>,
    ) -> Result<Self> {
        let client = base_client_config(config, "auditchain-verify");
        Self::with_client(client, Isolation::Committed, topic, partition, ends, from)
    }

    /// [`PartitionReader::open`] with a client configuration of the
    /// caller's (a bare bootstrap list, say; its `group.id`, if set, is
    /// kept) and either isolation level.
    pub fn with_client(
        mut client: ClientConfig,
        isolation: Isolation,
        topic: &str,
        partition: i32,
        ends: (i64, i64),
        from: Option<i64>,
    ) -> Result<Self> {
        let (low, high) = ends;
        let consumer = if high > from.unwrap_or(low).max(low) {
            // The auditor's ACLs let it read under this prefix only; a
            // caller with a group of its own (the processor's restore) keeps it.
            if client.get("group.id").is_none() {
                client.set(
                    "group.id",
                    format!(
                        "{}{}",
                        crate::acls::VERIFY_GROUP_PREFIX,
                        uuid::Uuid::new_v4().simple()
                    ),
                );
            }
            let consumer: BaseConsumer<QuietContext> = client
                .set("enable.auto.commit", "false")
                .set("isolation.level", isolation.name())
                .set("enable.partition.eof", "true")
                .set("queued.max.messages.kbytes", PREFETCH_KBYTES)
                // With the bound above the queue fills often; by default
                // librdkafka then waits a whole second before fetching
                // again, which left the reader idle most of the time.
                .set("fetch.queue.backoff.ms", FETCH_BACKOFF_MS)
                // A position retention has deleted is an error, not a
                // silent jump to the end.
                .set("auto.offset.reset", "error")
                .create_with_context(QuietContext)
                .map_err(|e| Error::kafka("creating a reader", e))?;
            let mut tpl = TopicPartitionList::new();
            let start = from.map_or(Offset::Beginning, Offset::Offset);
            tpl.add_partition_offset(topic, partition, start)
                .map_err(|e| Error::kafka("building the assignment", e))?;
            consumer
                .assign(&tpl)
                .map_err(|e| Error::kafka(format!("assigning `{topic}`"), e))?;
            Some(consumer)
        } else {
            None
        };
        Ok(PartitionReader {
            done: consumer.is_none(),
            consumer,
            topic: topic.to_string(),
            partition,
            end: high,
        })
    }

    /// The next record before the end, `None` once the end is reached.
    pub fn next_record(&mut self) -> Result<Option<BorrowedMessage<'_>>> {
        let Some(consumer) = self.consumer.as_ref().filter(|_| !self.done) else {
            return Ok(None);
        };
        let since = Instant::now();
        loop {
            match consumer.poll(Duration::from_millis(200)) {
                Some(Ok(m)) if m.offset() < self.end => return Ok(Some(m)),
                Some(Ok(_)) => {
                    self.done = true;
                    return Ok(None);
                }
                None | Some(Err(KafkaError::PartitionEOF(_))) => {}
                // A broker failing over: librdkafka fetches again on its
                // own; the stall limit below still bounds the wait.
                Some(Err(e)) if crate::error::is_transient(&e) => {}
                Some(Err(e)) => return Err(Error::kafka(format!("reading `{}`", self.topic), e)),
            }
            let position = consumer.position().map_err(|e| {
                Error::kafka(format!("reading the position in `{}`", self.topic), e)
            })?;
            let reached = position
                .find_partition(&self.topic, self.partition)
                .is_some_and(|e| crate::state::reached(e.offset(), self.end));
            if reached {
                self.done = true;
                return Ok(None);
            }
            if since.elapsed() > STALL_LIMIT {
                return Err(Error::Timeout(format!(
                    "reading `{}` partition {} did not reach its high watermark {} within {} s of the last record: a transaction is still open there (a processor that died mid-transaction, until the broker aborts it, or a producer outside auditchain); run verify again once it has ended",
                    self.topic,
                    self.partition,
                    self.end,
                    STALL_LIMIT.as_secs()
                )));
            }
        }
    }
}

/// The (low, high) watermarks of `partitions` of `topic`; partitions the
/// topic does not have are left out. An error names a topic that does not
/// exist.
pub fn watermarks(
    config: &Config,
    topic: &str,
    partitions: &[i32],
) -> Result<HashMap<i32, (i64, i64)>> {
    crate::state::high_watermarks(config, topic, &present(config, topic, partitions)?)
}

/// The (low watermark, last stable offset) of `partitions` of `topic`:
/// every transaction with a record before the LSO had ended when it was
/// read. Partitions the topic does not have are left out.
pub fn stable_offsets(
    config: &Config,
    topic: &str,
    partitions: &[i32],
) -> Result<HashMap<i32, (i64, i64)>> {
    crate::state::stable_offsets(config, topic, &present(config, topic, partitions)?)
}

/// Those of `partitions` that `topic` has; an error names a topic that does
/// not exist.
fn present(config: &Config, topic: &str, partitions: &[i32]) -> Result<Vec<i32>> {
    let count = topic_partitions(config, topic)?;
    Ok(partitions
        .iter()
        .copied()
        .filter(|p| (*p as usize) < count)
        .collect())
}

/// Reads every partition of `topic` to its end (`read_committed`), handing
/// each record to `f`.
pub fn read_topic(
    config: &Config,
    topic: &str,
    f: impl FnMut(i32, i64, Option<&[u8]>, Option<&[u8]>),
) -> Result<()> {
    read_partitions(config, topic, None, f)
}

/// Number of partitions of `topic`.
pub fn topic_partitions(config: &Config, topic: &str) -> Result<usize> {
    let consumer: BaseConsumer<QuietContext> = base_client_config(config, "auditchain-verify")
        .create_with_context(QuietContext)
        .map_err(|e| Error::kafka("creating a metadata client", e))?;
    partition_count(&consumer, topic, &config.kafka.bootstrap_servers)?.ok_or_else(|| {
        Error::Topic {
            topic: topic.into(),
            message: "does not exist".into(),
        }
    })
}

/// Like [`read_topic`], for `only` partitions (all when `None`), one
/// partition after the other.
pub fn read_partitions(
    config: &Config,
    topic: &str,
    only: Option<&[i32]>,
    mut f: impl FnMut(i32, i64, Option<&[u8]>, Option<&[u8]>),
) -> Result<()> {
    let wanted: Vec<i32> = match only {
        Some(ps) => ps.to_vec(),
        None => (0..topic_partitions(config, topic)? as i32).collect(),
    };
    let ends = watermarks(config, topic, &wanted)?;
    let mut partitions: Vec<(&i32, &(i64, i64))> = ends.iter().collect();
    partitions.sort();
    for (p, ends) in partitions {
        let mut reader = PartitionReader::open(config, topic, *p, *ends, None)?;
        while let Some(m) = reader.next_record()? {
            f(m.partition(), m.offset(), m.key(), m.payload());
        }
    }
    Ok(())
}

/// Reads the three output topics of `config`.
pub fn read_trail(config: &Config) -> Result<Trail> {
    read_trail_partitions(config, None)
}

/// Reads `only` partitions (all when `None`) of the three output topics.
pub fn read_trail_partitions(config: &Config, only: Option<&[i32]>) -> Result<Trail> {
    let t = &config.topics;
    let mut undecodable = Vec::new();
    let chained = read_decoded(
        config,
        &t.chained,
        only,
        ChainedRecord::decode,
        &mut undecodable,
    )?;
    let quarantined = read_decoded(
        config,
        &t.quarantine,
        only,
        QuarantineRecord::decode,
        &mut undecodable,
    )?;
    let anchors = read_decoded(
        config,
        &t.anchors,
        only,
        AnchorBatch::decode,
        &mut undecodable,
    )?;
    Ok(Trail {
        chained,
        quarantined,
        anchors,
        undecodable,
    })
}

/// The records of `topic` decoded by `decode`; those that do not decode
/// are added to `undecodable` as (topic, partition, offset, error).
fn read_decoded<T>(
    config: &Config,
    topic: &str,
    only: Option<&[i32]>,
    decode: fn(&[u8]) -> Result<T>,
    undecodable: &mut Vec<(String, i32, i64, String)>,
) -> Result<Vec<T>> {
    let mut out = Vec::new();
    read_partitions(config, topic, only, |p, o, _, v| {
        match decode(v.unwrap_or_default()) {
            Ok(r) => out.push(r),
            Err(e) => undecodable.push((topic.to_string(), p, o, e.to_string())),
        }
    })?;
    Ok(out)
}

/// The coordinates of every committed data record of the input topic.
pub fn read_input_coords(config: &Config) -> Result<Vec<Coord>> {
    read_input_partitions(config, None)
}

/// Like [`read_input_coords`], for `only` partitions.
pub fn read_input_partitions(config: &Config, only: Option<&[i32]>) -> Result<Vec<Coord>> {
    let topic = config.topics.input.clone();
    let mut coords = Vec::new();
    read_partitions(config, &topic, only, |p, o, _, _| {
        coords.push((topic.clone(), p as u32, o as u64))
    })?;
    Ok(coords)
}
