//! `[server.proxy_protocol]` from the outside: a trusted proxy's header (v1 text or v2 binary)
//! makes the client it names the peer — for the limits, `deny`, the log and the handler — and
//! every other case is closed with its reason: a malformed header, no header in time, a header
//! from a source that is not trusted. The proxy is 127.0.0.1; 127.0.0.2 is a source it does not
//! trust. The accept path is the same under every strategy, so each case runs under threading and
//! the reactor (and forking where its copies of sockets matter).

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::{config, eventually, Endpoint, ServeProcess, WAIT};

/// The strategies each case runs under.
const STRATEGIES: [&str; 2] = ["threading", "reactor"];

/// The proxy, trusted; and another source, not.
const PROXY: &str = "127.0.0.1";
const STRANGER: &str = "127.0.0.2";

/// How long a trusted proxy has for its header (the framework's `HEADER_TIMEOUT`).
const HEADER_TIMEOUT: Duration = Duration::from_secs(3);

fn serve(strategy: &str, handler: &str, limits: &str) -> ServeProcess {
    let extra =
        format!("[server.limits]\n{limits}\n[server.proxy_protocol]\ntrusted = [\"{PROXY}/32\"]\n");
    let rows = [("p", "tcp://127.0.0.1:0", handler, strategy, extra.as_str())];
    // At debug: each connection's own lines (served, and via which proxy) are there.
    ServeProcess::start_limited(&config(&rows), 1024, &[("RUST_LOG", "debug")])
}

/// Whether the log has a line about one connection (`p: cN: ` and then `text`).
fn logged_about(serve: &ServeProcess, text: &str) -> bool {
    eventually(WAIT, || {
        serve.stderr().lines().any(|line| {
            line.split_once("p: c")
                .and_then(|(_, rest)| rest.split_once(": "))
                .is_some_and(|(id, rest)| id.parse::<u64>().is_ok() && rest.starts_with(text))
        })
    })
}

fn addr(serve: &ServeProcess) -> SocketAddr {
    match serve.endpoint("p") {
        Endpoint::Tcp(addr) => *addr,
        other => panic!("tcp expected, got {other}"),
    }
}

/// A connection from `source` (a loopback address), with read and write timeouts.
fn connect_from(source: &str, to: SocketAddr) -> TcpStream {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    let from: SocketAddr = format!("{source}:0").parse().unwrap();
    socket.bind(&from.into()).unwrap();
    socket.connect_timeout(&to.into(), WAIT).unwrap();
    let stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream.set_write_timeout(Some(WAIT)).unwrap();
    stream
}

/// A v1 header for a TCP4 client at `client` (`ip:port`).
fn v1(client: &str) -> Vec<u8> {
    let client: SocketAddr = client.parse().unwrap();
    format!(
        "PROXY TCP4 {} 192.0.2.1 {} 443\r\n",
        client.ip(),
        client.port()
    )
    .into_bytes()
}

/// A v2 header (PROXY command, TCP over IPv4) for a client at `client`, with one NOOP TLV.
fn v2(client: &str) -> Vec<u8> {
    let SocketAddr::V4(client) = client.parse().unwrap() else {
        panic!("IPv4 expected")
    };
    let mut header = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    header.extend_from_slice(&[0x21, 0x11, 0, 12 + 4]);
    header.extend_from_slice(&client.ip().octets());
    header.extend_from_slice(&[192, 0, 2, 1]);
    header.extend_from_slice(&client.port().to_be_bytes());
    header.extend_from_slice(&443u16.to_be_bytes());
    header.extend_from_slice(&[0x04, 0, 1, 42]);
    header
}

/// `header` and `message` in one write from the proxy; the echo of `message`.
fn echo_through(to: SocketAddr, header: &[u8], message: &[u8]) -> std::io::Result<TcpStream> {
    let mut stream = connect_from(PROXY, to);
    let mut bytes = header.to_vec();
    bytes.extend_from_slice(message);
    stream.write_all(&bytes)?;
    let mut reply = vec![0u8; message.len()];
    stream.read_exact(&mut reply)?;
    if reply != message {
        return Err(std::io::Error::other(format!("echoed {reply:?}")));
    }
    Ok(stream)
}

/// Whether the server closed `stream` without sending a byte: an end of stream or a reset, not
/// a read that timed out.
fn closed_without_a_byte(mut stream: TcpStream) -> bool {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionReset};
    match stream.read(&mut [0u8; 64]) {
        Ok(0) => true,
        Err(err) => matches!(err.kind(), ConnectionReset | ConnectionAborted),
        Ok(_) => false,
    }
}

