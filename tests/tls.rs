//! TLS from the outside (`[server.tls]`): real processes, certificates made at test time. The echo
//! handler answers over TLS under every strategy on tcp and unix; client certificates are
//! required or optional, and one signed by an unknown CA is refused; a plaintext client on a TLS
//! port is closed with a log line; `sockserv check` reports bad files at the key naming them; a
//! datagram server's `tls` is refused.

mod common;
mod tls_support;

use std::io::{Read, Write};
use std::path::Path;
use std::time::Duration;

use common::{config, eventually, run, temp_dir, write_config, ServeProcess, WAIT};
use tls_support::{client_config, connect, echo, Ca, Plain};

const TLS_TABLE: &str = "[server.tls]\ncert = \"server.pem\"\nkey = \"server.key\"\n";

/// A folder with a CA, its server certificate (`server.pem`, `server.key`) and `ca.pem`.
fn pki() -> (tempfile::TempDir, Ca) {
    let dir = temp_dir();
    let ca = Ca::new("sockserv test CA");
    ca.server("sockserv test server", &[])
        .write(dir.path(), "server");
    ca.write(dir.path(), "ca.pem");
    (dir, ca)
}

/// Whether `stderr` has a line about a connection of `server` (`server: cN: `, then `text`).
fn about(stderr: &str, server: &str, text: &str) -> bool {
    stderr.lines().any(|line| {
        line.split_once(&format!("{server}: c"))
            .and_then(|(_, rest)| rest.split_once(": "))
            .is_some_and(|(id, rest)| id.parse::<u64>().is_ok() && rest.starts_with(text))
    })
}

/// Serve `text` (a config, `{dir}` for the folder) from `dir`.
fn serve(dir: tempfile::TempDir, text: &str) -> ServeProcess {
    let path = write_config(dir.path(), "sockserv.toml", text);
    let expected = text.lines().filter(|l| l.trim() == "[[server]]").count();
    ServeProcess::spawn(dir, &[path.as_os_str()], expected)
}

#[test]
fn echo_over_tls_under_every_strategy_on_tcp_and_unix() {
    let (dir, ca) = pki();
    let strategies = ["sync", "threading", "pool", "forking", "reactor"];
    let mut rows = Vec::new();
    for strategy in strategies {
        let tcp = format!("{strategy}-tcp");
        let unix = format!("{strategy}-unix");
        let path = format!("unix://{{dir}}/{strategy}.sock");
        rows.push((tcp, "tcp://127.0.0.1:0".to_string(), strategy));
        rows.push((unix, path, strategy));
    }
    let table: Vec<_> = (rows.iter())
        .map(|(name, listen, strategy)| (&name[..], &listen[..], "echo", *strategy, TLS_TABLE))
        .collect();
    let mut serve = serve(dir, &config(&table));
    let client = client_config(&ca.pem(), None, &[]);
    for (name, ..) in &rows {
        for round in 0..2 {
            let mut tls = connect(serve.endpoint(name), &client)
                .unwrap_or_else(|err| panic!("{name}: {err}\n{}", serve.stderr()));
            let message = format!("hello {name} {round}\n").repeat(100);
            let back = echo(&mut tls, message.as_bytes()).unwrap();
            assert_eq!(back, message.as_bytes(), "{name}");
            tls.conn.send_close_notify();
            tls.flush().unwrap();
            let mut rest = Vec::new();
            tls.read_to_end(&mut rest).unwrap();
            assert!(rest.is_empty(), "{name}: {rest:?}");
        }
    }
    assert!(serve.terminate().success(), "{}", serve.stderr());
}

