//! Strategies decide where a request runs — socketserver's mixins, as a value the server holds. The
//! serving loop accepts (or receives) and hands each request to its dispatcher; the dispatcher says when
//! it has no room for more, may give the loop one more descriptor to wait on, decides whether a
//! datagram is answered in the serving thread or elsewhere, and drains what is in flight when the
//! server closes — within the server's `drain_timeout`, then by closing the requests' sockets under
//! them (see `close`), so no close waits for ever.

#[allow(unsafe_code)]
mod forking;
mod live;
mod pool;
mod reactor;
mod sync;
mod threading;

use std::fs::File;
use std::os::fd::{BorrowedFd, RawFd};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use socket2::Socket;
use sockserv_plugin::Address;

use crate::heartbeat::Heartbeat;
use crate::limits::Ticket;
use crate::metrics::ConnId;
use crate::request::{serve_datagram, Shared};
use crate::transport::{Datagram, ReplyTo};
use crate::{ServerError, ServerSettings, Strategy};

/// A connection the serving loop accepted and admitted: its socket, its peer, and its place in the
/// server's limits, given back when this (or the ticket moved out of it) is dropped — wherever
/// the connection ends.
pub(crate) struct Accepted {
    pub socket: Socket,
    pub peer: Address,
    pub ticket: Ticket,
    /// The connection's id, in every log line about it.
    pub id: ConnId,
    /// On a server with `[server.tls]`: the TLS configuration its handshake uses, taken when it
    /// was accepted (a reload later does not change it).
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

/// Where requests run. One per server, driven by the serving loop only.
pub(crate) trait Dispatcher: Send {
    /// Whether the loop may take another request now (false while a bound is reached).
    fn has_capacity(&self) -> bool {
        true
    }

    /// An extra descriptor the loop waits on; when it is readable the loop calls `on_ready`.
    fn ready_fd(&self) -> Option<BorrowedFd<'_>> {
        None
    }

    /// Housekeeping after a wake-up (reaping children).
    fn on_ready(&mut self) {}

    /// Why this strategy can no longer serve (an event loop died), if it cannot: the serving loop
    /// checks after every wake-up and stops the server with this reason.
    fn failure(&self) -> Option<String> {
        None
    }

    /// Run one connection.
    fn stream(&mut self, shared: &Arc<Shared>, conn: Accepted);

    /// Run one datagram: in the serving thread, or handed on (a copy of `packet`) where the
    /// strategy runs datagrams elsewhere.
    fn datagram(
        &mut self,
        shared: &Arc<Shared>,
        socket: &Arc<Datagram>,
        packet: &[u8],
        from: ReplyTo,
    );

    /// Stop new work and wait for what is in flight: connections are shut down for reading, so their
    /// handlers see end-of-file and finish; after `drain_timeout` the connections still open are
    /// shut down both ways (a blocked write fails), and after a last short wait the strategy gives
    /// up on what still runs. Never waits longer than `drain_timeout` + `FORCED_CLOSE_WAIT`.
    /// Returns how many requests were still running at the end of the drain (0: a clean drain).
    fn close(&mut self, drain_timeout: Duration) -> usize;
}

/// Datagrams answered in the serving thread, one reply buffer reused from one to the next.
#[derive(Default)]
pub(crate) struct Inline {
    reply: Vec<u8>,
}

impl Inline {
    pub fn serve(&mut self, shared: &Shared, socket: &Datagram, packet: &[u8], from: &ReplyTo) {
        serve_datagram(shared, socket, packet, from, &mut self.reply);
    }
}

