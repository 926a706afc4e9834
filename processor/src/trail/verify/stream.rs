//! Feeding a [`PartitionCheck`]: the three output streams of one partition
//! read together in anchor order, a chunk at a time, with each chunk
//! decoded and its signatures verified on all cores.

use std::collections::VecDeque;

use rayon::prelude::*;

use crate::error::Result;
use crate::records::AnchorBatch;

use super::check::{Link, PartitionCheck, Positions, QuarantineLeaf, SourceOffset};
use super::read::PartitionReader;

/// Records decoded and checked in parallel per chunk: large enough to keep
/// every core busy, small enough that a chunk is a few MB.
pub const CHUNK: usize = 4096;

/// Anchors decoded per chunk: an anchor carries a head per tenant of its
/// transaction (100 KB and more with many tenants), and one is checked at
/// a time.
pub const ANCHOR_CHUNK: usize = 4;

/// One record of an output partition.
pub enum Item<T> {
    /// Decoded, at this output offset.
    Record(i64, T),
    /// Did not decode: output offset and why.
    Undecodable(i64, String),
}

/// One output topic partition's records, in log order.
pub trait Source<T> {
    /// Appends up to `max` further records to `out`; none at the end.
    fn next_chunk(&mut self, max: usize, out: &mut Vec<Item<T>>) -> Result<()>;
}

/// Records already in memory.
pub struct VecSource<T>(pub std::vec::IntoIter<Item<T>>);

impl<T> Source<T> for VecSource<T> {
    fn next_chunk(&mut self, max: usize, out: &mut Vec<Item<T>>) -> Result<()> {
        out.extend(self.0.by_ref().take(max));
        Ok(())
    }
}

/// Records read from Kafka, each turned into `T` by `convert` on the rayon
/// pool (decoding, and for chained records the signature checks).
pub struct KafkaSource<F> {
    reader: PartitionReader,
    convert: F,
    /// Raw values of the current chunk; reused, so reading allocates
    /// nothing per record once the buffers have grown.
    raw: Vec<(i64, Vec<u8>)>,
}

impl<F> KafkaSource<F> {
    /// Reads with `reader`, converting with `convert`.
    pub fn new(reader: PartitionReader, convert: F) -> Self {
        KafkaSource {
            reader,
            convert,
            raw: Vec::new(),
        }
    }
}

impl<T: Send, F: Fn(&[u8]) -> Result<T> + Sync> Source<T> for KafkaSource<F> {
    fn next_chunk(&mut self, max: usize, out: &mut Vec<Item<T>>) -> Result<()> {
        let mut n = 0;
        while n < max {
            let Some(m) = self.reader.next_record()? else {
                break;
            };
            let (offset, value) = (
                rdkafka::Message::offset(&m),
                rdkafka::Message::payload(&m).unwrap_or_default(),
            );
            match self.raw.get_mut(n) {
                Some(slot) => {
                    slot.0 = offset;
                    slot.1.clear();
                    slot.1.extend_from_slice(value);
                }
                None => self.raw.push((offset, value.to_vec())),
            }
            n += 1;
        }
        let convert = &self.convert;
        out.par_extend(
            self.raw[..n]
                .par_iter()
                .map(|(offset, value)| match convert(value) {
                    Ok(t) => Item::Record(*offset, t),
                    Err(e) => Item::Undecodable(*offset, e.to_string()),
                }),
        );
        Ok(())
    }
}

/// A source read and converted a chunk ahead on a thread of its own, so
/// reading, the checks on the pool, and the caller's own work on the
/// previous chunk overlap.
pub struct Prefetched<T> {
    chunks: std::sync::mpsc::Receiver<Result<Vec<Item<T>>>>,
    done: bool,
}

/// Starts reading `source` a chunk of `chunk` records ahead on a thread of
/// `scope`. The thread ends at the source's end, on its error (handed on),
/// or when the [`Prefetched`] is dropped.
pub fn prefetch<'scope, T, S>(
    scope: &'scope std::thread::Scope<'scope, '_>,
    mut source: S,
    chunk: usize,
) -> Prefetched<T>
where
    T: Send + 'scope,
    S: Source<T> + Send + 'scope,
{
    let (send, chunks) = std::sync::mpsc::sync_channel(1);
    scope.spawn(move || loop {
        let mut out = Vec::with_capacity(chunk);
        let read = source.next_chunk(chunk, &mut out);
        let last = read.as_ref().map_or(true, |()| out.is_empty());
        if send.send(read.map(|()| out)).is_err() || last {
            return;
        }
    });
    Prefetched {
        chunks,
        done: false,
    }
}

impl<T> Source<T> for Prefetched<T> {
    fn next_chunk(&mut self, _max: usize, out: &mut Vec<Item<T>>) -> Result<()> {
        if self.done {
            return Ok(());
        }
        match self.chunks.recv() {
            Ok(Ok(chunk)) => {
                self.done = chunk.is_empty();
                out.extend(chunk);
                Ok(())
            }
            Ok(Err(e)) => {
                self.done = true;
                Err(e)
            }
            Err(_) => {
                self.done = true;
                Err(crate::error::Error::Thread(
                    "a verify reader thread ended without a result".into(),
                ))
            }
        }
    }
}

