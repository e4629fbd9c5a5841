//! Event-driven handling, for strategies that serve many connections per thread (the `reactor`).
//!
//! A blocking [`RequestHandler`](crate::RequestHandler) owns a thread while its connection is open.
//! A [`Session`] instead is called when something happened — bytes arrived, the peer closed, another
//! connection woke it — does its work without blocking, and returns. Sessions are sans-IO: the
//! reactor does every read and write, keeps each connection's pending output (bounded), and watches
//! the socket for writability only while output is pending.
//!
//! A handler supports the reactor by returning a session from
//! [`HandlerFactory::new_session`](crate::HandlerFactory::new_session); one whose factory returns
//! `None` is refused under the reactor when the config is checked.
//!
//! **Flow control and time.** A session that cannot take more input yet (a chat member over its
//! rate) calls [`SessionContext::pause_reading`]: the reactor stops reading the connection, its
//! bytes stay in the socket, and TCP slows the peer down — the backpressure a blocking handler gets
//! by not calling `read`. [`SessionContext::wake_after`] (or [`wake_at`](SessionContext::wake_at))
//! asks for [`Session::on_wake`] at a time, on the session's own loop and without a thread; there,
//! or in any other callback, [`SessionContext::resume_reading`] lets the input flow again.
//!
//! **Across the plugin ABI** (1.1) the context's requests other than writing and closing are not
//! carried yet: a plugin's session that calls `wake_when_written`, `pause_reading`,
//! `resume_reading`, `wake_after` or `wake_at` is not paused and not woken by them (a later minor
//! version may carry them), and its `send_queue` is `None`. Built-in sessions get all of them.
//! ABI 1.2 carries [`SessionInfo::tls`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::{Address, ServerContext};

/// One connection, driven by events. Every method must return promptly: it runs on an event loop
/// shared with many other connections.
pub trait Session: Send {
    /// The connection was accepted; a greeting may be written. Default: nothing.
    fn on_open(&mut self, _ctx: &mut SessionContext<'_>) {}

    /// Bytes arrived (all of them: the session keeps what it cannot use yet).
    fn on_data(&mut self, data: &[u8], ctx: &mut SessionContext<'_>);

    /// The peer closed its sending side. Default: close once pending output is written.
    fn on_eof(&mut self, ctx: &mut SessionContext<'_>) {
        ctx.close();
    }

    /// Someone called this session's [`SessionWaker`] (another connection has something for it),
    /// the time asked for with [`SessionContext::wake_after`] has come, or the output is out after
    /// [`SessionContext::wake_when_written`]. Wakes coalesce and do not say which it was: a session
    /// looks at its own state. Default: nothing.
    fn on_wake(&mut self, _ctx: &mut SessionContext<'_>) {}

    /// The connection is gone (closed by either side, or the server is stopping). Default: nothing.
    fn on_close(&mut self) {}
}

/// Wakes one session from any thread: its loop calls [`Session::on_wake`] soon after. Wakes coalesce.
pub trait SessionWaker: Send + Sync {
    fn wake(&self);
}

/// What a session is told when it is made.
pub struct SessionInfo<'a> {
    pub peer: &'a Address,
    pub local: &'a Address,
    pub server: &'a dyn ServerContext,
    /// Wakes this session; keep it to be woken later (e.g. by a chat room).
    pub waker: Arc<dyn SessionWaker>,
    /// The connection's TLS parameters and peer identity, on a server with `[server.tls]`: a
    /// session is made once the handshake is done. `None` without TLS.
    pub tls: Option<&'a crate::TlsInfo>,
}

/// A connection's outgoing bytes as a strategy keeps them between events: what its session queued,
/// of which a prefix may already be on the wire. The prefix is kept (and reclaimed now and then)
/// rather than removed at every write, so a partial write costs no copy; [`SessionContext::pending`]
/// counts only the rest, which is what a session bounding its queue (a chat member) must see.
#[derive(Debug, Default)]
pub struct OutputBuffer {
    bytes: Vec<u8>,
    /// How many bytes at the front of `bytes` the socket has taken.
    written: usize,
}

impl OutputBuffer {
    /// The bytes the socket has not taken yet, oldest first.
    pub fn unwritten(&self) -> &[u8] {
        &self.bytes[self.written..]
    }

    /// How many bytes the socket has not taken yet.
    pub fn unwritten_len(&self) -> usize {
        self.bytes.len() - self.written
    }

    /// The socket took the next `n` bytes (at most what is unwritten).
    pub fn consume(&mut self, n: usize) {
        self.written = (self.written + n).min(self.bytes.len());
        if self.written == self.bytes.len() {
            self.bytes.clear();
            self.written = 0;
        } else if self.written > self.bytes.len() / 2 {
            // Reclaim the written half rather than letting the buffer creep forward for ever.
            self.bytes.drain(..self.written);
            self.written = 0;
        }
    }

    /// Forget everything unwritten (the connection failed: nobody will read it).
    pub fn discard(&mut self) {
        self.bytes.clear();
        self.written = 0;
    }
}

/// What a session asked of its connection's reading during one event (the last call wins).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reading {
    /// [`SessionContext::pause_reading`]: read nothing more until resumed.
    Paused,
    /// [`SessionContext::resume_reading`]: read again, and at once.
    Resumed,
}

/// A session's view of its connection during one event.
pub struct SessionContext<'a> {
    output: &'a mut Vec<u8>,
    /// How many bytes at the front of `output` are already on the wire (not pending).
    on_wire: usize,
    close: bool,
    /// The length of `output` before this event (so what this event writes can be told apart).
    len_before: usize,
    /// Output queued outside `output` (by the host, across the plugin ABI).
    pending_elsewhere: usize,
    /// The session asked for `on_wake` once its output is written.
    wake_when_written: bool,
    /// The session paused or resumed reading during this event (the last call wins).
    reading: Option<Reading>,
    /// The session asked for `on_wake` at this time (the last call wins).
    wake_at: Option<Instant>,
    /// The input the session said it holds in an incomplete frame or line (the last call wins).
    held_input: Option<usize>,
    /// Asks the socket for its send queue (see [`send_queue`](Self::send_queue)); `None`: nobody
    /// can.
    send_queue: Option<&'a dyn Fn() -> Option<usize>>,
    pub peer: &'a Address,
    pub local: &'a Address,
    pub server: &'a dyn ServerContext,
}

