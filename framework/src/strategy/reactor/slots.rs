//! A loop's slot table: its connections by slot, the number in each connection's mio token, with
//! a generation that tells a slot's tenant from the one before it (a wake or a timer queued for a
//! connection that has gone must not reach the next one).
//!
//! The table gives its memory back after a peak without moving a live connection (whose token the
//! poll and its session's waker hold): the lowest free slot is given out first, as the kernel gives
//! out descriptors, so live connections gather at the start; free slots at the end are dropped as
//! they appear, and the vector's capacity halves once three quarters of it is unused
//! (`memory::shrink_sparse_vec`). A free slot below the last live one costs 24 bytes (its
//! generation, its flag and an empty box): a tenant is boxed, so 10 000 connections that came and
//! went leave at most 240 KB behind even when the last one keeps the highest slot. Generations come
//! from one counter per table, so a slot dropped and made again never repeats one.
//!
//! The free slots are a binary heap in one vector, lowest first, so that neither a claim nor a
//! release allocates (a tree's nodes would, and after a peak the allocator keeps the last ones it
//! freed for the loop's thread, scattered over pages it could otherwise return). Slots dropped from
//! the end stay in the heap until they come up or the heap is swept; a slot is checked when taken.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::ops::{Index, IndexMut};

use crate::memory;

/// Stale entries the free-slot heap may hold beyond one per slot before it is swept.
const STALE: usize = 64;

pub(super) struct Slots<T> {
    entries: Vec<Entry<T>>,
    /// The free slots, lowest first; it may also hold slots beyond `entries` (dropped from the
    /// end) or a slot twice, which are skipped when they come up.
    vacant: BinaryHeap<Reverse<usize>>,
    /// The last generation given out.
    generations: u64,
}

struct Entry<T> {
    generation: u64,
    free: bool,
    /// The tenant; `None` while the slot is free, or claimed but not yet filled.
    tenant: Option<Box<T>>,
}

impl<T> Default for Slots<T> {
    fn default() -> Self {
        Slots {
            entries: Vec::new(),
            vacant: BinaryHeap::new(),
            generations: 0,
        }
    }
}

impl<T> Slots<T> {
    /// Take the lowest free slot (or a new one at the end) for a new tenant: its number and
    /// generation. The slot is empty until [`Slots::fill`]; give it back with [`Slots::release`].
    pub fn claim(&mut self) -> (usize, u64) {
        self.generations += 1;
        let generation = self.generations;
        let slot = loop {
            match self.vacant.pop() {
                Some(Reverse(slot)) if self.entries.get(slot).is_some_and(|e| e.free) => {
                    break slot;
                }
                Some(_) => {}
                None => {
                    self.entries.push(Entry {
                        generation,
                        free: false,
                        tenant: None,
                    });
                    break self.entries.len() - 1;
                }
            }
        };
        let entry = &mut self.entries[slot];
        entry.generation = generation;
        entry.free = false;
        (slot, generation)
    }

    /// Put the tenant into a slot it claimed.
    pub fn fill(&mut self, slot: usize, tenant: T) {
        if let Some(entry) = self.entries.get_mut(slot) {
            entry.tenant = Some(Box::new(tenant));
        }
    }

    /// Free `slot`, taking its tenant out; nothing if it is free already (or was never made).
    pub fn release(&mut self, slot: usize) -> Option<T> {
        let entry = self.entries.get_mut(slot).filter(|entry| !entry.free)?;
        let tenant = entry.tenant.take();
        entry.free = true;
        if slot + 1 == self.entries.len() {
            while self.entries.last().is_some_and(|entry| entry.free) {
                self.entries.pop();
            }
            memory::shrink_sparse_vec(&mut self.entries);
        } else {
            self.vacant.push(Reverse(slot));
        }
        if self.vacant.len() > 2 * self.entries.len() + STALE {
            self.sweep();
        }
        tenant.map(|tenant| *tenant)
    }

    /// Keep only the heap's entries for free slots, once each; give back its room if most of it
    /// is unused.
    fn sweep(&mut self) {
        let mut free = std::mem::take(&mut self.vacant).into_vec();
        free.retain(|Reverse(slot)| self.entries.get(*slot).is_some_and(|e| e.free));
        free.sort_unstable();
        free.dedup();
        memory::shrink_sparse_vec(&mut free);
        self.vacant = BinaryHeap::from(free);
    }

    /// The tenant of `slot`, if it has one.
    pub fn get(&self, slot: usize) -> Option<&T> {
        self.entries.get(slot)?.tenant.as_deref()
    }

    /// The tenant of `slot`, if it has one.
    pub fn get_mut(&mut self, slot: usize) -> Option<&mut T> {
        self.entries.get_mut(slot)?.tenant.as_deref_mut()
    }

    /// The tenant of `slot` if it is still the one of `generation`.
    pub fn get_current(&mut self, slot: usize, generation: u64) -> Option<&mut T> {
        let entry = self.entries.get_mut(slot)?;
        if entry.generation != generation {
            return None;
        }
        entry.tenant.as_deref_mut()
    }

    /// The generation of `slot`'s tenant, if it has one.
    pub fn generation(&self, slot: usize) -> Option<u64> {
        let entry = self.entries.get(slot)?;
        entry.tenant.as_ref().map(|_| entry.generation)
    }

