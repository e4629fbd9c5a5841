//! The client's side of the four socket kinds: open a connection to an endpoint, send one request,
//! receive one reply within a timeout.
//!
//! Protocols never see a socket: they hand over bytes and, for streams, say when the reply is complete.
//! A datagram is a whole reply by itself. Every error names the endpoint, and a reply that does not come
//! in time is a [`NoReply`] error (callers may downcast to it).
//!
//! Datagram sockets are connected to the server, so the kernel drops datagrams from anyone else and a UDP
//! "port unreachable" surfaces as "connection refused" instead of a silent wait. A Unix datagram client
//! needs an address of its own for the reply to come back to: [`TempSocketFile`] binds one in the temp
//! directory and removes it on drop, error or not.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, UdpSocket};
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use sockserv_framework::Endpoint;

use super::tls::{Plain, TlsClient, TlsStream};

/// The largest datagram there is (UDP's 16-bit length), so no reply is ever truncated.
const MAX_DATAGRAM: usize = 65_536;

/// A stream reply larger than this is refused rather than buffered: the client holds each reply whole.
const MAX_REPLY: usize = 16 * 1024 * 1024;

/// Numbers the Unix datagram files of one process, so two connections never share a path.
static NEXT_SOCKET_FILE: AtomicUsize = AtomicUsize::new(0);

/// The reply did not come within the timeout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoReply {
    pub endpoint: String,
    pub timeout: Duration,
}

impl fmt::Display for NoReply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.timeout.as_secs_f64();
        write!(f, "no reply from {} within {secs} s", self.endpoint)
    }
}

impl std::error::Error for NoReply {}

/// One open connection (or connected datagram socket) to a server.
pub struct Connection {
    endpoint: Endpoint,
    timeout: Duration,
    socket: Socket,
}

enum Socket {
    Tcp(TcpStream),
    Unix(UnixStream),
    Udp(UdpSocket),
    /// `_file` is held for its `Drop`: the socket file goes when the connection does.
    UnixDatagram {
        socket: UnixDatagram,
        _file: TempSocketFile,
    },
    /// TLS over a TCP or Unix stream.
    Tls(Box<TlsStream>),
}

impl Connection {
    /// Connect to `endpoint`; `timeout` bounds the TCP connect, each send, and each reply.
    #[cfg(test)]
    pub fn open(endpoint: &Endpoint, timeout: Duration) -> anyhow::Result<Connection> {
        Connection::open_with(endpoint, timeout, None)
    }

    /// [`Connection::open`], then TLS over the stream with `tls` (its handshake bounded by
    /// `timeout` too).
    ///
    /// # Errors
    /// As for `open`; a datagram endpoint with `tls`; a failed handshake (see `tls`).
    pub fn open_with(
        endpoint: &Endpoint,
        timeout: Duration,
        tls: Option<&TlsClient>,
    ) -> anyhow::Result<Connection> {
        let socket = Socket::connect(endpoint, timeout)
            .with_context(|| format!("cannot connect to {endpoint}"))?;
        socket
            .set_write_timeout(timeout)
            .with_context(|| format!("cannot set a send timeout for {endpoint}"))?;
        let socket = match (tls, socket) {
            (None, socket) => socket,
            (Some(tls), socket) => {
                socket.set_read_timeout(timeout)?;
                let plain = match socket {
                    Socket::Tcp(s) => Plain::Tcp(s),
                    Socket::Unix(s) => Plain::Unix(s),
                    _ => bail!("TLS runs over streams: {endpoint} is a datagram endpoint"),
                };
                Socket::Tls(Box::new(tls.start(plain, endpoint)?))
            }
        };
        let endpoint = endpoint.clone();
        Ok(Connection {
            endpoint,
            timeout,
            socket,
        })
    }

    /// Streams carry bytes, so the protocol frames its requests; datagrams carry whole messages.
    pub fn is_stream(&self) -> bool {
        self.endpoint.kind().is_stream()
    }

