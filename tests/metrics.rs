//! The `metrics` handler, black-box: real servers driven by real clients, then `/metrics`
//! scraped over HTTP from a `metrics` server of the same `sockserv serve`, and each counter
//! checked for its exact value — under every strategy, the forking one included (whose counts are
//! made in forked children), and the reactor's.
//!
//! Counts are made as connections end, a moment after the client has seen the end: each check
//! scrapes again (bounded) until the values are there or the bound has passed.

mod chat;
mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

use chat::join_all;
use common::{config, eventually, Client, Endpoint, ServeProcess, WAIT};

/// The metrics server every config here has, on loopback.
const METRICS: (&str, &str, &str, &str, &str) =
    ("metrics", "tcp://127.0.0.1:0", "metrics", "threading", "");

/// Each strategy's echo server, by the strategy's name.
const STRATEGIES: [&str; 5] = ["sync", "threading", "pool", "forking", "reactor"];

/// The labels of server `name` (handler `handler` on TCP under `strategy`).
fn labels(name: &str, handler: &str, strategy: &str) -> String {
    format!(r#"server="{name}",handler="{handler}",transport="tcp",strategy="{strategy}""#)
}

/// Send `request` to the metrics server and read the whole response (it closes after one).
fn http(endpoint: &Endpoint, request: &[u8]) -> String {
    let Client::Tcp(mut stream) = Client::connect(endpoint).expect("connect to metrics") else {
        panic!("the metrics server is on TCP");
    };
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream.write_all(request).unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).expect("a whole response");
    String::from_utf8(response).expect("a text response")
}

/// The body of a scrape of `/metrics`.
fn scrape(serve: &ServeProcess) -> String {
    let response = http(
        serve.endpoint("metrics"),
        b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n",
    );
    let (head, body) = response.split_once("\r\n\r\n").expect("a head and a body");
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(
        head.contains("Content-Type: text/plain; version=0.0.4"),
        "{head}"
    );
    body.to_string()
}

/// The value of the series written exactly `series` (name and labels) in `text`.
fn value(text: &str, series: &str) -> Option<u64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|value| value.parse().ok())
}

/// Scrape until every `(series, value)` holds, within [`WAIT`]; panics with the last scrape and
/// the server's log otherwise.
fn expect_series(serve: &ServeProcess, expected: &[(String, u64)]) -> String {
    let mut last = String::new();
    let met = eventually(WAIT, || {
        last = scrape(serve);
        (expected.iter()).all(|(series, want)| value(&last, series) == Some(*want))
    });
    if !met {
        let wrong: Vec<String> = (expected.iter())
            .filter(|(series, want)| value(&last, series) != Some(*want))
            .map(|(series, want)| format!("{series}: want {want}, got {:?}", value(&last, series)))
            .collect();
        panic!(
            "{}\nlast scrape:\n{last}\nstderr:\n{}",
            wrong.join("\n"),
            serve.stderr()
        );
    }
    last
}

/// A TCP connection to `endpoint`, with bounded reads.
fn connect(endpoint: &Endpoint) -> TcpStream {
    let Client::Tcp(stream) = Client::connect(endpoint).expect("connect") else {
        panic!("a TCP endpoint");
    };
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream
}

/// One echo round trip of `message`, then the client's end of stream, then the server's.
fn echo_once(endpoint: &Endpoint, message: &[u8]) {
    let mut stream = connect(endpoint);
    stream.write_all(message).unwrap();
    let mut got = vec![0; message.len()];
    stream.read_exact(&mut got).unwrap();
    assert_eq!(got, message);
    stream.shutdown(Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty());
}

