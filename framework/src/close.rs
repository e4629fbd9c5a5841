//! How a connection ends, the same under every strategy and for every handler: the graceful close
//! (shut down sending, drain the peer's input within a byte and time bound, close) and the bounds
//! that keep shutdown from waiting for ever on a request that will not end.
//!
//! Why drain at all: closing a TCP socket while the peer's bytes sit unread in it makes the kernel
//! send a reset instead of a FIN, and a reset can destroy the reply the peer has not read yet (the
//! advice of RFC 1122 §4.2.2.13 and of every "lingering close" in web servers: Apache's
//! `lingering_close`, nginx's `lingering_time`). Handlers never write this loop themselves.

use std::io::{self, Read};
use std::net::Shutdown as Direction;
use std::time::{Duration, Instant};

use socket2::Socket;

/// The longest a closing connection waits for its peer's end of stream.
pub(crate) const LINGER_TIME: Duration = Duration::from_secs(2);

/// The most a closing connection reads and drops before closing anyway, in bytes.
pub(crate) const LINGER_LIMIT: usize = 4 * 1024 * 1024;

/// How long shutdown waits for requests to return once their sockets were closed under them (after
/// `drain_timeout`): a handler whose read or write failed returns at once; one that ignores its
/// errors is given up on after this, its thread left behind or its process killed.
pub const FORCED_CLOSE_WAIT: Duration = Duration::from_secs(1);

/// `after` from now — or, for a duration too long to add to the clock (a "wait for ever" written
/// as a huge number), a year from now: every wait stays finite and no deadline overflows.
pub(crate) fn deadline_after(after: Duration) -> Instant {
    const FAR: Duration = Duration::from_secs(365 * 86_400);
    let now = Instant::now();
    now.checked_add(after)
        .or_else(|| now.checked_add(FAR))
        .unwrap_or(now)
}

/// The graceful close of a blocking connection: shut down sending so the peer sees the end of the
/// reply, then read and drop what it still sends until its end of stream, [`LINGER_LIMIT`] bytes
/// or [`LINGER_TIME`], whichever comes first; then shut it down both ways. `peer_closed`: a read
/// already returned end of stream, so there is nothing left to drain.
pub(crate) fn close_gracefully(conn: &Socket, peer_closed: bool) {
    if !peer_closed && conn.shutdown(Direction::Write).is_ok() {
        drain_input(conn);
    }
    let _ = conn.shutdown(Direction::Both);
}

/// How much a closing connection reads at a time while draining, in bytes.
const DRAIN_BUFFER: usize = 16 * 1024;

/// Read and drop until end of stream, an error, the byte limit or the time limit.
///
/// The buffer is on the heap, made only when there is something to drain: as an array on the
/// stack it made the frame of every graceful close 16 KiB deep, and the stack probes touch each
/// page of a frame on entry, drained or not, so each pool worker kept four more stack pages
/// resident for good after its first close (64 MiB for 4 096 workers).
fn drain_input(conn: &Socket) {
    let deadline = Instant::now() + LINGER_TIME;
    let mut buf = vec![0u8; DRAIN_BUFFER];
    let mut dropped = 0;
    while dropped < LINGER_LIMIT {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || conn.set_read_timeout(Some(left)).is_err() {
            return;
        }
        match (&mut &*conn).read(&mut buf) {
            Ok(0) => return,
            Ok(n) => dropped += n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;
    use crate::test_support::socket_pair;

    #[test]
    fn the_peer_sees_end_of_stream_and_its_late_input_is_dropped() {
        let (ours, mut theirs) = socket_pair();
        theirs.write_all(b"unread request bytes").unwrap();
        let peer = std::thread::spawn(move || {
            let mut got = Vec::new();
            theirs.read_to_end(&mut got).unwrap();
            theirs.write_all(b"more").unwrap();
            drop(theirs);
            got
        });
        let started = Instant::now();
        close_gracefully(&ours, false);
        assert!(
            started.elapsed() < LINGER_TIME,
            "ended with the peer's close"
        );
        assert!(
            peer.join().unwrap().is_empty(),
            "the peer saw end of stream"
        );
    }

    #[test]
    fn a_silent_peer_is_given_up_on_after_the_linger_time() {
        let (ours, _theirs) = socket_pair();
        let started = Instant::now();
        close_gracefully(&ours, false);
        let took = started.elapsed();
        // Bounded: it gives up (generously bounded above: a loaded machine is slow).
        assert!(took >= LINGER_TIME && took < LINGER_TIME * 10, "{took:?}");
    }
}
