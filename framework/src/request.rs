//! One request's life, the same under every strategy: make a handler, run `setup`, `handle`, `finish`
//! with panics caught at this boundary, report failures through `handle_error`, close the request
//! gracefully (see `close`), and log one line with the peer, the duration and the bytes in and out.
//! On a TLS server the handshake comes first and the handler's `rfile`/`wfile` carry plaintext
//! (`wire`).
//!
//! Every call into code that is not the framework's — handler hooks, the server's [`Hooks`] — goes
//! through [`guarded`] or a [`Shared`] method that catches its panic: a panic closes one request
//! and is reported, it never ends a serving loop or a worker.

use std::any::Any;
use std::io::{self, BufReader, Read, Write};
use std::net::Shutdown as Direction;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Instant;

use socket2::Socket;
use sockserv_plugin::{
    Address, HandlerError, HandlerFactory, LogLevel, NoControl, Request, RequestControl,
    RequestKind, ServerContext,
};

use crate::budget::HolderId;
use crate::close::close_gracefully;
use crate::deadline::{timed_out, Deadlines, Expiry, SetTimeout, Watched};
use crate::limits::Gate;
use crate::tls::blocking::{TlsReader, TlsShared, TlsWriter};
use crate::transport::{Datagram, ReplyTo};
use crate::{Hooks, RequestFailure, Shutdown, PEER_FAULT_STATUS};
use wire::{shake_hands, ReadWire, WriteWire};

mod wire;

/// The read buffer of a stream request's `rfile`.
const RFILE_CAPACITY: usize = 16 * 1024;

/// The exit status of a forked request child whose TLS handshake failed: the serving process logs
/// it (the child's own log has why, at debug level).
pub(crate) const HANDSHAKE_FAILED_STATUS: i32 = 6;

/// What every request of one server shares.
pub(crate) struct Shared {
    pub name: String,
    pub factory: Arc<dyn HandlerFactory>,
    pub hooks: Arc<dyn Hooks>,
    pub shutdown: Shutdown,
    pub local: Address,
    /// `TCP_NODELAY` for accepted connections, when the config sets it.
    pub nodelay: Option<bool>,
    /// The server's limits, and the counts they are checked against.
    pub gate: Arc<Gate>,
}

impl ServerContext for Shared {
    fn server_name(&self) -> &str {
        &self.name
    }

    fn shutdown(&self) {
        self.shutdown.shutdown();
    }

    fn is_stopping(&self) -> bool {
        self.shutdown.is_closing()
    }

    fn log(&self, level: LogLevel, message: &str) {
        let level = match level {
            LogLevel::Error => log::Level::Error,
            LogLevel::Warn => log::Level::Warn,
            LogLevel::Info => log::Level::Info,
            LogLevel::Debug => log::Level::Debug,
        };
        log::log!(level, "{}: {message}", self.name);
    }
}

impl Shared {
    /// `handle_error`, with a panic of the hook itself caught and logged beside the failure. While
    /// the server closes, an I/O failure is the drain's doing and is reported as such.
    pub fn report(&self, peer: &Address, failure: &RequestFailure) {
        let drained;
        let failure = if self.shutdown.is_closing() && failure.io_error().is_some() {
            drained = RequestFailure::ClosedByDrain(Box::new(clone_io_failure(failure)));
            &drained
        } else {
            failure
        };
        let reported = catch_unwind(AssertUnwindSafe(|| {
            self.hooks.handle_error(&self.name, peer, failure)
        }));
        if let Err(payload) = reported {
            log::error!(
                "{}: request from {peer}: {failure} (and handle_error panicked: {})",
                self.name,
                panic_message(payload.as_ref())
            );
        }
    }

    /// `verify_request`; a panic refuses the peer and is reported.
    pub fn verify(&self, peer: &Address) -> bool {
        match catch_unwind(AssertUnwindSafe(|| self.hooks.verify_request(peer))) {
            Ok(verdict) => verdict,
            Err(payload) => {
                let message = panic_message(payload.as_ref());
                let hook = "verify_request";
                self.report(peer, &RequestFailure::Panic { hook, message });
                false
            }
        }
    }

