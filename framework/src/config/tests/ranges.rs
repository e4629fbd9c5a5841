//! Every numeric key's range: refused below 1 (or at 0 seconds) and past its upper bound, with the
//! range and the value as written in the message; each bound itself accepted.

use super::*;

#[test]
fn values_out_of_range_are_refused() {
    let cases = [
        (
            "unix:///x",
            "[server.socket]\nunix_mode = \"0999\"\n",
            "socket.unix_mode",
        ),
        (
            "unix:///x",
            "[server.socket]\nunix_mode = \"rw\"\n",
            "socket.unix_mode",
        ),
        ("tcp://127.0.0.1:1", "max_threads = 0\n", "max_threads"),
        (
            "udp://127.0.0.1:1",
            "strategy = \"forking\"\nmax_children = -1\n",
            "max_children",
        ),
        (
            "udp://127.0.0.1:1",
            "max_packet_size = 0\n",
            "max_packet_size",
        ),
        ("tcp://127.0.0.1:1", "timeout = -2.5\n", "timeout"),
        ("tcp://127.0.0.1:1", "timeout = 0\n", "timeout"),
        ("tcp://127.0.0.1:1", "timeout = nan\n", "timeout"),
        (
            "tcp://127.0.0.1:1",
            "[server.socket]\nrecv_buffer_size = 0\n",
            "socket.recv_buffer_size",
        ),
        (
            "tcp://127.0.0.1:1",
            "[server.socket]\nsend_buffer_size = -8\n",
            "socket.send_buffer_size",
        ),
        (
            "tcp://127.0.0.1:1",
            "[server.socket]\nrequest_queue_size = 0\n",
            "socket.request_queue_size",
        ),
        (
            "tcp://127.0.0.1:1",
            "[server.socket]\nrequest_queue_size = 3000000000\n",
            "socket.request_queue_size",
        ),
    ];
    for (listen, extra, expected_key) in cases {
        let text = server(listen, "echo", extra);
        let error = one_error(&text);
        assert!(
            matches!(error.kind, ConfigErrorKind::BadValue { key, .. } if key == expected_key),
            "{error:?}"
        );
        assert_eq!(line_col(&error), value_position(&text, extra), "{error}");
    }
    let error =
        one_error("[[server]]\nname = \"\"\nlisten = \"tcp://127.0.0.1:1\"\nhandler = \"echo\"\n");
    assert!(matches!(
        error.kind,
        ConfigErrorKind::BadValue { key: "name", .. }
    ));
}

