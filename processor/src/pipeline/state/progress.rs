//! How long a restore may go on (DESIGN.md §3: bounded by its progress, not
//! by one absolute deadline): as long as every partition it still reads
//! moves within the limit. A large state that takes minutes to read
//! restores; a partition held back (by an open transaction that never
//! ends, or a fetcher that never starts) fails the restore, named. No I/O.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Where each pending partition's reader was and when it last moved.
#[derive(Debug)]
pub struct Progress {
    limit: Duration,
    partitions: BTreeMap<i32, (Option<i64>, Instant)>,
}

impl Progress {
    /// `partitions`, none of which has moved yet, as of `now`; each may
    /// stand still for at most `limit`.
    pub fn new(partitions: impl IntoIterator<Item = i32>, limit: Duration, now: Instant) -> Self {
        Progress {
            limit,
            partitions: partitions.into_iter().map(|p| (p, (None, now))).collect(),
        }
    }

    /// Partition `p`'s reader is at `position` (`None`: not positioned yet)
    /// at `now`.
    pub fn observe(&mut self, p: i32, position: Option<i64>, now: Instant) {
        if let Some(last) = self.partitions.get_mut(&p) {
            if last.0 != position {
                *last = (position, now);
            }
        }
    }

    /// Partition `p` reached its end: it holds nothing back any more.
    pub fn done(&mut self, p: i32) {
        self.partitions.remove(&p);
    }

    /// The partitions whose reader has not moved for longer than the limit
    /// at `now`, with how long each has stood still.
    pub fn stalled(&self, now: Instant) -> Vec<(i32, Duration)> {
        self.partitions
            .iter()
            .map(|(p, (_, since))| (*p, now.saturating_duration_since(*since)))
            .filter(|(_, still)| *still > self.limit)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: Duration = Duration::from_secs(120);

    #[test]
    fn a_restore_that_keeps_moving_is_never_stalled() {
        let t0 = Instant::now();
        let mut p = Progress::new([0, 1], LIMIT, t0);
        // Ten minutes of reading, every partition moving each minute.
        for minute in 1..=10u64 {
            let now = t0 + Duration::from_secs(60 * minute);
            p.observe(0, Some(minute as i64 * 1000), now);
            p.observe(1, Some(minute as i64 * 7), now);
            assert!(p.stalled(now).is_empty(), "minute {minute}");
        }
    }

    #[test]
    fn only_the_partition_that_stands_still_is_named() {
        let t0 = Instant::now();
        let mut p = Progress::new([0, 1, 2], LIMIT, t0);
        let t1 = t0 + Duration::from_secs(100);
        p.observe(0, Some(5), t1);
        p.observe(1, Some(9), t1);
        p.done(2);
        let t2 = t0 + Duration::from_secs(200);
        p.observe(0, Some(50), t2);
        // Partition 1 is still where it was at t1, 100 s ago: within the limit.
        p.observe(1, Some(9), t2);
        assert!(p.stalled(t2).is_empty());
        let t3 = t1 + LIMIT + Duration::from_secs(1);
        p.observe(0, Some(60), t3);
        p.observe(1, Some(9), t3);
        assert_eq!(p.stalled(t3), vec![(1, LIMIT + Duration::from_secs(1))]);
    }

    #[test]
    fn a_reader_never_positioned_stalls_too() {
        let t0 = Instant::now();
        let mut p = Progress::new([3], LIMIT, t0);
        let later = t0 + LIMIT + Duration::from_secs(5);
        p.observe(3, None, later);
        assert_eq!(p.stalled(later).len(), 1);
    }
}
