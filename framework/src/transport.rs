//! Making the listening socket of each kind with socket2, so that every socket option is a config key,
//! and looking after the Unix socket file: a stale file (nothing listening) is replaced, a live socket or
//! a file that is not a socket is an error, and the file is removed when the server closes — but only if
//! it is still the one this server made.

use std::fs;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};

use socket2::{Domain, SockAddr, Socket, Type};
use sockserv_plugin::Address;

use crate::{Endpoint, ServerError, SocketKind, SocketOptions};

/// A bound (and, for streams, listening) socket with what the server needs to know about it.
#[derive(Debug)]
pub(crate) struct Bound {
    pub socket: Socket,
    /// The address actually bound (the real port when the config said 0).
    pub local: Address,
    pub endpoint: Endpoint,
    /// The Unix socket file this server made, removed at close.
    pub unix_file: Option<UnixFile>,
}

/// A socket file this server created, identified by device and inode so that close never removes a
/// file somebody else has put at the same path since.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnixFile {
    path: PathBuf,
    dev: u64,
    ino: u64,
}

impl UnixFile {
    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Remove the file, if it is still the one the server made (same device and inode).
    pub fn remove(&self) {
        let ours = fs::symlink_metadata(&self.path)
            .map(|meta| meta.dev() == self.dev && meta.ino() == self.ino)
            .unwrap_or(false);
        if ours {
            if let Err(err) = fs::remove_file(&self.path) {
                log::warn!("cannot remove {}: {err}", self.path.display());
            }
        }
    }
}

impl UnixFile {
    /// The socket file at `path` as it is now, to be removed by this process when its server
    /// ends: for a listener handed over by a predecessor that made it. `None` when there is no
    /// socket file there.
    pub fn at(path: &Path) -> Option<UnixFile> {
        let meta = fs::symlink_metadata(path).ok()?;
        meta.file_type().is_socket().then(|| UnixFile {
            path: path.into(),
            dev: meta.dev(),
            ino: meta.ino(),
        })
    }
}

/// A listening socket (bound, and for streams listening) kept apart from any server, with the Unix
/// socket file it made: what a supervisor holds so that a server's socket outlives the server —
/// handed to a successor on a reload (a duplicate shares the kernel's accept queue, so no
/// connection waits on a closed socket) or to a new executable on an upgrade.
#[derive(Debug)]
pub struct Listener {
    socket: Socket,
    /// The endpoint as bound (the real port when the config said 0).
    endpoint: Endpoint,
    /// The Unix socket file to remove once no server uses the socket; `None` for other kinds, an
    /// abstract socket, or a socket whose file is somebody else's (systemd's).
    unix_file: Option<UnixFile>,
}

impl Listener {
    /// Make, configure and bind the socket for `endpoint` (see [`crate::Server::bind`]).
    ///
    /// # Errors
    ///
    /// As for [`crate::Server::bind`].
    pub fn bind(endpoint: &Endpoint, options: &SocketOptions) -> Result<Listener, ServerError> {
        let bound = bind(endpoint, options)?;
        Ok(Listener {
            socket: bound.socket,
            endpoint: bound.endpoint,
            unix_file: bound.unix_file,
        })
    }

    /// Take over `socket`, handed over already bound for `endpoint`. With `owns_file`, the Unix
    /// socket file at its path (if one is there) is this process's to remove: a predecessor made
    /// it; without, it stays its maker's (systemd's).
    ///
    /// # Errors
    ///
    /// As for [`crate::Server::from_socket`].
    pub fn adopt(
        endpoint: &Endpoint,
        socket: Socket,
        owns_file: bool,
    ) -> Result<Listener, ServerError> {
        let bound = adopt(endpoint, socket)?;
        let unix_file = match (&bound.local, owns_file) {
            (Address::Unix(path), true) if endpoint.path().is_some() => UnixFile::at(path),
            _ => None,
        };
        Ok(Listener {
            socket: bound.socket,
            endpoint: bound.endpoint,
            unix_file,
        })
    }

    /// The endpoint as bound.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// The socket itself (to hand its descriptor to another process).
    pub fn socket(&self) -> &Socket {
        &self.socket
    }

    /// A second descriptor for the same socket, for a server to serve on.
    ///
    /// # Errors
    ///
    /// dup(2)'s: out of descriptors.
    pub fn duplicate(&self) -> io::Result<Socket> {
        self.socket.try_clone()
    }

