//! The validated settings of one server: what the config produces and what `Server::bind` consumes.
//! Defaults keep socketserver's names and values where it has them.

use std::time::Duration;

use crate::limits::Limits;
use crate::proxy::ProxyProtocol;
use crate::{Endpoint, SocketKind};

/// The listen backlog (socketserver's `request_queue_size`). socketserver's 5 makes clients that
/// connect in a burst (the sockets tutorial's multiconn-client opens 100 at once) see
/// `Connection reset by peer`; 128 is Python's own `socket.listen()` default (`SOMAXCONN`), and the
/// kernel caps any value at its `net.core.somaxconn`, so the effective default is the smaller of
/// the two.
pub const DEFAULT_REQUEST_QUEUE_SIZE: i32 = 128;
/// socketserver's `max_packet_size` for datagram servers.
pub const DEFAULT_MAX_PACKET_SIZE: usize = 8192;
/// socketserver's ForkingMixIn `max_children`.
pub const DEFAULT_MAX_CHILDREN: usize = 40;
/// How long shutdown lets requests in flight finish before closing their connections: long enough
/// for a reply in progress, short enough for a supervisor's stop timeout (systemd's is 90 s).
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Socket options, each a config key. Options that do not apply to a socket kind are ignored for it
/// (nodelay on UDP, v6only on IPv4), and the config check says so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SocketOptions {
    /// `SO_REUSEADDR` (socketserver's `allow_reuse_address`). On by default for TCP, like Twisted:
    /// there it only lets a restarted server bind while old connections sit in TIME_WAIT. Off by
    /// default for UDP (see [`SocketOptions::for_kind`]): on a datagram socket it lets a second
    /// socket — another sockserv, or any local user — bind the same port and take the clients'
    /// datagrams. Meaningless for Unix sockets.
    pub reuse_address: bool,
    /// `SO_REUSEPORT`; opt-in (socketserver's `allow_reuse_port`).
    pub reuse_port: bool,
    /// `TCP_NODELAY` on accepted TCP connections; `None` keeps the system default.
    pub nodelay: Option<bool>,
    /// `SO_RCVBUF` in bytes; `None` keeps the system default.
    pub recv_buffer_size: Option<usize>,
    /// `SO_SNDBUF` in bytes; `None` keeps the system default.
    pub send_buffer_size: Option<usize>,
    /// The listen backlog of stream sockets.
    pub request_queue_size: i32,
    /// `IPV6_V6ONLY` on IPv6 sockets; `None` keeps the system default.
    pub v6only: Option<bool>,
    /// Permission bits of a Unix socket file (e.g. `0o660`); `None` leaves the umask's choice.
    pub unix_mode: Option<u32>,
    /// The owner (uid) given to a Unix socket file, as systemd's `SocketUser=`; `None` keeps
    /// the server's own.
    pub unix_owner: Option<u32>,
    /// The group (gid) given to a Unix socket file, as systemd's `SocketGroup=`; `None` keeps the
    /// server's own.
    pub unix_group: Option<u32>,
}

impl SocketOptions {
    /// The defaults for a socket of `kind`: those of [`Default`], with `SO_REUSEADDR` off for UDP,
    /// so that a second server on a UDP port in use fails to bind as it does for TCP, instead of
    /// sharing (and stealing) the port's datagrams.
    pub fn for_kind(kind: SocketKind) -> SocketOptions {
        SocketOptions {
            reuse_address: kind != SocketKind::Udp,
            ..SocketOptions::default()
        }
    }
}

/// The defaults for TCP (and Unix); use [`SocketOptions::for_kind`] for a UDP socket.
impl Default for SocketOptions {
    fn default() -> Self {
        SocketOptions {
            reuse_address: true,
            reuse_port: false,
            nodelay: None,
            recv_buffer_size: None,
            send_buffer_size: None,
            request_queue_size: DEFAULT_REQUEST_QUEUE_SIZE,
            v6only: None,
            unix_mode: None,
            unix_owner: None,
            unix_group: None,
        }
    }
}

/// The pool strategy's default worker count.
pub const DEFAULT_POOL_WORKERS: usize = 16;
/// The pool strategy's default queue: connections waiting for a worker beyond this are refused.
pub const DEFAULT_POOL_QUEUE: usize = 128;

