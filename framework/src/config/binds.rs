//! Where the servers bind, across the file: what `sockserv serve` would otherwise meet only at bind
//! time, as "Address already in use" or "No such file or directory", found by `sockserv check`.
//!
//! - No two servers on the same address (per socket kind) or the same socket file.
//! - No wildcard address (`0.0.0.0`, `[::]`) beside a specific one on the same port when the kernel
//!   would refuse the second bind: on Linux a TCP listener refuses it unless both sockets set
//!   `SO_REUSEPORT`; UDP refuses it unless both set `SO_REUSEADDR` (the default here) or both
//!   `SO_REUSEPORT`. `[::]` covers IPv4 too unless `v6only = true`. Port 0 never conflicts.
//! - A Unix socket's folder exists, and its path fits in a socket address.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use super::error::ConfigErrorKind;
use super::raw::RawServer;
use super::validate::Checker;
use crate::{Endpoint, SocketKind};

/// The longest Unix socket path: `sun_path` holds 108 bytes on Linux, one of them the final NUL.
const MAX_UNIX_PATH: usize = 107;

impl Checker<'_> {
    /// Every bind check, each server's problem at its `listen`.
    pub(super) fn check_binds(&mut self, servers: &[RawServer], endpoints: &[Option<Endpoint>]) {
        self.check_duplicates(servers, endpoints);
        self.check_shared_ports(servers, endpoints);
        self.check_socket_paths(servers, endpoints);
    }

    /// No two servers bind the same address or socket file.
    fn check_duplicates(&mut self, servers: &[RawServer], endpoints: &[Option<Endpoint>]) {
        let mut owners: HashMap<BindKey<'_>, &str> = HashMap::new();
        for (raw, endpoint) in servers.iter().zip(endpoints) {
            let Some(key) = endpoint.as_ref().and_then(BindKey::of) else {
                continue;
            };
            let name = raw.name.get_ref();
            if let Some(other) = owners.get(&key) {
                let kind = ConfigErrorKind::DuplicateListen {
                    endpoint: raw.listen.get_ref().clone(),
                    other: other.to_string(),
                };
                self.report(raw.listen.span(), name, kind);
            } else {
                owners.insert(key, name);
            }
        }
    }

    /// A wildcard and a specific address on one port, which the kernel would not let both bind;
    /// reported once per server, at the later of the two.
    fn check_shared_ports(&mut self, servers: &[RawServer], endpoints: &[Option<Endpoint>]) {
        let binds: Vec<_> = (servers.iter().zip(endpoints))
            .filter_map(|(raw, endpoint)| InetBind::of(raw, endpoint.as_ref()?))
            .collect();
        for (index, bind) in binds.iter().enumerate() {
            let Some((other, fix)) = binds[..index].iter().find_map(|other| clash(other, bind))
            else {
                continue;
            };
            let kind = ConfigErrorKind::SharedPort {
                endpoint: bind.raw.listen.get_ref().clone(),
                other: other.raw.name.get_ref().clone(),
                other_endpoint: other.raw.listen.get_ref().clone(),
                other_line: self.line(other.raw.listen.span()),
                fix,
            };
            self.report(bind.raw.listen.span(), bind.raw.name.get_ref(), kind);
        }
    }

    /// A Unix socket file needs an existing folder, and a path short enough for the kernel.
    fn check_socket_paths(&mut self, servers: &[RawServer], endpoints: &[Option<Endpoint>]) {
        for (raw, endpoint) in servers.iter().zip(endpoints) {
            let Some(path) = endpoint.as_ref().and_then(Endpoint::path) else {
                continue;
            };
            let problem = folder_problem(path).or_else(|| {
                let length = path.as_os_str().len();
                (length > MAX_UNIX_PATH).then(|| ConfigErrorKind::SocketPathTooLong {
                    path: path.to_path_buf(),
                    length,
                    max: MAX_UNIX_PATH,
                })
            });
            if let Some(kind) = problem {
                self.report(raw.listen.span(), raw.name.get_ref(), kind);
            }
        }
    }
}

/// What is wrong with the folder a socket file would be made in, if anything.
fn folder_problem(path: &Path) -> Option<ConfigErrorKind> {
    let folder = path
        .parent()
        .filter(|folder| !folder.as_os_str().is_empty())?;
    let problem = match std::fs::metadata(folder) {
        Ok(meta) if meta.is_dir() => return None,
        Ok(_) => "is not a folder".to_string(),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => "does not exist".to_string(),
        Err(error) => format!("cannot be used: {error}"),
    };
    Some(ConfigErrorKind::SocketFolder {
        folder: PathBuf::from(folder),
        problem,
    })
}

