//! Chain state: the heads of every tenant chain of a partition and the
//! partition's anchor head, kept in the compacted state topic (same
//! partition number as the input) and restored from it on assignment.
//!
//! Keys are `t/<tenant id>` for a tenant chain and `a` for the anchor head.
//! DESIGN.md allows the bare tenant id as key with a reserved key for the
//! anchor; the prefix makes a collision between a tenant named like the
//! reserved key and the anchor head impossible. Values are small JSON
//! documents, readable with any console consumer.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};

use crate::chain::{Hash, ZERO};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::kafka::{base_client_config, QuietContext};

/// Key of a partition's anchor head.
pub const ANCHOR_KEY: &str = "a";
/// Prefix of a tenant chain head's key.
pub const TENANT_PREFIX: &str = "t/";

/// The last entry of a tenant chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainHead {
    /// Last seq (0: no entry yet).
    pub seq: u64,
    /// Last entry hash (`Z` when empty).
    pub entry_hash: Hash,
}

/// The last anchor of a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AnchorHead {
    /// Last anchor seq (0: none yet).
    pub anchor_seq: u64,
    /// Its hash (`Z` when none).
    pub anchor_hash: Hash,
}

impl Default for AnchorHead {
    fn default() -> Self {
        AnchorHead {
            anchor_seq: 0,
            anchor_hash: ZERO,
        }
    }
}

/// Everything the processor holds for one input partition.
#[derive(Debug, Clone, Default)]
pub struct PartitionState {
    /// Tenant chain heads.
    pub tenants: HashMap<String, ChainHead>,
    /// The anchor chain head.
    pub anchor: AnchorHead,
    /// The next input offset, written with the heads (key `o`).
    pub next_offset: Option<i64>,
}

/// Key of a partition's next input offset.
pub const OFFSET_KEY: &str = "o";

/// The state record for a partition's next input offset.
pub fn offset_record(source_topic: &str, next_offset: i64) -> (String, Vec<u8>) {
    encode(
        OFFSET_KEY.to_string(),
        source_topic,
        next_offset.max(0) as u64,
        &ZERO,
    )
}

#[derive(Debug, Serialize, Deserialize)]
struct StoredHead {
    v: u32,
    source_topic: String,
    seq: u64,
    hash: String,
}

/// The state record for a tenant head.
pub fn tenant_record(source_topic: &str, tenant: &str, head: &ChainHead) -> (String, Vec<u8>) {
    encode(
        format!("{TENANT_PREFIX}{tenant}"),
        source_topic,
        head.seq,
        &head.entry_hash,
    )
}

/// The state record for an anchor head.
pub fn anchor_record(source_topic: &str, head: &AnchorHead) -> (String, Vec<u8>) {
    encode(
        ANCHOR_KEY.to_string(),
        source_topic,
        head.anchor_seq,
        &head.anchor_hash,
    )
}

fn encode(key: String, source_topic: &str, seq: u64, hash: &Hash) -> (String, Vec<u8>) {
    let stored = StoredHead {
        v: 1,
        source_topic: source_topic.to_string(),
        seq,
        hash: hex::encode(hash),
    };
    (key, serde_json::to_vec(&stored).unwrap_or_default())
}

impl PartitionState {
    /// Applies one state record; later records replace earlier ones.
    pub fn apply(&mut self, source_topic: &str, key: &[u8], value: &[u8]) -> Result<()> {
        let key = std::str::from_utf8(key)
            .map_err(|_| Error::State("a state record key is not UTF-8".into()))?;
        let stored: StoredHead = serde_json::from_slice(value)
            .map_err(|e| Error::State(format!("state record `{key}`: {e}")))?;
        if stored.v != 1 {
            return Err(Error::State(format!(
                "state record `{key}`: unknown version {}",
                stored.v
            )));
        }
        if stored.source_topic != source_topic {
            return Err(Error::State(format!(
                "state record `{key}` belongs to input topic `{}`, not `{source_topic}`; \
                 one state topic cannot serve two input topics",
                stored.source_topic
            )));
        }
        let hash: Hash = hex::decode(&stored.hash)
            .ok()
            .and_then(|b| <Hash>::try_from(b.as_slice()).ok())
            .ok_or_else(|| Error::State(format!("state record `{key}`: bad hash")))?;
        if key == OFFSET_KEY {
            self.next_offset = i64::try_from(stored.seq).ok();
        } else if key == ANCHOR_KEY {
            self.anchor = AnchorHead {
                anchor_seq: stored.seq,
                anchor_hash: hash,
            };
        } else if let Some(tenant) = key.strip_prefix(TENANT_PREFIX) {
            self.tenants.insert(
                tenant.to_string(),
                ChainHead {
                    seq: stored.seq,
                    entry_hash: hash,
                },
            );
        } else {
            return Err(Error::State(format!("unknown state record key `{key}`")));
        }
        Ok(())
    }
}

