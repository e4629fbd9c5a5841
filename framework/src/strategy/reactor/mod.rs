//! The reactor strategy: a few event loops (one per core by default), each driving many connections
//! through the handler's event-driven [`Session`](sockserv_plugin::Session) — no thread per
//! connection.
//!
//! The serving loop accepts as under every strategy and hands each connection to a loop, round
//! robin, through that loop's inbox and its mio waker. A loop reads until the socket would block,
//! gives the bytes to the session, and writes what the session queued; it watches for writability
//! only while output is pending, and stops reading a connection whose pending output passes
//! [`MAX_PENDING_OUTPUT`] until the peer has read some of it. Sessions are woken across connections
//! and loops (a chat room fanning out) through [`SessionWaker`](sockserv_plugin::SessionWaker)s that
//! queue the session's token and wake its loop.
//!
//! mio over the `polling` crate: mio is the event layer under tokio, keeps epoll's edge-triggered
//! model (one wake-up per readiness change, no re-arming per event), and has a cross-thread `Waker`.

mod connection;
mod event_loop;

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use socket2::Socket;
use sockserv_plugin::Address;

use super::{Dispatcher, Inline};
use crate::request::Shared;
use crate::transport::{Datagram, ReplyTo};
use crate::ServerError;
use event_loop::{spawn_loop, LoopHandle};

/// Pending output beyond which a connection is not read until the peer catches up.
pub(crate) const MAX_PENDING_OUTPUT: usize = 1024 * 1024;

pub(crate) struct ReactorDispatcher {
    inline: Inline,
    loops: Vec<(LoopHandle, JoinHandle<()>)>,
    next: usize,
}

impl ReactorDispatcher {
    pub fn new(shared: &Arc<Shared>, loops: usize) -> Result<Self, ServerError> {
        let loops = (0..loops.max(1))
            .map(|index| spawn_loop(&shared.name, index))
            .collect::<std::io::Result<Vec<_>>>()
            .map_err(|source| ServerError::Serve {
                server: shared.name.clone(),
                source,
            })?;
        Ok(ReactorDispatcher {
            inline: Inline::default(),
            loops,
            next: 0,
        })
    }
}

impl Dispatcher for ReactorDispatcher {
    fn stream(&mut self, shared: &Arc<Shared>, conn: Socket, peer: Address) {
        let (handle, _) = &self.loops[self.next % self.loops.len()];
        self.next = self.next.wrapping_add(1);
        handle.adopt(Arc::clone(shared), conn, peer);
    }

    /// Datagrams are answered in the serving thread: one short handler call each, no thread.
    fn datagram(
        &mut self,
        shared: &Arc<Shared>,
        socket: &Arc<Datagram>,
        packet: &[u8],
        from: ReplyTo,
    ) {
        self.inline.serve(shared, socket, packet, &from);
    }

    /// The loops close their connections at once: a session never blocks, so nothing waits.
    fn close(&mut self, _drain_timeout: Duration) {
        for (handle, _) in &self.loops {
            handle.stop();
        }
        for (_, thread) in self.loops.drain(..) {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests;
