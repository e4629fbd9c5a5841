//! The request/response modes against throwaway in-process servers on 127.0.0.1:0: a std echo server
//! (a thread per connection) and a UDP echo loop, each bounded in time, plus a search server that
//! answers every frame with the expected reply. Each run lasts about 0.2 s.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use clap::Parser;

use crate::args::Args;
use crate::search;

/// No test server outlives this, even if a test forgets to stop it.
const SERVER_LIFETIME: Duration = Duration::from_secs(10);

/// A server thread that stops when dropped.
struct TestServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Serves each TCP connection with `serve` on a thread of its own.
fn tcp_server(serve: fn(TcpStream) -> io::Result<()>) -> TestServer {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let stopped = Arc::clone(&stop);
    thread::spawn(move || {
        let until = Instant::now() + SERVER_LIFETIME;
        while !stopped.load(Ordering::Relaxed) && Instant::now() < until {
            match listener.accept() {
                Ok((conn, _)) => {
                    conn.set_nonblocking(false).unwrap();
                    conn.set_read_timeout(Some(SERVER_LIFETIME)).unwrap();
                    conn.set_nodelay(true).unwrap();
                    thread::spawn(move || serve(conn));
                }
                Err(_) => thread::sleep(Duration::from_millis(2)),
            }
        }
    });
    TestServer { addr, stop }
}

fn echo(mut conn: TcpStream) -> io::Result<()> {
    let mut buf = [0; 4096];
    loop {
        let n = conn.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        conn.write_all(&buf[..n])?;
    }
}

/// Answers every search frame with the one reply a correct server gives for "morpheus".
fn searcher(mut conn: TcpStream) -> io::Result<()> {
    let reply = search::frame(
        "{\"result\": \"Follow the white rabbit. 🐰\"}".as_bytes(),
        "text/json",
        "utf-8",
    );
    let mut buf = Vec::new();
    let mut chunk = [0; 4096];
    loop {
        while let Some(len) = search::reply_len(&buf).unwrap() {
            if buf.len() < len {
                break;
            }
            buf.drain(..len);
            conn.write_all(&reply)?;
        }
        let n = conn.read(&mut chunk)?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn udp_echo_server() -> TestServer {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(20)))
        .unwrap();
    let addr = socket.local_addr().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let stopped = Arc::clone(&stop);
    thread::spawn(move || {
        let until = Instant::now() + SERVER_LIFETIME;
        let mut buf = [0; 65536];
        while !stopped.load(Ordering::Relaxed) && Instant::now() < until {
            if let Ok((n, peer)) = socket.recv_from(&mut buf) {
                let _ = socket.send_to(&buf[..n], peer);
            }
        }
    });
    TestServer { addr, stop }
}

fn run(args: &[&str]) -> crate::Outcome {
    let argv = ["loadgen"].iter().chain(args).copied();
    let plan = Args::try_parse_from(argv).unwrap().plan().unwrap();
    let outcome = crate::run(&plan).unwrap();
    let report = crate::report::Report::new(&plan, &outcome);
    assert!(report.json().starts_with('{'));
    assert!(report.text().contains("p99.9"));
    outcome
}

fn assert_clean(outcome: &crate::Outcome) {
    let t = &outcome.tally;
    assert!(t.requests > 0, "no requests completed");
    assert_eq!(t.errors, 0, "first error: {:?}", t.first_error);
    assert_eq!(t.bytes_in, t.bytes_out);
    assert_eq!(t.latency.count(), t.requests);
    assert!(t.latency.quantile(0.5) > 0);
}

#[test]
fn echo_over_tcp_for_a_fifth_of_a_second() {
    let server = tcp_server(echo);
    let target = format!("tcp://{}", server.addr);
    let outcome = run(&[
        "echo",
        &target,
        "-c",
        "2",
        "--duration",
        "0.2",
        "--warmup",
        "0.05",
    ]);
    assert_clean(&outcome);
    assert_eq!(outcome.tally.bytes_out, outcome.tally.requests * 64);
}

#[test]
fn echo_pipelined_and_reconnecting() {
    let server = tcp_server(echo);
    let target = format!("tcp://{}", server.addr);
    assert_clean(&run(&[
        "echo",
        &target,
        "-c",
        "2",
        "--depth",
        "8",
        "--size",
        "300",
        "--duration",
        "0.2",
    ]));
    assert_clean(&run(&["echo", &target, "--reconnect", "--duration", "0.2"]));
}

#[test]
fn request_count_bounds_the_run() {
    let server = tcp_server(echo);
    let target = format!("tcp://{}", server.addr);
    let outcome = run(&[
        "echo",
        &target,
        "-c",
        "3",
        "--depth",
        "4",
        "--requests",
        "500",
    ]);
    assert_clean(&outcome);
    assert_eq!(outcome.tally.requests, 500);
}

#[test]
fn echo_over_udp() {
    let server = udp_echo_server();
    let target = format!("udp://{}", server.addr);
    assert_clean(&run(&["echo", &target, "-c", "2", "--duration", "0.2"]));
}

#[test]
fn search_requests_are_checked() {
    let server = tcp_server(searcher);
    let target = format!("tcp://{}", server.addr);
    let outcome = run(&[
        "search",
        &target,
        "-c",
        "2",
        "--depth",
        "3",
        "--duration",
        "0.2",
    ]);
    let t = &outcome.tally;
    assert!(t.requests > 0);
    assert_eq!(t.errors, 0, "{:?}", t.first_error);
}

#[test]
fn a_server_that_echoes_wrong_bytes_is_caught() {
    fn corrupt(mut conn: TcpStream) -> io::Result<()> {
        let mut buf = [0; 64];
        conn.read_exact(&mut buf)?;
        buf[0] ^= 1;
        conn.write_all(&buf)
    }
    let server = tcp_server(corrupt);
    let target = format!("tcp://{}", server.addr);
    let argv = ["loadgen", "echo", &target, "--duration", "0.1"];
    let plan = Args::try_parse_from(argv).unwrap().plan().unwrap();
    let outcome = crate::run(&plan).unwrap();
    assert_eq!(outcome.tally.requests, 0);
    assert!(outcome.tally.errors > 0);
    let first = outcome.tally.first_error.as_ref().unwrap().1.as_str();
    assert!(first.contains("differs"), "{first}");
}

#[test]
fn nobody_listening_fails_fast() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let argv = [
        "loadgen",
        "echo",
        &format!("tcp://{port}"),
        "--duration",
        "5",
    ];
    let plan = Args::try_parse_from(argv).unwrap().plan().unwrap();
    let started = Instant::now();
    let err = crate::run(&plan).unwrap_err().to_string();
    assert!(err.contains("cannot connect"), "{err}");
    // Well before the 5 s the run was given (generous: a loaded machine is slow).
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
}

/// A server with a per-source limit of `-c` must never see one connection more: the probe that
/// checks somebody listens is the first worker's connection, not an extra one.
#[test]
fn persistent_workers_open_exactly_c_connections() {
    static ACCEPTED: AtomicUsize = AtomicUsize::new(0);
    fn counted_echo(conn: TcpStream) -> io::Result<()> {
        ACCEPTED.fetch_add(1, Ordering::Relaxed);
        echo(conn)
    }
    let server = tcp_server(counted_echo);
    let target = format!("tcp://{}", server.addr);
    assert_clean(&run(&["echo", &target, "-c", "3", "--duration", "0.2"]));
    assert_eq!(ACCEPTED.load(Ordering::Relaxed), 3);
}
