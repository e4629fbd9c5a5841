//! Endpoint strings (`tcp://127.0.0.1:20000`, `udp://[::1]:21567`, `unix:///run/x.sock`,
//! `unix-dgram:///run/y.sock`): one string names both the socket kind and the address, so a config line
//! and a client command line read the same.

use std::fmt;
use std::net::{AddrParseError, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;

/// The four socket kinds a server can listen on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SocketKind {
    Tcp,
    Udp,
    UnixStream,
    UnixDatagram,
}

impl SocketKind {
    /// Every kind, for listing and for test matrices.
    pub const ALL: [SocketKind; 4] = [
        SocketKind::Tcp,
        SocketKind::Udp,
        SocketKind::UnixStream,
        SocketKind::UnixDatagram,
    ];

    /// The endpoint scheme for this kind.
    pub fn scheme(self) -> &'static str {
        match self {
            SocketKind::Tcp => "tcp",
            SocketKind::Udp => "udp",
            SocketKind::UnixStream => "unix",
            SocketKind::UnixDatagram => "unix-dgram",
        }
    }

    /// Streams carry connections; the others carry datagrams.
    pub fn is_stream(self) -> bool {
        matches!(self, SocketKind::Tcp | SocketKind::UnixStream)
    }
}

impl fmt::Display for SocketKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.scheme())
    }
}

/// Where a server listens or a client connects.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Endpoint {
    Tcp(SocketAddr),
    Udp(SocketAddr),
    Unix(PathBuf),
    UnixDatagram(PathBuf),
}

impl Endpoint {
    pub fn kind(&self) -> SocketKind {
        match self {
            Endpoint::Tcp(_) => SocketKind::Tcp,
            Endpoint::Udp(_) => SocketKind::Udp,
            Endpoint::Unix(_) => SocketKind::UnixStream,
            Endpoint::UnixDatagram(_) => SocketKind::UnixDatagram,
        }
    }

    /// The IP address and port of a TCP or UDP endpoint.
    pub fn inet(&self) -> Option<SocketAddr> {
        match self {
            Endpoint::Tcp(addr) | Endpoint::Udp(addr) => Some(*addr),
            _ => None,
        }
    }

    /// The socket file of a Unix endpoint.
    pub fn path(&self) -> Option<&std::path::Path> {
        match self {
            Endpoint::Unix(path) | Endpoint::UnixDatagram(path) => Some(path),
            _ => None,
        }
    }
}

/// Why an endpoint string was not understood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndpointError {
    /// No `scheme://` prefix.
    MissingScheme(String),
    /// A scheme other than tcp, udp, unix, unix-dgram.
    UnknownScheme(String),
    /// The address after `tcp://` or `udp://` is not `ip:port` (`[ipv6]:port`).
    BadAddress {
        /// The whole endpoint string, as written.
        endpoint: String,
        /// Why the address did not parse (the standard library's message).
        reason: String,
    },
    /// `unix://` or `unix-dgram://` with no path.
    EmptyPath(String),
    /// `tcp://` or `udp://` with a good address but a port beyond 65535.
    PortOutOfRange {
        /// The whole endpoint string, as written.
        endpoint: String,
        /// The port, as written.
        port: String,
    },
}

impl fmt::Display for EndpointError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EndpointError::MissingScheme(s) => write!(
                f,
                "endpoint {s:?} has no scheme: write tcp://HOST:PORT, udp://HOST:PORT, unix:///PATH or unix-dgram:///PATH"
            ),
            EndpointError::UnknownScheme(s) => write!(
                f,
                "unknown endpoint scheme {s:?}: expected tcp, udp, unix or unix-dgram"
            ),
            EndpointError::BadAddress { endpoint, reason } => write!(
                f,
                "endpoint {endpoint:?}: {reason} (write IP:PORT, with IPv6 in brackets: [::1]:PORT)"
            ),
            EndpointError::EmptyPath(s) => write!(f, "endpoint {s:?} has an empty socket path"),
            EndpointError::PortOutOfRange { endpoint, port } => write!(
                f,
                "endpoint {endpoint:?}: port {port} is out of range (0 to 65535; 0 lets the system pick a free port)"
            ),
        }
    }
}

impl std::error::Error for EndpointError {}

