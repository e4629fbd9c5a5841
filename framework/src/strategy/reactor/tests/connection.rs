//! One connection driven by hand, the way its loop drives it, over a socket pair whose client end
//! the test reads: what the session is told about its output, and what reaches the peer.

use std::io::{ErrorKind, Read, Write};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex};

use sockserv_plugin::{Session, SessionContext};

use super::super::connection::{Connection, Next};
use super::{peer, shared, socket_pair};

/// Writes `size` bytes on open; records `pending()` at every wake.
struct Big {
    size: usize,
    pending_at_wake: Arc<Mutex<Vec<usize>>>,
}

impl Session for Big {
    fn on_open(&mut self, ctx: &mut SessionContext<'_>) {
        ctx.write(&vec![b'x'; self.size]);
    }

    fn on_data(&mut self, _data: &[u8], _ctx: &mut SessionContext<'_>) {}

    fn on_wake(&mut self, ctx: &mut SessionContext<'_>) {
        self.pending_at_wake.lock().unwrap().push(ctx.pending());
    }
}

/// Everything the client can read without waiting.
fn read_available(client: &mut UnixStream) -> usize {
    client.set_nonblocking(true).unwrap();
    let mut buf = vec![0; 64 * 1024];
    let mut total = 0;
    loop {
        match client.read(&mut buf) {
            Ok(0) => return total,
            Ok(n) => total += n,
            Err(err) if err.kind() == ErrorKind::WouldBlock => return total,
            Err(err) => panic!("read: {err}"),
        }
    }
}

#[test]
fn pending_counts_only_what_the_socket_has_not_taken() {
    const SIZE: usize = 4 << 20;
    let pending_at_wake = Arc::new(Mutex::new(Vec::new()));
    let (shared, _) = shared(|_| unreachable!());
    let (server, mut client) = socket_pair();
    let session = Big {
        size: SIZE,
        pending_at_wake: Arc::clone(&pending_at_wake),
    };
    let mut connection = Connection::new(
        server,
        Box::new(session),
        shared,
        peer(1),
        crate::metrics::ConnId(1),
    );
    let mut next = connection.on_open(&mut [0; 64]);
    let mut read = 0;
    let mut rounds = 0;
    while next
        != (Next::Watch {
            read: true,
            write: false,
        })
    {
        assert!(matches!(next, Next::Watch { write: true, .. }), "{next:?}");
        // The client drains the socket, so everything the connection wrote has been read: what is
        // pending is exactly what the client has still to get.
        read += read_available(&mut client);
        assert!(read < SIZE, "the socket cannot hold 4 MiB");
        connection.on_wake(&mut [0; 64]);
        let reported = *pending_at_wake.lock().unwrap().last().unwrap();
        assert_eq!(reported, SIZE - read, "after the client read {read} bytes");
        next = connection.on_writable(&mut [0; 64]);
        rounds += 1;
    }
    read += read_available(&mut client);
    assert_eq!(read, SIZE);
    assert!(
        rounds > 2,
        "the output went out in {rounds} writes: no partial write was seen"
    );
    connection.on_wake(&mut [0; 64]);
    assert_eq!(pending_at_wake.lock().unwrap().last(), Some(&0));
}

/// Writes `"{hook}\n"` in every callback that has a context, then panics in `fails_in`; records
/// every call.
struct Faulty {
    fails_in: &'static str,
    calls: Arc<Mutex<Vec<&'static str>>>,
}

impl Faulty {
    fn call(&mut self, hook: &'static str, ctx: Option<&mut SessionContext<'_>>) {
        self.calls.lock().unwrap().push(hook);
        if let Some(ctx) = ctx {
            ctx.write(format!("{hook}\n").as_bytes());
        }
        if hook == self.fails_in {
            panic!("{hook} failed on purpose");
        }
    }
}

impl Session for Faulty {
    fn on_open(&mut self, ctx: &mut SessionContext<'_>) {
        self.call("on_open", Some(ctx));
    }

    fn on_data(&mut self, _data: &[u8], ctx: &mut SessionContext<'_>) {
        self.call("on_data", Some(ctx));
    }

