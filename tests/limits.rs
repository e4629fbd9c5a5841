//! What bounds a server when clients take everything it has: here, running out of file
//! descriptors never stops, spins or floods a server.

mod common;

use std::net::TcpStream;
use std::time::Duration;

use common::{config, eventually, Client, Endpoint, ServeProcess, WAIT};

/// The descriptor limit the server runs under, and how many clients try to hold a connection:
/// well past the limit.
const NOFILE: u32 = 64;
const HOLDERS: usize = 150;

/// Run `strategy` under the low limit with `HOLDERS` clients holding connections; `runs_out`: the
/// serving process itself runs out (forking does not: a child holds each connection, and the
/// server keeps no copy it cannot make).
fn out_of_descriptors_is_survived(strategy: &str, extra: &str, runs_out: bool) {
    let extra = format!("{extra}\n[server.socket]\nrequest_queue_size = 256");
    let rows = [("e", "tcp://127.0.0.1:0", "echo", strategy, extra.as_str())];
    let mut serve = ServeProcess::start_limited(&config(&rows), NOFILE, &[]);
    let endpoint = serve.endpoint("e").clone();
    let Endpoint::Tcp(addr) = endpoint else {
        unreachable!()
    };
    let held: Vec<TcpStream> = (0..HOLDERS)
        .filter_map(|_| TcpStream::connect_timeout(&addr, WAIT).ok())
        .collect();
    // Every connection past the limit is refused (closed) as it comes: one line says so, however
    // many there were.
    let refusing = "out of file descriptors";
    if runs_out {
        assert!(
            eventually(WAIT, || serve.stderr().contains(refusing)),
            "{strategy}: never ran out:\n{}",
            serve.stderr()
        );
    }
    drop(held);
    // Served again once descriptors are free.
    let served = eventually(WAIT, || {
        Client::connect(&endpoint)
            .and_then(|mut client| client.echo(b"again"))
            .is_ok_and(|reply| reply == b"again")
    });
    let stderr = serve.stderr();
    assert!(
        served,
        "{strategy}: no fresh client served after the clients left:\n{stderr}"
    );
    if runs_out {
        // One line per episode; an episode ends only after a second without refusals, so a test
        // this short has one (two if the machine stalled it past that second).
        let lines = stderr.matches(refusing).count();
        assert!(lines <= 2, "{strategy}: {lines} lines: {stderr}");
    }
    // No request was refused for a wrong reason (forking: "cannot tell whether single-threaded").
    assert!(
        !stderr.contains("cannot start the request"),
        "{strategy}: {stderr}"
    );
    assert!(
        serve.terminate().success(),
        "{strategy}: {}",
        serve.stderr()
    );
}

#[test]
fn out_of_descriptors_under_threading() {
    out_of_descriptors_is_survived("threading", "", true);
}

#[test]
fn out_of_descriptors_under_pool() {
    out_of_descriptors_is_survived("pool", "workers = 4\nqueue = 200", true);
}

#[test]
fn out_of_descriptors_under_reactor() {
    out_of_descriptors_is_survived("reactor", "loops = 1", true);
}

/// Forking keeps forking while the serving process is out of descriptors: the thread count it
/// checks before each fork is read through a descriptor it already holds.
#[test]
fn out_of_descriptors_under_forking() {
    out_of_descriptors_is_survived("forking", "max_children = 100", false);
}

// ---------------------------------------------------------------------------------------------------
// [server.limits], key by key, under every strategy it applies to.

/// The strategies that accept connections while others are open (sync serves one at a time, so
/// a second connection waits in the backlog rather than being accepted and refused).
const CONCURRENT: [&str; 4] = ["threading", "pool", "forking", "reactor"];

fn serve_with_limits(strategy: &str, limits: &str) -> ServeProcess {
    let extra = format!("[server.limits]\n{limits}");
    ServeProcess::start(&config(&[(
        "e",
        "tcp://127.0.0.1:0",
        "echo",
        strategy,
        &extra,
    )]))
}

fn tcp_addr(serve: &ServeProcess) -> std::net::SocketAddr {
    match serve.endpoint("e") {
        Endpoint::Tcp(addr) => *addr,
        other => panic!("tcp expected, got {other}"),
    }
}

/// A client from `source` (a loopback address), connected and echoing once.
fn echoing_from(source: &str, addr: std::net::SocketAddr) -> std::io::Result<TcpStream> {
    use std::io::{Read, Write};
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    let from: std::net::SocketAddr = format!("{source}:0").parse().unwrap();
    socket.bind(&from.into())?;
    socket.connect_timeout(&addr.into(), WAIT)?;
    let mut stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(WAIT))?;
    stream.write_all(b"ping")?;
    let mut reply = [0u8; 4];
    stream.read_exact(&mut reply)?;
    if &reply != b"ping" {
        return Err(std::io::Error::other(format!("echoed {reply:?}")));
    }
    Ok(stream)
}