/// Reads `partitions` of the state topic to their ends (`read_committed`)
/// and rebuilds each partition's state. A partition with no records starts
/// empty.
pub fn restore(config: &Config, partitions: &[i32]) -> Result<HashMap<i32, PartitionState>> {
    let mut states: HashMap<i32, PartitionState> = partitions
        .iter()
        .map(|p| (*p, PartitionState::default()))
        .collect();
    if partitions.is_empty() {
        return Ok(states);
    }
    let topic = &config.topics.state;
    let consumer: BaseConsumer<QuietContext> = base_client_config(
        config,
        &format!("auditchain-restore-{}", config.kafka.instance_id),
    )
    .set("group.id", format!("{}-restore", config.kafka.group_id))
    .set("enable.auto.commit", "false")
    .set("isolation.level", "read_committed")
    .set("enable.partition.eof", "true")
    .create_with_context(QuietContext)
    .map_err(|e| Error::kafka("creating the state restore consumer", e))?;
    let mut tpl = TopicPartitionList::new();
    for p in partitions {
        tpl.add_partition_offset(topic, *p, Offset::Beginning)
            .map_err(|e| Error::kafka("building the restore assignment", e))?;
    }
    consumer
        .assign(&tpl)
        .map_err(|e| Error::kafka(format!("assigning `{topic}` for restore"), e))?;
    let mut done = std::collections::HashSet::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while done.len() < partitions.len() {
        if Instant::now() > deadline {
            return Err(Error::State(format!(
                "restoring from `{topic}` did not reach the end of partitions {partitions:?} within 120 s"
            )));
        }
        match consumer.poll(Duration::from_millis(200)) {
            None => {}
            Some(Ok(m)) => {
                done.remove(&m.partition());
                if let (Some(key), Some(value), Some(state)) =
                    (m.key(), m.payload(), states.get_mut(&m.partition()))
                {
                    state.apply(&config.topics.input, key, value)?;
                }
            }
            Some(Err(KafkaError::PartitionEOF(p))) => {
                done.insert(p);
            }
            Some(Err(e)) => return Err(Error::kafka(format!("restoring from `{topic}`"), e)),
        }
    }
    Ok(states)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_rebuild_the_state_last_one_wins() {
        let mut s = PartitionState::default();
        let (k1, v1) = tenant_record(
            "in",
            "a/b",
            &ChainHead {
                seq: 1,
                entry_hash: [1; 32],
            },
        );
        let (k2, v2) = tenant_record(
            "in",
            "a/b",
            &ChainHead {
                seq: 2,
                entry_hash: [2; 32],
            },
        );
        let (ka, va) = anchor_record(
            "in",
            &AnchorHead {
                anchor_seq: 7,
                anchor_hash: [7; 32],
            },
        );
        for (k, v) in [(&k1, &v1), (&k2, &v2), (&ka, &va)] {
            s.apply("in", k.as_bytes(), v).expect("apply");
        }
        assert_eq!(
            s.tenants["a/b"],
            ChainHead {
                seq: 2,
                entry_hash: [2; 32]
            }
        );
        assert_eq!(s.anchor.anchor_seq, 7);
        // A tenant literally named like the anchor key cannot collide with it.
        let (kt, vt) = tenant_record(
            "in",
            "a",
            &ChainHead {
                seq: 9,
                entry_hash: [9; 32],
            },
        );
        s.apply("in", kt.as_bytes(), &vt).expect("apply");
        assert_eq!(s.anchor.anchor_seq, 7);
        assert_eq!(s.tenants["a"].seq, 9);
    }

    #[test]
    fn a_state_record_of_another_input_topic_is_refused() {
        let mut s = PartitionState::default();
        let (k, v) = anchor_record("other", &AnchorHead::default());
        let err = s
            .apply("in", k.as_bytes(), &v)
            .expect_err("other topic")
            .to_string();
        assert!(err.contains("other"), "{err}");
    }
}
