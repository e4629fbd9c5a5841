//! `[server.proxy_protocol]`, both phases: reading the table (phase 1) and turning it into the
//! server's [`ProxyProtocol`] (phase 2), every problem reported at its key or value.
//!
//! ```toml
//! [server.proxy_protocol]
//! trusted = ["10.0.0.0/8", "192.0.2.10", "uid:996"]   # the proxies: CIDR, address, or Unix uid
//! versions = [1, 2]                                    # accepted header versions (default both)
//! ```
//!
//! A table rather than a bare list, so that the one thing an operator must decide — whom to trust
//! — has a name, and `versions` sits beside it. Stream endpoints only: a datagram has no
//! connection for a header to start. `trusted` is required and never empty (leave the table out
//! to read no header), and each entry must be able to match this endpoint's peers: an IP block
//! on tcp, a uid on unix.

use std::ops::Range;

use toml::Spanned;

use super::error::ConfigErrorKind;
use super::server::ServerCheck;
use super::server_limits::{parse_rule, strings};
use super::socket::Rule;
use super::table::{Outer, TableReader};
use crate::limits::SourceRule;
use crate::proxy::{ProxyProtocol, Versions};

/// The keys of `[server.proxy_protocol]`.
pub(super) const PROXY_PROTOCOL_KEYS: &[&str] = &["trusted", "versions"];

const NEEDS_TRUSTED: &str =
    "[server.proxy_protocol] needs the proxies it trusts, such as trusted = [\"10.0.0.0/8\"]";

/// `[server.proxy_protocol]` as written.
#[derive(Debug)]
pub(super) struct RawProxyProtocol {
    /// The table's header: where a problem of the whole table is reported.
    pub span: Range<usize>,
    /// `trusted`, with the place of the list and of each entry; `None` when missing or unreadable
    /// (reported).
    pub trusted: Option<Spanned<Vec<Spanned<String>>>>,
    /// `versions`, each with its place; `None` when not written (both) or unreadable (reported).
    pub versions: Option<Spanned<Vec<Spanned<i64>>>>,
}

/// Phase 1: `[server.proxy_protocol]` of the server `server` reads, if it has one.
pub(super) fn read(
    server: &mut TableReader<'_>,
    server_keys: &'static [&'static str],
) -> Option<RawProxyProtocol> {
    let table = server.table("proxy_protocol")?;
    let span = table.span();
    let mut reader = server.nested(table, "proxy_protocol.");
    let expected = "a list of strings: CIDR blocks, addresses, or \"uid:N\"";
    let trusted = match reader.value("trusted") {
        Some(value) => strings(&mut reader, "trusted", expected)
            .map(|entries| Spanned::new(value.span(), entries)),
        None => {
            let kind = ConfigErrorKind::MissingKey {
                key: "proxy_protocol.trusted",
                needs: NEEDS_TRUSTED,
            };
            reader.report(span.clone(), kind);
            None
        }
    };
    let versions = read_versions(&mut reader);
    let outer = Outer {
        keys: server_keys,
        table: "[[server]]",
        header: "[server.proxy_protocol]",
    };
    reader.refuse_others_within(PROXY_PROTOCOL_KEYS, outer);
    server.absorb(reader);
    Some(RawProxyProtocol {
        span,
        trusted,
        versions,
    })
}

/// `versions`: a list of integers (which ones is phase 2's to say).
fn read_versions(reader: &mut TableReader<'_>) -> Option<Spanned<Vec<Spanned<i64>>>> {
    let value = reader.value("versions")?;
    let expected = "a list of header versions: [1, 2], [1] or [2]";
    let Some(items) = value.get_ref().as_array() else {
        reader.wrong_type("versions", value, expected, None);
        return None;
    };
    let mut versions = Vec::new();
    for item in items.iter() {
        match item.get_ref().as_integer() {
            Some(number) => {
                let number = super::table::saturating_i64(number);
                versions.push(Spanned::new(item.span(), number));
            }
            None => {
                reader.wrong_type("versions", item, expected, None);
                return None;
            }
        }
    }
    Some(Spanned::new(value.span(), versions))
}

/// A datagram has no connection for a header to start.
const STREAM_ONLY: Rule = Rule {
    key: "proxy_protocol",
    applies_to: "stream (tcp and unix) endpoints",
    test: |endpoint| endpoint.kind().is_stream(),
};

impl ServerCheck<'_, '_> {
    /// Phase 2: the server's PROXY protocol settings; `None` when it has none, or when they are
    /// wrong (reported).
    pub(super) fn proxy_protocol(&mut self) -> Option<ProxyProtocol> {
        let raw = self.raw.proxy_protocol.as_ref()?;
        let table = Spanned::new(raw.span.clone(), ());
        self.applicable(Some(&table), &STREAM_ONLY)?;
        let trusted = self.trusted(raw.trusted.as_ref()?);
        let versions = match &raw.versions {
            Some(versions) => self.versions(versions),
            None => Some(Versions::BOTH),
        };
        Some(ProxyProtocol {
            trusted: trusted?,
            versions: versions?,
        })
    }

    /// `trusted`: not empty, each entry a rule that can match this endpoint's peers.
    fn trusted(&mut self, written: &Spanned<Vec<Spanned<String>>>) -> Option<Vec<SourceRule>> {
        let key = "proxy_protocol.trusted";
        if written.get_ref().is_empty() {
            let message = "must name at least one proxy; to read no header, leave out \
                           [server.proxy_protocol]"
                .to_string();
            self.report(written.span(), ConfigErrorKind::BadValue { key, message });
            return None;
        }
        let unix = (self.endpoint.as_ref()).map(|e| e.kind() == crate::SocketKind::UnixStream);
        let mut rules = Some(Vec::new());
        for entry in written.get_ref() {
            let text = entry.get_ref();
            let message = match (parse_rule(text), unix) {
                (None, _) => format!(
                    "{text:?} is not a CIDR block (\"10.0.0.0/8\", \"2001:db8::/32\"), an \
                     address, or \"uid:N\""
                ),
                (Some(SourceRule::Uid(_)), Some(false)) => {
                    format!("{text:?} never matches on a tcp endpoint: only a Unix peer has a uid")
                }
                (Some(SourceRule::Net(_)), Some(true)) => format!(
                    "{text:?} never matches on a unix endpoint, whose peers have no IP \
                     address: name the proxy's user, \"uid:N\""
                ),
                (Some(rule), _) => {
                    if let Some(rules) = rules.as_mut() {
                        rules.push(rule);
                    }
                    continue;
                }
            };
            self.report(entry.span(), ConfigErrorKind::BadValue { key, message });
            rules = None;
        }
        rules
    }

    /// `versions`: not empty, each 1 or 2.
    fn versions(&mut self, written: &Spanned<Vec<Spanned<i64>>>) -> Option<Versions> {
        let key = "proxy_protocol.versions";
        if written.get_ref().is_empty() {
            let message = "must name at least one version: [1, 2], [1] or [2]".to_string();
            self.report(written.span(), ConfigErrorKind::BadValue { key, message });
            return None;
        }
        let mut versions = Some(Versions {
            v1: false,
            v2: false,
        });
        for version in written.get_ref() {
            match (*version.get_ref(), versions.as_mut()) {
                (1, Some(versions)) => versions.v1 = true,
                (2, Some(versions)) => versions.v2 = true,
                (1 | 2, None) => {}
                (other, _) => {
                    let message = format!("the PROXY protocol has versions 1 and 2, not {other}");
                    self.report(version.span(), ConfigErrorKind::BadValue { key, message });
                    versions = None;
                }
            }
        }
        versions
    }
}
