//! The sync strategy: one request at a time, in the serving thread (socketserver's plain TCPServer).
//! Unlike socketserver, a shutdown ends the reads of the request in progress, so it is prompt even
//! while a client keeps its connection open, and closes its connection after the server's
//! `drain_timeout`, so a handler blocked writing to a peer that never reads returns too (see
//! `Shutdown`).

use std::sync::Arc;
use std::time::Duration;

use super::{Accepted, Dispatcher, Inline};
use crate::memory;
use crate::request::{serve_stream, Shared};
use crate::transport::{Datagram, ReplyTo};

#[derive(Default)]
pub(crate) struct SyncDispatcher {
    inline: Inline,
}

impl Dispatcher for SyncDispatcher {
    fn stream(&mut self, shared: &Arc<Shared>, conn: Accepted) {
        let Accepted {
            socket,
            peer,
            ticket,
            tls,
            id,
        } = conn;
        let socket = Arc::new(socket);
        shared.shutdown.set_in_loop(Some(Arc::clone(&socket)));
        serve_stream(shared, &socket, peer, id, tls);
        shared.shutdown.set_in_loop(None);
        drop(ticket);
        memory::give_back_if_due();
    }

    fn datagram(
        &mut self,
        shared: &Arc<Shared>,
        socket: &Arc<Datagram>,
        packet: &[u8],
        from: ReplyTo,
    ) {
        self.inline.serve(shared, socket, packet, &from);
    }

    /// Nothing is in flight by the time the loop can close: requests run in the loop's own thread.
    fn close(&mut self, _drain_timeout: Duration) -> usize {
        0
    }
}
