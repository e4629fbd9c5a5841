//! Whole loops, fed connections through the dispatcher as the serving loop feeds them: sessions
//! that panic in each callback close their own connection only, and every loop goes on serving; a
//! loop that ends is skipped, and one that cannot start takes the others down with it.

use std::io::{self, ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sockserv_plugin::{Session, SessionContext, SessionInfo, SessionWaker};

use super::super::event_loop::spawn_loop;
use super::super::{start_loops, ReactorDispatcher};
use super::{connect, echo, eventually, shared, Recorded, WAIT};
use crate::strategy::Dispatcher;
use crate::Shutdown;

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

/// An echo session that counts the `on_close` calls of its kind.
struct CountsCloses {
    echo: Box<dyn Session>,
    closed: Arc<AtomicUsize>,
}

impl Session for CountsCloses {
    fn on_data(&mut self, data: &[u8], ctx: &mut SessionContext<'_>) {
        self.echo.on_data(data, ctx);
    }

    fn on_close(&mut self) {
        self.closed.fetch_add(1, Ordering::SeqCst);
    }
}

struct OpenFails;

impl Session for OpenFails {
    fn on_open(&mut self, _ctx: &mut SessionContext<'_>) {
        panic!("asked to panic in on_open");
    }

    fn on_data(&mut self, _data: &[u8], _ctx: &mut SessionContext<'_>) {}
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
    let mut dispatcher = ReactorDispatcher::new(&shared, 2, None).unwrap();
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

#[test]
fn a_loop_that_ended_is_skipped_its_connections_close_and_none_left_is_reported() {
    let closed = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&closed);
    let (shared, hooks) = shared(move |info| {
        Box::new(CountsCloses {
            echo: echo_session(info),
            closed: Arc::clone(&counter),
        })
    });
    let mut dispatcher = ReactorDispatcher::new(&shared, 2, None).unwrap();
    let mut on_first = connect(&mut dispatcher, &shared, 10);
    let mut on_second = connect(&mut dispatcher, &shared, 11);
    assert_eq!(echo(&mut on_first, b"one"), b"one");
    assert_eq!(echo(&mut on_second, b"two"), b"two");
    // A panic in the loop's own code (not a session's) ends its thread: its connections are
    // closed (their sessions told), not left hanging, and it is marked ended.
    dispatcher.loops[0].crash();
    assert_closed(&mut on_first, "a connection of the crashed loop");
    assert_eq!(closed.load(Ordering::SeqCst), 1);
    assert!(eventually(|| dispatcher.dead_loops() == 1));
    assert_eq!(
        dispatcher.failure().as_deref(),
        Some("1 of its 2 event loops ended")
    );
    // It woke the serving loop on its way out, so the server looks at `failure` at once.
    let mut wake = UnixStream::from(shared.shutdown.wake_fd().try_clone_to_owned().unwrap());
    wake.set_read_timeout(Some(WAIT)).unwrap();
    assert_eq!(
        wake.read(&mut [0; 1]).unwrap(),
        1,
        "the serving loop was not woken"
    );
    // Every new connection goes to the loop still running.
    for n in 0..10 {
        let mut client = connect(&mut dispatcher, &shared, 100 + n);
        assert_eq!(echo(&mut client, b"served"), b"served");
    }
    assert_eq!(echo(&mut on_second, b"still"), b"still");
    // With no loop left, a connection is refused, reported, and closed.
    dispatcher.loops[1].stop();
    assert!(eventually(|| dispatcher.dead_loops() == 2));
    assert_eq!(
        dispatcher.failure().as_deref(),
        Some("2 of its 2 event loops ended")
    );
    let mut refused = connect(&mut dispatcher, &shared, 200);
    assert_closed(&mut refused, "a connection with no loop to run on");
    assert_eq!(
        hooks.lines(),
        [
            "reactor-test: request from 127.0.0.1:40200: cannot start the request: \
          all 2 event loops have ended"
        ]
    );
    // The crashed loop's join fails with its name and the panic; close logs it and goes on.
    let crashed = dispatcher.loops.remove(0);
    assert_eq!(
        crashed.join(),
        Err("reactor-test-loop-0: panicked: crashed on purpose".to_string())
    );
    dispatcher.close(Duration::ZERO);
}

#[test]
fn a_loop_that_cannot_start_stops_and_joins_those_already_running() {
    let mut watches = Vec::new();
    let started = start_loops(5, |index| {
        if index == 3 {
            return Err(io::Error::other("out of descriptors"));
        }
        let event_loop = spawn_loop("start-test", index, Shutdown::new()?, None)?;
        watches.push(event_loop.watch());
        Ok(event_loop)
    });
    assert_eq!(started.err().unwrap().to_string(), "out of descriptors");
    assert_eq!(watches.len(), 3);
    for watch in &watches {
        assert!(!watch.is_alive());
        assert!(watch.thread_gone(), "a loop's thread was left running");
    }
}