#[test]
fn a_plaintext_client_on_a_tls_port_is_closed_with_a_log_line() {
    let (dir, _ca) = pki();
    let extra = TLS_TABLE.to_string();
    let mut serve = serve(
        dir,
        &config(&[
            ("threads", "tcp://127.0.0.1:0", "echo", "threading", &extra),
            ("loop", "unix://{dir}/loop.sock", "echo", "reactor", &extra),
            ("fork", "tcp://127.0.0.1:0", "echo", "forking", &extra),
        ]),
    );
    for name in ["threads", "loop", "fork"] {
        let mut plain = Plain::connect(serve.endpoint(name)).unwrap();
        plain.write_all(b"hello, plaintext\r\n").unwrap();
        let mut got = Vec::new();
        // Closed: end of stream (after rustls's alert, if any) or a reset, never an echo.
        let _ = plain.read_to_end(&mut got);
        assert!(!got.ends_with(b"plaintext\r\n"), "{name}: {got:?}");
    }
    let logged = eventually(WAIT, || {
        let stderr = serve.stderr();
        about(&stderr, "threads", "request from")
            && stderr.contains("TLS handshake failed: the client does not speak TLS")
            && about(&stderr, "loop", "request from")
            && about(&stderr, "fork", "request from")
    });
    assert!(logged, "{}", serve.stderr());
    assert!(serve.terminate().success(), "{}", serve.stderr());
}

#[test]
fn client_certificates_required_or_optional_and_an_unknown_ca_refused() {
    let (dir, ca) = pki();
    let required = format!("{TLS_TABLE}client_ca = \"ca.pem\"\nclient_auth = \"required\"\n");
    let optional = format!("{TLS_TABLE}client_ca = \"ca.pem\"\nclient_auth = \"optional\"\n");
    let mut serve = serve(
        dir,
        &config(&[
            (
                "required",
                "tcp://127.0.0.1:0",
                "echo",
                "threading",
                &required,
            ),
            (
                "optional",
                "tcp://127.0.0.1:0",
                "echo",
                "reactor",
                &optional,
            ),
            (
                "req-loop",
                "unix://{dir}/r.sock",
                "echo",
                "reactor",
                &required,
            ),
        ]),
    );
    let stranger_ca = Ca::new("somebody else's CA");
    let anonymous = client_config(&ca.pem(), None, &[]);
    let alice = client_config(&ca.pem(), Some(&ca.client("alice")), &[]);
    let mallory = client_config(&ca.pem(), Some(&stranger_ca.client("mallory")), &[]);
    let served = |name: &str, client| {
        // TLS 1.3: the server's verdict on a client certificate comes after the client's
        // handshake is done, so it shows at the first read.
        let mut tls = connect(serve.endpoint(name), client)?;
        echo(&mut tls, b"ping\n")
    };
    for name in ["required", "req-loop"] {
        assert_eq!(served(name, &alice).unwrap(), b"ping\n", "{name}");
        assert!(served(name, &anonymous).is_err(), "{name}: no certificate");
        assert!(served(name, &mallory).is_err(), "{name}: unknown CA");
    }
    assert_eq!(served("optional", &alice).unwrap(), b"ping\n");
    assert_eq!(served("optional", &anonymous).unwrap(), b"ping\n");
    assert!(
        served("optional", &mallory).is_err(),
        "optional: unknown CA"
    );
    let logged = eventually(WAIT, || {
        let stderr = serve.stderr();
        about(&stderr, "required", "request from") && stderr.contains("TLS handshake failed")
    });
    assert!(logged, "{}", serve.stderr());
    assert!(serve.terminate().success(), "{}", serve.stderr());
}

/// `sockserv check FILE`: its status and stderr.
fn check(dir: &Path, text: &str) -> (Option<i32>, String) {
    let path = write_config(dir, "check.toml", text);
    let output = run(
        &["check", path.to_str().unwrap()],
        b"",
        Duration::from_secs(20),
    );
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    (output.status.code(), stderr)
}

