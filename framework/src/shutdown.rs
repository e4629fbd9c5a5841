//! The shutdown handle: one small type whose `shutdown()` sets the state *and* wakes the serving loop.
//!
//! The loop sleeps in `poll(2)` on the listening socket and on the read end of a socket pair; shutdown
//! writes one byte to the other end, so the loop wakes at once instead of polling every half second as
//! socketserver does. The write is non-blocking and its result is ignored: a full pipe already holds a
//! wake-up. That makes `shutdown()` safe from any thread, from a handler, and from a signal handler.
//!
//! The byte says why: [`SHUTDOWN_BYTE`] asks to stop, anything else only wakes. A handler running in a
//! forked child shares the socket pair but not the flag, so the serving loop also stops when it reads
//! a shutdown byte: `shutdown()` works the same under every strategy.

use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use socket2::Socket;

/// A cloneable handle that stops a server's `serve_forever` promptly.
/// The wake-up byte that asks the loop to stop (as opposed to a plain wake-up).
const SHUTDOWN_BYTE: u8 = b'S';
/// The wake-up byte for "look again" (capacity freed, a child exited).
const WAKE_BYTE: u8 = b'W';

#[derive(Debug, Clone)]
pub struct Shutdown {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    requested: Arc<AtomicBool>,
    wake_tx: UnixStream,
    wake_rx: UnixStream,
    /// The connection a sync server is serving in its loop's thread, if any: shutdown ends its reads,
    /// since the loop cannot notice the request until that handler returns.
    in_loop: Mutex<Option<Arc<Socket>>>,
}

impl Shutdown {
    /// A fresh handle, not yet requested.
    pub fn new() -> io::Result<Self> {
        let (wake_tx, wake_rx) = UnixStream::pair()?;
        wake_tx.set_nonblocking(true)?;
        wake_rx.set_nonblocking(true)?;
        let requested = Arc::new(AtomicBool::new(false));
        Ok(Shutdown {
            inner: Arc::new(Inner {
                requested,
                wake_tx,
                wake_rx,
                in_loop: Mutex::new(None),
            }),
        })
    }

    /// Ask the server to stop; returns at once. The server finishes the requests in flight.
    pub fn shutdown(&self) {
        self.inner.requested.store(true, Ordering::SeqCst);
        let _ = (&self.inner.wake_tx).write(&[SHUTDOWN_BYTE]);
        if let Some(conn) = self.lock_in_loop().as_ref() {
            let _ = conn.shutdown(std::net::Shutdown::Read);
        }
    }

    /// Record (or clear) the connection served in the loop's own thread, so that `shutdown` can end
    /// its reads. A shutdown asked for just before it was recorded still reaches it.
    pub(crate) fn set_in_loop(&self, conn: Option<Arc<Socket>>) {
        let mut slot = self.lock_in_loop();
        if let (Some(conn), true) = (&conn, self.is_requested()) {
            let _ = conn.shutdown(std::net::Shutdown::Read);
        }
        *slot = conn;
    }

    fn lock_in_loop(&self) -> std::sync::MutexGuard<'_, Option<Arc<Socket>>> {
        self.inner
            .in_loop
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Whether a shutdown was asked for and not yet acted on.
    pub fn is_requested(&self) -> bool {
        self.inner.requested.load(Ordering::SeqCst)
    }

    /// Make SIGINT, SIGTERM or any of `signals` request shutdown. The signal handler only stores a flag
    /// and writes a byte (both async-signal-safe), and starts no thread.
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
}
