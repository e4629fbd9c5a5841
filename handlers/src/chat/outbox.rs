//! One member's bounded outgoing queue, how full it is, and whether its member is keeping up: the
//! backpressure of the chat, sans-IO (the time is an argument).
//!
//! Delivering to a member only ever pushes onto its outbox, which never blocks; whatever writes to the
//! member's connection (a writer thread, or the event loop when the socket is writable) *takes* lines
//! from it at the member's own pace and later says how many bytes the socket accepted. A line taken
//! is still the member's until it is written, so the outbox counts it:
//!
//! - **The queue** is what is waiting plus what was taken and is not written yet, counted in
//!   messages (`queue_messages`) and in bytes (`queue_bytes`). It is *full* when another message
//!   would pass either bound; an empty queue takes one message of any length.
//! - **A message that finds the queue full is missed**: counted, and told to the member as one
//!   "you missed N" notice where the gap is, as soon as there is room again or the queue runs dry.
//!   The queue thus holds at most its bounds plus one notice, whatever the member does.
//! - **Progress** is bytes the member's peer takes off its connection, seen two ways: bytes written
//!   to the connection ([`Outbox::wrote`], [`Outbox::unwritten`]), and the connection's socket
//!   send queue moving ([`Outbox::saw_send_queue`]: `SIOCOUTQ`, what the socket holds that the
//!   peer has not taken). The second is needed because the first can stand still for seconds
//!   while the peer reads steadily: a socket's send buffer grows to megabytes (Linux autotunes it
//!   up to 4 MiB), and a writer blocked on a full one is let in only once the kernel has freed a
//!   large part of it — at 200 kB/s a reader frees 2 MiB in ten seconds. The send queue changes
//!   only when the peer takes bytes (TCP: acknowledges them, which a peer that stopped reading
//!   stops doing once its receive buffer is full; a Unix stream: reads them) or the socket takes
//!   more of ours (which, on a full buffer, it does only after the peer took some), so any change
//!   between two looks is progress, and a queue whose socket stands still is not making any.
//! - **A member is *stuck*** once its queue has been full for `slow_after` with no progress: the
//!   clock starts at the first message that finds it full and restarts at every progress. Then the
//!   policy decides ([`Overflow`]): disconnect it, or let it keep missing messages. A member that is
//!   reading, however slowly, is never stuck; a burst that fills a reading member's queue only
//!   costs it what did not fit.
//! - **The owner judges, not the push** ([`Outbox::stuck`]): a push only says a message was missed;
//!   whoever owns the member's connection (its supervising thread, or its session's turn) first
//!   looks at the socket's send queue, then asks whether the member is stuck. A push never sees
//!   the socket, so a verdict there would go by writes alone.
//!
//! With `slow_after = 0` a member is stuck as soon as its owner looks while a message finds its
//! queue full: the strict policy of "every message or disconnected". (The first look at the send
//! queue after a write only sets the mark later looks are compared with.)
//!
//! **When progress is only known at turns** ([`Progress::AtTurns`]: an event loop writes a
//! member's output without telling it, and the member learns how much at its next turn), a push
//! cannot tell a full queue from stale news. There a push checks only what waits, within the same
//! bounds; at each turn the owner reports what was written, takes what fits beside the unwritten
//! output ([`Outbox::take_fitting`]), and leaves the rest waiting; the queue is full when a line is
//! left over. What waits and what is unwritten are then each within the bounds.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::format::{self, Bytes};

/// What happens to a member judged too slow (its queue full for `slow_after` without progress).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Overflow {
    /// Disconnect the member and tell its room.
    #[default]
    Disconnect,
    /// Keep it: it goes on missing what does not fit, and hears how much once it catches up.
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
#[must_use = "a missed message may call for a verdict on the member (see `Outbox::stuck`)"]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    /// Queued: the member's writer will write it.
    Queued,
    /// Missed: the queue was full; the member will hear of it, and its owner should judge it.
    Dropped,
    /// Not queued: the member's mailbox is closed, its connection closing (only
    /// [`Mailbox::push`](super::mailbox::Mailbox::push) says this).
    Closed,
}

