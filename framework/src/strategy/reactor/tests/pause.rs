//! Sessions that pause their reading and ask for wakes at a time: by hand over socket pairs (what
//! is read when, what a reset does to a paused connection, when a timer fires), then on a live loop
//! (a resume that must read without a new readiness event, timers moved both ways, and the timer of
//! a connection that closed while its slot is reused).

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sockserv_plugin::{Session, SessionContext, SessionInfo, SessionWaker};

use super::super::connection::{Connection, Next};
use super::super::ReactorDispatcher;
use super::{connect, echo, eventually, peer, shared, socket_pair};
use crate::strategy::Dispatcher;

/// What a [`Gated`] session has been given.
#[derive(Default)]
struct Seen {
    data: Vec<u8>,
    eof: bool,
    waker: Option<Arc<dyn SessionWaker>>,
}

/// Greets and pauses its reading as it opens, and resumes it when woken; echoes what it reads and
/// notes its end of stream (then closes, as by default).
struct Gated(Arc<Mutex<Seen>>);

impl Session for Gated {
    fn on_open(&mut self, ctx: &mut SessionContext<'_>) {
        ctx.write(GREETING);
        ctx.pause_reading();
    }

    fn on_data(&mut self, data: &[u8], ctx: &mut SessionContext<'_>) {
        self.0.lock().unwrap().data.extend_from_slice(data);
        ctx.write(data);
    }

    fn on_eof(&mut self, ctx: &mut SessionContext<'_>) {
        self.0.lock().unwrap().eof = true;
        ctx.close();
    }

    fn on_wake(&mut self, ctx: &mut SessionContext<'_>) {
        ctx.resume_reading();
    }
}

const GREETING: &[u8] = b"paused\n";

const WATCH_READ: Next = Next::Watch {
    read: true,
    write: false,
};

#[test]
fn a_paused_connection_is_not_read_and_resuming_reads_what_came_without_a_new_event() {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let (shared, hooks) = shared(|_| unreachable!());
    let (server, mut client) = socket_pair();
    let session = Gated(Arc::clone(&seen));
    let mut connection = Connection::new(
        server,
        Box::new(session),
        shared,
        peer(1),
        crate::metrics::ConnId(1),
    );
    let mut buffer = vec![0; 1024];
    // Paused, it is still watched for readability (a hang-up must be seen), but not read: not
    // when the bytes' event comes, nor when the peer's end of stream is announced.
    assert_eq!(connection.on_open(&mut buffer), WATCH_READ);
    client.write_all(b"sent while paused").unwrap();
    assert_eq!(connection.on_readable(&mut buffer, false), WATCH_READ);
    client.shutdown(Shutdown::Write).unwrap();
    assert_eq!(connection.on_readable(&mut buffer, true), WATCH_READ);
    assert!(seen.lock().unwrap().data.is_empty());
    assert!(!seen.lock().unwrap().eof);
    // The wake resumes, and that same call reads: no readiness event will come for those bytes.
    assert_eq!(connection.on_wake(&mut buffer), Next::Close);
    assert_eq!(seen.lock().unwrap().data, b"sent while paused");
    assert!(seen.lock().unwrap().eof, "the end of stream after them");
    connection.close();
    let mut got = Vec::new();
    client.read_to_end(&mut got).unwrap();
    assert_eq!(got, [GREETING, b"sent while paused"].concat());
    assert!(hooks.lines().is_empty(), "{:?}", hooks.lines());
}

#[test]
fn a_paused_connection_whose_peer_resets_is_closed_and_the_reset_reported() {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let (shared, hooks) = shared(|_| unreachable!());
    let (server, client) = socket_pair();
    let session = Gated(Arc::clone(&seen));
    let mut connection = Connection::new(
        server,
        Box::new(session),
        shared,
        peer(1),
        crate::metrics::ConnId(1),
    );
    let mut buffer = vec![0; 1024];
    assert_eq!(connection.on_open(&mut buffer), WATCH_READ);
    // A Unix peer that closes with bytes unread (the greeting) resets the connection.
    drop(client);
    assert_eq!(connection.on_readable(&mut buffer, true), Next::Close);
    connection.close();
    assert!(!seen.lock().unwrap().eof, "a reset is not an end of stream");
    let lines = hooks.lines();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains("reset by peer"), "{lines:?}");
}

/// Wakes: how many came, and at what times.
#[derive(Default)]
struct Timed {
    at: Option<Instant>,
    wakes: Arc<Mutex<Vec<Instant>>>,
}

impl Session for Timed {
    fn on_open(&mut self, ctx: &mut SessionContext<'_>) {
        if let Some(at) = self.at {
            ctx.wake_at(at);
        }
    }

