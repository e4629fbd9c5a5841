//! Bad configs, phase 2: one test per kind of problem, each checking the kind, the place and the
//! server, and one config with several problems to show they are all reported, in file order.
//! (Phase 1's problems — syntax, keys, types — are in `reading.rs`.)

use super::*;

// --- phase 2: one kind per check ------------------------------------------------------------------

#[test]
fn a_file_without_servers_is_refused() {
    for text in ["", "# nothing here\n"] {
        let error = one_error(text);
        assert!(matches!(error.kind, ConfigErrorKind::NoServers));
        assert_eq!(line_col(&error), (1, 1));
    }
}

#[test]
fn bad_endpoints_point_at_listen() {
    // A host name is looked up (`tcp://localhost:80` is fine); one without a port is not an
    // address at all.
    let text = server("tcp://localhost", "echo", "");
    let error = one_error(&text);
    let bad_address = crate::EndpointError::BadAddress {
        endpoint: String::new(),
        reason: String::new(),
    };
    assert!(
        matches!(&error.kind, ConfigErrorKind::BadEndpoint(e) if std::mem::discriminant(e) == std::mem::discriminant(&bad_address))
    );
    assert_eq!(line_col(&error), (3, 10));
    assert_eq!(error.server.as_deref(), Some("s"));
    assert!(error
        .to_string()
        .starts_with("test.toml:3:10: server \"s\": listen: endpoint"));
}

#[test]
fn a_port_beyond_65535_is_out_of_range() {
    let error = one_error(&server("tcp://127.0.0.1:70000", "echo", ""));
    assert_eq!(
        error.to_string(),
        "test.toml:3:10: server \"s\": listen: endpoint \"tcp://127.0.0.1:70000\": port 70000 is \
         out of range (0 to 65535; 0 lets the system pick a free port)"
    );
}

#[test]
fn unknown_strategies_and_handlers_are_named() {
    let text = server("tcp://127.0.0.1:1", "ehco", "strategy = \"pools\"\n");
    let errors = errors(&text);
    assert_eq!(errors.len(), 2, "{errors:#?}");
    assert!(
        matches!(&errors[0].kind, ConfigErrorKind::UnknownHandler { name, known }
        if name == "ehco" && known == &["echo", "timestamp", "chat"])
    );
    assert_eq!(line_col(&errors[0]), (4, 11));
    assert!(
        matches!(&errors[1].kind, ConfigErrorKind::UnknownStrategy { name } if name == "pools")
    );
    assert_eq!(line_col(&errors[1]), (5, 12));
    assert!(errors[0]
        .to_string()
        .ends_with("expected echo, timestamp or chat"));
}

#[test]
fn duplicate_names_and_endpoints_are_refused() {
    let mut text = server("tcp://127.0.0.1:1", "echo", "");
    text += "\n[[server]]\nname = \"s\"\nlisten = \"tcp://127.0.0.1:1\"\nhandler = \"echo\"\n";
    let errors = errors(&text);
    assert_eq!(errors.len(), 2, "{errors:#?}");
    assert!(
        matches!(&errors[0].kind, ConfigErrorKind::DuplicateName { name, first_line: 2 } if name == "s")
    );
    assert_eq!(line_col(&errors[0]), (7, 8));
    assert!(
        matches!(&errors[1].kind, ConfigErrorKind::DuplicateListen { other, .. } if other == "s")
    );
    assert_eq!(line_col(&errors[1]), (8, 10));
}

#[test]
fn a_unix_stream_and_datagram_socket_cannot_share_a_file() {
    let mut text = server("unix:///tmp/x.sock", "echo", "");
    text += "[[server]]\nname = \"d\"\nlisten = \"unix-dgram:///tmp/x.sock\"\nhandler = \"echo\"\n";
    let error = one_error(&text);
    assert!(matches!(
        error.kind,
        ConfigErrorKind::DuplicateListen { .. }
    ));
    assert_eq!(error.server.as_deref(), Some("d"));
}

#[test]
fn a_handler_refuses_socket_kinds_and_strategies_it_cannot_serve() {
    let error = one_error(&server("udp://127.0.0.1:1", "chat", ""));
    assert!(
        matches!(&error.kind, ConfigErrorKind::UnsupportedSocketKind { handler, kind: SocketKind::Udp, .. } if handler == "chat")
    );
    assert_eq!(line_col(&error), (3, 10));

    let text = server("tcp://127.0.0.1:1", "chat", "strategy = \"forking\"\n");
    let error = one_error(&text);
    assert!(matches!(
        &error.kind,
        ConfigErrorKind::UnsupportedStrategy {
            strategy: StrategyKind::Forking,
            note: Some(_),
            ..
        }
    ));
    assert_eq!(line_col(&error), (5, 12));
    assert!(error.to_string().ends_with(
        "handler \"chat\" cannot run under the forking strategy: \
         chat needs shared memory between connections (use sync or threading)"
    ));
}

