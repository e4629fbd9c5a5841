//! What one server lets its clients hold — `[server.limits]` — and the gate that enforces it at
//! accept, before any handler code runs.
//!
//! The keys and their meaning follow the servers operators already trust: xinetd's `instances`,
//! `per_source`, `cps`, `only_from`/`no_access`; systemd's `MaxConnections=` and
//! `MaxConnectionsPerSource=`; nginx's `limit_conn`; Envoy's `idle_timeout` and
//! `max_connection_duration`. A refused connection is closed at once, without a byte, never queued
//! behind a thread that may never come free; each refusal is logged with its reason at a bounded
//! rate (see `peer_log`).
//!
//! A source is the peer's IP address — an IPv6 one by its /64 prefix (`ipv6_prefix`), since one
//! host commonly holds a whole /64 — or, on a Unix socket, the peer's uid as the kernel reports it
//! (`SO_PEERCRED`). The gate's per-source tables are bounded ([`MAX_SOURCES`]): a flood of distinct
//! sources cannot grow them without end.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use ipnet::IpNet;

use crate::budget::InputBudget;
use crate::memory;
use sockserv_plugin::Address;

/// The most distinct sources the gate tracks at once for rates. When the table is full, the
/// buckets that have refilled are forgotten (they say nothing a new bucket would not); if that
/// frees less than an eighth of the table, all are (a forgotten source starts again with a full
/// burst). Either way the cost is amortised: a flood of new sources cannot make each one cost a
/// scan of the table.
pub const MAX_SOURCES: usize = 65_536;

/// Default `max_connections`: a few thousand clients fit every strategy on a small machine
/// (threading spends a thread each), and a flood of connections cannot exhaust threads or memory.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// Default `idle_timeout`: a connection with no byte in either direction for five minutes is
/// closed (nginx's `keepalive_timeout` is 75 s, Sōzu's `front_timeout` 60 s; chat rooms can be
/// quiet for a while, so sockserv waits longer).
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// Default `max_buffered_input`: what a server's connections may hold together in incomplete
/// frames and lines (see `budget`), 64 MiB.
pub const DEFAULT_MAX_BUFFERED_INPUT: usize = 64 * 1024 * 1024;
/// Default IPv6 prefix length that makes one source.
pub const DEFAULT_IPV6_PREFIX: u8 = 64;

/// New connections (or datagrams) per second per source, with a burst: a token bucket.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    /// Tokens added per second.
    pub per_second: f64,
    /// The bucket's size: how many may come at once after a quiet spell.
    pub burst: u32,
}

/// One entry of `allow` or `deny`: a CIDR block, or a Unix peer's uid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceRule {
    Net(IpNet),
    Uid(u32),
}

impl SourceRule {
    pub(crate) fn matches(&self, source: &Peer) -> bool {
        match (self, source) {
            (SourceRule::Net(net), Peer::Ip(ip)) => net.contains(ip),
            (SourceRule::Uid(uid), Peer::Uid(peer)) => uid == peer,
            _ => false,
        }
    }
}

impl fmt::Display for SourceRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SourceRule::Net(net) => write!(f, "{net}"),
            SourceRule::Uid(uid) => write!(f, "uid {uid}"),
        }
    }
}

/// `[server.limits]`, validated. Every bound applies under every strategy, to built-ins and
/// plugins alike.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Open connections at once; one more is refused at accept. `None`: no bound.
    pub max_connections: Option<usize>,
    /// Open connections at once from one source. `None`: no bound.
    pub max_connections_per_source: Option<usize>,
    /// The prefix length that groups IPv6 peers into one source (1 to 128).
    pub ipv6_prefix: u8,
    /// New connections (datagram servers: datagrams) per second per source. `None`: no bound.
    pub accept_rate: Option<Rate>,
    /// No byte in either direction for this long closes the connection. `None`: never.
    pub idle_timeout: Option<Duration>,
    /// A connection that has sent nothing this long after accept is closed. `None`: never.
    pub first_byte_timeout: Option<Duration>,
    /// A connection open this long is closed, busy or not. `None`: never.
    pub max_connection_duration: Option<Duration>,
    /// When not empty, only these sources are served (xinetd's `only_from`).
    pub allow: Vec<SourceRule>,
    /// These sources are never served, even when allowed (xinetd's `no_access`).
    pub deny: Vec<SourceRule>,
    /// Bytes of input all connections together may hold while a frame or line is incomplete;
    /// past it, the connection holding the most is closed. `None`: no budget.
    pub max_buffered_input: Option<usize>,
}

