//! The chain state is a cache of the trail (DESIGN.md §3): on assignment
//! the state restored from the state topic is checked against the trail's
//! own tail, the partition's last anchor; state that is missing, behind or
//! from another history is rebuilt from the anchors before a single record
//! is consumed, so no chain the trail already has ever starts again at
//! seq 1.
//!
//! The rebuild reads the partition's anchors only, not its chained
//! records: every chained record commits with an anchor that carries its
//! tenant's head after the segment, so the last anchor naming a tenant
//! holds that tenant's head, and the last anchor's range ends where the
//! input resumes (every data record before it is in the trail, chained or
//! quarantined). The decisions ([`compare`], [`Rebuilt::fold`]) do no I/O.

use crate::chain;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::records::AnchorBatch;
use crate::state::{AnchorHead, ChainHead, PartitionState};
use crate::verify::read::PartitionReader;

/// How the restored state of a partition stands against its trail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    /// The state's anchor head is the trail's last anchor, and the heads
    /// that anchor carries are the state's.
    Consistent,
    /// The trail has anchors, but the state has no anchor head, or no whole
    /// write of the heads (the `w` record, [`crate::state::whole_record`]):
    /// the state topic was deleted and made again (perhaps written to since
    /// by an instance that never restored), lost records to retention, or
    /// was written by a version without whole writes.
    Missing,
    /// The state's anchor head is an earlier anchor than the trail's last.
    Behind {
        /// The state's anchor seq.
        state: u64,
        /// The trail's.
        trail: u64,
    },
    /// The state's anchor head, or a tenant head, differs from the trail's
    /// at the same place.
    OtherHistory(String),
    /// The state is past the trail: the trail lost anchors. Nothing can be
    /// rebuilt from a trail that lost its tail; the processor stops.
    Ahead {
        /// The state's anchor seq.
        state: u64,
        /// The trail's last anchor seq (0: none).
        trail: u64,
    },
}

impl Finding {
    /// The metric label and log word of a finding that needs a rebuild.
    pub fn reason(&self) -> &'static str {
        match self {
            Finding::Consistent => "consistent",
            Finding::Missing => "missing",
            Finding::Behind { .. } => "behind",
            Finding::OtherHistory(_) => "other_history",
            Finding::Ahead { .. } => "ahead",
        }
    }
}

/// Compares the restored `state` with `tail`, the trail's last anchor of
/// the partition.
pub fn compare(state: &PartitionState, tail: Option<&AnchorBatch>) -> Finding {
    let head = &state.anchor;
    let Some(tail) = tail else {
        return if head.anchor_seq == 0 && state.tenants.is_empty() {
            Finding::Consistent
        } else {
            Finding::Ahead {
                state: head.anchor_seq,
                trail: 0,
            }
        };
    };
    let trail = tail.anchor.anchor_seq;
    // Without a whole write of the heads nothing shows that the log holds
    // every head, whatever the anchor head says.
    if head.anchor_seq == 0 || state.whole_since.is_none() {
        return Finding::Missing;
    }
    if head.anchor_seq < trail {
        return Finding::Behind {
            state: head.anchor_seq,
            trail,
        };
    }
    if head.anchor_seq > trail {
        return Finding::Ahead {
            state: head.anchor_seq,
            trail,
        };
    }
    if head.anchor_hash != tail.anchor_hash {
        return Finding::OtherHistory(format!(
            "anchor {trail} has hash {} in the state, {} in the trail",
            hex::encode(head.anchor_hash),
            hex::encode(tail.anchor_hash)
        ));
    }
    for h in &tail.anchor.tenant_heads {
        let ours = state.tenants.get(&h.tenant_id);
        if ours.is_none_or(|o| o.seq != h.seq || o.entry_hash != h.entry_hash) {
            return Finding::OtherHistory(format!(
                "tenant `{}` is at seq {} in the trail's last anchor, at {} in the state",
                h.tenant_id,
                h.seq,
                ours.map_or(0, |o| o.seq)
            ));
        }
    }
    Finding::Consistent
}

/// A partition's state as the trail's anchors give it, built one anchor at
/// a time in anchor order.
#[derive(Debug, Default)]
pub struct Rebuilt {
    state: PartitionState,
}

