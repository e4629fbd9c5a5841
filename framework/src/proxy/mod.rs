//! The PROXY protocol, as HAProxy, nginx and the cloud load balancers (AWS NLB, GCP, Azure) send
//! it: a header with the client's address before the client's first byte, text (v1) or binary
//! (v2). `header` reads it from bytes; the server reads it from the sources it trusts.

pub mod header;

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
