//! TLS for the blocking strategies: a handshake bounded in time, then a reader and a writer that
//! carry plaintext over the connection, usable from two threads at once as a plain connection's
//! are (a handler may read on one thread while it writes on another).
//!
//! One rustls connection serves both sides, behind a lock that is never held while the socket
//! is waited on: the reader reads ciphertext without it, then takes it to decrypt; the writer
//! takes it to encrypt. Records must reach the socket in the order they were made (each carries
//! its sequence number), so making records and writing them happen under a second lock,
//! `sending`, taken first; the reader takes it too when rustls has something to send of its own
//! (an alert, a key update's answer).

use std::io::{self, Read, Write};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rustls::ServerConnection;
use socket2::Socket;

use super::{HandshakeError, HANDSHAKE_RECORD};
use crate::deadline::timed_out;

/// The ciphertext a reader takes from the socket at once: one full TLS record and its header.
const CIPHER_CHUNK: usize = 16 * 1024 + 256;

/// How long the close_notify at the end may wait for the socket.
const CLOSE_NOTIFY_WAIT: Duration = Duration::from_secs(1);

/// Run the handshake of `tls` on `conn` within `limit`, bytes in and out counted in `moved`.
///
/// # Errors
///
/// Why it failed; rustls's alert, if it made one, was sent first.
pub(crate) fn handshake(
    conn: &Socket,
    tls: &mut ServerConnection,
    limit: Duration,
    moved: &mut (u64, u64),
) -> Result<(), HandshakeError> {
    let deadline = Instant::now() + limit;
    let result = drive(conn, tls, deadline, limit, moved);
    if result.is_err() && tls.wants_write() {
        let _ = send_all(conn, tls, deadline, limit, moved);
    }
    // The handler's reads and writes set their own timeouts (or none).
    let _ = conn.set_read_timeout(None);
    let _ = conn.set_write_timeout(None);
    result
}

fn drive(
    conn: &Socket,
    tls: &mut ServerConnection,
    deadline: Instant,
    limit: Duration,
    moved: &mut (u64, u64),
) -> Result<(), HandshakeError> {
    let mut first = true;
    while tls.is_handshaking() {
        send_all(conn, tls, deadline, limit, moved)?;
        if !tls.is_handshaking() {
            break;
        }
        let wait = left(deadline, limit)?;
        conn.set_read_timeout(Some(wait))
            .map_err(HandshakeError::Io)?;
        let mut buf = [0u8; CIPHER_CHUNK];
        let n = match (&mut &*conn).read(&mut buf) {
            Ok(0) => return Err(HandshakeError::Closed),
            Ok(n) => n,
            Err(err) if timed_out(&err) || err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(HandshakeError::Io(err)),
        };
        moved.0 += n as u64;
        if std::mem::take(&mut first) && buf[0] != HANDSHAKE_RECORD {
            return Err(HandshakeError::NotTls);
        }
        let mut fed = &buf[..n];
        while !fed.is_empty() {
            tls.read_tls(&mut fed).map_err(HandshakeError::Io)?;
            tls.process_new_packets().map_err(HandshakeError::Tls)?;
        }
    }
    send_all(conn, tls, deadline, limit, moved)
}

/// Write what rustls has to send, within the handshake's deadline.
fn send_all(
    conn: &Socket,
    tls: &mut ServerConnection,
    deadline: Instant,
    limit: Duration,
    moved: &mut (u64, u64),
) -> Result<(), HandshakeError> {
    while tls.wants_write() {
        let wait = left(deadline, limit)?;
        conn.set_write_timeout(Some(wait))
            .map_err(HandshakeError::Io)?;
        match tls.write_tls(&mut &*conn) {
            Ok(n) => moved.1 += n as u64,
            Err(err) if timed_out(&err) || err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err(HandshakeError::Io(err)),
        }
    }
    Ok(())
}

fn left(deadline: Instant, limit: Duration) -> Result<Duration, HandshakeError> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(HandshakeError::TimedOut(limit));
    }
    Ok(left.max(Duration::from_millis(1)))
}

