//! A peer or local address of any of the four socket kinds, printable the way logs and protocols want.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Where a request came from or arrived at.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Address {
    /// A TCP or UDP address; prints as `ip:port` (`[ip]:port` for IPv6).
    Inet(SocketAddr),
    /// A Unix-domain socket path; prints as the path.
    Unix(PathBuf),
    /// A Unix-domain socket with no name (a client that never bound); prints as `unix:unnamed`.
    UnixUnnamed,
}

impl Address {
    /// The IP address and port, for protocols that print them (chat's `From <ip>:<port>`).
    pub fn inet(&self) -> Option<SocketAddr> {
        match self {
            Address::Inet(addr) => Some(*addr),
            _ => None,
        }
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Inet(addr) => write!(f, "{addr}"),
            Address::Unix(path) => write!(f, "{}", path.display()),
            Address::UnixUnnamed => f.write_str("unix:unnamed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn displays_like_socketserver_client_address() {
        let v4: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let v6: SocketAddr = "[::1]:5000".parse().unwrap();
        assert_eq!(Address::Inet(v4).to_string(), "127.0.0.1:5000");
        assert_eq!(Address::Inet(v6).to_string(), "[::1]:5000");
        assert_eq!(
            Address::Unix("/tmp/x.sock".into()).to_string(),
            "/tmp/x.sock"
        );
        assert_eq!(Address::UnixUnnamed.to_string(), "unix:unnamed");
    }
}