impl FromStr for Endpoint {
    type Err = EndpointError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (scheme, rest) = s
            .split_once("://")
            .ok_or_else(|| EndpointError::MissingScheme(s.to_string()))?;
        let inet = |rest: &str| {
            rest.parse::<SocketAddr>()
                .map_err(|err| address_error(s, rest, &err))
        };
        let path = |rest: &str| {
            if rest.is_empty() {
                Err(EndpointError::EmptyPath(s.to_string()))
            } else {
                Ok(PathBuf::from(rest))
            }
        };
        match scheme {
            "tcp" => inet(rest).map(Endpoint::Tcp),
            "udp" => inet(rest).map(Endpoint::Udp),
            "unix" => path(rest).map(Endpoint::Unix),
            "unix-dgram" => path(rest).map(Endpoint::UnixDatagram),
            other => Err(EndpointError::UnknownScheme(other.to_string())),
        }
    }
}

/// Why `address` (the part after `tcp://` or `udp://` of `endpoint`) is not an `IP:PORT`. The
/// standard library says "invalid socket address syntax" for a port beyond 65535 too; a user who
/// wrote a good IP and a number deserves to hear that the number is the problem.
fn address_error(endpoint: &str, address: &str, error: &AddrParseError) -> EndpointError {
    let out_of_range = address.rsplit_once(':').filter(|(host, port)| {
        let bracketed = host.strip_prefix('[').and_then(|h| h.strip_suffix(']'));
        let ip = bracketed.map_or(host.parse::<Ipv4Addr>().is_ok(), |h| {
            h.parse::<Ipv6Addr>().is_ok()
        });
        let digits = !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit());
        ip && digits && port.parse::<u16>().is_err()
    });
    match out_of_range {
        Some((_, port)) => EndpointError::PortOutOfRange {
            endpoint: endpoint.to_string(),
            port: port.to_string(),
        },
        None => EndpointError::BadAddress {
            endpoint: endpoint.to_string(),
            reason: error.to_string(),
        },
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Tcp(addr) => write!(f, "tcp://{addr}"),
            Endpoint::Udp(addr) => write!(f, "udp://{addr}"),
            Endpoint::Unix(path) => write!(f, "unix://{}", path.display()),
            Endpoint::UnixDatagram(path) => write!(f, "unix-dgram://{}", path.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_kind_and_prints_it_back() {
        for text in [
            "tcp://127.0.0.1:20000",
            "udp://[::1]:21567",
            "unix:///run/x.sock",
            "unix-dgram:///run/y.sock",
            "unix://relative.sock",
        ] {
            let endpoint: Endpoint = text.parse().unwrap();
            assert_eq!(endpoint.to_string(), text);
        }
        assert_eq!(
            "tcp://[::1]:0".parse::<Endpoint>().unwrap().kind(),
            SocketKind::Tcp
        );
    }

    #[test]
    fn refuses_what_it_cannot_read() {
        assert!(matches!(
            "127.0.0.1:80".parse::<Endpoint>(),
            Err(EndpointError::MissingScheme(_))
        ));
        assert!(matches!(
            "sctp://127.0.0.1:80".parse::<Endpoint>(),
            Err(EndpointError::UnknownScheme(_))
        ));
        assert!(matches!(
            "tcp://localhost".parse::<Endpoint>(),
            Err(EndpointError::BadAddress { .. })
        ));
        assert!(matches!(
            "tcp://::1:80".parse::<Endpoint>(),
            Err(EndpointError::BadAddress { .. })
        ));
        assert!(matches!(
            "unix://".parse::<Endpoint>(),
            Err(EndpointError::EmptyPath(_))
        ));
    }

    #[test]
    fn a_port_beyond_65535_is_out_of_range_and_says_so() {
        for (text, port) in [
            ("tcp://127.0.0.1:70000", "70000"),
            ("udp://[::1]:65536", "65536"),
            ("tcp://0.0.0.0:99999999999999999999", "99999999999999999999"),
        ] {
            let error = text.parse::<Endpoint>().unwrap_err();
            assert_eq!(
                error,
                EndpointError::PortOutOfRange {
                    endpoint: text.into(),
                    port: port.into()
                }
            );
        }
        assert_eq!(
            "tcp://127.0.0.1:70000"
                .parse::<Endpoint>()
                .unwrap_err()
                .to_string(),
            "endpoint \"tcp://127.0.0.1:70000\": port 70000 is out of range \
             (0 to 65535; 0 lets the system pick a free port)"
        );
        // Not a port problem: a host name, IPv6 without brackets, a sign, no port.
        for text in [
            "tcp://localhost:70000",
            "tcp://::1:70000",
            "tcp://127.0.0.1:-1",
            "tcp://127.0.0.1:",
        ] {
            let error = text.parse::<Endpoint>().unwrap_err();
            assert!(
                matches!(error, EndpointError::BadAddress { .. }),
                "{text}: {error:?}"
            );
        }
    }
}
