//! The reader and writer a blocking request's handler gets: over a connection, counting what
//! moves (for the connection's line and the server's metrics) and keeping its time limits; or
//! gathering a datagram's reply.

use std::io::{self, Read, Write};
use std::time::Instant;

use socket2::Socket;

use crate::deadline::{timed_out, Expiry, SetTimeout, Watched};
use crate::metrics::{ServerMetrics, Tally};

/// A reader or writer over the connection that counts the bytes it moves, for the log line and
/// the server's metrics, and keeps the connection's time limits (see `deadline`).
pub(super) struct Counted<'a> {
    conn: &'a Socket,
    /// The bytes moved, for the log line and the server's metrics.
    pub tally: Tally,
    metrics: ServerMetrics,
    /// A read returned end of stream: the peer has closed its sending side.
    pub eof: bool,
    /// The connection's time limits, shared by its reader and writer; `None` without limits.
    watched: Option<&'a Watched>,
    /// The socket timeout this side last set.
    timeout: SetTimeout,
}

impl<'a> Counted<'a> {
    /// A reader (`tally`: [`Tally::received`]) or writer ([`Tally::sent`]) over `conn`.
    pub fn new(
        conn: &'a Socket,
        watched: Option<&'a Watched>,
        metrics: ServerMetrics,
        tally: Tally,
    ) -> Self {
        Counted {
            conn,
            tally,
            metrics,
            eof: false,
            watched,
            timeout: SetTimeout::default(),
        }
    }

    /// Add what this side counted to the server's metrics (at the connection's close).
    pub fn flush_metrics(&mut self) {
        self.metrics.flush(&mut self.tally);
    }

    /// Run one read or write under the connection's time limits: a wait that outlasts the socket
    /// timeout is tried again unless a limit has passed (bytes may have moved on the other side).
    fn limited(
        &mut self,
        reading: bool,
        mut io: impl FnMut(&Socket) -> io::Result<usize>,
    ) -> io::Result<usize> {
        let Some(watched) = self.watched else {
            return io(self.conn);
        };
        loop {
            let limit = watched.wait_limit(Instant::now()).map_err(Expiry::error)?;
            if reading {
                self.timeout.read(self.conn, limit)?;
            } else {
                self.timeout.write(self.conn, limit)?;
            }
            match io(self.conn) {
                Ok(n) => {
                    if n > 0 {
                        watched.touch(reading);
                    }
                    return Ok(n);
                }
                Err(err) if timed_out(&err) => continue,
                Err(err) => return Err(err),
            }
        }
    }
}

impl Read for Counted<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.limited(true, |conn| (&mut &*conn).read(buf))?;
        self.metrics.count(&mut self.tally, n as u64);
        self.eof |= n == 0 && !buf.is_empty();
        Ok(n)
    }
}

impl Write for Counted<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.limited(false, |conn| (&mut &*conn).write(buf))?;
        self.metrics.count(&mut self.tally, n as u64);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A datagram's reply, sent as one datagram if the handler wrote at all (even zero bytes, so an echo
/// of an empty datagram is answered).
pub(super) struct Reply<'a> {
    pub bytes: &'a mut Vec<u8>,
    pub written: bool,
}

impl Write for Reply<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.written = true;
        self.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.write(buf).map(drop)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
