//! Where servers bind: what `sockserv serve` would meet only at bind time — a wildcard beside a
//! specific address on one port, a Unix socket in a folder that does not exist, a path too long —
//! refused by the check, at the `listen` of the server that cannot bind, naming the other place.

use super::*;

/// Two servers, `a` on `first` and `b` on `second`, each with its own extra lines.
fn two(first: &str, first_extra: &str, second: &str, second_extra: &str) -> String {
    let mut text = server(first, "echo", first_extra).replace("\"s\"", "\"a\"");
    text += &server(second, "echo", second_extra).replace("\"s\"", "\"b\"");
    text
}

/// The line of the second server's `listen` in [`two`]'s text.
fn second_listen(text: &str) -> usize {
    text.lines()
        .enumerate()
        .filter(|(_, line)| line.starts_with("listen"))
        .nth(1)
        .map(|(index, _)| index + 1)
        .unwrap()
}

#[test]
fn a_tcp_wildcard_beside_a_specific_address_on_one_port_is_refused_with_both_places() {
    for (first, second) in [
        ("tcp://0.0.0.0:8000", "tcp://127.0.0.1:8000"),
        ("tcp://127.0.0.1:8000", "tcp://0.0.0.0:8000"),
    ] {
        let text = two(first, "", second, "");
        let error = one_error(&text);
        assert!(
            matches!(error.kind, ConfigErrorKind::SharedPort { .. }),
            "{error:?}"
        );
        assert_eq!(
            error.to_string(),
            format!(
                "test.toml:{}:10: server \"b\": {second} and {first} of server \"a\" (line 3) \
                 cannot both bind: a wildcard address takes the port on every address, so the \
                 second bind would fail with \"Address already in use\"; listen on one address, \
                 or set socket.reuse_port = true on both",
                second_listen(&text)
            )
        );
    }
}

#[test]
fn ipv6_wildcards_cover_ipv4_too_unless_v6only() {
    let text = two("tcp://[::]:8000", "", "tcp://127.0.0.1:8000", "");
    let error = one_error(&text);
    assert!(
        error.to_string().ends_with(
            "set socket.v6only = true on the [::] server, or set socket.reuse_port = true on both"
        ),
        "{error}"
    );
    let text = two("tcp://[::]:8000", "", "tcp://0.0.0.0:8000", "");
    assert!(matches!(
        one_error(&text).kind,
        ConfigErrorKind::SharedPort { .. }
    ));
    let v6only = "[server.socket]\nv6only = true\n";
    assert!(load(&two("tcp://[::]:8000", v6only, "tcp://127.0.0.1:8000", "")).is_ok());
    assert!(load(&two("tcp://[::]:8000", v6only, "tcp://0.0.0.0:8000", "")).is_ok());
    // Within IPv6, v6only changes nothing.
    let text = two("tcp://[::]:8000", v6only, "tcp://[::1]:8000", "");
    assert!(matches!(
        one_error(&text).kind,
        ConfigErrorKind::SharedPort { .. }
    ));
    // An IPv4-mapped address is the IPv4 address it maps.
    let text = two(
        "tcp://0.0.0.0:8000",
        "",
        "tcp://[::ffff:127.0.0.1]:8000",
        "",
    );
    assert!(matches!(
        one_error(&text).kind,
        ConfigErrorKind::SharedPort { .. }
    ));
}

#[test]
fn udp_shares_a_port_while_both_sockets_reuse_the_address() {
    // SO_REUSEADDR lets a UDP wildcard and a specific address share a port (the kernel gives each
    // datagram to the most specific socket), but it is off by default for UDP: without it on both,
    // serve would fail, so check refuses.
    let on = "[server.socket]\nreuse_address = true\n";
    assert!(load(&two("udp://0.0.0.0:8000", on, "udp://127.0.0.1:8000", on)).is_ok());
    let text = two("udp://0.0.0.0:8000", "", "udp://127.0.0.1:8000", "");
    let error = one_error(&text);
    assert!(
        error
            .to_string()
            .ends_with("listen on one address, or set socket.reuse_address = true on both"),
        "{error}"
    );
    let port = "[server.socket]\nreuse_address = false\nreuse_port = true\n";
    assert!(load(&two(
        "udp://0.0.0.0:8000",
        port,
        "udp://127.0.0.1:8000",
        port
    ))
    .is_ok());
}

#[test]
fn what_can_bind_together_is_not_refused() {
    let reuse_port = "[server.socket]\nreuse_port = true\n";
    for (first, first_extra, second, second_extra) in [
        ("tcp://0.0.0.0:0", "", "tcp://127.0.0.1:0", ""),
        ("tcp://0.0.0.0:8000", "", "udp://127.0.0.1:8000", ""),
        ("tcp://0.0.0.0:8000", "", "tcp://[::1]:8000", ""),
        ("tcp://127.0.0.1:8000", "", "tcp://127.0.0.2:8000", ""),
        ("tcp://0.0.0.0:8000", "", "tcp://127.0.0.1:8001", ""),
        (
            "tcp://0.0.0.0:8000",
            reuse_port,
            "tcp://127.0.0.1:8000",
            reuse_port,
        ),
    ] {
        let text = two(first, first_extra, second, second_extra);
        assert!(load(&text).is_ok(), "{text}: {:#?}", load(&text).err());
    }
}

#[test]
fn a_unix_socket_in_a_folder_that_does_not_exist_is_refused_naming_the_folder() {
    let dir = tempfile::tempdir().unwrap();
    let check = |text: &str| {
        load_str(text, "test.toml", dir.path(), &mut registry())
            .expect_err("refused")
            .0
    };
    let errors = check(&server("unix:///nowhere/at/all/x.sock", "echo", ""));
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert_eq!(
        errors[0].to_string(),
        "test.toml:3:10: server \"s\": listen: the socket file's folder /nowhere/at/all does not \
         exist"
    );
    // A relative path: the folder as resolved against the config's folder.
    let errors = check(&server("unix-dgram://sub/x.sock", "echo", ""));
    assert_eq!(
        errors[0].to_string(),
        format!(
            "test.toml:3:10: server \"s\": listen: the socket file's folder {}/sub does not exist",
            dir.path().display()
        )
    );
    std::fs::write(dir.path().join("file"), "").unwrap();
    let errors = check(&server("unix://file/x.sock", "echo", ""));
    assert!(
        errors[0].to_string().ends_with("file is not a folder"),
        "{:?}",
        errors
    );
}

#[test]
fn a_unix_socket_path_longer_than_a_socket_address_is_refused() {
    let long = format!("/tmp/{}.sock", "x".repeat(100));
    let error = one_error(&server(&format!("unix://{long}"), "echo", ""));
    assert_eq!(
        error.to_string(),
        format!(
            "test.toml:3:10: server \"s\": listen: the socket path {long} is 110 bytes long, more \
             than the 107 a Unix socket address holds"
        )
    );
}
