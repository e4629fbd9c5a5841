//! One request's life, the same under every strategy: make a handler, run `setup`, `handle`, `finish`
//! with panics caught at this boundary, report failures through `handle_error`, close the request
//! gracefully (see `close`), count it (see `metrics`), and log one line (at debug level: nothing is
//! logged per request at info) with the connection's id, the peer, the duration, the bytes in and
//! out, and why it closed.
//! On a TLS server the handshake comes first and the handler's `rfile`/`wfile` carry plaintext
//! (`wire`).
//!
//! Every call into code that is not the framework's — handler hooks, the server's [`Hooks`] — goes
//! through [`guarded`] or a [`Shared`] method that catches its panic: a panic closes one request
//! and is reported, it never ends a serving loop or a worker.

use std::any::Any;
use std::io::{self, BufReader};
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
use crate::deadline::{Deadlines, Expiry, Watched};
use crate::limits::Gate;
use crate::log_with;
use crate::metrics::{CloseReason, ConnId, DatagramDrop, Refusal, ServerMetrics, Tally};
use crate::peer_log::Fields;
use crate::tls::blocking::{TlsReader, TlsWriter};
use crate::transport::{Datagram, ReplyTo};
use crate::{Client, Hooks, RequestFailure, Shutdown, PEER_FAULT_STATUS};
use streams::{Counted, Reply};
use wire::{shake_hands, ReadWire, WriteWire};

mod streams;
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
    /// The server's counters (see `metrics`).
    pub metrics: ServerMetrics,
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
        log::log!(level_of(level), server = self.name.as_str(); "{}: {message}", self.name);
    }
}

impl Shared {
    /// `handle_error`, with a panic of the hook itself caught and logged beside the failure. While
    /// the server closes, an I/O failure is the drain's doing and is reported as such. A handler's
    /// panic, or its failure of its own (not the peer's), is counted.
    pub fn report(&self, client: Client<'_>, failure: &RequestFailure) {
        match failure {
            RequestFailure::Panic { .. } => self.metrics.handler_panic(),
            RequestFailure::Hook { .. } if !failure.is_peer_fault() => {
                self.metrics.handler_error();
            }
            _ => {}
        }
        let drained;
        let failure = if self.shutdown.is_closing() && failure.io_error().is_some() {
            drained = RequestFailure::ClosedByDrain(Box::new(clone_io_failure(failure)));
            &drained
        } else {
            failure
        };
        let reported = catch_unwind(AssertUnwindSafe(|| {
            self.hooks.handle_error(&self.name, client, failure)
        }));
        if let Err(payload) = reported {
            let name = &self.name;
            let panic = panic_message(payload.as_ref());
            log_with!(
                log::Level::Error,
                &Fields::of(name, client),
                format_args!(
                    "{name}: {}request from {}: {failure} (and handle_error panicked: {panic})",
                    client.tag(),
                    client.peer
                ),
            );
        }
    }

