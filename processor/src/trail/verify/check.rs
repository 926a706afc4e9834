//! The checks of one source partition's trail (DESIGN.md §4.5), made as the
//! records stream past in log order, anchor by anchor.
//!
//! What is kept is each tenant's chain head, the leaves of the anchor not yet
//! closed, the anchor chain's head and the position in the input: memory
//! grows with the tenants and the largest transaction, never with the trail.
//! No I/O here: the input's offsets come through [`InputOffsets`].

use std::collections::{BTreeMap, HashMap};

use ed25519_dalek::VerifyingKey;

use crate::chain::{self, Hash, ZERO};
use crate::error::Result;
use crate::keys::{KeySet, Tenants};
use crate::records::{
    dropped_digest, AnchorBatch, ChainedRecord, QuarantineRecord, DROPPED_KEY_MARK,
    DROPPED_VALUE_MARK,
};
use crate::route::Reason;

use super::{Kind, Problem, Report};

/// At most this many problems of one kind are listed per partition; the
/// rest are counted in [`Report::omitted`], so a trail that is wrong
/// everywhere still verifies in bounded memory.
pub const PROBLEMS_PER_KIND: usize = 10_000;

/// A chained record after the checks that need nothing but the record
/// itself (done on all cores), with the event bytes dropped.
#[derive(Debug)]
pub struct Link {
    tenant_id: String,
    seq: u64,
    prev_hash: Hash,
    entry_hash: Hash,
    source_topic: String,
    source_partition: u32,
    source_offset: u64,
    anchor_seq: u64,
    key_id: String,
    digest_ok: bool,
    entry_ok: bool,
    signature: Signature,
}

/// What the producer signature check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Signature {
    Valid,
    UnknownKey,
    /// The key is bound to other tenants. (Revocation is not judged here:
    /// it depends on when the event was signed.)
    NotAllowed,
    Invalid,
}

impl Link {
    /// Recomputes `event_digest` and `entry_hash` and verifies the producer
    /// signature of `r`.
    pub fn check(r: ChainedRecord, producer_keys: &KeySet) -> Link {
        let digest = chain::event_digest(&r.event);
        let entry = chain::entry_hash(&r.tenant_id, r.seq, &r.prev_hash, &digest, r.source());
        let signature = match producer_keys.get(&r.key_id) {
            None => Signature::UnknownKey,
            Some(k) if matches!(&k.tenants, Tenants::Only(set) if !set.contains(&r.tenant_id)) => {
                Signature::NotAllowed
            }
            Some(k) => {
                let msg = chain::event_msg(&r.tenant_id, &r.event);
                if chain::verify_strict(&k.public_key, &msg, &r.producer_sig) {
                    Signature::Valid
                } else {
                    Signature::Invalid
                }
            }
        };
        Link {
            digest_ok: digest == r.event_digest,
            entry_ok: entry == r.entry_hash,
            signature,
            tenant_id: r.tenant_id,
            seq: r.seq,
            prev_hash: r.prev_hash,
            entry_hash: r.entry_hash,
            source_topic: r.source_topic,
            source_partition: r.source_partition,
            source_offset: r.source_offset,
            anchor_seq: r.anchor_seq,
            key_id: r.key_id,
        }
    }
}

/// A quarantine record after its hash was recomputed.
#[derive(Debug)]
pub struct QuarantineLeaf {
    source_topic: String,
    source_partition: u32,
    source_offset: u64,
    anchor_seq: u64,
    hash: Hash,
    hash_ok: bool,
    reason: &'static str,
}

impl QuarantineLeaf {
    /// Recomputes the quarantine hash of `q` (§4.3).
    pub fn check(q: QuarantineRecord) -> QuarantineLeaf {
        let hash = chain::quarantine_hash_of_digests(
            q.source(),
            &raw_digest(&q, q.raw_key.as_deref(), DROPPED_KEY_MARK),
            &raw_digest(&q, q.raw_value.as_deref(), DROPPED_VALUE_MARK),
            q.reason.code(),
        );
        QuarantineLeaf {
            hash_ok: hash == q.quarantine_hash,
            hash,
            reason: q.reason.code(),
            source_topic: q.source_topic,
            source_partition: q.source_partition,
            source_offset: q.source_offset,
            anchor_seq: q.anchor_seq,
        }
    }
}

