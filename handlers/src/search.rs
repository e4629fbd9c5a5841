//! The `search` handler: the realpython sockets tutorial's application protocol, wire-compatible with
//! its client and server, and hardened against bad input.
//!
//! A frame is a 2-byte big-endian header length, a UTF-8 JSON header (`byteorder`, `content-type`,
//! `content-encoding`, `content-length`, all required), then the content. A `text/json` request
//! `{"action": "search", "value": Q}` is looked up in the index; any other content type is answered
//! with its first 10 bytes. Replies are framed the same way, carry this host's `byteorder`, and are
//! written byte for byte as the tutorial's Python server writes them.
//!
//! The layers, each its own file:
//!
//! - [`frame`]: the sans-IO framing — [`parse_frame`](frame::parse_frame) and its connection-minded
//!   twin [`Decoder`], [`encode_frame`](frame::encode_frame).
//! - [`respond`]: the sans-IO answers — [`respond`](respond::respond) for one frame,
//!   [`answer`] for a buffer of pipelined frames, and the error replies.
//! - [`index`]: the entries and the four match modes; [`config`]: the options.
//! - [`client`]: the other side — the request the tutorial's client sends, what a reply says.
//! - [`fuzz`]: the fuzz target's checks, replayed over the committed corpus by `cargo test`.
//! - This file: [`Search`], the thin blocking handler that reads, answers and writes;
//!   [`session`]: [`SearchSession`], the same over the `reactor` strategy's events.
//!
//! A connection stays open for further requests until the client closes it; pipelined requests are
//! answered in order, all the replies to one read in one write. Bad input is logged (a line with
//! the peer, at the server's bounded rate for what peers do) and answered with `{"error": CODE, "result": "Error: MESSAGE."}`. When the bad frame's end
//! is still known (its `content-length` was usable) the connection goes on with the next frame;
//! otherwise the error reply is the last thing sent and the handler returns: the framework's graceful
//! close (under every strategy) shuts the sending side, reads and discards what the client still
//! sends within a byte and time bound so the close does not reset the connection and lose the reply,
//! and closes. At most one frame is buffered, and a frame is at most
//! 2 + 65 535 + `max_content_length` bytes.
//!
//! Streams only: on datagram sockets `sockserv check` refuses the handler.

pub mod client;
pub mod config;
pub mod frame;
pub mod fuzz;
pub mod index;
mod json;
pub mod respond;
pub mod session;
#[cfg(test)]
mod tutorial;

use std::sync::Arc;

use sockserv_framework::config::OptionErrors;
use sockserv_framework::{log_peer_event, Fields, HandlerOptions, SocketKind, StrategyKind};
use sockserv_plugin::{
    Address, HandlerError, HandlerFactory, HandlerResult, Request, RequestHandler, RequestKind,
    Session, SessionInfo,
};

use crate::{input, Builtin};
use config::SearchOptions;
use frame::{Decoder, FrameError};
use index::Index;
use respond::{answer, Reply};
pub use session::SearchSession;

/// The row of [`BUILTINS`](crate::BUILTINS): streams only (a frame needs a connection), every strategy.
pub const BUILTIN: Builtin = Builtin {
    name: "search",
    summary: "the realpython tutorial's JSON-header search protocol (options: index, match, limit, max_content_length)",
    socket_kinds: &[SocketKind::Tcp, SocketKind::UnixStream],
    strategies: &StrategyKind::ALL,
    strategy_note: None,
    build,
};

/// Builds the search factory: validates the options and loads the index once, for every request.
///
/// # Errors
///
/// The problems of [`SearchOptions::from_table`], or the index file's
/// ([`SearchOptions::load_index`]).
pub fn build(opts: &HandlerOptions<'_>) -> Result<Arc<dyn HandlerFactory>, OptionErrors> {
    let options = SearchOptions::from_table(opts.table, opts.base_dir)?;
    let index = Arc::new(options.load_index()?);
    let max_content_length = options.max_content_length;
    Ok(Arc::new(SearchFactory {
        index,
        max_content_length,
    }))
}

