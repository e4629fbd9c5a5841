//! One connection on an event loop: its socket, its session, and its unwritten output. The loop
//! drives it through a few entry points, each returning what the connection needs next ([`Next`]);
//! the order is written on [`Connection`].

use std::io::{self, Read, Write};
use std::net::Shutdown as Direction;
use std::sync::Arc;
use std::time::Instant;

use socket2::Socket;
use sockserv_plugin::{Address, OutputBuffer, Reading, Session, SessionContext};

use super::MAX_PENDING_OUTPUT;
use crate::budget::HolderId;
use crate::deadline::{Deadlines, Expiry, Progress};
use crate::metrics::{CloseReason, ConnId, Tally};
use crate::request::{guarded, Scoped, Shared};
use crate::{Client, RequestFailure};

mod ending;

/// What the loop should do with a connection after an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Next {
    /// Keep it, watching for readability if `read` and for writability if `write`. A connection
    /// whose session paused reading is still watched for readability (so that a reset or a failed
    /// socket is seen), but not read.
    Watch { read: bool, write: bool },
    /// Its output is out and its sending side shut: read and drop what the peer still sends until
    /// it closes (or [`LINGER_LIMIT`] bytes, or the loop's linger time), then close. Closing with
    /// input unread would make the kernel reset the connection, and a reset can destroy the reply.
    Linger,
    /// Close it now.
    Close,
}

/// The most a lingering connection reads and drops before closing anyway.
pub(super) const LINGER_LIMIT: usize = 4 * 1024 * 1024;

/// What a session asked of the context during one event, besides output.
struct Asked {
    /// Close once the output is out.
    closing: bool,
    /// Call `on_wake` once the output is out.
    wake_when_written: bool,
    /// Pause or resume reading (`None`: as it was).
    reading: Option<Reading>,
    /// Call `on_wake` at this time, replacing any time asked for before.
    wake_at: Option<Instant>,
    /// The input the session holds now (`max_buffered_input`).
    held_input: Option<usize>,
}