impl Default for Limits {
    /// Bounds safe for a server on the open internet: see each `DEFAULT_*`.
    fn default() -> Self {
        Limits {
            max_connections: Some(DEFAULT_MAX_CONNECTIONS),
            max_connections_per_source: None,
            ipv6_prefix: DEFAULT_IPV6_PREFIX,
            accept_rate: None,
            idle_timeout: Some(DEFAULT_IDLE_TIMEOUT),
            // Off: a chat member may listen without ever speaking; the idle timeout bounds a
            // client that holds a connection and does nothing.
            first_byte_timeout: None,
            max_connection_duration: None,
            allow: Vec::new(),
            deny: Vec::new(),
            max_buffered_input: Some(DEFAULT_MAX_BUFFERED_INPUT),
        }
    }
}

impl Limits {
    /// The defaults for a socket of `kind`: a datagram socket has no connections to bound.
    pub fn for_kind(kind: crate::SocketKind) -> Limits {
        if kind.is_stream() {
            Limits::default()
        } else {
            Limits {
                max_connections: None,
                idle_timeout: None,
                max_buffered_input: None,
                ..Limits::default()
            }
        }
    }

    /// No bound at all: what socketserver does.
    pub fn none() -> Limits {
        Limits {
            max_connections: None,
            idle_timeout: None,
            max_buffered_input: None,
            ..Limits::default()
        }
    }
}

/// Why the gate refused a peer; its `Display` is the reason logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Matched `deny`, or not `allow`ed.
    Denied,
    /// `max_connections` open already.
    MaxConnections(usize),
    /// `max_connections_per_source` open already from this source.
    PerSource(usize),
    /// Over `accept_rate`.
    Rate,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Denied => f.write_str("denied"),
            Refusal::MaxConnections(max) => write!(f, "limit: max_connections ({max})"),
            Refusal::PerSource(max) => write!(f, "limit: per_source ({max})"),
            Refusal::Rate => f.write_str("rate"),
        }
    }
}

/// Who a peer is, for the limits: its IP, or a Unix peer's uid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Peer {
    Ip(IpAddr),
    Uid(u32),
    Unknown,
}

impl Peer {
    /// The peer of `address` (`uid`: a Unix peer's, from `SO_PEERCRED`).
    pub fn of(address: &Address, uid: Option<u32>) -> Peer {
        match (address.inet(), uid) {
            (Some(inet), _) => Peer::Ip(inet.ip().to_canonical()),
            (None, Some(uid)) => Peer::Uid(uid),
            (None, None) => Peer::Unknown,
        }
    }

    /// The source this peer counts against: an IPv6 address by its prefix.
    fn source(self, ipv6_prefix: u8) -> Peer {
        match self {
            Peer::Ip(IpAddr::V6(v6)) => {
                let net = ipnet::Ipv6Net::new(v6, ipv6_prefix).map(|net| net.trunc());
                Peer::Ip(IpAddr::V6(net.map_or(v6, |net| net.network())))
            }
            other => other,
        }
    }
}

/// A token bucket.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Enforces one server's [`Limits`] at accept; shared by the serving loop and the tickets.
#[derive(Debug)]
pub(crate) struct Gate {
    limits: Limits,
    /// `max_buffered_input`, across the server's connections.
    pub budget: InputBudget,
    open: AtomicUsize,
    state: Mutex<GateState>,
}

#[derive(Debug, Default)]
struct GateState {
    per_source: HashMap<Peer, usize>,
    buckets: HashMap<Peer, Bucket>,
}

