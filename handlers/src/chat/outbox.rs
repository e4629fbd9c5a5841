//! One member's bounded outgoing queue and its overflow policy: the backpressure of the chat, sans-IO.
//!
//! Delivering to a member only ever pushes onto its outbox, which never blocks; whatever writes to the
//! member's connection (a writer thread, or an event loop when the socket is writable) pops from it
//! at the member's own pace. So a member that stops reading fills its own outbox and nobody else's.
//! When the outbox is full, the policy decides:
//!
//! - [`Overflow::Disconnect`] (the default): the push reports [`Pushed::Overflow`] and the caller
//!   drops the member (the core's [`kick`](super::core::Chat::kick) tells the room).
//! - [`Overflow::Drop`]: the message is dropped and counted. As soon as the member catches up — there
//!   is room again, or the queue ran dry — it gets one notice saying how many it missed, placed where
//!   the gap is. The outbox then holds at most `capacity` messages plus that notice.
//!
//! An event loop that counts the member's unwritten output as part of its queue (see the chat
//! session) applies the same policy when it finds no room: [`Outbox::pop_up_to`] takes what fits, and
//! what is left either overflows or is missed ([`Outbox::miss_queued`]).

use std::collections::VecDeque;

use super::format::{self, Bytes};

/// What happens when a member's outbox is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Overflow {
    /// Disconnect the member and tell its room.
    #[default]
    Disconnect,
    /// Drop messages for the member, and tell it how many once it catches up.
    Drop,
}

impl Overflow {
    /// The policy with this option value.
    pub fn from_name(name: &str) -> Option<Overflow> {
        match name {
            "disconnect" => Some(Overflow::Disconnect),
            "drop" => Some(Overflow::Drop),
            _ => None,
        }
    }
}

/// What became of a pushed message. Only `Queued` means it will be written; the caller acts on
/// `Overflow` (disconnect the member) and says why it may ignore the others.
#[must_use = "a message that was not queued may need acting on (`Overflow`: disconnect the member)"]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    /// Queued: the member's writer will write it.
    Queued,
    /// Dropped under [`Overflow::Drop`]; the member will hear of it.
    Dropped,
    /// Not queued: the outbox is full and the policy is [`Overflow::Disconnect`].
    Overflow,
    /// Not queued: the member's mailbox is closed, its connection closing (only
    /// [`Mailbox::push`](super::mailbox::Mailbox::push) says this).
    Closed,
}

/// One place in the queue: a line, or the notice of messages missed there (written when popped, so
/// that missing the queue again adds its count rather than a notice's one).
#[derive(Debug, Clone)]
enum Entry {
    Line(Bytes),
    Missed(u64),
}

/// A bounded queue of lines for one member.
#[derive(Debug)]
pub struct Outbox {
    queue: VecDeque<Entry>,
    capacity: usize,
    policy: Overflow,
    /// Messages dropped since the member last caught up.
    missed: u64,
}

impl Outbox {
    /// An outbox of at most `capacity` messages (≥ 1) with `policy`.
    pub fn new(capacity: usize, policy: Overflow) -> Outbox {
        Outbox {
            queue: VecDeque::new(),
            capacity: capacity.max(1),
            policy,
            missed: 0,
        }
    }

    /// Queues `bytes` unless the outbox is full.
    pub fn push(&mut self, bytes: &Bytes) -> Pushed {
        if self.queue.len() >= self.capacity {
            return match self.policy {
                Overflow::Disconnect => Pushed::Overflow,
                Overflow::Drop => {
                    self.missed += 1;
                    Pushed::Dropped
                }
            };
        }
        self.tell_missed();
        self.queue.push_back(Entry::Line(bytes.clone()));
        Pushed::Queued
    }

    /// The next line to write, if any.
    #[must_use = "a popped line is gone from the queue: write it"]
    pub fn pop(&mut self) -> Option<Bytes> {
        if self.queue.is_empty() {
            self.tell_missed();
        }
        self.queue.pop_front().map(|entry| match entry {
            Entry::Line(bytes) => bytes,
            Entry::Missed(count) => format::missed(count),
        })
    }

    /// Hands `write` at most `room` lines, in order; returns how many.
    pub fn pop_up_to(&mut self, room: usize, mut write: impl FnMut(&[u8])) -> usize {
        let mut moved = 0;
        while moved < room {
            let Some(line) = self.pop() else { break };
            write(&line);
            moved += 1;
        }
        moved
    }

    /// Everything queued is missed (the drop policy, when the member has no room for it): counted,
    /// and told as one notice once the member catches up.
    pub fn miss_queued(&mut self) {
        for entry in self.queue.drain(..) {
            self.missed += match entry {
                Entry::Line(_) => 1,
                Entry::Missed(count) => count,
            };
        }
    }

