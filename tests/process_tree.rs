//! The process tree holds together, and a dead server is never silent: forked request children are
//! requests, not servers (a signal ends them, they exit non-zero when their handler fails), a
//! forking server's process dies with the main process, and the main process exits non-zero as soon
//! as one of its servers dies, at start or later.

mod common;

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use common::{config, descendants_stat, eventually, Client, Endpoint, ServeProcess, WAIT};

/// How long the main process may take to notice a dead server and drain the others.
const NOTICE: Duration = Duration::from_secs(10);

fn tcp_port(endpoint: &Endpoint) -> u16 {
    match endpoint {
        Endpoint::Tcp(addr) => addr.port(),
        other => panic!("not TCP: {other}"),
    }
}

/// The pids two levels below `main`: a forking server's request children.
fn request_children(main: u32) -> Vec<u32> {
    let all = descendants_stat(main);
    let servers: Vec<u32> = all
        .iter()
        .filter(|s| s.ppid == main)
        .map(|s| s.pid)
        .collect();
    all.iter()
        .filter(|s| servers.contains(&s.ppid) && s.state != 'Z')
        .map(|s| s.pid)
        .collect()
}

#[test]
fn sigterm_ends_a_request_child_not_the_server() {
    let rows = [("f", "tcp://127.0.0.1:0", "echo", "forking", "")];
    let mut serve = ServeProcess::start(&config(&rows));
    let endpoint = serve.endpoint("f").clone();
    let mut client = Client::connect(&endpoint).unwrap();
    assert_eq!(client.echo(b"hello").unwrap(), b"hello");
    let children = request_children(serve.pid());
    let [child] = children[..] else {
        panic!("one request child expected, found {children:?}")
    };
    common::signal(child, "TERM");
    // The child dies at once (the server's handler no longer catches SIGTERM there): its client sees
    // the connection end rather than an echo.
    let mut rest = Vec::new();
    let ended = match &mut client {
        Client::Tcp(stream) => stream.read_to_end(&mut rest).map(|_| ()),
        _ => unreachable!(),
    };
    assert!(ended.is_ok() || rest.is_empty(), "{ended:?}");
    assert!(
        eventually(WAIT, || !request_children(serve.pid()).contains(&child)),
        "child {child} still serving after SIGTERM"
    );
    // The server goes on.
    assert_eq!(
        Client::connect(&endpoint).unwrap().echo(b"again").unwrap(),
        b"again"
    );
    assert!(serve.terminate().success(), "{}", serve.stderr());
}

/// A reset is the peer's doing: the child exits 2 (not 0: its request failed) and the serving
/// process logs it at info level, not as an error.
#[test]
fn a_request_child_ended_by_its_peer_exits_2_and_is_not_an_error() {
    let rows = [("f", "tcp://127.0.0.1:0", "echo", "forking", "")];
    let mut serve = ServeProcess::start(&config(&rows));
    let endpoint = serve.endpoint("f").clone();
    {
        // A reset in the middle of a request fails the echo handler's read.
        let mut client = Client::connect(&endpoint).unwrap();
        assert_eq!(client.echo(b"hello").unwrap(), b"hello");
        let Client::Tcp(stream) = &client else {
            unreachable!()
        };
        socket2::SockRef::from(stream)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
        client.send(b"unread").unwrap();
    }
    let reported = || {
        serve.stderr().lines().any(|line| {
            line.contains("INFO")
                && line.contains("the peer ended the request (reset or closed early) (child")
        })
    };
    assert!(eventually(WAIT, reported), "{}", serve.stderr());
    assert!(!serve.stderr().contains("ERROR"), "{}", serve.stderr());
    assert!(serve.terminate().success(), "{}", serve.stderr());
}

#[test]
fn a_forking_server_dies_with_the_main_process() {
    let rows = [
        ("f", "tcp://127.0.0.1:0", "echo", "forking", ""),
        ("t", "tcp://127.0.0.1:0", "echo", "threading", ""),
    ];
    let mut serve = ServeProcess::start(&config(&rows));
    let port = tcp_port(serve.endpoint("f"));
    let mut client = Client::connect(serve.endpoint("f")).unwrap();
    assert_eq!(client.echo(b"hello").unwrap(), b"hello");
    serve.signal("KILL");
    serve
        .wait_exit(WAIT)
        .expect("SIGKILL ends the main process");
    assert!(
        common::leftovers(serve.dir()).is_empty(),
        "a server or request process outlived the main process"
    );
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "still answering"
    );
    // A restart can bind the port again.
    TcpListener::bind(("127.0.0.1", port)).expect("the port is free again");
}

/// A forking server's own process that ends while serving — killed, or ended cleanly by an
/// operator's `kill -TERM` of that pid — is a dead endpoint: the main process names it and exits
/// 1 (with 0, a supervisor's `Restart=on-failure` would leave the service down).
fn a_server_process_that_ends_is_never_silent(signal: &str, said: &str) {
    let rows = [
        ("f", "tcp://127.0.0.1:0", "echo", "forking", ""),
        ("t", "tcp://127.0.0.1:0", "echo", "threading", ""),
    ];
    let mut serve = ServeProcess::start(&config(&rows));
    let main = serve.pid();
    let servers: Vec<u32> = descendants_stat(main)
        .iter()
        .filter(|s| s.ppid == main)
        .map(|s| s.pid)
        .collect();
    let [server] = servers[..] else {
        panic!("one server process expected, found {servers:?}")
    };
    common::signal(server, signal);
    let status = serve.wait_exit(NOTICE);
    let stderr = serve.stderr();
    let status = status.unwrap_or_else(|| panic!("still running with a dead server:\n{stderr}"));
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("server f (process {server}) {said}")),
        "{stderr}"
    );
    assert!(descendants_stat(main).is_empty(), "zombie or orphan left");
}

#[test]
fn the_main_process_exits_non_zero_when_a_server_process_is_killed() {
    a_server_process_that_ends_is_never_silent("KILL", "killed by SIGKILL");
}

#[test]
fn a_server_process_that_ends_cleanly_unasked_is_not_silent() {
    a_server_process_that_ends_is_never_silent("TERM", "exited with status 0 without being asked");
}

/// A reactor that cannot start its loops (descriptor limit) ends the process with a non-zero
/// status and says which server failed, instead of running on with a dead endpoint.
#[test]
fn a_server_that_cannot_start_its_strategy_ends_the_process() {
    let rows = [
        ("r", "tcp://127.0.0.1:0", "echo", "reactor", "loops = 1000"),
        ("t", "tcp://127.0.0.1:0", "echo", "threading", ""),
    ];
    let mut serve = ServeProcess::start_limited(&config(&rows), 256, &[]);
    let status = serve.wait_exit(NOTICE);
    let stderr = serve.stderr();
    let status = status.unwrap_or_else(|| panic!("still running:\n{stderr}"));
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("server \"r\": cannot start its event loops"),
        "{stderr}"
    );
    assert!(stderr.contains("stopping every server"), "{stderr}");
}