    /// One past the highest slot in use: no tenant has a slot at or above it.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// The slots that have a tenant, lowest first.
    pub fn occupied(&self) -> Vec<usize> {
        (self.entries.iter().enumerate())
            .filter(|(_, entry)| entry.tenant.is_some())
            .map(|(slot, _)| slot)
            .collect()
    }

    /// The tenants, lowest slot first.
    pub fn tenants(&self) -> impl Iterator<Item = &T> {
        self.entries
            .iter()
            .filter_map(|entry| entry.tenant.as_deref())
    }

    #[cfg(test)]
    fn capacity(&self) -> (usize, usize) {
        (self.entries.capacity(), self.vacant.capacity())
    }
}

/// The tenant of a slot that has one; a slot without one is a bug in the loop (as an index past
/// the end of a vector would be).
impl<T> Index<usize> for Slots<T> {
    type Output = T;

    fn index(&self, slot: usize) -> &T {
        self.get(slot)
            .unwrap_or_else(|| panic!("slot {slot} has no tenant"))
    }
}

impl<T> IndexMut<usize> for Slots<T> {
    fn index_mut(&mut self, slot: usize) -> &mut T {
        self.get_mut(slot)
            .unwrap_or_else(|| panic!("slot {slot} has no tenant"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filled(slots: &mut Slots<u32>, n: usize) -> Vec<(usize, u64)> {
        (0..n)
            .map(|i| {
                let (slot, generation) = slots.claim();
                slots.fill(slot, i as u32);
                (slot, generation)
            })
            .collect()
    }

    #[test]
    fn the_lowest_free_slot_is_given_out_first_with_a_new_generation() {
        let mut slots = Slots::default();
        let claimed = filled(&mut slots, 4);
        assert_eq!(
            claimed.iter().map(|c| c.0).collect::<Vec<_>>(),
            [0, 1, 2, 3]
        );
        assert_eq!(slots.release(2), Some(2));
        assert_eq!(slots.release(1), Some(1));
        assert_eq!(slots.release(1), None, "released once");
        let (slot, generation) = slots.claim();
        assert_eq!(slot, 1);
        assert!(generation > claimed[3].1, "never repeats one");
        assert_eq!(slots.get(1), None, "empty until filled");
        slots.fill(1, 7);
        assert_eq!(slots.get_current(1, claimed[1].1), None, "the old tenant's");
        assert_eq!(slots.get_current(1, generation), Some(&mut 7));
        assert_eq!(slots.generation(1), Some(generation));
        assert_eq!(slots.occupied(), [0, 1, 3]);
    }

    #[test]
    fn free_slots_at_the_end_go_and_the_table_shrinks_back_after_a_peak() {
        let mut slots = Slots::default();
        let claimed = filled(&mut slots, 10_000);
        let peak = slots.capacity();
        // The last connection stays; every other one goes, in a shuffled order.
        let mut order: Vec<usize> = (0..9_999).collect();
        for i in (1..order.len()).rev() {
            order.swap(i, (i * 7919) % (i + 1));
        }
        for slot in order {
            assert!(slots.release(slot).is_some());
        }
        assert_eq!(slots.len(), 10_000, "the live one keeps its slot");
        assert_eq!(slots.get_current(9_999, claimed[9_999].1), Some(&mut 9_999));
        assert_eq!(slots.release(9_999), Some(9_999));
        assert_eq!(slots.len(), 0, "every free slot at the end went");
        let (entries, vacant) = slots.capacity();
        assert!(
            entries <= 64 && vacant <= 2 * 64,
            "{entries}, {vacant} of {peak:?}"
        );
        // A slot made again after the table shrank gets a generation never seen before.
        let (slot, generation) = slots.claim();
        assert_eq!(slot, 0);
        assert!(claimed.iter().all(|&(_, old)| old < generation));
    }

    #[test]
    fn a_slot_dropped_from_the_end_and_made_again_is_given_out_once() {
        let mut slots = Slots::default();
        filled(&mut slots, 3);
        slots.release(1);
        slots.release(2);
        slots.release(0);
        assert_eq!(slots.len(), 0);
        // Slot 1's heap entry outlived its slot; the table grows again past it.
        filled(&mut slots, 3);
        slots.release(1);
        let claimed: Vec<usize> = (0..3).map(|_| slots.claim().0).collect();
        assert_eq!(claimed, [1, 3, 4], "slot 1 once, then new ones");
    }

    #[test]
    fn live_tenants_keep_their_slots_while_the_table_shrinks_under_them() {
        let mut slots = Slots::default();
        let claimed = filled(&mut slots, 1_000);
        // Keep every hundredth; release the rest from the top down.
        for slot in (0..1_000).rev().filter(|slot| slot % 100 != 0) {
            slots.release(slot);
        }
        assert_eq!(slots.len(), 901, "up to the highest live slot");
        assert_eq!(slots.tenants().count(), 10);
        for slot in (0..1_000).step_by(100) {
            let generation = claimed[slot].1;
            assert_eq!(
                slots.get_current(slot, generation),
                Some(&mut (slot as u32))
            );
        }
        // New tenants fill the holes from the bottom, not the end.
        let (slot, _) = slots.claim();
        assert_eq!(slot, 1);
    }
}