    /// Moves lines into `batch` until it holds at least `max` bytes or the outbox is empty, so a
    /// writer that fell behind catches up in few writes. Returns whether it moved anything.
    #[must_use = "true means `batch` holds lines to write"]
    pub fn pop_into(&mut self, batch: &mut Vec<u8>, max: usize) -> bool {
        let before = batch.len();
        while batch.len() < max {
            let Some(line) = self.pop() else { break };
            batch.extend_from_slice(&line);
        }
        batch.len() > before
    }

    /// Whether a missed-messages notice is owed and not queued yet.
    pub fn owes_notice(&self) -> bool {
        self.missed > 0
    }

    /// Lines waiting, the missed-messages notice included.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty() && self.missed == 0
    }

    /// Forgets everything queued (the member is being disconnected).
    pub fn clear(&mut self) {
        self.queue.clear();
        self.missed = 0;
    }

    /// Queues the missed-messages notice, if messages were missed.
    fn tell_missed(&mut self) {
        if self.missed > 0 {
            self.queue.push_back(Entry::Missed(self.missed));
            self.missed = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(text: &str) -> Bytes {
        format!("{text}\n").into_bytes().into()
    }

    fn drain(outbox: &mut Outbox) -> Vec<String> {
        std::iter::from_fn(|| outbox.pop())
            .map(|bytes| String::from_utf8(bytes.to_vec()).unwrap())
            .collect()
    }

    #[test]
    fn queues_in_order_up_to_capacity() {
        let mut outbox = Outbox::new(2, Overflow::Disconnect);
        assert_eq!(outbox.push(&line("a")), Pushed::Queued);
        assert_eq!(outbox.push(&line("b")), Pushed::Queued);
        assert_eq!(outbox.push(&line("c")), Pushed::Overflow);
        assert_eq!(outbox.len(), 2);
        assert_eq!(drain(&mut outbox), ["a\n", "b\n"]);
        assert!(outbox.is_empty());
    }

    #[test]
    fn drop_counts_and_tells_at_the_gap() {
        let mut outbox = Outbox::new(2, Overflow::Drop);
        let pushed = ["a", "b", "c", "d"].map(|text| outbox.push(&line(text)));
        let (queued, dropped) = (Pushed::Queued, Pushed::Dropped);
        assert_eq!(pushed, [queued, queued, dropped, dropped]);
        assert_eq!(outbox.pop().as_deref(), Some(&b"a\n"[..]));
        assert_eq!(outbox.push(&line("e")), Pushed::Queued);
        assert_eq!(outbox.push(&line("f")), Pushed::Dropped);
        assert_eq!(
            drain(&mut outbox),
            [
                "b\n",
                "*** you missed 2 messages: your connection did not keep up\n",
                "e\n",
                "*** you missed 1 message: your connection did not keep up\n",
            ]
        );
        assert!(outbox.is_empty());
    }

    #[test]
    fn batches_stop_near_the_limit() {
        let mut outbox = Outbox::new(10, Overflow::Drop);
        for text in ["aaa", "bbb", "ccc"] {
            assert_eq!(outbox.push(&line(text)), Pushed::Queued);
        }
        let mut batch = Vec::new();
        assert!(outbox.pop_into(&mut batch, 5));
        assert_eq!(batch, b"aaa\nbbb\n");
        batch.clear();
        assert!(outbox.pop_into(&mut batch, 5));
        assert_eq!(batch, b"ccc\n");
        assert!(!outbox.pop_into(&mut batch, 5));
    }

    #[test]
    fn pop_up_to_stops_at_the_room_and_missing_the_rest_keeps_the_count() {
        let mut outbox = Outbox::new(8, Overflow::Drop);
        for text in ["a", "b", "c"] {
            assert_eq!(outbox.push(&line(text)), Pushed::Queued);
        }
        let mut written = Vec::new();
        assert_eq!(
            outbox.pop_up_to(1, |bytes| written.extend_from_slice(bytes)),
            1
        );
        assert_eq!(written, b"a\n");
        outbox.miss_queued();
        assert_eq!(outbox.len(), 0);
        // A notice already queued counts for what it told: 2 + 2 missed, one notice.
        assert_eq!(outbox.push(&line("d")), Pushed::Queued);
        assert_eq!(outbox.push(&line("e")), Pushed::Queued);
        outbox.miss_queued();
        assert_eq!(
            drain(&mut outbox),
            ["*** you missed 4 messages: your connection did not keep up\n"]
        );
    }

    #[test]
    fn clear_forgets_everything() {
        let mut outbox = Outbox::new(1, Overflow::Drop);
        assert_eq!(outbox.push(&line("a")), Pushed::Queued);
        assert_eq!(outbox.push(&line("b")), Pushed::Dropped);
        outbox.clear();
        assert!(outbox.is_empty() && outbox.pop().is_none());
    }

    #[test]
    fn policies_have_option_names() {
        assert_eq!(Overflow::from_name("drop"), Some(Overflow::Drop));
        assert_eq!(
            Overflow::from_name("disconnect"),
            Some(Overflow::Disconnect)
        );
        assert_eq!(Overflow::from_name("block"), None);
    }
}