    /// The Unix socket file this process is to remove once no server uses the socket.
    pub fn unix_file(&self) -> Option<&UnixFile> {
        self.unix_file.as_ref()
    }

    /// Apply `options` to the socket as far as a bound socket allows: the backlog (listen(2) again),
    /// the buffer sizes, and a Unix socket file's mode, owner and group. Returns the keys that take
    /// effect only when a socket is made (`reuse_address`, `reuse_port`, `v6only`) and differ from
    /// `before`: they wait for a new socket.
    ///
    /// # Errors
    ///
    /// The system refused an option.
    pub fn reconfigure(
        &self,
        before: &SocketOptions,
        options: &SocketOptions,
    ) -> io::Result<Vec<&'static str>> {
        if self.endpoint.kind().is_stream()
            && before.request_queue_size != options.request_queue_size
        {
            self.socket.listen(options.request_queue_size)?;
        }
        if let Some(size) = options
            .recv_buffer_size
            .filter(|_| before.recv_buffer_size != options.recv_buffer_size)
        {
            self.socket.set_recv_buffer_size(size)?;
        }
        if let Some(size) = options
            .send_buffer_size
            .filter(|_| before.send_buffer_size != options.send_buffer_size)
        {
            self.socket.set_send_buffer_size(size)?;
        }
        if let Some(file) = &self.unix_file {
            let (owner, group) = (options.unix_owner, options.unix_group);
            if (owner, group) != (before.unix_owner, before.unix_group) {
                std::os::unix::fs::lchown(file.path(), owner, group)?;
            }
            if let Some(mode) = options
                .unix_mode
                .filter(|_| before.unix_mode != options.unix_mode)
            {
                fs::set_permissions(file.path(), fs::Permissions::from_mode(mode))?;
            }
        }
        let mut at_bind = Vec::new();
        if before.reuse_address != options.reuse_address {
            at_bind.push("socket.reuse_address");
        }
        if before.reuse_port != options.reuse_port {
            at_bind.push("socket.reuse_port");
        }
        if before.v6only != options.v6only {
            at_bind.push("socket.v6only");
        }
        Ok(at_bind)
    }
}

/// Make, configure and bind the socket for `endpoint`; streams also listen. The socket is
/// non-blocking: the serving loop waits in poll(2) and treats `WouldBlock` as "nothing yet".
pub(crate) fn bind(endpoint: &Endpoint, options: &SocketOptions) -> Result<Bound, ServerError> {
    let fail = |step: &'static str| {
        move |source: io::Error| ServerError::Bind {
            endpoint: endpoint.clone(),
            step,
            source,
        }
    };
    let kind = endpoint.kind();
    let (domain, addr) = match endpoint {
        Endpoint::Tcp(ip) | Endpoint::Udp(ip) => (Domain::for_address(*ip), SockAddr::from(*ip)),
        Endpoint::Unix(_) | Endpoint::UnixDatagram(_) if endpoint.abstract_name().is_some() => {
            let name = endpoint.abstract_name().unwrap_or_default();
            (Domain::UNIX, abstract_address(name).map_err(fail("name"))?)
        }
        Endpoint::Unix(path) | Endpoint::UnixDatagram(path) => {
            clear_stale_socket(path, kind)?;
            (Domain::UNIX, SockAddr::unix(path).map_err(fail("name"))?)
        }
    };
    let ty = if kind.is_stream() {
        Type::STREAM
    } else {
        Type::DGRAM
    };
    let socket = Socket::new(domain, ty, None).map_err(fail("create a socket for"))?;
    apply_options(&socket, endpoint, options).map_err(fail("set socket options on"))?;
    socket.bind(&addr).map_err(fail("bind"))?;
    let unix_file = match endpoint.path() {
        Some(path) => Some(own_socket_file(path, options).map_err(fail("set up"))?),
        None => None,
    };
    if kind.is_stream() {
        socket
            .listen(options.request_queue_size)
            .map_err(fail("listen on"))?;
    }
    socket.set_nonblocking(true).map_err(fail("configure"))?;
    let local = socket
        .local_addr()
        .map(|addr| to_address(&addr))
        .map_err(fail("read the address of"))?;
    let endpoint = with_real_port(endpoint, &local);
    Ok(Bound {
        socket,
        local,
        endpoint,
        unix_file,
    })
}

