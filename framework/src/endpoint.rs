//! Endpoint strings (`tcp://127.0.0.1:20000`, `udp://[::1]:21567`, `unix:///run/x.sock`,
//! `unix-dgram:///run/y.sock`): one string names both the socket kind and the address, so a config line
//! and a client command line read the same.

use std::fmt;
use std::net::{AddrParseError, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};
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

    /// The socket file of a Unix endpoint (none for an abstract one).
    pub fn path(&self) -> Option<&std::path::Path> {
        match self {
            Endpoint::Unix(path) | Endpoint::UnixDatagram(path)
                if self.abstract_name().is_none() =>
            {
                Some(path)
            }
            _ => None,
        }
    }

    /// The name of a Linux abstract Unix socket (`unix://@name`: no file, gone with its last
    /// descriptor; Python's socketserver writes it `"\0name"`), without the `@`.
    pub fn abstract_name(&self) -> Option<&[u8]> {
        use std::os::unix::ffi::OsStrExt;
        match self {
            Endpoint::Unix(path) | Endpoint::UnixDatagram(path) => {
                path.as_os_str().as_bytes().strip_prefix(b"@")
            }
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
    /// `tcp://HOST:PORT` or `udp://HOST:PORT` whose host name does not resolve.
    Unresolved {
        /// The whole endpoint string, as written.
        endpoint: String,
        /// The host name, as written.
        host: String,
        /// The resolver's message.
        reason: String,
    },
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
            EndpointError::Unresolved {
                endpoint,
                host,
                reason,
            } => write!(
                f,
                "endpoint {endpoint:?}: host name {host:?} does not resolve ({reason})"
            ),
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

/// An endpoint as written, its host name looked up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// The endpoint to use: for a host name, at the address taken (see [`Endpoint::resolve`]).
    pub endpoint: Endpoint,
    /// Every address the host name gave, in the resolver's order; one for an IP or a Unix path's
    /// none.
    pub addresses: Vec<SocketAddr>,
}

impl Resolved {
    /// A line saying which address a host name that gave several was taken at, or `None` when
    /// there was no choice to make.
    pub fn choice(&self, written: &str) -> Option<String> {
        let taken = self.endpoint.inet()?;
        let others: Vec<String> = self
            .addresses
            .iter()
            .filter(|addr| **addr != taken)
            .map(SocketAddr::to_string)
            .collect();
        (!others.is_empty()).then(|| {
            format!(
                "{written} resolves to several addresses; using {taken} (not {})",
                others.join(", ")
            )
        })
    }
}

impl Endpoint {
    /// Parse `text` as [`FromStr`] does, and where a `tcp://` or `udp://` endpoint names a host
    /// (`tcp://localhost:20000`) instead of an IP, look the name up with the system's resolver, as
    /// socketserver's `bind(("localhost", 9999))` does. Of several addresses the first IPv4 one is
    /// taken (socketserver's sockets are IPv4 unless told otherwise), else the first;
    /// [`Resolved::choice`] says which.
    ///
    /// # Errors
    ///
    /// What [`FromStr`] refuses, and [`EndpointError::Unresolved`] for a host name the resolver does
    /// not know (or that gives no address).
    pub fn resolve(text: &str) -> Result<Resolved, EndpointError> {
        let refused = match text.parse::<Endpoint>() {
            Ok(endpoint) => {
                let addresses = endpoint.inet().into_iter().collect();
                return Ok(Resolved {
                    endpoint,
                    addresses,
                });
            }
            Err(refused) => refused,
        };
        let Some((scheme, rest)) = text.split_once("://") else {
            return Err(refused);
        };
        let Some((host, port)) = host_and_port(rest) else {
            return Err(refused);
        };
        let unresolved = |reason: String| EndpointError::Unresolved {
            endpoint: text.to_string(),
            host: host.to_string(),
            reason,
        };
        let addresses: Vec<SocketAddr> = (host, port)
            .to_socket_addrs()
            .map_err(|err| unresolved(err.to_string()))?
            .collect();
        let taken = addresses
            .iter()
            .find(|addr| addr.is_ipv4())
            .or(addresses.first())
            .copied()
            .ok_or_else(|| unresolved("no address".into()))?;
        let endpoint = match scheme {
            "tcp" => Endpoint::Tcp(taken),
            "udp" => Endpoint::Udp(taken),
            _ => return Err(refused),
        };
        Ok(Resolved {
            endpoint,
            addresses,
        })
    }
}

/// `HOST:PORT` where HOST is a name (not an IP, not bracketed) and PORT a port number.
fn host_and_port(address: &str) -> Option<(&str, u16)> {
    let (host, port) = address.rsplit_once(':')?;
    let name = !host.is_empty()
        && !host.contains([':', '[', ']', '/'])
        && host.parse::<std::net::IpAddr>().is_err();
    name.then_some(())?;
    Some((host, port.parse().ok()?))
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
    fn a_host_name_is_looked_up_and_the_choice_said() {
        let resolved = Endpoint::resolve("tcp://localhost:20000").unwrap();
        let taken = resolved.endpoint.inet().unwrap();
        assert!(taken.ip().is_loopback() && taken.port() == 20000, "{taken}");
        assert!(resolved.addresses.contains(&taken));
        if resolved.addresses.iter().any(SocketAddr::is_ipv4) {
            assert!(taken.is_ipv4(), "IPv4 first, as socketserver");
        }
        let ip = Endpoint::resolve("udp://127.0.0.1:9").unwrap();
        assert_eq!(ip.addresses.len(), 1);
        assert_eq!(ip.choice("udp://127.0.0.1:9"), None);
    }

    #[test]
    fn a_name_that_does_not_resolve_says_so() {
        // `.invalid` never resolves (RFC 2606).
        let error = Endpoint::resolve("tcp://no-such-host.invalid:80").unwrap_err();
        assert!(
            matches!(&error, EndpointError::Unresolved { host, .. } if host == "no-such-host.invalid"),
            "{error:?}"
        );
        assert!(error.to_string().contains("does not resolve"), "{error}");
        // Not a name: the parse error stands.
        assert!(matches!(
            Endpoint::resolve("tcp://localhost"),
            Err(EndpointError::BadAddress { .. })
        ));
    }

    #[test]
    fn the_choice_among_several_addresses_is_said() {
        let v4: SocketAddr = "127.0.0.1:80".parse().unwrap();
        let v6: SocketAddr = "[::1]:80".parse().unwrap();
        let resolved = Resolved {
            endpoint: Endpoint::Tcp(v4),
            addresses: vec![v6, v4],
        };
        assert_eq!(
            resolved.choice("tcp://example:80").unwrap(),
            "tcp://example:80 resolves to several addresses; using 127.0.0.1:80 (not [::1]:80)"
        );
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