/// The dispatcher for the settings' strategy. `listener` is the stream listener's descriptor, which
/// forked children close; the reactor's event loops beat `heartbeat`, if given. Forking refuses to start in a multi-threaded process.
///
/// # Errors
///
/// [`ServerError::ForkWithThreads`] or [`ServerError::ThreadsUnknown`] when forking cannot prove
/// this process has one thread; [`ServerError::Strategy`] when a strategy's resources (a signalfd,
/// an event loop) cannot be made.
pub(crate) fn dispatcher(
    settings: &ServerSettings,
    shared: &Arc<Shared>,
    listener: Option<RawFd>,
    heartbeat: Option<&Heartbeat>,
) -> Result<Box<dyn Dispatcher>, ServerError> {
    let spawn = settings.spawn_per_datagram;
    Ok(match settings.strategy {
        Strategy::Sync => Box::new(sync::SyncDispatcher::default()),
        Strategy::Threading { max_threads } => Box::new(threading::ThreadingDispatcher::new(
            &shared.name,
            max_threads,
            spawn,
            shared.shutdown.clone(),
        )),
        Strategy::Pool { workers, queue } => {
            Box::new(pool::PoolDispatcher::new(&shared.name, workers, queue))
        }
        Strategy::Reactor { loops } => {
            Box::new(reactor::ReactorDispatcher::new(shared, loops, heartbeat)?)
        }
        Strategy::Forking { max_children } => Box::new(forking::ForkingDispatcher::new(
            max_children,
            spawn,
            &shared.name,
            shared.gate.limits().clone(),
            listener,
            shared.metrics,
        )?),
    })
}

/// The number of threads in this process, from /proc (Linux).
///
/// The stat file stays open once read (one per process: a forked child opens its own, since the
/// parent's names the parent), so the count can still be read when the process is out of
/// descriptors — exactly when a forking server most needs to keep forking.
///
/// # Errors
///
/// Why the count could not be read (no /proc, an unexpected format).
pub(crate) fn thread_count() -> Result<usize, String> {
    use std::os::unix::fs::FileExt;
    const STAT: &str = "/proc/self/stat";
    static OPEN: Mutex<Option<(u32, File)>> = Mutex::new(None);
    // Forks happen only in single-threaded processes, so no other thread can hold this lock then.
    let mut open = OPEN.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let pid = std::process::id();
    if open.as_ref().is_none_or(|(opened_by, _)| *opened_by != pid) {
        let file = File::open(STAT).map_err(|err| format!("cannot read {STAT}: {err}"))?;
        *open = Some((pid, file));
    }
    let (_, file) = open.as_ref().expect("opened above");
    let mut buf = [0u8; 4096];
    let len = file
        .read_at(&mut buf, 0)
        .map_err(|err| format!("cannot read {STAT}: {err}"))?;
    let stat = String::from_utf8_lossy(&buf[..len]);
    // Fields after the command name, which is in parentheses and may itself hold spaces.
    let rest = stat.rfind(')').and_then(|end| stat.get(end + 2..));
    rest.and_then(|rest| rest.split_whitespace().nth(17))
        .and_then(|field| field.parse().ok())
        .ok_or_else(|| format!("{STAT} has no thread count where expected"))
}

/// Fine to fork: this process provably has exactly one thread.
///
/// # Errors
///
/// [`ServerError::ForkWithThreads`] with the count, or [`ServerError::ThreadsUnknown`] when it
/// cannot be read: fork() is refused unless safety is proven.
pub(crate) fn require_single_thread() -> Result<(), ServerError> {
    match thread_count() {
        Ok(1) => Ok(()),
        Ok(threads) => Err(ServerError::ForkWithThreads { threads }),
        Err(reason) => Err(ServerError::ThreadsUnknown { reason }),
    }
}

/// Whether this process provably has exactly one thread: the condition for fork() to be safe.
pub fn is_single_threaded() -> bool {
    thread_count() == Ok(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_this_process_threads() {
        // The test harness's main thread plus this test's thread plus the one spawned here.
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::spawn(move || rx.recv());
        assert!(thread_count().unwrap() >= 3);
        assert!(!is_single_threaded());
        drop(tx);
        thread.join().unwrap().unwrap_err();
    }
}
