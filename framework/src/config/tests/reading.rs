//! Bad configs, phase 1: what the structure of the file gets wrong — TOML syntax, unknown,
//! missing and duplicate keys, wrong types — each named in the user's words at its place, all of
//! them in one run, together with phase 2's problems.

use super::*;

#[test]
fn syntax_errors_have_the_parsers_place() {
    let text = "[[server]]\nname = \"s\nlisten = \"tcp://127.0.0.1:1\"\n";
    let error = one_error(text);
    assert!(
        matches!(error.kind, ConfigErrorKind::Toml { .. }),
        "{error:?}"
    );
    assert_eq!(line_col(&error).0, 2);
    assert!(error.server.is_none());
}

#[test]
fn unknown_keys_are_refused_where_they_are_naming_the_server_and_the_closest_key() {
    let text = server("tcp://127.0.0.1:1", "echo", "max_thread = 4\n");
    let error = one_error(&text);
    assert!(matches!(
        &error.kind,
        ConfigErrorKind::UnknownKey { key, hint: Some(hint), .. }
        if key == "max_thread" && hint == "did you mean `max_threads`?"
    ));
    assert_eq!(
        error.to_string(),
        "test.toml:5:1: server \"s\": unknown key `max_thread`: did you mean `max_threads`?"
    );

    let text = server(
        "tcp://127.0.0.1:1",
        "echo",
        "[server.socket]\nno_delay = true\n",
    );
    let error = one_error(&text);
    assert_eq!(line_col(&error), position(&text, "no_delay"));
    assert!(
        error.to_string().ends_with(
            "server \"s\": unknown key `socket.no_delay`: did you mean `socket.nodelay`?"
        ),
        "{error}"
    );

    // A socket option written among the server's own keys: its place is [server.socket].
    let error = one_error(&server("tcp://127.0.0.1:1", "echo", "nodelay = true\n"));
    assert!(
        error
            .to_string()
            .ends_with("did you mean `socket.nodelay`?"),
        "{error}"
    );

    // A server key below the [server.socket] header, where TOML puts it in the socket table.
    let text = "[[server]]\nname = \"s\"\n[server.socket]\nnodelay = true\nlisten = \"tcp://127.0.0.1:1\"\nhandler = \"echo\"\n";
    let shown: Vec<String> = errors(text).iter().map(ToString::to_string).collect();
    let below = |key: &str| {
        format!(
            "server \"s\": unknown key `socket.{key}`: `{key}` is a key of [[server]]: write it \
             above the [server.socket] header (the keys after a header belong to its table)"
        )
    };
    // Not also "missing key `listen`": the one message says where it is and where it goes.
    assert_eq!(
        shown,
        [
            format!("test.toml:5:1: {}", below("listen")),
            format!("test.toml:6:1: {}", below("handler")),
        ]
    );

    // Nothing close: the keys the table has.
    let error = one_error(&server(
        "tcp://127.0.0.1:1",
        "echo",
        "[server.socket]\ncolour = 1\n",
    ));
    assert!(
        error.to_string().ends_with(
            "unknown key `socket.colour`: expected reuse_address, reuse_port, nodelay, \
             recv_buffer_size, send_buffer_size, request_queue_size, v6only, unix_mode, owner or group"
        ),
        "{error}"
    );

    // At the top level, alone: the missing [[server]] it explains is not reported again.
    let error = one_error("[[servers]]\n");
    assert!(matches!(&error.kind, ConfigErrorKind::UnknownKey { key, .. } if key == "servers"));
    assert_eq!(
        error.to_string(),
        "test.toml:1:3: unknown key `servers`: did you mean `server`?"
    );
}

#[test]
fn a_single_bracket_server_table_gets_a_hint() {
    let error =
        one_error("[server]\nname = \"s\"\nlisten = \"tcp://127.0.0.1:1\"\nhandler = \"echo\"\n");
    assert_eq!(
        error.to_string(),
        "test.toml:1:1: server: expected [[server]] tables, found a table; \
         write [[server]], with double brackets, at the top of each server's table"
    );
}

#[test]
fn wrong_types_say_what_was_expected_in_words_and_quote_the_value() {
    let text = server("tcp://127.0.0.1:1", "echo", "max_threads = \"lots\"\n");
    let error = one_error(&text);
    assert!(matches!(&error.kind, ConfigErrorKind::WrongType { key, .. } if key == "max_threads"));
    assert_eq!(line_col(&error), position(&text, "\"lots\""));
    assert_eq!(
        error.to_string(),
        "test.toml:5:15: server \"s\": max_threads: expected a positive whole number, found \"lots\""
    );

    let text = server("tcp://127.0.0.1:1", "echo", "timeout = \"2s\"\n");
    assert!(one_error(&text)
        .to_string()
        .ends_with("timeout: expected a number of seconds (an integer or a float), found \"2s\""));

    let text = server(
        "tcp://127.0.0.1:1",
        "echo",
        "[server.socket]\nnodelay = \"yes\"\n",
    );
    assert!(one_error(&text)
        .to_string()
        .ends_with("socket.nodelay: expected true or false, found \"yes\""));

    let text = server("tcp://127.0.0.1:1", "echo", "socket = 3\n");
    assert!(one_error(&text)
        .to_string()
        .ends_with("socket: expected a table, found 3"));
}

#[test]
fn a_mode_written_as_a_toml_integer_is_echoed_as_written_with_the_string_to_write() {
    for (written, hint) in [
        ("0o600", "write it as a string: \"0600\""),
        ("660", "write it as a string: \"0660\""),
        (
            "0x1ff",
            "write it as a string of octal digits, such as \"0660\"",
        ),
    ] {
        let extra = format!("[server.socket]\nunix_mode = {written}\n");
        let text = server("unix:///x", "echo", &extra);
        let error = one_error(&text);
        assert_eq!(
            error.to_string(),
            format!(
                "test.toml:6:13: server \"s\": socket.unix_mode: expected an octal mode in a \
                 string, such as \"0660\", found {written}; {hint}"
            )
        );
    }
}