#[test]
fn check_reports_bad_tls_files_at_the_key_naming_them() {
    let (dir, ca) = pki();
    ca.expired("old").write(dir.path(), "old");
    Ca::new("other")
        .server("other", &[])
        .write(dir.path(), "other");
    std::fs::write(dir.path().join("garbage.pem"), "not a certificate\n").unwrap();
    let text = config(&[
        (
            "missing",
            "tcp://127.0.0.1:0",
            "echo",
            "",
            "[server.tls]\ncert = \"nowhere.pem\"\nkey = \"server.key\"\n",
        ),
        (
            "mismatch",
            "tcp://127.0.0.1:0",
            "echo",
            "",
            "[server.tls]\ncert = \"server.pem\"\nkey = \"other.key\"\n",
        ),
        (
            "expired",
            "tcp://127.0.0.1:0",
            "echo",
            "",
            "[server.tls]\ncert = \"old.pem\"\nkey = \"old.key\"\n",
        ),
        (
            "nokey",
            "tcp://127.0.0.1:0",
            "echo",
            "",
            "[server.tls]\ncert = \"server.pem\"\nkey = \"garbage.pem\"\n",
        ),
        ("dgram", "udp://127.0.0.1:0", "echo", "", TLS_TABLE),
    ]);
    let (status, stderr) = check(dir.path(), &text);
    assert_eq!(status, Some(2), "{stderr}");
    let line_of = |needle: &str| {
        let (index, _) = (text.lines().enumerate())
            .find(|(_, line)| line.contains(needle))
            .unwrap_or_else(|| panic!("{needle} not in the config"));
        index + 1
    };
    let at = |line: usize, col: usize| format!("check.toml:{line}:{col}");
    let expectations = [
        (at(line_of("nowhere.pem"), 8), "tls.cert", "cannot read it"),
        (
            at(line_of("other.key"), 7),
            "tls.key",
            "does not match the certificate",
        ),
        (at(line_of("old.pem"), 8), "tls.cert", "expired"),
        (
            at(line_of("garbage.pem\""), 7),
            "tls.key",
            "no PEM private key",
        ),
    ];
    for (place, key, what) in expectations {
        let line = (stderr.lines())
            .find(|line| line.contains(&place))
            .unwrap_or_else(|| panic!("nothing at {place}:\n{stderr}"));
        assert!(
            line.contains(key) && line.contains(what),
            "{line}\n{stderr}"
        );
    }
    assert!(
        stderr.contains("dgram") && stderr.contains("a datagram has no connection for TLS"),
        "{stderr}"
    );
    let (status, stderr) = check(
        dir.path(),
        &config(&[("good", "tcp://127.0.0.1:0", "echo", "", TLS_TABLE)]),
    );
    assert_eq!(status, Some(0), "{stderr}");
}

/// Read from `tls` until `needle` has come (bounded by the stream's timeout).
fn read_until(tls: &mut tls_support::Tls, needle: &str) -> String {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains(needle) {
        match tls.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&seen).into_owned()
}

#[test]
fn chat_names_members_by_their_certificate_under_threading_and_the_reactor() {
    let (dir, ca) = pki();
    let extra = format!(
        "{TLS_TABLE}client_ca = \"ca.pem\"\n\n[server.options]\nnick_from_certificate = true\n"
    );
    let mut serve = serve(
        dir,
        &config(&[
            ("threads", "tcp://127.0.0.1:0", "chat", "threading", &extra),
            ("loop", "unix://{dir}/chat.sock", "chat", "reactor", &extra),
        ]),
    );
    let alice = client_config(&ca.pem(), Some(&ca.client("alice")), &[]);
    let bob = client_config(&ca.pem(), Some(&ca.client("bob")), &[]);
    for name in ["threads", "loop"] {
        let endpoint = serve.endpoint(name).clone();
        let mut a = connect(&endpoint, &alice).unwrap();
        let greeting = read_until(&mut a, "/help");
        assert!(greeting.contains("welcome alice,"), "{name}: {greeting}");
        let mut b = connect(&endpoint, &bob).unwrap();
        assert!(
            read_until(&mut b, "/help").contains("welcome bob,"),
            "{name}"
        );
        assert!(
            read_until(&mut a, "joined").contains("bob joined"),
            "{name}"
        );
        b.write_all(b"hello from bob\n").unwrap();
        let heard = read_until(&mut a, "hello from bob");
        assert!(heard.contains("hello from bob"), "{name}: {heard}");
    }
    assert!(serve.terminate().success(), "{}", serve.stderr());
}

