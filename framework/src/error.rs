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
        endpoint: Endpoint,
        step: &'static str,
        source: io::Error,
    },
    /// A Unix socket path already has a live server behind it.
    UnixSocketInUse { path: PathBuf },
    /// A Unix socket path exists and is not a socket; sockserv never removes such a file.
    NotASocket { path: PathBuf },
    /// The forking strategy found other threads in this process: fork() is only safe without them.
    ForkWithThreads { threads: usize },
    /// Waiting for or accepting requests failed in a way that stops the server.
    Serve { server: String, source: io::Error },
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
            ServerError::Serve { server, source } => write!(f, "server {server:?}: {source}"),
        }
    }
}

impl std::error::Error for ServerError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ServerError::Bind { source, .. } | ServerError::Serve { source, .. } => Some(source),
            _ => None,
        }
    }
}