/// A connection as its loop drives it, sans-IO in spirit: the loop reports readiness, the connection
/// does the reads and writes, calls its session, and says what to watch next.
///
/// # Call order
///
/// The loop owns the connection and calls it from its own thread only:
///
/// 1. [`on_open`](Self::on_open), once, right after the socket is registered for reading.
/// 2. Then, as often as something happens, in any order:
///    - [`on_writable`](Self::on_writable) when the socket reported writable (before `on_readable`
///      when one event reports both),
///    - [`on_readable`](Self::on_readable) when it reported readable, closed or failed,
///    - [`on_wake`](Self::on_wake) when the session's waker was called,
///    - [`on_timer`](Self::on_timer) when [`next_time`](Self::next_time) has come (a time limit
///      is checked with [`expired`](Self::expired) first; see the loop's `run_timers`).
///
///    Each returns the [`Next`] step: the readiness to watch for, [`Next::Linger`], or
///    [`Next::Close`], after which the loop calls nothing but `close`.
/// 3. [`close`](Self::close), once, consuming the connection: after a `Next::Close`, when a linger
///    runs out of time, or when the loop stops.
///
/// Inside, every entry point of step 2 runs the same sequence, and `on_open` too:
///
/// - `event`: one session callback, its panic caught; what it writes is appended to the output. A
///   panic is reported through the server's `handle_error` with the peer, and the connection is
///   done: its output is dropped, the entry point returns [`Next::Close`], and the session is never
///   called again (not even `on_close`; `close` only drops it, that too guarded).
///   What the session asked of the context besides output is taken here too: closing,
///   `wake_when_written`, pausing or resuming reading, and the time of its next wake.
/// - `after_event`: `flush` the output; if the session resumed reading, `read_input` at once (the
///   socket is edge-triggered: bytes that came while paused raise no new event) and flush what
///   that made; once the output is all out, if the session asked to hear of that
///   (`wake_when_written`), call its `on_wake` and flush again, for as long as it keeps asking;
///   then `next` decides the step to return.
/// - `read_input` reads until the socket would block, handing each chunk to the session
///   (`on_data`, `on_eof`) as an `event` of its own; it stops early once the session pauses or
///   closes, or its output backs up.
/// - `flush` only writes: until the output is out or the socket would block. It never calls the
///   session.
pub(super) struct Connection {
    pub socket: Socket,
    session: Box<dyn Session>,
    shared: Arc<Shared>,
    peer: Address,
    /// Output queued by the session, less what the socket has taken.
    output: OutputBuffer,
    /// The session asked to close once its output is out.
    closing: bool,
    /// The peer closed its side: nothing more to read.
    eof: bool,
    /// The session wants `on_wake` once its output is written.
    wake_when_written: bool,
    /// The session paused reading: the socket is watched but not read.
    paused: bool,
    /// The session resumed reading: read before the entry point returns (no new edge will come).
    read_owed: bool,
    /// The peer's end of stream was announced (a short read no longer means the socket is drained).
    peer_closed: bool,
    /// When the session asked for its next `on_wake`.
    wake_at: Option<Instant>,
    /// Closing, waiting for the peer's end of stream (see [`Next::Linger`]); bytes dropped so far.
    lingering: Option<usize>,
    /// The session panicked: it is not called again.
    panicked: bool,
    started: Instant,
    /// Bytes received and sent, for the log line and the server's metrics.
    bytes_in: Tally,
    bytes_out: Tally,
    /// The server's time limits, and where this connection stands against them (`None`: none).
    deadlines: Option<(Deadlines, Progress)>,
    /// Its entry in the server's `max_buffered_input` budget, if there is a budget.
    holder: Option<HolderId>,
    /// The connection's id, in its log lines.
    id: ConnId,
    /// Why it ends, once that is known (a time limit, a failure, a panic); `close` decides from
    /// its state otherwise.
    ended: Option<CloseReason>,
    /// On a TLS server: the connection's rustls state, its handshake done. Reads and writes go
    /// through it (see `tls_wire`); it holds at most `TLS_BUFFER_LIMIT` bytes of output besides
    /// `output`.
    tls: Option<Box<rustls::ServerConnection>>,
    /// The close_notify alert has been queued.
    notified: bool,
}

impl Connection {
    pub fn new(
        socket: Socket,
        session: Box<dyn Session>,
        shared: Arc<Shared>,
        peer: Address,
        id: ConnId,
    ) -> Self {
        let holder = shared.gate.budget.enter(Client::connection(&peer, id));
        shared.metrics.opened();
        Connection {
            holder,
            id,
            ended: None,
            socket,
            session,
            shared,
            peer,
            output: OutputBuffer::default(),
            closing: false,
            eof: false,
            lingering: None,
            panicked: false,
            wake_when_written: false,
            paused: false,
            read_owed: false,
            peer_closed: false,
            wake_at: None,
            started: Instant::now(),
            bytes_in: Tally::received(),
            bytes_out: Tally::sent(),
            deadlines: None,
            tls: None,
            notified: false,
        }
    }

    /// Carry the session's bytes over TLS (`tls`, its handshake done, having moved `moved`
    /// bytes in and out). What the client sent right behind its handshake may be decrypted and
    /// waiting already: it is read on the first entry point, with no new edge to announce it.
    pub fn with_tls(mut self, tls: rustls::ServerConnection, moved: (u64, u64)) -> Self {
        self.tls = Some(Box::new(tls));
        self.read_owed = true;
        let metrics = self.shared.metrics;
        metrics.count(&mut self.bytes_in, moved.0);
        metrics.count(&mut self.bytes_out, moved.1);
        self
    }

    /// Keep the server's time limits from now on (see `deadline`).
    pub fn watch(&mut self, deadlines: Deadlines) {
        self.deadlines = Some((deadlines, Progress::new(self.started)));
    }

