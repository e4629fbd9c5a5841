//! What the servers count, for the `metrics` handler to serve in the Prometheus text format.
//!
//! Every server counts in a slot of one shared board (see `board`): a `MAP_SHARED` mapping of a
//! memory file made before any server is, shared by forked request children and handed to the
//! forking servers' own processes by descriptor, so that what they count is seen by every
//! process, whichever serves `/metrics`. Counting is a relaxed atomic add — no lock, no
//! allocation — made once per accept, per datagram and per close, and for a connection's bytes
//! once per [`FLUSH_BYTES`] each way (see [`Tally`]).
//!
//! The series (all with the labels `server`, `handler`, `transport`, `strategy`; [`render`]
//! writes them):
//!
//! | series | type | what |
//! |---|---|---|
//! | `sockserv_connections_accepted_total` | counter | connections accepted from the listener |
//! | `sockserv_connections_active` | gauge | connections being served now |
//! | `sockserv_connections_refused_total{reason}` | counter | accepted and closed unserved ([`Refusal`]) |
//! | `sockserv_connections_closed_total{reason}` | counter | served connections that ended ([`CloseReason`]) |
//! | `sockserv_connection_duration_seconds` | histogram | how long served connections lasted |
//! | `sockserv_received_bytes_total`, `sockserv_sent_bytes_total` | counter | bytes on the wire (TLS records under TLS), streams and datagrams |
//! | `sockserv_handler_errors_total`, `sockserv_handler_panics_total` | counter | handler failures of its own (not a peer's reset) |
//! | `sockserv_datagrams_received_total`, `sockserv_datagrams_sent_total` | counter | datagram servers |
//! | `sockserv_datagrams_dropped_total{reason}` | counter | datagrams not answered ([`DatagramDrop`]) |
//! | `sockserv_chat_messages_delivered_total`, `sockserv_chat_messages_dropped_total` | counter | chat: queued for a member, or missed by a slow one |
//! | `sockserv_chat_cluster_link_up` | gauge | chat in a cluster: 1 while the link to Redis is up |
//! | `sockserv_chat_cluster_published_total`, `sockserv_chat_cluster_received_total` | counter | chat in a cluster: messages published, and other instances' messages delivered here |
//! | `sockserv_chat_cluster_dropped_total`, `sockserv_chat_cluster_gaps_total` | counter | chat in a cluster: messages not published (queue full, link down), and others' found missing |
//!
//! and for the whole process tree `sockserv_reloads_total{result}`,
//! `sockserv_plugin_load_failures_total` and `sockserv_build_info{version}`.
//!
//! At rest (nothing in flight), `accepted = refused + closed` summed over the reasons; in flight,
//! the difference is `active` plus what waits (a pool's queue, a PROXY header).

#[allow(unsafe_code)]
mod board;
mod encode;

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use board::{board, private_slot, Slot};
pub use board::{MAX_SERVERS, METRICS_FD, NAME_BYTES};
pub use encode::{render, CONTENT_TYPE};

use crate::{SocketKind, StrategyKind};

/// The upper bounds of the connection duration histogram's buckets, in seconds (a last bucket,
/// `+Inf`, takes the rest): from a one-request connection to an hour-long chat.
pub const DURATION_BUCKETS: [f64; 14] = [
    0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0, 3600.0,
];

/// How many bytes a connection moves one way before they are added to its server's counter (and
/// at its close, the rest): a scrape sees a long connection's bytes to within this, and a
/// connection of small requests adds to the shared counter once per this many bytes rather than
/// once per read or write — two atomic adds per round trip, on a cache line every thread of the
/// server shares, were what counting cost most.
pub const FLUSH_BYTES: u64 = 64 * 1024;

/// A connection's bytes one way: its total, for its log line, and what is not yet added to the
/// server's counter (see [`FLUSH_BYTES`]). Made by [`Tally::received`] or [`Tally::sent`].
#[derive(Debug, Clone, Copy)]
pub struct Tally {
    /// Every byte counted so far.
    pub total: u64,
    unflushed: u64,
    /// The counter it adds to.
    index: usize,
}