/// Makes a blocking [`Search`] per connection, or a [`SearchSession`] under the reactor; both share
/// the one index.
struct SearchFactory {
    index: Arc<Index>,
    max_content_length: usize,
}

impl HandlerFactory for SearchFactory {
    fn new_handler(&self) -> Box<dyn RequestHandler> {
        Box::new(Search::new(
            Arc::clone(&self.index),
            self.max_content_length,
        ))
    }

    fn new_session(&self, _info: &SessionInfo<'_>) -> Option<Box<dyn Session>> {
        let (index, max) = (Arc::clone(&self.index), self.max_content_length);
        Some(Box::new(SearchSession::new(index, max)))
    }
}

/// Serves one connection: frames in, replies out, until the client closes.
#[derive(Debug)]
pub struct Search {
    index: Arc<Index>,
    max_content_length: usize,
}

impl Search {
    pub fn new(index: Arc<Index>, max_content_length: usize) -> Search {
        Search {
            index,
            max_content_length,
        }
    }
}

impl RequestHandler for Search {
    fn handle(&mut self, req: &mut Request<'_>) -> HandlerResult {
        if req.kind == RequestKind::Datagram {
            return Err(HandlerError::Protocol(
                "search runs on stream sockets only".into(),
            ));
        }
        let mut decoder = Decoder::new(self.max_content_length);
        let mut pending: Vec<u8> = Vec::new();
        loop {
            let chunk = input::fill_buf(req.rfile)?;
            if chunk.is_empty() {
                end_of_input(req, &decoder, &pending);
                return Ok(());
            }
            let len = chunk.len();
            pending.extend_from_slice(chunk);
            req.rfile.consume(len);
            if !self.answer_pending(req, &mut decoder, &mut pending)? {
                // The framework's graceful close keeps the reply from being lost to a reset.
                return Ok(());
            }
            // What is left is a frame not yet whole: the server's max_buffered_input counts it.
            req.control.hold_input(pending.len());
        }
    }
}

impl Search {
    /// Answers every whole frame in `pending` with one write and drops those frames; returns false
    /// when the connection must close (the frames can no longer be told apart).
    fn answer_pending(
        &self,
        req: &mut Request<'_>,
        decoder: &mut Decoder,
        pending: &mut Vec<u8>,
    ) -> Result<bool, HandlerError> {
        let answered = answer(decoder, pending, &self.index);
        if !answered.replies.is_empty() {
            req.wfile.write_all(&answered.replies)?;
        }
        let server = req.server.server_name();
        for err in &answered.skipped {
            warn(
                server,
                req.peer,
                err,
                "answered with an error; the connection goes on",
            );
        }
        if let Some(err) = answered.fatal {
            warn(
                server,
                req.peer,
                &err,
                "answered with an error; closing the connection",
            );
            return Ok(false);
        }
        pending.drain(..answered.consumed);
        Ok(true)
    }
}

/// The peer closed its side: fine between frames; in the middle of one, say so.
fn end_of_input(req: &mut Request<'_>, decoder: &Decoder, pending: &[u8]) {
    if pending.is_empty() {
        return;
    }
    let err = decoder.truncated(pending.len());
    warn(
        req.server.server_name(),
        req.peer,
        &err,
        "the connection is closed",
    );
    // The peer may have closed both ways: the reply is a courtesy, and its failure no news.
    let _ = req.wfile.write_all(&Reply::frame_error(&err).encode());
}

/// One warning per bad frame, with the server and the peer, like the server's own error lines.
/// One line per bad frame: the peer's doing, so at the server's bounded rate for such lines (a
/// client sending bad frames in a loop cannot flood the log).
fn warn(server: &str, peer: &Address, err: &FrameError, outcome: &str) {
    let fields = Fields {
        server,
        peer: Some(peer),
        ..Fields::default()
    };
    log_peer_event!(
        &fields,
        format_args!("{server}: search request from {peer}: {err} ({outcome})"),
    );
}

#[cfg(test)]
mod tests;
