//! `[server.proxy_protocol]`: read into the server's [`ProxyProtocol`], every bad entry at its
//! place, and refused where no header can come.

use super::*;
use crate::limits::SourceRule;
use crate::proxy::{ProxyProtocol, Versions};

fn proxy_of(text: &str) -> Option<ProxyProtocol> {
    let config = load(text).unwrap();
    config.servers[0].settings.proxy_protocol.clone()
}

fn messages(text: &str) -> Vec<String> {
    errors(text).iter().map(ToString::to_string).collect()
}

#[test]
fn the_table_becomes_the_servers_proxy_settings() {
    let net = |text: &str| SourceRule::Net(text.parse().unwrap());
    let text = server(
        "tcp://127.0.0.1:0",
        "echo",
        "[server.proxy_protocol]\ntrusted = [\"10.0.0.0/8\", \"192.0.2.10\", \"::1\"]\nversions = [2]\n",
    );
    assert_eq!(
        proxy_of(&text),
        Some(ProxyProtocol {
            trusted: vec![net("10.0.0.0/8"), net("192.0.2.10/32"), net("::1/128")],
            versions: Versions {
                v1: false,
                v2: true
            },
        })
    );
    // Both versions unless told; none of it without the table.
    let both = server(
        "unix:///tmp/x.sock",
        "echo",
        "[server.proxy_protocol]\ntrusted = [\"uid:996\"]\n",
    );
    let proxy = proxy_of(&both).unwrap();
    assert_eq!(
        (proxy.trusted, proxy.versions),
        (vec![SourceRule::Uid(996)], Versions::BOTH)
    );
    assert_eq!(proxy_of(&server("tcp://127.0.0.1:0", "echo", "")), None);
}

#[test]
fn every_bad_entry_is_its_own_error_at_its_value() {
    let extra = r#"[server.proxy_protocol]
trusted = ["10.0.0.0/33", "uid:1000", "lb.example", 7]
versions = [1, 3]
"#;
    let text = server("tcp://127.0.0.1:0", "echo", extra);
    let messages = messages(&text);
    let expect = [
        (
            "\"10.0.0.0/33\"",
            "proxy_protocol.trusted: \"10.0.0.0/33\" is not a CIDR block",
        ),
        (
            "\"uid:1000\"",
            "proxy_protocol.trusted: \"uid:1000\" never matches on a tcp endpoint",
        ),
        (
            "\"lb.example\"",
            "proxy_protocol.trusted: \"lb.example\" is not a CIDR block",
        ),
        ("7]", "proxy_protocol.trusted: expected a list of strings"),
        (
            "3]",
            "proxy_protocol.versions: the PROXY protocol has versions 1 and 2, not 3",
        ),
    ];
    assert_eq!(messages.len(), expect.len(), "{messages:#?}");
    for (needle, message) in expect {
        let (line, col) = position(&text, needle);
        let place = format!("test.toml:{line}:{col}: server \"s\": ");
        let found = messages
            .iter()
            .any(|m| m.starts_with(&place) && m.contains(message));
        assert!(found, "{needle} at {line}:{col}: {messages:#?}");
    }
}

#[test]
fn an_empty_or_missing_trusted_list_is_refused_with_what_to_write() {
    let empty = server(
        "tcp://127.0.0.1:0",
        "echo",
        "[server.proxy_protocol]\ntrusted = []\nversions = []\n",
    );
    let messages = messages(&empty);
    assert_eq!(messages.len(), 2, "{messages:#?}");
    assert!(messages[0].contains("must name at least one proxy; to read no header, leave out"));
    assert!(messages[1].contains("proxy_protocol.versions: must name at least one version"));
    let missing = server(
        "tcp://127.0.0.1:0",
        "echo",
        "[server.proxy_protocol]\nversions = [1]\n",
    );
    let error = one_error(&missing);
    let (line, _) = position(&missing, "[server.proxy_protocol]");
    assert_eq!(line_col(&error).0, line);
    assert!(
        error
            .to_string()
            .contains("missing key `proxy_protocol.trusted`"),
        "{error}"
    );
}

#[test]
fn a_datagram_endpoint_a_unix_network_and_unknown_keys_are_refused() {
    let udp = server(
        "udp://127.0.0.1:0",
        "echo",
        "[server.proxy_protocol]\ntrusted = [\"10.0.0.0/8\"]\n",
    );
    let error = one_error(&udp);
    assert_eq!(line_col(&error), position(&udp, "[server.proxy_protocol]"));
    assert!(
        error
            .to_string()
            .contains("proxy_protocol applies only to stream (tcp and unix) endpoints"),
        "{error}"
    );
    let unix = server(
        "unix:///tmp/x.sock",
        "echo",
        "[server.proxy_protocol]\ntrusted = [\"10.0.0.0/8\"]\ntrustd = 1\n",
    );
    let messages = messages(&unix);
    assert_eq!(messages.len(), 2, "{messages:#?}");
    assert!(messages[0].contains("\"10.0.0.0/8\" never matches on a unix endpoint"));
    assert!(messages[1].contains("did you mean `proxy_protocol.trusted`?"));
}