fn logged(serve: &ServeProcess, text: &str) -> bool {
    eventually(WAIT, || serve.stderr().contains(text))
}

#[test]
fn a_v1_header_makes_the_carried_address_the_source_the_limits_count() {
    for strategy in ["threading", "reactor", "forking"] {
        let mut serve = serve(strategy, "echo", "max_connections_per_source = 1");
        let to = addr(&serve);
        // The bytes written with the header reach the handler.
        let a = echo_through(to, &v1("203.0.113.7:1000"), b"ping")
            .unwrap_or_else(|err| panic!("{strategy}: {err}:\n{}", serve.stderr()));
        let proxy = a.local_addr().unwrap();
        // Another client through the same proxy is another source.
        let _b = echo_through(to, &v1("203.0.113.8:1000"), b"pong")
            .unwrap_or_else(|err| panic!("{strategy}: {err}:\n{}", serve.stderr()));
        // The same client again is one too many.
        let mut again = connect_from(PROXY, to);
        again.write_all(&v1("203.0.113.7:2000")).unwrap();
        assert!(
            closed_without_a_byte(again),
            "{strategy}: a second one served"
        );
        let refused = "refused 203.0.113.7:2000 via 127.0.0.1:";
        assert!(logged(&serve, refused), "{strategy}:\n{}", serve.stderr());
        assert!(
            serve.stderr().contains("limit: per_source (1)"),
            "{strategy}"
        );
        // The log names the client, and the proxy once.
        let via = format!("203.0.113.7:1000 via {proxy}");
        assert!(
            logged_about(&serve, &via),
            "{strategy}:\n{}",
            serve.stderr()
        );
        drop(a);
        assert!(
            logged_about(&serve, "203.0.113.7:1000 served in"),
            "{strategy}"
        );
        assert!(serve.terminate().success(), "{strategy}");
    }
}

#[test]
fn deny_refuses_the_carried_address() {
    for strategy in STRATEGIES {
        let mut serve = serve(strategy, "echo", "deny = [\"203.0.113.66\"]");
        let to = addr(&serve);
        let mut denied = connect_from(PROXY, to);
        denied.write_all(&v1("203.0.113.66:1000")).unwrap();
        // Refused on the header alone, it may be closed before this (a broken pipe).
        let _ = denied.write_all(b"ping");
        assert!(
            closed_without_a_byte(denied),
            "{strategy}: a denied client served"
        );
        assert!(
            logged(&serve, "refused 203.0.113.66:1000 via 127.0.0.1:"),
            "{strategy}"
        );
        assert!(serve.stderr().contains(": denied"), "{strategy}");
        // The proxy itself is not denied: its other clients are served.
        echo_through(to, &v1("203.0.113.7:1000"), b"ping")
            .unwrap_or_else(|err| panic!("{strategy}: {err}"));
        assert!(serve.terminate().success(), "{strategy}");
    }
}

#[test]
fn a_v2_header_is_read_and_the_bytes_after_it_reach_the_handler() {
    for strategy in STRATEGIES {
        let mut serve = serve(strategy, "echo", "");
        let to = addr(&serve);
        let stream = echo_through(to, &v2("198.51.100.9:4242"), b"binary ping")
            .unwrap_or_else(|err| panic!("{strategy}: {err}:\n{}", serve.stderr()));
        assert!(
            logged_about(&serve, "198.51.100.9:4242 via 127.0.0.1:"),
            "{strategy}"
        );
        drop(stream);
        assert!(serve.terminate().success(), "{strategy}");
    }
}

#[test]
fn the_handler_sees_the_proxied_client_as_its_peer() {
    // Chat greets each member by its peer address: a blocking handler's `req.peer` under
    // threading, a session's `SessionInfo.peer` under the reactor.
    for strategy in STRATEGIES {
        let mut serve = serve(strategy, "chat", "");
        let to = addr(&serve);
        let mut member = connect_from(PROXY, to);
        member.write_all(&v1("203.0.113.7:1000")).unwrap();
        let mut greeting = Vec::new();
        let mut chunk = [0u8; 256];
        while !greeting.contains(&b'\n') {
            match member.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => greeting.extend_from_slice(&chunk[..n]),
            }
        }
        let greeting = String::from_utf8_lossy(&greeting);
        assert!(
            greeting.starts_with("*** welcome 203.0.113.7:1000,"),
            "{strategy}: {greeting:?}"
        );
        drop(member);
        assert!(serve.terminate().success(), "{strategy}");
    }
}