/// How the outbox learns of its member's progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// With every write ([`Outbox::wrote`]): a writer thread. A push checks the whole queue.
    Exact,
    /// At the owner's turns ([`Outbox::unwritten`]): an event loop's session. A push checks what
    /// waits, the turn what is unwritten.
    AtTurns,
}

/// How big a member's queue may grow, and how long it may stay full without progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Messages (≥ 1).
    pub messages: usize,
    /// Bytes (≥ 1).
    pub bytes: usize,
    /// How long the queue may stay full without progress before the member is stuck.
    pub slow_after: Duration,
}

/// A bounded queue of lines for one member.
#[derive(Debug)]
pub struct Outbox {
    /// Lines waiting to be taken.
    waiting: VecDeque<Bytes>,
    /// Bytes of the lines in `waiting`.
    waiting_bytes: usize,
    /// Where each line taken and not yet written ends, counted in bytes ever taken.
    taken_ends: VecDeque<u64>,
    /// Bytes ever taken.
    taken: u64,
    /// Bytes ever written (reported by the writer).
    written: u64,
    limits: Limits,
    policy: Overflow,
    progress: Progress,
    /// Messages missed since the member last caught up.
    missed: u64,
    /// Since when the queue has been full with no progress; `None` while it is not full, or since
    /// the last progress.
    full_since: Option<Instant>,
    /// The connection's socket send queue at the owner's last look since the last write; `None`
    /// before the first look.
    send_queue: Option<usize>,
}

impl Outbox {
    /// An empty outbox with `limits` (each bound at least 1) and `policy`, for a writer that reports
    /// every write ([`Progress::Exact`]).
    pub fn new(limits: Limits, policy: Overflow) -> Outbox {
        Outbox::with_progress(limits, policy, Progress::Exact)
    }

    /// An empty outbox whose owner learns of progress the way `progress` says.
    pub fn with_progress(limits: Limits, policy: Overflow, progress: Progress) -> Outbox {
        Outbox {
            waiting: VecDeque::new(),
            waiting_bytes: 0,
            taken_ends: VecDeque::new(),
            taken: 0,
            written: 0,
            limits: Limits {
                messages: limits.messages.max(1),
                bytes: limits.bytes.max(1),
                slow_after: limits.slow_after,
            },
            policy,
            progress,
            missed: 0,
            full_since: None,
            send_queue: None,
        }
    }

    /// Queues `bytes` unless the queue is full: then the message is missed, the queue is full
    /// since `now` unless it already was, and the owner should judge the member.
    pub fn push(&mut self, bytes: &Bytes, now: Instant) -> Pushed {
        let fits = match self.progress {
            Progress::Exact => self.fits(bytes.len()),
            Progress::AtTurns => self.fits_waiting(bytes.len()),
        };
        if !fits {
            self.full_since.get_or_insert(now);
            self.missed += 1;
            return Pushed::Dropped;
        }
        self.tell_missed();
        self.wait(bytes.clone());
        Pushed::Queued
    }

    /// Moves waiting lines into `batch` until it holds at least `max` bytes or nothing waits; they
    /// count against the queue until [`wrote`](Self::wrote) says they are out. Returns whether it
    /// moved anything.
    #[must_use = "true means `batch` holds lines to write"]
    pub fn take_into(&mut self, batch: &mut Vec<u8>, max: usize) -> bool {
        let before = batch.len();
        while batch.len() < max {
            if self.waiting.is_empty() && self.fits(0) {
                // Caught up: the notice of what was missed goes where the gap is.
                self.tell_missed();
            }
            let Some(line) = self.waiting.pop_front() else {
                break;
            };
            self.waiting_bytes -= line.len();
            self.taken += line.len() as u64;
            self.taken_ends.push_back(self.taken);
            batch.extend_from_slice(&line);
        }
        batch.len() > before
    }