#[test]
fn options_the_handler_refuses_carry_its_message() {
    let text = server(
        "tcp://127.0.0.1:1",
        "timestamp",
        "[server.options]\nutc = true\nzone = \"CET\"\n",
    );
    let error = one_error(&text);
    assert!(
        matches!(&error.kind, ConfigErrorKind::HandlerOptions { handler, key: Some(key), message }
        if handler == "timestamp" && key == "zone" && message.contains("\"zone\""))
    );
    assert_eq!(line_col(&error), (7, 1), "at the key");
}

#[test]
fn each_refused_option_is_its_own_error_at_its_own_place() {
    let extra = "[server.options]\ncolour = \"red\"\nutc = \"yes\"\nzone = \"CET\"\n";
    let text = server("tcp://127.0.0.1:1", "timestamp", extra);
    let errors = errors(&text);
    assert_eq!(errors.len(), 3, "{errors:#?}");
    let keys: Vec<_> = errors
        .iter()
        .map(|error| match &error.kind {
            ConfigErrorKind::HandlerOptions { key, message, .. } => {
                assert!(!message.contains("; "), "one problem per error: {message}");
                key.as_deref()
            }
            other => panic!("not an options error: {other:?}"),
        })
        .collect();
    assert_eq!(keys, [Some("colour"), Some("utc"), Some("zone")]);
    // An unknown key points at the key, a bad value at the value.
    assert_eq!(line_col(&errors[0]), position(&text, "colour"));
    assert_eq!(line_col(&errors[1]), position(&text, "\"yes\""));
    assert_eq!(line_col(&errors[2]), position(&text, "zone"));
    assert!(errors.iter().all(|e| e.server.as_deref() == Some("s")));
    let shown = ConfigErrors(errors).to_string();
    assert_eq!(shown.lines().count(), 3, "{shown}");
    assert!(
        shown.starts_with(
            "test.toml:6:1: server \"s\": options of handler \"timestamp\": unknown option \"colour\""
        ),
        "{shown}"
    );
}

#[test]
fn a_refusal_that_names_no_key_points_at_the_table_or_the_handler() {
    let mut registry = registry();
    let mut picky = entry("picky", &SocketKind::ALL, &StrategyKind::ALL);
    picky.build = Box::new(|_| Err("nothing pleases me".to_string().into()));
    registry.register(picky).unwrap();
    let mut mute = entry("mute", &SocketKind::ALL, &StrategyKind::ALL);
    mute.build = Box::new(|_| Err(OptionErrors(Vec::new())));
    registry.register(mute).unwrap();
    let check = |registry: &mut Registry, text: &str| {
        load_str(text, "test.toml", Path::new("/base"), registry)
            .expect_err("refused")
            .0
    };

    let text = server("tcp://127.0.0.1:1", "picky", "[server.options]\na = 1\n");
    let errors = check(&mut registry, &text);
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert!(matches!(
        &errors[0].kind,
        ConfigErrorKind::HandlerOptions { key: None, message, .. } if message == "nothing pleases me"
    ));
    assert_eq!(line_col(&errors[0]), (5, 1), "at the options table");

    let text = server("tcp://127.0.0.1:1", "picky", "");
    let errors = check(&mut registry, &text);
    assert_eq!(
        line_col(&errors[0]),
        (4, 11),
        "at handler, with no options table"
    );

    let text = server("tcp://127.0.0.1:1", "mute", "");
    let errors = check(&mut registry, &text);
    assert_eq!(
        errors.len(),
        1,
        "a silent refusal is still reported: {errors:#?}"
    );
}

#[test]
fn strategy_settings_need_their_strategy() {
    let text = server(
        "tcp://127.0.0.1:1",
        "echo",
        "strategy = \"forking\"\nmax_threads = 4\n",
    );
    let error = one_error(&text);
    assert!(matches!(
        error.kind,
        ConfigErrorKind::WrongStrategy {
            key: "max_threads",
            needs: StrategyKind::Threading,
            strategy: StrategyKind::Forking
        }
    ));
    assert_eq!(line_col(&error), (6, 15));

    let text = server("tcp://127.0.0.1:1", "echo", "max_children = 4\n");
    let error = one_error(&text);
    assert!(matches!(
        error.kind,
        ConfigErrorKind::WrongStrategy {
            key: "max_children",
            strategy: StrategyKind::Threading,
            ..
        }
    ));
}