/// Each numeric key's upper bound, refused one past it with the range and the value as written.
#[test]
fn every_numeric_key_has_an_upper_bound_named_in_its_message() {
    let cases = [
        ("udp://127.0.0.1:1", "max_packet_size = 1000000000000\n",
         "max_packet_size: must be between 1 and 65507 (the largest UDP payload over IPv4), got 1000000000000"),
        ("udp://[::1]:1", "max_packet_size = 65528\n",
         "max_packet_size: must be between 1 and 65527 (the largest UDP payload over IPv6), got 65528"),
        ("unix-dgram:///x", "max_packet_size = 16_777_217\n",
         "max_packet_size: must be between 1 and 16777216 (16 MiB), got 16_777_217"),
        ("tcp://127.0.0.1:1", "strategy = \"pool\"\nqueue = 1000000000\n",
         "queue: must be between 1 and 65536, got 1000000000"),
        ("tcp://127.0.0.1:1", "strategy = \"pool\"\nworkers = 20000\n",
         "workers: must be between 1 and 4096, got 20000"),
        ("tcp://127.0.0.1:1", "strategy = \"reactor\"\nloops = 20000\n",
         "loops: must be between 1 and 1024, got 20000"),
        ("tcp://127.0.0.1:1", "max_threads = 100001\n",
         "max_threads: must be between 1 and 100000, got 100001"),
        ("tcp://127.0.0.1:1", "strategy = \"forking\"\nmax_children = 10001\n",
         "max_children: must be between 1 and 10000, got 10001"),
        ("tcp://127.0.0.1:1", "[server.socket]\nrequest_queue_size = 65536\n",
         "socket.request_queue_size: must be between 1 and 65535, got 65536"),
        ("tcp://127.0.0.1:1", "[server.socket]\nrecv_buffer_size = 67108865\n",
         "socket.recv_buffer_size: must be between 1 and 67108864 (64 MiB), got 67108865"),
        ("tcp://127.0.0.1:1", "[server.socket]\nsend_buffer_size = 0x10000000\n",
         "socket.send_buffer_size: must be between 1 and 67108864 (64 MiB), got 0x10000000"),
        ("tcp://127.0.0.1:1", "timeout = 86400.5\n",
         "timeout: must be more than 0 and at most 86400 seconds (1 day), got 86400.5"),
        ("tcp://127.0.0.1:1", "drain_timeout = 1e9\n",
         "drain_timeout: must be more than 0 and at most 86400 seconds (1 day), got 1e9"),
        ("unix:///x", "[server.socket]\nunix_mode = \"07777\"\n",
         "socket.unix_mode: \"07777\" has bits beyond the permission bits: write a mode from \"0000\" \
          to \"0777\" (setuid, setgid and sticky mean nothing on a socket file)"),
        ("unix:///x", "[server.socket]\nunix_mode = \"0999\"\n",
         "socket.unix_mode: \"0999\" is not an octal mode: write one from \"0000\" to \"0777\", such as \"0660\""),
    ];
    for (listen, extra, message) in cases {
        let text = server(listen, "echo", extra);
        let error = one_error(&text);
        let (line, col) = value_position(&text, extra);
        assert_eq!(
            error.to_string(),
            format!("test.toml:{line}:{col}: server \"s\": {message}")
        );
    }
}

#[test]
fn every_bound_itself_is_accepted() {
    let extras = [
        ("udp://127.0.0.1:1", "max_packet_size = 65507"),
        ("udp://[::1]:1", "max_packet_size = 65527"),
        (
            "unix-dgram:///x",
            "max_packet_size = 16777216\n[server.socket]\nunix_mode = \"0777\"",
        ),
        (
            "tcp://127.0.0.1:1",
            "strategy = \"pool\"\nqueue = 65536\nworkers = 4096",
        ),
        ("tcp://127.0.0.1:1", "strategy = \"reactor\"\nloops = 1024"),
        (
            "tcp://127.0.0.1:1",
            "strategy = \"forking\"\nmax_children = 10000",
        ),
        (
            "tcp://127.0.0.1:1",
            "max_threads = 100000\ntimeout = 86400\ndrain_timeout = 86400\n\
          [server.socket]\nrequest_queue_size = 65535\nrecv_buffer_size = 67108864\n\
          send_buffer_size = 67108864",
        ),
    ];
    for (listen, extra) in extras {
        let text = server(listen, "echo", extra);
        assert!(load(&text).is_ok(), "{text}: {:?}", load(&text).err());
    }
}

#[test]
fn disable_after_panics_is_a_count_within_its_range() {
    for (count, accepted) in [
        ("0", false),
        ("1", true),
        ("1000000", true),
        ("1000001", false),
    ] {
        let text = format!(
            "[[plugin]]\npath = \"/nowhere/p.so\"\ndisable_after_panics = {count}\n{}",
            server("tcp://127.0.0.1:1", "echo", "")
        );
        let errors = errors(&text);
        let range_error = errors.iter().find(|e| {
            matches!(
                e.kind,
                ConfigErrorKind::BadValue {
                    key: "disable_after_panics",
                    ..
                }
            )
        });
        assert_eq!(range_error.is_none(), accepted, "{count}: {errors:#?}");
        if let Some(error) = range_error {
            assert_eq!(
                error.to_string(),
                format!("test.toml:3:24: disable_after_panics: must be between 1 and 1000000, got {count}")
            );
        }
    }
}
