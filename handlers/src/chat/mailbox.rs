//! A member's [`Outbox`] shared between threads: whoever delivers pushes without ever waiting on the
//! member's socket, the member's writer thread sleeps until there is mail, and the member's
//! supervising thread sleeps until a verdict is due or the mailbox closes.
//!
//! Under the reactor there are no such threads: the mailbox holds the member's [`SessionWaker`],
//! wakes it when mail arrives, when a message finds its queue full, or when the mailbox closes, and
//! the session [`take`](Mailbox::take)s its mail without ever waiting.
//!
//! **Who judges a member slow.** Not the push: it runs on another member's thread and cannot see
//! this member's socket, and what the writer reported can be seconds stale while the writer is
//! blocked on a full send buffer its peer is steadily emptying (see [`outbox`](super::outbox)).
//! A push that finds the queue full only misses the message and calls the member's owner: the
//! supervising thread ([`Mailbox::verdict_due`], then [`Mailbox::judge`] with the socket's send
//! queue) or the session, whose next [`take`](Mailbox::take) first learns how much the loop wrote
//! and what the socket still holds, then judges ([`Taken::stuck`]). So a member whose peer was
//! taking bytes all along is never judged on stale news, under either.

use std::fmt;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use sockserv_plugin::SessionWaker;

use super::format::Bytes;
use super::outbox::{Outbox, Overflow, Pushed};

/// How a mailbox closes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closing {
    /// Write what is queued, then stop (the member quit, or its peer closed).
    Drain,
    /// Stop now and forget what is queued (the member overflowed, or its connection failed).
    Abort,
}

/// The outbox and the state of the threads around it.
#[derive(Debug)]
struct Post {
    outbox: Outbox,
    closing: Option<Closing>,
    writer_done: bool,
    /// A message found the queue full under `disconnect`: the supervisor should judge the member.
    verdict_due: bool,
}

/// What a session's [`Mailbox::take`] did.
#[must_use = "the batch is to be written; closed means: close the connection; stuck means: apply \
              the overflow policy"]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Taken {
    /// The lines handed to the session, to write to its connection.
    pub batch: Vec<u8>,
    /// The mailbox is closed: after an `Abort` nothing was taken, after a `Drain` everything was.
    pub closing: Option<Closing>,
    /// The member is stuck (its queue full for `slow_after` without progress) and the policy is
    /// [`Overflow::Disconnect`]: disconnect it.
    pub stuck: bool,
    /// Lines wait that did not fit, or a missed-messages notice is owed: look again once the output
    /// is written.
    pub owed: bool,
}

/// One member's mailbox.
#[derive(Debug)]
pub struct Mailbox {
    post: Mutex<Post>,
    /// Wakes the writer: mail arrived, or the mailbox closed.
    mail: Condvar,
    /// Wakes the supervisor's last wait and a pausing reader: the mailbox closed, or the writer
    /// finished.
    closed: Condvar,
    /// Wakes the supervisor's watch: a verdict is due, or the mailbox closed.
    watch: Condvar,
    /// Wakes the member's session under the reactor, for the same reasons as `mail`.
    waker: Option<Waker>,
}

/// A session's waker, which has no `Debug` of its own.
struct Waker(Arc<dyn SessionWaker>);

impl fmt::Debug for Waker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionWaker")
    }
}

impl Mailbox {
    /// A mailbox for a writer thread.
    pub fn new(outbox: Outbox) -> Mailbox {
        Mailbox {
            post: Mutex::new(Post {
                outbox,
                closing: None,
                writer_done: false,
                verdict_due: false,
            }),
            mail: Condvar::new(),
            closed: Condvar::new(),
            watch: Condvar::new(),
            waker: None,
        }
    }

    /// A mailbox for a session, which `waker` wakes; its outbox should learn of progress
    /// [`AtTurns`](super::outbox::Progress::AtTurns).
    pub fn with_waker(outbox: Outbox, waker: Arc<dyn SessionWaker>) -> Mailbox {
        Mailbox {
            waker: Some(Waker(waker)),
            ..Mailbox::new(outbox)
        }
    }

    fn wake_session(&self) {
        if let Some(Waker(waker)) = &self.waker {
            waker.wake();
        }
    }

    /// Queues `bytes` for the writer; never waits for it. Says what became of them: a closed
    /// mailbox takes nothing ([`Pushed::Closed`]), a full one misses them ([`Pushed::Dropped`]) and
    /// calls the owner to judge the member (the supervisor under `disconnect`; the session always).
    pub fn push(&self, bytes: &Bytes) -> Pushed {
        let mut post = self.lock();
        if post.closing.is_some() {
            return Pushed::Closed;
        }
        let pushed = post.outbox.push(bytes, Instant::now());
        let verdict = pushed == Pushed::Dropped && post.outbox.policy() == Overflow::Disconnect;
        post.verdict_due |= verdict;
        drop(post);
        if pushed == Pushed::Queued {
            self.mail.notify_one();
        }
        if verdict {
            self.watch.notify_one();
        }
        self.wake_session();
        pushed
    }