/// `H(raw field)` for the quarantine hash: of the field when the record has
/// it; for an `OVERSIZED` record that left it out because it was too large to
/// keep, the digest its detail gives instead (docs/decisions.md, "Output size
/// limits"). Any other record without the field hashes the empty string, as
/// §4.3 says.
fn raw_digest(q: &QuarantineRecord, field: Option<&[u8]>, mark: &str) -> Hash {
    match field {
        Some(bytes) => chain::hash::h(bytes),
        None => (q.reason == Reason::Oversized)
            .then(|| dropped_digest(&q.detail, mark))
            .flatten()
            .unwrap_or_else(|| chain::hash::h(&[])),
    }
}

/// The source offset a streamed record stands for.
pub trait SourceOffset {
    /// Its offset in the input partition.
    fn source_offset(&self) -> u64;
}

impl SourceOffset for Link {
    fn source_offset(&self) -> u64 {
        self.source_offset
    }
}

impl SourceOffset for QuarantineLeaf {
    fn source_offset(&self) -> u64 {
        self.source_offset
    }
}

/// The committed data records' offsets of one input partition, in order.
pub trait InputOffsets {
    /// The next offset, without consuming it; `None` at the end.
    fn peek(&mut self) -> Result<Option<u64>>;
    /// Consumes the offset [`peek`](InputOffsets::peek) returned.
    fn advance(&mut self);
}

/// Input offsets held in memory (the in-memory [`super::check`]).
pub struct InputVec {
    offsets: std::vec::IntoIter<u64>,
    next: Option<u64>,
}

impl InputVec {
    /// `offsets` in any order.
    pub fn new(mut offsets: Vec<u64>) -> InputVec {
        offsets.sort_unstable();
        let mut offsets = offsets.into_iter();
        let next = offsets.next();
        InputVec { offsets, next }
    }
}

impl InputOffsets for InputVec {
    fn peek(&mut self) -> Result<Option<u64>> {
        Ok(self.next)
    }
    fn advance(&mut self) {
        self.next = self.offsets.next();
    }
}

/// A tenant chain's state: its head and whether it already broke (a broken
/// chain is reported once, at its first break).
#[derive(Debug)]
struct Head {
    tenant_id: String,
    seq: u64,
    hash: Hash,
    offset: u64,
    len: u64,
    broken: bool,
}

/// A Merkle leaf of the anchor being filled.
#[derive(Debug, Clone, Copy)]
struct Leaf {
    offset: u64,
    hash: Hash,
    anchor_seq: u64,
    /// Index into the partition's heads; [`NO_TENANT`] for quarantine.
    tenant: u32,
    seq: u64,
}

const NO_TENANT: u32 = u32::MAX;

/// The anchor chain's head.
#[derive(Debug)]
struct AnchorHead {
    next_seq: u64,
    prev_hash: Hash,
    last_offset: Option<u64>,
    broken: bool,
}

/// What a partition check reports on.
#[derive(Debug, Clone, Copy)]
pub struct Scope<'a> {
    /// Only this tenant's chains are reported.
    pub tenant: Option<&'a str>,
    /// Completeness is judged for input offsets in this range only.
    pub offsets: Option<(u64, u64)>,
    /// Input offsets below this must be in the output: the processor's
    /// committed position, read before anything else. The input at or past
    /// it is not processed yet (pending, not lost).
    pub processed: u64,
    /// The input's end when reading started: output records at or past it
    /// are for input this run did not read.
    pub input_end: u64,
    /// The input's log start offset when reading started: retention has
    /// deleted the input below it, so output records for those offsets are
    /// checked (chains, anchors, signatures) but cannot be joined to their
    /// input (counted as trimmed, not reported as extra).
    pub input_start: u64,
    /// Report the partition's state at its last anchor (for a checkpoint).
    pub keep_state: bool,
}

impl Default for Scope<'_> {
    fn default() -> Self {
        Scope {
            tenant: None,
            offsets: None,
            processed: u64::MAX,
            input_end: u64::MAX,
            input_start: 0,
            keep_state: false,
        }
    }
}