/// An admitted connection's place in the counts; dropping it (when the connection ends, wherever
/// it ran) gives the place back. Tickets are also the process's count of open connections, which
/// decides when freed memory goes back to the kernel (see `memory`).
#[derive(Debug)]
pub(crate) struct Ticket {
    gate: Arc<Gate>,
    source: Peer,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.gate.open.fetch_sub(1, Ordering::AcqRel);
        if self.gate.limits.max_connections_per_source.is_some() {
            let mut state = self.gate.lock();
            if let Some(count) = state.per_source.get_mut(&self.source) {
                *count -= 1;
                if *count == 0 {
                    state.per_source.remove(&self.source);
                    memory::shrink_sparse_map(&mut state.per_source);
                }
            }
        }
        memory::connection_closed();
    }
}

impl Gate {
    pub fn new(limits: Limits) -> Arc<Gate> {
        Arc::new(Gate {
            budget: InputBudget::new(limits.max_buffered_input),
            limits,
            open: AtomicUsize::new(0),
            state: Mutex::default(),
        })
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    fn lock(&self) -> MutexGuard<'_, GateState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }

    /// Admit a new connection from `peer`, or say why not.
    pub fn admit(self: &Arc<Self>, peer: Peer, now: Instant) -> Result<Ticket, Refusal> {
        self.allowed(peer)?;
        let limits = &self.limits;
        let source = peer.source(limits.ipv6_prefix);
        if let Some(max) = limits.max_connections {
            if self.open() >= max {
                return Err(Refusal::MaxConnections(max));
            }
        }
        let mut state = self.lock();
        if let Some(max) = limits.max_connections_per_source {
            if state.per_source.get(&source).copied().unwrap_or(0) >= max {
                return Err(Refusal::PerSource(max));
            }
        }
        self.take_token(&mut state, source, now)?;
        if limits.max_connections_per_source.is_some() {
            *state.per_source.entry(source).or_insert(0) += 1;
        }
        self.open.fetch_add(1, Ordering::AcqRel);
        memory::connection_opened();
        Ok(Ticket {
            gate: Arc::clone(self),
            source,
        })
    }

    /// Admit one datagram from `peer`: `allow`/`deny` and the rate apply.
    pub fn admit_datagram(&self, peer: Peer, now: Instant) -> Result<(), Refusal> {
        self.allowed(peer)?;
        let source = peer.source(self.limits.ipv6_prefix);
        self.take_token(&mut self.lock(), source, now)
    }

    fn allowed(&self, peer: Peer) -> Result<(), Refusal> {
        let limits = &self.limits;
        let allowed = limits.allow.is_empty() || limits.allow.iter().any(|r| r.matches(&peer));
        if !allowed || limits.deny.iter().any(|rule| rule.matches(&peer)) {
            return Err(Refusal::Denied);
        }
        Ok(())
    }

    fn take_token(&self, state: &mut GateState, source: Peer, now: Instant) -> Result<(), Refusal> {
        let Some(rate) = self.limits.accept_rate else {
            return Ok(());
        };
        if !state.buckets.contains_key(&source) && state.buckets.len() >= MAX_SOURCES {
            make_room(&mut state.buckets, rate, now);
        }
        let full = f64::from(rate.burst);
        let bucket = state.buckets.entry(source).or_insert(Bucket {
            tokens: full,
            at: now,
        });
        let refill = now.saturating_duration_since(bucket.at).as_secs_f64() * rate.per_second;
        bucket.tokens = (bucket.tokens + refill).min(full);
        bucket.at = now;
        if bucket.tokens < 1.0 {
            return Err(Refusal::Rate);
        }
        bucket.tokens -= 1.0;
        Ok(())
    }
}

/// Make room in a full bucket table (see [`MAX_SOURCES`]).
fn make_room(buckets: &mut HashMap<Peer, Bucket>, rate: Rate, now: Instant) {
    let refill_time = Duration::from_secs_f64(f64::from(rate.burst) / rate.per_second.max(1e-9));
    buckets.retain(|_, bucket| now.saturating_duration_since(bucket.at) < refill_time);
    if buckets.len() > MAX_SOURCES - MAX_SOURCES / 8 {
        buckets.clear();
    }
}

#[cfg(test)]
mod tests;