#[test]
fn sni_picks_the_certificate_and_alpn_is_negotiated() {
    let (dir, ca) = pki();
    ca.server("api", &["api.test"]).write(dir.path(), "api");
    let extra = format!(
        "{TLS_TABLE}alpn = [\"x-sockserv/1\", \"http/1.1\"]\nmin_version = \"1.3\"\n\n\
         [[server.tls.sni]]\nnames = [\"API.test\"]\ncert = \"api.pem\"\nkey = \"api.key\"\n"
    );
    let mut serve = serve(
        dir,
        &config(&[
            ("threads", "tcp://127.0.0.1:0", "echo", "threading", &extra),
            ("loop", "tcp://127.0.0.1:0", "echo", "reactor", &extra),
        ]),
    );
    let client = client_config(&ca.pem(), None, &["http/1.1", "x-sockserv/1"]);
    for name in ["threads", "loop"] {
        let endpoint = serve.endpoint(name);
        let mut api = tls_support::connect_as(endpoint, &client, "api.test").unwrap();
        assert_eq!(tls_support::server_common_name(&api), "api", "{name}");
        assert_eq!(
            api.conn.alpn_protocol(),
            Some(&b"x-sockserv/1"[..]),
            "{name}"
        );
        assert_eq!(echo(&mut api, b"via sni\n").unwrap(), b"via sni\n");
        let plain = connect(endpoint, &client).unwrap();
        let common_name = tls_support::server_common_name(&plain);
        assert_eq!(common_name, "sockserv test server", "{name}");
        assert_eq!(
            plain.conn.protocol_version(),
            Some(rustls::ProtocolVersion::TLSv1_3)
        );
    }
    assert!(serve.terminate().success(), "{}", serve.stderr());
}