/// Where the reading of a partition's topics resumes after its last anchor
/// checked: the output offset of that anchor (read again, to confirm it is
/// still there), the output offsets after the records it covered, and the
/// input offset after its range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Positions {
    /// Of the last anchor checked.
    pub anchors: i64,
    /// After the last chained record it covered.
    pub chained: i64,
    /// After the last quarantine record it covered.
    pub quarantine: i64,
    /// After its `last_offset`.
    pub input: i64,
}

/// A tenant chain's head, as kept in a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HeadState {
    /// The tenant.
    pub tenant_id: String,
    /// Last seq.
    pub seq: u64,
    /// Last entry hash (hex).
    pub entry_hash: String,
    /// Source offset of the last entry.
    pub source_offset: u64,
    /// Entries so far.
    pub length: u64,
}

/// A partition's verified state at its last anchor: enough to check what
/// follows without reading what came before.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PartitionState {
    /// The last anchor checked.
    pub anchor_seq: u64,
    /// Its `anchor_hash` (hex).
    pub anchor_hash: String,
    /// Its `last_offset`.
    pub last_offset: u64,
    /// Where reading resumes.
    pub next: Positions,
    /// Every chain of the partition.
    pub heads: Vec<HeadState>,
}

fn parse_hash(hex_text: &str, what: &str) -> Result<Hash> {
    crate::prove::unhex32(what, hex_text).map_err(crate::error::Error::Checkpoint)
}

/// The streaming check of one source partition (topic, partition).
pub struct PartitionCheck<'a> {
    topic: String,
    partition: u32,
    processor_keys: &'a HashMap<String, VerifyingKey>,
    scope: Scope<'a>,
    input: Option<Box<dyn InputOffsets + 'a>>,
    tenant_index: HashMap<String, u32>,
    heads: Vec<Head>,
    open: Vec<Leaf>,
    anchor: AnchorHead,
    uncovered_reported: bool,
    last_joined: Option<u64>,
    /// The checkpoint's anchor, expected first when resuming.
    resumed_from: Option<Hash>,
    /// Positions after the last anchor checked.
    marked: Option<Positions>,
    /// An anchor was checked that this run cannot vouch for.
    unvouched: bool,
    pending: usize,
    input_trimmed: usize,
    chained: usize,
    quarantined: usize,
    by_reason: BTreeMap<&'static str, usize>,
    anchors: usize,
    input_records: usize,
    problems: [Vec<Problem>; Kind::ALL.len()],
    omitted: usize,
}

impl<'a> PartitionCheck<'a> {
    /// A check of `topic`/`partition`; with `input`, completeness too.
    pub fn new(
        topic: String,
        partition: u32,
        processor_keys: &'a HashMap<String, VerifyingKey>,
        scope: Scope<'a>,
        input: Option<Box<dyn InputOffsets + 'a>>,
    ) -> Self {
        PartitionCheck {
            topic,
            partition,
            processor_keys,
            scope,
            input,
            tenant_index: HashMap::new(),
            heads: Vec::new(),
            open: Vec::new(),
            anchor: AnchorHead {
                next_seq: 1,
                prev_hash: ZERO,
                last_offset: None,
                broken: false,
            },
            uncovered_reported: false,
            last_joined: None,
            resumed_from: None,
            marked: None,
            unvouched: false,
            pending: 0,
            input_trimmed: 0,
            chained: 0,
            quarantined: 0,
            by_reason: BTreeMap::new(),
            anchors: 0,
            input_records: 0,
            problems: Default::default(),
            omitted: 0,
        }
    }

    /// Continues from `state`, a checkpoint of this partition: the first
    /// anchor read must be the one it ended with.
    pub fn resume(mut self, state: &PartitionState) -> Result<Self> {
        let hash = parse_hash(&state.anchor_hash, "an anchor hash")?;
        for h in &state.heads {
            let i = self.tenant(&h.tenant_id) as usize;
            let head = &mut self.heads[i];
            head.seq = h.seq;
            head.hash = parse_hash(&h.entry_hash, "an entry hash")?;
            head.offset = h.source_offset;
            head.len = h.length;
        }
        self.anchor = AnchorHead {
            next_seq: state.anchor_seq + 1,
            prev_hash: hash,
            last_offset: Some(state.last_offset),
            broken: false,
        };
        self.last_joined = Some(state.last_offset);
        self.resumed_from = Some(hash);
        self.marked = Some(state.next);
        Ok(self)
    }

