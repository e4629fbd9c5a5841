//! The loop's side of TLS handshakes (see `reactor::handshake`): a slot holds the handshake
//! until it is done, watched like a connection and timed by the loop's timers; then the session
//! is made and the slot holds the connection.

use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Instant;

use mio::unix::SourceFd;
use mio::{Interest, Token};

use super::{EventLoop, Opening};
use crate::metrics::Refusal;
use crate::strategy::reactor::handshake::{Handshake, Step};
use crate::tls::handshake_timeout;
use crate::{Client, RequestFailure};

impl EventLoop {
    /// Start the handshake of a connection adopted into `slot`.
    pub(super) fn begin_handshake(
        &mut self,
        slot: usize,
        opening: Opening,
        config: Arc<rustls::ServerConfig>,
    ) {
        let Opening {
            socket,
            shared,
            peer,
            id,
            ..
        } = opening;
        let limit = handshake_timeout(shared.gate.limits());
        let made = Handshake::new(socket, config, Arc::clone(&shared), peer.clone(), id, limit);
        let handshake = match made {
            Ok(handshake) => handshake,
            Err((_, err)) => {
                shared.metrics.refused(Refusal::TlsHandshake);
                let failure = RequestFailure::Handshake(err.to_string());
                shared.report(Client::connection(&peer, id), &failure);
                return self.release(slot);
            }
        };
        let fd = handshake.socket.as_raw_fd();
        let token = Token(slot + 1);
        let registry = self.poll.registry();
        if let Err(err) = registry.register(&mut SourceFd(&fd), token, Interest::READABLE) {
            log::warn!("{}: cannot watch a connection: {err}", self.name);
            return self.release(slot);
        }
        self.slots[slot].interest = Some(Interest::READABLE);
        self.slots[slot].handshake = Some(Box::new(handshake));
        self.step_handshake(slot);
    }

    /// The handshake in `slot` may go on (its socket is ready, or it was just adopted).
    pub(super) fn step_handshake(&mut self, slot: usize) {
        let Some(handshake) = self.slots[slot].handshake.as_mut() else {
            return;
        };
        let step = handshake.advance();
        let fd = handshake.socket.as_raw_fd();
        match step {
            Step::Failed => self.remove(slot),
            Step::Done => self.promote(slot),
            Step::Wait { write } => {
                let interest = if write {
                    Interest::READABLE | Interest::WRITABLE
                } else {
                    Interest::READABLE
                };
                self.queue_timer(slot);
                let entry = &mut self.slots[slot];
                if entry.interest == Some(interest) {
                    return;
                }
                let registry = self.poll.registry();
                match registry.reregister(&mut SourceFd(&fd), Token(slot + 1), interest) {
                    Ok(()) => entry.interest = Some(interest),
                    Err(_) => self.remove(slot),
                }
            }
        }
    }

    /// The handshake in `slot` is done: make its session.
    fn promote(&mut self, slot: usize) {
        let Some(handshake) = self.slots[slot].handshake.take() else {
            return;
        };
        self.timers.cancel(slot);
        let parts = handshake.into_parts();
        let opening = Opening {
            socket: parts.socket,
            shared: parts.shared,
            peer: parts.peer,
            tls: Some((parts.tls, parts.moved)),
            registered: true,
            id: parts.id,
        };
        self.open(slot, opening);
    }

    /// The timer of a slot whose handshake is not done came due: past its deadline it ends.
    pub(super) fn handshake_timer(&mut self, slot: usize, now: Instant) {
        let Some(handshake) = self.slots[slot].handshake.as_mut() else {
            return;
        };
        if now < handshake.deadline {
            return self.queue_timer(slot);
        }
        handshake.expire();
        self.remove(slot);
    }
}