/// Take over a socket this process was handed already bound (and, for streams, listening) — by
/// systemd's socket activation, say — for `endpoint`. Its kind and address family must be the
/// endpoint's; its options are whoever made it's (systemd's `Backlog=`, `ReuseAddress=`, ...), and
/// a Unix socket file stays theirs to remove.
pub(crate) fn adopt(endpoint: &Endpoint, socket: Socket) -> Result<Bound, ServerError> {
    let fail = |step: &'static str| {
        move |source: io::Error| ServerError::Bind {
            endpoint: endpoint.clone(),
            step,
            source,
        }
    };
    let mismatch = |what: String| {
        let source = io::Error::new(io::ErrorKind::InvalidInput, what);
        fail("take over the passed socket for")(source)
    };
    let ty = socket
        .r#type()
        .map_err(fail("inspect the passed socket for"))?;
    let want = if endpoint.kind().is_stream() {
        Type::STREAM
    } else {
        Type::DGRAM
    };
    if ty != want {
        let (got, wanted) = if want == Type::STREAM {
            ("a datagram", "a stream")
        } else {
            ("a stream", "a datagram")
        };
        return Err(mismatch(format!(
            "it is {got} socket, the endpoint needs {wanted} one"
        )));
    }
    let addr = socket.local_addr().map_err(fail("read the address of"))?;
    let family_fits = match endpoint {
        Endpoint::Tcp(ip) | Endpoint::Udp(ip) => addr
            .as_socket()
            .is_some_and(|a| a.is_ipv4() == ip.is_ipv4()),
        Endpoint::Unix(_) | Endpoint::UnixDatagram(_) => addr.is_unix(),
    };
    if !family_fits {
        return Err(mismatch(format!(
            "it is bound to {}, not an address of the endpoint's family",
            to_address(&addr)
        )));
    }
    socket.set_nonblocking(true).map_err(fail("configure"))?;
    let local = to_address(&addr);
    let endpoint = with_real_port(endpoint, &local);
    Ok(Bound {
        socket,
        local,
        endpoint,
        unix_file: None,
    })
}

fn apply_options(socket: &Socket, endpoint: &Endpoint, options: &SocketOptions) -> io::Result<()> {
    if endpoint.inet().is_some() {
        socket.set_reuse_address(options.reuse_address)?;
        if options.reuse_port {
            socket.set_reuse_port(true)?;
        }
    }
    if let (Some(only), Some(SocketAddr::V6(_))) = (options.v6only, endpoint.inet()) {
        socket.set_only_v6(only)?;
    }
    if let (Some(nodelay), Endpoint::Tcp(_)) = (options.nodelay, endpoint) {
        socket.set_tcp_nodelay(nodelay)?;
    }
    if let Some(size) = options.recv_buffer_size {
        socket.set_recv_buffer_size(size)?;
    }
    if let Some(size) = options.send_buffer_size {
        socket.set_send_buffer_size(size)?;
    }
    Ok(())
}

/// Remove a socket file that nothing listens on; refuse a live socket or a file that is not a socket.
fn clear_stale_socket(path: &Path, kind: SocketKind) -> Result<(), ServerError> {
    let meta = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(source) => return Err(unix_error(path, "inspect", source)),
    };
    if !meta.file_type().is_socket() {
        return Err(ServerError::NotASocket { path: path.into() });
    }
    match probe(path, kind) {
        Err(err) if err.kind() == io::ErrorKind::ConnectionRefused => {
            log::info!("replacing stale socket file {}", path.display());
            fs::remove_file(path).map_err(|source| unix_error(path, "remove the stale", source))
        }
        // Anything else — accepted, a full backlog (`EAGAIN`), a socket of the other kind — means
        // something is there: never remove it.
        _ => Err(ServerError::UnixSocketInUse { path: path.into() }),
    }
}

/// Connect to `path` without waiting: a non-blocking connect to a Unix socket answers at once,
/// `ECONNREFUSED` when nothing listens and `EAGAIN` when a live server's backlog is full (a blocking
/// connect would wait for as long as the backlog stays full).
fn probe(path: &Path, kind: SocketKind) -> io::Result<()> {
    let ty = if kind == SocketKind::UnixStream {
        Type::STREAM
    } else {
        Type::DGRAM
    };
    let socket = Socket::new(Domain::UNIX, ty.nonblocking(), None)?;
    socket.connect(&SockAddr::unix(path)?)
}