impl Tally {
    /// Bytes a connection receives.
    pub fn received() -> Tally {
        Tally {
            total: 0,
            unflushed: 0,
            index: index::BYTES_RECEIVED,
        }
    }

    /// Bytes a connection sends.
    pub fn sent() -> Tally {
        Tally {
            index: index::BYTES_SENT,
            ..Tally::received()
        }
    }
}

/// A connection's id: the server's count of accepted connections when it was accepted, so
/// unique per server across its processes and reloads. Written `c123` in every log line about
/// the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnId(pub u64);

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "c{}", self.0)
    }
}

/// Why a served connection ended: the `reason` of `sockserv_connections_closed_total` and of the
/// connection's log line. The names are the config keys that did it, where one did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The peer closed its side first and the handler finished cleanly.
    Eof,
    /// The handler ended the connection (it returned, or closed its session) with the peer
    /// still there: a `quit`, a protocol's own end.
    Handler,
    /// `idle_timeout`: no byte either way for that long.
    IdleTimeout,
    /// `first_byte_timeout`: nothing received for that long after accept.
    FirstByteTimeout,
    /// `max_connection_duration`: open that long.
    MaxConnectionDuration,
    /// `max_buffered_input`: it held the most input when the server's budget ran out.
    MaxBufferedInput,
    /// The peer reset it or stopped reading (a reset, a broken pipe).
    PeerReset,
    /// The handler failed or panicked, or the connection failed for a reason of the server's.
    Error,
    /// It ended while its server was draining (its input was shut at the drain's start).
    Drain,
}

impl CloseReason {
    pub const ALL: [CloseReason; 9] = [
        CloseReason::Eof,
        CloseReason::Handler,
        CloseReason::IdleTimeout,
        CloseReason::FirstByteTimeout,
        CloseReason::MaxConnectionDuration,
        CloseReason::MaxBufferedInput,
        CloseReason::PeerReset,
        CloseReason::Error,
        CloseReason::Drain,
    ];

    /// The label value and the word in the log line.
    pub fn name(self) -> &'static str {
        match self {
            CloseReason::Eof => "eof",
            CloseReason::Handler => "handler",
            CloseReason::IdleTimeout => "idle_timeout",
            CloseReason::FirstByteTimeout => "first_byte_timeout",
            CloseReason::MaxConnectionDuration => "max_connection_duration",
            CloseReason::MaxBufferedInput => "max_buffered_input",
            CloseReason::PeerReset => "peer_reset",
            CloseReason::Error => "error",
            CloseReason::Drain => "drain",
        }
    }
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why an accepted connection was closed unserved: the `reason` of
/// `sockserv_connections_refused_total` and of the (rate-limited) refusal log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `allow`/`deny`.
    Denied,
    /// `max_connections`.
    MaxConnections,
    /// `max_connections_per_source`.
    MaxConnectionsPerSource,
    /// `accept_rate`.
    AcceptRate,
    /// The server's `verify_request` hook said no.
    VerifyRequest,
    /// The pool's `queue` was full.
    Queue,
    /// The process was out of file descriptors (see `descriptors`).
    Descriptors,
    /// `[server.proxy_protocol]`: no valid header in time, or too many awaiting one.
    ProxyHeader,
    /// No thread, process or event loop could be had for it.
    Dispatch,
    /// `[server.tls]`: its TLS handshake failed or did not end in time.
    TlsHandshake,
}