    /// A hook of the serving loop's own (`handle_timeout`, `service_actions`); a panic is logged and
    /// the loop goes on.
    pub fn run_hook(&self, hook: &'static str, run: impl FnOnce(&dyn Hooks)) {
        if let Err(payload) = catch_unwind(AssertUnwindSafe(|| run(&*self.hooks))) {
            let message = panic_message(payload.as_ref());
            log::error!("{}: {hook} panicked: {message}", self.name);
        }
    }
}

/// How a request ended; a forked child's exit status says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Every hook succeeded.
    Clean,
    /// The peer ended it (a reset, a broken pipe), and nothing else failed.
    EndedByPeer,
    /// A time limit ended it (see `deadline`), and nothing else failed.
    Expired(Expiry),
    /// A hook failed or panicked for a reason of its own.
    Failed,
    /// The TLS handshake failed (reported); no handler ran.
    HandshakeFailed,
}

impl Outcome {
    /// The exit status of a forked request child: 0, [`PEER_FAULT_STATUS`], or 1 as socketserver's
    /// child exits after an exception.
    pub fn exit_status(self) -> i32 {
        match self {
            Outcome::Clean => 0,
            Outcome::EndedByPeer => PEER_FAULT_STATUS,
            Outcome::Expired(expiry) => expiry.exit_status(),
            Outcome::Failed => 1,
            Outcome::HandshakeFailed => HANDSHAKE_FAILED_STATUS,
        }
    }

    /// The worse of two outcomes: a failure of our own over the peer's doing over none.
    fn worse(self, other: Outcome) -> Outcome {
        match (self, other) {
            (Outcome::Failed, _) | (_, Outcome::Failed) => Outcome::Failed,
            (Outcome::Clean, other) => other,
            (mine, _) => mine,
        }
    }

    fn of(failures: &[RequestFailure]) -> Outcome {
        if failures.is_empty() {
            Outcome::Clean
        } else if failures.iter().all(RequestFailure::is_peer_fault) {
            let expired = failures
                .iter()
                .find_map(|f| f.io_error().and_then(Expiry::of));
            expired.map_or(Outcome::EndedByPeer, Outcome::Expired)
        } else {
            Outcome::Failed
        }
    }
}

/// A copy of an I/O failure (an `io::Error` is not `Clone`: its kind and text are kept).
fn clone_io_failure(failure: &RequestFailure) -> RequestFailure {
    let copy = |err: &io::Error| io::Error::new(err.kind(), err.to_string());
    match failure {
        RequestFailure::Hook {
            hook,
            error: HandlerError::Io(err),
        } => RequestFailure::Hook {
            hook,
            error: HandlerError::Io(copy(err)),
        },
        RequestFailure::Reply(err) => RequestFailure::Reply(copy(err)),
        RequestFailure::Connection(err) => RequestFailure::Connection(copy(err)),
        other => RequestFailure::Dispatch(other.to_string()),
    }
}