/// The largest value the config accepts for each numeric key. Each bound is far above what one
/// server needs and below what would fail at run time: without them, `max_packet_size =
/// 1000000000000` passed `check` and aborted the process at the first datagram (the receive
/// buffer could not be allocated), `queue = 1000000000` aborted at start, `workers = 20000` ran out
/// of threads. A value beyond its bound is refused at `sockserv check`, with the bound in the
/// message. Every count and size is also at least 1; timeouts are more than 0.
pub mod limits {
    use std::time::Duration;

    /// `max_threads`: a thread per request up to this. 100 000 threads is beyond what most systems
    /// allow one process (`kernel.threads-max`, `ulimit -u`); a larger cap is no cap.
    pub const MAX_THREADS: usize = 100_000;
    /// `max_children`: a process per request up to this, each a copy of the server; 10 000 is
    /// beyond the per-user process limit of most systems.
    pub const MAX_CHILDREN: usize = 10_000;
    /// `workers`: the pool's threads, all made at bind time, so the bound must be one every
    /// system can make at once.
    pub const POOL_WORKERS: usize = 4_096;
    /// `queue`: the pool's queue is allocated whole at bind time.
    pub const POOL_QUEUE: usize = 65_536;
    /// `loops`: one event loop per core is the point; 1 024 covers the largest machines.
    pub const REACTOR_LOOPS: usize = 1_024;
    /// `max_packet_size` on UDP over IPv4: 65 535 bytes less the IPv4 (20) and UDP (8) headers,
    /// the largest payload a UDP datagram can carry.
    pub const UDP_V4_PACKET: usize = 65_507;
    /// `max_packet_size` on UDP over IPv6: 65 535 bytes less the UDP header (IPv6's payload length
    /// does not count its own header); jumbograms are not supported.
    pub const UDP_V6_PACKET: usize = 65_527;
    /// `max_packet_size` on Unix datagram sockets: the kernel bounds a datagram by the socket's
    /// send buffer, not by a protocol; 16 MiB is more than any default buffer, and the receive
    /// buffer of this size is allocated per server.
    pub const UNIX_DGRAM_PACKET: usize = 16 << 20;
    /// `socket.request_queue_size`: the kernel cuts the backlog down to `net.core.somaxconn`
    /// (4 096 by default) without a word, and kernels before 5.4 kept it in 16 bits: 65 535.
    pub const REQUEST_QUEUE_SIZE: i32 = 65_535;
    /// `socket.recv_buffer_size` and `socket.send_buffer_size`: the kernel caps them at
    /// `net.core.rmem_max`/`wmem_max` (a few hundred KiB by default) anyway; 64 MiB is the most
    /// tuned systems raise those to.
    pub const BUFFER_SIZE: usize = 64 << 20;
    /// `timeout` and `drain_timeout`: a day. Longer is almost surely milliseconds written as
    /// seconds.
    pub const TIMEOUT: Duration = Duration::from_secs(86_400);
    /// `socket.unix_mode`: the permission bits (rwx for owner, group, others). Setuid, setgid
    /// and sticky mean nothing on a socket file and are refused.
    pub const UNIX_MODE: u32 = 0o777;
    /// `[[plugin]] disable_after_panics`: a count of panics; beyond a million, leave the key out
    /// (never disable).
    pub const DISABLE_AFTER_PANICS: usize = 1_000_000;
}

/// The strategy kinds, as named in the config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StrategyKind {
    Sync,
    Threading,
    Forking,
    Pool,
    Reactor,
}

impl StrategyKind {
    pub const ALL: [StrategyKind; 5] = [
        StrategyKind::Sync,
        StrategyKind::Threading,
        StrategyKind::Forking,
        StrategyKind::Pool,
        StrategyKind::Reactor,
    ];

    /// Every strategy that runs blocking request handlers (all but the reactor).
    pub const BLOCKING: [StrategyKind; 4] = [
        StrategyKind::Sync,
        StrategyKind::Threading,
        StrategyKind::Forking,
        StrategyKind::Pool,
    ];

