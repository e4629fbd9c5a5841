//! Gap and duplicate detection over what arrives from other instances, sans-IO: per origin and room,
//! the run and the last sequence number seen (see [`wire`](super::wire)).
//!
//! - the next number of the same run: in order;
//! - a higher one: the numbers between were missed (published while a link was down, or dropped
//!   by a full queue at the origin) — a gap of that many, and the message is delivered;
//! - the same or a lower one: a duplicate, dropped (Redis pub/sub does not duplicate, so this is a
//!   guard, counted apart);
//! - a new run (the room opened again at the origin): in order if it starts at 1, else a gap of
//!   what came before it.
//!
//! A room's record is forgotten when this instance stops hearing the room (no local member left),
//! so a room heard again later starts afresh. At most [`MAX_TRACKED`] records are kept; past that
//! the oldest-created is forgotten, which can only hide a gap, never invent one.

use std::collections::{HashMap, VecDeque};

use super::wire::Origin;

/// Origin × room records kept: far beyond rooms times instances in any deployment this serves.
pub const MAX_TRACKED: usize = 65_536;

/// What one arrival was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// In order (or the first heard of this origin in this room).
    Next,
    /// In order after `missed` messages that never came: deliver it, count them.
    Gap { missed: u64 },
    /// Already seen: drop it.
    Duplicate,
}

#[derive(Debug, Default)]
pub struct Sequences {
    last: HashMap<(Origin, String), (u64, u64)>,
    /// Insertion order, for the bound.
    order: VecDeque<(Origin, String)>,
}

impl Sequences {
    /// Judges `seq` of `run` from `origin` in `room`, and remembers it unless a duplicate.
    pub fn arrive(&mut self, origin: &Origin, room: &str, run: u64, seq: u64) -> Arrival {
        let key = (origin.clone(), room.to_string());
        let arrival = match self.last.get(&key) {
            None => Arrival::Next,
            Some(&(last_run, last)) if last_run == run => match seq {
                s if s == last + 1 => Arrival::Next,
                s if s > last => Arrival::Gap {
                    missed: s - last - 1,
                },
                _ => return Arrival::Duplicate,
            },
            Some(_) if seq <= 1 => Arrival::Next,
            Some(_) => Arrival::Gap { missed: seq - 1 },
        };
        if self.last.insert(key.clone(), (run, seq)).is_none() {
            self.order.push_back(key);
            if self.order.len() > MAX_TRACKED {
                if let Some(oldest) = self.order.pop_front() {
                    self.last.remove(&oldest);
                }
            }
        }
        arrival
    }

    /// This instance no longer hears the rooms `keep` refuses: forget their records.
    pub fn retain_rooms(&mut self, keep: impl Fn(&str) -> bool) {
        self.last.retain(|(_, room), _| keep(room));
        self.order.retain(|(_, room)| keep(room));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin(node: &str) -> Origin {
        Origin {
            node: node.into(),
            inc: 1,
        }
    }

    #[test]
    fn order_gaps_and_duplicates() {
        let (a, b) = (origin("a"), origin("b"));
        let mut seen = Sequences::default();
        assert_eq!(seen.arrive(&a, "r", 1, 5), Arrival::Next, "first heard");
        assert_eq!(seen.arrive(&a, "r", 1, 6), Arrival::Next);
        assert_eq!(seen.arrive(&b, "r", 1, 1), Arrival::Next, "its own count");
        assert_eq!(seen.arrive(&a, "s", 1, 1), Arrival::Next, "its own room");
        assert_eq!(seen.arrive(&a, "r", 1, 9), Arrival::Gap { missed: 2 });
        assert_eq!(seen.arrive(&a, "r", 1, 9), Arrival::Duplicate);
        assert_eq!(seen.arrive(&a, "r", 1, 3), Arrival::Duplicate);
        assert_eq!(seen.arrive(&a, "r", 1, 10), Arrival::Next);
        assert_eq!(seen.arrive(&a, "r", 2, 1), Arrival::Next, "a new run");
        assert_eq!(seen.arrive(&a, "r", 3, 4), Arrival::Gap { missed: 3 });
    }

    #[test]
    fn a_forgotten_room_starts_afresh_and_the_records_are_bounded() {
        let a = origin("a");
        let mut seen = Sequences::default();
        assert_eq!(seen.arrive(&a, "r", 1, 1), Arrival::Next);
        seen.retain_rooms(|room| room != "r");
        assert_eq!(seen.arrive(&a, "r", 1, 7), Arrival::Next);
        for n in 0..MAX_TRACKED + 10 {
            let _ = seen.arrive(&a, &format!("room{n}"), 1, 1);
        }
        assert_eq!(seen.last.len(), MAX_TRACKED);
        assert_eq!(seen.order.len(), MAX_TRACKED);
    }
}
