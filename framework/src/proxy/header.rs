//! The PROXY header as bytes: what a trusted proxy's first bytes say (`parse`), and whether an
//! untrusted client's first bytes are a PROXY header at all (`sniff`). Pure functions over bytes,
//! no socket and no clock; the parsing itself is the `ppp` crate's, the bounds and the meaning of
//! each address family are decided here.
//!
//! Incomplete input is not an error: `parse` says `Ok(None)`, and the caller reads more. Every
//! byte before a header's end belongs to the header, so a caller may consume what it has read
//! while `parse` says `Ok(None)`; it consumes exactly [`Header::len`] bytes in all once it is
//! whole, and the bytes after it are the client's, for the handler.

use std::fmt;
use std::net::SocketAddr;

use ppp::PartialResult;

use super::Versions;

/// The first bytes of a v1 (text) header, up to the space after `PROXY`.
pub const V1_SIGNATURE: &[u8] = b"PROXY ";
/// The first 12 bytes of a v2 (binary) header.
pub const V2_SIGNATURE: &[u8] = b"\r\n\r\n\0\r\nQUIT\n";
/// The longest v1 header, `\r\n` included (the specification's own bound).
pub const V1_MAX_LEN: usize = 107;
/// A v2 header's fixed part: the signature, version and command, family and protocol, length.
const V2_FIXED_LEN: usize = 16;
/// The longest v2 header sockserv reads. The format allows 16 + 65 535 bytes, but the addresses
/// take at most 216 (two Unix paths) and the TLVs load balancers add (AWS's VPC endpoint id,
/// Azure's link id, the TLS details HAProxy can send) a few hundred more: 4 KiB leaves room for
/// all of them and bounds what one connection may make the server hold before it is admitted.
pub const V2_MAX_LEN: usize = 4096;

/// The PROXY protocol's two versions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// The text header: `PROXY TCP4 203.0.113.7 192.0.2.1 51234 443\r\n`.
    V1,
    /// The binary header, with a 12-byte signature.
    V2,
}

impl Version {
    /// The number an operator writes in `versions`.
    pub fn number(self) -> u8 {
        match self {
            Version::V1 => 1,
            Version::V2 => 2,
        }
    }
}

/// A whole header, as far as the server needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// The header's length in bytes: what to consume before the client's own bytes.
    pub len: usize,
    pub version: Version,
    /// The client the proxy speaks for. `None` when the header carries no client: v1's
    /// `UNKNOWN`, v2's `LOCAL` command (a load balancer's health check), and v2's unspecified or
    /// Unix families. The specification says to use the connection's own addresses then.
    pub client: Option<SocketAddr>,
}

/// Why a trusted source's first bytes are not a header sockserv accepts; its `Display` is the
/// reason logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderError {
    /// The bytes do not start with either signature: the client sent no PROXY header.
    Missing,
    /// A header of a version `versions` leaves out.
    VersionRefused(Version),
    /// A v2 header that says it is longer than [`V2_MAX_LEN`].
    TooLong {
        /// The length the header declares, its fixed part included.
        declared: usize,
    },
    /// The parser's reason.
    Malformed(String),
}

impl fmt::Display for HeaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeaderError::Missing => {
                f.write_str("no PROXY header (the data does not start with one)")
            }
            HeaderError::VersionRefused(version) => write!(
                f,
                "a PROXY v{} header, but proxy_protocol.versions leaves v{} out",
                version.number(),
                version.number()
            ),
            HeaderError::TooLong { declared } => write!(
                f,
                "a PROXY v2 header of {declared} bytes, more than the {V2_MAX_LEN} accepted"
            ),
            HeaderError::Malformed(reason) => write!(f, "malformed PROXY header: {reason}"),
        }
    }
}

