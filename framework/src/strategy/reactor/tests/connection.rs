//! One connection driven by hand, the way its loop drives it, over a socket pair whose client end
//! the test reads: what the session is told about its output, and what reaches the peer.

use std::io::{ErrorKind, Read};
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
    let mut connection = Connection::new(server, Box::new(session), shared, peer(1));
    let mut next = connection.on_open();
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
        connection.on_wake();
        let reported = *pending_at_wake.lock().unwrap().last().unwrap();
        assert_eq!(reported, SIZE - read, "after the client read {read} bytes");
        next = connection.on_writable();
        rounds += 1;
    }
    read += read_available(&mut client);
    assert_eq!(read, SIZE);
    assert!(
        rounds > 2,
        "the output went out in {rounds} writes: no partial write was seen"
    );
    connection.on_wake();
    assert_eq!(pending_at_wake.lock().unwrap().last(), Some(&0));
}
