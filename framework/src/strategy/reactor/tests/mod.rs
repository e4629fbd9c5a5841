//! The reactor's own tests: connections driven by hand over socket pairs (`connection`), and whole
//! loops fed through the dispatcher (`dispatcher`). What they share: a server's `Shared` with hooks
//! that record every failure, and a factory that makes a chosen session per connection.

mod connection;
mod dispatcher;

use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex};

use socket2::Socket;
use sockserv_plugin::{Address, HandlerFactory, RequestHandler, Session, SessionInfo};

use crate::limits::{Gate, Limits};
use crate::request::Shared;
use crate::{Hooks, RequestFailure, Shutdown};

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
    fn handle_error(&self, server: &str, peer: &Address, failure: &RequestFailure) {
        let line = format!("{server}: request from {peer}: {failure}");
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
    };
    (Arc::new(shared), hooks)
}

/// A connected pair: the server's end, non-blocking as a loop keeps it, and the client's.
fn socket_pair() -> (Socket, UnixStream) {
    let (server, client) = UnixStream::pair().unwrap();
    server.set_nonblocking(true).unwrap();
    (Socket::from(OwnedFd::from(server)), client)
}
