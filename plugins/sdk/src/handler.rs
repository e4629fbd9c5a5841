//! The request handler trait, the request a handler sees, and the factory that makes handlers.

use std::fmt;
use std::io::{self, BufRead, Write};

use crate::Address;

/// What a handler hook returns.
pub type HandlerResult = Result<(), HandlerError>;

/// Why a handler gave up on its request. The server reports it through `handle_error` (one log line
/// with the server name and the peer), closes that request, and goes on serving.
#[derive(Debug)]
pub enum HandlerError {
    /// Reading from or writing to the peer failed.
    Io(io::Error),
    /// The peer broke the protocol; the text says how.
    Protocol(String),
}

impl fmt::Display for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HandlerError::Io(err) => write!(f, "i/o error: {err}"),
            HandlerError::Protocol(msg) => write!(f, "protocol error: {msg}"),
        }
    }
}

impl std::error::Error for HandlerError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            HandlerError::Io(err) => Some(err),
            HandlerError::Protocol(_) => None,
        }
    }
}

impl From<io::Error> for HandlerError {
    fn from(err: io::Error) -> Self {
        HandlerError::Io(err)
    }
}

/// Whether a request is a connection or a single datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestKind {
    /// A connection on a TCP or Unix stream socket: `rfile` reads until the peer closes.
    Stream,
    /// One datagram on a UDP or Unix datagram socket: `rfile` reads the packet, and whatever the handler
    /// writes to `wfile` goes back to the sender as one datagram (sent only if the handler wrote).
    Datagram,
}

/// The server a request arrived at, as its handlers see it.
pub trait ServerContext: Send + Sync {
    /// The server's name from the config.
    fn server_name(&self) -> &str;
    /// Ask the server to stop serving. Returns at once, from any thread, a handler's included; the
    /// accept loop wakes immediately and requests in flight are drained.
    fn shutdown(&self);

    /// Log a line under the server's name (the host's logger; for plugins, across the ABI).
    /// Default: a line on stderr.
    fn log(&self, level: LogLevel, message: &str) {
        eprintln!("{level:?} {}: {message}", self.server_name());
    }

    /// Whether the server is draining (shutting down): a handler that paces or holds input on
    /// purpose (a rate limit) should stop doing so and end, rather than use up the drain.
    /// Default: never (not carried across the plugin ABI).
    fn is_stopping(&self) -> bool {
        false
    }
}

/// How important a log line is (the `log` crate's levels and numbers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u32)]
pub enum LogLevel {
    Error = 1,
    Warn = 2,
    Info = 3,
    Debug = 4,
}

impl LogLevel {
    /// The level with this number; out-of-range numbers clamp to the nearest level.
    pub fn from_number(level: u32) -> LogLevel {
        match level {
            0 | 1 => LogLevel::Error,
            2 => LogLevel::Warn,
            3 => LogLevel::Info,
            _ => LogLevel::Debug,
        }
    }
}

/// One request, as a handler sees it.
pub struct Request<'a> {
    /// Connection or datagram.
    pub kind: RequestKind,
    /// Buffered reader over the connection, or over the datagram (socketserver's `rfile`). `Send`, so
    /// a handler may read on one thread of a `std::thread::scope` while it writes on another.
    pub rfile: &'a mut (dyn BufRead + Send),
    /// Writer to the peer (socketserver's `wfile`). On streams it is unbuffered, like socketserver's
    /// default `wbufsize = 0`: each write goes out before the handler reads again.
    pub wfile: &'a mut (dyn Write + Send),
    /// The peer's address (socketserver's `client_address`).
    pub peer: &'a Address,
    /// The address the server is bound to.
    pub local: &'a Address,
    /// The datagram, on datagram sockets; `None` on streams.
    pub packet: Option<&'a [u8]>,
    /// The server this request arrived at.
    pub server: &'a dyn ServerContext,
    /// Shuts the connection down from any thread, e.g. to end a blocked read when a writer gives up.
    pub control: &'a dyn RequestControl,
    /// The connection's TLS parameters and peer identity, on a server with `[server.tls]` (its
    /// `rfile` and `wfile` carry plaintext all the same); `None` otherwise.
    pub tls: Option<&'a crate::TlsInfo>,
}

/// What a handler may do to its connection besides reading and writing it.
pub trait RequestControl: Sync {
    /// Shut down reading, writing or both (`shutdown(2)`): a read blocked on another thread returns
    /// end-of-file. A no-op on datagram requests.
    ///
    /// # Errors
    ///
    /// The system's refusal, such as `NotConnected` once the peer is gone.
    fn shutdown(&self, how: std::net::Shutdown) -> io::Result<()>;

    /// Say how many bytes of input this request holds now while a frame or line is incomplete
    /// (call it again whenever the figure changes; 0 when nothing is held). The server's
    /// `max_buffered_input` budget is the sum over all its connections: past it, the connection
    /// holding the most is closed under its handler, which then sees end of file or an error.
    /// Default (no budget, or a datagram): nothing.
    fn hold_input(&self, _bytes: usize) {}