#[test]
fn keys_that_mean_nothing_for_the_endpoint_are_refused() {
    let cases = [
        (
            "tcp://127.0.0.1:1",
            "[server.socket]\nunix_mode = \"0660\"\n",
            "socket.unix_mode",
        ),
        (
            "tcp://127.0.0.1:1",
            "[server.socket]\nv6only = false\n",
            "socket.v6only",
        ),
        (
            "unix:///x",
            "[server.socket]\nv6only = true\n",
            "socket.v6only",
        ),
        (
            "udp://[::1]:1",
            "[server.socket]\nnodelay = true\n",
            "socket.nodelay",
        ),
        (
            "udp://[::1]:1",
            "[server.socket]\nrequest_queue_size = 9\n",
            "socket.request_queue_size",
        ),
        (
            "tcp://127.0.0.1:1",
            "max_packet_size = 100\n",
            "max_packet_size",
        ),
    ];
    for (listen, extra, expected_key) in cases {
        let text = server(listen, "echo", extra);
        let error = one_error(&text);
        assert!(
            matches!(error.kind, ConfigErrorKind::NotForEndpoint { key, .. } if key == expected_key),
            "{error:?}"
        );
        assert_eq!(line_col(&error), value_position(&text, extra), "{error}");
    }
}

// --- every problem at once ------------------------------------------------------------------------

#[test]
fn every_problem_is_reported_in_file_order() {
    let text = r#"
[[server]]
name = "first"
listen = "tcp://127.0.0.1:7000"
handler = "echo"
strategy = "sync"
max_children = 3

[[server]]
name = "second"
listen = "udp:/127.0.0.1:7001"
handler = "timestamp"

[server.options]
colour = "blue"
"#;
    let errors = errors(text);
    assert_eq!(errors.len(), 3, "{errors:#?}");
    assert!(matches!(
        errors[0].kind,
        ConfigErrorKind::WrongStrategy {
            key: "max_children",
            ..
        }
    ));
    assert_eq!(
        (line_col(&errors[0]), errors[0].server.as_deref()),
        ((7, 16), Some("first"))
    );
    assert!(matches!(errors[1].kind, ConfigErrorKind::BadEndpoint(_)));
    assert_eq!(
        (line_col(&errors[1]), errors[1].server.as_deref()),
        ((11, 10), Some("second"))
    );
    assert!(matches!(
        errors[2].kind,
        ConfigErrorKind::HandlerOptions { .. }
    ));
    assert_eq!(errors[2].server.as_deref(), Some("second"));

    let shown = ConfigErrors(errors).to_string();
    let lines: Vec<_> = shown.lines().collect();
    assert_eq!(lines.len(), 3);
    assert!(lines[0].starts_with("test.toml:7:16: server \"first\": max_children applies only"));
    assert!(lines[1].starts_with("test.toml:11:10: server \"second\": listen: endpoint"));
}

// --- plugins ----------------------------------------------------------------------------------------

#[test]
fn a_plugin_that_fails_to_load_carries_the_loaders_reason() {
    let dir = tempfile::tempdir().unwrap();
    // Long enough to have a header to read: a shorter file is "file too short".
    let fake = "not an ELF file, only text\n".repeat(20);
    std::fs::write(dir.path().join("fake.so"), fake).unwrap();
    let text = format!(
        "[[plugin]]\npath = \"missing.so\"\n[[plugin]]\npath = \"fake.so\"\n{}",
        server("tcp://127.0.0.1:1", "echo", "")
    );
    let errors = load_str(&text, "test.toml", dir.path(), &mut registry())
        .expect_err("refused")
        .0;
    let shown: Vec<String> = errors.iter().map(ToString::to_string).collect();
    let folder = dir.path().display();
    assert_eq!(
        shown,
        [
            format!(
                "test.toml:2:8: plugin {folder}/missing.so: cannot load as a shared library: \
                 cannot open shared object file: No such file or directory"
            ),
            format!(
                "test.toml:4:8: plugin {folder}/fake.so: cannot load as a shared library: \
                 invalid ELF header"
            ),
        ]
    );
}