    fn on_eof(&mut self, ctx: &mut SessionContext<'_>) {
        self.call("on_eof", Some(ctx));
        ctx.close();
    }

    fn on_wake(&mut self, ctx: &mut SessionContext<'_>) {
        self.call("on_wake", Some(ctx));
    }

    fn on_close(&mut self) {
        self.call("on_close", None);
    }
}

/// The session's callbacks in the order the steps below make them.
const HOOKS: [&str; 5] = ["on_open", "on_data", "on_wake", "on_eof", "on_close"];

/// Opens the connection, sends a byte, wakes it, ends the input: the step that returns
/// `Next::Close` first ends the drive, and its hook is returned.
fn drive(connection: &mut Connection, client: &mut UnixStream) -> &'static str {
    let mut buffer = vec![0; 1024];
    if connection.on_open(&mut buffer) == Next::Close {
        return "on_open";
    }
    client.write_all(b"x").unwrap();
    if connection.on_readable(&mut buffer, false) == Next::Close {
        return "on_data";
    }
    if connection.on_wake(&mut buffer) == Next::Close {
        return "on_wake";
    }
    client.shutdown(Shutdown::Write).unwrap();
    assert_eq!(connection.on_readable(&mut buffer, true), Next::Close);
    "on_eof"
}

#[test]
fn a_panic_in_any_callback_closes_the_connection_reports_it_and_calls_no_more() {
    for (failing, fails_in) in HOOKS.into_iter().enumerate() {
        let calls = Arc::new(Mutex::new(Vec::new()));
        let (shared, hooks) = shared(|_| unreachable!());
        let (server, mut client) = socket_pair();
        let session = Faulty {
            fails_in,
            calls: Arc::clone(&calls),
        };
        let mut connection = Connection::new(
            server,
            Box::new(session),
            shared,
            peer(1),
            crate::metrics::ConnId(1),
        );
        let ended_at = drive(&mut connection, &mut client);
        connection.close();
        let expected_end = if fails_in == "on_close" {
            "on_eof"
        } else {
            fails_in
        };
        assert_eq!(ended_at, expected_end);
        // Nothing is called after the panic (on_close included), and the failing call's own
        // output never reaches the peer.
        assert_eq!(*calls.lock().unwrap(), HOOKS[..=failing], "{fails_in}");
        let expected: String = HOOKS[..failing.min(4)]
            .iter()
            .map(|hook| format!("{hook}\n"))
            .collect();
        let mut got = String::new();
        client.read_to_string(&mut got).unwrap();
        assert_eq!(got, expected, "{fails_in}");
        assert_eq!(
            hooks.lines(),
            [format!(
                "reactor-test: request from 127.0.0.1:40001: {fails_in} panicked: \
                 {fails_in} failed on purpose"
            )]
        );
    }
}

/// Asks to be woken once its output is out, and panics in that wake.
struct WakeAfterWrite;

impl Session for WakeAfterWrite {
    fn on_data(&mut self, data: &[u8], ctx: &mut SessionContext<'_>) {
        ctx.write(data);
        ctx.wake_when_written();
    }

    fn on_wake(&mut self, _ctx: &mut SessionContext<'_>) {
        panic!("woken to fail");
    }
}

#[test]
fn a_panic_in_the_wake_after_the_output_is_out_closes_the_connection_too() {
    let (shared, hooks) = shared(|_| unreachable!());
    let (server, mut client) = socket_pair();
    let mut connection = Connection::new(
        server,
        Box::new(WakeAfterWrite),
        shared,
        peer(2),
        crate::metrics::ConnId(2),
    );
    assert_eq!(
        connection.on_open(&mut [0; 64]),
        Next::Watch {
            read: true,
            write: false
        }
    );
    client.write_all(b"ping").unwrap();
    assert_eq!(connection.on_readable(&mut [0; 64], false), Next::Close);
    connection.close();
    let mut got = Vec::new();
    client.read_to_end(&mut got).unwrap();
    assert_eq!(got, b"ping");
    assert_eq!(
        hooks.lines(),
        ["reactor-test: request from 127.0.0.1:40002: on_wake panicked: woken to fail"]
    );
}
