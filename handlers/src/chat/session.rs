//! A chat member under the `reactor` strategy: no thread of its own. Its input goes to the [`Hub`]
//! from `on_data`, as the reader thread's would; its mailbox wakes it through its `SessionWaker`
//! when mail arrives, when a message finds its queue full, or when the mailbox closes, and `on_wake`
//! moves the mail into the connection's output, which the reactor writes at the member's pace.
//!
//! **The queue.** Under threading a member's queue is what its outbox holds plus the batch its
//! writer took and has not written. Here the reactor holds the output the socket has not taken yet
//! (`SessionContext::pending`), and the session moves all its mail there at every turn; the outbox
//! counts what was moved as the member's until `pending` says it is written. So `queue_messages` and
//! `queue_bytes` bound the outbox and the unwritten output together, and the reactor's output for a
//! member stays within them (plus one missed-messages notice). Each turn first tells the mailbox how
//! much was written (the member's progress), then takes, then hears whether the member is stuck;
//! a stuck member under `disconnect` is kicked (its room told) and closed.
//!
//! **The rate.** Each read is handed to the hub only as far as the member's tokens go. The reactor
//! cannot be told to stop reading a connection yet, so what a member sends beyond its rate is held
//! here, read by read, and handed over as tokens come back; the hub's [`Pacer`](super::pacer) wakes
//! the session when the next token is due. That holds at most [`MAX_HELD`] bytes (plus one read):
//! a member that outruns its rate by more is disconnected as flooding, told why. Under threading the
//! reader simply stops reading, and TCP slows the sender instead; the framework facility that would
//! do the same here (pause reading a connection until woken, and a wake at a time) is not there yet.
//!
//! One thing the reactor cannot do yet, and how it shows: its close always writes what is pending
//! first, so a kicked member that never reads keeps its connection (and at most its bounded output)
//! until it goes away or the write fails, where the threaded member is shut down at once.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use sockserv_plugin::{Session, SessionContext, SessionInfo, SessionWaker};

use super::core::MemberId;
use super::hub::Hub;
use super::mailbox::Mailbox;
use super::outbox::Overflow;
use super::rate::TokenBucket;

/// The most input a session holds for a member that is over its rate: a pasted page of thousands of
/// lines, and a quarter of what the reactor itself holds of a connection's output. A member that
/// sends more before its tokens catch up is flooding.
pub const MAX_HELD: usize = 256 * 1024;

/// One member, driven by the reactor.
pub struct ChatSession {
    hub: Arc<Hub>,
    id: MemberId,
    mailbox: Arc<Mailbox>,
    waker: Arc<dyn SessionWaker>,
    bucket: TokenBucket,
    /// Reads not yet handed to the hub (the member was over its rate), oldest first; each keeps its
    /// own boundary, which ends a raw client's message.
    held: VecDeque<Vec<u8>>,
    /// Bytes in `held`.
    held_bytes: usize,
    /// The peer closed its side while input was held: leave once it is handed over.
    eof: bool,
    /// When the pacer is already asked to wake this session.
    wake_due: Option<Instant>,
}

impl std::fmt::Debug for ChatSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatSession")
            .field("id", &self.id)
            .field("held_bytes", &self.held_bytes)
            .finish_non_exhaustive()
    }
}

impl ChatSession {
    /// Joins the chat: the greeting (or the refusal of a full chat) waits in the mailbox.
    pub fn new(hub: Arc<Hub>, info: &SessionInfo<'_>) -> ChatSession {
        let (id, mailbox) = hub.join_session(info.peer, Arc::clone(&info.waker));
        ChatSession {
            bucket: hub.bucket(),
            hub,
            id,
            mailbox,
            waker: Arc::clone(&info.waker),
            held: VecDeque::new(),
            held_bytes: 0,
            eof: false,
            wake_due: None,
        }
    }

    /// Hands held input to the hub as far as the member's tokens go; asks the pacer for a wake when
    /// some is left. Returns whether the member is still in the chat.
    fn feed(&mut self) -> bool {
        let now = Instant::now();
        while let Some(read) = self.held.front_mut() {
            let budget = self.bucket.available(now);
            if budget == 0 {
                self.wake_for_token(now);
                return true;
            }
            let taken = self.hub.input(self.id, read, budget);
            self.bucket.spend(taken.messages);
            if !taken.still_member {
                return false;
            }
            self.held_bytes -= taken.taken;
            if taken.taken == read.len() {
                self.held.pop_front();
            } else {
                read.drain(..taken.taken);
            }
        }
        if self.eof {
            self.eof = false;
            self.hub.leave(self.id);
        }
        true
    }

    fn wake_for_token(&mut self, now: Instant) {
        let at = now + self.bucket.until_next(now);
        if self.wake_due.is_some_and(|due| due <= at && due > now) {
            return;
        }
        self.wake_due = Some(at);
        self.hub.wake_at(at, Arc::clone(&self.waker));
    }

    /// Moves the mail into the output (after telling the mailbox what was written), disconnects a
    /// stuck member under `disconnect`, and closes once the mailbox is closed.
    fn pump(&mut self, ctx: &mut SessionContext<'_>) {
        let taken = self.mailbox.take(ctx.pending(), |bytes| ctx.write(bytes));
        if taken.closing.is_some() {
            ctx.close();
        } else if taken.stuck && self.hub.options().overflow == Overflow::Disconnect {
            self.hub.kick(self.id);
            ctx.close();
        } else if taken.owed {
            // The notice of what was missed goes out once the member has read what it has.
            ctx.wake_when_written();
        }
    }
}

impl Session for ChatSession {
    fn on_open(&mut self, ctx: &mut SessionContext<'_>) {
        self.pump(ctx);
    }

    /// One read, handed over as far as the member's tokens go (the rest is held); then this
    /// member's own mail (replies to its commands, its echo) goes out at once rather than on the
    /// next wake.
    fn on_data(&mut self, data: &[u8], ctx: &mut SessionContext<'_>) {
        if self.held_bytes > MAX_HELD {
            self.hub.flood(self.id);
        } else {
            self.held_bytes += data.len();
            self.held.push_back(data.to_vec());
            // Whether it is still a member needs no check here: a member that left (it quit, or
            // was dropped) has its mailbox closed, and `pump` closes the connection when it sees it.
            let _still_member = self.feed();
        }
        self.pump(ctx);
    }

    /// The peer closed its side: what it sent is handed over (at its rate), a partial line is its
    /// last message, then it leaves; what is queued for it is still written before the close.
    fn on_eof(&mut self, ctx: &mut SessionContext<'_>) {
        if self.held.is_empty() {
            self.hub.leave(self.id);
        } else {
            self.eof = true;
        }
        self.pump(ctx);
    }

    fn on_wake(&mut self, ctx: &mut SessionContext<'_>) {
        if self.wake_due.is_some_and(|due| due <= Instant::now()) {
            self.wake_due = None;
        }
        if !self.held.is_empty() {
            let _still_member = self.feed();
        }
        self.pump(ctx);
    }

    /// However the connection ended, the member leaves (a second leave does nothing).
    fn on_close(&mut self) {
        self.hub.leave(self.id);
    }
}

#[cfg(test)]
mod tests;