/// `sockserv client ARGS` with `stdin`: (success, stdout, stderr).
fn client(args: &[&str], stdin: &[u8]) -> (bool, String, String) {
    let mut all = vec!["client"];
    all.extend_from_slice(args);
    let output = run(&all, stdin, Duration::from_secs(20));
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn the_clients_speak_tls_to_every_built_in_and_say_so_when_the_port_does_not() {
    let (dir, ca) = pki();
    ca.client("carol").write(dir.path(), "carol");
    Ca::new("another CA").write(dir.path(), "other-ca.pem");
    let folder = dir.path().to_path_buf();
    let file = |name: &str| folder.join(name).display().to_string();
    let required = format!("{TLS_TABLE}client_ca = \"ca.pem\"\n");
    let serve = serve(
        dir,
        &config(&[
            ("echo", "tcp://127.0.0.1:0", "echo", "threading", TLS_TABLE),
            (
                "stamp",
                "unix://{dir}/ts.sock",
                "timestamp",
                "reactor",
                TLS_TABLE,
            ),
            ("search", "tcp://127.0.0.1:0", "search", "pool", TLS_TABLE),
            ("chat", "tcp://127.0.0.1:0", "chat", "threading", &required),
            ("plain", "tcp://127.0.0.1:0", "echo", "threading", ""),
        ]),
    );
    let at = |name: &str| serve.endpoint(name).to_string();
    let ca_file = file("ca.pem");
    let trust = ["--tls", "--ca", &ca_file];

    let echo_at = at("echo");
    let (ok, out, err) = client(&[&["echo", &echo_at, "over tls"][..], &trust].concat(), b"");
    assert!(ok && out.contains("over tls"), "{out}{err}");

    let stamp_at = at("stamp");
    let args = [
        &["timestamp", &stamp_at, "when"][..],
        &trust,
        &["--server-name", "localhost"],
    ];
    let (ok, out, err) = client(&args.concat(), b"");
    assert!(ok && out.contains("] when"), "{out}{err}");

    let search_at = at("search");
    let args = [&["search", &search_at, "search", "morpheus"][..], &trust].concat();
    let (ok, out, err) = client(&args, b"");
    assert!(ok && out.contains("Follow the white rabbit"), "{out}{err}");

    let chat_at = at("chat");
    let (cert, key) = (file("carol.pem"), file("carol.key"));
    let identity = ["--cert", &cert[..], "--key", &key[..]];
    let args = [
        &["chat", &chat_at][..],
        &trust,
        &identity,
        &["--nick", "carol"],
    ]
    .concat();
    let (ok, out, err) = client(&args, b"hello room\n");
    assert!(
        ok && out.contains("welcome") && out.contains("you are now carol"),
        "{out}{err}"
    );
    // Without the certificate the chat server refuses it.
    let (ok, _, err) = client(&[&["chat", &chat_at][..], &trust].concat(), b"hi\n");
    assert!(!ok, "{err}");

    let plain_at = at("plain");
    let (ok, out, err) = client(&[&["echo", &plain_at, "x"][..], &trust].concat(), b"");
    assert!(!ok, "{out}");
    assert!(
        err.contains("TLS handshake with") && err.contains("TLS port"),
        "{err}"
    );
    // A server certificate the client does not trust.
    let (ok, _, err) = client(
        &[
            "echo",
            &echo_at,
            "x",
            "--tls",
            "--ca",
            &file("other-ca.pem"),
        ],
        b"",
    );
    assert!(!ok && err.contains("invalid peer certificate"), "{err}");
}

#[test]
fn a_silent_client_is_closed_at_first_byte_timeout_and_a_proxy_header_comes_before_tls() {
    let (dir, ca) = pki();
    let extra = format!(
        "[server.limits]\nfirst_byte_timeout = 1\n\n[server.proxy_protocol]\n\
         trusted = [\"127.0.0.1\"]\n\n{TLS_TABLE}"
    );
    let mut serve = serve(
        dir,
        &config(&[
            ("threads", "tcp://127.0.0.1:0", "echo", "threading", &extra),
            ("loop", "tcp://127.0.0.1:0", "echo", "reactor", &extra),
        ]),
    );
    let client = client_config(&ca.pem(), None, &[]);
    for name in ["threads", "loop"] {
        let endpoint = serve.endpoint(name).clone();
        // A PROXY header, then TLS on the same connection.
        let mut plain = Plain::connect(&endpoint).unwrap();
        plain
            .write_all(b"PROXY TCP4 192.0.2.7 192.0.2.1 4321 443\r\n")
            .unwrap();
        let name_ = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let conn = rustls::ClientConnection::new(client.clone(), name_).unwrap();
        let mut tls = rustls::StreamOwned::new(conn, plain);
        assert_eq!(
            echo(&mut tls, b"proxied\n").unwrap(),
            b"proxied\n",
            "{name}"
        );
        // The header, then nothing: the handshake is not done within first_byte_timeout.
        let started = std::time::Instant::now();
        let mut silent = Plain::connect(&endpoint).unwrap();
        silent
            .write_all(b"PROXY TCP4 192.0.2.8 192.0.2.1 4322 443\r\n")
            .unwrap();
        let mut rest = Vec::new();
        let _ = silent.read_to_end(&mut rest);
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(900) && took < WAIT,
            "{name}: {took:?}"
        );
    }
    let logged = eventually(WAIT, || {
        let stderr = serve.stderr();
        // The silent client's failure names the client its header carried, on both servers.
        stderr.matches("request from 192.0.2.8:4322").count() >= 2
            && stderr
                .matches("TLS handshake failed: not done within 1 s")
                .count()
                >= 2
    });
    assert!(logged, "{}", serve.stderr());
    assert!(serve.terminate().success(), "{}", serve.stderr());
}