/// What two servers must not share: an address for one socket kind, or a socket file (a Unix stream
/// and a Unix datagram socket cannot share a path either).
#[derive(Debug, PartialEq, Eq, Hash)]
enum BindKey<'e> {
    Inet(SocketKind, SocketAddr),
    File(&'e Path),
}

impl<'e> BindKey<'e> {
    /// `None` for port 0, which the system replaces by a free port.
    fn of(endpoint: &'e Endpoint) -> Option<Self> {
        match (endpoint.inet(), endpoint.path()) {
            (Some(addr), _) if addr.port() == 0 => None,
            (Some(addr), _) => Some(BindKey::Inet(endpoint.kind(), addr)),
            (None, Some(path)) => Some(BindKey::File(path)),
            (None, None) => None,
        }
    }
}

/// A TCP or UDP server's bind, with what decides whether it can share its port.
struct InetBind<'r> {
    raw: &'r RawServer,
    kind: SocketKind,
    /// The address, an IPv4-mapped IPv6 address as the IPv4 address it is.
    addr: SocketAddr,
    reuse_address: bool,
    reuse_port: bool,
    /// `IPV6_V6ONLY`; unset is taken as false, Linux's default (`net.ipv6.bindv6only = 0`).
    v6only: bool,
}

impl<'r> InetBind<'r> {
    /// `None` for Unix endpoints and port 0.
    fn of(raw: &'r RawServer, endpoint: &Endpoint) -> Option<Self> {
        let addr = endpoint.inet().filter(|addr| addr.port() != 0)?;
        let addr = match addr.ip() {
            IpAddr::V6(ip) => ip
                .to_ipv4_mapped()
                .map_or(addr, |ip| (ip, addr.port()).into()),
            IpAddr::V4(_) => addr,
        };
        let socket = &raw.socket;
        Some(InetBind {
            raw,
            kind: endpoint.kind(),
            addr,
            // The defaults of `SocketOptions::for_kind`: SO_REUSEADDR is opt-in for UDP.
            reuse_address: socket
                .reuse_address
                .unwrap_or(endpoint.kind() != SocketKind::Udp),
            reuse_port: socket.reuse_port.unwrap_or(false),
            v6only: socket.v6only.as_ref().is_some_and(|only| *only.get_ref()),
        })
    }

    /// Whether this bind takes its port on `other`'s address too: it is the wildcard of
    /// `other`'s family (or `[::]` without v6only, of both).
    fn covers(&self, other: &InetBind<'_>) -> bool {
        match self.addr.ip() {
            IpAddr::V4(ip) => ip.is_unspecified() && other.addr.is_ipv4(),
            IpAddr::V6(ip) => ip.is_unspecified() && (other.addr.is_ipv6() || !self.v6only),
        }
    }
}

/// `earlier` and `later` cannot both bind (different addresses, one a wildcard covering the
/// other, and no socket option lets them share): `earlier`, and how to fix it.
fn clash<'a, 'r>(
    earlier: &'a InetBind<'r>,
    later: &InetBind<'_>,
) -> Option<(&'a InetBind<'r>, String)> {
    let same_port = earlier.kind == later.kind && earlier.addr.port() == later.addr.port();
    if !same_port {
        return None;
    }
    // One address written two ways (`127.0.0.1` and `[::ffff:127.0.0.1]`) is the same bind; the
    // same text twice is the duplicate endpoint reported elsewhere.
    let same_address = earlier.addr.ip() == later.addr.ip();
    if same_address && earlier.raw.listen.get_ref() == later.raw.listen.get_ref() {
        return None;
    }
    let wildcard = match (earlier.covers(later), later.covers(earlier), same_address) {
        (true, ..) | (.., true) => earlier,
        (_, true, _) => later,
        _ => return None,
    };
    let both = |option: fn(&InetBind<'_>) -> bool| option(earlier) && option(later);
    let (shareable, share) = match earlier.kind {
        SocketKind::Udp => (
            both(|b| b.reuse_address) || both(|b| b.reuse_port),
            "set socket.reuse_address = true on both",
        ),
        _ => (
            both(|b| b.reuse_port),
            "set socket.reuse_port = true on both",
        ),
    };
    if shareable {
        return None;
    }
    let dual_stack = wildcard.addr.is_ipv6() && (earlier.addr.is_ipv4() || later.addr.is_ipv4());
    let fix = if dual_stack {
        format!("set socket.v6only = true on the [::] server, or {share}")
    } else {
        format!("listen on one address, or {share}")
    };
    Some((earlier, fix))
}
