//! Test support: runs a handler over an in-memory request, the way the server drives it, so handler
//! tests need no sockets. A stream arrives in the chunks a test chooses (each one `recv`); a datagram
//! arrives whole, and the writes the handler makes are recorded one by one. Sessions get their events
//! one at a time over an output buffer, as the reactor calls them ([`SessionOutput`]).

use std::collections::VecDeque;
use std::io::{self, BufRead, Read, Write};
use std::sync::Arc;
use std::time::Instant;

use sockserv_framework::HandlerOptions;
use sockserv_plugin::{
    Address, HandlerFactory, OutputBuffer, Reading, Request, RequestHandler, RequestKind,
    ServerContext, SessionContext,
};

pub(crate) struct Context;

/// The server context sessions and requests see in tests.
pub(crate) static TEST_CONTEXT: Context = Context;

impl ServerContext for Context {
    fn server_name(&self) -> &str {
        "test"
    }

    fn shutdown(&self) {}
}

/// A reader that hands out the given chunks one `fill_buf` at a time, like a socket whose peer sent
/// them one `send` apart.
struct Chunks {
    chunks: VecDeque<Vec<u8>>,
    pos: usize,
}

impl Read for Chunks {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let n = self.fill_buf()?.len().min(out.len());
        out[..n].copy_from_slice(&self.fill_buf()?[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl BufRead for Chunks {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        Ok(self
            .chunks
            .front()
            .map_or(&[][..], |chunk| &chunk[self.pos..]))
    }

    fn consume(&mut self, amt: usize) {
        self.pos += amt;
        if self
            .chunks
            .front()
            .is_some_and(|chunk| self.pos >= chunk.len())
        {
            self.chunks.pop_front();
            self.pos = 0;
        }
    }
}

/// Every `write` call a handler made, in order.
#[derive(Default)]
pub(crate) struct Writes(pub(crate) Vec<Vec<u8>>);

impl Writes {
    /// Everything written, joined.
    pub(crate) fn joined(&self) -> Vec<u8> {
        self.0.concat()
    }
}

impl Write for Writes {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.push(buf.to_vec());
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Builds a factory from options written as TOML, as the config would.
pub(crate) fn factory(
    build: crate::BuildBuiltin,
    options: &str,
) -> Result<Arc<dyn HandlerFactory>, String> {
    let table: toml::Table = options.parse().expect("test options are valid TOML");
    build(&HandlerOptions {
        table: &table,
        base_dir: std::path::Path::new("."),
        server: "test",
    })
    .map_err(|errors| errors.to_string())
}

/// Serves one connection whose peer sends `chunks`, then closes; returns the handler's writes.
pub(crate) fn stream(handler: &mut dyn RequestHandler, chunks: &[&[u8]]) -> Writes {
    let mut rfile = Chunks {
        chunks: chunks.iter().map(|chunk| chunk.to_vec()).collect(),
        pos: 0,
    };
    run(handler, RequestKind::Stream, &mut rfile, None)
}

/// Serves one datagram; returns the handler's writes (which the server would send as one datagram).
pub(crate) fn datagram(handler: &mut dyn RequestHandler, packet: &[u8]) -> Writes {
    let mut rfile = io::Cursor::new(packet);
    run(handler, RequestKind::Datagram, &mut rfile, Some(packet))
}

fn run(
    handler: &mut dyn RequestHandler,
    kind: RequestKind,
    rfile: &mut (dyn BufRead + Send),
    packet: Option<&[u8]>,
) -> Writes {
    let peer = Address::Inet("127.0.0.1:40000".parse().unwrap());
    let local = Address::Inet("127.0.0.1:20000".parse().unwrap());
    let mut wfile = Writes::default();
    let mut req = Request {
        kind,
        rfile,
        wfile: &mut wfile,
        peer: &peer,
        local: &local,
        packet,
        server: &Context,
        control: &sockserv_plugin::NoControl,
        tls: None,
    };
    handler.setup(&mut req).expect("setup");
    handler.handle(&mut req).expect("handle");
    handler.finish(&mut req).expect("finish");
    wfile
}

/// A session's connection as the reactor keeps it: the reactor's own [`OutputBuffer`] (so `pending()`
/// is counted by the same code as under the real reactor: a prefix the socket has taken stays in the
/// buffer but is not pending), whether the session asked to close, whether its reading is paused,
/// and the time of the wake it asked for. The test plays the reactor: it delivers no input while
/// `paused`, and runs the wake when it moves its clock to `wake_at`.
#[derive(Default)]
pub(crate) struct SessionOutput {
    output: OutputBuffer,
    pub(crate) closing: bool,
    pub(crate) paused: bool,
    pub(crate) wake_at: Option<Instant>,
    /// What the socket's send queue says during the events (`None`: the strategy cannot say).
    pub(crate) send_queue: Option<usize>,
}

impl SessionOutput {
    /// Runs one event; returns what it wrote.
    pub(crate) fn event(&mut self, event: impl FnOnce(&mut SessionContext<'_>)) -> Vec<u8> {
        let peer = Address::Inet("127.0.0.1:40000".parse().unwrap());
        let local = Address::Inet("127.0.0.1:20000".parse().unwrap());
        let before = self.output.unwritten_len();
        let send_queue = self.send_queue;
        let probe = move || send_queue;
        let mut ctx = SessionContext::over_buffer(&mut self.output, &peer, &local, &Context)
            .with_send_queue(&probe);
        event(&mut ctx);
        self.closing |= ctx.closing();
        if let Some(reading) = ctx.wants_reading() {
            self.paused = reading == Reading::Paused;
        }
        self.wake_at = ctx.wants_wake_at().or(self.wake_at);
        self.output.unwritten()[before..].to_vec()
    }

    /// Bytes queued and not yet taken by the socket.
    pub(crate) fn pending(&self) -> usize {
        self.output.unwritten_len()
    }

    /// The socket takes the next `n` bytes (all pending, at most), as a write would; returns them.
    pub(crate) fn socket_takes(&mut self, n: usize) -> Vec<u8> {
        let taken = self.output.unwritten()[..n.min(self.pending())].to_vec();
        self.output.consume(taken.len());
        taken
    }
}

/// Runs one event over an empty output; returns what it wrote and whether it asked to close.
pub(crate) fn session_event(event: impl FnOnce(&mut SessionContext<'_>)) -> (Vec<u8>, bool) {
    let mut output = SessionOutput::default();
    let written = output.event(event);
    (written, output.closing)
}