    /// When this connection's next time limit falls, if it has any.
    fn next_deadline(&self) -> Option<Instant> {
        let (deadlines, progress) = self.deadlines.as_ref()?;
        deadlines.next(progress)
    }

    /// When the loop should next look at this connection: its next time limit or its session's
    /// wake, whichever comes first (`None`: neither).
    pub fn next_time(&self) -> Option<Instant> {
        self.next_deadline().into_iter().chain(self.wake_at).min()
    }

    /// The limit passed by `now`, if any.
    pub fn expired(&self, now: Instant) -> Option<Expiry> {
        let (deadlines, progress) = self.deadlines.as_ref()?;
        deadlines.expired(progress, now)
    }

    /// Bytes moved: the idle clock starts again (and, reading, the first byte has come).
    fn touch(&mut self, read: bool) {
        if let Some((_, progress)) = self.deadlines.as_mut() {
            progress.last_activity = Instant::now();
            progress.got_first_byte |= read;
        }
    }

    /// A time limit ended the connection: reported like a blocking handler's timeout, and its
    /// output dropped.
    pub fn expire(&mut self, expiry: Expiry) {
        let failure = RequestFailure::Connection(expiry.error());
        self.shared.report(self.client(), &failure);
        self.ended.get_or_insert(expiry.reason());
        self.output.discard();
    }