    /// `verify_request`; a panic refuses the peer and is reported.
    pub fn verify(&self, client: Client<'_>) -> bool {
        match catch_unwind(AssertUnwindSafe(|| self.hooks.verify_request(client.peer))) {
            Ok(verdict) => verdict,
            Err(payload) => {
                let message = panic_message(payload.as_ref());
                let hook = "verify_request";
                self.report(client, &RequestFailure::Panic { hook, message });
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

/// Serve connection `conn` (its id) to its end, then close it gracefully, count it and log its
/// line. With `tls`, the handshake comes first (bounded by `first_byte_timeout`, see
/// `tls::handshake_timeout`; a failed one is counted as refused, `tls_handshake`), and the
/// handler's `rfile` and `wfile` carry plaintext.
pub(crate) fn serve_stream(
    shared: &Shared,
    socket: &Socket,
    peer: Address,
    conn: ConnId,
    tls: Option<Arc<rustls::ServerConfig>>,
) -> Outcome {
    let started = Instant::now();
    if let Some(nodelay) = shared.nodelay {
        if peer.inet().is_some() {
            let _ = socket.set_tcp_nodelay(nodelay);
        }
    }
    let client = Client::connection(&peer, conn);
    let metrics = shared.metrics;
    let watched = Deadlines::of(shared.gate.limits()).map(|d| Watched::new(d, started));
    let mut handshake_bytes = (0, 0);
    let shaken = tls.map(|config| shake_hands(shared, socket, config, &mut handshake_bytes));
    let tls = match shaken {
        None => None,
        Some(Ok(started)) => Some(started),
        Some(Err(failure)) => {
            metrics.refused(Refusal::TlsHandshake);
            shared.report(client, &failure);
            close_gracefully(socket, true);
            return Outcome::HandshakeFailed;
        }
    };
    metrics.opened();
    metrics.received(handshake_bytes.0);
    metrics.sent(handshake_bytes.1);
    if let Some(watched) = &watched {
        if handshake_bytes.0 > 0 {
            // The handshake was the client's first bytes.
            watched.touch(true);
        }
    }
    let reader = || Counted::new(socket, watched.as_ref(), metrics, Tally::received());
    let writer = || Counted::new(socket, watched.as_ref(), metrics, Tally::sent());
    let (mut rfile, mut wfile) = match &tls {
        None => (ReadWire::Plain(reader()), WriteWire::Plain(writer())),
        Some((shared_tls, _)) => (
            ReadWire::Tls(TlsReader::new(shared_tls, reader(), writer())),
            WriteWire::Tls(TlsWriter::new(shared_tls, writer())),
        ),
    };
    let mut rfile = BufReader::with_capacity(RFILE_CAPACITY, &mut rfile);
    let control = Control {
        conn: socket,
        shared,
        holder: shared.gate.budget.enter(client),
    };
    let mut req = Request {
        kind: RequestKind::Stream,
        rfile: &mut rfile,
        wfile: &mut wfile,
        peer: &peer,
        local: &shared.local,
        packet: None,
        server: &Scoped { shared, client },
        control: &control,
        tls: tls.as_ref().map(|(_, info)| info),
    };
    let outcome = run_handler(shared, client, &mut req);
    let over_budget = control.leave();
    let rfile = rfile.into_inner();
    // A connection a limit ended has an idle (or over-long) peer: nothing to wait for at close.
    let expired = watched.as_ref().is_some_and(Watched::has_expired);
    if let Some((shared_tls, _)) = &tls {
        if !expired {
            shared_tls.close_notify(socket);
        }
    }
    let eof = rfile.eof();
    close_gracefully(socket, eof || expired);
    let reason = if over_budget {
        CloseReason::MaxBufferedInput
    } else {
        close_reason(outcome, eof, shared.shutdown.is_closing())
    };
    let lasted = started.elapsed();
    rfile.flush_metrics();
    wfile.flush_metrics();
    metrics.closed(reason, lasted);
    let bytes_in = rfile.bytes_in() + handshake_bytes.0;
    let bytes_out = handshake_bytes.1 + rfile.bytes_out() + wfile.bytes_out();
    let name = &shared.name;
    log_with!(
        log::Level::Debug,
        &Fields::of(name, client).because(reason.name()),
        format_args!(
            "{name}: {}{peer} served in {:.1} ms, {bytes_in} bytes in, {bytes_out} bytes out, \
             closed: {reason}",
            client.tag(),
            lasted.as_secs_f64() * 1e3,
        ),
    );
    outcome
}

/// Why a blocking connection ended, from its outcome, whether its peer had closed (`eof`), and
/// whether its server was draining.
pub(crate) fn close_reason(outcome: Outcome, eof: bool, draining: bool) -> CloseReason {
    match outcome {
        Outcome::Expired(expiry) => expiry.reason(),
        _ if draining => CloseReason::Drain,
        Outcome::Clean if eof => CloseReason::Eof,
        Outcome::Clean => CloseReason::Handler,
        Outcome::EndedByPeer => CloseReason::PeerReset,
        Outcome::Failed | Outcome::HandshakeFailed => CloseReason::Error,
    }
}

/// The server's context as one request's handler sees it: a line the handler logs names its
/// connection.
pub(crate) struct Scoped<'a> {
    pub shared: &'a Shared,
    pub client: Client<'a>,
}

impl ServerContext for Scoped<'_> {
    fn server_name(&self) -> &str {
        &self.shared.name
    }

    fn shutdown(&self) {
        self.shared.shutdown.shutdown();
    }

    fn is_stopping(&self) -> bool {
        self.shared.shutdown.is_closing()
    }

    fn log(&self, level: LogLevel, message: &str) {
        let (name, client) = (&self.shared.name, self.client);
        let line = format_args!("{name}: {}{message}", client.tag());
        log_with!(level_of(level), &Fields::of(name, client), line);
    }
}

fn level_of(level: LogLevel) -> log::Level {
    match level {
        LogLevel::Error => log::Level::Error,
        LogLevel::Warn => log::Level::Warn,
        LogLevel::Info => log::Level::Info,
        LogLevel::Debug => log::Level::Debug,
    }
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
    let client = Client::datagram(&peer);
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
    let mut outcome = run_handler(shared, client, &mut req);
    if wfile.written {
        match socket.send_to(wfile.bytes, from) {
            Ok(_) => shared.metrics.datagram_sent(wfile.bytes.len()),
            Err(err) => {
                shared.metrics.datagram_dropped(DatagramDrop::ReplyFailed);
                let failure = RequestFailure::Reply(err);
                shared.report(client, &failure);
                outcome = outcome.worse(Outcome::of(&[failure]));
            }
        }
    }
    let name = &shared.name;
    log_with!(
        log::Level::Debug,
        &Fields::of(name, client),
        format_args!(
            "{name}: datagram from {peer}, {} bytes in, {} bytes out",
            packet.len(),
            wfile.bytes.len()
        ),
    );
    outcome
}

/// `setup`, then `handle` and `finish` (finish even when handle failed or panicked), as socketserver's
/// BaseRequestHandler does.
fn run_handler(shared: &Shared, client: Client<'_>, req: &mut Request<'_>) -> Outcome {
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
        shared.report(client, failure);
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

impl Control<'_> {
    /// Leave the server's input budget: whether the budget closed this connection.
    fn leave(&self) -> bool {
        self.holder
            .is_some_and(|id| self.shared.gate.budget.leave(id))
    }
}