impl<'a> SessionContext<'a> {
    /// For strategies: a context whose writes append to `output`, all of which counts as pending.
    pub fn new(
        output: &'a mut Vec<u8>,
        peer: &'a Address,
        local: &'a Address,
        server: &'a dyn ServerContext,
    ) -> Self {
        let len_before = output.len();
        SessionContext {
            output,
            on_wire: 0,
            close: false,
            len_before,
            pending_elsewhere: 0,
            wake_when_written: false,
            reading: None,
            wake_at: None,
            held_input: None,
            send_queue: None,
            peer,
            local,
            server,
        }
    }

    /// For strategies: a context whose writes append to `output`, where only what the socket has
    /// not taken yet counts as pending.
    pub fn over_buffer(
        output: &'a mut OutputBuffer,
        peer: &'a Address,
        local: &'a Address,
        server: &'a dyn ServerContext,
    ) -> Self {
        let on_wire = output.written;
        let mut ctx = SessionContext::new(&mut output.bytes, peer, local, server);
        ctx.on_wire = on_wire;
        ctx
    }

    /// For strategies: [`send_queue`](Self::send_queue) asks `probe`, which asks the
    /// connection's socket.
    #[must_use = "the context with the probe is the one to hand the session"]
    pub fn with_send_queue(mut self, probe: &'a dyn Fn() -> Option<usize>) -> Self {
        self.send_queue = Some(probe);
        self
    }

    /// For the plugin glue: a context whose own buffer starts empty while the host holds `pending`.
    pub(crate) fn over_host(
        output: &'a mut Vec<u8>,
        pending: usize,
        peer: &'a Address,
        local: &'a Address,
        server: &'a dyn ServerContext,
    ) -> Self {
        let mut ctx = SessionContext::new(output, peer, local, server);
        ctx.pending_elsewhere = pending;
        ctx
    }

    /// Queue bytes for the peer.
    pub fn write(&mut self, bytes: &[u8]) {
        self.output.extend_from_slice(bytes);
    }

    /// Close the connection once everything queued is written.
    pub fn close(&mut self) {
        self.close = true;
    }

    /// Call `on_wake` once everything queued so far is written to the socket (at once if nothing is
    /// pending): for a session that holds output back until its peer catches up.
    pub fn wake_when_written(&mut self) {
        self.wake_when_written = true;
    }

    /// Stop reading this connection until [`resume_reading`](Self::resume_reading): no more
    /// `on_data` (nor `on_eof`) comes, the unread bytes stay in the socket, and once its buffers are
    /// full the peer's writes stall — backpressure on the sender. Output is still written, wakes
    /// still come, and a reset or a failed socket still closes the connection (`on_close`); a peer
    /// that closed its side meanwhile is seen as `on_eof` after its last bytes, once resumed.
    /// Bytes already handed to this session are its own to keep. Pausing a paused connection does
    /// nothing.
    pub fn pause_reading(&mut self) {
        self.reading = Some(Reading::Paused);
    }

    /// Read this connection again after [`pause_reading`](Self::pause_reading). Callable from any
    /// callback, typically `on_wake`. The reactor reads at once, before this event's entry point
    /// returns: bytes that arrived while paused raise no new readiness event (its readiness is
    /// edge-triggered), so they are delivered now, through `on_data` (and `on_eof`). Resuming a
    /// connection that is not paused does nothing.
    pub fn resume_reading(&mut self) {
        self.reading = Some(Reading::Resumed);
    }

    /// Call this session's `on_wake` once `delay` has passed (measured on the monotonic clock from
    /// now; never earlier, and soon after on a loop that is not overloaded). Each connection has
    /// one such timer: a later call, in this event or another, replaces the time asked for before.
    /// The timer fires once, and is forgotten when the connection closes.
    pub fn wake_after(&mut self, delay: Duration) {
        self.wake_at(Instant::now() + delay);
    }

