//! The pool strategy: a bounded set of worker threads, made once, fed from a bounded queue. When
//! every worker is busy, connections wait in the queue; when the queue is full too, the new
//! connection is refused — closed at once and logged — rather than left to wait without bound.
//!
//! Live connections are remembered, as under threading, so that `close` can shut them down for
//! reading and the workers finish promptly; connections still queued at close are dropped unserved.

use std::collections::HashMap;
use std::net::Shutdown as Direction;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};

use socket2::Socket;
use sockserv_plugin::Address;

use super::Dispatcher;
use crate::request::{serve_datagram, serve_stream, Shared};
use crate::transport::{Datagram, ReplyTo};
use crate::RequestFailure;

/// One unit of work for a worker.
enum Job {
    Stream(Arc<Shared>, Arc<Socket>, Address),
    Datagram(Arc<Shared>, Arc<Datagram>, Vec<u8>, ReplyTo),
}

pub(crate) struct PoolDispatcher {
    queue: Option<SyncSender<Job>>,
    workers: Vec<JoinHandle<()>>,
    state: Arc<PoolState>,
}

#[derive(Default)]
struct PoolState {
    /// Connections being served, by their descriptor number, for `close`.
    live: Mutex<HashMap<usize, Arc<Socket>>>,
    closing: AtomicBool,
}

impl PoolState {
    fn live(&self) -> MutexGuard<'_, HashMap<usize, Arc<Socket>>> {
        self.live
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl PoolDispatcher {
    pub fn new(name: &str, workers: usize, queue: usize) -> Self {
        let (sender, receiver) = sync_channel(queue);
        let receiver = Arc::new(Mutex::new(receiver));
        let state = Arc::new(PoolState::default());
        let workers = (0..workers)
            .filter_map(|index| spawn_worker(name, index, &receiver, &state))
            .collect();
        PoolDispatcher {
            queue: Some(sender),
            workers,
            state,
        }
    }

    /// Queue `job`, or refuse it when the queue is full.
    fn submit(&self, shared: &Shared, peer: &Address, job: Job) {
        let Some(queue) = &self.queue else { return };
        match queue.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                let failure =
                    RequestFailure::Dispatch("every worker is busy and the queue is full".into());
                shared.hooks.handle_error(&shared.name, peer, &failure);
            }
            Err(TrySendError::Disconnected(_)) => {
                let failure = RequestFailure::Dispatch("the pool has no workers".into());
                shared.hooks.handle_error(&shared.name, peer, &failure);
            }
        }
    }
}

fn spawn_worker(
    name: &str,
    index: usize,
    receiver: &Arc<Mutex<Receiver<Job>>>,
    state: &Arc<PoolState>,
) -> Option<JoinHandle<()>> {
    let (receiver, state) = (Arc::clone(receiver), Arc::clone(state));
    let spawned = thread::Builder::new()
        .name(format!("{name}-worker-{index}"))
        .spawn(move || work(&receiver, &state));
    match spawned {
        Ok(handle) => Some(handle),
        Err(err) => {
            log::error!("{name}: cannot start worker {index}: {err}");
            None
        }
    }
}

/// A worker: take jobs until the queue closes; once closing, drop queued jobs unserved.
fn work(receiver: &Mutex<Receiver<Job>>, state: &PoolState) {
    loop {
        let job = {
            let receiver = receiver
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            receiver.recv()
        };
        let Ok(job) = job else { return };
        if state.closing.load(Ordering::SeqCst) {
            continue;
        }
        match job {
            Job::Stream(shared, conn, peer) => {
                let key = Arc::as_ptr(&conn) as usize;
                state.live().insert(key, Arc::clone(&conn));
                if state.closing.load(Ordering::SeqCst) {
                    let _ = conn.shutdown(Direction::Read);
                }
                serve_stream(&shared, &conn, peer);
                state.live().remove(&key);
            }
            Job::Datagram(shared, socket, packet, from) => {
                serve_datagram(&shared, &socket, &packet, &from, &mut Vec::new())
            }
        }
    }
}

impl Dispatcher for PoolDispatcher {
    fn stream(&mut self, shared: &Arc<Shared>, conn: Socket, peer: Address) {
        let job = Job::Stream(Arc::clone(shared), Arc::new(conn), peer.clone());
        self.submit(shared, &peer, job);
    }

    fn datagram(
        &mut self,
        shared: &Arc<Shared>,
        socket: &Arc<Datagram>,
        packet: Vec<u8>,
        from: ReplyTo,
    ) {
        let peer = from.address();
        let job = Job::Datagram(Arc::clone(shared), Arc::clone(socket), packet, from);
        self.submit(shared, &peer, job);
    }

    fn close(&mut self) {
        self.state.closing.store(true, Ordering::SeqCst);
        for conn in self.state.live().values() {
            let _ = conn.shutdown(Direction::Read);
        }
        // Closing the queue ends each worker once it is idle.
        self.queue = None;
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
    }
}
