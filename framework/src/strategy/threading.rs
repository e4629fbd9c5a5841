//! The threading strategy: a thread per request (socketserver's ThreadingMixIn), optionally bounded.
//!
//! Live connections are remembered (shared with their thread, not duplicated) so that `close` can shut them down for
//! reading: their handlers see end-of-file, run `finish`, and the server waits for every thread to end
//! — socketserver's `block_on_close`, without hanging on a client that never hangs up.

use std::collections::HashMap;
use std::net::Shutdown as Direction;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;

use socket2::Socket;
use sockserv_plugin::Address;

use super::Dispatcher;
use crate::request::{serve_datagram, serve_stream, Shared};
use crate::transport::{Datagram, ReplyTo};
use crate::{RequestFailure, Shutdown};

pub(crate) struct ThreadingDispatcher {
    max_threads: Option<usize>,
    live: Arc<Live>,
    /// Wakes the serving loop when a thread ends while the bound is reached.
    waker: Shutdown,
}

/// The requests in flight: an id each, with the connection's duplicate (none for datagrams).
#[derive(Default)]
struct Live {
    state: Mutex<LiveState>,
    emptied: Condvar,
}

#[derive(Default)]
struct LiveState {
    next_id: u64,
    requests: HashMap<u64, Option<Arc<Socket>>>,
}

impl Live {
    fn lock(&self) -> MutexGuard<'_, LiveState> {
        // A poisoned lock only means a thread panicked while holding it; the map is still sound.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn add(&self, conn: Option<Arc<Socket>>) -> u64 {
        let mut state = self.lock();
        let id = state.next_id;
        state.next_id += 1;
        state.requests.insert(id, conn);
        id
    }

    fn remove(&self, id: u64) {
        let mut state = self.lock();
        state.requests.remove(&id);
        if state.requests.is_empty() {
            self.emptied.notify_all();
        }
    }

    fn len(&self) -> usize {
        self.lock().requests.len()
    }
}

impl ThreadingDispatcher {
    pub fn new(max_threads: Option<usize>, waker: Shutdown) -> Self {
        ThreadingDispatcher {
            max_threads,
            live: Arc::default(),
            waker,
        }
    }

    /// Start `work` on its own thread, registered in `live` until it ends.
    fn spawn(
        &self,
        shared: &Arc<Shared>,
        peer: &Address,
        conn: Option<Arc<Socket>>,
        work: impl FnOnce() + Send + 'static,
    ) {
        let id = self.live.add(conn);
        let live = Arc::clone(&self.live);
        let waker = self.max_threads.map(|_| self.waker.clone());
        let spawned = thread::Builder::new()
            .name(format!("{}-request", shared.name))
            .spawn(move || {
                work();
                live.remove(id);
                if let Some(waker) = waker {
                    waker.wake();
                }
            });
        if let Err(err) = spawned {
            self.live.remove(id);
            let failure = RequestFailure::Dispatch(format!("cannot start a thread: {err}"));
            shared.hooks.handle_error(&shared.name, peer, &failure);
        }
    }
}

impl Dispatcher for ThreadingDispatcher {
    fn has_capacity(&self) -> bool {
        self.max_threads.is_none_or(|max| self.live.len() < max)
    }

    fn stream(&mut self, shared: &Arc<Shared>, conn: Socket, peer: Address) {
        // The connection is closed when its thread drops the last Arc, after leaving `live`.
        let conn = Arc::new(conn);
        let task_conn = Arc::clone(&conn);
        let task_shared = Arc::clone(shared);
        let task_peer = peer.clone();
        self.spawn(shared, &peer, Some(conn), move || {
            serve_stream(&task_shared, &task_conn, task_peer)
        });
    }

    fn datagram(
        &mut self,
        shared: &Arc<Shared>,
        socket: &Arc<Datagram>,
        packet: Vec<u8>,
        from: ReplyTo,
    ) {
        let task_shared = Arc::clone(shared);
        let socket = Arc::clone(socket);
        self.spawn(shared, &from.address(), None, move || {
            serve_datagram(&task_shared, &socket, &packet, &from, &mut Vec::new())
        });
    }

    fn close(&mut self) {
        let mut state = self.live.lock();
        for conn in state.requests.values().flatten() {
            let _ = conn.shutdown(Direction::Read);
        }
        while !state.requests.is_empty() {
            state = self
                .live
                .emptied
                .wait(state)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
        }
    }
}
