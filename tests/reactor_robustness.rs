//! The reactor survives its handlers, from the outside: a session that panics closes its own
//! connection, and both event loops go on serving their other connections and every new one. The
//! handler is the `shout` example plugin (built here with cargo), whose `panic_on` option panics on
//! a chosen input; the server runs it under `strategy = "reactor"` with two loops, so connections
//! are dealt to the loops in turn.
//!
//! A plugin's panic is caught at the C ABI (by the SDK's glue) and raised again on the host's side,
//! so it reaches the reactor's own catch exactly as a built-in session's panic does; that catch is
//! also tested beside the reactor (`framework/src/strategy/reactor/tests`), for every callback.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use common::{config, eventually, Client, ServeProcess, SOCKSERV};

/// Build the shout example once per test run (a no-op when up to date); returns its library, built
/// for the binary's profile beside it.
fn shout_library() -> &'static Path {
    static LIBRARY: OnceLock<PathBuf> = OnceLock::new();
    LIBRARY.get_or_init(|| {
        let target = Path::new(SOCKSERV).parent().unwrap();
        let release = (target.file_name().unwrap() == "release").then_some("--release");
        let status = Command::new(env!("CARGO"))
            .args(["build", "-p", "sockserv-example-shout"])
            .args(release)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("cannot run cargo");
        assert!(
            status.success(),
            "cargo build -p sockserv-example-shout failed"
        );
        target.join("libsockserv_example_shout.so")
    })
}

/// A `shout` server named `loops` under the reactor with two loops, panicking on `boom`.
fn serve_shout() -> ServeProcess {
    let plugin = format!("[[plugin]]\npath = \"{}\"\n\n", shout_library().display());
    let extra = "loops = 2\n[server.options]\npanic_on = \"boom\"";
    ServeProcess::start(
        &(plugin + &config(&[("loops", "tcp://127.0.0.1:0", "shout", "reactor", extra)])),
    )
}

/// The client's own address, as the server's log names the peer.
fn local_address(client: &Client) -> String {
    match client {
        Client::Tcp(stream) => stream.local_addr().unwrap().to_string(),
        _ => unreachable!("the server listens on TCP"),
    }
}

/// Sends what makes the session panic; the server closes the connection (a reset reads as empty)
/// without answering.
fn panic_the_session(client: &mut Client) {
    let _ = client.send(b"boom\n");
    let _ = client.shutdown_write();
    assert_eq!(
        client.read_to_end().unwrap_or_default(),
        b"",
        "a panic was answered"
    );
}

#[test]
fn a_session_panic_closes_one_connection_and_both_loops_serve_on() {
    let mut serve = serve_shout();
    let endpoint = serve.endpoint("loops").clone();
    // Four idle connections, two on each loop, answered once each.
    let mut idle: Vec<Client> = (0..4)
        .map(|_| Client::connect(&endpoint).unwrap())
        .collect();
    for (n, client) in idle.iter_mut().enumerate() {
        let reply = client.echo(format!("idle {n}\n").as_bytes()).unwrap();
        assert_eq!(reply, format!("IDLE {n}\n").as_bytes());
    }
    // The next two connections go one to each loop; each panics its session.
    let mut doomed_peers = Vec::new();
    for _ in 0..2 {
        let mut doomed = Client::connect(&endpoint).unwrap();
        doomed_peers.push(local_address(&doomed));
        panic_the_session(&mut doomed);
    }
    for (n, client) in idle.iter_mut().enumerate() {
        let reply = client.echo(format!("still {n}\n").as_bytes()).unwrap();
        assert_eq!(
            reply,
            format!("STILL {n}\n").as_bytes(),
            "idle connection {n}"
        );
    }
    // 100 more clients, four at a time, each answered: 50 on each loop.
    for batch in 0..25 {
        let mut clients: Vec<Client> = (0..4)
            .map(|_| Client::connect(&endpoint).unwrap())
            .collect();
        for (n, client) in clients.iter_mut().enumerate() {
            let message = format!("client {batch}.{n}\n");
            let reply = client.echo(message.as_bytes()).unwrap();
            assert_eq!(reply, message.to_uppercase().as_bytes());
        }
    }
    // Each panic is logged with the server's name, the connection's id and the peer.
    let logged = eventually(Duration::from_secs(5), || {
        let stderr = serve.stderr();
        doomed_peers.iter().all(|peer| {
            let tail =
                format!(": request from {peer}: on_data panicked: asked to panic on \"boom\"");
            stderr.lines().any(|line| {
                line.split_once("loops: c")
                    .and_then(|(_, rest)| rest.strip_suffix(&tail))
                    .is_some_and(|id| id.parse::<u64>().is_ok())
            })
        })
    });
    assert!(logged, "{}", serve.stderr());
    // No loop ended: none failed its poll, panicked, or left a connection unserved.
    let stderr = serve.stderr();
    for sign in [
        "the loop ends",
        "-loop-0: panicked",
        "-loop-1: panicked",
        "closed unserved",
    ] {
        assert!(!stderr.contains(sign), "{sign:?} in {stderr}");
    }
    assert!(serve.terminate().success(), "{}", serve.stderr());
}
