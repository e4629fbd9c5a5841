//! The connections a server holds before it knows their peer: a trusted source's until its PROXY
//! header is whole, an untrusted one's until its first bytes show no header (see the module
//! above). Bounded by [`MAX_AWAITING`], each with a deadline.
//!
//! The serving loop calls, in this order: [`Awaiting::arrive`] with each accepted connection (a
//! first look at once, so a header already there costs no wait); [`Awaiting::watched`] for the
//! sockets to add to its poll(2), and [`Awaiting::next_deadline`] for its timeout; then
//! [`Awaiting::advance`] with what poll found readable. `arrive` returns, and `advance` hands on,
//! the connections whose peer is now known, for the loop to admit, verify and serve; the ones they
//! close are logged here, with the reason.
//!
//! Every read is non-blocking (`MSG_DONTWAIT`). A header's bytes are peeked, and only the header's
//! are consumed, so the client's bytes after it stay in the socket for the handler; bytes of an
//! incomplete header are consumed too (they can only be the header's), so a socket with half a
//! header is not readable again until more comes — poll(2) does not spin on it. An untrusted
//! connection's bytes are only peeked; one whose few bytes could still begin a header is no longer
//! polled, and is decided at its deadline.

use std::net::Shutdown;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::time::Instant;

use nix::errno::Errno;
use nix::sys::socket::{recv, MsgFlags};
use socket2::Socket;
use sockserv_plugin::Address;

use super::header::{self, Sniff, V1_MAX_LEN, V1_SIGNATURE, V2_MAX_LEN, V2_SIGNATURE};
use super::{ProxyProtocol, HEADER_TIMEOUT, MAX_AWAITING, SNIFF_WINDOW};
use crate::limits::Ticket;
use crate::log_peer_event;
use crate::metrics::{ConnId, Refusal, ServerMetrics};
use crate::peer_log::Fields;
use crate::Client;

/// The most bytes a header may take (v2's bound is the larger).
const MAX_HEADER_LEN: usize = if V2_MAX_LEN > V1_MAX_LEN {
    V2_MAX_LEN
} else {
    V1_MAX_LEN
};
/// Enough of a client's first bytes to tell a signature.
const SNIFF_LEN: usize = if V2_SIGNATURE.len() > V1_SIGNATURE.len() {
    V2_SIGNATURE.len()
} else {
    V1_SIGNATURE.len()
};

/// One server's connections that await their header or their first bytes.
pub(crate) struct Awaiting {
    /// The server's name, for log lines.
    server: String,
    proxy: ProxyProtocol,
    entries: Vec<Entry>,
    /// The server's counters: a connection closed here is refused (`proxy_header`).
    metrics: ServerMetrics,
}

/// How a new connection comes to the set.
pub(crate) enum Arrival {
    /// From a trusted source: it must send a header.
    Trusted,
    /// From any other source, admitted already by its own address (the ticket).
    Untrusted(Ticket),
}

/// A connection whose peer is known, to be admitted (unless it was), verified and served.
#[must_use = "a connection ready to be served is closed if dropped"]
pub(crate) struct Ready {
    pub socket: Socket,
    /// Who the connection is for everything from here on: a header's client, or the address the
    /// connection comes from.
    pub peer: Address,
    /// The proxy the header came from, when it carried a client.
    pub via: Option<Address>,
    /// The connection's place in the limits, when it was admitted at accept (untrusted).
    pub ticket: Option<Ticket>,
    /// The connection's id, given at accept.
    pub id: ConnId,
}

struct Entry {
    socket: Socket,
    /// The address the connection comes from (a trusted one's: the proxy's).
    from: Address,
    id: ConnId,
    deadline: Instant,
    state: State,
}

enum State {
    /// A trusted source's header, as far as it has come (every byte consumed is the header's).
    Header { read: Vec<u8> },
    /// An untrusted connection's first bytes are awaited; `parked`: a few came that could begin a
    /// signature, so the socket is not polled (it would stay readable) until the deadline.
    Sniffing { ticket: Ticket, parked: bool },
}

/// What one look at an entry found.
enum Step {
    Wait(Entry),
    Ready(Ready),
    /// Closed, the reason logged.
    Closed,
}

impl Awaiting {
    pub fn new(server: &str, proxy: ProxyProtocol, metrics: ServerMetrics) -> Awaiting {
        Awaiting {
            server: server.to_string(),
            proxy,
            entries: Vec::new(),
            metrics,
        }
    }

