//! The PROXY protocol, as HAProxy, nginx and the cloud load balancers (AWS NLB, GCP, Azure) send
//! it: a header with the client's address before the client's first byte, text (v1) or binary
//! (v2). `header` reads it from bytes; `[server.proxy_protocol]` ([`ProxyProtocol`]) names the
//! sources a server trusts to send it.

pub mod header;

use crate::limits::SourceRule;

pub use header::Version;

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