/// Serve one connection to its end, then close it gracefully. With `tls`, the handshake comes
/// first (bounded by `first_byte_timeout`, see `tls::handshake_timeout`), and the handler's
/// `rfile` and `wfile` carry plaintext.
pub(crate) fn serve_stream(
    shared: &Shared,
    conn: &Socket,
    peer: Address,
    tls: Option<Arc<rustls::ServerConfig>>,
) -> Outcome {
    let started = Instant::now();
    if let Some(nodelay) = shared.nodelay {
        if peer.inet().is_some() {
            let _ = conn.set_tcp_nodelay(nodelay);
        }
    }
    let watched = Deadlines::of(shared.gate.limits()).map(|d| Watched::new(d, started));
    let mut handshake_bytes = (0, 0);
    let tls = match tls.map(|config| shake_hands(shared, conn, config, &mut handshake_bytes)) {
        None => None,
        Some(Ok((session, info))) => Some((TlsShared::new(session), info)),
        Some(Err(failure)) => {
            shared.report(&peer, &failure);
            close_gracefully(conn, true);
            return Outcome::HandshakeFailed;
        }
    };
    if let Some(watched) = &watched {
        if handshake_bytes.0 > 0 {
            // The handshake was the client's first bytes.
            watched.touch(true);
        }
    }
    let counted = || Counted::new(conn, watched.as_ref());
    let (mut rfile, mut wfile) = match &tls {
        None => (ReadWire::Plain(counted()), WriteWire::Plain(counted())),
        Some((shared_tls, _)) => (
            ReadWire::Tls(TlsReader::new(shared_tls, counted(), counted())),
            WriteWire::Tls(TlsWriter::new(shared_tls, counted())),
        ),
    };
    let mut rfile = BufReader::with_capacity(RFILE_CAPACITY, &mut rfile);
    let mut req = Request {
        kind: RequestKind::Stream,
        rfile: &mut rfile,
        wfile: &mut wfile,
        peer: &peer,
        local: &shared.local,
        packet: None,
        server: shared,
        control: &Control {
            conn,
            shared,
            holder: shared.gate.budget.enter(&peer),
        },
        tls: tls.as_ref().map(|(_, info)| info),
    };
    let outcome = run_handler(shared, &mut req);
    let rfile = rfile.into_inner();
    // A connection a limit ended has an idle (or over-long) peer: nothing to wait for at close.
    let expired = watched.as_ref().is_some_and(Watched::has_expired);
    if let Some((shared_tls, _)) = &tls {
        if !expired {
            shared_tls.close_notify(conn);
        }
    }
    close_gracefully(conn, rfile.eof() || expired);
    let (bytes_in, bytes_out) = (rfile.bytes_in() + handshake_bytes.0, handshake_bytes.1);
    log::info!(
        "{}: {peer} served in {:.1} ms, {bytes_in} bytes in, {} bytes out",
        shared.name,
        started.elapsed().as_secs_f64() * 1e3,
        bytes_out + rfile.bytes_out() + wfile.bytes_out()
    );
    outcome
}

/// Serve one datagram: the handler reads `packet`, and what it writes goes back as one datagram.
/// `reply` is a buffer to build the reply in (cleared first), so a caller answering many datagrams
/// reuses one allocation.
pub(crate) fn serve_datagram(
    shared: &Shared,
    socket: &Datagram,
    packet: &[u8],
    from: &ReplyTo,
    reply: &mut Vec<u8>,
) -> Outcome {
    let peer = from.address();
    let mut rfile = packet;
    reply.clear();
    let mut wfile = Reply {
        bytes: reply,
        written: false,
    };
    let mut req = Request {
        kind: RequestKind::Datagram,
        rfile: &mut rfile,
        wfile: &mut wfile,
        peer: &peer,
        local: &shared.local,
        packet: Some(packet),
        server: shared,
        control: &NoControl,
        tls: None,
    };
    let mut outcome = run_handler(shared, &mut req);
    if wfile.written {
        if let Err(err) = socket.send_to(wfile.bytes, from) {
            let failure = RequestFailure::Reply(err);
            shared.report(&peer, &failure);
            outcome = outcome.worse(Outcome::of(&[failure]));
        }
    }
    log::debug!(
        "{}: datagram from {peer}, {} bytes in, {} bytes out",
        shared.name,
        packet.len(),
        wfile.bytes.len()
    );
    outcome
}

/// `setup`, then `handle` and `finish` (finish even when handle failed or panicked), as socketserver's
/// BaseRequestHandler does.
fn run_handler(shared: &Shared, req: &mut Request<'_>) -> Outcome {
    let peer = req.peer.clone();
    let mut failures = Vec::new();
    match guarded("new_handler", || Ok(shared.factory.new_handler())) {
        Err(failure) => failures.push(failure),
        Ok(mut handler) => match guarded("setup", || handler.setup(req)) {
            Err(failure) => failures.push(failure),
            Ok(()) => {
                let handled = guarded("handle", || handler.handle(req));
                let finished = guarded("finish", || handler.finish(req));
                failures.extend([handled.err(), finished.err()].into_iter().flatten());
            }
        },
    }
    for failure in &failures {
        shared.report(&peer, failure);
    }
    Outcome::of(&failures)
}

