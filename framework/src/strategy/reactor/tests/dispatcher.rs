//! Whole loops, fed connections through the dispatcher as the serving loop feeds them: sessions
//! that panic in each callback close their own connection only, and every loop goes on serving.

use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sockserv_plugin::{Session, SessionContext, SessionInfo, SessionWaker};

use super::super::ReactorDispatcher;
use super::{peer, shared, socket_pair, Recorded};
use crate::request::Shared;
use crate::strategy::Dispatcher;

/// How long a reply may take: a failure bound, never waited out by a passing test.
const WAIT: Duration = Duration::from_secs(10);

/// The peer port whose factory call panics.
const PANICS_IN_NEW_SESSION: u16 = 1;
/// The peer port whose `on_open` panics.
const PANICS_IN_ON_OPEN: u16 = 2;

/// An echo that panics on command: `panic` in `on_data`; `wake` wakes it and panics in `on_wake`;
/// `bye` closes it and panics in `on_close`.
struct Echo {
    waker: Arc<dyn SessionWaker>,
    panic_on_close: bool,
}

impl Session for Echo {
    fn on_data(&mut self, data: &[u8], ctx: &mut SessionContext<'_>) {
        match data {
            b"panic" => panic!("asked to panic in on_data"),
            b"wake" => self.waker.wake(),
            b"bye" => {
                self.panic_on_close = true;
                ctx.close();
            }
            _ => ctx.write(data),
        }
    }

    fn on_wake(&mut self, _ctx: &mut SessionContext<'_>) {
        panic!("asked to panic in on_wake");
    }

    fn on_close(&mut self) {
        if self.panic_on_close {
            panic!("asked to panic in on_close");
        }
    }
}

fn echo_session(info: &SessionInfo<'_>) -> Box<dyn Session> {
    match info.peer.inet().map_or(0, |addr| addr.port() - 40_000) {
        PANICS_IN_NEW_SESSION => panic!("asked to panic in new_session"),
        PANICS_IN_ON_OPEN => Box::new(OpenFails),
        _ => Box::new(Echo {
            waker: Arc::clone(&info.waker),
            panic_on_close: false,
        }),
    }
}

struct OpenFails;

impl Session for OpenFails {
    fn on_open(&mut self, _ctx: &mut SessionContext<'_>) {
        panic!("asked to panic in on_open");
    }

    fn on_data(&mut self, _data: &[u8], _ctx: &mut SessionContext<'_>) {}
}

/// Hand the dispatcher a new connection from peer `port`; returns the client's end.
fn connect(dispatcher: &mut ReactorDispatcher, shared: &Arc<Shared>, port: u16) -> UnixStream {
    let (server, client) = socket_pair();
    client.set_read_timeout(Some(WAIT)).unwrap();
    client.set_write_timeout(Some(WAIT)).unwrap();
    dispatcher.stream(shared, server, peer(port));
    client
}

fn echo(client: &mut UnixStream, message: &[u8]) -> Vec<u8> {
    client.write_all(message).unwrap();
    let mut reply = vec![0; message.len()];
    client.read_exact(&mut reply).unwrap();
    reply
}

/// The client sees its connection end (end of stream, or a reset), not a hang.
fn assert_closed(client: &mut UnixStream, what: &str) {
    let mut rest = Vec::new();
    match client.read_to_end(&mut rest) {
        Ok(_) => assert!(rest.is_empty(), "{what}: {rest:?}"),
        Err(err) if err.kind() == ErrorKind::ConnectionReset => {}
        Err(err) => panic!("{what}: the connection was not closed: {err}"),
    }
}

/// Waits (bounded) until the hooks have recorded `count` failures.
fn recorded(hooks: &Recorded, count: usize) -> Vec<String> {
    let deadline = Instant::now() + WAIT;
    while hooks.lines().len() < count && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    hooks.lines()
}

#[test]
fn panics_in_every_callback_close_one_connection_each_and_both_loops_serve_on() {
    let (shared, hooks) = shared(echo_session);
    let mut dispatcher = ReactorDispatcher::new(&shared, 2).unwrap();
    // Idle connections on both loops (round robin), each answered once.
    let mut idle: Vec<UnixStream> = (10..14)
        .map(|port| connect(&mut dispatcher, &shared, port))
        .collect();
    for client in &mut idle {
        assert_eq!(echo(client, b"hello"), b"hello");
    }
    // Every callback panics once on each loop.
    let mut port = 20;
    for round in 0..2 {
        for special in [PANICS_IN_NEW_SESSION, PANICS_IN_ON_OPEN] {
            let mut doomed = connect(&mut dispatcher, &shared, special);
            assert_closed(&mut doomed, &format!("port {special}, round {round}"));
        }
        for command in ["panic", "wake", "bye"] {
            let mut doomed = connect(&mut dispatcher, &shared, port);
            port += 1;
            doomed.write_all(command.as_bytes()).unwrap();
            assert_closed(&mut doomed, command);
        }
    }
    let lines = recorded(&hooks, 10);
    for hook in ["new_session", "on_open", "on_data", "on_wake", "on_close"] {
        let panicked = format!("{hook} panicked: asked to panic in {hook}");
        let count = lines
            .iter()
            .filter(|line| line.ends_with(&panicked))
            .count();
        assert_eq!(count, 2, "{hook}: {lines:#?}");
    }
    assert!(lines[0].starts_with("reactor-test: request from 127.0.0.1:40001: "));
    // The idle connections were not touched, and 100 more clients are served on each loop.
    for client in &mut idle {
        assert_eq!(echo(client, b"still here"), b"still here");
    }
    for n in 0..200 {
        let mut client = connect(&mut dispatcher, &shared, 100 + n);
        let message = format!("client {n}");
        assert_eq!(echo(&mut client, message.as_bytes()), message.as_bytes());
    }
    assert_eq!(hooks.lines().len(), 10, "{:#?}", hooks.lines());
    dispatcher.close(Duration::ZERO);
}
