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

use std::sync::Arc;

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

    /// Someone called this session's [`SessionWaker`] (another connection has something for it).
    /// Default: nothing.
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
}

/// A session's view of its connection during one event.
pub struct SessionContext<'a> {
    output: &'a mut Vec<u8>,
    close: bool,
    /// Output already queued before this event (not counting what this event writes).
    pending_before: usize,
    /// Output queued outside `output` (by the host, across the plugin ABI).
    pending_elsewhere: usize,
    /// The session asked for `on_wake` once its output is written.
    wake_when_written: bool,
    pub peer: &'a Address,
    pub local: &'a Address,
    pub server: &'a dyn ServerContext,
}

impl<'a> SessionContext<'a> {
    /// For strategies: a context whose writes append to `output`.
    pub fn new(
        output: &'a mut Vec<u8>,
        peer: &'a Address,
        local: &'a Address,
        server: &'a dyn ServerContext,
    ) -> Self {
        let pending_before = output.len();
        SessionContext {
            output,
            close: false,
            pending_before,
            pending_elsewhere: 0,
            wake_when_written: false,
            peer,
            local,
            server,
        }
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

    /// Whether `wake_when_written` was called during this event.
    pub fn wants_wake_when_written(&self) -> bool {
        self.wake_when_written
    }

    /// Whether `close` was called during this event.
    pub fn closing(&self) -> bool {
        self.close
    }

    /// Bytes queued and not yet written to the socket, this event's included: a session that
    /// produces output on its own (a chat room) checks it to apply its overflow policy.
    pub fn pending(&self) -> usize {
        self.output.len() + self.pending_elsewhere
    }

    /// Bytes this event has queued so far.
    pub fn written(&self) -> usize {
        self.output.len() - self.pending_before
    }
}
