//! The chat mode's token, and a whole fan-out run against a toy chat server on 127.0.0.1:0 that
//! prefixes every line like sockserv's and sends it to every other member.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use clap::Parser;

use super::*;
use crate::args::Args;

#[test]
fn message_is_padded_and_its_token_found_behind_a_prefix() {
    let mut out = Vec::new();
    message(3, 17, 123_456, 64, &mut out);
    assert_eq!(out.len(), 64);
    assert!(out.starts_with(b"~lg:3:17:123456~xx"));
    assert!(out.ends_with(b"x\n"));
    let received = [b"1122 10:15:00 From 127.0.0.1:5000. msg=".as_slice(), &out].concat();
    assert_eq!(parse(&received), Some((3, 17, 123_456)));
}

#[test]
fn short_size_keeps_the_whole_token() {
    let mut out = Vec::new();
    message(0, 1, 2, 1, &mut out);
    assert_eq!(out, b"~lg:0:1:2~\n");
}

#[test]
fn parse_ignores_other_lines() {
    for line in [
        &b"*** 127.0.0.1:5000 joined lobby\n"[..],
        b"~lgp~\n",
        b"~lg:1:2~\n",
        b"~lg:a:2:3~\n",
        b"~lg:1:2:3:4~\n",
        b"~lg:1:2:3",
    ] {
        assert_eq!(parse(line), None, "{}", String::from_utf8_lossy(line));
    }
}

/// No toy server outlives this.
const SERVER_LIFETIME: Duration = Duration::from_secs(10);

type Members = Arc<Mutex<Vec<(usize, TcpStream)>>>;

/// A chat room: each line goes to every other member behind a `From ip:port. msg=` prefix; members
/// are told when someone joins, as sockserv's server does.
fn toy_chat_server(stop: Arc<AtomicBool>) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    let members: Members = Arc::default();
    thread::spawn(move || {
        let until = Instant::now() + SERVER_LIFETIME;
        let mut next_id = 0;
        while !stop.load(Ordering::Relaxed) && Instant::now() < until {
            let Ok((conn, peer)) = listener.accept() else {
                thread::sleep(Duration::from_millis(2));
                continue;
            };
            conn.set_nonblocking(false).unwrap();
            conn.set_read_timeout(Some(SERVER_LIFETIME)).unwrap();
            let id = next_id;
            next_id += 1;
            broadcast(
                &members,
                id,
                format!("*** {peer} joined lobby\n").as_bytes(),
            );
            members
                .lock()
                .unwrap()
                .push((id, conn.try_clone().unwrap()));
            let members = Arc::clone(&members);
            thread::spawn(move || {
                let mut lines = BufReader::new(conn);
                let mut line = Vec::new();
                while lines.read_until(b'\n', &mut line).unwrap_or(0) > 0 {
                    let prefix = format!("0101 00:00:00 From {peer}. msg=");
                    broadcast(&members, id, &[prefix.as_bytes(), &line].concat());
                    line.clear();
                }
                members.lock().unwrap().retain(|(m, _)| *m != id);
            });
        }
    });
    addr
}

fn broadcast(members: &Members, from: usize, line: &[u8]) {
    for (id, conn) in members.lock().unwrap().iter_mut() {
        if *id != from {
            let _ = conn.write_all(line);
        }
    }
}

#[test]
fn fan_out_to_listeners_measures_every_delivery() {
    let stop = Arc::new(AtomicBool::new(false));
    let addr = toy_chat_server(Arc::clone(&stop));
    let target = format!("tcp://{addr}");
    let argv = [
        "loadgen",
        "chat",
        &target,
        "-c",
        "4",
        "--senders",
        "2",
        "--depth",
        "4",
        "--duration",
        "0.3",
        "--warmup",
        "0.05",
    ];
    let plan = Args::try_parse_from(argv).unwrap().plan().unwrap();
    let outcome = crate::run(&plan).unwrap();
    stop.store(true, Ordering::Relaxed);
    let t = &outcome.tally;
    assert_eq!(t.errors, 0, "{:?}", t.first_error);
    let chat = outcome.chat.unwrap();
    assert!(chat.sent > 0);
    // Every measured message reaches all 4 listeners; the last few may still be on their way.
    assert!(
        t.requests <= chat.sent * 4 + 4 * 4 * 2,
        "{} vs {}",
        t.requests,
        chat.sent
    );
    assert!(
        t.requests + 4 * 4 * 2 >= chat.sent * 4,
        "{} vs {}",
        t.requests,
        chat.sent
    );
    assert_eq!(t.latency.count(), t.requests);
    let report = crate::report::Report::new(&plan, &outcome);
    assert!(report.text().contains("delivered"));
    assert!(report.json().contains("\"sent\": "));
}

#[test]
fn count_bound_chat_run_delivers_its_messages() {
    let stop = Arc::new(AtomicBool::new(false));
    let addr = toy_chat_server(Arc::clone(&stop));
    let target = format!("tcp://{addr}");
    let argv = [
        "loadgen",
        "chat",
        &target,
        "-c",
        "3",
        "--requests",
        "200",
        "--depth",
        "8",
    ];
    let plan = Args::try_parse_from(argv).unwrap().plan().unwrap();
    let outcome = crate::run(&plan).unwrap();
    stop.store(true, Ordering::Relaxed);
    assert_eq!(outcome.chat.unwrap().sent, 200);
    assert_eq!(outcome.tally.requests, 600);
    assert_eq!(outcome.tally.errors, 0, "{:?}", outcome.tally.first_error);
}