    /// Records where reading would resume after the anchor just checked.
    /// (The chain heads are taken at the end: past the last anchor they
    /// move on only in a trail that does not verify, which gets no
    /// checkpoint.)
    pub fn mark(&mut self, next: Positions) {
        // An anchor past the input read cannot be vouched for: a later run
        // would start its input after input this one never compared.
        // (`verify` reads the input's ends after the anchors', so this
        // does not happen there.)
        if next.input as u64 > self.scope.input_end {
            self.unvouched = true;
        }
        self.marked = Some(next);
    }

    fn problem(&mut self, kind: Kind, place: impl Into<String>, what: impl Into<String>) {
        let list = &mut self.problems[kind as usize];
        if list.len() < PROBLEMS_PER_KIND {
            list.push(Problem {
                kind,
                place: place.into(),
                what: what.into(),
            });
        } else {
            self.omitted += 1;
        }
    }

    /// An output record of `topic` at `offset` that did not decode.
    pub fn undecodable(&mut self, topic: &str, partition: i32, offset: i64, error: &str) {
        self.problem(
            Kind::Undecodable,
            format!("{topic}/{partition}@{offset}"),
            format!("output record does not decode: {error}"),
        );
    }

    /// An output record of `topic` at `offset` for source offset `source`
    /// that stands before records of a lower source offset: the processor
    /// writes a partition's records in source order, so it was put there
    /// by something else (or a copy is out of place). Left out of the
    /// chains and anchors it would otherwise hold up.
    pub fn out_of_order(&mut self, topic: &str, partition: i32, offset: i64, source: u64) {
        self.problem(
            Kind::Extra,
            format!("{topic}/{partition}@{offset}"),
            format!(
                "output record for source offset {source} stands before records of lower source \
                 offsets (the processor writes them in source order): not written by it"
            ),
        );
    }

    /// Whether a record names this check's partition; reports it if not.
    fn placed(&mut self, what: &str, topic: &str, partition: u32, offset: u64) -> bool {
        if topic == self.topic && partition == self.partition {
            return true;
        }
        let (own_topic, own_partition) = (self.topic.clone(), self.partition);
        self.problem(
            Kind::Misplaced,
            format!("{what} {topic}/{partition}@{offset}"),
            format!("lies in the output partition of {own_topic}/{own_partition}"),
        );
        false
    }

    fn tenant(&mut self, tenant_id: &str) -> u32 {
        if let Some(i) = self.tenant_index.get(tenant_id) {
            return *i;
        }
        let i = self.heads.len() as u32;
        self.tenant_index.insert(tenant_id.to_string(), i);
        self.heads.push(Head {
            tenant_id: tenant_id.to_string(),
            seq: 0,
            hash: ZERO,
            offset: 0,
            len: 0,
            broken: false,
        });
        i
    }

    /// The next chained record of the partition's output, in log order.
    pub fn link(&mut self, r: Link) {
        self.chained += 1;
        if !self.placed(
            "chained",
            &r.source_topic,
            r.source_partition,
            r.source_offset,
        ) {
            return;
        }
        let tenant = self.tenant(&r.tenant_id);
        let head = &mut self.heads[tenant as usize];
        head.len += 1;
        if !head.broken {
            let found = chain_step(head, &r);
            let reported = self.scope.tenant.is_none_or(|t| t == r.tenant_id);
            if reported {
                for what in found {
                    let place = format!(
                        "chain {}@{}/{} seq {}",
                        r.tenant_id, r.source_topic, r.source_partition, r.seq
                    );
                    self.problem(Kind::Chain, place, what);
                }
            }
        }
        self.open.push(Leaf {
            offset: r.source_offset,
            hash: r.entry_hash,
            anchor_seq: r.anchor_seq,
            tenant,
            seq: r.seq,
        });
    }