/// Whether the server closed `stream` without sending a byte (a refusal).
fn closed_without_a_byte(mut stream: TcpStream) -> bool {
    use std::io::Read;
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let mut buf = [0u8; 16];
    matches!(stream.read(&mut buf), Ok(0) | Err(_))
}

fn refused_from(source: &str, addr: std::net::SocketAddr) -> bool {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    let from: std::net::SocketAddr = format!("{source}:0").parse().unwrap();
    socket.bind(&from.into()).unwrap();
    if socket.connect_timeout(&addr.into(), WAIT).is_err() {
        return true;
    }
    closed_without_a_byte(socket.into())
}

fn logged(serve: &ServeProcess, text: &str) -> bool {
    eventually(WAIT, || serve.stderr().contains(text))
}

#[test]
fn max_connections_refuses_one_more_at_accept() {
    for strategy in CONCURRENT {
        let mut serve = serve_with_limits(strategy, "max_connections = 2");
        let addr = tcp_addr(&serve);
        let first = echoing_from("127.0.0.1", addr).unwrap();
        let _second = echoing_from("127.0.0.1", addr).unwrap();
        assert!(
            refused_from("127.0.0.1", addr),
            "{strategy}: a third was served"
        );
        assert!(logged(&serve, "limit: max_connections (2)"), "{strategy}");
        drop(first);
        // Room again once one leaves.
        let again = eventually(WAIT, || echoing_from("127.0.0.1", addr).is_ok());
        assert!(
            again,
            "{strategy}: no room after one left:\n{}",
            serve.stderr()
        );
        assert!(serve.terminate().success(), "{strategy}");
    }
}

#[test]
fn max_connections_per_source_refuses_the_third_from_one_source_only() {
    for strategy in CONCURRENT {
        let mut serve = serve_with_limits(strategy, "max_connections_per_source = 2");
        let addr = tcp_addr(&serve);
        let _a = echoing_from("127.0.0.1", addr).unwrap();
        let _b = echoing_from("127.0.0.1", addr).unwrap();
        assert!(
            refused_from("127.0.0.1", addr),
            "{strategy}: a third was served"
        );
        assert!(logged(&serve, "limit: per_source (2)"), "{strategy}");
        // Another source is served all the same.
        echoing_from("127.0.0.2", addr).unwrap_or_else(|err| panic!("{strategy}: {err}"));
        assert!(serve.terminate().success(), "{strategy}");
    }
}

#[test]
fn accept_rate_allows_the_burst_then_refuses() {
    for strategy in CONCURRENT {
        let mut serve = serve_with_limits(strategy, "accept_rate = 0.1\naccept_burst = 2");
        let addr = tcp_addr(&serve);
        let _a = echoing_from("127.0.0.1", addr).unwrap();
        let _b = echoing_from("127.0.0.1", addr).unwrap();
        assert!(
            refused_from("127.0.0.1", addr),
            "{strategy}: over the rate, served"
        );
        assert!(logged(&serve, ": rate"), "{strategy}");
        echoing_from("127.0.0.2", addr).unwrap_or_else(|err| panic!("{strategy}: {err}"));
        assert!(serve.terminate().success(), "{strategy}");
    }
}

#[test]
fn allow_and_deny_close_a_peer_without_a_byte_before_any_handler() {
    for strategy in ["sync", "threading", "pool", "forking", "reactor"] {
        let limits = "allow = [\"127.0.0.0/8\"]\ndeny = [\"127.0.0.2\"]";
        let mut serve = serve_with_limits(strategy, limits);
        let addr = tcp_addr(&serve);
        assert!(
            refused_from("127.0.0.2", addr),
            "{strategy}: a denied peer was served"
        );
        assert!(logged(&serve, "refused 127.0.0.2:"), "{strategy}");
        assert!(serve.stderr().contains(": denied"), "{strategy}");
        echoing_from("127.0.0.1", addr).unwrap_or_else(|err| panic!("{strategy}: {err}"));
        assert!(serve.terminate().success(), "{strategy}");
    }
}

