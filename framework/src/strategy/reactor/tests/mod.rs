//! The reactor's own tests: connections driven by hand over socket pairs (`connection`), whole
//! loops fed through the dispatcher (`dispatcher`), and sessions that pause their reading and set
//! timers (`pause`, both ways). What they share: a server's `Shared` with hooks that record every
//! failure, a factory that makes a chosen session per connection, and clients of a dispatcher.

mod connection;
mod dispatcher;
mod pause;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use socket2::Socket;
use sockserv_plugin::{Address, HandlerFactory, RequestHandler, Session, SessionInfo};

use super::ReactorDispatcher;
use crate::limits::{Gate, Limits, Peer};
use crate::request::Shared;
use crate::strategy::{Accepted, Dispatcher};
use crate::Client;
use crate::{Hooks, RequestFailure, Shutdown};

/// How long a reply may take: a failure bound, never waited out by a passing test.
const WAIT: Duration = Duration::from_secs(10);

/// The server name the tests' connections report under.
const SERVER: &str = "reactor-test";

/// A peer address for connection `n` (the socket pairs have none worth printing).
fn peer(n: u16) -> Address {
    Address::Inet(([127, 0, 0, 1], 40_000 + n).into())
}

/// Hooks that keep every reported failure as `"{server}: request from {peer}: {failure}"`, the
/// line the default hooks log.
#[derive(Default)]
struct Recorded(Mutex<Vec<String>>);

impl Recorded {
    fn lines(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

impl Hooks for Recorded {
    fn handle_error(&self, server: &str, client: Client<'_>, failure: &RequestFailure) {
        let line = format!("{server}: request from {}: {failure}", client.peer);
        self.0.lock().unwrap().push(line);
    }
}

/// Makes each connection's session with `make`; it has no blocking handler.
struct Sessions<F>(F);

impl<F> HandlerFactory for Sessions<F>
where
    F: Fn(&SessionInfo<'_>) -> Box<dyn Session> + Send + Sync,
{
    fn new_handler(&self) -> Box<dyn RequestHandler> {
        unreachable!("the reactor asks for sessions only")
    }

    fn new_session(&self, info: &SessionInfo<'_>) -> Option<Box<dyn Session>> {
        Some((self.0)(info))
    }
}

/// A server whose connections get sessions from `make`, and the hooks that record its failures.
fn shared<F>(make: F) -> (Arc<Shared>, Arc<Recorded>)
where
    F: Fn(&SessionInfo<'_>) -> Box<dyn Session> + Send + Sync + 'static,
{
    let hooks = Arc::new(Recorded::default());
    let shared = Shared {
        name: SERVER.to_string(),
        factory: Arc::new(Sessions(make)),
        hooks: Arc::clone(&hooks) as Arc<dyn Hooks>,
        shutdown: Shutdown::new().unwrap(),
        local: Address::Inet(([127, 0, 0, 1], 20_000).into()),
        nodelay: None,
        gate: Gate::new(Limits::none()),
        metrics: crate::metrics::ServerMetrics::for_server(SERVER),
    };
    (Arc::new(shared), hooks)
}

/// A connected pair: the server's end, non-blocking as a loop keeps it, and the client's.
fn socket_pair() -> (Socket, UnixStream) {
    let (server, client) = crate::test_support::socket_pair();
    server.set_nonblocking(true).unwrap();
    (server, client)
}

/// Hand the dispatcher a new connection from peer `port`; returns the client's end, whose reads
/// and writes give up after [`WAIT`].
fn connect(dispatcher: &mut ReactorDispatcher, shared: &Arc<Shared>, port: u16) -> UnixStream {
    let (server, client) = socket_pair();
    client.set_read_timeout(Some(WAIT)).unwrap();
    client.set_write_timeout(Some(WAIT)).unwrap();
    let ticket = shared
        .gate
        .admit(Peer::Unknown, Instant::now())
        .expect("no limits in these tests");
    let accepted = Accepted {
        socket: server,
        peer: peer(port),
        ticket,
        id: crate::metrics::ConnId(u64::from(port)),
        tls: None,
    };
    dispatcher.stream(shared, accepted);
    client
}

/// Sends `message` and reads as many bytes back.
fn echo(client: &mut UnixStream, message: &[u8]) -> Vec<u8> {
    client.write_all(message).unwrap();
    let mut reply = vec![0; message.len()];
    client.read_exact(&mut reply).unwrap();
    reply
}

/// Waits (bounded by [`WAIT`]) until `check` holds; returns whether it did.
fn eventually(mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + WAIT;
    while !check() {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    true
}
