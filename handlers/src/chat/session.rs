//! A chat member under the `reactor` strategy: no thread of its own. Its input goes to the [`Hub`]
//! from `on_data`, as the reader thread's would; its mailbox wakes it through its `SessionWaker`
//! when mail arrives or the mailbox closes, and `on_wake` moves the mail into the connection's
//! output, which the reactor writes at the member's pace.
//!
//! **The queue bound.** Under threading a member's queue is its outbox: the writer thread takes one
//! batch at a time and takes the next only once the socket took the last. Here the reactor holds
//! the output the socket has not taken yet (`SessionContext::pending`), so the member's queue is its
//! outbox *plus* the messages still unwritten in that output, and `queue_messages` bounds the sum.
//! The session knows where each message it wrote ends, so `pending` tells how many are unwritten;
//! each turn moves only as many messages as there is room for. A member with mail left over after
//! that is over its bound, and the overflow policy applies right there: under `disconnect` it is
//! kicked (its room told, as when a push overflows) and closed; under `drop` what is left is missed,
//! and the "you missed N" notice goes out at the gap, ahead of the next message there is room for.
//! The outbox's own bound still holds between turns, so a burst faster than the loop overflows as
//! it would under threading. The reactor's output for a member thus stays below `queue_messages`
//! messages of at most `max_line` bytes each.
//!
//! When messages were missed and there was no room for the notice, the session asks to be woken
//! once its output is written (`SessionContext::wake_when_written`), so the notice follows the tail
//! of a burst without waiting for the next message.
//!
//! One thing the reactor cannot do yet, and how it shows: its close always writes what is pending
//! first, so a kicked member that never reads keeps its connection (and at most its bounded output)
//! until it goes away or the write fails, where the threaded member is shut down at once.

use std::collections::VecDeque;
use std::sync::Arc;

use sockserv_plugin::{Session, SessionContext, SessionInfo};

use super::core::MemberId;
use super::hub::Hub;
use super::mailbox::Mailbox;
use super::outbox::Overflow;

/// One member, driven by the reactor.
#[derive(Debug)]
pub struct ChatSession {
    hub: Arc<Hub>,
    id: MemberId,
    mailbox: Arc<Mailbox>,
    /// Where each message still unwritten ends, counted in bytes ever written by this session.
    unwritten: VecDeque<u64>,
    /// Bytes ever written by this session.
    total: u64,
}

impl ChatSession {
    /// Joins the chat: the greeting (or the refusal of a full chat) waits in the mailbox.
    pub fn new(hub: Arc<Hub>, info: &SessionInfo<'_>) -> ChatSession {
        let (id, mailbox) = hub.join_session(info.peer, Arc::clone(&info.waker));
        ChatSession {
            hub,
            id,
            mailbox,
            unwritten: VecDeque::new(),
            total: 0,
        }
    }

    /// Moves the mail there is room for into the output, applies the overflow policy to the rest,
    /// and closes once the mailbox is closed.
    fn pump(&mut self, ctx: &mut SessionContext<'_>) {
        self.forget_written(ctx.pending());
        let capacity = self.hub.options().queue_messages;
        let room = capacity.saturating_sub(self.unwritten.len());
        let (unwritten, total) = (&mut self.unwritten, &mut self.total);
        let taken = self.mailbox.take(room, |line| {
            ctx.write(line);
            *total += line.len() as u64;
            unwritten.push_back(*total);
        });
        if taken.closing.is_some() {
            ctx.close();
        } else if taken.left > 0 {
            self.overflow(ctx);
        } else if taken.owed {
            ctx.wake_when_written();
        }
    }

    /// The output holds `pending` bytes not yet written: drop the messages that are out.
    fn forget_written(&mut self, pending: usize) {
        let written = self.total.saturating_sub(pending as u64);
        while self.unwritten.front().is_some_and(|&end| end <= written) {
            self.unwritten.pop_front();
        }
    }

    fn overflow(&mut self, ctx: &mut SessionContext<'_>) {
        match self.hub.options().overflow {
            Overflow::Disconnect => {
                self.hub.kick(self.id);
                ctx.close();
            }
            Overflow::Drop => {
                self.mailbox.miss_queued();
                // The notice of what was missed goes out once the member has read what it has.
                ctx.wake_when_written();
            }
        }
    }
}

impl Session for ChatSession {
    fn on_open(&mut self, ctx: &mut SessionContext<'_>) {
        self.pump(ctx);
    }

    /// One read, as the reader thread hands it over; then this member's own mail (replies to its
    /// commands, its echo) goes out at once rather than on the next wake.
    fn on_data(&mut self, data: &[u8], ctx: &mut SessionContext<'_>) {
        // Whether it is still a member needs no check here: a member that left (it quit, or was
        // dropped) has its mailbox closed, and `pump` closes the connection when it sees that.
        let _still_member = self.hub.input(self.id, data);
        self.pump(ctx);
    }

    /// The peer closed its side: a partial line is its last message, then it leaves; what is queued
    /// for it is still written before the close.
    fn on_eof(&mut self, ctx: &mut SessionContext<'_>) {
        self.hub.leave(self.id);
        self.pump(ctx);
    }

    fn on_wake(&mut self, ctx: &mut SessionContext<'_>) {
        self.pump(ctx);
    }

    /// However the connection ended, the member leaves (a second leave does nothing).
    fn on_close(&mut self) {
        self.hub.leave(self.id);
    }
}

#[cfg(test)]
mod tests;