    /// The next quarantine record of the partition's output, in log order.
    pub fn quarantined(&mut self, q: QuarantineLeaf) {
        self.quarantined += 1;
        *self.by_reason.entry(q.reason).or_default() += 1;
        if !self.placed(
            "quarantine",
            &q.source_topic,
            q.source_partition,
            q.source_offset,
        ) {
            return;
        }
        if !q.hash_ok {
            self.problem(
                Kind::Quarantine,
                format!(
                    "quarantine {}/{}@{}",
                    q.source_topic, q.source_partition, q.source_offset
                ),
                "quarantine_hash does not recompute",
            );
        }
        self.open.push(Leaf {
            offset: q.source_offset,
            hash: q.hash,
            anchor_seq: q.anchor_seq,
            tenant: NO_TENANT,
            seq: 0,
        });
    }

    /// Whether the next anchor is one to check records against, judged
    /// before any record is taken up to its `last_offset`: it must be this
    /// partition's, next in its chain, and authentic (hash and signature),
    /// so a forged anchor cannot make the check take records for it.
    /// Reports what is wrong with it otherwise.
    pub fn admit(&mut self, b: &AnchorBatch) -> bool {
        let a = &b.anchor;
        let place = format!(
            "anchor {}/{} #{}",
            a.source_topic, a.source_partition, a.anchor_seq
        );
        if let Some(expected) = self.resumed_from.take() {
            let same = b.anchor_hash == expected
                && chain::hash::h(&a.message()) == expected
                && a.anchor_seq + 1 == self.anchor.next_seq
                && Some(a.last_offset) == self.anchor.last_offset;
            if !same {
                self.problem(
                    Kind::Anchor,
                    place,
                    "is not the anchor the checkpoint ended with: the trail before the checkpoint was rewritten, or the checkpoint is not of this trail",
                );
                self.anchor.broken = true;
            }
            return false;
        }
        self.anchors += 1;
        if a.source_topic != self.topic || a.source_partition != self.partition {
            let what = format!("lies in the anchors of {}/{}", self.topic, self.partition);
            self.problem(Kind::Misplaced, place, what);
            return false;
        }
        if self.anchor.broken {
            return false;
        }
        if a.anchor_seq != self.anchor.next_seq {
            let what = if a.anchor_seq < self.anchor.next_seq {
                "anchor_seq repeated".to_string()
            } else {
                format!("gap: anchor {} is missing", self.anchor.next_seq)
            };
            self.problem(Kind::Anchor, &place, what);
        } else if let Some(what) = self.inauthentic(b) {
            self.problem(Kind::Anchor, &place, what);
        } else {
            return true;
        }
        // Past a break in the anchor chain nothing is covered any more: the
        // records left are reported as not covered.
        self.anchor.broken = true;
        false
    }

    /// What makes `b` not the processor's: its hash, its signature, a
    /// range that is not one.
    fn inauthentic(&self, b: &AnchorBatch) -> Option<String> {
        let a = &b.anchor;
        let msg = a.message();
        if chain::hash::h(&msg) != b.anchor_hash {
            return Some("anchor_hash does not recompute (a signed field was altered)".into());
        }
        let Some(key) = self.processor_keys.get(&a.signer_key_id) else {
            return Some(format!(
                "signed by unknown processor key `{}`",
                a.signer_key_id
            ));
        };
        if !chain::verify_strict(key, &msg, &b.signature) {
            return Some(format!(
                "signature does not verify under processor key `{}`",
                a.signer_key_id
            ));
        }
        (a.first_offset > a.last_offset).then(|| {
            format!(
                "first_offset {} is after last_offset {}",
                a.first_offset, a.last_offset
            )
        })
    }

    /// The next anchor, [`admitted`](Self::admit): every record it may
    /// cover (source offset up to its `last_offset`) has been handed over.
    pub fn anchor(&mut self, b: &AnchorBatch) -> Result<()> {
        let a = &b.anchor;
        let place = format!(
            "anchor {}/{} #{}",
            a.source_topic, a.source_partition, a.anchor_seq
        );
        self.check_anchor_itself(b, &place);
        let mut leaves = self.take_open_sorted();
        let first = leaves.partition_point(|l| l.offset < a.first_offset);
        self.before_anchor(&leaves[..first]);
        let end = leaves.partition_point(|l| l.offset <= a.last_offset);
        self.check_segment(b, &leaves[first..end], &place);
        self.anchor.next_seq += 1;
        self.anchor.prev_hash = b.anchor_hash;
        self.anchor.last_offset = Some(a.last_offset);
        let joined = self.join(&leaves[..end]);
        // Nothing past the bound is taken; were it, it stays open.
        let later = leaves.split_off(end);
        leaves.clear();
        leaves.extend(later);
        self.open = leaves;
        joined
    }

