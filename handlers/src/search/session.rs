//! The search handler, event-driven, for the `reactor` strategy: the blocking [`Search`](super::Search)
//! loop turned inside out over the same sans-IO core. Bytes are buffered until [`answer`] has whole
//! frames to answer; the [`Decoder`] refuses a `content-length` above the maximum as soon as the
//! header is read, so at most one frame (and one read past it) is ever buffered, exactly as on the
//! blocking path. Error replies, their log lines and the close rules are the blocking handler's.
//!
//! After a fatal error the session asks to close once the reply is written
//! (`SessionContext::close`); the framework's graceful close does the rest under the reactor as under
//! the blocking strategies (shut the sending side, drop what the client still sends within a bound,
//! close), so the close never resets the connection under the reply.

use std::sync::Arc;

use sockserv_plugin::{Session, SessionContext};

use super::frame::Decoder;
use super::index::Index;
use super::respond::{answer, Reply};
use super::warn;

/// One connection: the decoder's state and the bytes of the frame not yet whole.
#[derive(Debug)]
pub struct SearchSession {
    index: Arc<Index>,
    decoder: Decoder,
    pending: Vec<u8>,
    /// A fatal error was answered: the rest of the input is ignored until the close.
    done: bool,
}

impl SearchSession {
    pub fn new(index: Arc<Index>, max_content_length: usize) -> Self {
        SearchSession {
            index,
            decoder: Decoder::new(max_content_length),
            pending: Vec::new(),
            done: false,
        }
    }
}

impl Session for SearchSession {
    /// Answers every whole frame buffered, all replies in one write; keeps a partial frame.
    fn on_data(&mut self, data: &[u8], ctx: &mut SessionContext<'_>) {
        if self.done {
            return;
        }
        self.pending.extend_from_slice(data);
        let answered = answer(&mut self.decoder, &self.pending, &self.index);
        ctx.write(&answered.replies);
        let server = ctx.server.server_name();
        for err in &answered.skipped {
            let outcome = "answered with an error; the connection goes on";
            warn(server, ctx.peer, err, outcome);
        }
        if let Some(err) = answered.fatal {
            let outcome = "answered with an error; closing the connection";
            warn(server, ctx.peer, &err, outcome);
            self.done = true;
            self.pending = Vec::new();
            ctx.hold_input(0);
            ctx.close();
            return;
        }
        self.pending.drain(..answered.consumed);
        // A frame not yet whole: the server's max_buffered_input counts it.
        ctx.hold_input(self.pending.len());
    }

    /// The peer closed its side: fine between frames; in the middle of one, say so. Then close.
    fn on_eof(&mut self, ctx: &mut SessionContext<'_>) {
        if !self.done && !self.pending.is_empty() {
            let err = self.decoder.truncated(self.pending.len());
            warn(
                ctx.server.server_name(),
                ctx.peer,
                &err,
                "the connection is closed",
            );
            ctx.write(&Reply::frame_error(&err).encode());
        }
        ctx.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::search::client::{read_answer, request, Answer};
    use crate::testing::SessionOutput;

    fn session(max: usize) -> SearchSession {
        SearchSession::new(Arc::new(Index::default()), max)
    }

    /// The `"result"` and `"error"` of every reply in `bytes`.
    fn answers(mut bytes: &[u8]) -> Vec<(String, Option<String>)> {
        let mut found = Vec::new();
        while let Some((answer, used)) = read_answer(bytes, usize::MAX).unwrap() {
            match answer {
                Answer::Json { result, error, .. } => found.push((result, error)),
                Answer::Binary { .. } => panic!("binary reply"),
            }
            bytes = &bytes[used..];
        }
        assert!(bytes.is_empty(), "a partial reply");
        found
    }

    #[test]
    fn a_request_in_pieces_is_answered_once_whole_and_pipelined_ones_in_order() {
        let mut session = session(1 << 20);
        let mut out = SessionOutput::default();
        let first = request("search", "morpheus");
        let (head, tail) = first.split_at(30);
        assert!(out.event(|ctx| session.on_data(head, ctx)).is_empty());
        let two = [tail, &request("search", "neo")].concat();
        let got = answers(&out.event(|ctx| session.on_data(&two, ctx)));
        assert_eq!(got.len(), 2);
        assert!(got[0].0.starts_with("Follow the white rabbit."), "{got:?}");
        assert_eq!(got[1].0, "No match for 'neo'.");
        assert!(session.pending.is_empty());
        out.event(|ctx| session.on_eof(ctx));
        assert!(out.closing);
    }

    #[test]
    fn content_length_above_the_maximum_is_refused_before_the_content_is_buffered() {
        let mut session = session(1000);
        let mut out = SessionOutput::default();
        let header = br#"{"byteorder": "big", "content-type": "binary/x", "content-encoding": "binary", "content-length": 2000000}"#;
        let frame = [&(header.len() as u16).to_be_bytes()[..], header].concat();
        let got = answers(&out.event(|ctx| session.on_data(&frame, ctx)));
        assert_eq!(got[0].1.as_deref(), Some("content-too-large"));
        assert!(out.closing);
        // The content that follows anyway is not kept.
        out.event(|ctx| session.on_data(&[b'x'; 65536], ctx));
        assert!(session.pending.is_empty());
    }

    #[test]
    fn a_frame_cut_short_by_eof_gets_a_truncated_reply() {
        let mut session = session(1 << 20);
        let mut out = SessionOutput::default();
        out.event(|ctx| session.on_data(&request("search", "ring")[..50], ctx));
        let got = answers(&out.event(|ctx| session.on_eof(ctx)));
        assert_eq!(got[0].1.as_deref(), Some("truncated"));
        assert!(out.closing);
    }
}
