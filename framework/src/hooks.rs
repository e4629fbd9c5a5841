//! BaseServer's overridable methods, as a trait the server holds: `verify_request`, `handle_error`,
//! `handle_timeout`, `service_actions`. The defaults accept every client and log every failure; a user
//! embedding the framework overrides what it needs and keeps the rest.

use std::fmt;

use sockserv_plugin::{Address, HandlerError};

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

    /// A request failed. Default: one error line with the server name and the peer.
    fn handle_error(&self, server: &str, peer: &Address, failure: &RequestFailure) {
        log::error!("{server}: request from {peer}: {failure}");
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
