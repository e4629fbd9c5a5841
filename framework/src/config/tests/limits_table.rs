//! `[server.limits]`: read into the server's [`Limits`], every bad value at its place.

use super::*;
use crate::limits::{Limits, Rate, SourceRule};

fn limits_of(text: &str) -> Limits {
    let config = load(text).unwrap();
    config.servers[0].settings.limits.clone()
}

#[test]
fn a_full_limits_table_becomes_the_servers_limits() {
    let text = server(
        "tcp://127.0.0.1:0",
        "echo",
        r#"[server.limits]
max_connections = 100
max_connections_per_source = 4
ipv6_prefix = 56
accept_rate = 2.5
accept_burst = 10
idle_timeout = 30
first_byte_timeout = 5
max_connection_duration = 3600
allow = ["10.0.0.0/8", "::1", "uid:1000"]
deny = ["10.9.0.0/16"]
max_buffered_input = 1048576
"#,
    );
    let net = |text: &str| SourceRule::Net(text.parse().unwrap());
    assert_eq!(
        limits_of(&text),
        Limits {
            max_connections: Some(100),
            max_connections_per_source: Some(4),
            ipv6_prefix: 56,
            accept_rate: Some(Rate {
                per_second: 2.5,
                burst: 10
            }),
            idle_timeout: Some(Duration::from_secs(30)),
            first_byte_timeout: Some(Duration::from_secs(5)),
            max_connection_duration: Some(Duration::from_secs(3600)),
            allow: vec![net("10.0.0.0/8"), net("::1/128"), SourceRule::Uid(1000)],
            deny: vec![net("10.9.0.0/16")],
            max_buffered_input: Some(1_048_576),
        }
    );
}

#[test]
fn defaults_are_safe_and_none_lifts_them() {
    let plain = server("tcp://127.0.0.1:0", "echo", "");
    assert_eq!(limits_of(&plain), Limits::default());
    let lifted = server(
        "tcp://127.0.0.1:0",
        "echo",
        "[server.limits]\nmax_connections = \"none\"\nidle_timeout = \"none\"\nmax_buffered_input = \"none\"\n",
    );
    assert_eq!(limits_of(&lifted), Limits::none());
    // A datagram server has no connections to bound.
    let udp = server("udp://127.0.0.1:0", "echo", "");
    let limits = limits_of(&udp);
    assert_eq!((limits.max_connections, limits.idle_timeout), (None, None));
}

#[test]
fn every_bad_limit_is_its_own_error_at_its_value() {
    let extra = r#"[server.limits]
max_connections = 0
max_connections_per_source = -1
ipv6_prefix = 129
accept_rate = 0
idle_timeout = 1000000
first_byte_timeout = "soon"
allow = ["10.0.0.0/33", 5]
deny = ["uid:x"]
"#;
    let text = server("tcp://127.0.0.1:0", "echo", extra);
    let messages: Vec<String> = errors(&text).iter().map(ToString::to_string).collect();
    let expect = [
        ("max_connections = 0", "limits.max_connections: must be between 1 and 1000000, or \"none\" for no bound, got 0"),
        ("max_connections_per_source = -1", "limits.max_connections_per_source: must be between 1 and 1000000"),
        ("ipv6_prefix = 129", "limits.ipv6_prefix: must be a prefix length between 1 and 128, got 129"),
        ("accept_rate = 0", "limits.accept_rate: must be more than 0"),
        ("idle_timeout = 1000000", "limits.idle_timeout: must be more than 0 and at most 604800 seconds"),
        ("first_byte_timeout = \"soon\"", "limits.first_byte_timeout"),
        ("\"10.0.0.0/33\"", "limits.allow: \"10.0.0.0/33\" is not a CIDR block"),
        ("5]", "limits.allow"),
        ("\"uid:x\"", "limits.deny: \"uid:x\" is not a CIDR block"),
    ];
    assert_eq!(messages.len(), expect.len(), "{messages:#?}");
    for (needle, message) in expect {
        let (line, col) = position(&text, needle);
        let place = format!("test.toml:{line}:");
        let found = messages
            .iter()
            .any(|m| m.starts_with(&place) && m.contains(message));
        assert!(found, "{needle} at line {line} (col {col}): {messages:#?}");
    }
}

#[test]
fn connection_limits_are_refused_on_a_datagram_endpoint_and_unknown_keys_suggested() {
    let text = server(
        "udp://127.0.0.1:0",
        "echo",
        "[server.limits]\nmax_connections = 5\naccept_rate = 10\nidle_timout = 3\n",
    );
    let messages: Vec<String> = errors(&text).iter().map(ToString::to_string).collect();
    assert_eq!(messages.len(), 2, "{messages:#?}");
    assert!(messages[0].contains("limits.max_connections") && messages[0].contains("stream"));
    assert!(
        messages[1].contains("limits.idle_timout") && messages[1].contains("limits.idle_timeout")
    );
}

#[test]
fn socket_owner_and_group_are_names_or_ids_looked_up_at_check() {
    let text = server(
        "unix:///tmp/x.sock",
        "echo",
        "[server.socket]\nowner = \"root\"\ngroup = \"0\"\n",
    );
    let config = load(&text).unwrap();
    let socket = &config.servers[0].settings.socket;
    assert_eq!((socket.unix_owner, socket.unix_group), (Some(0), Some(0)));
    let bad = server(
        "unix:///tmp/x.sock",
        "echo",
        "[server.socket]\nowner = \"no-such-user-here\"\n",
    );
    let message = one_error(&bad).to_string();
    assert!(
        message.contains("socket.owner: no user named \"no-such-user-here\""),
        "{message}"
    );
    let tcp = server(
        "tcp://127.0.0.1:0",
        "echo",
        "[server.socket]\ngroup = \"root\"\n",
    );
    assert!(one_error(&tcp).to_string().contains("socket.group"));
}