/// One TLS connection after its handshake, shared by its reader and writer.
pub(crate) struct TlsShared {
    state: Mutex<ServerConnection>,
    /// Held while records are made and written, so they reach the socket in order; its buffer is
    /// the records on their way, reused.
    sending: Mutex<Vec<u8>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl TlsShared {
    pub fn new(tls: ServerConnection) -> Self {
        TlsShared {
            state: Mutex::new(tls),
            sending: Mutex::new(Vec::new()),
        }
    }

    /// Encrypt as much of `data` as rustls takes (at most its buffer limit) and write it to `out`.
    fn write_plain(&self, data: &[u8], out: &mut impl Write) -> io::Result<usize> {
        let mut records = lock(&self.sending);
        records.clear();
        let taken = {
            let mut tls = lock(&self.state);
            let taken = tls.writer().write(data)?;
            while tls.wants_write() {
                tls.write_tls(&mut *records)?;
            }
            taken
        };
        out.write_all(&records)?;
        Ok(taken)
    }

    /// Write what rustls has to send of its own accord.
    fn send_pending(&self, out: &mut impl Write) -> io::Result<()> {
        let mut records = lock(&self.sending);
        records.clear();
        {
            let mut tls = lock(&self.state);
            while tls.wants_write() {
                tls.write_tls(&mut *records)?;
            }
        }
        out.write_all(&records)
    }

    /// Tell the peer the stream ends (TLS's close_notify alert), waiting at most a second for the
    /// socket: part of the graceful close, before the sending side is shut down.
    pub fn close_notify(&self, conn: &Socket) {
        lock(&self.state).send_close_notify();
        let _ = conn.set_write_timeout(Some(CLOSE_NOTIFY_WAIT));
        let _ = self.send_pending(&mut &*conn);
    }
}

/// The reading side: plaintext from the connection. `raw` reads the socket (with the request's
/// time limits); `out` writes what rustls must send in answer.
pub(crate) struct TlsReader<'a, R, W> {
    tls: &'a TlsShared,
    pub raw: R,
    pub out: W,
    /// Ciphertext read from the socket and not yet given to rustls: `cipher[start..end]`.
    cipher: Box<[u8]>,
    start: usize,
    end: usize,
    /// The socket returned end of stream.
    closed: bool,
}

impl<'a, R: Read, W: Write> TlsReader<'a, R, W> {
    pub fn new(tls: &'a TlsShared, raw: R, out: W) -> Self {
        TlsReader {
            tls,
            raw,
            out,
            cipher: vec![0; CIPHER_CHUNK].into_boxed_slice(),
            start: 0,
            end: 0,
            closed: false,
        }
    }

    /// Give rustls the ciphertext held (as much as it takes) and read plaintext into `buf`:
    /// `Some(n)` when there was some (or the stream has ended: 0), `None` when more ciphertext
    /// is needed. Whether rustls has something to send is the second value.
    fn decrypt(&mut self, buf: &mut [u8]) -> io::Result<(Option<usize>, bool)> {
        let mut tls = lock(&self.tls.state);
        let mut failed = None;
        let mut refused = None;
        while self.start < self.end {
            let mut held = &self.cipher[self.start..self.end];
            match tls.read_tls(&mut held) {
                Ok(n) => self.start += n,
                // Its plaintext buffer is full: read that first.
                Err(err) => {
                    refused = Some(err);
                    break;
                }
            }
            if let Err(err) = tls.process_new_packets() {
                failed = Some(err);
                break;
            }
        }
        if self.closed && self.start == self.end {
            let _ = tls.read_tls(&mut io::empty());
            if let Err(err) = tls.process_new_packets() {
                failed.get_or_insert(err);
            }
        }
        let wants_write = tls.wants_write();
        if let Some(err) = failed {
            drop(tls);
            let _ = self.tls.send_pending(&mut self.out);
            return Err(io::Error::new(io::ErrorKind::InvalidData, err));
        }
        let got = match tls.reader().read(buf) {
            Ok(n) => Some(n),
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => None,
            // The peer closed without close_notify: an end of stream, as most servers take it
            // (a truncation matters only to protocols that do not frame their own end).
            Err(err) if err.kind() == io::ErrorKind::UnexpectedEof => Some(0),
            Err(err) => return Err(err),
        };
        let got = got.or((self.closed && self.start == self.end).then_some(0));
        match (got, refused) {
            // rustls took no input and had no plaintext to give: it never will.
            (None, Some(err)) => Err(err),
            (got, _) => Ok((got, wants_write)),
        }
    }
}

impl<R: Read, W: Write> Read for TlsReader<'_, R, W> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            let (got, wants_write) = self.decrypt(buf)?;
            if wants_write {
                self.tls.send_pending(&mut self.out)?;
            }
            if let Some(n) = got {
                return Ok(n);
            }
            if self.start < self.end {
                continue;
            }
            let n = self.raw.read(&mut self.cipher)?;
            self.closed = n == 0;
            (self.start, self.end) = (0, n);
        }
    }
}

/// The writing side: plaintext to the connection, through `raw`.
pub(crate) struct TlsWriter<'a, W> {
    tls: &'a TlsShared,
    pub raw: W,
}

impl<'a, W: Write> TlsWriter<'a, W> {
    pub fn new(tls: &'a TlsShared, raw: W) -> Self {
        TlsWriter { tls, raw }
    }
}

impl<W: Write> Write for TlsWriter<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        self.tls.write_plain(buf, &mut self.raw)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