#[test]
fn a_trusted_proxy_without_a_valid_header_is_closed_with_the_reason() {
    let cases: [(&[u8], &str); 3] = [
        (
            b"PROXY TCP4 203.0.113.999 192.0.2.1 1 443\r\nping",
            "malformed PROXY header",
        ),
        (b"ping\r\n", "no PROXY header"),
        // A v2 header that says it is 65 535 bytes long.
        (
            b"\r\n\r\n\0\r\nQUIT\n\x21\x11\xff\xff",
            "more than the 4096 accepted",
        ),
    ];
    for strategy in STRATEGIES {
        let mut serve = serve(strategy, "echo", "");
        let to = addr(&serve);
        for (bytes, reason) in cases {
            let mut stream = connect_from(PROXY, to);
            let proxy = stream.local_addr().unwrap();
            stream.write_all(bytes).unwrap();
            assert!(
                closed_without_a_byte(stream),
                "{strategy}: {reason}: served"
            );
            let line = format!("closed {proxy}: ");
            assert!(
                eventually(WAIT, || serve
                    .stderr()
                    .lines()
                    .any(|l| l.contains(&line) && l.contains(reason))),
                "{strategy}: no {reason:?} line:\n{}",
                serve.stderr()
            );
        }
        assert!(serve.terminate().success(), "{strategy}");
    }
}

#[test]
fn a_header_from_an_untrusted_source_is_closed_and_its_plain_clients_served() {
    for strategy in STRATEGIES {
        let mut serve = serve(strategy, "echo", "");
        let to = addr(&serve);
        for header in [v1("203.0.113.7:1000"), v2("203.0.113.7:1000")] {
            let mut stream = connect_from(STRANGER, to);
            stream.write_all(&header).unwrap();
            // The server may already have closed it on the header alone: a broken pipe here is
            // that refusal, not a failure of the test.
            let _ = stream.write_all(b"ping");
            assert!(closed_without_a_byte(stream), "{strategy}: served");
        }
        // (Each line is written just after its connection is shut down.)
        let closed = |stderr: String| {
            stderr
                .lines()
                .filter(|line| {
                    line.contains("closed 127.0.0.2:")
                        && line
                            .contains("sent a PROXY header, but is not in proxy_protocol.trusted")
                })
                .count()
        };
        assert!(
            eventually(WAIT, || closed(serve.stderr()) == 2),
            "{strategy}:\n{}",
            serve.stderr()
        );
        // A client of its own there needs no header, and is served as itself.
        let mut plain = connect_from(STRANGER, to);
        plain.write_all(b"PING plain").unwrap();
        let mut reply = [0u8; 10];
        plain.read_exact(&mut reply).unwrap();
        assert_eq!(&reply, b"PING plain", "{strategy}");
        drop(plain);
        assert!(logged_about(&serve, "127.0.0.2:"), "{strategy}");
        assert!(serve.terminate().success(), "{strategy}");
    }
}

#[test]
fn a_trusted_proxy_that_sends_nothing_is_closed_at_the_deadline() {
    for strategy in STRATEGIES {
        let mut serve = serve(strategy, "echo", "");
        let to = addr(&serve);
        let started = Instant::now();
        let silent = connect_from(PROXY, to);
        let proxy = silent.local_addr().unwrap();
        assert!(closed_without_a_byte(silent), "{strategy}: never closed");
        assert!(
            started.elapsed() >= HEADER_TIMEOUT - Duration::from_millis(100),
            "{strategy}: closed after {:?}, before the deadline",
            started.elapsed()
        );
        let line = format!("closed {proxy}: no whole PROXY header within 3 s");
        assert!(
            logged_about(&serve, &line),
            "{strategy}:\n{}",
            serve.stderr()
        );
        assert!(serve.terminate().success(), "{strategy}");
    }
}

/// A forked request child is made while another connection awaits its header, so the child holds
/// a copy of that socket; closing it for a bad header must still close it for the client.
#[test]
fn a_refused_connection_closes_though_a_forked_child_holds_a_copy() {
    let mut serve = serve("forking", "echo", "");
    let to = addr(&serve);
    // Connected first, so accepted first (the backlog is in order): it waits in the set when the
    // next client's child is forked.
    let mut waiting = connect_from(PROXY, to);
    let served = echo_through(to, &v1("203.0.113.7:1000"), b"ping").unwrap();
    waiting.write_all(b"not a header\r\n").unwrap();
    assert!(closed_without_a_byte(waiting), "still open");
    drop(served);
    assert!(serve.terminate().success());
}
