//! `[server.tls]`'s values, each bad one reported at its place (the files themselves are checked
//! by the black-box tests, which make certificates).

use super::*;

fn messages(text: &str) -> Vec<String> {
    errors(text).iter().map(ToString::to_string).collect()
}

fn has(messages: &[String], needle: &str) -> bool {
    messages.iter().any(|message| message.contains(needle))
}

#[test]
fn bad_values_are_reported_at_their_keys() {
    let extra = r#"[server.tls]
cert = "missing.pem"
key = "missing.key"
client_auth = "sometimes"
alpn = ["", "h2"]
min_version = "1.1"
colour = "blue"
"#;
    let found = messages(&server("tcp://127.0.0.1:0", "echo", extra));
    for needle in [
        "test.toml:8:15: server \"s\": tls.client_auth: \"sometimes\" is not one of",
        "test.toml:9:9: server \"s\": tls.alpn: an ALPN protocol name has 1 to 255 bytes",
        "test.toml:10:15: server \"s\": tls.min_version: \"1.1\" is not a TLS version",
        "unknown key `tls.colour`",
        // The files are checked all the same.
        "test.toml:6:8: server \"s\": tls.cert: ",
        "test.toml:7:7: server \"s\": tls.key: ",
    ] {
        assert!(has(&found, needle), "{needle}\n{found:#?}");
    }
}

#[test]
fn client_auth_needs_a_ca_and_sni_entries_need_names_cert_and_key() {
    let extra = r#"[server.tls]
cert = "a.pem"
key = "a.key"
client_auth = "optional"

[[server.tls.sni]]
names = ["192.0.2.1", "ok.example"]
cert = "b.pem"
key = "b.key"

[[server.tls.sni]]
names = ["OK.example"]
cert = "c.pem"
"#;
    let found = messages(&server("tcp://127.0.0.1:0", "echo", extra));
    for needle in [
        "tls.client_auth: \"optional\" needs client_ca",
        "tls.sni.names: \"192.0.2.1\" is not a DNS host name",
        "missing key `tls.sni.key`",
    ] {
        assert!(has(&found, needle), "{needle}\n{found:#?}");
    }
}

#[test]
fn tls_is_refused_on_a_datagram_server_and_needs_a_certificate() {
    let datagram = server(
        "udp://127.0.0.1:0",
        "echo",
        "[server.tls]\ncert = \"a\"\nkey = \"b\"\n",
    );
    let found = messages(&datagram);
    assert!(
        has(&found, "a datagram has no connection for TLS"),
        "{found:#?}"
    );
    let empty = server(
        "tcp://127.0.0.1:0",
        "echo",
        "[server.tls]\nalpn = [\"h2\"]\n",
    );
    let found = messages(&empty);
    assert!(has(&found, "missing key `tls.cert`"), "{found:#?}");
    let half = server(
        "tcp://127.0.0.1:0",
        "echo",
        "[server.tls]\ncert = \"a.pem\"\n",
    );
    assert!(has(&messages(&half), "missing key `tls.key`"));
}