    /// The checks of an admitted anchor that need no records: its link to
    /// the previous one, its range after the previous one's.
    fn check_anchor_itself(&mut self, b: &AnchorBatch, place: &str) {
        let a = &b.anchor;
        if a.prev_anchor_hash != self.anchor.prev_hash {
            self.problem(
                Kind::Anchor,
                place,
                "prev_anchor_hash does not link to the previous anchor",
            );
        }
        if let Some(previous) = self.anchor.last_offset.filter(|l| a.first_offset <= *l) {
            self.problem(
                Kind::Anchor,
                place,
                format!(
                    "covers offsets from {} but the previous anchor covered up to {previous}",
                    a.first_offset
                ),
            );
        }
    }

    /// The checks of an anchor against the records in its range: counts,
    /// Merkle root, each record's `anchor_seq`, the tenant heads.
    fn check_segment(&mut self, b: &AnchorBatch, segment: &[Leaf], place: &str) {
        let a = &b.anchor;
        let chained = segment.iter().filter(|l| l.tenant != NO_TENANT).count() as u64;
        let quarantined = segment.len() as u64 - chained;
        if chained != a.chained_count || quarantined != a.quarantined_count {
            self.problem(Kind::Anchor, place, format!("covers {chained} chained and {quarantined} quarantined records in offsets {}..={}, the anchor says {} and {}", a.first_offset, a.last_offset, a.chained_count, a.quarantined_count));
        }
        let ends = segment.first().zip(segment.last());
        if ends.is_some_and(|(f, l)| f.offset != a.first_offset || l.offset != a.last_offset) {
            self.problem(
                Kind::Anchor,
                place,
                "first_offset and last_offset are not the smallest and largest offsets of the records it covers",
            );
        }
        let hashes: Vec<Hash> = segment.iter().map(|l| l.hash).collect();
        if chain::merkle_root(&hashes) != Some(a.merkle_root) {
            self.problem(
                Kind::Anchor,
                place,
                "merkle_root does not recompute from the records it covers",
            );
        }
        for l in segment.iter().filter(|l| l.anchor_seq != a.anchor_seq) {
            let (topic, p) = (self.topic.clone(), self.partition);
            self.problem(
                Kind::Anchor,
                format!("{topic}/{p}@{}", l.offset),
                format!(
                    "record says anchor {} but lies in anchor {}'s range",
                    l.anchor_seq, a.anchor_seq
                ),
            );
        }
        if let Some(what) = self.heads_differ(segment, b) {
            self.problem(Kind::Anchor, place, what);
        }
    }

    /// Where the anchor's tenant heads (§4.4: every chain that gained
    /// entries in the segment, by tenant id) differ from the records.
    fn heads_differ(&self, segment: &[Leaf], b: &AnchorBatch) -> Option<String> {
        let mut last: HashMap<u32, (u64, Hash)> = HashMap::new();
        for l in segment.iter().filter(|l| l.tenant != NO_TENANT) {
            last.insert(l.tenant, (l.seq, l.hash));
        }
        let mut heads: Vec<(&str, u64, Hash)> = last
            .into_iter()
            .map(|(t, (seq, hash))| (self.heads[t as usize].tenant_id.as_str(), seq, hash))
            .collect();
        heads.sort_unstable_by(|x, y| x.0.cmp(y.0));
        let claimed = &b.anchor.tenant_heads;
        let differs = |i: usize| match (heads.get(i), claimed.get(i)) {
            (Some(h), Some(c)) => h.0 != c.tenant_id || h.1 != c.seq || h.2 != c.entry_hash,
            _ => true,
        };
        let n = heads.len().max(claimed.len());
        let i = (0..n).find(|i| differs(*i))?;
        let tenant = heads
            .get(i)
            .map(|h| h.0)
            .or(claimed.get(i).map(|c| c.tenant_id.as_str()))
            .unwrap_or_default();
        Some(format!(
            "tenant_heads do not match the chains of the records it covers (first difference at tenant `{tenant}`: the records give {} heads, the anchor {})",
            heads.len(),
            claimed.len()
        ))
    }

