//! A loop's timers: each connection's next time — a time limit, or a wake its session asked for —
//! in one heap, whose earliest entry bounds how long the loop's `poll` sleeps. No timer has a
//! thread, and a connection costs one heap entry however often its times change.
//!
//! Each connection (a slot and its generation, so a reused slot is told from its last tenant) has
//! one live entry at most, whose time is noted beside the heap. A time that moves later keeps that
//! entry: it comes due early, and the loop queues the connection again at its real time (so an
//! idle clock restarted by every read costs nothing here). A time that moves earlier (a session
//! asking for a sooner wake) needs a new entry; the old one stays in the heap, stale, and is
//! skipped when it comes due, or swept out once the stale entries outnumber the live ones.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

use crate::memory;

/// Stale entries tolerated beyond one per slot before they are swept out: enough that sweeping is
/// rare, few enough that the heap stays within a small multiple of the connections.
const STALE: usize = 64;

/// A connection's place: (slot, generation).
pub(super) type Owner = (usize, u64);

#[derive(Default)]
pub(super) struct Timers {
    /// (time, slot, generation), earliest first; live or stale (see `live`).
    heap: BinaryHeap<Reverse<(Instant, usize, u64)>>,
    /// Per slot, the generation and time of its live entry.
    live: Vec<Option<(u64, Instant)>>,
}

impl Timers {
    /// The earliest time queued, if any (it may be stale: `poll` then wakes for nothing).
    pub fn next(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((at, ..))| *at)
    }

    /// Make sure `owner` has an entry no later than `at`: a new one unless its live one is due
    /// earlier (or at `at`).
    pub fn queue(&mut self, (slot, generation): Owner, at: Instant) {
        if self.live.len() <= slot {
            self.live.resize(slot + 1, None);
        }
        if matches!(self.live[slot], Some((live, queued)) if live == generation && queued <= at) {
            return;
        }
        self.live[slot] = Some((generation, at));
        self.heap.push(Reverse((at, slot, generation)));
        if self.heap.len() > 2 * self.live.len() + STALE {
            self.sweep();
        }
    }

    /// Drop the stale entries, and the room they took.
    fn sweep(&mut self) {
        let live = &self.live;
        self.heap.retain(|&Reverse((at, slot, generation))| {
            live.get(slot) == Some(&Some((generation, at)))
        });
        self.shrink();
    }

    /// Give back the heap's capacity if most of it is unused.
    fn shrink(&mut self) {
        if memory::is_sparse(self.heap.len(), self.heap.capacity()) {
            self.heap.shrink_to(self.heap.len() * 2);
        }
    }

    /// Forget the live entry of `slot` (its connection is gone).
    pub fn cancel(&mut self, slot: usize) {
        if let Some(live) = self.live.get_mut(slot) {
            *live = None;
        }
    }

    /// The loop's slot table now ends at `slots`: forget the slots beyond it (all cancelled), and
    /// give back the memory a peak of connections left here, as the slot table does.
    pub fn truncate(&mut self, slots: usize) {
        if slots >= self.live.len() {
            return;
        }
        self.live.truncate(slots);
        memory::shrink_sparse_vec(&mut self.live);
        if self.heap.len() > 2 * self.live.len() + STALE {
            self.sweep();
        } else {
            self.shrink();
        }
    }

    /// The owners of the live entries due by `now`, each entry taken: the loop checks what is due
    /// for each and queues it again if anything is left.
    pub fn take_due(&mut self, now: Instant) -> Vec<Owner> {
        let mut due = Vec::new();
        while let Some(&Reverse((at, slot, generation))) = self.heap.peek() {
            if at > now {
                break;
            }
            self.heap.pop();
            if let Some(live) = self.live.get_mut(slot) {
                if *live == Some((generation, at)) {
                    *live = None;
                    due.push((slot, generation));
                }
            }
        }
        self.shrink();
        due
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.heap.len()
    }

    #[cfg(test)]
    fn capacity(&self) -> (usize, usize) {
        (self.heap.capacity(), self.live.capacity())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn ms(start: Instant, n: u64) -> Instant {
        start + Duration::from_millis(n)
    }

    #[test]
    fn a_later_time_keeps_its_entry_and_an_earlier_one_replaces_it() {
        let start = Instant::now();
        let mut timers = Timers::default();
        timers.queue((0, 1), ms(start, 100));
        timers.queue((0, 1), ms(start, 300));
        assert_eq!(timers.len(), 1, "moved later: the entry at 100 stays");
        assert_eq!(timers.next(), Some(ms(start, 100)));
        timers.queue((0, 1), ms(start, 50));
        assert_eq!(timers.next(), Some(ms(start, 50)));
        assert_eq!(timers.take_due(ms(start, 49)), []);
        assert_eq!(timers.take_due(ms(start, 50)), [(0, 1)]);
        // The entry at 100 was left stale: it comes due for nobody.
        assert_eq!(timers.take_due(ms(start, 1000)), []);
        assert_eq!(timers.next(), None);
    }

    #[test]
    fn a_cancelled_or_reused_slot_gets_no_due_of_its_last_tenant() {
        let start = Instant::now();
        let mut timers = Timers::default();
        timers.queue((0, 1), ms(start, 10));
        timers.queue((1, 1), ms(start, 10));
        timers.cancel(0);
        timers.cancel(1);
        timers.queue((1, 2), ms(start, 20));
        assert_eq!(timers.take_due(ms(start, 15)), []);
        assert_eq!(timers.take_due(ms(start, 20)), [(1, 2)]);
    }

    #[test]
    fn a_time_moved_earlier_again_and_again_leaves_a_bounded_heap() {
        let start = Instant::now();
        let mut timers = Timers::default();
        for slot in 0..10 {
            timers.queue((slot, 1), ms(start, 1_000_000));
        }
        for n in 0..10_000 {
            timers.queue((3, 1), ms(start, 100_000 - n));
            assert!(
                timers.len() <= 2 * 10 + STALE + 1,
                "{} entries",
                timers.len()
            );
        }
        let due = timers.take_due(ms(start, 100_000));
        assert_eq!(due, [(3, 1)]);
    }

    #[test]
    fn a_truncated_table_leaves_no_due_and_gives_its_memory_back() {
        let start = Instant::now();
        let mut timers = Timers::default();
        for slot in 0..10_000 {
            timers.queue((slot, 1), ms(start, 1_000));
        }
        // Every connection but the first closes; the slot table shrinks to one slot.
        (1..10_000).for_each(|slot| timers.cancel(slot));
        timers.truncate(1);
        let (heap, live) = timers.capacity();
        assert!(
            heap <= 2 * (2 + STALE) && live <= 64,
            "heap {heap}, live {live}"
        );
        assert_eq!(timers.take_due(ms(start, 1_000)), [(0, 1)]);
        assert_eq!(timers.next(), None);
        assert!(
            timers.capacity().0 <= 64,
            "an empty heap gave its room back"
        );
        // A stale entry of a slot beyond the table, left by an earlier truncation, is skipped.
        timers.queue((5, 2), ms(start, 2_000));
        timers.truncate(1);
        assert_eq!(timers.take_due(ms(start, 3_000)), []);
    }
}