    /// Send one request: all of `request` on a stream, one datagram otherwise.
    pub fn send(&mut self, request: &[u8]) -> anyhow::Result<()> {
        self.socket
            .send(request)
            .map_err(|err| self.io_error(err, "cannot send to"))
    }

    /// Receive one reply: a single datagram, or stream bytes until `complete` says the reply is whole.
    pub fn receive(&mut self, complete: &dyn Fn(&[u8]) -> bool) -> anyhow::Result<Vec<u8>> {
        let deadline = Instant::now() + self.timeout;
        let mut reply = Vec::new();
        let mut chunk = vec![0; MAX_DATAGRAM];
        loop {
            let n = self.receive_chunk(&mut chunk, deadline)?;
            if !self.is_stream() {
                return Ok(chunk[..n].to_vec());
            }
            if n == 0 {
                return Err(self.closed_early(&reply));
            }
            reply.extend_from_slice(&chunk[..n]);
            if complete(&reply) {
                return Ok(reply);
            }
            if reply.len() > MAX_REPLY {
                bail!("reply from {} exceeds {MAX_REPLY} bytes", self.endpoint);
            }
        }
    }

    /// Read whatever arrives first, waiting no later than `deadline`.
    fn receive_chunk(&mut self, buf: &mut [u8], deadline: Instant) -> anyhow::Result<usize> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(self.no_reply());
        }
        self.socket
            .set_read_timeout(left)
            .and_then(|()| self.socket.receive(buf))
            .map_err(|err| self.io_error(err, "cannot receive from"))
    }

    /// Name the endpoint in an I/O error; a timed-out read becomes [`NoReply`].
    fn io_error(&self, err: io::Error, doing: &str) -> anyhow::Error {
        match err.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => self.no_reply(),
            _ => anyhow::Error::new(err).context(format!("{doing} {}", self.endpoint)),
        }
    }

    fn no_reply(&self) -> anyhow::Error {
        anyhow::Error::new(NoReply {
            endpoint: self.endpoint.to_string(),
            timeout: self.timeout,
        })
    }

    fn closed_early(&self, partial: &[u8]) -> anyhow::Error {
        match partial.len() {
            0 => anyhow!("{} closed the connection without replying", self.endpoint),
            n => anyhow!(
                "{} closed the connection after {n} bytes of its reply",
                self.endpoint
            ),
        }
    }
}

impl Socket {
    fn connect(endpoint: &Endpoint, timeout: Duration) -> io::Result<Socket> {
        Ok(match endpoint {
            Endpoint::Tcp(addr) => Socket::Tcp(TcpStream::connect_timeout(addr, timeout)?),
            Endpoint::Unix(_) if endpoint.abstract_name().is_some() => {
                let name = endpoint.abstract_name().unwrap_or_default();
                Socket::Unix(UnixStream::connect_addr(&abstract_address(name)?)?)
            }
            Endpoint::Unix(path) => Socket::Unix(UnixStream::connect(path)?),
            Endpoint::Udp(addr) => Socket::Udp(connect_udp(*addr)?),
            Endpoint::UnixDatagram(path) => {
                let (socket, _file) = connect_unix_datagram(path, endpoint.abstract_name())?;
                Socket::UnixDatagram { socket, _file }
            }
        })
    }

    fn set_write_timeout(&self, timeout: Duration) -> io::Result<()> {
        match self {
            Socket::Tcp(s) => s.set_write_timeout(Some(timeout)),
            Socket::Unix(s) => s.set_write_timeout(Some(timeout)),
            Socket::Udp(s) => s.set_write_timeout(Some(timeout)),
            Socket::UnixDatagram { socket: s, .. } => s.set_write_timeout(Some(timeout)),
            Socket::Tls(s) => s.sock.set_write_timeout(Some(timeout)),
        }
    }