    /// The session's turn, which never waits: `unwritten` bytes of what it took before are still in
    /// its connection's output (the rest was written: progress); hands `write` what fits beside
    /// them (everything when draining, nothing once aborted); then, if the queue is full, asks
    /// `send_queue` what the socket holds that the peer has not taken (a change since the last
    /// look is progress too; the look that finds the queue newly full sets the mark), and judges
    /// the member. `send_queue` is asked under the mailbox's lock: it must not wait (an `ioctl`
    /// on the socket does not).
    pub fn take(&self, unwritten: usize, send_queue: impl FnOnce() -> Option<usize>) -> Taken {
        let mut post = self.lock();
        let now = Instant::now();
        post.outbox.unwritten(unwritten);
        let mut batch = Vec::new();
        match post.closing {
            Some(Closing::Abort) => {}
            Some(Closing::Drain) => while post.outbox.take_into(&mut batch, usize::MAX) {},
            None => {
                let _moved = post.outbox.take_fitting(&mut batch, now);
            }
        }
        if post.closing.is_none() && post.outbox.is_full() {
            if let Some(queued) = send_queue() {
                post.outbox.saw_send_queue(queued);
            }
        }
        let stuck = post.closing.is_none()
            && post.outbox.policy() == Overflow::Disconnect
            && post.outbox.stuck(now);
        let (closing, owed) = (post.closing, post.outbox.held_back());
        Taken {
            batch,
            closing,
            stuck,
            owed,
        }
    }

    /// The writer wrote `n` bytes of its last batch: progress.
    pub fn wrote(&self, n: usize) {
        self.lock().outbox.wrote(n);
    }

