//! The timestamp handler, event-driven, for the `reactor` strategy: the same sans-IO core as the
//! blocking [`Timestamp`](super::Timestamp) — one stamp per chunk read, or the [`LineSplitter`] under
//! `line` framing — with the clock read here, once per chunk that has something to answer.
//!
//! Streams only: the reactor answers datagrams in its serving thread with the blocking handler.

use std::sync::Arc;

use sockserv_plugin::{Session, SessionContext};

use super::{now, push_stamped, Framing, LineSplitter, TimestampOptions, MAX_LINE};

/// One connection's replies: each chunk stamped as it arrives, or each line once it is complete.
#[derive(Debug)]
pub struct TimestampSession {
    options: Arc<TimestampOptions>,
    /// The partial line held between reads, under `line` framing (at most [`MAX_LINE`] bytes).
    lines: Option<LineSplitter>,
}

impl TimestampSession {
    pub fn new(options: Arc<TimestampOptions>) -> TimestampSession {
        let lines = (options.framing == Framing::Line).then(|| LineSplitter::new(MAX_LINE));
        TimestampSession { options, lines }
    }

    /// Stamps every line `feed` hands out with one reading of the clock; returns the replies.
    fn stamp_lines(&self, feed: impl FnOnce(&mut dyn FnMut(&[u8]))) -> Vec<u8> {
        let mut time = None;
        let mut reply = Vec::new();
        feed(&mut |line| {
            push_stamped(
                &mut reply,
                time.get_or_insert_with(|| now(&self.options)),
                line,
            )
        });
        reply
    }
}

impl Session for TimestampSession {
    fn on_data(&mut self, data: &[u8], ctx: &mut SessionContext<'_>) {
        let reply = match self.lines.take() {
            None => self.stamp_lines(|answer| answer(data)),
            Some(mut lines) => {
                let reply = self.stamp_lines(|answer| lines.push(data, answer));
                self.lines = Some(lines);
                reply
            }
        };
        // One write per chunk read: every line it completed, in order (as the blocking handler).
        ctx.write(&reply);
    }

    /// End of input: a partial line left over is answered too, then the connection closes.
    fn on_eof(&mut self, ctx: &mut SessionContext<'_>) {
        if let Some(mut lines) = self.lines.take() {
            let reply = self.stamp_lines(|answer| lines.finish(answer));
            ctx.write(&reply);
        }
        ctx.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing;

    fn session(options: &str) -> TimestampSession {
        let table = options.parse().unwrap();
        TimestampSession::new(Arc::new(TimestampOptions::from_table(&table).unwrap()))
    }

    /// What each chunk's event wrote, then what the end of input wrote and whether it closed.
    fn drive(session: &mut TimestampSession, chunks: &[&[u8]]) -> (Vec<String>, String, bool) {
        let mut replies = Vec::new();
        for chunk in chunks {
            let (written, _) = testing::session_event(|ctx| session.on_data(chunk, ctx));
            replies.push(String::from_utf8(written).unwrap());
        }
        let (last, closed) = testing::session_event(|ctx| session.on_eof(ctx));
        (replies, String::from_utf8(last).unwrap(), closed)
    }

    /// `reply` with every `[...] ` stamp of the fixed format `%H` replaced by `[t] `.
    fn unstamped(reply: &str) -> String {
        let mut out = String::new();
        for piece in reply.split_inclusive('\n') {
            let rest = piece.split_once("] ").map_or(piece, |(_, rest)| rest);
            out += "[t] ";
            out += rest;
        }
        out
    }

    #[test]
    fn every_chunk_gets_one_stamped_reply_and_eof_closes() {
        let mut session = session("utc = true\nformat = '%H'");
        let (replies, last, closed) = drive(&mut session, &[b"hello", b"again\r\n"]);
        assert_eq!(replies.len(), 2);
        assert!(replies[0].starts_with('[') && replies[0].ends_with("] hello"));
        assert!(replies[1].ends_with("] again\r\n"), "{:?}", replies[1]);
        assert_eq!((last.as_str(), closed), ("", true));
    }

    #[test]
    fn line_framing_answers_complete_lines_and_the_rest_at_eof() {
        let mut session = session("framing = 'line'\nformat = '%H'");
        let chunks: [&[u8]; 3] = [b"one\ntw", b"o\r\nthree\n", b"tail"];
        let (replies, last, closed) = drive(&mut session, &chunks);
        assert_eq!(unstamped(&replies[0]), "[t] one\n");
        assert_eq!(unstamped(&replies[1]), "[t] two\r\n[t] three\n");
        assert_eq!(replies[2], "");
        assert_eq!(unstamped(&last), "[t] tail");
        assert!(closed);
    }

    #[test]
    fn a_line_that_never_ends_is_answered_in_pieces_of_max_line() {
        let mut session = session("framing = 'line'");
        let long = vec![b'x'; MAX_LINE + 10];
        let (replies, last, _) = drive(&mut session, &[&long]);
        let stamped = replies[0].len() - MAX_LINE;
        assert!(stamped < 40, "one stamped piece of MAX_LINE bytes");
        assert_eq!(
            last.len() - 10,
            stamped,
            "the 10 bytes left answered at eof"
        );
    }
}
