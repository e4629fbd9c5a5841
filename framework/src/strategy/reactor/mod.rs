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
//! A session may also pause reading its own connection (backpressure on a sender it cannot keep up
//! with) and ask for a wake at a time; both live in the connection's loop: a paused connection stays
//! registered (a reset still ends it) and is read again, at once, when the session resumes, and each
//! loop keeps its connections' wake times with their time limits in one heap that bounds how long
//! `poll` sleeps — no thread per timer.
//!
//! **Handler code is isolated** (DESIGN.md, decision 8). Every call into a session — and the
//! factory's `new_session` — has its panic caught where it is made: the panic is reported through
//! `handle_error` with the server and the peer, that connection alone closes, and the loop goes on
//! with its others. Should a loop end anyway (poll fails, or a bug in the loop itself panics), it
//! closes its connections, is marked ended, and gets no more of them; with every loop ended,
//! connections are refused and the dispatcher's `failure` says why, and the server stops.
//!
//! mio over the `polling` crate: mio is the event layer under tokio, keeps epoll's edge-triggered
//! model (one wake-up per readiness change, no re-arming per event), and has a cross-thread `Waker`.

mod connection;
mod event_loop;
mod handshake;
mod slots;
mod timers;
mod tls_wire;

use std::io;
use std::sync::Arc;
use std::time::Duration;

use super::{Accepted, Dispatcher, Inline};
use crate::close::{deadline_after, FORCED_CLOSE_WAIT};
use crate::heartbeat::Heartbeat;
use crate::metrics::Refusal;
use crate::request::Shared;
use crate::transport::{Datagram, ReplyTo};
use crate::{Client, RequestFailure, ServerError};
use event_loop::{spawn_loop, LoopHandle, NewConnection};

/// Pending output beyond which a connection is not read until the peer catches up.
pub(crate) const MAX_PENDING_OUTPUT: usize = 1024 * 1024;

pub(crate) struct ReactorDispatcher {
    /// Answers datagrams in the serving thread.
    inline: Inline,
    /// The loops, in the order connections are dealt to them.
    loops: Vec<LoopHandle>,
    /// The next loop in the round robin.
    next: usize,
}

impl ReactorDispatcher {
    /// Start `loops` event loops (at least one) for the server.
    ///
    /// # Errors
    /// [`ServerError::Strategy`] when a loop cannot be started (no poll instance or thread, say at the
    /// descriptor limit); the loops started before it are stopped and joined first.
    pub fn new(
        shared: &Arc<Shared>,
        loops: usize,
        heartbeat: Option<&Heartbeat>,
    ) -> Result<Self, ServerError> {
        let spawn = |index| {
            let pulse = heartbeat.map(|h| {
                (
                    h.pulse(format!("{}-loop-{index}", shared.name)),
                    h.interval(),
                )
            });
            spawn_loop(&shared.name, index, shared.shutdown.clone(), pulse)
        };
        let loops = start_loops(loops.max(1), spawn).map_err(|source| ServerError::Strategy {
            server: shared.name.clone(),
            step: "start its event loops",
            source,
        })?;
        Ok(ReactorDispatcher {
            inline: Inline::default(),
            loops,
            next: 0,
        })
    }

    /// How many loops have ended (a poll failure, or a panic in the loop's own code): they are
    /// given no more connections.
    pub(crate) fn dead_loops(&self) -> usize {
        self.loops
            .iter()
            .filter(|event_loop| !event_loop.is_alive())
            .count()
    }
}

/// Start `count` loops with `spawn`. If one cannot be started, those already running are stopped
/// and joined before the error is returned, so none is left behind.
fn start_loops(
    count: usize,
    mut spawn: impl FnMut(usize) -> io::Result<LoopHandle>,
) -> io::Result<Vec<LoopHandle>> {
    let mut loops = Vec::new();
    for index in 0..count {
        match spawn(index) {
            Ok(event_loop) => loops.push(event_loop),
            Err(err) => {
                stop_all(loops);
                return Err(err);
            }
        }
    }
    Ok(loops)
}

/// Ask every loop to stop, then wait for each; a loop whose thread panicked is logged by name.
fn stop_all(loops: Vec<LoopHandle>) {
    for event_loop in &loops {
        event_loop.stop();
    }
    for event_loop in loops {
        if let Err(line) = event_loop.join() {
            log::error!("{line}");
        }
    }
}

impl Dispatcher for ReactorDispatcher {
    /// The next live loop in the round robin adopts the connection; with none left, it is refused
    /// through `handle_error` and closed (and `failure` stops the server).
    fn stream(&mut self, shared: &Arc<Shared>, conn: Accepted) {
        let mut connection = NewConnection {
            shared: Arc::clone(shared),
            socket: conn.socket,
            peer: conn.peer,
            ticket: conn.ticket,
            id: conn.id,
            tls: conn.tls,
        };
        for _ in 0..self.loops.len() {
            let event_loop = &self.loops[self.next % self.loops.len()];
            self.next = self.next.wrapping_add(1);
            match event_loop.adopt(connection) {
                Ok(()) => return,
                Err(refused) => connection = refused,
            }
        }
        let why = format!("all {} event loops have ended", self.loops.len());
        shared.metrics.refused(Refusal::Dispatch);
        let client = Client::connection(&connection.peer, connection.id);
        shared.report(client, &RequestFailure::Dispatch(why));
    }

    /// An event loop has ended (each wakes the serving loop as it ends, so this is seen at once):
    /// the server stops rather than serve on with part of its loops, so that a dead loop is never
    /// silent (`sockserv serve` then drains the others and exits non-zero). Until the serving loop
    /// acts on it, new connections go to the loops still running.
    fn failure(&self) -> Option<String> {
        match self.dead_loops() {
            0 => None,
            dead => Some(format!(
                "{dead} of its {} event loops ended",
                self.loops.len()
            )),
        }
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

    /// The drain, as under the blocking strategies: each loop ends every connection's input at
    /// once and lets its output go out for `drain_timeout`, then closes what is left. A loop that
    /// has not ended [`FORCED_CLOSE_WAIT`] later (a session stuck in a callback) is left behind,
    /// logged, rather than waited for without end.
    fn close(&mut self, drain_timeout: Duration) -> usize {
        let loops = std::mem::take(&mut self.loops);
        let mut forced = 0;
        let deadline = deadline_after(drain_timeout);
        for event_loop in &loops {
            event_loop.drain(deadline);
        }
        let bound = deadline_after(drain_timeout.saturating_add(FORCED_CLOSE_WAIT));
        for event_loop in loops {
            if !event_loop.wait_ended(bound) {
                log::error!("an event loop did not end after its drain: left behind");
                forced += 1;
                continue;
            }
            forced += event_loop.forced();
            if let Err(line) = event_loop.join() {
                log::error!("{line}");
            }
        }
        forced
    }
}

#[cfg(test)]
mod tests;