impl Refusal {
    pub const ALL: [Refusal; 10] = [
        Refusal::Denied,
        Refusal::MaxConnections,
        Refusal::MaxConnectionsPerSource,
        Refusal::AcceptRate,
        Refusal::VerifyRequest,
        Refusal::Queue,
        Refusal::Descriptors,
        Refusal::ProxyHeader,
        Refusal::Dispatch,
        Refusal::TlsHandshake,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Refusal::Denied => "denied",
            Refusal::MaxConnections => "max_connections",
            Refusal::MaxConnectionsPerSource => "max_connections_per_source",
            Refusal::AcceptRate => "accept_rate",
            Refusal::VerifyRequest => "verify_request",
            Refusal::Queue => "queue",
            Refusal::Descriptors => "descriptors",
            Refusal::ProxyHeader => "proxy_header",
            Refusal::Dispatch => "dispatch",
            Refusal::TlsHandshake => "tls_handshake",
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a datagram went unanswered: the `reason` of `sockserv_datagrams_dropped_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatagramDrop {
    /// Larger than `max_packet_size`.
    Oversized,
    /// `allow`/`deny`.
    Denied,
    /// `accept_rate`.
    AcceptRate,
    /// `verify_request` said no.
    VerifyRequest,
    /// The pool's `queue` was full.
    Queue,
    /// The handler's reply could not be sent.
    ReplyFailed,
}

impl DatagramDrop {
    pub const ALL: [DatagramDrop; 6] = [
        DatagramDrop::Oversized,
        DatagramDrop::Denied,
        DatagramDrop::AcceptRate,
        DatagramDrop::VerifyRequest,
        DatagramDrop::Queue,
        DatagramDrop::ReplyFailed,
    ];

    pub fn name(self) -> &'static str {
        match self {
            DatagramDrop::Oversized => "oversized",
            DatagramDrop::Denied => "denied",
            DatagramDrop::AcceptRate => "accept_rate",
            DatagramDrop::VerifyRequest => "verify_request",
            DatagramDrop::Queue => "queue",
            DatagramDrop::ReplyFailed => "reply_failed",
        }
    }
}

/// Where each count lives in a slot.
mod index {
    use super::{CloseReason, DatagramDrop, Refusal, DURATION_BUCKETS};

    pub const ACCEPTED: usize = 0;
    pub const OPENED: usize = 1;
    pub const BYTES_RECEIVED: usize = 2;
    pub const BYTES_SENT: usize = 3;
    pub const HANDLER_ERRORS: usize = 4;
    pub const HANDLER_PANICS: usize = 5;
    pub const DATAGRAMS_RECEIVED: usize = 6;
    pub const DATAGRAMS_SENT: usize = 7;
    pub const CHAT_DELIVERED: usize = 8;
    pub const CHAT_DROPPED: usize = 9;
    /// The histogram's sum, in microseconds.
    pub const DURATION_SUM_US: usize = 10;
    /// Bit flags: which optional series the slot has (see `FLAG_CHAT`).
    pub const FLAGS: usize = 11;
    pub const REFUSED: usize = 12;
    pub const CLOSED: usize = REFUSED + Refusal::ALL.len();
    pub const DROPPED: usize = CLOSED + CloseReason::ALL.len();
    /// One count per bucket (not cumulative), the `+Inf` bucket last.
    pub const BUCKETS: usize = DROPPED + DatagramDrop::ALL.len();
    /// A chat cluster's link: 1 up, 0 down (a gauge).
    pub const CLUSTER_LINK_UP: usize = BUCKETS + DURATION_BUCKETS.len() + 1;
    pub const CLUSTER_PUBLISHED: usize = CLUSTER_LINK_UP + 1;
    pub const CLUSTER_RECEIVED: usize = CLUSTER_LINK_UP + 2;
    pub const CLUSTER_DROPPED: usize = CLUSTER_LINK_UP + 3;
    pub const CLUSTER_GAPS: usize = CLUSTER_LINK_UP + 4;
    pub const END: usize = CLUSTER_GAPS + 1;

    /// The slot has chat series.
    pub const FLAG_CHAT: u64 = 1;
    /// The slot has chat cluster series.
    pub const FLAG_CLUSTER: u64 = 2;
}

const _: () = assert!(index::END <= board::COUNTERS);

/// One server's counters: a handle on its slot, cheap to copy into every thread and process.
#[derive(Clone, Copy)]
pub struct ServerMetrics {
    slot: &'static Slot,
}

impl fmt::Debug for ServerMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerMetrics").finish_non_exhaustive()
    }
}

impl ServerMetrics {
    /// The counters of the server named `name`: the same slot every time, in every process that
    /// shares the board (see the module doc). With the board full ([`MAX_SERVERS`]), counters of
    /// this process's own, not exported (a warning says so, once).
    pub fn for_server(name: &str) -> ServerMetrics {
        static WARNED: AtomicBool = AtomicBool::new(false);
        let slot = board().claim(name).unwrap_or_else(|| {
            if !WARNED.swap(true, Ordering::Relaxed) {
                log::warn!(
                    "metrics: more than {MAX_SERVERS} servers; server {name:?} and later ones \
                     are not in /metrics"
                );
            }
            private_slot()
        });
        ServerMetrics { slot }
    }

    /// Label the series: the handler's name, the socket kind and the strategy. A server is
    /// exported once labelled (a name claimed only by a config check is not).
    pub fn set_labels(&self, handler: &str, kind: SocketKind, strategy: StrategyKind) {
        let kind = SocketKind::ALL.iter().position(|k| *k == kind);
        let strategy = StrategyKind::ALL.iter().position(|s| *s == strategy);
        self.slot
            .set_labels(handler, kind.unwrap_or(0), strategy.unwrap_or(0));
    }

    /// A connection was accepted: its id.
    #[inline]
    pub fn accepted(&self) -> ConnId {
        ConnId(self.slot.counts[index::ACCEPTED].fetch_add(1, Ordering::Relaxed) + 1)
    }

    /// An accepted connection was closed unserved.
    #[inline]
    pub fn refused(&self, why: Refusal) {
        self.slot.add(index::REFUSED + why as usize, 1);
    }

    /// A connection is being served from now on; [`ServerMetrics::closed`] ends it.
    #[inline]
    pub fn opened(&self) {
        self.slot.add(index::OPENED, 1);
    }

    /// A connection served for `lasted` ended.
    #[inline]
    pub fn closed(&self, why: CloseReason, lasted: Duration) {
        let seconds = lasted.as_secs_f64();
        let bucket = DURATION_BUCKETS
            .iter()
            .position(|bound| seconds <= *bound)
            .unwrap_or(DURATION_BUCKETS.len());
        let micros = u64::try_from(lasted.as_micros()).unwrap_or(u64::MAX);
        self.slot.add(index::BUCKETS + bucket, 1);
        self.slot.add(index::DURATION_SUM_US, micros);
        self.slot.add(index::CLOSED + why as usize, 1);
    }

    /// `n` more bytes of a connection's `tally`: added to the server's counter once
    /// [`FLUSH_BYTES`] have gathered.
    #[inline]
    pub fn count(&self, tally: &mut Tally, n: u64) {
        tally.total += n;
        tally.unflushed += n;
        if tally.unflushed >= FLUSH_BYTES {
            self.flush(tally);
        }
    }

    /// Add what `tally` gathered to the server's counter (at the connection's close).
    pub fn flush(&self, tally: &mut Tally) {
        let n = std::mem::take(&mut tally.unflushed);
        if n > 0 {
            self.slot.add(tally.index, n);
        }
    }

    /// `n` payload bytes came in.
    #[inline]
    pub fn received(&self, n: u64) {
        self.slot.add(index::BYTES_RECEIVED, n);
    }

    /// `n` payload bytes went out.
    #[inline]
    pub fn sent(&self, n: u64) {
        self.slot.add(index::BYTES_SENT, n);
    }

    /// A handler hook failed for a reason of its own (not the peer's).
    pub fn handler_error(&self) {
        self.slot.add(index::HANDLER_ERRORS, 1);
    }

    /// A handler hook panicked.
    pub fn handler_panic(&self) {
        self.slot.add(index::HANDLER_PANICS, 1);
    }

    /// A datagram of `len` bytes came in.
    #[inline]
    pub fn datagram_received(&self, len: usize) {
        self.slot.add(index::DATAGRAMS_RECEIVED, 1);
        self.received(len as u64);
    }

    /// A reply datagram of `len` bytes went out.
    #[inline]
    pub fn datagram_sent(&self, len: usize) {
        self.slot.add(index::DATAGRAMS_SENT, 1);
        self.sent(len as u64);
    }

    /// A datagram went unanswered.
    pub fn datagram_dropped(&self, why: DatagramDrop) {
        self.slot.add(index::DROPPED + why as usize, 1);
    }

    /// This server's handler is a chat: its chat series are exported (zero until counted).
    pub fn has_chat(&self) {
        self.slot.counts[index::FLAGS].fetch_or(index::FLAG_CHAT, Ordering::Relaxed);
    }

    /// `n` chat messages were queued for members.
    pub fn chat_delivered(&self, n: u64) {
        self.slot.add(index::CHAT_DELIVERED, n);
    }

    /// `n` chat messages were missed by members too slow to take them.
    pub fn chat_dropped(&self, n: u64) {
        self.slot.add(index::CHAT_DROPPED, n);
    }

    /// This chat server is in a cluster: its cluster series are exported (zero until counted).
    pub fn has_cluster(&self) {
        self.slot.counts[index::FLAGS].fetch_or(index::FLAG_CLUSTER, Ordering::Relaxed);
    }

    /// The chat cluster's link is up (both connections to Redis, every room subscribed) or not.
    pub fn cluster_link(&self, up: bool) {
        self.slot.counts[index::CLUSTER_LINK_UP].store(u64::from(up), Ordering::Relaxed);
    }

    /// `n` chat messages were published to the cluster.
    pub fn cluster_published(&self, n: u64) {
        self.slot.add(index::CLUSTER_PUBLISHED, n);
    }

    /// `n` chat messages from other instances were delivered here.
    pub fn cluster_received(&self, n: u64) {
        self.slot.add(index::CLUSTER_RECEIVED, n);
    }

    /// `n` chat messages were not published (the queue full, or the link down).
    pub fn cluster_dropped(&self, n: u64) {
        self.slot.add(index::CLUSTER_DROPPED, n);
    }

    /// `n` messages of other instances were found missing by their sequence numbers.
    pub fn cluster_gaps(&self, n: u64) {
        self.slot.add(index::CLUSTER_GAPS, n);
    }
}

impl From<crate::limits::Refusal> for Refusal {
    fn from(refusal: crate::limits::Refusal) -> Self {
        use crate::limits::Refusal as Gate;
        match refusal {
            Gate::Denied => Refusal::Denied,
            Gate::MaxConnections(_) => Refusal::MaxConnections,
            Gate::PerSource(_) => Refusal::MaxConnectionsPerSource,
            Gate::Rate => Refusal::AcceptRate,
        }
    }
}

impl From<crate::limits::Refusal> for DatagramDrop {
    fn from(refusal: crate::limits::Refusal) -> Self {
        use crate::limits::Refusal as Gate;
        match refusal {
            Gate::Rate => DatagramDrop::AcceptRate,
            Gate::Denied | Gate::MaxConnections(_) | Gate::PerSource(_) => DatagramDrop::Denied,
        }
    }
}

/// A reload (SIGHUP, `sockserv reload`) ended: `sockserv_reloads_total{result="success"}` or
/// `{result="failure"}` counts one more.
pub fn reload_finished(succeeded: bool) {
    let global = &board().global;
    let counter = if succeeded {
        &global.reloads_succeeded
    } else {
        &global.reloads_failed
    };
    counter.fetch_add(1, Ordering::Relaxed);
}

/// A `[[plugin]]` could not be loaded: `sockserv_plugin_load_failures_total` counts one more.
pub fn plugin_load_failed() {
    board()
        .global
        .plugin_load_failures
        .fetch_add(1, Ordering::Relaxed);
}

/// Make the shared board now — or, in a process started with [`METRICS_FD`] set (a forking
/// server's process, an upgrade's successor), count in the board it names — before anything
/// counts (`sockserv serve` and `sockserv serve-process` do, first thing), so that every process
/// counts in the same memory. Later calls do nothing. A board that cannot be taken over is
/// logged, and this process counts in one of its own.
pub fn init() {
    match crate::spawn::take_fd_from_env(METRICS_FD) {
        Ok(Some(fd)) => {
            if let Err(why) = board::adopt(fd) {
                log::warn!("metrics: {why}; counting in a board of this process's own");
            }
        }
        Ok(None) => {}
        Err(err) => log::warn!("metrics: {err}"),
    }
    board();
}

/// The descriptor of the shared board's memory file, to hand to a process this one starts
/// (as [`METRICS_FD`], through `spawn::Exec::extra`): `None` when the board is this process's
/// own.
pub fn shared_descriptor() -> Option<std::os::fd::BorrowedFd<'static>> {
    board::descriptor()
}

#[cfg(test)]
mod tests;
