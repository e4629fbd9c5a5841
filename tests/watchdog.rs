//! systemd's watchdog from the outside: with `WATCHDOG_USEC` set, `WATCHDOG=1` arrives on the
//! `NOTIFY_SOCKET` every half of it while every serving loop turns — idle servers of every
//! strategy included, and a forking server's process, which beats through a pipe — and stops
//! while a loop is wedged (here: its process stopped with SIGSTOP), with the wedged server named
//! in the log; it resumes once the loop turns again.

mod common;

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use common::{config, descendants_stat, ServeProcess, WAIT};

/// `WATCHDOG_USEC`: short, so the test is quick; long enough for two slow shared cores.
const WATCHDOG: Duration = Duration::from_millis(800);

/// The notifications that arrive within `limit`.
fn collect(manager: &UnixDatagram, limit: Duration) -> Vec<String> {
    let deadline = Instant::now() + limit;
    let mut got = Vec::new();
    let mut buf = [0u8; 512];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return got;
        }
        manager.set_read_timeout(Some(left)).unwrap();
        match manager.recv(&mut buf) {
            Ok(n) => got.push(String::from_utf8_lossy(&buf[..n]).into_owned()),
            Err(_) => return got,
        }
    }
}

fn keep_alives(messages: &[String]) -> usize {
    messages
        .iter()
        .filter(|m| m.as_str() == "WATCHDOG=1")
        .count()
}

#[test]
fn keep_alives_come_while_every_loop_turns_and_stop_when_one_is_wedged() {
    let dir = common::temp_dir();
    let notify_path = dir.path().join("notify.sock");
    let manager = UnixDatagram::bind(&notify_path).unwrap();
    let rows = [
        ("threading", "tcp://127.0.0.1:0", "echo", "threading", ""),
        ("sync", "tcp://127.0.0.1:0", "echo", "sync", ""),
        (
            "reactor",
            "tcp://127.0.0.1:0",
            "echo",
            "reactor",
            "loops = 2",
        ),
        ("forking", "tcp://127.0.0.1:0", "echo", "forking", ""),
    ];
    let usec = WATCHDOG.as_micros().to_string();
    let mut serve = ServeProcess::start_limited(
        &config(&rows),
        1024,
        &[
            ("NOTIFY_SOCKET", notify_path.to_str().unwrap()),
            ("WATCHDOG_USEC", &usec),
        ],
    );
    // Idle: every loop wakes to beat, so the keep-alives keep coming (one every 400 ms).
    let first = collect(&manager, WATCHDOG * 4);
    assert!(first[0].starts_with("READY=1"), "{first:?}");
    assert!(keep_alives(&first) >= 3, "{first:?}");

    let forking = descendants_stat(serve.pid())
        .into_iter()
        .find(|s| s.ppid == serve.pid())
        .expect("the forking server's process")
        .pid;
    common::signal(forking, "STOP");
    // The keep-alives already due may still come; then none while the loop is stopped.
    let _ = collect(&manager, WATCHDOG);
    let stopped = collect(&manager, WATCHDOG * 3);
    common::signal(forking, "CONT");
    assert_eq!(keep_alives(&stopped), 0, "{stopped:?}");
    assert!(
        serve.wait_stderr("WATCHDOG=1 withheld", 1, WAIT),
        "{}",
        serve.stderr()
    );
    assert!(
        serve.stderr().contains("forking (its process last beat"),
        "{}",
        serve.stderr()
    );
    let resumed = collect(&manager, WATCHDOG * 3);
    assert!(keep_alives(&resumed) >= 2, "{resumed:?}");
    assert!(serve.terminate().success(), "{}", serve.stderr());
}

#[test]
fn a_watchdog_for_another_process_is_not_ours() {
    let dir = common::temp_dir();
    let notify_path = dir.path().join("notify.sock");
    let manager = UnixDatagram::bind(&notify_path).unwrap();
    let rows = [("e", "tcp://127.0.0.1:0", "echo", "threading", "")];
    let mut serve = ServeProcess::start_limited(
        &config(&rows),
        1024,
        &[
            ("NOTIFY_SOCKET", notify_path.to_str().unwrap()),
            ("WATCHDOG_USEC", "100000"),
            ("WATCHDOG_PID", "1"),
        ],
    );
    let messages = collect(&manager, Duration::from_millis(600));
    assert!(messages[0].starts_with("READY=1"), "{messages:?}");
    assert_eq!(keep_alives(&messages), 0, "{messages:?}");
    assert!(serve.terminate().success(), "{}", serve.stderr());
}