    /// The supervisor's watch: waits until a message finds the queue full under `disconnect` (a
    /// verdict is due: returns true) or the mailbox closes (returns false).
    #[must_use = "true means: judge the member now"]
    pub fn verdict_due(&self) -> bool {
        let mut post = self.lock();
        loop {
            if post.closing.is_some() {
                return false;
            }
            if std::mem::take(&mut post.verdict_due) {
                return true;
            }
            post = self
                .watch
                .wait(post)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// The supervisor's verdict: the member's socket holds `send_queue` bytes its peer has not
    /// taken, if the system says (a change since the last look is progress); returns whether the
    /// member is stuck under [`Overflow::Disconnect`], so that it must be disconnected.
    #[must_use = "true means: disconnect the member"]
    pub fn judge(&self, send_queue: Option<usize>) -> bool {
        let mut post = self.lock();
        if let Some(queued) = send_queue {
            post.outbox.saw_send_queue(queued);
        }
        post.closing.is_none()
            && post.outbox.policy() == Overflow::Disconnect
            && post.outbox.stuck(Instant::now())
    }

    /// The reader's pause while its member is over its rate: waits up to `limit`, less if the
    /// mailbox closes. Returns whether it is closed (the reader stops then).
    #[must_use = "true means the mailbox closed: stop reading"]
    pub fn pause(&self, limit: Duration) -> bool {
        let post = self.lock();
        let (post, _) = self
            .closed
            .wait_timeout_while(post, limit, |post| post.closing.is_none())
            .unwrap_or_else(PoisonError::into_inner);
        post.closing.is_some()
    }

    /// Closes the mailbox; an `Abort` overrides a `Drain` but not the other way round.
    pub fn close(&self, how: Closing) {
        let mut post = self.lock();
        if post.closing == Some(Closing::Abort) {
            return;
        }
        post.closing = Some(how);
        if how == Closing::Abort {
            post.outbox.clear();
        }
        drop(post);
        self.mail.notify_all();
        self.closed.notify_all();
        self.watch.notify_all();
        self.wake_session();
    }

    /// The writer's wait: fills `batch` with up to about `max` bytes once there is mail, and returns
    /// true; returns false once the mailbox is closed and (for a drain) empty.
    #[must_use = "false means the mailbox is closed: the writer stops"]
    pub fn next_batch(&self, batch: &mut Vec<u8>, max: usize) -> bool {
        let mut post = self.lock();
        loop {
            if post.closing == Some(Closing::Abort) {
                return false;
            }
            if post.outbox.take_into(batch, max) {
                return true;
            }
            if post.closing == Some(Closing::Drain) {
                return false;
            }
            post = self.mail.wait(post).unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// The writer has stopped, for whatever reason: a mailbox still open is aborted, since nothing
    /// will write its mail any more.
    pub fn writer_finished(&self) {
        let mut post = self.lock();
        post.writer_done = true;
        if post.closing.is_none() {
            post.closing = Some(Closing::Abort);
            post.outbox.clear();
        }
        drop(post);
        self.closed.notify_all();
        self.watch.notify_all();
    }

    /// The supervisor's wait: until the mailbox closes and then, for a drain, until the writer has
    /// written everything or `grace` has passed. Returns how it closed.
    pub fn wait_closed(&self, grace: Duration) -> Closing {
        let mut post = self.lock();
        let how = loop {
            match post.closing {
                Some(how) => break how,
                None => {
                    post = self
                        .closed
                        .wait(post)
                        .unwrap_or_else(PoisonError::into_inner)
                }
            }
        };
        let deadline = Instant::now() + grace;
        while how == Closing::Drain && !post.writer_done {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            post = self
                .closed
                .wait_timeout(post, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        how
    }

    /// The lock, even after a panic elsewhere: the post's state stays consistent at every step.
    fn lock(&self) -> MutexGuard<'_, Post> {
        self.post.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::outbox::{Limits, Progress};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::thread;

    fn bytes(text: &str) -> Bytes {
        text.as_bytes().into()
    }

    /// An outbox of `messages`, judged at once (`slow_after = 0`).
    fn outbox(messages: usize, policy: Overflow) -> Outbox {
        let limits = Limits {
            messages,
            bytes: 1 << 20,
            slow_after: Duration::ZERO,
        };
        Outbox::new(limits, policy)
    }

    #[derive(Default)]
    struct Wakes(AtomicUsize);

    impl SessionWaker for Wakes {
        fn wake(&self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn the_writer_gets_the_mail_then_the_drain_ends_it() {
        let mailbox = Arc::new(Mailbox::new(outbox(4, Overflow::Disconnect)));
        let writer = {
            let mailbox = Arc::clone(&mailbox);
            thread::spawn(move || {
                let mut got = Vec::new();
                while mailbox.next_batch(&mut got, 1 << 16) {}
                mailbox.writer_finished();
                got
            })
        };
        assert_eq!(mailbox.push(&bytes("a\n")), Pushed::Queued);
        assert_eq!(mailbox.push(&bytes("b\n")), Pushed::Queued);
        mailbox.close(Closing::Drain);
        assert_eq!(mailbox.wait_closed(Duration::from_secs(10)), Closing::Drain);
        assert_eq!(writer.join().unwrap(), b"a\nb\n");
    }

    #[test]
    fn abort_forgets_the_mail_and_outranks_drain() {
        let mailbox = Mailbox::new(outbox(4, Overflow::Disconnect));
        assert_eq!(mailbox.push(&bytes("a\n")), Pushed::Queued);
        mailbox.close(Closing::Abort);
        mailbox.close(Closing::Drain);
        let mut batch = Vec::new();
        assert!(!mailbox.next_batch(&mut batch, 100));
        assert!(batch.is_empty());
        assert_eq!(mailbox.wait_closed(Duration::ZERO), Closing::Abort);
    }

    #[test]
    fn a_full_mailbox_misses_without_waiting_and_calls_the_supervisor() {
        let mailbox = Arc::new(Mailbox::new(outbox(1, Overflow::Disconnect)));
        assert_eq!(mailbox.push(&bytes("a\n")), Pushed::Queued);
        assert!(!mailbox.lock().outbox.is_full());
        assert_eq!(mailbox.push(&bytes("b\n")), Pushed::Dropped);
        assert!(mailbox.lock().outbox.is_full());
        // The supervisor's watch returns at once: the socket's first look sets the mark, and with
        // no grace (slow_after = 0) the member is stuck.
        assert!(mailbox.verdict_due());
        assert!(mailbox.judge(Some(100)));
        // Nothing more is due; the watch ends when the mailbox closes.
        let closer = {
            let mailbox = Arc::clone(&mailbox);
            thread::spawn(move || mailbox.close(Closing::Abort))
        };
        assert!(!mailbox.verdict_due());
        closer.join().unwrap();
        assert!(!mailbox.judge(Some(100)), "a closed mailbox is not judged");
    }

    #[test]
    fn under_the_drop_policy_no_verdict_is_due() {
        let mailbox = Mailbox::new(outbox(1, Overflow::Drop));
        assert_eq!(mailbox.push(&bytes("a\n")), Pushed::Queued);
        assert_eq!(mailbox.push(&bytes("b\n")), Pushed::Dropped);
        assert!(!mailbox.lock().verdict_due);
        assert!(!mailbox.judge(Some(0)));
    }

    #[test]
    fn a_moving_send_queue_keeps_a_blocked_writers_member() {
        let limits = Limits {
            messages: 1,
            bytes: 1 << 20,
            slow_after: Duration::from_millis(200),
        };
        let mailbox = Mailbox::new(Outbox::new(limits, Overflow::Disconnect));
        let mut batch = Vec::new();
        assert_eq!(mailbox.push(&bytes("a\n")), Pushed::Queued);
        assert!(mailbox.next_batch(&mut batch, usize::MAX)); // and the write blocks
        let started = Instant::now();
        let mut queued = 1_000_000;
        while started.elapsed() < Duration::from_millis(600) {
            assert_eq!(mailbox.push(&bytes("b\n")), Pushed::Dropped);
            assert!(mailbox.verdict_due());
            queued -= 1000;
            assert!(!mailbox.judge(Some(queued)), "the peer is taking bytes");
            thread::sleep(Duration::from_millis(20));
        }
        // The peer stops taking: stuck once slow_after has passed with the queue standing still.
        let stopped = Instant::now();
        loop {
            assert_eq!(mailbox.push(&bytes("c\n")), Pushed::Dropped);
            assert!(mailbox.verdict_due());
            if mailbox.judge(Some(queued)) {
                break;
            }
            assert!(stopped.elapsed() < Duration::from_secs(10), "never stuck");
            thread::sleep(Duration::from_millis(20));
        }
        assert!(stopped.elapsed() >= Duration::from_millis(200));
    }

    #[test]
    fn a_closed_mailbox_says_it_queued_nothing() {
        for how in [Closing::Drain, Closing::Abort] {
            let mailbox = Mailbox::new(outbox(4, Overflow::Drop));
            mailbox.close(how);
            assert_eq!(mailbox.push(&bytes("late\n")), Pushed::Closed, "{how:?}");
            let taken = mailbox.take(0, || None);
            assert_eq!(taken.batch, b"", "nothing was queued");
        }
    }

    #[test]
    fn a_session_is_judged_on_its_take_after_its_progress_is_known() {
        let wakes = Arc::new(Wakes::default());
        let waker = Arc::clone(&wakes) as Arc<dyn SessionWaker>;
        let limits = Limits {
            messages: 1,
            bytes: 1 << 20,
            slow_after: Duration::ZERO,
        };
        let outbox = Outbox::with_progress(limits, Overflow::Disconnect, Progress::AtTurns);
        let mailbox = Mailbox::with_waker(outbox, waker);
        assert_eq!(mailbox.push(&bytes("a\n")), Pushed::Queued);
        let taken = mailbox.take(0, || None);
        assert_eq!((&taken.batch[..], taken.stuck), (&b"a\n"[..], false));
        // The queue looks full (a\n unwritten as far as it knows), yet a push waits and wakes.
        assert_eq!(mailbox.push(&bytes("b\n")), Pushed::Queued);
        assert_eq!(wakes.0.load(Ordering::SeqCst), 2);
        // The loop wrote a\n meanwhile: b fits, nobody is stuck.
        let taken = mailbox.take(0, || None);
        assert_eq!(
            (&taken.batch[..], taken.stuck, taken.owed),
            (&b"b\n"[..], false, false)
        );
        // Nothing written since, and c does not fit: stuck at once (slow_after = 0).
        assert_eq!(mailbox.push(&bytes("c\n")), Pushed::Queued);
        let taken = mailbox.take(2, || None);
        assert!(taken.batch.is_empty(), "c does not fit");
        assert!(taken.stuck && taken.owed);
    }

    #[test]
    fn a_pause_ends_early_when_the_mailbox_closes() {
        let mailbox = Arc::new(Mailbox::new(outbox(1, Overflow::Drop)));
        assert!(!mailbox.pause(Duration::from_millis(1)));
        let closer = {
            let mailbox = Arc::clone(&mailbox);
            thread::spawn(move || mailbox.close(Closing::Abort))
        };
        assert!(mailbox.pause(Duration::from_secs(10)));
        closer.join().unwrap();
    }

    #[test]
    fn a_writer_that_stops_early_aborts_the_mailbox() {
        let mailbox = Mailbox::new(outbox(1, Overflow::Disconnect));
        mailbox.writer_finished();
        assert_eq!(mailbox.wait_closed(Duration::ZERO), Closing::Abort);
    }

    #[test]
    fn a_stuck_drain_gives_up_after_the_grace() {
        let mailbox = Mailbox::new(outbox(1, Overflow::Disconnect));
        mailbox.close(Closing::Drain);
        let started = Instant::now();
        assert_eq!(
            mailbox.wait_closed(Duration::from_millis(50)),
            Closing::Drain
        );
        assert!(started.elapsed() >= Duration::from_millis(50));
    }
}