/// Run one handler hook with its panic caught, turning both kinds of failure into a
/// `RequestFailure`.
pub(crate) fn guarded<T>(
    hook: &'static str,
    run: impl FnOnce() -> Result<T, sockserv_plugin::HandlerError>,
) -> Result<T, RequestFailure> {
    match catch_unwind(AssertUnwindSafe(run)) {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => Err(RequestFailure::Hook { hook, error }),
        Err(payload) => Err(RequestFailure::Panic {
            hook,
            message: panic_message(payload.as_ref()),
        }),
    }
}

/// The text of a caught panic's payload.
pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_string()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "non-string panic payload".to_string()
    }
}

/// Lets a handler shut its connection down from another thread, say how much input it holds, and
/// see how much of its output the peer has not taken yet.
struct Control<'a> {
    conn: &'a Socket,
    shared: &'a Shared,
    /// The connection's entry in the server's input budget, if it has one.
    holder: Option<HolderId>,
}

impl RequestControl for Control<'_> {
    fn shutdown(&self, how: Direction) -> io::Result<()> {
        self.conn.shutdown(how)
    }

    fn hold_input(&self, bytes: usize) {
        if let Some(id) = self.holder {
            let budget = &self.shared.gate.budget;
            budget.hold(&self.shared.name, id, self.conn, bytes);
        }
    }

    fn send_queue(&self) -> Option<usize> {
        crate::send_queue::send_queue(self.conn).ok()
    }
}

impl Drop for Control<'_> {
    fn drop(&mut self) {
        if let Some(id) = self.holder {
            self.shared.gate.budget.leave(id);
        }
    }
}

/// A reader or writer over the connection that counts the bytes it moves, for the log line, and
/// keeps the connection's time limits (see `deadline`).
struct Counted<'a> {
    conn: &'a Socket,
    bytes: u64,
    /// A read returned end of stream: the peer has closed its sending side.
    eof: bool,
    /// The connection's time limits, shared by its reader and writer; `None` without limits.
    watched: Option<&'a Watched>,
    /// The socket timeout this side last set.
    timeout: SetTimeout,
}

impl<'a> Counted<'a> {
    fn new(conn: &'a Socket, watched: Option<&'a Watched>) -> Self {
        Counted {
            conn,
            bytes: 0,
            eof: false,
            watched,
            timeout: SetTimeout::default(),
        }
    }

    /// Run one read or write under the connection's time limits: a wait that outlasts the socket
    /// timeout is tried again unless a limit has passed (bytes may have moved on the other side).
    fn limited(
        &mut self,
        reading: bool,
        mut io: impl FnMut(&Socket) -> io::Result<usize>,
    ) -> io::Result<usize> {
        let Some(watched) = self.watched else {
            return io(self.conn);
        };
        loop {
            let limit = watched.wait_limit(Instant::now()).map_err(Expiry::error)?;
            if reading {
                self.timeout.read(self.conn, limit)?;
            } else {
                self.timeout.write(self.conn, limit)?;
            }
            match io(self.conn) {
                Ok(n) => {
                    if n > 0 {
                        watched.touch(reading);
                    }
                    return Ok(n);
                }
                Err(err) if timed_out(&err) => continue,
                Err(err) => return Err(err),
            }
        }
    }
}

impl Read for Counted<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.limited(true, |conn| (&mut &*conn).read(buf))?;
        self.bytes += n as u64;
        self.eof |= n == 0 && !buf.is_empty();
        Ok(n)
    }
}

impl Write for Counted<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.limited(false, |conn| (&mut &*conn).write(buf))?;
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A datagram's reply, sent as one datagram if the handler wrote at all (even zero bytes, so an echo
/// of an empty datagram is answered).
struct Reply<'a> {
    bytes: &'a mut Vec<u8>,
    written: bool,
}

impl Write for Reply<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.written = true;
        self.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.write(buf).map(drop)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