/// A source with a look-ahead buffer of one chunk.
pub struct Stream<T, S> {
    topic: String,
    partition: i32,
    source: S,
    buffer: VecDeque<Item<T>>,
    chunk: Vec<Item<T>>,
    chunk_size: usize,
    done: bool,
    /// The output offset after the last record handed over: where a
    /// later run resumes.
    next_offset: i64,
    /// The source offset of the last record `take_through` handed over.
    last_source: Option<u64>,
    /// The output offset from which a record no anchor covers is not part
    /// of this run (see [`run`]); `i64::MAX` by default.
    cut: i64,
    /// Whether the anchors are over, so records from `cut` on are left out.
    cut_applies: bool,
}

impl<T, S: Source<T>> Stream<T, S> {
    /// `source`, the records of output `topic`/`partition` from output
    /// offset `start` on, read `chunk_size` at a time.
    pub fn new(topic: &str, partition: i32, start: i64, chunk_size: usize, source: S) -> Self {
        Stream {
            topic: topic.to_string(),
            partition,
            source,
            buffer: VecDeque::new(),
            chunk: Vec::new(),
            chunk_size,
            done: false,
            next_offset: start,
            last_source: None,
            cut: i64::MAX,
            cut_applies: false,
        }
    }

    /// The same stream, with records from output offset `cut` on left out
    /// once no anchor is left to cover them: they were committed after the
    /// run fixed what it reads (see [`run`]).
    pub fn with_cut(mut self, cut: i64) -> Self {
        self.cut = cut;
        self
    }

    /// Leaves out, from now on, every record from the cut on.
    fn apply_cut(&mut self) {
        self.cut_applies = true;
        self.drop_past_cut();
    }

    fn drop_past_cut(&mut self) {
        if !self.cut_applies {
            return;
        }
        let cut = self.cut;
        if let Some(at) = self.buffer.iter().position(|i| match i {
            Item::Record(o, _) | Item::Undecodable(o, _) => *o >= cut,
        }) {
            // Output offsets only grow: everything after is past it too.
            self.buffer.truncate(at);
            self.done = true;
        }
    }

    /// Reads one more chunk into the buffer (unless the source is over).
    fn read_chunk(&mut self) -> Result<()> {
        if !self.done {
            self.source.next_chunk(self.chunk_size, &mut self.chunk)?;
            self.done = self.chunk.is_empty();
            self.buffer.extend(self.chunk.drain(..));
            self.drop_past_cut();
        }
        Ok(())
    }

    /// The output offset after the last record handed over.
    pub fn next_offset(&self) -> i64 {
        self.next_offset
    }

    fn handed_over(&mut self, offset: i64) {
        self.next_offset = self.next_offset.max(offset + 1);
    }

    /// Refills the buffer when it is empty; false when nothing is left.
    fn fill(&mut self) -> Result<bool> {
        if self.buffer.is_empty() {
            self.read_chunk()?;
        }
        Ok(!self.buffer.is_empty())
    }

    /// The next record and its output offset, undecodable ones reported to
    /// `check` and skipped.
    fn next(&mut self, check: &mut PartitionCheck<'_>) -> Result<Option<(i64, T)>> {
        while self.fill()? {
            match self.buffer.pop_front() {
                Some(Item::Record(o, t)) => {
                    self.handed_over(o);
                    return Ok(Some((o, t)));
                }
                Some(Item::Undecodable(o, e)) => {
                    self.handed_over(o);
                    check.undecodable(&self.topic, self.partition, o, &e)
                }
                None => {}
            }
        }
        Ok(None)
    }
}

