//! The PROXY protocol — `[server.proxy_protocol]` — so that behind a load balancer the server
//! still sees its clients: HAProxy, nginx and the cloud balancers (AWS NLB, GCP, Azure) write a
//! header with the client's address before the client's first byte, text (v1) or binary (v2).
//!
//! Only the sources in `trusted` may send one: anyone else could claim any address and walk past
//! `deny` or the per-source limits. The carried address then is the connection's peer for
//! everything after it — `allow`/`deny`, the per-source counts and rates, `verify_request`, the
//! log lines and the handler's `req.peer` (a reactor session's `SessionInfo.peer`) — exactly as if
//! the client had connected itself; the proxy is named once, in the line
//! `NAME: CLIENT via PROXY`, or in the refusal's line.
//!
//! The serving loop never blocks on one client. A connection from a trusted source goes into the
//! server's `awaiting` set (at most [`MAX_AWAITING`]), whose sockets the loop polls beside the
//! listener; the bytes of a header are read without waiting as they come, bounded (v1's 107 bytes,
//! v2's [`header::V2_MAX_LEN`]), and only they are consumed: what the client sent after the header,
//! in the same segment or not, reaches the handler intact. A header that is whole sends the
//! connection on to admission, `verify_request` and the strategy, as a direct connection is. A
//! trusted source that sends no header, a malformed, refused or over-long one, or nothing within
//! [`HEADER_TIMEOUT`], is closed, and the reason logged (at a bounded rate, see `peer_log`). The
//! specification asks the same: a receiver must not guess whether a header is there.
//!
//! A client from any other source needs no header, and is admitted by its own address at accept.
//! One that sends a PROXY header anyway — most often a load balancer missing from `trusted` — is
//! closed with that reason, so the mistake shows at once instead of as garbage in a handler. To see
//! its first bytes without blocking, the connection waits in the same set for at most
//! [`SNIFF_WINDOW`]: the first byte that cannot begin a header sends it on at once, so a client
//! that speaks first is not delayed; one that waits for the server to speak (a chat client) is
//! delayed by the window, once. A full set sends untrusted connections on unsniffed rather than
//! refuse them. Servers without `[server.proxy_protocol]` take none of these paths.
//!
//! While the strategy is at its bound (`max_threads`, `max_children`), the set is not looked at:
//! its connections wait as those in the listen backlog do, and their deadlines are kept once
//! there is room again. A connection the set closes is shut down, not only closed: a forked
//! request child made while it waited holds a copy of its socket.

pub(crate) mod awaiting;
pub mod header;

use std::time::Duration;

use sockserv_plugin::Address;

use crate::limits::{Peer, SourceRule};
pub use header::Version;

/// The most connections one server holds while they have not sent their header (or, untrusted,
/// their first bytes): past it a trusted source's connection is refused, logged. A load balancer
/// sends its header with the connection, so the set is nearly always empty; the bound is for one
/// that opens connections and sends nothing, which must not make the server hold descriptors
/// without end (they are outside `max_connections` until admitted).
pub const MAX_AWAITING: usize = 1024;

/// How long a trusted source has to send its whole header. A proxy writes it as soon as the
/// connection is up, so it comes within a round trip; 3 s allows two lost segments (the first
/// retransmission waits 1 s, the second 2 s) and then gives the descriptor back.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(3);

/// How long an untrusted connection may wait, when it has sent nothing yet (or only the beginning
/// of a signature), before it is served as an ordinary one. A proxy's header comes right behind the
/// handshake; half a second is far more than a scheduling hiccup of the sender, and short enough
/// that a client waiting for the server to speak first barely notices, once per connection.
pub const SNIFF_WINDOW: Duration = Duration::from_millis(500);

/// Which header versions a server accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Versions {
    pub v1: bool,
    pub v2: bool,
}

impl Versions {
    /// Both, as HAProxy's `accept-proxy` and nginx's `proxy_protocol` do.
    pub const BOTH: Versions = Versions { v1: true, v2: true };

    pub fn accepts(self, version: Version) -> bool {
        match version {
            Version::V1 => self.v1,
            Version::V2 => self.v2,
        }
    }
}

impl Default for Versions {
    fn default() -> Self {
        Versions::BOTH
    }
}

/// `[server.proxy_protocol]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyProtocol {
    /// The proxies: CIDR blocks and addresses, or `uid:N` for a proxy on a Unix socket. Never
    /// empty.
    pub trusted: Vec<SourceRule>,
    /// The versions accepted from them; a header of another is refused.
    pub versions: Versions,
}

impl ProxyProtocol {
    /// Whether a connection from `peer` (`uid`: a Unix peer's) must send a header.
    pub(crate) fn trusts(&self, peer: &Address, uid: Option<u32>) -> bool {
        let peer = Peer::of(peer, uid);
        self.trusted.iter().any(|rule| rule.matches(&peer))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_trusted_networks_and_uids_are_trusted() {
        let net = |text: &str| SourceRule::Net(text.parse().unwrap());
        let proxy = ProxyProtocol {
            trusted: vec![net("10.0.0.0/8"), net("::1/128"), SourceRule::Uid(1000)],
            versions: Versions::BOTH,
        };
        let inet = |text: &str| Address::Inet(text.parse().unwrap());
        assert!(proxy.trusts(&inet("10.1.2.3:5555"), None));
        assert!(proxy.trusts(&inet("[::1]:5555"), None));
        // An IPv4-mapped IPv6 peer is its IPv4 address, as the limits see it.
        assert!(proxy.trusts(&inet("[::ffff:10.0.0.1]:5555"), None));
        assert!(!proxy.trusts(&inet("11.0.0.1:5555"), None));
        assert!(proxy.trusts(&Address::UnixUnnamed, Some(1000)));
        assert!(!proxy.trusts(&Address::UnixUnnamed, Some(1001)));
        assert!(!proxy.trusts(&Address::UnixUnnamed, None));
    }
}
