//! Memory goes back to the kernel once a peak of connections has passed (the framework's `memory`
//! module): a server that held a few hundred connections says it gave memory back once they are
//! gone, under threading, forking and the reactor; under threading, where each connection costs a
//! thread and its buffers, its resident memory also comes most of the way back down.

mod common;

use std::fs;
use std::time::Duration;

use common::{config, eventually, Client, ServeProcess, WAIT};

/// Connections held at the peak: past the framework's `GIVE_BACK_MIN_PEAK` (64).
const PEAK: usize = 200;

/// The log line of a give-back, at debug level.
const GAVE_BACK: &str = "gave free memory back to the kernel";

/// The memory module's debug lines on top of the usual info.
const LOG: (&str, &str) = ("RUST_LOG", "info,sockserv_framework::memory=debug");

/// How long the memory may take to come back: the threading server's last give-back comes a
/// second after the others (generous: a loaded machine is slow to end hundreds of threads).
const SETTLE_WAIT: Duration = Duration::from_secs(30);

/// VmRSS of `pid`, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Serve echo under `strategy`, hold `PEAK` connections (each served once), let them all go, and
/// wait for the give-back line. Returns the server and its RSS before and while they were held.
fn a_fall_from_a_peak(strategy: &str, extra: &str) -> (ServeProcess, u64, u64) {
    let rows = [("e", "tcp://127.0.0.1:0", "echo", strategy, extra)];
    let serve = ServeProcess::start_limited(&config(&rows), 4096, &[LOG]);
    let endpoint = serve.endpoint("e").clone();
    let mut warm = Client::connect(&endpoint).unwrap();
    assert_eq!(warm.echo(b"warm").unwrap(), b"warm");
    drop(warm);
    let before = rss_kib(serve.pid());
    let held: Vec<Client> = (0..PEAK)
        .map(|n| {
            let mut client = Client::connect(&endpoint).unwrap();
            let message = format!("client {n}");
            assert_eq!(client.echo(message.as_bytes()).unwrap(), message.as_bytes());
            client
        })
        .collect();
    let at_peak = rss_kib(serve.pid());
    drop(held);
    assert!(
        eventually(WAIT, || serve.stderr().contains(GAVE_BACK)),
        "{strategy}: no give-back after {PEAK} connections closed:\n{}",
        serve.stderr()
    );
    (serve, before, at_peak)
}

#[test]
fn threading_gives_back_what_its_threads_held() {
    let (serve, before, at_peak) = a_fall_from_a_peak("threading", "");
    assert!(
        eventually(SETTLE_WAIT, || serve.stderr().contains("settled")),
        "no give-back once the threads had gone:\n{}",
        serve.stderr()
    );
    // Each thread held a stack and a read buffer: most of that growth goes back. (Before the
    // give-backs, glibc kept it all in its per-thread arenas.)
    let grown = at_peak.saturating_sub(before);
    assert!(grown > 1024, "{PEAK} threads grew RSS by {grown} KiB only");
    let back = eventually(SETTLE_WAIT, || rss_kib(serve.pid()) <= before + grown / 2);
    assert!(
        back,
        "RSS {before} KiB before, {at_peak} KiB at the peak, {} KiB after",
        rss_kib(serve.pid())
    );
}

#[test]
fn the_reactor_gives_back_after_a_peak() {
    a_fall_from_a_peak("reactor", "");
}

#[test]
fn a_forking_server_gives_back_after_reaping_a_peak_of_children() {
    a_fall_from_a_peak("forking", "max_children = 400");
}
