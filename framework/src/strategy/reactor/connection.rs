//! One connection on an event loop: its socket, its session, and its pending output. The loop calls
//! `on_readable`, `on_writable` and `on_wake`; each returns what the connection needs next.

use std::io::{self, Read, Write};
use std::net::Shutdown as Direction;
use std::sync::Arc;
use std::time::Instant;

use socket2::Socket;
use sockserv_plugin::{Address, OutputBuffer, Session, SessionContext};

use super::MAX_PENDING_OUTPUT;
use crate::request::Shared;

/// What the loop should do with a connection after an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Next {
    /// Keep it, reading if `read` and watching for writability if `write`.
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
    /// Closing, waiting for the peer's end of stream (see [`Next::Linger`]); bytes dropped so far.
    lingering: Option<usize>,
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
            output: OutputBuffer::default(),
            closing: false,
            eof: false,
            lingering: None,
            wake_when_written: false,
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
        let mut ctx = SessionContext::over_buffer(output, peer, &shared.local, &**shared);
        call(&mut **session, &mut ctx);
        self.closing |= ctx.closing();
        self.wake_when_written |= ctx.wants_wake_when_written();
    }

    pub fn on_open(&mut self) -> Next {
        self.event(|session, ctx| session.on_open(ctx));
        self.flush()
    }

    pub fn on_wake(&mut self) -> Next {
        if self.lingering.is_some() {
            return Next::Linger;
        }
        self.event(|session, ctx| session.on_wake(ctx));
        self.flush()
    }

    /// Read until the socket would block (or output backs up), handing each chunk to the session.
    /// `peer_closed`: the event said the peer closed its side, so a short read has not drained the
    /// socket — the end of stream is still to be read, and no new edge will announce it.
    pub fn on_readable(&mut self, buffer: &mut [u8], peer_closed: bool) -> Next {
        if let Some(dropped) = self.lingering {
            return self.drop_input(buffer, dropped);
        }
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

    fn pending(&self) -> usize {
        self.output.unwritten_len()
    }

    /// Write what is pending until done or the socket would block, waking a session that asked to
    /// hear when its output is out; say what to watch next.
    fn flush(&mut self) -> Next {
        if !self.write_pending() {
            return Next::Close;
        }
        while self.pending() == 0 && self.wake_when_written && !self.closing {
            self.wake_when_written = false;
            self.event(|session, ctx| session.on_wake(ctx));
            if !self.write_pending() {
                return Next::Close;
            }
        }
        self.next()
    }

    /// Write until done or the socket would block; false when the connection failed.
    fn write_pending(&mut self) -> bool {
        while self.pending() > 0 {
            match (&self.socket).write(self.output.unwritten()) {
                Ok(n) => {
                    self.output.consume(n);
                    self.bytes_out += n as u64;
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => break,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => {
                    self.failed(&err);
                    return false;
                }
            }
        }
        true
    }

    fn next(&mut self) -> Next {
        let pending = self.pending() > 0;
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
        if self.eof || self.lingering.is_some() {
            return if self.eof { Next::Close } else { Next::Linger };
        }
        if self.socket.shutdown(Direction::Write).is_err() {
            return Next::Close;
        }
        self.lingering = Some(0);
        Next::Linger
    }

    fn failed(&mut self, err: &io::Error) -> Next {
        log::debug!("{}: {}: {err}", self.shared.name, self.peer);
        self.output.discard();
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
