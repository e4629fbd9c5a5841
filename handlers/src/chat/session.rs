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
//! much was written and, while the queue is full, how much the socket still holds for the peer
//! (`SessionContext::send_queue`; the reactor writes more only when the socket's buffer has freed
//! much of itself, which can take seconds for a steady but slow reader, while the socket's send
//! queue moves as the peer reads: both are the member's progress), then takes, then hears whether
//! the member is stuck; a stuck member under `disconnect` is kicked (its room told) and closed.
//!
//! **The rate.** Each read is handed to the hub only as far as the member's tokens go. When they
//! run out, the session keeps the rest of that read, pauses reading
//! (`SessionContext::pause_reading`) and asks to be woken when the next token is due
//! (`SessionContext::wake_at`); each wake hands over what the tokens allow, and once nothing is
//! left it resumes reading, and the reactor reads at once what came meanwhile. So a member that
//! sends faster than its rate is read at its rate: its bytes wait in its socket and TCP slows the
//! sender down, as under threading, where the reader thread simply stops reading. The session
//! holds at most one read (the reactor reads 64 KiB at a time); [`MAX_HELD`] bounds it anyway,
//! against a driver that would read on although the session paused.
//!
//! One thing the reactor cannot do yet, and how it shows: its close always writes what is pending
//! first, so a kicked member that never reads keeps its connection (and at most its bounded output)
//! until it goes away or the write fails, where the threaded member is shut down at once.

use std::sync::Arc;
use std::time::Instant;

use sockserv_plugin::{Session, SessionContext, SessionInfo};

use super::core::MemberId;
use super::hub::Hub;
use super::mailbox::Mailbox;
use super::outbox::Overflow;
use super::rate::TokenBucket;

/// The most input a session holds for a member over its rate. The reactor brings one read (64 KiB)
/// before it sees the pause, so this is never reached there; a driver that read on regardless
/// would see the member closed rather than its input held without bound.
pub const MAX_HELD: usize = 256 * 1024;

/// Where a session reads the time: the monotonic clock in service, a hand-moved one in tests.
pub type Clock = Arc<dyn Fn() -> Instant + Send + Sync>;

/// One member, driven by the reactor.
pub struct ChatSession {
    hub: Arc<Hub>,
    id: MemberId,
    mailbox: Arc<Mailbox>,
    bucket: TokenBucket,
    clock: Clock,
    /// Input not yet handed to the hub (the member is over its rate), oldest first; reading is
    /// paused while there is any.
    held: Vec<u8>,
    /// The peer's end of stream came while input was held: leave once it is handed over.
    eof: bool,
}

impl std::fmt::Debug for ChatSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatSession")
            .field("id", &self.id)
            .field("held", &self.held.len())
            .finish_non_exhaustive()
    }
}

impl ChatSession {
    /// Joins the chat: the greeting (or the refusal of a full chat) waits in the mailbox.
    pub fn new(hub: Arc<Hub>, info: &SessionInfo<'_>) -> ChatSession {
        ChatSession::with_clock(hub, info, Arc::new(Instant::now))
    }

    /// [`new`](Self::new), reading the time from `clock`.
    pub fn with_clock(hub: Arc<Hub>, info: &SessionInfo<'_>, clock: Clock) -> ChatSession {
        let nick = hub.certificate_nick(info.tls);
        let (id, mailbox) = hub.join_session(info.peer, nick, Arc::clone(&info.waker));
        ChatSession {
            bucket: hub.bucket(clock()),
            hub,
            id,
            mailbox,
            clock,
            held: Vec::new(),
            eof: false,
        }
    }

    /// Hands `bytes` to the hub as far as the member's tokens go at `now`; returns how many it
    /// took (all of them once the member has left: nobody is there to take the rest).
    fn hand_over(&mut self, bytes: &[u8], now: Instant) -> usize {
        let mut taken = 0;
        while taken < bytes.len() {
            let budget = self.bucket.available(now);
            if budget == 0 {
                break;
            }
            let read = self.hub.input(self.id, &bytes[taken..], budget);
            self.bucket.spend(read.messages);
            if !read.still_member {
                // It quit or was dropped: its mailbox is closed, and `pump` closes the connection.
                return bytes.len();
            }
            taken += read.taken;
        }
        taken
    }

    /// Hands over what is held, as far as the tokens go.
    fn feed(&mut self, now: Instant) {
        let held = std::mem::take(&mut self.held);
        let taken = self.hand_over(&held, now);
        self.held = held;
        self.held.drain(..taken);
    }

    /// After a hand-over: with input still held, reading stays paused until the next token is due;
    /// with none, the member is read again, or leaves if its peer ended its input meanwhile.
    fn settle(&mut self, now: Instant, ctx: &mut SessionContext<'_>) {
        if !self.held.is_empty() {
            ctx.pause_reading();
            ctx.wake_at(now + self.bucket.until_next(now));
        } else if std::mem::take(&mut self.eof) {
            self.hub.leave(self.id);
        } else {
            ctx.resume_reading();
        }
    }

    /// Moves the mail into the output (after telling the mailbox what was written), tells the
    /// mailbox, while its queue is full, what the socket still holds for the peer, disconnects a
    /// stuck member under `disconnect`, and closes once the mailbox is closed.
    fn pump(&mut self, ctx: &mut SessionContext<'_>) {
        let taken = self.mailbox.take(ctx.pending(), || ctx.send_queue());
        if !taken.batch.is_empty() {
            ctx.write(&taken.batch);
        }
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

    /// One read, handed over as far as the member's tokens go (the rest is held and reading
    /// paused); then this member's own mail (replies to its commands, its echo) goes out at once
    /// rather than on the next wake.
    fn on_data(&mut self, data: &[u8], ctx: &mut SessionContext<'_>) {
        let now = (self.clock)();
        if self.held.is_empty() {
            let taken = self.hand_over(data, now);
            self.held.extend_from_slice(&data[taken..]);
        } else if self.held.len() + data.len() <= MAX_HELD {
            // Read although paused: kept in order behind what is held.
            self.held.extend_from_slice(data);
            self.feed(now);
        } else {
            log::warn!(
                "{}: chat member {}: input kept coming while its reading was paused; closing it",
                ctx.server.server_name(),
                self.id
            );
            self.held.clear();
            ctx.close();
        }
        self.settle(now, ctx);
        self.pump(ctx);
    }

    /// The peer closed its side: a partial line is its last message, then it leaves; what is
    /// queued for it is still written before the close. (Its reading was not paused, or the end
    /// of stream would not have been read; should input be held all the same, it is handed over
    /// at the rate first.)
    fn on_eof(&mut self, ctx: &mut SessionContext<'_>) {
        if self.held.is_empty() {
            self.hub.leave(self.id);
        } else {
            self.eof = true;
        }
        self.pump(ctx);
    }

    /// Mail arrived, or the next token is due: hand over what is held (if any), then the mail.
    fn on_wake(&mut self, ctx: &mut SessionContext<'_>) {
        if ctx.server.is_stopping() && !self.held.is_empty() {
            // Draining: held input would be paced out over the whole drain; drop it and leave.
            self.held.clear();
            ctx.resume_reading();
        }
        if !self.held.is_empty() {
            let now = (self.clock)();
            self.feed(now);
            self.settle(now, ctx);
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
