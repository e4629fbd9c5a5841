//! A held connection's socket, TCP or Unix, opened with a non-blocking connect (from `--bind`'s
//! address for TCP) so that one thread can open many at once and watch them with mio.

use std::io::{self, Read, Write};

use mio::net::{TcpStream, UnixStream};
use mio::{Interest, Poll, Token};
use socket2::{Domain, SockAddr, Socket, Type};

use crate::args::Plan;
use crate::target::{bound_socket, Target};

/// A held connection's socket.
pub(super) enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Stream {
    /// Starts a non-blocking connect to `target` (from `bind`, for TCP).
    pub(super) fn connect(plan: &Plan) -> io::Result<Stream> {
        match &plan.target {
            Target::Tcp(addr) => {
                let socket = match plan.bind {
                    Some(ip) => bound_socket(*addr, ip)?,
                    None => Socket::new(Domain::for_address(*addr), Type::STREAM, None)?,
                };
                socket.set_nonblocking(true)?;
                socket.set_tcp_nodelay(true)?;
                in_progress(socket.connect(&(*addr).into()))?;
                Ok(Stream::Tcp(TcpStream::from_std(socket.into())))
            }
            Target::Unix(path) => {
                let socket = Socket::new(Domain::UNIX, Type::STREAM, None)?;
                socket.set_nonblocking(true)?;
                // A Unix connect completes at once or fails (EAGAIN: the backlog is full).
                socket.connect(&SockAddr::unix(path)?)?;
                Ok(Stream::Unix(UnixStream::from_std(socket.into())))
            }
            Target::Udp(_) => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "udp is not a stream",
            )),
        }
    }

    /// Whether the connect has completed: `Ok(false)` while it is in progress, its error if failed.
    pub(super) fn connected(&self) -> io::Result<bool> {
        let (error, peer) = match self {
            Stream::Tcp(s) => (s.take_error()?, s.peer_addr().map(drop)),
            Stream::Unix(s) => (s.take_error()?, s.peer_addr().map(drop)),
        };
        if let Some(e) = error {
            return Err(e);
        }
        match peer {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(false),
            Err(e) => Err(e),
        }
    }

    pub(super) fn register(
        &mut self,
        poll: &Poll,
        token: Token,
        interest: Interest,
    ) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => poll.registry().register(s, token, interest),
            Stream::Unix(s) => poll.registry().register(s, token, interest),
        }
    }

    pub(super) fn reregister(
        &mut self,
        poll: &Poll,
        token: Token,
        interest: Interest,
    ) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => poll.registry().reregister(s, token, interest),
            Stream::Unix(s) => poll.registry().reregister(s, token, interest),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            Stream::Unix(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// `connect` on a non-blocking socket: "in progress" is the expected answer, not an error.
fn in_progress(result: io::Result<()>) -> io::Result<()> {
    match result {
        Err(e) if e.raw_os_error() == Some(EINPROGRESS) => Ok(()),
        other => other,
    }
}

/// Linux's `EINPROGRESS` (std has no `ErrorKind` for it).
const EINPROGRESS: i32 = 115;
