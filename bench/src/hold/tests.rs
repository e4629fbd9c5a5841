//! The hold mode against toy servers on 127.0.0.1:0, each bounded in time: one that echoes and keeps
//! every connection, one that refuses every third connection and closes the others after a short
//! idle spell, and one that records its peers' addresses. Each test takes well under a second.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use clap::Parser;

use super::*;
use crate::args::Args;

/// No toy server or its connections outlive this.
const SERVER_LIFETIME: Duration = Duration::from_secs(10);

fn plan(args: &[&str]) -> Plan {
    let argv = std::iter::once("loadgen").chain(args.iter().copied());
    Args::try_parse_from(argv).unwrap().plan().unwrap()
}

/// Accepts up to `count` connections and hands each, with its number, to `serve` on a thread.
fn toy_server(count: usize, serve: fn(usize, TcpStream)) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        for (n, conn) in listener.incoming().take(count).enumerate() {
            let Ok(conn) = conn else { return };
            conn.set_read_timeout(Some(SERVER_LIFETIME)).unwrap();
            thread::spawn(move || serve(n, conn));
        }
    });
    addr
}

/// Echoes what comes, until the client closes or the lifetime ends.
fn echo_forever(_: usize, mut conn: TcpStream) {
    let mut buf = [0; 4096];
    while let Ok(n) = conn.read(&mut buf) {
        if n == 0 || conn.write_all(&buf[..n]).is_err() {
            return;
        }
    }
}

/// Every third connection is closed at once (a refusal); the others get their 64 B ping echoed,
/// then are closed after 200 ms of silence (an idle timeout).
fn refuse_some_time_out_others(n: usize, mut conn: TcpStream) {
    if n % 3 == 2 {
        return;
    }
    let mut ping = [0; 64];
    if conn.read_exact(&mut ping).is_ok() && conn.write_all(&ping).is_ok() {
        thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn holds_every_connection_after_its_ping() {
    let addr = toy_server(20, echo_forever).to_string();
    let p = plan(&[
        "hold",
        &format!("tcp://{addr}"),
        "-c",
        "20",
        "--depth",
        "4",
        "--ping",
        "--duration",
        "0.3",
    ]);
    let o = run(&p).unwrap();
    assert_eq!((o.opened, o.answered, o.open_at_end), (20, 20, 20));
    assert_eq!(
        (o.refused.count(), o.closed.count(), o.connect_errors),
        (0, 0, 0)
    );
    assert!(o.held >= Duration::from_millis(300), "{:?}", o.held);
    let json = HoldReport::new(&p, &o).json();
    assert!(json.contains("\"open_at_end\": 20"), "{json}");
    assert!(json.contains("\"closed_idle_max_s\": null"), "{json}");
}

#[test]
fn tells_refusals_from_idle_closes_and_ends_when_all_are_gone() {
    let addr = toy_server(9, refuse_some_time_out_others).to_string();
    let p = plan(&[
        "hold",
        &format!("tcp://{addr}"),
        "-c",
        "9",
        "--ping",
        "--duration",
        "5",
    ]);
    let o = run(&p).unwrap();
    assert_eq!(o.opened, 9);
    assert_eq!((o.refused.count(), o.closed.count(), o.answered), (3, 6, 6));
    assert_eq!(o.open_at_end, 0);
    let (min, max) = (o.closed.min() as f64 / 1e9, o.closed.max() as f64 / 1e9);
    // The toy server closes after 0.2 s; the bounds only need to tell "closed as idle" from "held
    // to the end of the 5 s run", and stay wide because tests share two cores with builds.
    assert!(min >= 0.19 && max < 4.0, "idle for {min}..{max} s");
    assert!(o.held < Duration::from_millis(4500), "held {:?}", o.held);
    let text = HoldReport::new(&p, &o).text();
    assert!(text.contains("refused       3 closed"), "{text}");
}

#[test]
fn connects_from_the_bound_address() {
    static PEERS: Mutex<Vec<IpAddr>> = Mutex::new(Vec::new());
    fn record(_: usize, conn: TcpStream) {
        PEERS.lock().unwrap().push(conn.peer_addr().unwrap().ip());
        echo_forever(0, conn);
    }
    let addr = toy_server(2, record).to_string();
    let p = plan(&[
        "hold",
        &format!("tcp://{addr}"),
        "-c",
        "2",
        "--bind",
        "127.0.0.2",
        "--ping",
        "--duration",
        "0.1",
    ]);
    assert_eq!(run(&p).unwrap().answered, 2);
    let peers = PEERS.lock().unwrap().clone();
    assert_eq!(peers, vec![IpAddr::from([127, 0, 0, 2]); 2]);
}

#[test]
fn fails_fast_when_nobody_listens() {
    let addr = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let started = Instant::now();
    let p = plan(&[
        "hold",
        &format!("tcp://{addr}"),
        "-c",
        "5",
        "--duration",
        "5",
    ]);
    let err = run(&p).unwrap_err().to_string();
    assert!(err.contains("cannot connect"), "{err}");
    // Well before the 5 s it was asked to hold for.
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[test]
fn asks_for_descriptors_it_cannot_have() {
    let limit = soft_descriptor_limit().expect("Linux has /proc/self/limits");
    let err = check_descriptors(limit as usize).unwrap_err().to_string();
    assert!(err.contains("ulimit -n"), "{err}");
    assert!(check_descriptors(1).is_ok());
}

/// A Unix stream target is held the same way; shared state keeps the listener's thread simple.
#[test]
fn holds_unix_connections() {
    let dir = std::env::temp_dir().join(format!("loadgen-hold-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("echo.sock");
    let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    let held = Arc::new(Mutex::new(Vec::new()));
    let keep = Arc::clone(&held);
    thread::spawn(move || {
        for conn in listener.incoming().take(3).flatten() {
            keep.lock().unwrap().push(conn);
        }
    });
    let p = plan(&[
        "hold",
        &format!("unix://{}", path.display()),
        "-c",
        "3",
        "--duration",
        "0.1",
    ]);
    let o = run(&p).unwrap();
    assert_eq!((o.opened, o.open_at_end, o.refused.count()), (3, 3, 0));
    std::fs::remove_dir_all(&dir).unwrap();
}