    /// [`wake_after`](Self::wake_after) at an instant rather than after a delay (a time in the past
    /// wakes on the loop's next turn): for a session that computed the time from its own `now`.
    pub fn wake_at(&mut self, at: Instant) {
        self.wake_at = Some(at);
    }

    /// Whether `wake_when_written` was called during this event.
    pub fn wants_wake_when_written(&self) -> bool {
        self.wake_when_written
    }

    /// For strategies: whether this event paused or resumed reading (the last call wins).
    pub fn wants_reading(&self) -> Option<Reading> {
        self.reading
    }

    /// For strategies: when this event asked for `on_wake`, if it did (the last call wins).
    pub fn wants_wake_at(&self) -> Option<Instant> {
        self.wake_at
    }

    /// Say how many bytes of input the session holds now in a frame or line not yet whole (call
    /// it whenever the figure changes; 0 when nothing is held). The server's
    /// `max_buffered_input` budget is the sum over all its connections: past it, the connection
    /// holding the most is closed. As `RequestControl::hold_input` for blocking handlers; not
    /// carried across the plugin ABI yet.
    pub fn hold_input(&mut self, bytes: usize) {
        self.held_input = Some(bytes);
    }

    /// What `hold_input` said during this event, if it was called.
    pub fn held_input(&self) -> Option<usize> {
        self.held_input
    }

    /// Whether `close` was called during this event.
    pub fn closing(&self) -> bool {
        self.close
    }

    /// Bytes queued and not yet written to the socket, this event's included: a session that
    /// produces output on its own (a chat room) checks it to apply its overflow policy. Bytes the
    /// socket has taken are not counted, even while the peer has not read them yet.
    pub fn pending(&self) -> usize {
        self.output.len() - self.on_wire + self.pending_elsewhere
    }

    /// Bytes the socket has taken from this connection's output that the peer has not taken yet:
    /// the socket's send queue, as [`RequestControl::send_queue`](crate::RequestControl::send_queue)
    /// says it. With [`pending`](Self::pending) a session sees the whole way to its peer: a socket
    /// whose send buffer has grown to megabytes takes more only when the peer has freed much of
    /// it, so `pending` may stand still for seconds while the peer reads steadily; this figure
    /// moves as the peer reads. Asked of the socket at each call (one system call). `None` where
    /// the strategy cannot say; across the plugin ABI it is not carried yet.
    pub fn send_queue(&self) -> Option<usize> {
        self.send_queue.and_then(|probe| probe())
    }

    /// Bytes this event has queued so far.
    pub fn written(&self) -> usize {
        self.output.len() - self.len_before
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Server;

    impl ServerContext for Server {
        fn server_name(&self) -> &str {
            "test"
        }

        fn shutdown(&self) {}
    }

    /// Runs one event that writes `bytes`; returns what the context said was pending after it.
    fn write(output: &mut OutputBuffer, bytes: &[u8]) -> usize {
        let peer = Address::Inet(([127, 0, 0, 1], 1).into());
        let mut ctx = SessionContext::over_buffer(output, &peer, &peer, &Server);
        ctx.write(bytes);
        assert_eq!(ctx.written(), bytes.len());
        ctx.pending()
    }

    #[test]
    fn pending_leaves_out_what_the_socket_took_before_and_after_reclaiming() {
        let mut output = OutputBuffer::default();
        assert_eq!(write(&mut output, &[1; 100]), 100);
        // Less than half written: the prefix stays in the buffer but is not pending.
        output.consume(30);
        assert_eq!(output.unwritten(), &[1; 70][..]);
        assert_eq!(write(&mut output, &[2; 10]), 80);
        // More than half written: the prefix is reclaimed; the count is the same either way.
        output.consume(50);
        assert_eq!(output.unwritten_len(), 30);
        assert_eq!(write(&mut output, &[3; 5]), 35);
        assert_eq!(
            output.unwritten(),
            [&[1; 20][..], &[2; 10], &[3; 5]].concat()
        );
        output.consume(usize::MAX);
        assert_eq!(output.unwritten_len(), 0);
        assert_eq!(write(&mut output, b"x"), 1);
    }

    #[test]
    fn reading_and_the_timer_keep_the_last_request_of_an_event() {
        let peer = Address::Inet(([127, 0, 0, 1], 1).into());
        let mut output = Vec::new();
        let mut ctx = SessionContext::new(&mut output, &peer, &peer, &Server);
        assert_eq!((ctx.wants_reading(), ctx.wants_wake_at()), (None, None));
        ctx.pause_reading();
        ctx.resume_reading();
        assert_eq!(ctx.wants_reading(), Some(Reading::Resumed));
        ctx.pause_reading();
        assert_eq!(ctx.wants_reading(), Some(Reading::Paused));
        let before = Instant::now();
        ctx.wake_after(Duration::from_secs(60));
        let asked = ctx.wants_wake_at().unwrap();
        assert!(asked >= before + Duration::from_secs(60));
        assert!(asked <= Instant::now() + Duration::from_secs(60));
        ctx.wake_at(before);
        assert_eq!(ctx.wants_wake_at(), Some(before));
    }
}