#[test]
fn echo_under_every_strategy_is_counted_exactly() {
    const CONNECTIONS: u64 = 4;
    const MESSAGE: &[u8] = b"hello metrics";
    let mut rows = vec![METRICS];
    let names: Vec<String> = STRATEGIES.iter().map(|s| format!("echo-{s}")).collect();
    for (name, strategy) in names.iter().zip(STRATEGIES) {
        rows.push((name, "tcp://127.0.0.1:0", "echo", strategy, ""));
    }
    let serve = ServeProcess::start(&config(&rows));
    for name in &names {
        for _ in 0..CONNECTIONS {
            echo_once(serve.endpoint(name), MESSAGE);
        }
    }
    let bytes = CONNECTIONS * MESSAGE.len() as u64;
    let mut expected = Vec::new();
    for (name, strategy) in names.iter().zip(STRATEGIES) {
        let l = labels(name, "echo", strategy);
        expected.extend([
            (
                format!("sockserv_connections_accepted_total{{{l}}}"),
                CONNECTIONS,
            ),
            (format!("sockserv_connections_active{{{l}}}"), 0),
            (
                format!("sockserv_connections_closed_total{{{l},reason=\"eof\"}}"),
                CONNECTIONS,
            ),
            (
                format!("sockserv_connections_closed_total{{{l},reason=\"error\"}}"),
                0,
            ),
            (
                format!("sockserv_connections_refused_total{{{l},reason=\"max_connections\"}}"),
                0,
            ),
            (format!("sockserv_received_bytes_total{{{l}}}"), bytes),
            (format!("sockserv_sent_bytes_total{{{l}}}"), bytes),
            (
                format!("sockserv_connection_duration_seconds_count{{{l}}}"),
                CONNECTIONS,
            ),
            (
                format!("sockserv_connection_duration_seconds_bucket{{{l},le=\"+Inf\"}}"),
                CONNECTIONS,
            ),
            (format!("sockserv_handler_errors_total{{{l}}}"), 0),
            (format!("sockserv_handler_panics_total{{{l}}}"), 0),
        ]);
    }
    let text = expect_series(&serve, &expected);
    // The metrics server counts its own scrapes too; build info and the process-wide counters
    // are there once.
    let scrapes = labels("metrics", "metrics", "threading");
    let accepted = value(
        &text,
        &format!("sockserv_connections_accepted_total{{{scrapes}}}"),
    );
    assert!(accepted.is_some_and(|n| n >= 1), "{text}");
    assert_eq!(text.matches("\nsockserv_build_info{").count(), 1, "{text}");
    assert_eq!(
        value(&text, r#"sockserv_reloads_total{result="success"}"#),
        Some(0)
    );
    assert_eq!(value(&text, "sockserv_plugin_load_failures_total"), Some(0));
    // No datagram or chat series for stream servers that are not chats.
    assert!(!text.contains("sockserv_datagrams_"), "{text}");
    assert!(!text.contains("sockserv_chat_"), "{text}");
}

#[test]
fn a_refusal_by_a_limit_and_an_idle_timeout_are_counted_by_reason() {
    let limits = "[server.limits]\nmax_connections = 1\nidle_timeout = 1";
    let strategies = ["threading", "forking", "reactor"];
    let names: Vec<String> = strategies.iter().map(|s| format!("limited-{s}")).collect();
    let mut rows = vec![METRICS];
    for (name, strategy) in names.iter().zip(strategies) {
        rows.push((name, "tcp://127.0.0.1:0", "echo", strategy, limits));
    }
    let serve = ServeProcess::start(&config(&rows));
    for name in &names {
        let endpoint = serve.endpoint(name);
        // The first holds the only place and says nothing: the idle timeout closes it.
        let mut idle = connect(endpoint);
        idle.write_all(b"x").unwrap();
        let mut byte = [0u8; 1];
        idle.read_exact(&mut byte).unwrap();
        // Admitted once the server has taken the first: a second is refused, closed unread.
        let mut refused = connect(endpoint);
        let mut buf = Vec::new();
        // Closed without a byte: an end of stream, or a reset where the close raced the client.
        if let Err(err) = refused.read_to_end(&mut buf) {
            assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset, "{err}");
        }
        assert!(buf.is_empty(), "the refused connection got no byte");
        let started = Instant::now();
        let mut rest = Vec::new();
        let _ = idle.read_to_end(&mut rest);
        assert!(
            started.elapsed() < WAIT,
            "closed by idle_timeout within bounds"
        );
    }
    let mut expected = Vec::new();
    for (name, strategy) in names.iter().zip(strategies) {
        let l = labels(name, "echo", strategy);
        expected.extend([
            (format!("sockserv_connections_accepted_total{{{l}}}"), 2),
            (
                format!("sockserv_connections_refused_total{{{l},reason=\"max_connections\"}}"),
                1,
            ),
            (
                format!("sockserv_connections_closed_total{{{l},reason=\"idle_timeout\"}}"),
                1,
            ),
            (
                format!("sockserv_connections_closed_total{{{l},reason=\"eof\"}}"),
                0,
            ),
            (format!("sockserv_connections_active{{{l}}}"), 0),
            (format!("sockserv_received_bytes_total{{{l}}}"), 1),
            (format!("sockserv_sent_bytes_total{{{l}}}"), 1),
        ]);
    }
    expect_series(&serve, &expected);
    // Both ends were logged with their reasons.
    let log = serve.stderr();
    assert!(log.contains("limit: max_connections (1)"), "{log}");
    assert!(log.contains("idle_timeout"), "{log}");
}

