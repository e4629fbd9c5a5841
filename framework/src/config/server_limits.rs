//! `[server.limits]`, both phases: reading the table (phase 1) and turning it into the server's
//! [`Limits`] (phase 2), every problem reported at its key or value.
//!
//! ```toml
//! [server.limits]
//! max_connections = 1024            # open connections at once ("none": no bound)
//! max_connections_per_source = 16   # per peer IP (IPv6 by /64) or Unix uid
//! ipv6_prefix = 64                  # the IPv6 prefix that makes one source
//! accept_rate = 20                  # new connections (datagrams) per second per source
//! accept_burst = 40                 # how many may come at once (default: twice the rate)
//! idle_timeout = 300                # seconds with no byte either way ("none": never)
//! first_byte_timeout = 10           # seconds to the first byte after accept
//! max_connection_duration = 3600    # seconds a connection may stay open at all
//! allow = ["127.0.0.0/8", "::1", "uid:1000"]
//! deny = ["127.0.0.2"]
//! max_buffered_input = 67108864     # bytes all connections may hold in incomplete frames
//! ```
//!
//! A count or a time may be `"none"` to lift a default bound. The connection keys mean nothing for
//! datagram endpoints and are refused there; `accept_rate` (datagrams per second) and
//! `allow`/`deny` apply to both.

use std::time::Duration;

use ipnet::IpNet;
use toml::de::DeValue;
use toml::Spanned;

use super::error::ConfigErrorKind;
use super::raw::Seconds;
use super::server::ServerCheck;
use super::socket::Rule;
use super::table::{saturating_i64, Outer, TableReader};
use crate::limits::{Limits, Rate, SourceRule};

/// The keys of `[server.limits]`.
pub(super) const LIMITS_KEYS: &[&str] = &[
    "max_connections",
    "max_connections_per_source",
    "ipv6_prefix",
    "accept_rate",
    "accept_burst",
    "idle_timeout",
    "first_byte_timeout",
    "max_connection_duration",
    "allow",
    "deny",
    "max_buffered_input",
];

/// The largest count a limit accepts: far past what one process can hold open.
const MAX_COUNT: i64 = 1_000_000;
/// The longest time a limit accepts.
const MAX_TIME: Duration = Duration::from_secs(86_400 * 7);
/// What a count or a time may also be: no bound.
const NONE: &str = "none";

/// A value that may be `"none"`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Bound<T> {
    Value(T),
    None,
}

/// `[server.limits]` as written.
#[derive(Debug, Default)]
pub(super) struct RawLimits {
    pub max_connections: Option<Spanned<Bound<i64>>>,
    pub max_connections_per_source: Option<Spanned<Bound<i64>>>,
    pub ipv6_prefix: Option<Spanned<i64>>,
    pub accept_rate: Option<Spanned<Seconds>>,
    pub accept_burst: Option<Spanned<i64>>,
    pub idle_timeout: Option<Spanned<Bound<Seconds>>>,
    pub first_byte_timeout: Option<Spanned<Bound<Seconds>>>,
    pub max_connection_duration: Option<Spanned<Bound<Seconds>>>,
    pub allow: Vec<Spanned<String>>,
    pub deny: Vec<Spanned<String>>,
    pub max_buffered_input: Option<Spanned<Bound<i64>>>,
}

/// Phase 1: `[server.limits]` of the server `server` reads, or every default when there is none.
pub(super) fn read(
    server: &mut TableReader<'_>,
    server_keys: &'static [&'static str],
) -> RawLimits {
    let Some(table) = server.table("limits") else {
        return RawLimits::default();
    };
    let mut reader = server.nested(table, "limits.");
    let raw = RawLimits {
        max_connections: bounded(&mut reader, "max_connections", count),
        max_connections_per_source: bounded(&mut reader, "max_connections_per_source", count),
        ipv6_prefix: reader.count("ipv6_prefix"),
        accept_rate: reader.seconds("accept_rate"),
        accept_burst: reader.count("accept_burst"),
        idle_timeout: bounded(&mut reader, "idle_timeout", seconds),
        first_byte_timeout: bounded(&mut reader, "first_byte_timeout", seconds),
        max_connection_duration: bounded(&mut reader, "max_connection_duration", seconds),
        allow: strings(&mut reader, "allow", RULES).unwrap_or_default(),
        deny: strings(&mut reader, "deny", RULES).unwrap_or_default(),
        max_buffered_input: bounded(&mut reader, "max_buffered_input", count),
    };
    let outer = Outer {
        keys: server_keys,
        table: "[[server]]",
        header: "[server.limits]",
    };
    reader.refuse_others_within(LIMITS_KEYS, outer);
    server.absorb(reader);
    raw
}

