//! One connection on an event loop: its socket, its session, and its pending output. The loop calls
//! `on_readable`, `on_writable` and `on_wake`; each returns what the connection needs next.

use std::io::{self, Read, Write};
use std::net::Shutdown as Direction;
use std::sync::Arc;
use std::time::Instant;

use socket2::Socket;
use sockserv_plugin::{Address, Session, SessionContext};

use super::MAX_PENDING_OUTPUT;
use crate::request::Shared;

/// What the loop should do with a connection after an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Next {
    /// Keep it, reading if `read` and watching for writability if `write`.
    Watch { read: bool, write: bool },
    /// Close it now.
    Close,
}

pub(super) struct Connection {
    pub socket: Socket,
    session: Box<dyn Session>,
    shared: Arc<Shared>,
    peer: Address,
    /// Output queued by the session; `written` bytes of it are already on the wire.
    output: Vec<u8>,
    written: usize,
    /// The session asked to close once its output is out.
    closing: bool,
    /// The peer closed its side: nothing more to read.
    eof: bool,
    started: Instant,
    bytes_in: u64,
    bytes_out: u64,
}

impl Connection {
    pub fn new(
        socket: Socket,
        session: Box<dyn Session>,
        shared: Arc<Shared>,
        peer: Address,
    ) -> Self {
        Connection {
            socket,
            session,
            shared,
            peer,
            output: Vec::new(),
            written: 0,
            closing: false,
            eof: false,
            started: Instant::now(),
            bytes_in: 0,
            bytes_out: 0,
        }
    }

    /// Run one session callback with a context over this connection's output.
    fn event(&mut self, call: impl FnOnce(&mut dyn Session, &mut SessionContext<'_>)) {
        let Connection {
            session,
            shared,
            peer,
            output,
            ..
        } = self;
        let mut ctx = SessionContext::new(output, peer, &shared.local, &**shared);
        call(&mut **session, &mut ctx);
        self.closing |= ctx.closing();
    }

    pub fn on_open(&mut self) -> Next {
        self.event(|session, ctx| session.on_open(ctx));
        self.flush()
    }

    pub fn on_wake(&mut self) -> Next {
        self.event(|session, ctx| session.on_wake(ctx));
        self.flush()
    }

    /// Read until the socket would block (or output backs up), handing each chunk to the session.
    /// `peer_closed`: the event said the peer closed its side, so a short read has not drained the
    /// socket — the end of stream is still to be read, and no new edge will announce it.
    pub fn on_readable(&mut self, buffer: &mut [u8], peer_closed: bool) -> Next {
        while !self.eof && !self.closing && self.pending() < MAX_PENDING_OUTPUT {
            match (&self.socket).read(buffer) {
                Ok(0) => {
                    self.eof = true;
                    self.event(|session, ctx| session.on_eof(ctx));
                }
                Ok(n) => {
                    self.bytes_in += n as u64;
                    let data = &buffer[..n];
                    self.event(|session, ctx| session.on_data(data, ctx));
                    if n < buffer.len() && !peer_closed {
                        // A short read drained the socket: data arriving later raises a new edge,
                        // so the read that would only say "would block" can be skipped.
                        break;
                    }
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => break,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => return self.failed(&err),
            }
        }
        self.flush()
    }

    pub fn on_writable(&mut self) -> Next {
        self.flush()
    }

    fn pending(&self) -> usize {
        self.output.len() - self.written
    }

    /// Write what is pending until done or the socket would block; say what to watch next.
    fn flush(&mut self) -> Next {
        while self.pending() > 0 {
            match (&self.socket).write(&self.output[self.written..]) {
                Ok(n) => {
                    self.written += n;
                    self.bytes_out += n as u64;
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => break,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => return self.failed(&err),
            }
        }
        if self.pending() == 0 {
            self.output.clear();
            self.written = 0;
        } else if self.written > self.output.len() / 2 {
            // Reclaim the written half rather than letting the buffer creep forward for ever.
            self.output.drain(..self.written);
            self.written = 0;
        }
        self.next()
    }

    fn next(&self) -> Next {
        let pending = self.pending() > 0;
        if self.closing && !pending {
            return Next::Close;
        }
        Next::Watch {
            read: !self.eof && !self.closing && self.pending() < MAX_PENDING_OUTPUT,
            write: pending,
        }
    }

    fn failed(&mut self, err: &io::Error) -> Next {
        log::debug!("{}: {}: {err}", self.shared.name, self.peer);
        self.output.clear();
        self.written = 0;
        Next::Close
    }

    /// The end: tell the session, shut the socket down, log the connection's line.
    pub fn close(mut self) {
        self.session.on_close();
        let _ = self.socket.shutdown(Direction::Both);
        log::info!(
            "{}: {} served in {:.1} ms, {} bytes in, {} bytes out",
            self.shared.name,
            self.peer,
            self.started.elapsed().as_secs_f64() * 1e3,
            self.bytes_in,
            self.bytes_out
        );
    }
}