    pub fn name(self) -> &'static str {
        match self {
            StrategyKind::Sync => "sync",
            StrategyKind::Threading => "threading",
            StrategyKind::Forking => "forking",
            StrategyKind::Pool => "pool",
            StrategyKind::Reactor => "reactor",
        }
    }

    /// The kind with this config name.
    pub fn from_name(name: &str) -> Option<StrategyKind> {
        Self::ALL.into_iter().find(|kind| kind.name() == name)
    }
}

impl std::fmt::Display for StrategyKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// How a server runs its requests (socketserver's mixins, as a value the server holds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// One request at a time, in the serving thread.
    Sync,
    /// A thread per request; with `max_threads`, the server stops accepting while that many run.
    Threading {
        /// The most requests served at once; `None`: no limit.
        max_threads: Option<usize>,
    },
    /// A process per request, at most `max_children` at once; the serving process must be
    /// single-threaded (it refuses to fork otherwise).
    Forking {
        /// The most child processes at once (socketserver's `max_children`).
        max_children: usize,
    },
    /// `workers` threads made once; up to `queue` connections wait for a free one, and a connection
    /// beyond that is refused (closed at once, and logged).
    Pool {
        /// Worker threads, all made at bind time.
        workers: usize,
        /// Connections that may wait for a free worker.
        queue: usize,
    },
    /// `loops` event-loop threads (one per core by default), each driving many connections through
    /// the handler's event-driven session: no thread per connection.
    Reactor {
        /// Event-loop threads.
        loops: usize,
    },
}

impl Strategy {
    pub fn kind(&self) -> StrategyKind {
        match self {
            Strategy::Sync => StrategyKind::Sync,
            Strategy::Threading { .. } => StrategyKind::Threading,
            Strategy::Forking { .. } => StrategyKind::Forking,
            Strategy::Pool { .. } => StrategyKind::Pool,
            Strategy::Reactor { .. } => StrategyKind::Reactor,
        }
    }
}

/// Everything about one server but its handler.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerSettings {
    /// The server's name, used in logs and by handlers.
    pub name: String,
    /// Where it listens, and so its socket kind.
    pub endpoint: Endpoint,
    /// How its requests are run.
    pub strategy: Strategy,
    /// The options its listening socket is made with.
    pub socket: SocketOptions,
    /// The largest datagram a datagram server accepts; larger ones are reported and dropped.
    pub max_packet_size: usize,
    /// socketserver's `timeout`: how long `handle_request` waits, and how often `serve_forever` calls
    /// `handle_timeout` while idle. `None`: wait for ever.
    pub timeout: Option<Duration>,
    /// Datagram servers under threading or forking: a thread or process per datagram, as
    /// socketserver's mixins do. Off by default: datagrams are handled in the serving thread, which
    /// is many times faster for the short handlers datagram protocols have.
    pub spawn_per_datagram: bool,
    /// How long `server_close` lets requests in flight finish (their reads end at once) before it
    /// closes their connections under them; see [`DEFAULT_DRAIN_TIMEOUT`].
    pub drain_timeout: Duration,
    /// What the server lets its clients hold (`[server.limits]`); safe defaults for the open
    /// internet (see [`Limits::default`]).
    pub limits: Limits,
    /// The proxies whose PROXY header names the client (`[server.proxy_protocol]`), for stream
    /// endpoints; `None`: no header is read, and the peer is the connection's own address.
    pub proxy_protocol: Option<ProxyProtocol>,
    /// `[server.tls]` (stream endpoints only): its certificates, loaded; `None` serves plaintext.
    pub tls: Option<std::sync::Arc<crate::tls::CertStore>>,
}

impl ServerSettings {
    /// Settings with every default, for a server named `name` on `endpoint`.
    pub fn new(name: impl Into<String>, endpoint: Endpoint) -> Self {
        let socket = SocketOptions::for_kind(endpoint.kind());
        let limits = Limits::for_kind(endpoint.kind());
        ServerSettings {
            name: name.into(),
            endpoint,
            strategy: Strategy::Threading { max_threads: None },
            socket,
            max_packet_size: DEFAULT_MAX_PACKET_SIZE,
            timeout: None,
            spawn_per_datagram: false,
            drain_timeout: DEFAULT_DRAIN_TIMEOUT,
            limits,
            proxy_protocol: None,
            tls: None,
        }
    }
}