#[test]
fn datagrams_are_counted_and_an_oversized_one_is_dropped() {
    let serve = ServeProcess::start(&config(&[
        METRICS,
        (
            "udp",
            "udp://127.0.0.1:0",
            "echo",
            "threading",
            "max_packet_size = 16",
        ),
    ]));
    let mut client = Client::connect(serve.endpoint("udp")).unwrap();
    assert_eq!(client.echo(b"ping").unwrap(), b"ping");
    assert_eq!(client.echo(b"pong!").unwrap(), b"pong!");
    client.send(&[b'x'; 100]).unwrap();
    let l = r#"server="udp",handler="echo",transport="udp",strategy="threading""#;
    expect_series(
        &serve,
        &[
            (format!("sockserv_datagrams_received_total{{{l}}}"), 3),
            (format!("sockserv_datagrams_sent_total{{{l}}}"), 2),
            (
                format!("sockserv_datagrams_dropped_total{{{l},reason=\"oversized\"}}"),
                1,
            ),
            (format!("sockserv_sent_bytes_total{{{l}}}"), 9),
        ],
    );
}

/// A chat member that never reads misses messages once its queue is full: the metrics count
/// what it missed as dropped, exactly what the chat itself tells it it missed.
#[test]
fn a_slow_chat_member_s_missed_messages_are_counted_as_dropped() {
    const MESSAGES: usize = 400;
    for strategy in ["threading", "reactor"] {
        let serve = ServeProcess::start(&config(&[
            METRICS,
            (
                "chat",
                "tcp://127.0.0.1:0",
                "chat",
                strategy,
                "[server.socket]\nsend_buffer_size = 16384\n\
                 [server.options]\noverflow = \"drop\"\nqueue_messages = 16\n\
                 rate = 1000000\nburst = 1000",
            ),
        ]));
        let mut all = join_all(serve.endpoint("chat"), 2);
        let [slow, sender] = &mut all[..] else {
            unreachable!()
        };
        let padding = "x".repeat(1000);
        for seq in 0..MESSAGES {
            sender.send(format!("q{seq} {padding}\n").as_bytes());
        }
        sender.expect_nothing_queued("lobby");
        // The slow member reads at last: every message reached it, or was missed and said so.
        let (mut next, mut missed) = (0, 0);
        while next < MESSAGES {
            let line = slow.line();
            if let Some(rest) = line.strip_prefix("*** you missed ") {
                let n: usize = rest.split(' ').next().unwrap().parse().unwrap();
                (next, missed) = (next + n, missed + n);
            } else if line.contains("msg=q") {
                next += 1;
            }
        }
        assert!(missed > 0, "{strategy}: nothing was missed");
        let l = labels("chat", "chat", strategy);
        let dropped = format!("sockserv_chat_messages_dropped_total{{{l}}}");
        let text = expect_series(&serve, &[(dropped, missed as u64)]);
        let delivered = format!("sockserv_chat_messages_delivered_total{{{l}}}");
        let delivered = value(&text, &delivered).expect("delivered is there");
        // Every message reached the slow member or was missed; the join notices and the /who
        // answers were delivered too.
        assert!(
            delivered >= (MESSAGES - missed) as u64,
            "{strategy}: {delivered} delivered, {missed} missed\n{text}"
        );
    }
}

