//! The sync strategy: one request at a time, in the serving thread (socketserver's plain TCPServer).

use std::sync::Arc;

use socket2::Socket;
use sockserv_plugin::Address;

use super::Dispatcher;
use crate::request::{serve_datagram, serve_stream, Shared};
use crate::transport::{Datagram, ReplyTo};

pub(crate) struct SyncDispatcher;

impl Dispatcher for SyncDispatcher {
    fn stream(&mut self, shared: &Arc<Shared>, conn: Socket, peer: Address) {
        serve_stream(shared, &conn, peer);
    }

    fn datagram(
        &mut self,
        shared: &Arc<Shared>,
        socket: &Arc<Datagram>,
        packet: Vec<u8>,
        from: ReplyTo,
    ) {
        serve_datagram(shared, socket, &packet, &from);
    }

    fn close(&mut self) {}
}
