//! What bounds a server when clients take everything it has: here, running out of file
//! descriptors never stops, spins or floods a server.

mod common;

use std::net::TcpStream;

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