    /// The open leaves, sorted by offset, with repeated offsets reported
    /// and left out.
    fn take_open_sorted(&mut self) -> Vec<Leaf> {
        let mut leaves = std::mem::take(&mut self.open);
        leaves.sort_by_key(|l| l.offset);
        let mut repeated = Vec::new();
        leaves.dedup_by(|later, earlier| {
            let same = later.offset == earlier.offset;
            if same {
                repeated.push(later.offset);
            }
            same
        });
        for offset in repeated {
            self.duplicate(offset);
        }
        leaves
    }

    fn duplicate(&mut self, offset: u64) {
        let place = format!("{}/{}@{offset}", self.topic, self.partition);
        self.problem(
            Kind::Duplicate,
            place,
            "source record appears more than once in the output (duplicated or doubly routed)",
        );
    }

    /// Leaves that arrived before the anchor that could cover them: a
    /// record repeated from an earlier anchor's range, or one no anchor
    /// covers.
    fn before_anchor(&mut self, leaves: &[Leaf]) {
        let covered = self.anchor.last_offset;
        for l in leaves {
            if covered.is_some_and(|c| l.offset <= c) {
                self.duplicate(l.offset);
            } else {
                self.uncovered(l.offset);
            }
        }
    }

    fn uncovered(&mut self, offset: u64) {
        if !self.uncovered_reported {
            self.uncovered_reported = true;
            let place = format!("{}/{}@{offset}", self.topic, self.partition);
            self.problem(
                Kind::Uncovered,
                place,
                "record is not covered by any anchor",
            );
        }
    }

    /// Closes the open leaves without an anchor: after the last anchor, or
    /// past a break in the anchor chain.
    pub fn close_uncovered(&mut self) -> Result<()> {
        let mut leaves = self.take_open_sorted();
        self.before_anchor(&leaves);
        let joined = self.join(&leaves);
        leaves.clear();
        self.open = leaves;
        joined
    }

    fn in_scope(&self, offset: u64) -> bool {
        self.scope
            .offsets
            .is_none_or(|(lo, hi)| (lo..=hi).contains(&offset))
    }

    /// Completeness: walks the input alongside `leaves` (sorted), reporting
    /// input records no leaf has and leaves no input record has.
    fn join(&mut self, leaves: &[Leaf]) -> Result<()> {
        let Some(mut input) = self.input.take() else {
            return Ok(());
        };
        let result = self.join_with(input.as_mut(), leaves);
        self.input = Some(input);
        result
    }

    fn join_with(&mut self, input: &mut dyn InputOffsets, leaves: &[Leaf]) -> Result<()> {
        for o in leaves.iter().map(|l| l.offset) {
            // Behind the walk: a repeat or a reordering, reported already.
            // Past the input's end: input this run did not read.
            if self.last_joined.is_some_and(|j| o <= j) || o >= self.scope.input_end {
                continue;
            }
            if o < self.scope.input_start {
                if self.in_scope(o) {
                    self.input_trimmed += 1;
                }
                self.last_joined = Some(o);
                continue;
            }
            loop {
                match input.peek()? {
                    Some(i) if i < o => {
                        input.advance();
                        self.lost(i);
                    }
                    Some(i) if i == o => {
                        input.advance();
                        if self.in_scope(i) {
                            self.input_records += 1;
                        }
                        break;
                    }
                    _ => {
                        if self.in_scope(o) {
                            let place = format!("{}/{}@{o}", self.topic, self.partition);
                            self.problem(
                                Kind::Extra,
                                place,
                                "output refers to an input record that is not in the committed input",
                            );
                        }
                        break;
                    }
                }
            }
            self.last_joined = Some(o);
        }
        Ok(())
    }

    fn lost(&mut self, offset: u64) {
        // Inside the range an anchor already covers, nothing is pending.
        let anchored = self.anchor.last_offset.is_some_and(|l| offset <= l);
        if offset >= self.scope.processed && !anchored {
            self.pending += 1;
        } else if self.in_scope(offset) {
            self.input_records += 1;
            let place = format!("{}/{}@{offset}", self.topic, self.partition);
            self.problem(
                Kind::Lost,
                place,
                "input record is neither chained nor quarantined (lost)",
            );
        }
    }

