//! A TLS connection on an event loop before its session exists: the handshake, driven by
//! readiness like everything else on the loop, never blocking it, and bounded by the server's
//! `first_byte_timeout` (see `tls::handshake_timeout`). Once it is done the loop makes the
//! session — which sees the client's identity (`SessionInfo::tls`) — and the connection goes on
//! as a [`Connection`](super::connection::Connection) over the same rustls state; a failed or
//! late handshake is reported (`TLS handshake failed: ...`) and closed without a session ever
//! being made.

use std::io::{self, Read};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::ServerConnection;
use socket2::Socket;
use sockserv_plugin::Address;

use crate::metrics::{ConnId, Refusal};
use crate::request::Shared;
use crate::tls::{HandshakeError, HANDSHAKE_RECORD};
use crate::{Client, RequestFailure};

/// What a handshake needs next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Step {
    /// Not done: watch for readability, and writability if `write`.
    Wait { write: bool },
    /// Done: the session can be made.
    Done,
    /// Failed (reported): close.
    Failed,
}

pub(super) struct Handshake {
    pub socket: Socket,
    tls: ServerConnection,
    pub shared: Arc<Shared>,
    pub peer: Address,
    /// The connection's id.
    pub id: ConnId,
    /// When it must be done by.
    pub deadline: Instant,
    limit: Duration,
    /// No byte has come yet (the first one says whether the client speaks TLS).
    first: bool,
    /// Bytes read and written, for the connection's log line.
    pub moved: (u64, u64),
}

impl Handshake {
    /// A handshake for a connection adopted now, with the time `limit`.
    ///
    /// # Errors
    /// rustls cannot make a connection from `config` (reported by the caller).
    pub fn new(
        socket: Socket,
        config: Arc<rustls::ServerConfig>,
        shared: Arc<Shared>,
        peer: Address,
        id: ConnId,
        limit: Duration,
    ) -> Result<Self, (Socket, rustls::Error)> {
        let mut tls = match ServerConnection::new(config) {
            Ok(tls) => tls,
            Err(err) => return Err((socket, err)),
        };
        crate::tls::limit_buffers(&mut tls);
        Ok(Handshake {
            socket,
            tls,
            shared,
            peer,
            id,
            deadline: Instant::now() + limit,
            limit,
            first: true,
            moved: (0, 0),
        })
    }

    /// Read and write what the socket allows; report a failure.
    pub fn advance(&mut self) -> Step {
        match self.drive() {
            Ok(step) => step,
            Err(err) => {
                self.fail(&err);
                Step::Failed
            }
        }
    }

    fn drive(&mut self) -> Result<Step, HandshakeError> {
        loop {
            while self.tls.wants_write() {
                match self.tls.write_tls(&mut &self.socket) {
                    Ok(n) => self.moved.1 += n as u64,
                    Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                        return Ok(Step::Wait { write: true })
                    }
                    Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                    Err(err) => return Err(HandshakeError::Io(err)),
                }
            }
            if !self.tls.is_handshaking() {
                return Ok(Step::Done);
            }
            let mut sniff = Sniff {
                socket: &self.socket,
                first: &mut self.first,
                plaintext: false,
            };
            match self.tls.read_tls(&mut sniff) {
                Ok(0) => return Err(HandshakeError::Closed),
                Ok(n) if sniff.plaintext => {
                    self.moved.0 += n as u64;
                    return Err(HandshakeError::NotTls);
                }
                Ok(n) => {
                    self.moved.0 += n as u64;
                    self.tls
                        .process_new_packets()
                        .map_err(HandshakeError::Tls)?;
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                    return Ok(Step::Wait { write: false })
                }
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return Err(HandshakeError::Io(err)),
            }
        }
    }

    /// Send rustls's alert if it made one (without waiting) and report why it failed.
    fn fail(&mut self, err: &HandshakeError) {
        while self.tls.wants_write() {
            if self.tls.write_tls(&mut &self.socket).is_err() {
                break;
            }
        }
        let failure = RequestFailure::Handshake(err.to_string());
        self.shared.metrics.refused(Refusal::TlsHandshake);
        let client = Client::connection(&self.peer, self.id);
        self.shared.report(client, &failure);
    }

    /// Its time is up: reported.
    pub fn expire(&mut self) {
        self.fail(&HandshakeError::TimedOut(self.limit));
    }

    /// The handshake's state, for the connection that goes on.
    pub fn into_parts(self) -> Parts {
        Parts {
            socket: self.socket,
            tls: self.tls,
            shared: self.shared,
            peer: self.peer,
            id: self.id,
            moved: self.moved,
        }
    }
}

/// A finished handshake's state (see [`Handshake::into_parts`]).
pub(super) struct Parts {
    pub socket: Socket,
    pub tls: ServerConnection,
    pub shared: Arc<Shared>,
    pub peer: Address,
    pub id: ConnId,
    /// Bytes read and written by the handshake.
    pub moved: (u64, u64),
}

/// Reads the socket for rustls and looks at the connection's first byte: a client that does not
/// begin with a handshake record speaks something else.
struct Sniff<'a> {
    socket: &'a Socket,
    first: &'a mut bool,
    plaintext: bool,
}

impl Read for Sniff<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = (&mut &*self.socket).read(buf)?;
        if n > 0 && std::mem::take(self.first) {
            self.plaintext = buf[0] != HANDSHAKE_RECORD;
        }
        Ok(n)
    }
}