    /// Whether a connection from `peer` (`uid`: a Unix peer's) must send a header.
    pub fn trusts(&self, peer: &Address, uid: Option<u32>) -> bool {
        self.proxy.trusts(peer, uid)
    }

    /// A newly accepted connection from `from`: looked at once, and held if it must wait. When the
    /// set is full, a trusted source's connection is refused (logged) and an untrusted one is
    /// served without a look.
    pub fn arrive(
        &mut self,
        socket: Socket,
        from: Address,
        id: ConnId,
        arrival: Arrival,
        now: Instant,
    ) -> Option<Ready> {
        let (deadline, state) = match arrival {
            Arrival::Trusted => (now + HEADER_TIMEOUT, State::Header { read: Vec::new() }),
            Arrival::Untrusted(ticket) => (
                now + SNIFF_WINDOW,
                State::Sniffing {
                    ticket,
                    parked: false,
                },
            ),
        };
        let entry = Entry {
            socket,
            from,
            id,
            deadline,
            state,
        };
        match self.step(entry, true, now) {
            Step::Wait(entry) if self.entries.len() < MAX_AWAITING => {
                self.entries.push(entry);
                None
            }
            Step::Wait(entry) => self.overflow(entry),
            Step::Ready(ready) => Some(ready),
            Step::Closed => None,
        }
    }

    /// The sockets to poll for reading, each with its place for [`Awaiting::advance`].
    pub fn watched(&self) -> impl Iterator<Item = (usize, BorrowedFd<'_>)> {
        self.entries
            .iter()
            .enumerate()
            .filter(|(_, entry)| !matches!(entry.state, State::Sniffing { parked: true, .. }))
            .map(|(index, entry)| (index, entry.socket.as_fd()))
    }

