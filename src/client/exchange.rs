//! The request/reply loop shared by every request/reply protocol: take each message in turn, send it as
//! one request, wait for its reply, print the reply, go on — one connection for all of them, like the
//! tutorial clients.
//!
//! A protocol plugs in as a [`Dialect`]: how a message becomes request bytes, and when bytes read from a
//! stream add up to a whole reply. Messages and output are plain `BufRead`/`Write` values, so the loop
//! runs in tests without a terminal.

use std::io::{self, BufRead, Write};

use anyhow::Context;

use super::transport::Connection;

/// What a request/reply protocol tells the loop.
pub trait Dialect {
    /// The bytes that carry `message` as one request; `stream` is false on datagram sockets, where
    /// one datagram is one request and needs no framing.
    fn request(&self, message: &[u8], stream: bool) -> Vec<u8>;

    /// On a stream: whether `received` is the whole reply to `request` (called after every read).
    fn reply_complete(&self, request: &[u8], received: &[u8]) -> bool;
}

/// Where messages come from: the command line if it has any, else `input` line by line until EOF.
pub fn messages<'a>(
    args: Vec<String>,
    input: impl BufRead + 'a,
) -> Box<dyn Iterator<Item = io::Result<Vec<u8>>> + 'a> {
    if args.is_empty() {
        Box::new(lines(input))
    } else {
        Box::new(args.into_iter().map(|arg| Ok(arg.into_bytes())))
    }
}

/// Each line of `input` without its line ending (`\n` or `\r\n`), as raw bytes: no UTF-8 is required.
fn lines(input: impl BufRead) -> impl Iterator<Item = io::Result<Vec<u8>>> {
    input.split(b'\n').map(|line| {
        line.map(|mut line| {
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            line
        })
    })
}

/// Send every message over `connection` and write every reply to `out`, stopping at the first error.
pub fn converse(
    connection: &mut Connection,
    dialect: &dyn Dialect,
    messages: impl IntoIterator<Item = io::Result<Vec<u8>>>,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    for message in messages {
        let message = message.context("cannot read a message from stdin")?;
        let request = dialect.request(&message, connection.is_stream());
        if request.is_empty() && connection.is_stream() {
            // Zero bytes on a stream are no request at all; an empty datagram is one.
            log::warn!("skipping an empty message: a stream has nothing to send");
            continue;
        }
        connection.send(&request)?;
        let reply = connection.receive(&|received| dialect.reply_complete(&request, received))?;
        write_reply(out, &reply).context("cannot print the reply")?;
    }
    Ok(())
}

/// Write `reply` exactly as received, ending it with a newline unless it has one, and flush so that
/// an interactive user sees it before typing the next line.
pub fn write_reply(out: &mut dyn Write, reply: &[u8]) -> io::Result<()> {
    out.write_all(reply)?;
    if !reply.ends_with(b"\n") {
        out.write_all(b"\n")?;
    }
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn collect(args: &[&str], input: &[u8]) -> Vec<Vec<u8>> {
        let args = args.iter().map(|s| s.to_string()).collect();
        messages(args, Cursor::new(input.to_vec()))
            .collect::<io::Result<_>>()
            .unwrap()
    }

    #[test]
    fn command_line_messages_win_over_input() {
        assert_eq!(
            collect(&["a", "b c"], b"ignored\n"),
            [b"a".to_vec(), b"b c".to_vec()]
        );
    }

    #[test]
    fn input_lines_lose_their_line_endings() {
        let got = collect(&[], b"one\ntwo\r\n\nlast without newline");
        let want: [&[u8]; 4] = [b"one", b"two", b"", b"last without newline"];
        assert_eq!(got, want);
    }

    #[test]
    fn input_need_not_be_utf8_and_may_be_empty() {
        assert_eq!(collect(&[], b"\xff\xfe\n"), [b"\xff\xfe".to_vec()]);
        assert!(collect(&[], b"").is_empty());
    }

    #[test]
    fn replies_end_with_exactly_one_newline() {
        let mut out = Vec::new();
        write_reply(&mut out, b"line\n").unwrap();
        write_reply(&mut out, b"[2024-01-02 03:04:05] bare").unwrap();
        write_reply(&mut out, b"\xffraw").unwrap();
        write_reply(&mut out, b"").unwrap();
        assert_eq!(out, b"line\n[2024-01-02 03:04:05] bare\n\xffraw\n\n");
    }
}
