//! The shutdown handle: one small type whose `shutdown()` sets the state *and* wakes the serving loop.
//!
//! The loop sleeps in `poll(2)` on the listening socket and on the read end of a socket pair; shutdown
//! writes one byte to the other end, so the loop wakes at once instead of polling every half second as
//! socketserver does. The write is non-blocking and its result is ignored: a full pipe already holds a
//! wake-up, so `shutdown()` never blocks, from any thread or from a handler. From a signal handler,
//! use [`Shutdown::shutdown_on_signals`] instead: it only stores a flag and writes the byte, both
//! async-signal-safe, while `shutdown()` also takes a lock (below).
//!
//! The byte says why: [`SHUTDOWN_BYTE`] asks to stop, anything else only wakes. A handler running in a
//! forked child shares the socket pair but not the flag, so the serving loop also stops when it reads
//! a shutdown byte: `shutdown()` works the same under every strategy.
//!
//! Under `sync` the request runs in the serving thread itself, so the loop cannot notice a shutdown
//! until that handler returns. The handle therefore knows the connection in the loop: `shutdown()`
//! ends its reads at once, and if it is still open after the server's `drain_timeout`, shuts it down
//! both ways so that a handler blocked writing to a peer that never reads returns too. That one
//! timer is a thread started by the shutdown request, only while a sync request is in the loop.

use std::io::{self, Read, Write};
use std::net::Shutdown as Direction;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use socket2::Socket;

use crate::close::deadline_after;

/// The wake-up byte that asks the loop to stop (as opposed to a plain wake-up).
const SHUTDOWN_BYTE: u8 = b'S';
/// The wake-up byte for "look again" (capacity freed, a child exited).
const WAKE_BYTE: u8 = b'W';
/// The grace a sync server's in-loop request gets when no `drain_timeout` was set.
const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// A cloneable handle that stops a server's `serve_forever` promptly.
#[derive(Debug, Clone)]
pub struct Shutdown {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    requested: Arc<AtomicBool>,
    /// The server is closing: failures from now on come from its drain closing connections.
    closing: AtomicBool,
    /// The drain timer closed a sync server's in-loop request under it.
    forced: AtomicBool,
    wake_tx: UnixStream,
    wake_rx: UnixStream,
    in_loop: InLoop,
}

/// The connection a sync server is serving in its loop's thread, if any.
#[derive(Debug)]
struct InLoop {
    state: Mutex<InLoopState>,
    /// Signalled when the in-loop connection changes, so the drain timer stops early.
    changed: Condvar,
}

#[derive(Debug)]
struct InLoopState {
    conn: Option<Arc<Socket>>,
    /// Bumped each time a connection enters the loop, so a timer knows its own from the next.
    generation: u64,
    drain_timeout: Duration,
    /// A drain timer is running for the current generation.
    timed: bool,
}

impl Shutdown {
    /// A fresh handle, not yet requested.
    ///
    /// # Errors
    ///
    /// The socket pair that carries wake-ups could not be made (out of descriptors).
    pub fn new() -> io::Result<Self> {
        let (wake_tx, wake_rx) = UnixStream::pair()?;
        wake_tx.set_nonblocking(true)?;
        wake_rx.set_nonblocking(true)?;
        let requested = Arc::new(AtomicBool::new(false));
        let in_loop = InLoop {
            state: Mutex::new(InLoopState {
                conn: None,
                generation: 0,
                drain_timeout: DEFAULT_DRAIN_TIMEOUT,
                timed: false,
            }),
            changed: Condvar::new(),
        };
        Ok(Shutdown {
            inner: Arc::new(Inner {
                requested,
                closing: AtomicBool::new(false),
                forced: AtomicBool::new(false),
                wake_tx,
                wake_rx,
                in_loop,
            }),
        })
    }

    /// Ask the server to stop; returns at once. The server finishes the requests in flight within
    /// its `drain_timeout`. Not for signal handlers (see [`Shutdown::shutdown_on_signals`]).
    pub fn shutdown(&self) {
        self.inner.requested.store(true, Ordering::SeqCst);
        let _ = (&self.inner.wake_tx).write(&[SHUTDOWN_BYTE]);
        let mut state = self.lock_in_loop();
        self.end_in_loop(&mut state);
    }

    /// How long a sync server's in-loop request may go on after a shutdown request before its
    /// connection is closed under it. `Server::bind` sets the server's `drain_timeout`.
    pub(crate) fn set_drain_timeout(&self, drain_timeout: Duration) {
        self.lock_in_loop().drain_timeout = drain_timeout;
    }

    /// Record (or clear) the connection served in the loop's own thread, so that `shutdown` can end
    /// it. A shutdown asked for just before it was recorded still reaches it.
    pub(crate) fn set_in_loop(&self, conn: Option<Arc<Socket>>) {
        let mut state = self.lock_in_loop();
        state.generation += 1;
        state.timed = false;
        state.conn = conn;
        self.inner.in_loop.changed.notify_all();
        if self.is_requested() {
            self.end_in_loop(&mut state);
        }
    }

    /// Shut the in-loop connection down for reading, and start its drain timer once.
    fn end_in_loop(&self, state: &mut InLoopState) {
        let Some(conn) = &state.conn else { return };
        let _ = conn.shutdown(Direction::Read);
        if std::mem::replace(&mut state.timed, true) {
            return;
        }
        let (handle, generation, limit) = (self.clone(), state.generation, state.drain_timeout);
        let timer = std::thread::Builder::new()
            .name("drain-timer".into())
            .spawn(move || handle.close_in_loop_after(generation, limit));
        if let Err(err) = timer {
            // No thread to wait with: close it now rather than risk waiting for ever.
            log::warn!("cannot start the drain timer ({err}): closing the request now");
            let _ = conn.shutdown(Direction::Both);
        }
    }