#[test]
fn the_http_side_refuses_what_is_not_a_scrape_and_bounds_what_a_client_sends() {
    let serve = ServeProcess::start(&config(&[(
        "metrics",
        "tcp://127.0.0.1:0",
        "metrics",
        "reactor",
        "[server.limits]\nidle_timeout = 1\nmax_connection_duration = 5",
    )]));
    let endpoint = serve.endpoint("metrics");
    let status = |response: &str| response.lines().next().unwrap_or_default().to_string();
    let post = http(
        endpoint,
        b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
    );
    assert_eq!(status(&post), "HTTP/1.1 405 Method Not Allowed", "{post}");
    assert!(post.contains("Allow: GET, HEAD\r\n"), "{post}");
    let other = http(endpoint, b"GET /other HTTP/1.1\r\n\r\n");
    assert_eq!(status(&other), "HTTP/1.1 404 Not Found", "{other}");
    let garbage = http(endpoint, b"\x16\x03\x01 not http\r\n\r\n");
    assert_eq!(status(&garbage), "HTTP/1.1 400 Bad Request", "{garbage}");
    let head = http(endpoint, b"HEAD /metrics HTTP/1.0\r\n\r\n");
    assert_eq!(status(&head), "HTTP/1.1 200 OK", "{head}");
    assert!(head.ends_with("\r\n\r\n"), "no body: {head}");
    // A head far over the bound is answered 431 once the bound is passed, not read to its end.
    let mut stream = connect(endpoint);
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nX-Long: ")
        .unwrap();
    let filler = vec![b'a'; 64 * 1024];
    let _ = stream.write_all(&filler);
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    let response = String::from_utf8_lossy(&response);
    assert!(
        response.starts_with("HTTP/1.1 431 Request Header Fields Too Large"),
        "{response}"
    );
    // A client that starts a request and stops is closed by the idle timeout.
    let mut slow = connect(endpoint);
    slow.write_all(b"GET /metr").unwrap();
    let started = Instant::now();
    let mut rest = Vec::new();
    let _ = slow.read_to_end(&mut rest);
    let took = started.elapsed();
    assert!(rest.is_empty(), "{}", String::from_utf8_lossy(&rest));
    assert!(
        took >= Duration::from_millis(900) && took < WAIT,
        "closed after {took:?}"
    );
    let l = labels("metrics", "metrics", "reactor");
    let idle = format!("sockserv_connections_closed_total{{{l},reason=\"idle_timeout\"}}");
    expect_series(&serve, &[(idle, 1)]);
}

/// Reloads are counted by result, and a forking server's counts go on across a reload that
/// changes it (its new process is handed the same board).
#[test]
fn reloads_are_counted_and_a_forking_server_counts_on_across_one() {
    let rows = [
        METRICS,
        ("fork", "tcp://127.0.0.1:0", "echo", "forking", ""),
    ];
    let serve = ServeProcess::start(&config(&rows));
    let endpoint = serve.endpoint("fork").clone();
    echo_once(&endpoint, b"before");
    let l = labels("fork", "echo", "forking");
    let accepted = format!("sockserv_connections_accepted_total{{{l}}}");
    let success = r#"sockserv_reloads_total{result="success"}"#.to_string();
    let failure = r#"sockserv_reloads_total{result="failure"}"#.to_string();
    expect_series(&serve, &[(accepted.clone(), 1), (success.clone(), 0)]);
    // A changed server (a new max_children) gets a new process on the same socket.
    let path = serve.dir().join("sockserv.toml");
    // (The same endpoints as written, port 0: the running sockets are kept.)
    let changed = config(&[
        METRICS,
        (
            "fork",
            "tcp://127.0.0.1:0",
            "echo",
            "forking",
            "max_children = 7",
        ),
    ]);
    std::fs::write(&path, changed).unwrap();
    serve.signal("HUP");
    expect_series(&serve, &[(success.clone(), 1), (failure.clone(), 0)]);
    echo_once(&endpoint, b"after");
    let closed = format!("sockserv_connections_closed_total{{{l},reason=\"eof\"}}");
    expect_series(&serve, &[(accepted, 2), (closed, 2)]);
    // A file with an error changes nothing, and counts as a failure.
    std::fs::write(&path, "[[server]]\nname = \"broken\"\n").unwrap();
    serve.signal("HUP");
    expect_series(&serve, &[(success, 1), (failure, 1)]);
}