    fn on_data(&mut self, _data: &[u8], _ctx: &mut SessionContext<'_>) {}

    fn on_wake(&mut self, _ctx: &mut SessionContext<'_>) {
        self.wakes.lock().unwrap().push(Instant::now());
    }
}

#[test]
fn the_timer_fires_once_and_never_before_its_time() {
    let at = Instant::now() + Duration::from_secs(60);
    let wakes = Arc::new(Mutex::new(Vec::new()));
    let session = Timed {
        at: Some(at),
        wakes: Arc::clone(&wakes),
    };
    let (shared, _) = shared(|_| unreachable!());
    let (server, _client) = socket_pair();
    let mut connection = Connection::new(
        server,
        Box::new(session),
        shared,
        peer(1),
        crate::metrics::ConnId(1),
    );
    let mut buffer = vec![0; 64];
    connection.on_open(&mut buffer);
    assert_eq!(connection.next_time(), Some(at));
    let early = at - Duration::from_micros(1);
    assert_eq!(connection.on_timer(early, &mut buffer), None);
    assert!(wakes.lock().unwrap().is_empty());
    assert_eq!(connection.on_timer(at, &mut buffer), Some(WATCH_READ));
    assert_eq!(wakes.lock().unwrap().len(), 1);
    assert_eq!(connection.next_time(), None, "a timer fires once");
    let later = at + Duration::from_secs(1);
    assert_eq!(connection.on_timer(later, &mut buffer), None);
    assert_eq!(wakes.lock().unwrap().len(), 1);
    connection.close();
}

/// The port of the peer whose session is [`Gated`]; the others echo.
const GATED: u16 = 1;

/// Echoes what it reads.
struct Echo;

impl Session for Echo {
    fn on_data(&mut self, data: &[u8], ctx: &mut SessionContext<'_>) {
        ctx.write(data);
    }
}

#[test]
fn on_a_live_loop_a_resume_reads_what_came_while_paused() {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let gated = Arc::clone(&seen);
    let (shared, hooks) = shared(move |info: &SessionInfo<'_>| -> Box<dyn Session> {
        if info.peer.inet().map(|addr| addr.port()) == Some(40_000 + GATED) {
            gated.lock().unwrap().waker = Some(Arc::clone(&info.waker));
            Box::new(Gated(Arc::clone(&gated)))
        } else {
            Box::new(Echo)
        }
    });
    let mut dispatcher = ReactorDispatcher::new(&shared, 1, None).unwrap();
    let mut paused = connect(&mut dispatcher, &shared, GATED);
    let mut barrier = connect(&mut dispatcher, &shared, 2);
    let mut greeting = vec![0; GREETING.len()];
    paused.read_exact(&mut greeting).unwrap();
    assert_eq!(greeting, GREETING);
    paused.write_all(b"held").unwrap();
    // The loop reports readiness in the order it came, so once the other connection's echo is
    // back, the paused one's event has been handled: the bytes sit unread in its socket.
    assert_eq!(echo(&mut barrier, b"barrier"), b"barrier");
    paused.set_nonblocking(true).unwrap();
    let nothing = paused.read(&mut [0; 16]).map_err(|err| err.kind());
    assert_eq!(nothing, Err(ErrorKind::WouldBlock), "read while paused");
    assert!(seen.lock().unwrap().data.is_empty());
    // The wake resumes; no new readiness event will come for "held", yet it is read.
    paused.set_nonblocking(false).unwrap();
    let waker = seen.lock().unwrap().waker.clone().unwrap();
    waker.wake();
    let mut held = [0; 4];
    paused.read_exact(&mut held).unwrap();
    assert_eq!(&held, b"held");
    assert_eq!(echo(&mut paused, b"and on"), b"and on");
    assert!(hooks.lines().is_empty(), "{:?}", hooks.lines());
    dispatcher.close(Duration::ZERO);
}

/// What a [`Commanded`] session saw: when it was asked for wakes, when they came, and whether it
/// closed.
#[derive(Default)]
struct Record {
    asked: Vec<Instant>,
    woke: Vec<Instant>,
    closed: bool,
}

type Records = Arc<Mutex<HashMap<u16, Record>>>;

/// Takes one command per read, answered with one line: `wake MS` asks for a wake in MS
/// milliseconds (`ok`), `wakes` counts the wakes so far; each wake writes `woke`.
struct Commanded {
    port: u16,
    records: Records,
}

impl Commanded {
    fn record<T>(&self, change: impl FnOnce(&mut Record) -> T) -> T {
        change(self.records.lock().unwrap().entry(self.port).or_default())
    }
}