fn count(value: &DeValue<'_>) -> Option<i64> {
    value.as_integer().map(saturating_i64)
}

fn seconds(value: &DeValue<'_>) -> Option<Seconds> {
    match value {
        DeValue::Integer(integer) => Some(Seconds(saturating_i64(integer) as f64)),
        DeValue::Float(float) => float.as_str().parse().ok().map(Seconds),
        _ => None,
    }
}

/// A count or a time, or `"none"`.
fn bounded<T>(
    reader: &mut TableReader<'_>,
    key: &'static str,
    read: fn(&DeValue<'_>) -> Option<T>,
) -> Option<Spanned<Bound<T>>> {
    reader.get(
        key,
        "a number, or \"none\" for no bound",
        |value| match value {
            DeValue::String(text) if text.as_ref() == NONE => Some(Bound::None),
            other => read(other).map(Bound::Value),
        },
    )
}

/// What `allow` and `deny` hold.
const RULES: &str = "a list of strings: CIDR blocks, addresses, or \"uid:N\"";

/// A list of strings (`allow`, `deny`), each with its place; `None` when absent or not a list
/// (reported). An entry that is not a string is reported and left out.
pub(super) fn strings(
    reader: &mut TableReader<'_>,
    key: &'static str,
    expected: &'static str,
) -> Option<Vec<Spanned<String>>> {
    let value = reader.value(key)?;
    let Some(items) = value.get_ref().as_array() else {
        reader.wrong_type(key, value, expected, None);
        return None;
    };
    let mut strings = Vec::new();
    for item in items.iter() {
        match item.get_ref().as_str() {
            Some(text) => strings.push(Spanned::new(item.span(), text.to_string())),
            None => reader.wrong_type(key, item, expected, None),
        }
    }
    Some(strings)
}

/// A connection limit, which means nothing for a datagram endpoint.
const fn stream_only(key: &'static str) -> Rule {
    Rule {
        key,
        applies_to: "stream (tcp and unix) endpoints",
        test: |endpoint| endpoint.kind().is_stream(),
    }
}

impl ServerCheck<'_, '_> {
    /// Phase 2: the server's limits, defaults where the file says nothing or something wrong.
    pub(super) fn limits(&mut self) -> Limits {
        let defaults = Limits::default();
        // (A datagram endpoint's defaults are `Limits::for_kind`'s: no connection bound.)
        let raw = self.raw;
        let limits = &raw.limits;
        let stream = self.endpoint.as_ref().is_none_or(|e| e.kind().is_stream());
        let count = |check: &mut Self, value: Option<&Spanned<Bound<i64>>>, key| {
            let value = check.applicable(value, &stream_only(key));
            check.bound_count(value, key)
        };
        let time = |check: &mut Self, value: Option<&Spanned<Bound<Seconds>>>, key| {
            let value = check.applicable(value, &stream_only(key));
            check.bound_time(value, key)
        };
        let max_connections = count(
            self,
            limits.max_connections.as_ref(),
            "limits.max_connections",
        );
        let per_source = count(
            self,
            limits.max_connections_per_source.as_ref(),
            "limits.max_connections_per_source",
        );
        let idle = time(self, limits.idle_timeout.as_ref(), "limits.idle_timeout");
        let first = time(
            self,
            limits.first_byte_timeout.as_ref(),
            "limits.first_byte_timeout",
        );
        let total = time(
            self,
            limits.max_connection_duration.as_ref(),
            "limits.max_connection_duration",
        );
        let buffered = self.applicable(
            limits.max_buffered_input.as_ref(),
            &stream_only("limits.max_buffered_input"),
        );
        let buffered = self.bound_bytes(buffered, "limits.max_buffered_input");
        // A datagram server has no connections: no connection bound applies to it by default.
        fn or_default<T>(stream: bool, value: Option<Option<T>>, default: Option<T>) -> Option<T> {
            match value {
                Some(set) => set,
                None if stream => default,
                None => None,
            }
        }
        let datagram_defaults = |value, default| or_default(stream, value, default);
        Limits {
            max_connections: datagram_defaults(max_connections, defaults.max_connections),
            max_connections_per_source: per_source.flatten(),
            ipv6_prefix: self.ipv6_prefix().unwrap_or(defaults.ipv6_prefix),
            accept_rate: self.rate(),
            idle_timeout: or_default(stream, idle, defaults.idle_timeout),
            first_byte_timeout: first.flatten(),
            max_connection_duration: total.flatten(),
            allow: self.rules(true),
            deny: self.rules(false),
            max_buffered_input: or_default(stream, buffered, defaults.max_buffered_input),
        }
    }

    /// A count or `"none"`: `Some(None)` for `"none"`, `None` when absent or refused.
    fn bound_count(
        &mut self,
        value: Option<Spanned<Bound<i64>>>,
        key: &'static str,
    ) -> Option<Option<usize>> {
        let value = value?;
        match *value.get_ref() {
            Bound::None => Some(None),
            Bound::Value(count) if (1..=MAX_COUNT).contains(&count) => Some(Some(count as usize)),
            Bound::Value(_) => {
                let message = format!(
                    "must be between 1 and {MAX_COUNT}, or \"none\" for no bound, got {}",
                    self.written(value.span())
                );
                self.report(value.span(), ConfigErrorKind::BadValue { key, message });
                None
            }
        }
    }

    /// A size in bytes or `"none"`: 1 byte to 64 GiB.
    fn bound_bytes(
        &mut self,
        value: Option<Spanned<Bound<i64>>>,
        key: &'static str,
    ) -> Option<Option<usize>> {
        const MAX_BYTES: i64 = 64 << 30;
        let value = value?;
        match *value.get_ref() {
            Bound::None => Some(None),
            Bound::Value(bytes) if (1..=MAX_BYTES).contains(&bytes) => Some(Some(bytes as usize)),
            Bound::Value(_) => {
                let message = format!(
                    "must be between 1 and {MAX_BYTES} bytes (64 GiB), or \"none\", got {}",
                    self.written(value.span())
                );
                self.report(value.span(), ConfigErrorKind::BadValue { key, message });
                None
            }
        }
    }

    /// A time or `"none"`: `Some(None)` for `"none"`, `None` when absent or refused.
    fn bound_time(
        &mut self,
        value: Option<Spanned<Bound<Seconds>>>,
        key: &'static str,
    ) -> Option<Option<Duration>> {
        let value = value?;
        let Bound::Value(Seconds(seconds)) = *value.get_ref() else {
            return Some(None);
        };
        let duration = Some(seconds)
            .filter(|seconds| *seconds > 0.0)
            .and_then(|seconds| Duration::try_from_secs_f64(seconds).ok())
            .filter(|duration| *duration <= MAX_TIME);
        if duration.is_none() {
            let message = format!(
                "must be more than 0 and at most {} seconds (a week), or \"none\", got {}",
                MAX_TIME.as_secs(),
                self.written(value.span())
            );
            self.report(value.span(), ConfigErrorKind::BadValue { key, message });
            return None;
        }
        Some(duration)
    }

    fn ipv6_prefix(&mut self) -> Option<u8> {
        let value = self.raw.limits.ipv6_prefix.as_ref()?;
        let prefix = u8::try_from(*value.get_ref())
            .ok()
            .filter(|p| (1..=128).contains(p));
        if prefix.is_none() {
            let key = "limits.ipv6_prefix";
            let written = self.written(value.span());
            let message = format!("must be a prefix length between 1 and 128, got {written}");
            self.report(value.span(), ConfigErrorKind::BadValue { key, message });
        }
        prefix
    }

    /// `accept_rate` with its burst (twice the rate, at least 1, when not given).
    fn rate(&mut self) -> Option<Rate> {
        let raw = &self.raw.limits;
        if raw.accept_rate.is_none() {
            if let Some(burst) = raw.accept_burst.as_ref() {
                let key = "limits.accept_burst";
                let message = "goes with accept_rate, which is not set".to_string();
                self.report(burst.span(), ConfigErrorKind::BadValue { key, message });
            }
            return None;
        }
        let rate = raw.accept_rate.as_ref()?;
        let Seconds(per_second) = *rate.get_ref();
        if !(per_second > 0.0 && per_second <= MAX_COUNT as f64) {
            let key = "limits.accept_rate";
            let message = format!(
                "must be more than 0 and at most {MAX_COUNT} per second, got {}",
                self.written(rate.span())
            );
            self.report(rate.span(), ConfigErrorKind::BadValue { key, message });
            return None;
        }
        let default_burst = (per_second * 2.0).ceil().max(1.0) as u32;
        let burst = match raw.accept_burst.as_ref() {
            None => default_burst,
            Some(burst) => match u32::try_from(*burst.get_ref()) {
                Ok(burst @ 1..=1_000_000) => burst,
                _ => {
                    let key = "limits.accept_burst";
                    let message = format!(
                        "must be between 1 and 1000000, got {}",
                        self.written(burst.span())
                    );
                    self.report(burst.span(), ConfigErrorKind::BadValue { key, message });
                    return None;
                }
            },
        };
        Some(Rate { per_second, burst })
    }

    /// `allow` (or `deny`): each entry a CIDR block, an address (a block of one) or `uid:N`.
    fn rules(&mut self, allow: bool) -> Vec<SourceRule> {
        let (entries, key) = if allow {
            (&self.raw.limits.allow, "limits.allow")
        } else {
            (&self.raw.limits.deny, "limits.deny")
        };
        let mut rules = Vec::new();
        for entry in entries.clone() {
            match parse_rule(entry.get_ref()) {
                Some(rule) => rules.push(rule),
                None => {
                    let message = format!(
                        "{:?} is not a CIDR block (\"10.0.0.0/8\", \"2001:db8::/32\"), an \
                         address, or \"uid:N\"",
                        entry.get_ref()
                    );
                    self.report(entry.span(), ConfigErrorKind::BadValue { key, message });
                }
            }
        }
        rules
    }
}

/// One `allow`/`deny` (or `proxy_protocol.trusted`) entry.
pub(super) fn parse_rule(text: &str) -> Option<SourceRule> {
    if let Some(uid) = text.strip_prefix("uid:") {
        return uid.parse().ok().map(SourceRule::Uid);
    }
    let net = match text.parse::<IpNet>() {
        Ok(net) => net.trunc(),
        Err(_) => IpNet::from(text.parse::<std::net::IpAddr>().ok()?),
    };
    Some(SourceRule::Net(canonical(net)))
}

/// An IPv4-mapped block (`::ffff:127.0.0.1`, as the log prints a dual-stack server's IPv4 peers)
/// as the IPv4 block it means: peers are matched in their IPv4 form, so the rule must be too.
fn canonical(net: IpNet) -> IpNet {
    match net {
        IpNet::V6(v6) if v6.prefix_len() >= 96 => v6
            .addr()
            .to_ipv4_mapped()
            .and_then(|v4| ipnet::Ipv4Net::new(v4, v6.prefix_len() - 96).ok())
            .map_or(net, IpNet::V4),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_are_blocks_addresses_or_uids() {
        let net = |text: &str| SourceRule::Net(text.parse().unwrap());
        assert_eq!(parse_rule("10.0.0.0/8"), Some(net("10.0.0.0/8")));
        assert_eq!(parse_rule("10.1.2.3/8"), Some(net("10.0.0.0/8")));
        assert_eq!(parse_rule("::1"), Some(net("::1/128")));
        assert_eq!(parse_rule("192.0.2.1"), Some(net("192.0.2.1/32")));
        assert_eq!(parse_rule("uid:1000"), Some(SourceRule::Uid(1000)));
        // IPv4-mapped, as a dual-stack server's log prints its IPv4 peers: the IPv4 block.
        assert_eq!(parse_rule("::ffff:127.0.0.1"), Some(net("127.0.0.1/32")));
        assert_eq!(parse_rule("::ffff:10.0.0.0/104"), Some(net("10.0.0.0/8")));
        for bad in ["uid:x", "10.0.0.0/33", "localhost", ""] {
            assert_eq!(parse_rule(bad), None, "{bad}");
        }
    }
}