    /// The drain timer: once `limit` has passed with connection `generation` still in the loop,
    /// shut it down both ways.
    fn close_in_loop_after(&self, generation: u64, limit: Duration) {
        let deadline = deadline_after(limit);
        let mut state = self.lock_in_loop();
        while state.generation == generation {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                if let Some(conn) = &state.conn {
                    log::warn!("request still running after drain_timeout ({limit:?}): closing it");
                    let _ = conn.shutdown(Direction::Both);
                    self.inner.forced.store(true, Ordering::SeqCst);
                }
                return;
            }
            state = match self.inner.in_loop.changed.wait_timeout(state, left) {
                Ok((state, _)) => state,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
    }

    fn lock_in_loop(&self) -> MutexGuard<'_, InLoopState> {
        self.inner
            .in_loop
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The server is closing (`server_close`): its drain may close connections under their
    /// handlers, and their failures say so.
    pub(crate) fn set_closing(&self) {
        self.inner.closing.store(true, Ordering::SeqCst);
    }

    /// Whether the drain timer had to close a sync request under its handler.
    pub(crate) fn forced(&self) -> bool {
        self.inner.forced.load(Ordering::SeqCst)
    }

    /// Whether the server is closing (see [`Shutdown::set_closing`]).
    pub(crate) fn is_closing(&self) -> bool {
        self.inner.closing.load(Ordering::SeqCst)
    }

    /// Whether a shutdown was asked for and not yet acted on.
    pub fn is_requested(&self) -> bool {
        self.inner.requested.load(Ordering::SeqCst)
    }

    /// Make SIGINT, SIGTERM or any of `signals` request shutdown. The signal handler only stores a flag
    /// and writes a byte (both async-signal-safe), and starts no thread.
    ///
    /// # Errors
    ///
    /// A handler could not be registered (a forbidden signal such as SIGKILL), or the wake-up socket
    /// could not be duplicated for it.
    pub fn shutdown_on_signals(&self, signals: &[i32]) -> io::Result<()> {
        for &signal in signals {
            signal_hook::flag::register(signal, Arc::clone(&self.inner.requested))?;
            signal_hook::low_level::pipe::register(signal, self.inner.wake_tx.try_clone()?)?;
        }
        Ok(())
    }

    /// Wake the serving loop without asking it to stop (strategies use it when capacity frees up).
    pub(crate) fn wake(&self) {
        let _ = (&self.inner.wake_tx).write(&[WAKE_BYTE]);
    }

    /// Forget a shutdown request once the loop has stopped, so the server can serve again.
    pub(crate) fn clear(&self) {
        self.drain();
        self.inner.requested.store(false, Ordering::SeqCst);
    }

    /// Empty the wake-up pipe after a wake; a shutdown byte (from a forked child's handler) sets the
    /// flag here too.
    pub(crate) fn drain(&self) {
        let mut buf = [0u8; 64];
        while let Ok(n @ 1..) = (&self.inner.wake_rx).read(&mut buf) {
            if buf[..n].contains(&SHUTDOWN_BYTE) {
                self.inner.requested.store(true, Ordering::SeqCst);
            }
        }
    }

    /// The descriptor the serving loop polls.
    pub(crate) fn wake_fd(&self) -> BorrowedFd<'_> {
        self.inner.wake_rx.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shutdown_sets_the_flag_and_makes_the_wake_fd_readable() {
        let handle = Shutdown::new().unwrap();
        assert!(!handle.is_requested());
        handle.clone().shutdown();
        assert!(handle.is_requested());
        let mut buf = [0u8; 8];
        assert_eq!((&handle.inner.wake_rx).read(&mut buf).unwrap(), 1);
        handle.clear();
        assert!(!handle.is_requested());
    }

    #[test]
    fn a_shutdown_byte_from_elsewhere_sets_the_flag_when_drained() {
        let handle = Shutdown::new().unwrap();
        // What a forked child's handler does: its own copy of the flag is not ours.
        (&handle.inner.wake_tx).write_all(&[SHUTDOWN_BYTE]).unwrap();
        assert!(!handle.is_requested());
        handle.drain();
        assert!(handle.is_requested());
        handle.wake();
        handle.clear();
        assert!(!handle.is_requested());
    }

    #[test]
    fn many_shutdowns_never_block() {
        let handle = Shutdown::new().unwrap();
        for _ in 0..1_000_000 {
            handle.shutdown();
        }
        handle.clear();
    }

    /// A sync request blocked writing to a peer that never reads: shutdown ends it within the drain
    /// timeout.
    #[test]
    fn the_in_loop_request_is_closed_after_the_drain_timeout() {
        let handle = Shutdown::new().unwrap();
        let drain = Duration::from_millis(300);
        handle.set_drain_timeout(drain);
        let (ours, _theirs) = crate::test_support::socket_pair();
        let conn = Arc::new(ours);
        handle.set_in_loop(Some(Arc::clone(&conn)));
        let writer = std::thread::spawn(move || {
            let chunk = [0u8; 64 * 1024];
            loop {
                if let Err(err) = (&mut &*conn).write(&chunk) {
                    return err;
                }
            }
        });
        let started = Instant::now();
        handle.shutdown();
        let err = writer.join().unwrap();
        assert_eq!(err.kind(), io::ErrorKind::BrokenPipe, "{err}");
        let took = started.elapsed();
        assert!(
            took >= drain && took < drain + Duration::from_secs(10),
            "{took:?}"
        );
        handle.set_in_loop(None);
    }
}