impl Rebuilt {
    /// Takes the next anchor of the partition `source_topic`/`partition`.
    /// An anchor that does not continue the anchor chain (its seq, its
    /// `prev_anchor_hash`, its own hash) is an error: a state built past it
    /// would continue a history verify rejects.
    pub fn fold(&mut self, source_topic: &str, partition: u32, batch: &AnchorBatch) -> Result<()> {
        let a = &batch.anchor;
        if a.source_topic != source_topic || a.source_partition != partition {
            return Err(Error::State(format!(
                "rebuilding partition {partition} from the trail: anchor {} names {}/{}",
                a.anchor_seq, a.source_topic, a.source_partition
            )));
        }
        let head = &self.state.anchor;
        let (want_seq, want_prev) = (head.anchor_seq + 1, head.anchor_hash);
        if a.anchor_seq != want_seq
            || a.prev_anchor_hash != want_prev
            || chain::hash::h(&a.message()) != batch.anchor_hash
        {
            return Err(Error::State(format!(
                "rebuilding partition {partition} from the trail: anchor {} does not continue anchor {} (run verify: the trail itself is broken)",
                a.anchor_seq, head.anchor_seq
            )));
        }
        for h in &a.tenant_heads {
            self.state.tenants.insert(
                h.tenant_id.clone(),
                ChainHead {
                    seq: h.seq,
                    entry_hash: h.entry_hash,
                },
            );
        }
        self.state.anchor = AnchorHead {
            anchor_seq: a.anchor_seq,
            anchor_hash: batch.anchor_hash,
        };
        self.state.next_offset = Some(a.last_offset as i64 + 1);
        Ok(())
    }

    /// The state, ready to continue every chain.
    pub fn finish(self) -> PartitionState {
        self.state
    }
}

/// How many anchor-topic offsets before the end the search for the last
/// anchor starts with; doubled until one is found (transaction markers and
/// aborted anchors take offsets too).
const TAIL_WINDOW: i64 = 64;

/// The trail's last committed anchor of input partition `p`, if any.
pub fn last_anchor(config: &Config, p: i32) -> Result<Option<AnchorBatch>> {
    let topic = &config.topics.anchors;
    let (low, high) = anchor_ends(config, p)?;
    let mut window = TAIL_WINDOW;
    loop {
        let from = (high - window).max(low);
        let mut last = None;
        let mut reader = PartitionReader::with_client(
            restore_client(config),
            crate::verify::read::Isolation::Committed,
            topic,
            p,
            (low, high),
            Some(from),
        )?;
        while let Some(m) = reader.next_record()? {
            last = Some(decode(topic, &m)?);
        }
        if last.is_some() || from == low {
            return Ok(last);
        }
        window = window.saturating_mul(2);
    }
}

/// Partition `p`'s state as its trail gives it: every anchor read in order.
pub fn rebuild(config: &Config, p: i32) -> Result<PartitionState> {
    let topic = &config.topics.anchors;
    let ends = anchor_ends(config, p)?;
    let mut reader = PartitionReader::with_client(
        restore_client(config),
        crate::verify::read::Isolation::Committed,
        topic,
        p,
        ends,
        None,
    )?;
    let mut rebuilt = Rebuilt::default();
    while let Some(m) = reader.next_record()? {
        rebuilt.fold(&config.topics.input, p as u32, &decode(topic, &m)?)?;
    }
    Ok(rebuilt.finish())
}

/// The anchors partition's (low, high) watermarks. A trail whose anchors
/// retention deleted cannot be rebuilt: an error.
fn anchor_ends(config: &Config, p: i32) -> Result<(i64, i64)> {
    let topic = &config.topics.anchors;
    let ends = crate::state::high_watermarks(config, topic, &[p])?;
    let (low, high) = ends.get(&p).copied().unwrap_or((0, 0));
    if low > 0 {
        return Err(Error::State(format!(
            "`{topic}` partition {p} starts at offset {low}: anchors were deleted, so the chain state cannot be checked against or rebuilt from the trail"
        )));
    }
    Ok((low, high))
}

fn restore_client(config: &Config) -> rdkafka::ClientConfig {
    let mut client = crate::kafka::base_client_config(
        config,
        &format!("auditchain-rebuild-{}", config.kafka.instance_id),
    );
    client.set("group.id", format!("{}-restore", config.kafka.group_id));
    client
}

