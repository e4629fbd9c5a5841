//! The threading strategy: a thread per request (socketserver's ThreadingMixIn), optionally bounded.
//!
//! Live connections are remembered (shared with their thread, not duplicated) so that `close` can
//! end them within the drain bound (see `live`): socketserver's `block_on_close`, without hanging on
//! a client that never hangs up or never reads.
//!
//! Datagrams are answered in the serving thread unless `spawn_per_datagram` asks for socketserver's
//! thread per datagram.

use std::os::fd::BorrowedFd;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use socket2::Socket;

use super::live::Live;
use super::{Accepted, Dispatcher, Inline};
use crate::memory::{self, SettleTimer};
use crate::metrics::Refusal;
use crate::request::{serve_datagram, serve_stream, Shared};
use crate::transport::{Datagram, ReplyTo};
use crate::{Client, RequestFailure, Shutdown};

pub(crate) struct ThreadingDispatcher {
    /// The server's name, for log lines.
    server: String,
    max_threads: Option<usize>,
    /// A thread per datagram (socketserver's mixin) rather than answering in the serving thread.
    spawn_per_datagram: bool,
    inline: Inline,
    live: Arc<Live>,
    /// Wakes the serving loop when a thread ends while the bound is reached.
    waker: Shutdown,
    /// Set by a thread that gave memory back and put off by each thread that ends while it is
    /// set; the serving loop gives back once more when it fires, once the threads that were on
    /// their way out have gone (see `memory`). `None` if no timer could be made: the threads' own
    /// give-backs still happen.
    settle: Option<Arc<SettleTimer>>,
}

impl ThreadingDispatcher {
    pub fn new(
        server: &str,
        max_threads: Option<usize>,
        spawn_per_datagram: bool,
        waker: Shutdown,
    ) -> Self {
        ThreadingDispatcher {
            server: server.to_string(),
            max_threads,
            spawn_per_datagram,
            inline: Inline::default(),
            live: Arc::default(),
            waker,
            settle: SettleTimer::new()
                .inspect_err(|err| log::debug!("{server}: no memory give-back timer: {err}"))
                .ok()
                .map(Arc::new),
        }
    }

    /// Start `work` on its own thread, registered in `live` until it ends. `client`: whom it
    /// serves (a connection's, which is refused should no thread be had).
    fn spawn(
        &self,
        shared: &Arc<Shared>,
        client: Client<'_>,
        conn: Option<Arc<Socket>>,
        work: impl FnOnce() + Send + 'static,
    ) {
        let id = self.live.add(conn);
        let live = Arc::clone(&self.live);
        let waker = self.max_threads.map(|_| self.waker.clone());
        let settle = self.settle.clone();
        let spawned = thread::Builder::new()
            .name(format!("{}-request", shared.name))
            .spawn(move || {
                work();
                live.remove(id);
                if let Some(waker) = waker {
                    waker.wake();
                }
                let gave_back = memory::give_back_if_due();
                if let Some(settle) = &settle {
                    if gave_back {
                        settle.arm();
                    } else {
                        settle.extend();
                    }
                }
            });
        if let Err(err) = spawned {
            self.live.remove(id);
            if client.conn.is_some() {
                shared.metrics.refused(Refusal::Dispatch);
            }
            let failure = RequestFailure::Dispatch(format!("cannot start a thread: {err}"));
            shared.report(client, &failure);
        }
    }
}

impl Dispatcher for ThreadingDispatcher {
    fn has_capacity(&self) -> bool {
        self.max_threads.is_none_or(|max| self.live.len() < max)
    }

    fn ready_fd(&self) -> Option<BorrowedFd<'_>> {
        self.settle.as_deref().map(SettleTimer::fd)
    }

    fn on_ready(&mut self) {
        if let Some(settle) = &self.settle {
            settle.fire();
        }
    }

    fn stream(&mut self, shared: &Arc<Shared>, conn: Accepted) {
        // The connection is closed when its thread drops the last Arc, after leaving `live`.
        let Accepted {
            socket,
            peer,
            ticket,
            tls,
            id,
        } = conn;
        let socket = Arc::new(socket);
        let task_conn = Arc::clone(&socket);
        let task_shared = Arc::clone(shared);
        let task_peer = peer.clone();
        let client = Client::connection(&peer, id);
        self.spawn(shared, client, Some(socket), move || {
            serve_stream(&task_shared, &task_conn, task_peer, id, tls);
            drop(ticket);
        });
    }

    fn datagram(
        &mut self,
        shared: &Arc<Shared>,
        socket: &Arc<Datagram>,
        packet: &[u8],
        from: ReplyTo,
    ) {
        if !self.spawn_per_datagram {
            return self.inline.serve(shared, socket, packet, &from);
        }
        let task_shared = Arc::clone(shared);
        let socket = Arc::clone(socket);
        let packet = packet.to_vec();
        let peer = from.address();
        self.spawn(shared, Client::datagram(&peer), None, move || {
            serve_datagram(&task_shared, &socket, &packet, &from, &mut Vec::new());
        });
    }

    fn close(&mut self, drain_timeout: Duration) -> usize {
        self.live.close(&self.server, drain_timeout)
    }
}
