//! Errors of the server core: binding, serving and closing. Request failures are not here: they go to
//! the `handle_error` hook and never end the server (see `hooks`).

use std::fmt;
use std::io;
use std::path::PathBuf;

use crate::Endpoint;

/// Why a server could not be bound or could not go on serving.
#[derive(Debug)]
pub enum ServerError {
    /// Making, configuring, binding or listening on the socket failed (address in use, permission…).
    Bind {
        /// The endpoint being bound.
        endpoint: Endpoint,
        /// What was being done to it, a verb that reads before the endpoint (`bind`, `listen on`).
        step: &'static str,
        /// The system's error.
        source: io::Error,
    },
    /// A Unix socket path already has a live server behind it.
    UnixSocketInUse {
        /// The socket file.
        path: PathBuf,
    },
    /// A Unix socket path exists and is not a socket; sockserv never removes such a file.
    NotASocket {
        /// The file in the way.
        path: PathBuf,
    },
    /// The forking strategy found other threads in this process: fork() is only safe without them.
    ForkWithThreads {
        /// How many threads this process has (more than one).
        threads: usize,
    },
    /// Forking was refused because this process's thread count could not be read: fork() is only
    /// done when a single thread is proven.
    ThreadsUnknown {
        /// Why the count could not be read.
        reason: String,
    },
    /// The strategy could not set itself up or keep going (`step` says what it was doing: "block
    /// SIGCHLD", "start an event loop"), or stopped serving (`source` says why).
    Strategy {
        /// The server the strategy runs.
        server: String,
        /// What it was doing, a verb phrase that reads after "cannot".
        step: &'static str,
        /// The system's error.
        source: io::Error,
    },
    /// Waiting for or accepting requests failed in a way that stops the server.
    Serve {
        /// The name of the server that stopped.
        server: String,
        /// The system's error.
        source: io::Error,
    },
}

impl fmt::Display for ServerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServerError::Bind {
                endpoint,
                step,
                source,
            } => write!(f, "cannot {step} {endpoint}: {source}"),
            ServerError::UnixSocketInUse { path } => write!(
                f,
                "{}: another server is listening on this socket",
                path.display()
            ),
            ServerError::NotASocket { path } => write!(
                f,
                "{}: exists and is not a socket; refusing to replace it",
                path.display()
            ),
            ServerError::ForkWithThreads { threads } => write!(
                f,
                "the forking strategy needs a single-threaded process, this one has {threads} threads \
                 (run forking servers in their own process, as `sockserv serve` does)"
            ),
            ServerError::ThreadsUnknown { reason } => write!(
                f,
                "refusing to fork: cannot tell whether this process is single-threaded ({reason})"
            ),
            ServerError::Strategy {
                server,
                step,
                source,
            } => write!(f, "server {server:?}: cannot {step}: {source}"),
            ServerError::Serve { server, source } => write!(f, "server {server:?}: {source}"),
        }
    }
}

impl std::error::Error for ServerError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ServerError::Bind { source, .. }
            | ServerError::Serve { source, .. }
            | ServerError::Strategy { source, .. } => Some(source),
            _ => None,
        }
    }
}