    /// A turn's take ([`Progress::AtTurns`]): moves into `batch` the waiting lines that fit beside
    /// what is taken and unwritten, in order; a line left over means the queue is full (since `now`,
    /// unless it already was). Returns whether it moved anything.
    #[must_use = "true means `batch` holds lines to write"]
    pub fn take_fitting(&mut self, batch: &mut Vec<u8>, now: Instant) -> bool {
        let before = batch.len();
        loop {
            if self.waiting.is_empty() && self.fits_taken(0) {
                self.tell_missed();
            }
            let Some(line) = self.waiting.front() else {
                break;
            };
            if !self.fits_taken(line.len()) {
                self.full_since.get_or_insert(now);
                break;
            }
            let line = self.waiting.pop_front().expect("a front line");
            self.waiting_bytes -= line.len();
            self.taken += line.len() as u64;
            self.taken_ends.push_back(self.taken);
            batch.extend_from_slice(&line);
        }
        batch.len() > before
    }

    /// Lines wait that did not fit at the last take, or a notice is owed: the owner should take
    /// again once its output is written.
    pub fn held_back(&self) -> bool {
        !self.waiting.is_empty() || self.missed > 0
    }

    /// The writer wrote `n` more bytes of what it took: progress, when `n > 0`.
    pub fn wrote(&mut self, n: usize) {
        if n == 0 {
            return;
        }
        self.written = (self.written + n as u64).min(self.taken);
        while self
            .taken_ends
            .front()
            .is_some_and(|&end| end <= self.written)
        {
            self.taken_ends.pop_front();
        }
        self.progressed();
    }

    /// The owner looked at the connection's socket: it holds `queued` bytes the peer has not
    /// taken (its send queue). A change since the last look is progress; the first look after a
    /// write only sets the mark.
    pub fn saw_send_queue(&mut self, queued: usize) {
        let moved = self.send_queue.is_some_and(|last| last != queued);
        if moved {
            self.full_since = None;
        }
        self.send_queue = Some(queued);
    }

    /// Whether the queue has been full since its last progress: the owner should look at the
    /// socket before judging.
    pub fn is_full(&self) -> bool {
        self.full_since.is_some()
    }

    fn progressed(&mut self) {
        self.full_since = None;
        self.send_queue = None;
    }

    /// Of everything taken, `unwritten` bytes are not written yet (the event loop's view): the
    /// rest was written.
    pub fn unwritten(&mut self, unwritten: usize) {
        let written = self.taken.saturating_sub(unwritten as u64);
        if written > self.written {
            self.wrote((written - self.written) as usize);
        }
    }

    /// The policy for a member judged too slow.
    pub fn policy(&self) -> Overflow {
        self.policy
    }

    /// Whether the member is stuck: its queue full for `slow_after` without progress (writes, or
    /// the send queue moving between looks).
    pub fn stuck(&self, now: Instant) -> bool {
        self.full_since
            .is_some_and(|since| now.saturating_duration_since(since) >= self.limits.slow_after)
    }

    /// Messages in the queue: waiting, or taken and not written.
    pub fn len(&self) -> usize {
        self.waiting.len() + self.taken_ends.len()
    }

    /// Bytes in the queue: waiting, or taken and not written.
    pub fn bytes(&self) -> usize {
        self.waiting_bytes + (self.taken - self.written) as usize
    }