    /// Ends the check: what remains of the input is lost.
    pub fn finish(mut self) -> Result<Report> {
        self.close_uncovered()?;
        let checked_input = self.input.is_some();
        if let Some(mut input) = self.input.take() {
            while let Some(i) = input.peek()? {
                input.advance();
                self.lost(i);
            }
        }
        if self.resumed_from.is_some() {
            let place = format!(
                "anchor {}/{} #{}",
                self.topic,
                self.partition,
                self.anchor.next_seq - 1
            );
            self.problem(
                Kind::Anchor,
                place,
                "the anchor the checkpoint ended with is no longer in the trail",
            );
        }
        let tenant = self.scope.tenant;
        // A checkpoint vouches for everything before it: only a check of
        // every tenant, every offset and the input may write one.
        let whole = self.scope.tenant.is_none() && self.scope.offsets.is_none() && checked_input;
        let state = match self.marked.take() {
            Some(next)
                if self.scope.keep_state
                    && whole
                    && !self.unvouched
                    && self.resumed_from.is_none() =>
            {
                Some(PartitionState {
                    anchor_seq: self.anchor.next_seq - 1,
                    anchor_hash: hex::encode(self.anchor.prev_hash),
                    last_offset: self.anchor.last_offset.unwrap_or_default(),
                    next,
                    heads: self
                        .heads
                        .iter()
                        .filter(|h| h.len > 0)
                        .map(|h| HeadState {
                            tenant_id: h.tenant_id.clone(),
                            seq: h.seq,
                            entry_hash: hex::encode(h.hash),
                            source_offset: h.offset,
                            length: h.len,
                        })
                        .collect(),
                })
            }
            _ => None,
        };
        let chains = self
            .heads
            .into_iter()
            .filter(|h| tenant.is_none_or(|t| t == h.tenant_id))
            .map(|h| ((h.tenant_id, self.topic.clone(), self.partition), h.len))
            .collect();
        Ok(Report {
            chains,
            chained: self.chained,
            quarantined: self.quarantined,
            quarantined_by_reason: self
                .by_reason
                .into_iter()
                .map(|(r, n)| (r.to_string(), n))
                .collect(),
            anchors: self.anchors,
            input_records: checked_input.then_some(self.input_records),
            problems: self.problems.into_iter().flatten().collect(),
            omitted: self.omitted,
            pending: checked_input.then_some(self.pending),
            input_trimmed: checked_input.then_some(self.input_trimmed),
            states: state
                .map(|st| BTreeMap::from([(self.partition as i32, st)]))
                .unwrap_or_default(),
        })
    }
}

/// Links `r` to its chain's head, returning what is wrong; the head moves on
/// unless the sequence broke.
fn chain_step(head: &mut Head, r: &Link) -> Vec<String> {
    let want = head.seq + 1;
    if r.seq != want {
        head.broken = true;
        return vec![if r.seq < want {
            "seq repeated (duplicate or fork)".to_string()
        } else {
            format!("gap: seq {want} is missing")
        }];
    }
    let mut found = Vec::new();
    if r.prev_hash != head.hash {
        found.push(format!(
            "prev_hash {} does not link to seq {}'s entry_hash {}",
            short(&r.prev_hash),
            r.seq - 1,
            short(&head.hash)
        ));
    }
    if head.seq > 0 && r.source_offset <= head.offset {
        found.push(format!(
            "source offset {} is not after the previous entry's {} (reordered)",
            r.source_offset, head.offset
        ));
    }
    if !r.digest_ok {
        found.push("event_digest does not match the event bytes".to_string());
    }
    if !r.entry_ok {
        found.push("entry_hash does not recompute".to_string());
    }
    match r.signature {
        Signature::Valid => {}
        Signature::UnknownKey => {
            found.push(format!("producer key `{}` is not in the key set", r.key_id))
        }
        Signature::NotAllowed => found.push(format!(
            "producer key `{}` may not sign for this tenant",
            r.key_id
        )),
        Signature::Invalid => found.push(format!(
            "producer signature does not verify under `{}`",
            r.key_id
        )),
    }
    head.seq = r.seq;
    head.hash = r.entry_hash;
    head.offset = r.source_offset;
    found
}

fn short(h: &Hash) -> String {
    hex::encode(&h[..8])
}