    fn client(&self) -> Client<'_> {
        Client::connection(&self.peer, self.id)
    }

    /// Run one session callback (`hook` names it) with a context over this connection's output,
    /// its panic caught; nothing after a panic.
    fn event(
        &mut self,
        hook: &'static str,
        call: impl FnOnce(&mut dyn Session, &mut SessionContext<'_>),
    ) {
        if self.panicked {
            return;
        }
        let Connection {
            socket,
            session,
            shared,
            peer,
            output,
            id,
            ..
        } = self;
        let send_queue = || crate::send_queue::send_queue(socket).ok();
        let client = Client::connection(peer, *id);
        let scoped = Scoped { shared, client };
        let mut ctx = SessionContext::over_buffer(output, peer, &shared.local, &scoped)
            .with_send_queue(&send_queue);
        let ran = guarded(hook, || {
            call(&mut **session, &mut ctx);
            Ok(())
        });
        let asked = Asked {
            closing: ctx.closing(),
            wake_when_written: ctx.wants_wake_when_written(),
            reading: ctx.wants_reading(),
            wake_at: ctx.wants_wake_at(),
            held_input: ctx.held_input(),
        };
        match ran {
            Ok(()) => self.take(asked),
            Err(failure) => self.panicked(&failure),
        }
    }

    /// Note what the session asked during an event.
    fn take(&mut self, asked: Asked) {
        if let (Some(bytes), Some(id)) = (asked.held_input, self.holder) {
            let budget = &self.shared.gate.budget;
            budget.hold(&self.shared.name, id, &self.socket, bytes);
        }
        self.closing |= asked.closing;
        self.wake_when_written |= asked.wake_when_written;
        match asked.reading {
            Some(Reading::Paused) => self.paused = true,
            Some(Reading::Resumed) if self.paused => {
                self.paused = false;
                self.read_owed = true;
            }
            Some(Reading::Resumed) | None => {}
        }
        if asked.wake_at.is_some() {
            self.wake_at = asked.wake_at;
        }
    }

    /// The session panicked: report it with the peer, and let nothing more of it out.
    fn panicked(&mut self, failure: &RequestFailure) {
        self.shared.report(self.client(), failure);
        self.ended.get_or_insert(CloseReason::Error);
        self.panicked = true;
        self.output.discard();
    }

    /// The connection was adopted: the session may greet. (`buffer`, here and below: the loop's
    /// read buffer, for the reads a session's `resume_reading` makes at once.)
    pub fn on_open(&mut self, buffer: &mut [u8]) -> Next {
        self.event("on_open", |session, ctx| session.on_open(ctx));
        self.after_event(buffer)
    }

    /// The session's waker was called (ignored while lingering: the session is done).
    pub fn on_wake(&mut self, buffer: &mut [u8]) -> Next {
        if self.lingering.is_some() {
            return Next::Linger;
        }
        self.event("on_wake", |session, ctx| session.on_wake(ctx));
        self.after_event(buffer)
    }

    /// The loop's timer for this connection came due at `now`: if the session's wake time has come,
    /// it is forgotten (a timer fires once) and the session woken. `None` when it has not (the
    /// entry was for a time limit, or the session moved its wake later): nothing was done.
    pub fn on_timer(&mut self, now: Instant, buffer: &mut [u8]) -> Option<Next> {
        if self.wake_at.is_none_or(|at| at > now) {
            return None;
        }
        self.wake_at = None;
        Some(self.on_wake(buffer))
    }

    /// Read (unless the session paused reading) and hand the input to the session, then write what
    /// it queued; while lingering, read and drop instead. `peer_closed`: the event said the peer
    /// closed its side (or the socket failed), so a short read has not drained the socket — the end
    /// of stream is still to be read, and no new edge will announce it. A paused connection is not
    /// read, but a failed socket (a reset) still ends it.
    pub fn on_readable(&mut self, buffer: &mut [u8], peer_closed: bool) -> Next {
        if let Some(dropped) = self.lingering {
            return self.drop_input(buffer, dropped);
        }
        self.peer_closed |= peer_closed;
        if self.paused && peer_closed {
            if let Ok(Some(err)) = self.socket.take_error() {
                return self.failed(err);
            }
        }
        if let Err(err) = self.read_input(buffer) {
            return self.failed(err);
        }
        self.after_event(buffer)
    }

    /// The socket can take more output.
    pub fn on_writable(&mut self, buffer: &mut [u8]) -> Next {
        self.after_event(buffer)
    }

    /// Whether the connection is to be read now: the session takes input (not paused, closing or
    /// gone), the peer has not ended it, and the output has not backed up.
    fn reads(&self) -> bool {
        !self.eof
            && !self.closing
            && !self.panicked
            && !self.paused
            && self.pending() < MAX_PENDING_OUTPUT
    }

    /// Read until the socket would block or the connection is not to be read any more (see
    /// `reads`), handing each chunk to the session (`on_data`, and `on_eof` at the end of stream).
    ///
    /// # Errors
    /// The read failed (a reset, say): the connection is done.
    fn read_input(&mut self, buffer: &mut [u8]) -> io::Result<()> {
        while self.reads() {
            match self.read_wire(buffer) {
                Ok(0) => {
                    self.eof = true;
                    self.event("on_eof", |session, ctx| session.on_eof(ctx));
                }
                Ok(n) => {
                    self.touch(true);
                    let data = &buffer[..n];
                    self.event("on_data", |session, ctx| session.on_data(data, ctx));
                    if n < buffer.len() && !self.peer_closed && self.tls.is_none() {
                        // A short read drained the socket: data arriving later raises a new edge,
                        // so the read that would only say "would block" can be skipped.
                        break;
                    }
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => break,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => return Err(err),
            }
        }
        Ok(())
    }

    /// Lingering: read and drop until end of stream, an error, or the limit.
    fn drop_input(&mut self, buffer: &mut [u8], mut dropped: usize) -> Next {
        loop {
            match (&self.socket).read(buffer) {
                Ok(0) => return Next::Close,
                Ok(n) if dropped + n >= LINGER_LIMIT => return Next::Close,
                Ok(n) => dropped += n,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => break,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return Next::Close,
            }
        }
        self.lingering = Some(dropped);
        Next::Linger
    }

    /// The session's output not yet taken by the socket (or by rustls).
    fn pending(&self) -> usize {
        self.output.unwritten_len()
    }

    /// What follows every event: write the output, read at once if the session resumed reading
    /// (and write what that made), wake a session that asked to hear when its output is out (and
    /// write what that wake queued), then say what to watch next.
    fn after_event(&mut self, buffer: &mut [u8]) -> Next {
        loop {
            if self.panicked {
                return Next::Close;
            }
            if let Err(err) = self.flush() {
                return self.failed(err);
            }
            if std::mem::take(&mut self.read_owed) {
                if let Err(err) = self.read_input(buffer) {
                    return self.failed(err);
                }
                continue;
            }
            if self.unsent() || !self.wake_when_written || self.closing {
                return self.next();
            }
            self.wake_when_written = false;
            self.event("on_wake", |session, ctx| session.on_wake(ctx));
        }
    }

    /// Read the connection: plaintext from the socket, or decrypted under TLS (see `tls_wire`).
    fn read_wire(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        let (n, moved) = match self.tls.as_deref_mut() {
            None => {
                let n = (&self.socket).read(buffer)?;
                (n, n)
            }
            Some(tls) => super::tls_wire::read(tls, &self.socket, buffer)?,
        };
        self.shared.metrics.count(&mut self.bytes_in, moved as u64);
        Ok(n)
    }

    /// Write the output until it is all out or the socket would block.
    fn flush(&mut self) -> io::Result<()> {
        if let Some(tls) = self.tls.as_deref_mut() {
            let written = super::tls_wire::flush(tls, &self.socket, &mut self.output)?;
            if written > 0 {
                self.shared
                    .metrics
                    .count(&mut self.bytes_out, written as u64);
                self.touch(false);
            }
            return Ok(());
        }
        while self.pending() > 0 {
            match (&self.socket).write(self.output.unwritten()) {
                Ok(n) => {
                    self.output.consume(n);
                    self.shared.metrics.count(&mut self.bytes_out, n as u64);
                    self.touch(false);
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => break,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => return Err(err),
            }
        }
        Ok(())
    }

    /// Output not on the wire yet: the session's, or records rustls holds.
    fn unsent(&self) -> bool {
        self.pending() > 0 || self.tls.as_ref().is_some_and(|tls| tls.wants_write())
    }

    /// The step after an event, from the output left and the session's and peer's state.
    fn next(&mut self) -> Next {
        if self.closing && self.pending() == 0 && !self.notified {
            if let Some(tls) = self.tls.as_deref_mut() {
                // The graceful close of TLS: close_notify, then the socket's own.
                tls.send_close_notify();
                self.notified = true;
                if let Err(err) = self.flush() {
                    return self.failed(err);
                }
            }
        }
        let pending = self.unsent();
        if self.closing && !pending {
            return self.linger();
        }
        Next::Watch {
            read: !self.eof && !self.closing && self.pending() < MAX_PENDING_OUTPUT,
            write: pending,
        }
    }

    /// Output done and the session closing: close at once if the peer has closed too, else shut
    /// the sending side (the peer sees end of stream) and linger.
    fn linger(&mut self) -> Next {
        // The session ended it: what happens while lingering (a time limit, a reset) is the
        // peer's taking its time over the end, not why the connection ended.
        let ended = if self.eof {
            CloseReason::Eof
        } else {
            CloseReason::Handler
        };
        self.ended.get_or_insert(ended);
        if self.eof || self.lingering.is_some() {
            return if self.eof { Next::Close } else { Next::Linger };
        }
        if self.socket.shutdown(Direction::Write).is_err() {
            return Next::Close;
        }
        self.lingering = Some(0);
        Next::Linger
    }

    /// A read or write failed: reported like a blocking handler's I/O failure (a peer's reset at
    /// info level and a bounded rate), and the connection closes.
    fn failed(&mut self, err: io::Error) -> Next {
        let failure = RequestFailure::Connection(err);
        self.shared.report(self.client(), &failure);
        let reason = if failure.is_peer_fault() {
            CloseReason::PeerReset
        } else {
            CloseReason::Error
        };
        self.ended.get_or_insert(reason);
        self.output.discard();
        Next::Close
    }
}