impl<T: SourceOffset, S: Source<T>> Stream<T, S> {
    /// Hands every record at the front with a source offset up to `bound`
    /// to `f`; returns how many records it took. A record past `bound`
    /// that stands before one within it is out of order (reported and left
    /// out): otherwise a single forged record with a large source offset
    /// would hold every later anchor's records back.
    fn take_through(
        &mut self,
        bound: u64,
        check: &mut PartitionCheck<'_>,
        mut f: impl FnMut(&mut PartitionCheck<'_>, T),
    ) -> Result<u64> {
        let mut taken = 0;
        while self.fill()? {
            let past = match self.buffer.front() {
                Some(Item::Record(o, t)) if t.source_offset() > bound => {
                    Some((*o, t.source_offset()))
                }
                _ => None,
            };
            if let Some((o, source)) = past {
                if !self.front_out_of_order(bound)? {
                    break;
                }
                self.buffer.pop_front();
                self.handed_over(o);
                check.out_of_order(&self.topic, self.partition, o, source);
                continue;
            }
            taken += 1;
            match self.buffer.pop_front() {
                Some(Item::Record(o, t)) => {
                    self.handed_over(o);
                    self.last_source = Some(t.source_offset());
                    f(check, t)
                }
                Some(Item::Undecodable(o, e)) => {
                    self.handed_over(o);
                    check.undecodable(&self.topic, self.partition, o, &e)
                }
                None => {}
            }
        }
        Ok(taken)
    }

    /// Whether the front record (past `bound`) is out of order: the next
    /// buffered record within `bound` continues the source offsets handed
    /// over so far, so the front one interrupts them. Looks one chunk
    /// further when less than a chunk is buffered (so a few forged records
    /// at the end of a chunk are seen past too; a run of forgeries longer
    /// than a chunk is not, and then holds the walk back). In a sound trail no
    /// record within `bound` follows: the front one opens the next anchor's
    /// range. (A lone record with a *lower* offset later on, a copy out of
    /// place, does not continue the sequence; it is taken in its turn and
    /// the chain and completeness checks report it.)
    fn front_out_of_order(&mut self, bound: u64) -> Result<bool> {
        if self.buffer.len() < self.chunk_size {
            self.read_chunk()?;
        }
        let next_within = self.buffer.iter().skip(1).find_map(|i| match i {
            Item::Record(_, t) if t.source_offset() <= bound => Some(t.source_offset()),
            _ => None,
        });
        Ok(next_within.is_some_and(|n| self.last_source.is_none_or(|last| n > last)))
    }

    /// The largest source offset buffered (after filling), `None` when the
    /// stream is over: in a trail past its last anchor, the bound up to
    /// which both record streams can be merged.
    fn horizon(&mut self) -> Result<Option<u64>> {
        if !self.fill()? {
            return Ok(None);
        }
        Ok(Some(
            self.buffer
                .iter()
                .map(|i| match i {
                    Item::Record(_, t) => t.source_offset(),
                    Item::Undecodable(..) => 0,
                })
                .max()
                .unwrap_or(0),
        ))
    }
}

/// The streams of one partition's trail.
pub struct Streams<A, C, Q> {
    /// `AnchorBatch`es.
    pub anchors: Stream<AnchorBatch, A>,
    /// Chained records.
    pub chained: Stream<Link, C>,
    /// Quarantine records.
    pub quarantined: Stream<QuarantineLeaf, Q>,
}

impl<A, C: Source<Link>, Q: Source<QuarantineLeaf>> Streams<A, C, Q> {
    /// Hands the chained and the quarantine records up to source offset
    /// `bound` to `check`; how many.
    fn take_through(&mut self, bound: u64, check: &mut PartitionCheck<'_>) -> Result<u64> {
        Ok(self.chained.take_through(bound, check, |c, r| c.link(r))?
            + self
                .quarantined
                .take_through(bound, check, |c, q| c.quarantined(q))?)
    }
}

/// Runs `check` over `streams`: each anchor after the records it may cover,
/// then what follows the last anchor before the record streams' cuts (none
/// in a sound trail: a record commits with its anchor). `progress` is told
/// how many records were taken each time.
///
/// The cuts make a trail that is being written verifiable (DESIGN.md §3).
/// A record stream's cut is its last stable offset taken *before* the
/// anchors' end was: every record before it belongs to a transaction that
/// had ended by then, so its anchor is among the anchors read, and a record
/// before the cut that no anchor covers is an error (an appended forgery
/// looks exactly like that). Records from the cut on may belong to
/// transactions that committed after the anchors' end was taken: those an
/// anchor read covers are checked with it, the rest are not part of this
/// run (the next one reads them), so a live trail raises no false alarm
/// and nothing this run reports as verified depends on them.
pub fn run<A, C, Q>(
    check: &mut PartitionCheck<'_>,
    streams: &mut Streams<A, C, Q>,
    progress: &mut dyn FnMut(u64),
) -> Result<()>
where
    A: Source<AnchorBatch>,
    C: Source<Link>,
    Q: Source<QuarantineLeaf>,
{
    while let Some((at, anchor)) = streams.anchors.next(check)? {
        if !check.admit(&anchor) {
            continue;
        }
        let n = streams.take_through(anchor.anchor.last_offset, check)?;
        check.anchor(&anchor)?;
        check.mark(Positions {
            anchors: at,
            chained: streams.chained.next_offset(),
            quarantine: streams.quarantined.next_offset(),
            input: anchor.anchor.last_offset as i64 + 1,
        });
        progress(n);
    }
    streams.chained.apply_cut();
    streams.quarantined.apply_cut();
    loop {
        let bound = match (streams.chained.horizon()?, streams.quarantined.horizon()?) {
            (None, None) => return Ok(()),
            (Some(c), Some(q)) => c.min(q),
            (Some(b), None) | (None, Some(b)) => b,
        };
        let n = streams.take_through(bound, check)?;
        check.close_uncovered()?;
        progress(n);
    }
}