    fn set_read_timeout(&self, timeout: Duration) -> io::Result<()> {
        match self {
            Socket::Tcp(s) => s.set_read_timeout(Some(timeout)),
            Socket::Unix(s) => s.set_read_timeout(Some(timeout)),
            Socket::Udp(s) => s.set_read_timeout(Some(timeout)),
            Socket::UnixDatagram { socket: s, .. } => s.set_read_timeout(Some(timeout)),
            Socket::Tls(s) => s.sock.set_read_timeout(Some(timeout)),
        }
    }

    fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            Socket::Tcp(s) => s.write_all(bytes),
            Socket::Unix(s) => s.write_all(bytes),
            Socket::Udp(s) => whole_datagram(s.send(bytes)?, bytes),
            Socket::UnixDatagram { socket: s, .. } => whole_datagram(s.send(bytes)?, bytes),
            Socket::Tls(s) => s.write_all(bytes).and_then(|()| s.flush()),
        }
    }

    fn receive(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Socket::Tcp(s) => s.read(buf),
            Socket::Unix(s) => s.read(buf),
            Socket::Udp(s) => s.recv(buf),
            Socket::UnixDatagram { socket: s, .. } => s.recv(buf),
            Socket::Tls(s) => s.read(buf),
        }
    }
}

/// A datagram goes out whole or not at all; say so if the kernel ever disagrees.
fn whole_datagram(sent: usize, bytes: &[u8]) -> io::Result<()> {
    if sent == bytes.len() {
        return Ok(());
    }
    let msg = format!("sent {sent} of {} bytes in one datagram", bytes.len());
    Err(io::Error::new(io::ErrorKind::WriteZero, msg))
}

/// A UDP socket on an ephemeral port of the server's family, connected to the server.
fn connect_udp(server: SocketAddr) -> io::Result<UdpSocket> {
    let local: SocketAddr = match server {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = UdpSocket::bind(local)?;
    socket.connect(server)?;
    Ok(socket)
}

/// A Unix datagram socket bound to a fresh file of its own, connected to the server at `server`.
/// A datagram socket of our own (replies need an address to come back to), connected to the
/// server at `server`, or at the abstract name `abstract_name`.
fn connect_unix_datagram(
    server: &Path,
    abstract_name: Option<&[u8]>,
) -> io::Result<(UnixDatagram, TempSocketFile)> {
    let file = TempSocketFile::new();
    let socket = UnixDatagram::bind(file.path()).map_err(|err| with_path(err, file.path()))?;
    match abstract_name {
        Some(name) => socket.connect_addr(&abstract_address(name)?)?,
        None => socket.connect(server)?,
    }
    Ok((socket, file))
}

/// A Linux abstract socket's address (`unix://@name`).
fn abstract_address(name: &[u8]) -> io::Result<std::os::unix::net::SocketAddr> {
    use std::os::linux::net::SocketAddrExt;
    std::os::unix::net::SocketAddr::from_abstract_name(name)
}

fn with_path(err: io::Error, path: &Path) -> io::Error {
    io::Error::new(err.kind(), format!("binding {}: {err}", path.display()))
}

/// A socket file in the temp directory, removed when this guard drops.
pub struct TempSocketFile {
    path: PathBuf,
}

impl TempSocketFile {
    /// Reserve `sockserv-client-<pid>-<n>.sock`; a file left there by a dead process of the same pid is
    /// stale and removed.
    fn new() -> TempSocketFile {
        let n = NEXT_SOCKET_FILE.fetch_add(1, Ordering::Relaxed);
        let name = format!("sockserv-client-{}-{n}.sock", std::process::id());
        let path = std::env::temp_dir().join(name);
        let _ = std::fs::remove_file(&path);
        TempSocketFile { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempSocketFile {
    fn drop(&mut self) {
        if let Err(err) = std::fs::remove_file(&self.path) {
            if err.kind() != io::ErrorKind::NotFound {
                log::warn!("cannot remove {}: {err}", self.path.display());
            }
        }
    }
}

#[cfg(test)]
mod tests;