impl Session for Commanded {
    fn on_data(&mut self, data: &[u8], ctx: &mut SessionContext<'_>) {
        let command = std::str::from_utf8(data).unwrap();
        if let Some(ms) = command.strip_prefix("wake ") {
            self.record(|record| record.asked.push(Instant::now()));
            ctx.wake_after(Duration::from_millis(ms.parse().unwrap()));
            ctx.write(b"ok\n");
        } else {
            assert_eq!(command, "wakes");
            let count = self.record(|record| record.woke.len());
            ctx.write(format!("wakes {count}\n").as_bytes());
        }
    }

    fn on_wake(&mut self, ctx: &mut SessionContext<'_>) {
        self.record(|record| record.woke.push(Instant::now()));
        ctx.write(b"woke\n");
    }

    fn on_close(&mut self) {
        self.record(|record| record.closed = true);
    }
}

/// A loop of [`Commanded`] sessions, recording into `records`.
fn commanded(records: &Records) -> (Arc<crate::request::Shared>, ReactorDispatcher) {
    let records = Arc::clone(records);
    let (shared, _) = shared(move |info: &SessionInfo<'_>| -> Box<dyn Session> {
        let port = info.peer.inet().unwrap().port() - 40_000;
        Box::new(Commanded {
            port,
            records: Arc::clone(&records),
        })
    });
    let dispatcher = ReactorDispatcher::new(&shared, 1, None).unwrap();
    (shared, dispatcher)
}

/// Sends `command` and reads the line that answers it.
fn ask(client: &mut UnixStream, command: &str) -> String {
    client.write_all(command.as_bytes()).unwrap();
    line(client)
}

fn line(client: &mut UnixStream) -> String {
    let mut line = Vec::new();
    let mut byte = [0];
    while line.last() != Some(&b'\n') {
        client.read_exact(&mut byte).unwrap();
        line.push(byte[0]);
    }
    String::from_utf8(line).unwrap()
}

/// How late a wake may come: a failure bound for a loaded machine, never waited out.
const LATE: Duration = Duration::from_secs(5);

#[test]
fn on_a_live_loop_a_wake_comes_once_at_its_time_and_a_later_request_replaces_it() {
    let records = Records::default();
    let (shared, mut dispatcher) = commanded(&records);
    let mut client = connect(&mut dispatcher, &shared, 1);
    let elapsed = |asked: usize, woke: usize| {
        let records = records.lock().unwrap();
        records[&1].woke[woke] - records[&1].asked[asked]
    };
    // Moved earlier: the wake comes at the new time, once.
    assert_eq!(ask(&mut client, "wake 30000"), "ok\n");
    assert_eq!(ask(&mut client, "wake 100"), "ok\n");
    assert_eq!(line(&mut client), "woke\n");
    let took = elapsed(1, 0);
    assert!(took >= Duration::from_millis(100), "woken after {took:?}");
    assert!(
        took < Duration::from_millis(100) + LATE,
        "woken after {took:?}"
    );
    assert_eq!(ask(&mut client, "wakes"), "wakes 1\n");
    // Moved later: the earlier time passes without a wake.
    assert_eq!(ask(&mut client, "wake 50"), "ok\n");
    assert_eq!(ask(&mut client, "wake 250"), "ok\n");
    assert_eq!(line(&mut client), "woke\n");
    let took = elapsed(3, 1);
    assert!(took >= Duration::from_millis(250), "woken after {took:?}");
    assert_eq!(ask(&mut client, "wakes"), "wakes 2\n");
    dispatcher.close(Duration::ZERO);
}

#[test]
fn the_timer_of_a_connection_that_closed_wakes_nobody_not_even_its_slots_next_tenant() {
    let records = Records::default();
    let (shared, mut dispatcher) = commanded(&records);
    let mut gone = connect(&mut dispatcher, &shared, 1);
    assert_eq!(ask(&mut gone, "wake 200"), "ok\n");
    drop(gone);
    let closed = || records.lock().unwrap()[&1].closed;
    assert!(eventually(closed), "the connection did not close");
    // The loop's one slot is free again: the next connection takes it while the old timer is due.
    let mut next = connect(&mut dispatcher, &shared, 2);
    assert_eq!(ask(&mut next, "wake 400"), "ok\n");
    assert_eq!(line(&mut next), "woke\n");
    {
        let records = records.lock().unwrap();
        let took = records[&2].woke[0] - records[&2].asked[0];
        assert!(took >= Duration::from_millis(400), "woken after {took:?}");
        assert!(
            records[&1].woke.is_empty(),
            "the closed connection was woken"
        );
    }
    assert_eq!(ask(&mut next, "wakes"), "wakes 1\n");
    dispatcher.close(Duration::ZERO);
}
