//! The pool strategy: a bounded set of worker threads, made once, fed from a bounded queue. When
//! every worker is busy, connections wait in the queue; when the queue is full too, the new
//! connection is refused — closed at once and logged — rather than left to wait without bound.
//!
//! Each worker is registered in `live` with the connection it is serving, so that `close` ends
//! them within the drain bound as under threading; connections still queued at close are served
//! the same way (their reads end at once), not reset.

use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use socket2::Socket;
use sockserv_plugin::Address;

use super::live::{Live, TaskId};
use super::{Accepted, Dispatcher};
use crate::limits::Ticket;
use crate::log_peer_event;
use crate::memory;
use crate::metrics::{ConnId, DatagramDrop, Refusal};
use crate::peer_log::Fields;
use crate::request::{serve_datagram, serve_stream, Shared};
use crate::transport::{Datagram, ReplyTo};
use crate::{Client, RequestFailure};

/// One unit of work for a worker.
enum Job {
    Stream(Box<StreamJob>),
    Datagram(Arc<Shared>, Arc<Datagram>, Vec<u8>, ReplyTo),
}

/// A connection waiting for a worker.
struct StreamJob {
    shared: Arc<Shared>,
    conn: Arc<Socket>,
    peer: Address,
    ticket: Ticket,
    tls: Option<Arc<rustls::ServerConfig>>,
    /// The connection's id.
    id: ConnId,
}

pub(crate) struct PoolDispatcher {
    /// The server's name, for log lines.
    server: String,
    /// How many connections may wait for a worker.
    queue_size: usize,
    queue: Option<SyncSender<Job>>,
    workers: Vec<JoinHandle<()>>,
    state: Arc<PoolState>,
}

#[derive(Default)]
struct PoolState {
    /// The workers, each with the connection it is serving.
    live: Live,
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
            server: name.to_string(),
            queue_size: queue,
            queue: Some(sender),
            workers,
            state,
        }
    }

    /// Queue `job`, or refuse it when the queue is full: a refusal like the limits' (counted,
    /// and logged at a bounded rate with its reason), since a full queue is load, not a failure.
    fn submit(&self, shared: &Shared, client: Client<'_>, job: Job) {
        let Some(queue) = &self.queue else { return };
        match queue.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                let server = &shared.name;
                let reason = if client.conn.is_some() {
                    shared.metrics.refused(Refusal::Queue);
                    Refusal::Queue.name()
                } else {
                    shared.metrics.datagram_dropped(DatagramDrop::Queue);
                    DatagramDrop::Queue.name()
                };
                log_peer_event!(
                    &Fields::of(server, client).because(reason),
                    format_args!(
                        "{server}: {}refused {}: limit: queue (every worker busy, {} \
                         waiting)",
                        client.tag(),
                        client.peer,
                        self.queue_size
                    ),
                );
            }
            Err(TrySendError::Disconnected(_)) => {
                if client.conn.is_some() {
                    shared.metrics.refused(Refusal::Dispatch);
                }
                let failure = RequestFailure::Dispatch("the pool has no workers".into());
                shared.report(client, &failure);
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
    let id = state.live.add(None);
    let spawned = thread::Builder::new()
        .name(format!("{name}-worker-{index}"))
        .spawn({
            let state = Arc::clone(&state);
            move || {
                work(&receiver, &state, id);
                state.live.remove(id);
            }
        });
    match spawned {
        Ok(handle) => Some(handle),
        Err(err) => {
            state.live.remove(id);
            log::error!("{name}: cannot start worker {index}: {err}");
            None
        }
    }
}

/// A worker: take jobs until the queue closes and is empty. Jobs still queued at close are served
/// like the ones in progress (their reads end at once, see `live`), so a waiting client gets an
/// answer or an orderly end, not a reset.
fn work(receiver: &Mutex<Receiver<Job>>, state: &PoolState, id: TaskId) {
    loop {
        let job = {
            let receiver = receiver
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            receiver.recv()
        };
        let Ok(job) = job else { return };
        match job {
            Job::Stream(job) => {
                let StreamJob {
                    shared,
                    conn,
                    peer,
                    ticket,
                    tls,
                    id: conn_id,
                } = *job;
                state.live.set(id, Some(Arc::clone(&conn)));
                serve_stream(&shared, &conn, peer, conn_id, tls);
                state.live.set(id, None);
                drop(ticket);
                memory::give_back_if_due();
            }
            Job::Datagram(shared, socket, packet, from) => {
                serve_datagram(&shared, &socket, &packet, &from, &mut Vec::new());
            }
        }
    }
}

impl Dispatcher for PoolDispatcher {
    fn stream(&mut self, shared: &Arc<Shared>, conn: Accepted) {
        let Accepted {
            socket,
            peer,
            ticket,
            tls,
            id,
        } = conn;
        let job = Job::Stream(Box::new(StreamJob {
            shared: Arc::clone(shared),
            conn: Arc::new(socket),
            peer: peer.clone(),
            ticket,
            tls,
            id,
        }));
        self.submit(shared, Client::connection(&peer, id), job);
    }

    /// Datagrams go to the workers like connections: the pool bounds the threads either way.
    fn datagram(
        &mut self,
        shared: &Arc<Shared>,
        socket: &Arc<Datagram>,
        packet: &[u8],
        from: ReplyTo,
    ) {
        let peer = from.address();
        let job = Job::Datagram(
            Arc::clone(shared),
            Arc::clone(socket),
            packet.to_vec(),
            from,
        );
        self.submit(shared, Client::datagram(&peer), job);
    }

    fn close(&mut self, drain_timeout: Duration) -> usize {
        // Closing the queue ends each worker once it is idle.
        self.queue = None;
        let forced = self.state.live.close(&self.server, drain_timeout);
        // The workers that ended are joined; one still stuck in its handler is left behind (it was
        // logged), so close never waits for it.
        for worker in self.workers.drain(..) {
            if worker.is_finished() {
                let _ = worker.join();
            }
        }
        forced
    }
}
