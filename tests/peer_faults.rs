//! What peers do wrong is logged as theirs, at one level under every strategy and at a bounded
//! rate: a flood of resets or oversized datagrams gives no error line and at most
//! `LINES_PER_WINDOW` lines about them per second.

mod common;

use std::net::{TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use common::{config, eventually, Endpoint, ServeProcess};
use sockserv_framework::{LINES_PER_WINDOW, PEER_LOG_WINDOW};

/// How many faults each test causes.
const FLOOD: usize = 300;

/// The lines about peer faults that a flood of `FLOOD` may write in `elapsed`: one window's worth
/// per window begun, plus one for a window begun by the serving process's first line.
fn allowed(elapsed: Duration) -> usize {
    let windows = (elapsed.as_secs_f64() / PEER_LOG_WINDOW.as_secs_f64()).ceil() as usize + 1;
    windows * LINES_PER_WINDOW as usize
}

fn peer_lines(stderr: &str, marker: &str) -> usize {
    stderr.lines().filter(|line| line.contains(marker)).count()
}

fn assert_bounded(serve: &ServeProcess, marker: &str, started: Instant, what: &str) {
    // At least one line shows the faults were seen at all.
    assert!(
        eventually(Duration::from_secs(10), || peer_lines(
            &serve.stderr(),
            marker
        ) > 0),
        "{what}: no line about the peers' faults:\n{}",
        serve.stderr()
    );
    let stderr = serve.stderr();
    let lines = peer_lines(&stderr, marker);
    let bound = allowed(started.elapsed());
    assert!(
        lines <= bound,
        "{what}: {lines} lines, more than {bound}:\n{stderr}"
    );
    let errors: Vec<&str> = stderr.lines().filter(|l| l.contains("ERROR")).collect();
    assert!(
        errors.is_empty(),
        "{what}: error lines for the peer's doing: {errors:#?}"
    );
}

/// Connect, send, and reset the connection (SO_LINGER 0), `FLOOD` times.
fn resets(endpoint: &Endpoint) {
    let Endpoint::Tcp(addr) = endpoint else {
        panic!("TCP expected")
    };
    for _ in 0..FLOOD {
        let stream = TcpStream::connect_timeout(addr, common::WAIT).unwrap();
        let socket = socket2::SockRef::from(&stream);
        socket.set_linger(Some(Duration::ZERO)).unwrap();
        let _ = socket.send(b"reset me");
    }
}

fn resets_are_the_peers_doing(strategy: &str) {
    let rows = [("e", "tcp://127.0.0.1:0", "echo", strategy, "")];
    let serve = ServeProcess::start(&config(&rows));
    let started = Instant::now();
    resets(serve.endpoint("e"));
    // Every reset's line names the peer, whichever way the handler saw it fail.
    assert_bounded(&serve, "request from 127.0.0.1:", started, strategy);
}

macro_rules! resets {
    ($($name:ident: $strategy:literal;)*) => {
        $(
            #[test]
            fn $name() {
                resets_are_the_peers_doing($strategy);
            }
        )*
    };
}

resets! {
    resets_under_sync: "sync";
    resets_under_threading: "threading";
    resets_under_forking: "forking";
    resets_under_pool: "pool";
    resets_under_reactor: "reactor";
}

#[test]
fn oversized_datagrams_are_the_peers_doing() {
    for strategy in ["threading", "forking", "pool", "reactor"] {
        let rows = [(
            "u",
            "udp://127.0.0.1:0",
            "echo",
            strategy,
            "max_packet_size = 16",
        )];
        let serve = ServeProcess::start(&config(&rows));
        let Endpoint::Udp(addr) = serve.endpoint("u").clone() else {
            panic!("UDP expected")
        };
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        let started = Instant::now();
        for _ in 0..FLOOD {
            client.send_to(&[b'x'; 64], addr).unwrap();
        }
        assert_bounded(&serve, "larger than max_packet_size", started, strategy);
    }
}