/// The header at the start of `buf`: `Ok(None)` while `buf` is a proper beginning of one.
///
/// # Errors
///
/// [`HeaderError`]: `buf` starts with no header, a refused version, an over-long or a
/// malformed one. More bytes would not change the verdict.
pub fn parse(buf: &[u8], versions: Versions) -> Result<Option<Header>, HeaderError> {
    let version = match buf.first() {
        None => return Ok(None),
        Some(b'P') => Version::V1,
        Some(b'\r') => Version::V2,
        Some(_) => return Err(HeaderError::Missing),
    };
    let signature = match version {
        Version::V1 => V1_SIGNATURE,
        Version::V2 => V2_SIGNATURE,
    };
    let shorter = buf.len().min(signature.len());
    if buf[..shorter] != signature[..shorter] {
        return Err(HeaderError::Missing);
    }
    if buf.len() < signature.len() {
        return Ok(None);
    }
    if !versions.accepts(version) {
        return Err(HeaderError::VersionRefused(version));
    }
    match version {
        Version::V1 => parse_v1(buf),
        Version::V2 => parse_v2(buf),
    }
}

fn parse_v1(buf: &[u8]) -> Result<Option<Header>, HeaderError> {
    // The parser is given whole lines only: cut after a separator (`...51234 `), ppp takes the
    // missing field for an empty, invalid one, and a segment boundary may fall anywhere.
    let Some(end) = buf.windows(2).position(|pair| pair == b"\r\n") else {
        if buf.len() >= V1_MAX_LEN {
            return Err(HeaderError::Malformed(
                "the v1 header does not end with \\r\\n within 107 bytes".to_string(),
            ));
        }
        return Ok(None);
    };
    let line = &buf[..end + 2];
    if line.len() > V1_MAX_LEN {
        return Err(HeaderError::Malformed(format!(
            "the v1 header is {} bytes long, more than 107",
            line.len()
        )));
    }
    // A whole line the parser still finds incomplete (`PROXY UNKNOWN` with six words) is
    // malformed too: no byte more can end it.
    let header = ppp::v1::Header::try_from(line)
        .map_err(|error| HeaderError::Malformed(error.to_string()))?;
    let client = match &header.addresses {
        ppp::v1::Addresses::Tcp4(v4) => Some(SocketAddr::from((v4.source_address, v4.source_port))),
        ppp::v1::Addresses::Tcp6(v6) => Some(SocketAddr::from((v6.source_address, v6.source_port))),
        ppp::v1::Addresses::Unknown => None,
    };
    Ok(Some(Header {
        len: header.header.len(),
        version: Version::V1,
        client,
    }))
}

fn parse_v2(buf: &[u8]) -> Result<Option<Header>, HeaderError> {
    if let Some(length) = buf.get(V2_FIXED_LEN - 2..V2_FIXED_LEN) {
        let declared = V2_FIXED_LEN + usize::from(u16::from_be_bytes([length[0], length[1]]));
        if declared > V2_MAX_LEN {
            return Err(HeaderError::TooLong { declared });
        }
    }
    let parsed = ppp::v2::Header::try_from(buf);
    if parsed.is_incomplete() {
        return Ok(None);
    }
    let header = parsed.map_err(|error| HeaderError::Malformed(error.to_string()))?;
    let client = match (header.command, &header.addresses) {
        (ppp::v2::Command::Local, _) => None,
        (_, ppp::v2::Addresses::IPv4(v4)) => {
            Some(SocketAddr::from((v4.source_address, v4.source_port)))
        }
        (_, ppp::v2::Addresses::IPv6(v6)) => {
            Some(SocketAddr::from((v6.source_address, v6.source_port)))
        }
        (_, ppp::v2::Addresses::Unspecified | ppp::v2::Addresses::Unix(_)) => None,
    };
    Ok(Some(Header {
        len: header.len(),
        version: Version::V2,
        client,
    }))
}

/// What an untrusted client's first bytes are, as far as a PROXY header goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sniff {
    /// They start with a PROXY signature (v1's `PROXY `, or v2's 12 bytes).
    Header,
    /// Too few to tell: none yet, or a proper beginning of a signature (`PRO`, `\r\n`).
    Undecided,
    /// Not a PROXY header: the client's own protocol.
    Plain,
}

/// Whether `buf`, the first bytes a client sent, start with a PROXY header.
pub fn sniff(buf: &[u8]) -> Sniff {
    if buf.is_empty() {
        return Sniff::Undecided;
    }
    let mut verdict = Sniff::Plain;
    for signature in [V1_SIGNATURE, V2_SIGNATURE] {
        if buf.starts_with(signature) {
            return Sniff::Header;
        }
        if signature.starts_with(buf) {
            verdict = Sniff::Undecided;
        }
    }
    verdict
}

#[cfg(test)]
mod tests;
