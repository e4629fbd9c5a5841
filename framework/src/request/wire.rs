//! The two sides of a blocking stream request — the connection itself, or TLS over it (see
//! `tls::blocking`) — and the handshake that starts the TLS side.

use std::io::{self, Read, Write};
use std::sync::Arc;

use socket2::Socket;
use sockserv_plugin::TlsInfo;

use super::streams::Counted;
use super::Shared;
use crate::tls::blocking::{TlsReader, TlsShared, TlsWriter};
use crate::tls::{self, handshake_timeout};
use crate::RequestFailure;

/// The TLS handshake of a blocking connection: the connection's TLS state and what the handler
/// will see of it, or the failure to report.
///
/// The state comes back boxed, and this is never inlined: a rustls connection is a few KiB, and
/// held in `serve_stream`'s frame it made every request's stack that much deeper, TLS or not (the
/// stack probes touch each page of a frame on entry), which each pool worker then kept resident:
/// +16 MiB for 4 096 workers after they had all served (bench/RESULTS.md, "Limits").
#[inline(never)]
pub(super) fn shake_hands(
    shared: &Shared,
    conn: &Socket,
    config: Arc<rustls::ServerConfig>,
    moved: &mut (u64, u64),
) -> Result<(Box<TlsShared>, TlsInfo), RequestFailure> {
    let mut session = rustls::ServerConnection::new(config)
        .map_err(|err| RequestFailure::Handshake(err.to_string()))?;
    crate::tls::limit_buffers(&mut session);
    let limit = handshake_timeout(shared.gate.limits());
    tls::blocking::handshake(conn, &mut session, limit, moved)
        .map_err(|err| RequestFailure::Handshake(err.to_string()))?;
    let info = tls::identity(&session);
    Ok((Box::new(TlsShared::new(session)), info))
}

/// The reading side of a stream request: the connection itself, or TLS over it.
pub(super) enum ReadWire<'a> {
    Plain(Counted<'a>),
    Tls(TlsReader<'a, Counted<'a>, Counted<'a>>),
}

impl ReadWire<'_> {
    /// A read returned end of stream.
    pub fn eof(&self) -> bool {
        match self {
            ReadWire::Plain(counted) => counted.eof,
            ReadWire::Tls(reader) => reader.raw.eof,
        }
    }

    /// Bytes read from the connection (ciphertext under TLS).
    pub fn bytes_in(&self) -> u64 {
        match self {
            ReadWire::Plain(counted) => counted.tally.total,
            ReadWire::Tls(reader) => reader.raw.tally.total,
        }
    }

    /// Add what this side counted to the server's metrics (at the connection's close).
    pub fn flush_metrics(&mut self) {
        match self {
            ReadWire::Plain(counted) => counted.flush_metrics(),
            ReadWire::Tls(reader) => {
                reader.raw.flush_metrics();
                reader.out.flush_metrics();
            }
        }
    }

    /// Bytes this side wrote: a TLS reader's alerts and key updates.
    pub fn bytes_out(&self) -> u64 {
        match self {
            ReadWire::Plain(_) => 0,
            ReadWire::Tls(reader) => reader.out.tally.total,
        }
    }
}

impl Read for ReadWire<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            ReadWire::Plain(counted) => counted.read(buf),
            ReadWire::Tls(reader) => reader.read(buf),
        }
    }
}

/// The writing side of a stream request.
pub(super) enum WriteWire<'a> {
    Plain(Counted<'a>),
    Tls(TlsWriter<'a, Counted<'a>>),
}

impl WriteWire<'_> {
    /// Bytes written to the connection (ciphertext under TLS).
    pub fn bytes_out(&self) -> u64 {
        match self {
            WriteWire::Plain(counted) => counted.tally.total,
            WriteWire::Tls(writer) => writer.raw.tally.total,
        }
    }

    /// Add what this side counted to the server's metrics (at the connection's close).
    pub fn flush_metrics(&mut self) {
        match self {
            WriteWire::Plain(counted) => counted.flush_metrics(),
            WriteWire::Tls(writer) => writer.raw.flush_metrics(),
        }
    }
}

impl Write for WriteWire<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            WriteWire::Plain(counted) => counted.write(buf),
            WriteWire::Tls(writer) => writer.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
