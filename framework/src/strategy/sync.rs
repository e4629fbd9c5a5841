//! The sync strategy: one request at a time, in the serving thread (socketserver's plain TCPServer).
//! Unlike socketserver, a shutdown ends the reads of the request in progress, so it is prompt even
//! while a client keeps its connection open.

use std::sync::Arc;

use socket2::Socket;
use sockserv_plugin::Address;

use super::Dispatcher;
use crate::request::{serve_datagram, serve_stream, Shared};
use crate::transport::{Datagram, ReplyTo};

pub(crate) struct SyncDispatcher;

impl Dispatcher for SyncDispatcher {
    fn stream(&mut self, shared: &Arc<Shared>, conn: Socket, peer: Address) {
        // Shutdown from another thread (a signal, say) ends this request's reads, so a client that
        // never hangs up cannot hold the server open.
        let conn = Arc::new(conn);
        shared.shutdown.set_in_loop(Some(Arc::clone(&conn)));
        serve_stream(shared, &conn, peer);
        shared.shutdown.set_in_loop(None);
    }

    fn datagram(
        &mut self,
        shared: &Arc<Shared>,
        socket: &Arc<Datagram>,
        packet: Vec<u8>,
        from: ReplyTo,
    ) {
        serve_datagram(shared, socket, &packet, &from, &mut Vec::new());
    }

    fn close(&mut self) {}
}