    /// When the next entry's time is up.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.entries.iter().map(|entry| entry.deadline).min()
    }

    /// Look at the entries poll(2) found readable (by their places in [`Awaiting::watched`]) and
    /// at those whose time is up, and hand each that is ready to `serve`, which says whether the
    /// strategy has room for more: once it has not, the rest are left for a later call.
    pub fn advance(
        &mut self,
        readable: &[usize],
        now: Instant,
        serve: &mut dyn FnMut(Ready) -> bool,
    ) {
        let due = |entry: &Entry| entry.deadline <= now;
        if readable.is_empty() && !self.entries.iter().any(due) {
            return;
        }
        let mut room = true;
        for (place, entry) in std::mem::take(&mut self.entries).into_iter().enumerate() {
            let readable = readable.contains(&place);
            let step = if room && (readable || due(&entry)) {
                self.step(entry, readable, now)
            } else {
                Step::Wait(entry)
            };
            match step {
                Step::Wait(entry) => self.entries.push(entry),
                Step::Ready(ready) => room = serve(ready),
                Step::Closed => {}
            }
        }
    }

    /// How many connections wait.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Close every connection still waiting: the server is closing. (Dropped without this, as
    /// when a process gives its copy of the server up, the set only closes its descriptors.)
    pub fn clear(&mut self) {
        for entry in self.entries.drain(..) {
            // Shut down, not only closed: a forked request child may hold a copy.
            let _ = entry.socket.shutdown(Shutdown::Both);
            self.metrics.refused(Refusal::ProxyHeader);
        }
    }

    /// Look at one entry's bytes (when `readable`), then at its deadline.
    fn step(&self, entry: Entry, readable: bool, now: Instant) -> Step {
        let step = match (&entry.state, readable) {
            (State::Header { .. }, true) => self.read_header(entry),
            (State::Sniffing { .. }, _) => self.sniff(entry, now),
            (State::Header { .. }, false) => Step::Wait(entry),
        };
        match step {
            Step::Wait(entry) if entry.deadline <= now => match entry.state {
                State::Header { .. } => {
                    let reason = format!(
                        "no whole PROXY header within {} s",
                        HEADER_TIMEOUT.as_secs_f64()
                    );
                    self.close(entry, &reason)
                }
                // (`sniff` decides every connection whose window is over.)
                State::Sniffing { .. } => Step::Wait(entry),
            },
            other => other,
        }
    }

    /// A trusted connection's header, as far as it has come.
    fn read_header(&self, mut entry: Entry) -> Step {
        let State::Header { read } = &mut entry.state else {
            unreachable!("only header entries are read");
        };
        let start = read.len();
        read.resize(MAX_HEADER_LEN, 0);
        let peeked = peek(&entry.socket, &mut read[start..]);
        let more = match peeked {
            Ok(0) => return self.close(entry, "closed before its PROXY header was whole"),
            Ok(more) => more,
            Err(Errno::EAGAIN) => {
                read.truncate(start);
                return Step::Wait(entry);
            }
            Err(errno) => return self.close(entry, &format!("reading its PROXY header: {errno}")),
        };
        read.truncate(start + more);
        match header::parse(read, self.proxy.versions) {
            Ok(Some(header)) => {
                if let Err(errno) = consume(&entry.socket, header.len - start) {
                    return self.close(entry, &format!("reading its PROXY header: {errno}"));
                }
                let via = header.client.map(|_| entry.from.clone());
                let peer = header.client.map_or(entry.from, Address::Inet);
                Step::Ready(Ready {
                    id: entry.id,
                    socket: entry.socket,
                    peer,
                    via,
                    ticket: None,
                })
            }
            Ok(None) => match consume(&entry.socket, more) {
                Ok(()) => Step::Wait(entry),
                Err(errno) => self.close(entry, &format!("reading its PROXY header: {errno}")),
            },
            Err(error) => self.close(entry, &error.to_string()),
        }
    }

    /// An untrusted connection's first bytes: a header closes it, anything else (or nothing, once
    /// the window is over) sends it on.
    fn sniff(&self, mut entry: Entry, now: Instant) -> Step {
        let mut first = [0u8; SNIFF_LEN];
        let (verdict, seen) = match peek(&entry.socket, &mut first) {
            Ok(n) if n > 0 => (header::sniff(&first[..n]), true),
            Err(Errno::EAGAIN) => (Sniff::Undecided, false),
            // At its end, or failed: the handler meets that as it would have.
            Ok(_) | Err(_) => (Sniff::Plain, true),
        };
        let over = entry.deadline <= now;
        match verdict {
            Sniff::Header => {
                let reason = "sent a PROXY header, but is not in proxy_protocol.trusted";
                self.close(entry, reason)
            }
            Sniff::Undecided if !over => {
                if let State::Sniffing { parked, .. } = &mut entry.state {
                    *parked = seen;
                }
                Step::Wait(entry)
            }
            Sniff::Plain | Sniff::Undecided => {
                let State::Sniffing { ticket, .. } = entry.state else {
                    unreachable!("only untrusted entries are sniffed");
                };
                Step::Ready(Ready {
                    id: entry.id,
                    socket: entry.socket,
                    peer: entry.from,
                    via: None,
                    ticket: Some(ticket),
                })
            }
        }
    }

    /// The set is full: refuse a trusted source's connection, serve an untrusted one unsniffed.
    fn overflow(&self, entry: Entry) -> Option<Ready> {
        match entry.state {
            State::Header { .. } => {
                let reason = format!("{MAX_AWAITING} connections await their PROXY header already");
                let _ = self.close(entry, &reason);
                None
            }
            State::Sniffing { ticket, .. } => Some(Ready {
                id: entry.id,
                socket: entry.socket,
                peer: entry.from,
                via: None,
                ticket: Some(ticket),
            }),
        }
    }

    /// Close `entry`'s connection, logging why (at a bounded rate).
    fn close(&self, entry: Entry, reason: &str) -> Step {
        // Shut down, not only closed: a forked request child may hold a copy of the socket.
        let _ = entry.socket.shutdown(Shutdown::Both);
        let server = &self.server;
        let client = Client::connection(&entry.from, entry.id);
        let why = Refusal::ProxyHeader;
        self.metrics.refused(why);
        log_peer_event!(
            &Fields::of(server, client).because(why.name()),
            format_args!("{server}: {}closed {}: {reason}", client.tag(), client.peer),
        );
        Step::Closed
    }
}

/// Bytes waiting on `socket`, copied into `buf` and left there.
fn peek(socket: &Socket, buf: &mut [u8]) -> Result<usize, Errno> {
    let flags = MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT;
    loop {
        match recv(socket.as_raw_fd(), buf, flags) {
            Err(Errno::EINTR) => continue,
            other => return other,
        }
    }
}

/// Take `len` bytes off `socket` that a peek has shown are there.
fn consume(socket: &Socket, mut len: usize) -> Result<(), Errno> {
    let mut sink = [0u8; 512];
    while len > 0 {
        let chunk = len.min(sink.len());
        match recv(
            socket.as_raw_fd(),
            &mut sink[..chunk],
            MsgFlags::MSG_DONTWAIT,
        ) {
            Ok(0) => return Err(Errno::ECONNRESET),
            Ok(n) => len -= n,
            Err(Errno::EINTR) => {}
            Err(errno) => return Err(errno),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