    /// Nothing queued, nothing taken unwritten, no notice owed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0 && self.missed == 0
    }

    /// Forgets everything queued (the member is being disconnected).
    pub fn clear(&mut self) {
        self.waiting.clear();
        self.waiting_bytes = 0;
        self.missed = 0;
    }

    /// Whether a message of `len` bytes fits: an empty queue takes anything.
    fn fits(&self, len: usize) -> bool {
        let (count, bytes) = (self.len(), self.bytes());
        count == 0 || (count < self.limits.messages && bytes + len <= self.limits.bytes)
    }

    /// Whether a line of `len` bytes may be taken beside what is taken and unwritten.
    fn fits_taken(&self, len: usize) -> bool {
        let count = self.taken_ends.len();
        let unwritten = (self.taken - self.written) as usize;
        count == 0 || (count < self.limits.messages && unwritten + len <= self.limits.bytes)
    }

    /// Whether a message of `len` bytes fits beside what waits (what is taken aside).
    fn fits_waiting(&self, len: usize) -> bool {
        let count = self.waiting.len();
        count == 0
            || (count < self.limits.messages && self.waiting_bytes + len <= self.limits.bytes)
    }

    fn wait(&mut self, line: Bytes) {
        self.waiting_bytes += line.len();
        self.waiting.push_back(line);
    }

    /// Queues the missed-messages notice, if messages were missed.
    fn tell_missed(&mut self) {
        if self.missed > 0 {
            self.wait(format::missed(self.missed));
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

    fn limits(messages: usize, bytes: usize, slow_after_ms: u64) -> Limits {
        Limits {
            messages,
            bytes,
            slow_after: Duration::from_millis(slow_after_ms),
        }
    }

    /// Takes and writes everything: what a reader that keeps up gets.
    fn drain(outbox: &mut Outbox) -> Vec<String> {
        let mut all = Vec::new();
        let mut batch = Vec::new();
        while outbox.take_into(&mut batch, usize::MAX) {
            outbox.wrote(batch.len());
            all.append(&mut batch);
        }
        String::from_utf8(all)
            .unwrap()
            .split_inclusive('\n')
            .map(str::to_string)
            .collect()
    }

    fn push_all(outbox: &mut Outbox, texts: &[&str], now: Instant) -> Vec<Pushed> {
        texts
            .iter()
            .map(|text| outbox.push(&line(text), now))
            .collect()
    }

    #[test]
    fn queues_in_order_up_to_the_message_bound() {
        let now = Instant::now();
        let mut outbox = Outbox::new(limits(2, 1000, 0), Overflow::Disconnect);
        let (queued, dropped) = (Pushed::Queued, Pushed::Dropped);
        assert_eq!(
            push_all(&mut outbox, &["a", "b", "c"], now),
            [queued, queued, dropped]
        );
        assert_eq!(outbox.len(), 2);
        assert_eq!(
            drain(&mut outbox),
            [
                "a\n",
                "b\n",
                "*** you missed 1 message: your connection did not keep up\n"
            ]
        );
        assert!(outbox.is_empty());
    }

    #[test]
    fn the_byte_bound_counts_too_and_an_empty_queue_takes_anything() {
        let now = Instant::now();
        let mut outbox = Outbox::new(limits(100, 10, 1000), Overflow::Drop);
        assert_eq!(outbox.push(&line("0123456789abc"), now), Pushed::Queued);
        assert_eq!(outbox.push(&line("x"), now), Pushed::Dropped);
        assert_eq!(
            drain(&mut outbox),
            [
                "0123456789abc\n",
                "*** you missed 1 message: your connection did not keep up\n"
            ]
        );
        let (queued, dropped) = (Pushed::Queued, Pushed::Dropped);
        assert_eq!(
            push_all(&mut outbox, &["1234", "5678", "9"], now),
            [queued, queued, dropped]
        );
        assert_eq!(outbox.bytes(), 10);
    }

    #[test]
    fn taken_lines_count_until_written() {
        let now = Instant::now();
        let mut outbox = Outbox::new(limits(2, 1000, 1000), Overflow::Drop);
        let mut batch = Vec::new();
        assert_eq!(push_all(&mut outbox, &["a", "b"], now), [Pushed::Queued; 2]);
        assert!(outbox.take_into(&mut batch, usize::MAX));
        assert_eq!((outbox.len(), outbox.bytes()), (2, 4));
        assert_eq!(outbox.push(&line("c"), now), Pushed::Dropped);
        outbox.wrote(3); // "a\n" and half of "b\n"
        assert_eq!((outbox.len(), outbox.bytes()), (1, 1));
        assert_eq!(outbox.push(&line("d"), now), Pushed::Queued);
        // The event loop's way of saying the same: 0 bytes of what it took are unwritten.
        outbox.unwritten(0);
        assert_eq!(
            drain(&mut outbox),
            [
                "*** you missed 1 message: your connection did not keep up\n",
                "d\n"
            ]
        );
    }

    #[test]
    fn misses_are_told_at_the_gap() {
        let now = Instant::now();
        let mut outbox = Outbox::new(limits(2, 1000, 1000), Overflow::Drop);
        let (queued, dropped) = (Pushed::Queued, Pushed::Dropped);
        let pushed = push_all(&mut outbox, &["a", "b", "c", "d"], now);
        assert_eq!(pushed, [queued, queued, dropped, dropped]);
        let mut batch = Vec::new();
        assert!(outbox.take_into(&mut batch, 1));
        outbox.wrote(2);
        assert_eq!(push_all(&mut outbox, &["e", "f"], now), [queued, dropped]);
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
    fn a_member_is_stuck_only_after_slow_after_without_progress() {
        let start = Instant::now();
        let at = |ms| start + Duration::from_millis(ms);
        let mut outbox = Outbox::new(limits(1, 1000, 100), Overflow::Disconnect);
        assert_eq!(outbox.push(&line("a"), at(0)), Pushed::Queued);
        // Full from 10 ms on; still inside the grace at 109 ms: missed, not stuck.
        assert_eq!(outbox.push(&line("b"), at(10)), Pushed::Dropped);
        assert_eq!(outbox.push(&line("c"), at(109)), Pushed::Dropped);
        assert!(!outbox.stuck(at(109)));
        // A byte written restarts the clock.
        let mut batch = Vec::new();
        assert!(outbox.take_into(&mut batch, usize::MAX));
        outbox.wrote(1);
        assert_eq!(outbox.push(&line("d"), at(150)), Pushed::Dropped);
        assert_eq!(outbox.push(&line("e"), at(249)), Pushed::Dropped);
        assert!(!outbox.stuck(at(249)));
        assert_eq!(outbox.push(&line("f"), at(250)), Pushed::Dropped);
        assert!(outbox.stuck(at(250)));
    }

    #[test]
    fn slow_after_zero_is_stuck_at_the_first_message_that_does_not_fit() {
        let now = Instant::now();
        let mut outbox = Outbox::new(limits(1, 1000, 0), Overflow::Disconnect);
        assert!(!outbox.is_full() && !outbox.stuck(now));
        assert_eq!(
            push_all(&mut outbox, &["a", "b"], now),
            [Pushed::Queued, Pushed::Dropped]
        );
        // The owner's first look at the socket only sets the mark: nothing to compare with.
        assert!(outbox.is_full());
        outbox.saw_send_queue(4096);
        assert!(outbox.stuck(now));
    }

    /// A writer blocked on a full send buffer writes nothing for seconds while its peer reads on:
    /// the socket's send queue moving is progress, one standing still is not.
    #[test]
    fn a_moving_send_queue_is_progress_while_nothing_is_written() {
        let start = Instant::now();
        let at = |ms| start + Duration::from_millis(ms);
        let mut outbox = Outbox::new(limits(1, 1000, 100), Overflow::Disconnect);
        assert_eq!(outbox.push(&line("a"), at(0)), Pushed::Queued);
        let mut batch = Vec::new();
        assert!(outbox.take_into(&mut batch, usize::MAX)); // the writer blocks on "a\n"
        assert_eq!(outbox.push(&line("b"), at(10)), Pushed::Dropped);
        outbox.saw_send_queue(4_000_000);
        // The peer takes 20 kB every 50 ms: never stuck, however long the write blocks.
        for (step, ms) in (60..2000).step_by(50).enumerate() {
            assert_eq!(outbox.push(&line("c"), at(ms)), Pushed::Dropped);
            outbox.saw_send_queue(4_000_000 - 20_000 * (step + 1));
            assert!(!outbox.stuck(at(ms)), "at {ms} ms");
        }
        // Then the peer stops: the queue stands still, and slow_after later the member is stuck.
        assert_eq!(outbox.push(&line("d"), at(2000)), Pushed::Dropped);
        outbox.saw_send_queue(4_000_000 - 20_000 * 39);
        assert!(!outbox.stuck(at(2099)));
        outbox.saw_send_queue(4_000_000 - 20_000 * 39);
        assert!(outbox.stuck(at(2100)));
        // A write forgets the mark: the next look compares with nothing.
        outbox.wrote(2);
        assert!(!outbox.is_full());
        assert_eq!(outbox.push(&line("e"), at(2200)), Pushed::Queued);
        assert_eq!(outbox.push(&line("f"), at(2200)), Pushed::Dropped);
        outbox.saw_send_queue(0);
        assert!(outbox.stuck(at(2300)));
    }

    #[test]
    fn a_push_never_judges_whatever_the_policy() {
        let start = Instant::now();
        for policy in [Overflow::Drop, Overflow::Disconnect] {
            let mut outbox = Outbox::new(limits(1, 1000, 0), policy);
            for (ms, want) in [
                (0, Pushed::Queued),
                (10, Pushed::Dropped),
                (1000, Pushed::Dropped),
            ] {
                let pushed = outbox.push(&line("x"), start + Duration::from_millis(ms));
                assert_eq!(pushed, want, "{policy:?}");
            }
            assert!(outbox.stuck(start + Duration::from_secs(1)), "{policy:?}");
        }
    }

    #[test]
    fn at_turns_a_push_checks_what_waits_and_the_turn_what_fits() {
        let start = Instant::now();
        let at = |ms| start + Duration::from_millis(ms);
        let mut outbox = Outbox::with_progress(
            limits(2, 1000, 100),
            Overflow::Disconnect,
            Progress::AtTurns,
        );
        let mut batch = Vec::new();
        assert_eq!(
            push_all(&mut outbox, &["a", "b"], at(0)),
            [Pushed::Queued; 2]
        );
        assert!(outbox.take_fitting(&mut batch, at(0)));
        // Two unwritten, as far as the outbox knows: pushes still wait, then one is missed.
        assert_eq!(
            push_all(&mut outbox, &["c", "d", "e"], at(0)),
            [Pushed::Queued, Pushed::Queued, Pushed::Dropped]
        );
        // The turn learns that "a\n" went out: "c" fits, "d" waits, the queue is full from now.
        outbox.unwritten(2);
        assert!(outbox.take_fitting(&mut batch, at(10)));
        assert_eq!(batch, b"a\nb\nc\n");
        assert!(outbox.held_back() && !outbox.stuck(at(109)));
        assert!(outbox.stuck(at(110)), "no progress for slow_after");
        outbox.unwritten(0);
        assert!(!outbox.stuck(at(110)));
        batch.clear();
        assert!(outbox.take_fitting(&mut batch, at(110)));
        assert_eq!(
            String::from_utf8(batch).unwrap(),
            "d\n*** you missed 1 message: your connection did not keep up\n"
        );
    }

    #[test]
    fn batches_stop_near_the_limit() {
        let now = Instant::now();
        let mut outbox = Outbox::new(limits(10, 1000, 0), Overflow::Drop);
        assert_eq!(
            push_all(&mut outbox, &["aaa", "bbb", "ccc"], now),
            [Pushed::Queued; 3]
        );
        let mut batch = Vec::new();
        assert!(outbox.take_into(&mut batch, 5));
        assert_eq!(batch, b"aaa\nbbb\n");
        batch.clear();
        assert!(outbox.take_into(&mut batch, 5));
        assert_eq!(batch, b"ccc\n");
        assert!(!outbox.take_into(&mut batch, 5));
    }

    #[test]
    fn clear_forgets_everything_waiting() {
        let now = Instant::now();
        let mut outbox = Outbox::new(limits(1, 1000, 1000), Overflow::Drop);
        assert_eq!(
            push_all(&mut outbox, &["a", "b"], now),
            [Pushed::Queued, Pushed::Dropped]
        );
        outbox.clear();
        assert!(outbox.is_empty());
        assert!(!outbox.take_into(&mut Vec::new(), usize::MAX));
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
