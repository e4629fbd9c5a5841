//! Where the load goes: `tcp://HOST:PORT`, `unix:///PATH` or `udp://HOST:PORT`, written like
//! sockserv's own endpoint strings, and the one stream type the stream modes use for TCP and Unix.
//!
//! Parsed here rather than through sockserv-framework so that the load generator links nothing of the
//! server it measures. HOST is an IP address (IPv6 in brackets); a load generator that resolved names
//! could end up somewhere other than loopback.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};

/// A server to load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Tcp(SocketAddr),
    Udp(SocketAddr),
    Unix(PathBuf),
}

impl FromStr for Target {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (scheme, rest) = s.split_once("://").ok_or_else(|| {
            format!("{s:?}: expected tcp://HOST:PORT, udp://HOST:PORT or unix:///PATH")
        })?;
        let inet = || {
            rest.parse::<SocketAddr>()
                .map_err(|e| format!("{s:?}: {e} (write IP:PORT, IPv6 as [::1]:PORT)"))
        };
        match scheme {
            "tcp" => inet().map(Target::Tcp),
            "udp" => inet().map(Target::Udp),
            "unix" if rest.is_empty() => Err(format!("{s:?}: empty socket path")),
            "unix" => Ok(Target::Unix(PathBuf::from(rest))),
            other => Err(format!(
                "{s:?}: scheme {other:?} not supported (tcp, udp or unix)"
            )),
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Tcp(addr) => write!(f, "tcp://{addr}"),
            Target::Udp(addr) => write!(f, "udp://{addr}"),
            Target::Unix(path) => write!(f, "unix://{}", path.display()),
        }
    }
}

impl Target {
    pub fn is_stream(&self) -> bool {
        !matches!(self, Target::Udp(_))
    }

    /// Opens a stream connection whose reads and writes give up after `timeout` (so no worker can
    /// outlive the run by more than that). TCP connections get `TCP_NODELAY`: every request is one
    /// small write that must leave at once.
    pub fn connect(&self, timeout: Duration) -> io::Result<Conn> {
        self.connect_from(None, timeout)
    }

    /// [`Target::connect`] from a chosen local address (`--bind`, TCP only): on loopback every
    /// 127.0.0.0/8 address is this host, and a server counts each as a source of its own.
    pub fn connect_from(&self, bind: Option<IpAddr>, timeout: Duration) -> io::Result<Conn> {
        let conn = match self {
            Target::Tcp(addr) => {
                let stream = match bind {
                    None => TcpStream::connect_timeout(addr, timeout)?,
                    Some(ip) => {
                        let socket = bound_socket(*addr, ip)?;
                        socket.connect_timeout(&(*addr).into(), timeout)?;
                        socket.into()
                    }
                };
                stream.set_nodelay(true)?;
                Conn::Tcp(stream)
            }
            Target::Unix(path) => Conn::Unix(UnixStream::connect(path)?),
            Target::Udp(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "udp is not a stream",
                ))
            }
        };
        conn.set_timeouts(Some(timeout))?;
        Ok(conn)
    }
}

/// A TCP socket for `server`, bound to `ip` on a port the system picks.
pub fn bound_socket(server: SocketAddr, ip: IpAddr) -> io::Result<Socket> {
    let socket = Socket::new(
        Domain::for_address(server),
        Type::STREAM,
        Some(Protocol::TCP),
    )?;
    socket.bind(&SocketAddr::new(ip, 0).into())?;
    Ok(socket)
}

/// A TCP or Unix stream connection.
#[derive(Debug)]
pub enum Conn {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Conn {
    /// A second handle on the same socket, for a reader thread or a buffered reader.
    pub fn try_clone(&self) -> io::Result<Conn> {
        Ok(match self {
            Conn::Tcp(s) => Conn::Tcp(s.try_clone()?),
            Conn::Unix(s) => Conn::Unix(s.try_clone()?),
        })
    }

    pub fn set_timeouts(&self, timeout: Option<Duration>) -> io::Result<()> {
        match self {
            Conn::Tcp(s) => {
                s.set_read_timeout(timeout)?;
                s.set_write_timeout(timeout)
            }
            Conn::Unix(s) => {
                s.set_read_timeout(timeout)?;
                s.set_write_timeout(timeout)
            }
        }
    }

    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        match self {
            Conn::Tcp(s) => s.set_read_timeout(timeout),
            Conn::Unix(s) => s.set_read_timeout(timeout),
        }
    }

    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        match self {
            Conn::Tcp(s) => s.shutdown(how),
            Conn::Unix(s) => s.shutdown(how),
        }
    }
}

impl Read for &Conn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Conn::Tcp(s) => (&*s).read(buf),
            Conn::Unix(s) => (&*s).read(buf),
        }
    }
}

impl Write for &Conn {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Conn::Tcp(s) => (&*s).write(buf),
            Conn::Unix(s) => (&*s).write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        (&*self).read(buf)
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        (&*self).write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_each_kind() {
        for text in [
            "tcp://127.0.0.1:20000",
            "udp://[::1]:9",
            "unix:///tmp/x.sock",
        ] {
            assert_eq!(text.parse::<Target>().unwrap().to_string(), text);
        }
    }

    #[test]
    fn refuses_names_schemes_and_empty_paths() {
        for text in [
            "tcp://localhost:80",
            "127.0.0.1:80",
            "unix-dgram:///x",
            "unix://",
        ] {
            assert!(text.parse::<Target>().is_err(), "{text}");
        }
    }
}