fn decode(topic: &str, m: &rdkafka::message::BorrowedMessage<'_>) -> Result<AnchorBatch> {
    let value = rdkafka::Message::payload(m).unwrap_or_default();
    AnchorBatch::decode(value).map_err(|e| {
        Error::State(format!(
            "`{topic}` partition {} offset {}: not an anchor ({e}); run verify",
            rdkafka::Message::partition(m),
            rdkafka::Message::offset(m)
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::anchor::{Anchor, TenantHead};
    use crate::chain::ZERO;
    use std::collections::HashMap;

    fn anchor(seq: u64, prev: chain::Hash, heads: &[(&str, u64)], last_offset: u64) -> AnchorBatch {
        let anchor = Anchor {
            source_topic: "in".into(),
            source_partition: 0,
            anchor_seq: seq,
            prev_anchor_hash: prev,
            first_offset: last_offset.saturating_sub(9),
            last_offset,
            chained_count: heads.len() as u64,
            quarantined_count: 0,
            merkle_root: ZERO,
            tenant_heads: heads
                .iter()
                .map(|(t, s)| TenantHead {
                    tenant_id: t.to_string(),
                    seq: *s,
                    entry_hash: [*s as u8; 32],
                })
                .collect(),
            created_at_us: 1,
            signer_key_id: "p".into(),
        };
        AnchorBatch {
            anchor_hash: chain::hash::h(&anchor.message()),
            anchor,
            signature: vec![0; 64],
            processor_id: "i".into(),
        }
    }

    /// The tenant heads of `state`: tenant to (seq, hex entry hash).
    fn heads(state: &PartitionState) -> HashMap<String, (u64, String)> {
        state
            .tenants
            .iter()
            .map(|(t, h)| (t.clone(), (h.seq, hex::encode(h.entry_hash))))
            .collect()
    }

    fn trail() -> Vec<AnchorBatch> {
        let a1 = anchor(1, ZERO, &[("a", 3), ("b", 1)], 9);
        let a2 = anchor(2, a1.anchor_hash, &[("b", 4)], 19);
        let a3 = anchor(3, a2.anchor_hash, &[("a", 5), ("c", 2)], 29);
        vec![a1, a2, a3]
    }

    /// The state of `anchors` as a restore reads it back after a whole
    /// write of the heads.
    fn rebuilt(anchors: &[AnchorBatch]) -> PartitionState {
        let mut r = Rebuilt::default();
        for a in anchors {
            r.fold("in", 0, a).expect("continues");
        }
        let mut s = r.finish();
        s.whole_since = Some(1);
        s
    }

    #[test]
    fn the_last_anchor_naming_a_tenant_holds_its_head() {
        let t = trail();
        let s = rebuilt(&t);
        assert_eq!(
            heads(&s),
            HashMap::from([
                ("a".to_string(), (5, hex::encode([5u8; 32]))),
                ("b".to_string(), (4, hex::encode([4u8; 32]))),
                ("c".to_string(), (2, hex::encode([2u8; 32]))),
            ])
        );
        assert_eq!(s.anchor.anchor_seq, 3);
        assert_eq!(s.anchor.anchor_hash, t[2].anchor_hash);
        assert_eq!(s.next_offset, Some(30));
        assert_eq!(compare(&s, t.last()), Finding::Consistent);
    }

    #[test]
    fn a_broken_anchor_chain_is_not_rebuilt_past() {
        let mut t = trail();
        t.remove(1);
        let mut r = Rebuilt::default();
        r.fold("in", 0, &t[0]).expect("first");
        assert!(r.fold("in", 0, &t[1]).is_err());
        let mut t = trail();
        t[1].anchor.tenant_heads[0].seq = 9;
        let mut r = Rebuilt::default();
        r.fold("in", 0, &t[0]).expect("first");
        assert!(r.fold("in", 0, &t[1]).is_err(), "edited without rehashing");
    }

    #[test]
    fn lost_behind_forked_and_ahead_states_are_told_apart() {
        let t = trail();
        let full = rebuilt(&t);
        let empty = PartitionState::default();
        assert_eq!(compare(&empty, None), Finding::Consistent);
        assert_eq!(compare(&empty, t.last()), Finding::Missing);
        // Up to date, but with no whole write of the heads in its log.
        let mut unproven = full.clone();
        unproven.whole_since = None;
        assert_eq!(compare(&unproven, t.last()), Finding::Missing);
        assert_eq!(
            compare(&rebuilt(&t[..2]), t.last()),
            Finding::Behind { state: 2, trail: 3 }
        );
        assert_eq!(
            compare(&full, t.get(1)),
            Finding::Ahead { state: 3, trail: 2 }
        );
        assert_eq!(compare(&full, None), Finding::Ahead { state: 3, trail: 0 });
        let mut forked = full.clone();
        forked.anchor.anchor_hash = [7; 32];
        assert!(matches!(
            compare(&forked, t.last()),
            Finding::OtherHistory(_)
        ));
        let mut lost_tenant = full;
        lost_tenant.tenants.remove("c");
        assert!(matches!(
            compare(&lost_tenant, t.last()),
            Finding::OtherHistory(w) if w.contains("`c`")
        ));
    }
}
