//! A reactor connection's bytes over TLS, without blocking: the loop's reads and writes go
//! through the connection's rustls state instead of straight to the socket, with the same
//! meaning — a read gives plaintext, 0 at the end of the stream, or `WouldBlock` once the socket
//! has nothing more; a flush writes until the output is out or the socket would block.
//!
//! Output stays bounded as without TLS: rustls takes the session's output only while it holds
//! no unsent records, and at most `TLS_BUFFER_LIMIT` bytes at a time, so a connection holds its
//! `output` (bounded by `MAX_PENDING_OUTPUT`) plus at most one such chunk.

use std::io::{self, Read};

use rustls::ServerConnection;
use socket2::Socket;
use sockserv_plugin::OutputBuffer;

/// Plaintext into `buffer`: how much, and how many bytes the socket gave (ciphertext) to get it.
///
/// # Errors
/// `WouldBlock` when the socket has nothing more; `InvalidData` when the peer sent something
/// TLS refuses (its alert is queued, for the next flush); the socket's own errors.
pub(super) fn read(
    tls: &mut ServerConnection,
    socket: &Socket,
    buffer: &mut [u8],
) -> io::Result<(usize, usize)> {
    let mut moved = 0;
    loop {
        match tls.reader().read(buffer) {
            Ok(n) => return Ok((n, moved)),
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
            // The peer closed without close_notify: an end of stream, as most servers take it.
            Err(err) if err.kind() == io::ErrorKind::UnexpectedEof => return Ok((0, moved)),
            Err(err) => return Err(err),
        }
        match tls.read_tls(&mut &*socket) {
            Ok(n) => {
                moved += n;
                if let Err(err) = tls.process_new_packets() {
                    return Err(io::Error::new(io::ErrorKind::InvalidData, err));
                }
                if n == 0 {
                    // rustls knows the stream ended: the reader now says how.
                    return match tls.reader().read(buffer) {
                        Ok(n) => Ok((n, moved)),
                        Err(_) => Ok((0, moved)),
                    };
                }
            }
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
}

/// Write the session's output through rustls until it is all on the wire or the socket would
/// block; returns the bytes the socket took.
///
/// # Errors
/// The socket's errors (a reset, a broken pipe).
pub(super) fn flush(
    tls: &mut ServerConnection,
    socket: &Socket,
    output: &mut OutputBuffer,
) -> io::Result<usize> {
    let mut written = 0;
    loop {
        while tls.wants_write() {
            match tls.write_tls(&mut &*socket) {
                Ok(n) => written += n,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return Ok(written),
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return Err(err),
            }
        }
        if output.unwritten_len() == 0 {
            return Ok(written);
        }
        let taken = io::Write::write(&mut tls.writer(), output.unwritten())?;
        if taken == 0 {
            return Ok(written);
        }
        output.consume(taken);
    }
}