/// A connection that goes quiet, never speaks, or stays too long is closed with its reason.
#[test]
fn time_limits_close_connections_with_their_reason() {
    use std::io::Write;
    let cases = [
        ("idle_timeout = 0.5", "idle_timeout (0.5 s)", true),
        (
            "first_byte_timeout = 0.5",
            "first_byte_timeout (0.5 s)",
            false,
        ),
        ("max_connection_duration = 1", "max_duration (1 s)", true),
    ];
    for strategy in ["sync", "threading", "pool", "forking", "reactor"] {
        for (limit, reason, speaks) in cases {
            let serve = serve_with_limits(strategy, limit);
            let addr = tcp_addr(&serve);
            let stream = if speaks {
                echoing_from("127.0.0.1", addr).unwrap()
            } else {
                TcpStream::connect_timeout(&addr, WAIT).unwrap()
            };
            if limit.starts_with("max_connection_duration") {
                // Busy all along: a line every 100 ms (bounded: at most 50) until the close.
                let mut writer = stream.try_clone().unwrap();
                std::thread::spawn(move || {
                    for _ in 0..50 {
                        if writer.write_all(b"busy\n").is_err() {
                            return;
                        }
                        std::thread::sleep(Duration::from_millis(100));
                    }
                });
            }
            assert!(closed_or_drained(stream), "{strategy}, {limit}: not closed");
            assert!(
                logged(&serve, reason),
                "{strategy}, {limit}: no {reason:?} line:\n{}",
                serve.stderr()
            );
        }
    }
}

/// Read until the server closes (whatever it echoes first); false if it never does.
fn closed_or_drained(mut stream: TcpStream) -> bool {
    use std::io::Read;
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return true,
            Ok(_) => continue,
        }
    }
}

/// On a datagram server, accept_rate counts datagrams per source, and deny drops them.
#[test]
fn datagram_servers_keep_the_rate_and_the_lists() {
    for strategy in ["threading", "forking", "pool", "reactor"] {
        let extra = "[server.limits]\naccept_rate = 0.1\naccept_burst = 2\ndeny = [\"127.0.0.2\"]";
        let serve = ServeProcess::start(&config(&[(
            "u",
            "udp://127.0.0.1:0",
            "echo",
            strategy,
            extra,
        )]));
        let Endpoint::Udp(addr) = serve.endpoint("u").clone() else {
            unreachable!()
        };
        let client = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        client
            .set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let mut answered = 0;
        for n in 0..4u8 {
            client.send_to(&[n], addr).unwrap();
            let mut buf = [0u8; 8];
            if client.recv(&mut buf).is_ok() {
                answered += 1;
            }
        }
        assert_eq!(answered, 2, "{strategy}: the burst is 2");
        assert!(
            logged(&serve, "refused a datagram from 127.0.0.1:"),
            "{strategy}"
        );
        let denied = std::net::UdpSocket::bind("127.0.0.2:0").unwrap();
        denied
            .set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        denied.send_to(b"x", addr).unwrap();
        assert!(
            denied.recv(&mut [0u8; 8]).is_err(),
            "{strategy}: a denied datagram was answered"
        );
        assert!(
            logged(&serve, "refused a datagram from 127.0.0.2:"),
            "{strategy}"
        );
    }
}

/// `max_buffered_input` bounds what all connections hold together in incomplete frames: clients
/// each holding most of a search frame (each within the per-connection bound) cannot hold more
/// than the budget; the biggest holder is closed with its reason, the others go on.
#[test]
fn max_buffered_input_closes_the_biggest_holder() {
    use std::io::{Read, Write};
    // Two hold 300 000 bytes each; the third passes the budget while it holds more than either.
    const HELD: [usize; 3] = [300_000, 300_000, 500_000];
    for strategy in ["threading", "pool", "reactor"] {
        let extra = "[server.limits]\nmax_buffered_input = 1000000";
        let serve = ServeProcess::start(&config(&[(
            "s",
            "tcp://127.0.0.1:0",
            "search",
            strategy,
            extra,
        )]));
        let Endpoint::Tcp(addr) = serve.endpoint("s").clone() else {
            unreachable!()
        };
        let header = format!(
            r#"{{"byteorder": "little", "content-type": "text/json", "content-encoding": "utf-8", "content-length": {}}}"#,
            800_000
        );
        let frame_start = [&(header.len() as u16).to_be_bytes()[..], header.as_bytes()].concat();
        let mut holders: Vec<TcpStream> = Vec::new();
        for held in HELD {
            let mut stream = TcpStream::connect_timeout(&addr, WAIT).unwrap();
            stream.write_all(&frame_start).unwrap();
            // The write may fail once the server closes the third under it.
            let _ = stream.write_all(&vec![b' '; held]);
            holders.push(stream);
        }
        assert!(
            logged(&serve, "limit: max_buffered_input (1000000 bytes"),
            "{strategy}: {}",
            serve.stderr()
        );
        // The biggest (the last) was closed; the first two still hold their frames.
        let mut last = holders.pop().unwrap();
        last.set_read_timeout(Some(WAIT)).unwrap();
        assert!(
            matches!(last.read(&mut [0u8; 64]), Ok(0) | Err(_)),
            "{strategy}"
        );
        for mut stream in holders {
            stream
                .set_read_timeout(Some(Duration::from_millis(200)))
                .unwrap();
            let err = stream.read(&mut [0u8; 64]).unwrap_err();
            assert!(
                matches!(
                    err.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ),
                "{strategy}: a holder within the budget was closed: {err}"
            );
        }
    }
}