fn unix_error(path: &Path, step: &'static str, source: io::Error) -> ServerError {
    ServerError::Bind {
        endpoint: Endpoint::Unix(path.into()),
        step,
        source,
    }
}

/// Give the new socket file its owner, group and mode (the options', where they say), and
/// remember which file it is.
fn own_socket_file(path: &Path, options: &SocketOptions) -> io::Result<UnixFile> {
    if options.unix_owner.is_some() || options.unix_group.is_some() {
        std::os::unix::fs::lchown(path, options.unix_owner, options.unix_group)?;
    }
    if let Some(mode) = options.unix_mode {
        fs::set_permissions(path, fs::Permissions::from_mode(mode))?;
    }
    let meta = fs::symlink_metadata(path)?;
    Ok(UnixFile {
        path: path.into(),
        dev: meta.dev(),
        ino: meta.ino(),
    })
}

/// The address of a Linux abstract socket: a leading NUL, then the name (no file, no terminator).
pub(crate) fn abstract_address(name: &[u8]) -> io::Result<SockAddr> {
    use std::os::unix::ffi::OsStrExt;
    let bytes = [&[0u8][..], name].concat();
    SockAddr::unix(std::ffi::OsStr::from_bytes(&bytes))
}

/// The endpoint as bound: port 0 replaced by the port the system chose.
fn with_real_port(endpoint: &Endpoint, local: &Address) -> Endpoint {
    match (endpoint, local.inet()) {
        (Endpoint::Tcp(_), Some(addr)) => Endpoint::Tcp(addr),
        (Endpoint::Udp(_), Some(addr)) => Endpoint::Udp(addr),
        _ => endpoint.clone(),
    }
}

/// A socket2 address as the handler API prints it.
pub(crate) fn to_address(addr: &SockAddr) -> Address {
    use std::os::unix::ffi::OsStrExt;
    if let Some(inet) = addr.as_socket() {
        Address::Inet(inet)
    } else if let Some(path) = addr.as_pathname() {
        Address::Unix(path.into())
    } else if let Some(name) = addr.as_abstract_namespace() {
        let written = [&b"@"[..], name].concat();
        Address::Unix(std::ffi::OsStr::from_bytes(&written).into())
    } else {
        Address::UnixUnnamed
    }
}

/// A datagram socket in the std types that can receive into a plain byte buffer and reply.
#[derive(Debug)]
pub(crate) enum Datagram {
    Udp(UdpSocket),
    Unix(UnixDatagram),
}

/// Where a datagram came from, in the form needed to answer it.
#[derive(Debug, Clone)]
pub(crate) enum ReplyTo {
    Udp(SocketAddr),
    Unix(std::os::unix::net::SocketAddr),
}

impl ReplyTo {
    pub fn address(&self) -> Address {
        match self {
            ReplyTo::Udp(addr) => Address::Inet(*addr),
            ReplyTo::Unix(addr) => match addr.as_pathname() {
                Some(path) => Address::Unix(path.into()),
                None => Address::UnixUnnamed,
            },
        }
    }
}

impl Datagram {
    pub fn from_socket(socket: &Socket, kind: SocketKind) -> io::Result<Datagram> {
        let socket = socket.try_clone()?;
        Ok(match kind {
            SocketKind::Udp => Datagram::Udp(socket.into()),
            _ => Datagram::Unix(socket.into()),
        })
    }

    pub fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, ReplyTo)> {
        match self {
            Datagram::Udp(sock) => sock.recv_from(buf).map(|(n, a)| (n, ReplyTo::Udp(a))),
            Datagram::Unix(sock) => sock.recv_from(buf).map(|(n, a)| (n, ReplyTo::Unix(a))),
        }
    }

    pub fn send_to(&self, buf: &[u8], to: &ReplyTo) -> io::Result<usize> {
        match (self, to) {
            (Datagram::Udp(sock), ReplyTo::Udp(addr)) => sock.send_to(buf, addr),
            (Datagram::Unix(sock), ReplyTo::Unix(addr)) => sock.send_to_addr(buf, addr),
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "reply address of another socket kind",
            )),
        }
    }
}