    /// Bytes written to the connection that its peer has not taken yet: the socket's send queue
    /// (`SIOCOUTQ`). On TCP that is what was written and not yet acknowledged by the peer; on a
    /// Unix stream socket, what the peer has not read yet (counted with the kernel's overhead).
    /// Either way it changes only when this side writes or the peer takes bytes, so a thread that
    /// judges the peer's pace sees the peer take bytes while another thread's `write` is still
    /// blocked on a full send buffer. `None` where the system cannot say (a datagram, a platform
    /// without the query, a failed query, a plugin across the C ABI). Default: `None`.
    fn send_queue(&self) -> Option<usize> {
        None
    }
}

/// The control of a request that has no connection to shut down (a datagram, or a test's buffers).
#[derive(Debug, Default, Clone, Copy)]
pub struct NoControl;

impl RequestControl for NoControl {
    fn shutdown(&self, _how: std::net::Shutdown) -> io::Result<()> {
        Ok(())
    }
}

/// A request handler: socketserver's BaseRequestHandler.
///
/// The server calls, in order: `setup`, `handle`, `finish`. `finish` runs even when `handle` returns an
/// error or panics; if `setup` fails, neither `handle` nor `finish` runs. Override `handle`; override
/// `setup` and `finish` when the handler has per-request state to prepare or release.
///
/// A handler that answers each line in capitals, served here over in-memory buffers the way the
/// server serves a connection:
///
/// ```
/// use std::io::{BufRead, Write};
/// use sockserv_plugin::{
///     Address, HandlerResult, NoControl, Request, RequestHandler, RequestKind, ServerContext,
/// };
///
/// struct Upper;
///
/// impl RequestHandler for Upper {
///     fn handle(&mut self, req: &mut Request<'_>) -> HandlerResult {
///         let mut line = String::new();
///         while req.rfile.read_line(&mut line)? > 0 { // rfile: buffered reader (BufRead)
///             req.wfile.write_all(line.to_uppercase().as_bytes())?; // wfile: to the peer
///             line.clear();
///         }
///         Ok(())
///     }
/// }
///
/// /// The server the request arrived at, as a handler sees it.
/// struct Server;
///
/// impl ServerContext for Server {
///     fn server_name(&self) -> &str {
///         "upper"
///     }
///     fn shutdown(&self) {}
/// }
///
/// let (peer, local) = (Address::UnixUnnamed, Address::Unix("/run/upper.sock".into()));
/// let mut rfile: &[u8] = b"hello\nworld\n";
/// let mut wfile = Vec::new();
/// let mut req = Request {
///     kind: RequestKind::Stream,
///     rfile: &mut rfile,
///     wfile: &mut wfile,
///     peer: &peer,
///     local: &local,
///     packet: None,
///     server: &Server,
///     control: &NoControl,
///     tls: None,
/// };
/// let mut handler = Upper;
/// handler.setup(&mut req)?;
/// let handled = handler.handle(&mut req);
/// handler.finish(&mut req)?; // even when `handle` failed
/// handled?;
/// assert_eq!(wfile, b"HELLO\nWORLD\n");
/// # Ok::<(), sockserv_plugin::HandlerError>(())
/// ```
pub trait RequestHandler: Send {
    /// Prepare for the request. Default: nothing.
    ///
    /// # Errors
    ///
    /// Whatever stops the request before it is handled; the server reports it and then runs
    /// neither `handle` nor `finish`.
    fn setup(&mut self, _req: &mut Request<'_>) -> HandlerResult {
        Ok(())
    }

    /// Serve the request.
    ///
    /// # Errors
    ///
    /// [`HandlerError::Io`] when reading from or writing to the peer fails,
    /// [`HandlerError::Protocol`] when the peer broke the protocol. The server reports it, runs
    /// `finish`, closes this request and goes on serving.
    fn handle(&mut self, req: &mut Request<'_>) -> HandlerResult;

    /// Clean up after the request. Default: nothing.
    ///
    /// # Errors
    ///
    /// Whatever failed while cleaning up; the server reports it (the request is over either way).
    fn finish(&mut self, _req: &mut Request<'_>) -> HandlerResult {
        Ok(())
    }
}

/// Makes one handler per request. Built from a handler's options once, when the config is validated,
/// and shared by every request of that server.
pub trait HandlerFactory: Send + Sync {
    /// A fresh handler for one request.
    fn new_handler(&self) -> Box<dyn RequestHandler>;

    /// An event-driven session for one connection, for strategies that serve many connections per
    /// thread (see [`Session`](crate::Session)). Default: `None`, this handler only blocks.
    fn new_session(&self, _info: &crate::SessionInfo<'_>) -> Option<Box<dyn crate::Session>> {
        None
    }
}

impl<F> HandlerFactory for F
where
    F: Fn() -> Box<dyn RequestHandler> + Send + Sync,
{
    fn new_handler(&self) -> Box<dyn RequestHandler> {
        self()
    }
}
