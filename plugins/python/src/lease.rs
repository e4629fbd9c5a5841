//! A request's reader, writer, connection control and server, lent to Python objects for the
//! length of the request.
//!
//! Python objects outlive the Rust call that made them whenever a handler keeps a reference (in a
//! global, a thread, a closure), but what they reach — the request's `rfile`, `wfile`, control and
//! server — is valid only during that call. A [`Lease`] holds raw pointers to them, each behind its
//! own lock, and [`Lease::revoke`] empties it before the call returns: from then on every use
//! fails with `EBADF` ("the request is over") instead of reaching freed memory. The reader and the
//! writer have separate locks, so one Python thread may block in `recv` while another `send`s, as
//! on a socket; each lock is taken with the GIL released, so a blocked reader never holds up the
//! interpreter.

use std::io::{self, BufRead, Write};
use std::net::Shutdown;
use std::sync::{Mutex, MutexGuard, RwLock};

use sockserv_plugin::{Request, RequestControl, ServerContext};

/// A raw pointer that may cross threads: what it points at is used under the lease's locks only.
struct Lent<T: ?Sized>(*mut T);

// SAFETY: the pointees are `Send` (the reader and writer) or `Sync` (the control and the server);
// every use goes through a lock of the lease, and the lease is emptied before they are dropped.
unsafe impl<T: ?Sized> Send for Lent<T> {}
// SAFETY: as above.
unsafe impl<T: ?Sized> Sync for Lent<T> {}

type Reader = dyn BufRead + Send + 'static;
type Writer = dyn Write + Send + 'static;
type Control = dyn RequestControl + 'static;
type Server = dyn ServerContext + 'static;

/// One request's parts, reachable until revoked.
pub struct Lease {
    reader: Mutex<Option<Lent<Reader>>>,
    writer: Mutex<Option<Lent<Writer>>>,
    shared: RwLock<Option<(Lent<Control>, Lent<Server>)>>,
}

/// What a Python call is told once the request it belongs to is over.
pub fn over() -> io::Error {
    io::Error::from_raw_os_error(libc::EBADF)
}

impl Lease {
    /// Lend `req`'s parts. The caller must call [`revoke`](Self::revoke) before `req`'s parts go
    /// away (before the handler returns), and must not use `req.rfile` or `req.wfile` meanwhile.
    pub fn new(req: &mut Request<'_>) -> Lease {
        // SAFETY (of the lifetime erasure): the pointers are used only while the lease holds them,
        // and `revoke`, which the caller runs before `req`'s borrow ends, takes them away under
        // the same locks every use holds.
        let reader: *mut (dyn BufRead + Send + '_) = &mut *req.rfile;
        let writer: *mut (dyn Write + Send + '_) = &mut *req.wfile;
        let control: *const (dyn RequestControl + '_) = req.control;
        let server: *const (dyn ServerContext + '_) = req.server;
        #[allow(clippy::missing_transmute_annotations)]
        // SAFETY: fat pointers of the same trait with the lifetime erased; see above.
        let (reader, writer, control, server) = unsafe {
            (
                std::mem::transmute::<_, *mut Reader>(reader),
                std::mem::transmute::<_, *mut Writer>(writer),
                std::mem::transmute::<_, *const Control>(control),
                std::mem::transmute::<_, *const Server>(server),
            )
        };
        Lease {
            reader: Mutex::new(Some(Lent(reader))),
            writer: Mutex::new(Some(Lent(writer))),
            shared: RwLock::new(Some((Lent(control.cast_mut()), Lent(server.cast_mut())))),
        }
    }

    /// Read into `buf` (blocking; call it with the GIL released).
    ///
    /// # Errors
    ///
    /// The request's read error, or `EBADF` once the request is over.
    pub fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        let guard = lock(&self.reader);
        let Some(reader) = guard.as_ref() else {
            return Err(over());
        };
        // SAFETY: held under the reader lock, before revoke.
        let reader = unsafe { &mut *reader.0 };
        loop {
            match reader.read(buf) {
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                other => return other,
            }
        }
    }

    /// Write some of `buf` (blocking; call it with the GIL released); the count written.
    ///
    /// # Errors
    ///
    /// The request's write error, or `EBADF` once the request is over.
    pub fn write(&self, buf: &[u8], all: bool) -> io::Result<usize> {
        let guard = lock(&self.writer);
        let Some(writer) = guard.as_ref() else {
            return Err(over());
        };
        // SAFETY: held under the writer lock, before revoke.
        let writer = unsafe { &mut *writer.0 };
        if all {
            writer.write_all(buf).map(|()| buf.len())
        } else {
            loop {
                match writer.write(buf) {
                    Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                    other => return other,
                }
            }
        }
    }

    /// Shut the connection down in direction `how`.
    ///
    /// # Errors
    ///
    /// The system's refusal, or `EBADF` once the request is over.
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        let guard = self.shared.read().unwrap_or_else(|e| e.into_inner());
        let Some((control, _)) = guard.as_ref() else {
            return Err(over());
        };
        // SAFETY: shared access to a `Sync` control, before revoke.
        unsafe { &*control.0 }.shutdown(how)
    }

    /// Ask the server to shut down. Nothing once the request is over: the server it belonged to
    /// may be gone (a reload), and a handler asking late has no server to stop.
    ///
    /// # Errors
    ///
    /// `EBADF` once the request is over.
    pub fn shutdown_server(&self) -> io::Result<()> {
        let guard = self.shared.read().unwrap_or_else(|e| e.into_inner());
        let Some((_, server)) = guard.as_ref() else {
            return Err(over());
        };
        // SAFETY: shared access to a `Sync` server context, before revoke.
        unsafe { &*server.0 }.shutdown();
        Ok(())
    }

    /// End the lease: wait for calls in flight, then refuse every later one. A read still blocked
    /// (on another Python thread) is ended first by shutting the connection's reading down.
    pub fn revoke(&self) {
        if self.reader.try_lock().is_err() {
            let _ = self.shutdown(Shutdown::Read);
        }
        *lock(&self.reader) = None;
        *lock(&self.writer) = None;
        *self.shared.write().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

/// A lock whose holder panicked is still the lock (the data is a pointer, left consistent).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}
