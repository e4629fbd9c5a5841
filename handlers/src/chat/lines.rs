//! Where one chat message ends: cuts a member's byte stream into messages, holding at most one
//! partial line of at most `max` bytes.
//!
//! The rule, which lets both kinds of client the seeds use share a room:
//!
//! - A newline (`\n`, or `\r\n`) always ends a message; the line ending is not part of it.
//! - A member that has never sent a newline is a *raw* client — the tutorial's, which sends every
//!   message as one bare `send` — so the end of each read also ends a message.
//! - Once a member has sent a newline it is a *line* client (nc, telnet): bytes after its last newline
//!   wait for the next one, so a line split over two reads is still one message.
//! - A message longer than `max` bytes is cut: its first `max` bytes are the message (marked `cut`),
//!   the rest up to the end of the line (or of the read, for a raw client) is dropped unread.
//! - At end of input, a partial line still held is a message of its own.
//!
//! Each [`LineAssembler::push`] call is one read, so an event loop and a thread per connection drive
//! it the same way. [`LineAssembler::push_up_to`] takes only as much of a read as makes a given
//! number of messages, and says how much that was: the rest stays unread, for a member that has no
//! more messages to spend yet (see [`rate`](super::rate)).

/// One message cut from the stream: its bytes (no line ending), and whether it was cut short.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// The message, without its `\r\n` or `\n`; at most `max_line` bytes.
    pub bytes: Vec<u8>,
    /// The message was longer than `max_line`: `bytes` is its start, the rest was thrown away.
    pub cut: bool,
}

/// Assembles one member's messages from the reads of its connection.
#[derive(Debug)]
pub struct LineAssembler {
    pending: Vec<u8>,
    max: usize,
    /// True once the member sent a newline: it is a line client from then on.
    lines: bool,
    /// True while dropping the rest of a line that was cut.
    skipping: bool,
}

impl LineAssembler {
    /// An assembler for messages of at most `max` bytes (`max` ≥ 1).
    pub fn new(max: usize) -> LineAssembler {
        LineAssembler {
            pending: Vec::new(),
            max: max.max(1),
            lines: false,
            skipping: false,
        }
    }

    /// Takes in the bytes of one read, calling `emit` with every message they complete, in order.
    pub fn push(&mut self, chunk: &[u8], emit: impl FnMut(Line)) {
        let _all = self.push_up_to(chunk, usize::MAX, emit);
    }

    /// Takes in the bytes of one read up to the end of its `max`-th message (all of them if it makes
    /// fewer), calling `emit` with each; returns how many bytes it took. A line client's bytes after
    /// its last whole line are taken (held as the partial line) only while messages are left to
    /// make; a raw client's read is one message, taken whole or not at all.
    #[must_use = "the bytes not taken are still to be pushed"]
    pub fn push_up_to(&mut self, chunk: &[u8], max: usize, mut emit: impl FnMut(Line)) -> usize {
        let made = std::cell::Cell::new(0);
        let mut count = |line: Line| {
            made.set(made.get() + 1);
            emit(line);
        };
        let mut taken = 0;
        while let Some(at) = chunk[taken..].iter().position(|&b| b == b'\n') {
            if made.get() >= max {
                return taken;
            }
            self.lines = true;
            let mut line = &chunk[taken..taken + at];
            if line.last() == Some(&b'\r') {
                line = &line[..line.len() - 1];
            }
            self.take(line, &mut count);
            if !self.skipping {
                self.emit_pending(false, &mut count);
            }
            self.skipping = false;
            taken += at + 1;
        }
        if made.get() >= max {
            return taken;
        }
        self.take(&chunk[taken..], &mut count);
        if !self.lines {
            // A raw client's read is a whole message.
            self.emit_pending(false, &mut count);
            self.skipping = false;
        }
        chunk.len()
    }

    /// End of input: a partial line still held is a message.
    pub fn finish(&mut self, mut emit: impl FnMut(Line)) {
        self.emit_pending(false, &mut emit);
        self.skipping = false;
    }

    /// Adds part of a line to the pending bytes, cutting the line once it outgrows `max`.
    fn take(&mut self, part: &[u8], emit: &mut impl FnMut(Line)) {
        if self.skipping {
            return;
        }
        let room = self.max - self.pending.len();
        if part.len() <= room {
            self.pending.extend_from_slice(part);
            return;
        }
        self.pending.extend_from_slice(&part[..room]);
        self.emit_pending(true, emit);
        self.skipping = true;
    }

