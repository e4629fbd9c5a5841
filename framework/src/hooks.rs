//! BaseServer's overridable methods, as a trait the server holds: `verify_request`, `handle_error`,
//! `handle_timeout`, `service_actions`. The defaults accept every client and log every failure; a user
//! embedding the framework overrides what it needs and keeps the rest.
//!
//! Failures are logged by whose doing they are: the peer's (a reset, a broken pipe, an oversized
//! datagram; see [`RequestFailure::is_peer_fault`]) at info level and at a bounded rate (see
//! `peer_log`), the server's or a handler's at error level.

use std::fmt;
use std::io;

use sockserv_plugin::{Address, HandlerError};

use crate::metrics::ConnId;
use crate::peer_log::Fields;
use crate::{log_peer_event, log_with};

/// Who a request is for: its peer, and for a connection, the connection's id, which begins every
/// log line about it after the server's name (`echo: c12: request from 127.0.0.1:40000: …`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Client<'a> {
    /// The peer: the connection's or datagram's source, or the client a PROXY header named.
    pub peer: &'a Address,
    /// The connection's id; `None` for a datagram.
    pub conn: Option<ConnId>,
}

impl<'a> Client<'a> {
    /// A connection's client.
    pub fn connection(peer: &'a Address, conn: ConnId) -> Client<'a> {
        Client {
            peer,
            conn: Some(conn),
        }
    }

    /// A datagram's sender.
    pub fn datagram(peer: &'a Address) -> Client<'a> {
        Client { peer, conn: None }
    }
}

impl Client<'_> {
    /// What a log line about this client writes after the server's name: `c12: `, or nothing
    /// for a datagram.
    pub fn tag(&self) -> Tag {
        Tag(self.conn)
    }
}

/// A connection's id as a log line's prefix (see [`Client::tag`]).
#[derive(Debug, Clone, Copy)]
pub struct Tag(Option<ConnId>);

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(conn) => write!(f, "{conn}: "),
            None => Ok(()),
        }
    }
}

/// How one request failed. Reported to `handle_error`; the request is closed and the server goes on.
#[derive(Debug)]
pub enum RequestFailure {
    /// A handler hook (`setup`, `handle` or `finish`) returned an error.
    Hook {
        hook: &'static str,
        error: HandlerError,
    },
    /// A handler hook panicked; the panic was caught at the request's boundary.
    Panic { hook: &'static str, message: String },
    /// A datagram larger than `max_packet_size` arrived; it was dropped, not cut.
    Oversized { limit: usize },
    /// Sending a datagram's reply failed.
    Reply(std::io::Error),
    /// The strategy could not start the request (no thread or process could be made).
    Dispatch(String),
    /// The connection failed outside any handler call (the reactor's own reads and writes).
    Connection(io::Error),
    /// The server closed the connection under its handler at the end of a drain
    /// (`drain_timeout`); the handler then failed with `failure`.
    ClosedByDrain(Box<RequestFailure>),
    /// The TLS handshake failed (the client spoke plaintext, offered nothing in common, presented
    /// no or an unknown certificate, or was too slow); no handler ran.
    Handshake(String),
    /// A forked request child reported that its peer ended the request (see
    /// [`PEER_FAULT_STATUS`](crate::PEER_FAULT_STATUS)); the child's own log has the details.
    EndedByPeer,
}

impl RequestFailure {
    /// The I/O error behind this failure, if there is one.
    pub fn io_error(&self) -> Option<&io::Error> {
        match self {
            RequestFailure::Hook {
                error: HandlerError::Io(err),
                ..
            }
            | RequestFailure::Reply(err)
            | RequestFailure::Connection(err) => Some(err),
            _ => None,
        }
    }

    /// Whether the peer caused this, not the server or its handler: the connection was reset or
    /// aborted, the peer stopped reading (a broken pipe), it closed in the middle of a read, or it
    /// sent a datagram over `max_packet_size` — or the drain closed it, as it was meant to. Such
    /// failures are logged at info level, at a bounded rate.
    pub fn is_peer_fault(&self) -> bool {
        match self {
            RequestFailure::Hook {
                error: HandlerError::Io(err),
                ..
            }
            | RequestFailure::Reply(err)
            | RequestFailure::Connection(err) => is_peer_io_error(err),
            RequestFailure::Oversized { .. }
            | RequestFailure::Handshake(_)
            | RequestFailure::EndedByPeer
            | RequestFailure::ClosedByDrain(_) => true,
            RequestFailure::Hook { .. }
            | RequestFailure::Panic { .. }
            | RequestFailure::Dispatch(_) => false,
        }
    }
}

/// I/O errors that mean the peer went away, refused us, or ran into one of the server's time limits
/// (`idle_timeout`, `first_byte_timeout`, `max_connection_duration`).
fn is_peer_io_error(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::NotConnected
            | io::ErrorKind::UnexpectedEof
            | io::ErrorKind::TimedOut
    )
}

impl fmt::Display for RequestFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RequestFailure::Hook { hook, error } => write!(f, "{hook} failed: {error}"),
            RequestFailure::Panic { hook, message } => write!(f, "{hook} panicked: {message}"),
            RequestFailure::Oversized { limit } => write!(
                f,
                "datagram larger than max_packet_size ({limit} bytes) dropped"
            ),
            RequestFailure::Reply(err) => write!(f, "cannot send the reply: {err}"),
            RequestFailure::Dispatch(msg) => write!(f, "cannot start the request: {msg}"),
            RequestFailure::Connection(err) => write!(f, "the connection failed: {err}"),
            RequestFailure::ClosedByDrain(failure) => {
                write!(f, "closed at the end of the drain ({failure})")
            }
            RequestFailure::EndedByPeer => {
                write!(f, "the peer ended the request (reset or closed early)")
            }
            RequestFailure::Handshake(why) => write!(f, "TLS handshake failed: {why}"),
        }
    }
}

/// The server's overridable hooks. Called from the serving thread, except `handle_error`, which runs
/// where the request ran (a worker thread, or the child process under forking).
pub trait Hooks: Send + Sync {
    /// Accept or refuse a client before any handler runs; a refused connection is closed at once.
    fn verify_request(&self, _peer: &Address) -> bool {
        true
    }

    /// A request failed. Default: one line with the server name, the connection's id and the
    /// peer — at error level for a failure of the server's or its handler's, at info level and a
    /// bounded rate for the peer's doing ([`RequestFailure::is_peer_fault`]).
    fn handle_error(&self, server: &str, client: Client<'_>, failure: &RequestFailure) {
        if failure.is_peer_fault() {
            let fields = Fields::of(server, client);
            log_peer_event!(
                &fields,
                format_args!(
                    "{server}: {}request from {}: {failure}",
                    client.tag(),
                    client.peer
                ),
            );
        } else {
            let fields = Fields::of(server, client);
            log_with!(
                log::Level::Error,
                &fields,
                format_args!(
                    "{server}: {}request from {}: {failure}",
                    client.tag(),
                    client.peer
                ),
            );
        }
    }

    /// No request arrived within the server's `timeout`.
    fn handle_timeout(&self) {}

    /// Called once per turn of the serving loop, after each wake-up.
    fn service_actions(&self) {}
}

/// The hooks a config-driven server uses: every default.
#[derive(Debug, Default, Clone, Copy)]
pub struct DefaultHooks;

impl Hooks for DefaultHooks {}