#[test]
fn missing_keys_are_named_with_their_server() {
    let text = "[[server]]\nname = \"s\"\nhandler = \"echo\"\n";
    let error = one_error(text);
    assert!(matches!(
        error.kind,
        ConfigErrorKind::MissingKey { key: "listen", .. }
    ));
    assert_eq!(
        error.to_string(),
        "test.toml:1:1: server \"s\": missing key `listen`: every [[server]] needs name, listen \
         and handler"
    );
    // Without a name there is no name to give: the place says which table.
    let mut text = server("tcp://127.0.0.1:1", "echo", "");
    text += "[[server]]\nlisten = \"tcp://127.0.0.1:2\"\nhandler = \"echo\"\n";
    let error = one_error(&text);
    assert_eq!(
        error.to_string(),
        "test.toml:5:1: missing key `name`: every [[server]] needs name, listen and handler"
    );
    let error = one_error(&format!(
        "[[plugin]]\n{}",
        server("tcp://127.0.0.1:1", "echo", "")
    ));
    assert_eq!(
        error.to_string(),
        "test.toml:1:1: missing key `path`: every [[plugin]] needs the path of its library"
    );
}

#[test]
fn a_duplicate_key_is_named() {
    let text = "[[server]]\nname = \"s\"\nname = \"t\"\nlisten = \"tcp://127.0.0.1:1\"\nhandler = \"echo\"\n";
    let error = one_error(text);
    assert!(matches!(&error.kind, ConfigErrorKind::DuplicateKey { key } if key == "name"));
    assert_eq!(
        error.to_string(),
        "test.toml:3:1: server \"s\": duplicate key `name`: it is already set in this table"
    );
    // In the second server, whose name is known.
    let mut text = server("tcp://127.0.0.1:1", "echo", "");
    text += "[[server]]\nname = \"t\"\nlisten = \"tcp://127.0.0.1:2\"\nhandler = \"echo\"\n";
    text += "[server.socket]\nnodelay = true\nnodelay = false\n";
    let error = one_error(&text);
    assert!(
        error
            .to_string()
            .starts_with("test.toml:11:1: server \"t\": duplicate key `nodelay`"),
        "{error}"
    );
}

#[test]
fn every_structural_problem_is_reported_in_one_run() {
    // The issue's example: two typos, one run.
    let text = server(
        "tcp://127.0.0.1:1",
        "echo",
        "max_thread = 10\n[server.socket]\nreuse_adress = true\n",
    );
    let shown: Vec<String> = errors(&text).iter().map(ToString::to_string).collect();
    assert_eq!(
        shown,
        [
            "test.toml:5:1: server \"s\": unknown key `max_thread`: did you mean `max_threads`?",
            "test.toml:7:1: server \"s\": unknown key `socket.reuse_adress`: did you mean \
             `socket.reuse_address`?",
        ]
    );

    // Phase 1 and phase 2 problems together, across servers and a duplicate key.
    let text = r#"[[server]]
name = "a"
name = "b"
listen = "tcp://127.0.0.1:70000"
handler = "echo"
max_threads = "lots"
[server.socket]
unix_mode = 0o600

[[server]]
name = "c"
handler = "echo"
strategy = "forking"
max_children = 0
"#;
    let shown: Vec<String> = errors(text).iter().map(ToString::to_string).collect();
    assert_eq!(
        shown,
        [
            "test.toml:3:1: server \"a\": duplicate key `name`: it is already set in this table",
            "test.toml:4:10: server \"a\": listen: endpoint \"tcp://127.0.0.1:70000\": port 70000 \
             is out of range (0 to 65535; 0 lets the system pick a free port)",
            "test.toml:6:15: server \"a\": max_threads: expected a positive whole number, found \
             \"lots\"",
            "test.toml:8:13: server \"a\": socket.unix_mode: expected an octal mode in a string, \
             such as \"0660\", found 0o600; write it as a string: \"0600\"",
            "test.toml:10:1: server \"c\": missing key `listen`: every [[server]] needs name, \
             listen and handler",
        ]
    );
}

#[test]
fn an_unreadable_value_is_reported_once_not_taken_for_its_default() {
    // An unreadable strategy is not "threading": max_children is not said to need forking.
    let text = server(
        "tcp://127.0.0.1:1",
        "echo",
        "strategy = 4\nmax_children = 3\n",
    );
    let error = one_error(&text);
    assert!(matches!(&error.kind, ConfigErrorKind::WrongType { key, .. } if key == "strategy"));
    // Unreadable options are not an empty table the handler might refuse.
    let mut registry = registry();
    let mut needy = entry("needy", &SocketKind::ALL, &StrategyKind::ALL);
    needy.build = Box::new(|_| Err("option \"x\" is required".to_string().into()));
    registry.register(needy).unwrap();
    let text = server("tcp://127.0.0.1:1", "needy", "options = 5\n");
    let errors = load_str(&text, "test.toml", Path::new("/base"), &mut registry)
        .expect_err("refused")
        .0;
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert!(errors[0]
        .to_string()
        .ends_with("options: expected a table, found 5"));
}

#[test]
fn a_number_too_large_for_any_integer_is_out_of_range_as_written() {
    let text = server(
        "udp://127.0.0.1:1",
        "echo",
        "max_packet_size = 99999999999999999999999\n",
    );
    assert!(one_error(&text).to_string().ends_with(
        "max_packet_size: must be between 1 and 65507 (the largest UDP payload over IPv4), got \
         99999999999999999999999"
    ));
}