    fn emit_pending(&mut self, cut: bool, emit: &mut impl FnMut(Line)) {
        if self.pending.is_empty() && !cut {
            return;
        }
        let bytes = std::mem::take(&mut self.pending);
        emit(Line { bytes, cut });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(max: usize, reads: &[&[u8]], finish: bool) -> Vec<(String, bool)> {
        let mut lines = LineAssembler::new(max);
        let mut out = Vec::new();
        let mut collect = |line: Line| out.push((String::from_utf8(line.bytes).unwrap(), line.cut));
        for read in reads {
            lines.push(read, &mut collect);
        }
        if finish {
            lines.finish(&mut collect);
        }
        out
    }

    fn whole(texts: &[&str]) -> Vec<(String, bool)> {
        texts.iter().map(|t| (t.to_string(), false)).collect()
    }

    #[test]
    fn a_raw_client_s_every_read_is_a_message() {
        assert_eq!(
            run(100, &[b"hello", b"world"], false),
            whole(&["hello", "world"])
        );
    }

    #[test]
    fn a_newline_ends_a_message_with_or_without_cr() {
        let got = run(100, &[b"one\ntwo\r\n\nthree\n"], false);
        assert_eq!(got, whole(&["one", "two", "three"]));
    }

    #[test]
    fn a_line_client_s_split_line_is_one_message() {
        let got = run(100, &[b"hi\n", b"hel", b"lo", b"\r\n"], false);
        assert_eq!(got, whole(&["hi", "hello"]));
    }

    #[test]
    fn a_partial_line_at_end_of_input_is_a_message() {
        assert_eq!(run(100, &[b"a\nrest"], false), whole(&["a"]));
        assert_eq!(run(100, &[b"a\nrest"], true), whole(&["a", "rest"]));
        assert!(run(100, &[b"a\n"], true).len() == 1);
    }

    #[test]
    fn a_long_line_is_cut_and_its_rest_dropped() {
        let got = run(4, &[b"abcdefgh\nnext\n"], false);
        assert_eq!(got, [("abcd".into(), true), ("next".into(), false)]);
        // Cut across reads: the rest is dropped until the newline comes.
        let got = run(4, &[b"x\nabc", b"def", b"ghi\nok\n"], false);
        assert_eq!(
            got,
            [
                ("x".into(), false),
                ("abcd".into(), true),
                ("ok".into(), false)
            ]
        );
    }

    #[test]
    fn a_raw_client_s_long_read_is_cut_and_the_next_read_starts_afresh() {
        let got = run(3, &[b"abcdef", b"xy"], false);
        assert_eq!(got, [("abc".into(), true), ("xy".into(), false)]);
    }

    #[test]
    fn exactly_max_bytes_is_not_cut() {
        assert_eq!(run(4, &[b"abcd\n"], false), whole(&["abcd"]));
        assert_eq!(run(4, &[b"abcd"], false), whole(&["abcd"]));
    }

    #[test]
    fn push_up_to_stops_after_its_messages_and_says_where() {
        let mut lines = LineAssembler::new(100);
        let mut got = Vec::new();
        let chunk = b"a\n\nb\r\nc\npartial";
        let taken = lines.push_up_to(chunk, 2, |line| got.push(line.bytes));
        assert_eq!(got, [b"a".to_vec(), b"b".to_vec()]);
        assert_eq!(&chunk[taken..], b"c\npartial");
        let taken = lines.push_up_to(b"c\npartial", 1, |line| got.push(line.bytes));
        assert_eq!(taken, 2, "the partial line waits for a message to spend");
        let taken = lines.push_up_to(b"partial", 1, |line| got.push(line.bytes));
        assert_eq!(taken, 7);
        assert_eq!(got.len(), 3);
        // A raw client's read: whole or not at all.
        let mut raw = LineAssembler::new(100);
        assert_eq!(raw.push_up_to(b"hello", 0, |_| panic!()), 0);
        assert_eq!(raw.push_up_to(b"hello", 1, |line| got.push(line.bytes)), 5);
        assert_eq!(got.last().unwrap(), b"hello");
    }

    #[test]
    fn a_cut_line_costs_one_message() {
        let mut lines = LineAssembler::new(4);
        let mut got = Vec::new();
        let chunk = b"abcdefgh\nok\n";
        let taken = lines.push_up_to(chunk, 1, |line| got.push((line.bytes, line.cut)));
        assert_eq!(got, [(b"abcd".to_vec(), true)]);
        assert_eq!(&chunk[taken..], b"ok\n");
    }

    #[test]
    fn memory_stays_bounded_without_newlines() {
        let mut lines = LineAssembler::new(8);
        lines.push(b"\n", |_| {});
        for _ in 0..1000 {
            lines.push(&[b'x'; 100], |_| {});
            assert!(lines.pending.len() <= 8);
        }
    }
}
