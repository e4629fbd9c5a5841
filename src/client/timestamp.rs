//! `sockserv client timestamp`: the timestamp protocol's framing, for the request/reply loop.
//!
//! The server answers every chunk it reads with `[YYYY-mm-dd HH:MM:SS] <data>`, so a message goes out
//! bare, without a newline (like the seed's `tsTclnt`), and the first chunk that comes back is the
//! reply. Its length is not known in advance: the stamp's format is a server option.

use super::exchange::Dialect;

/// The timestamp protocol: one stamped chunk per request.
#[derive(Debug, Clone, Copy, Default)]
pub struct Timestamp;

impl Dialect for Timestamp {
    fn request(&self, message: &[u8], _stream: bool) -> Vec<u8> {
        message.to_vec()
    }

    fn reply_complete(&self, _request: &[u8], received: &[u8]) -> bool {
        !received.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_go_out_bare() {
        assert_eq!(Timestamp.request(b"hi", true), b"hi");
        assert_eq!(Timestamp.request(b"hi", false), b"hi");
    }

    #[test]
    fn the_first_chunk_is_the_reply() {
        assert!(!Timestamp.reply_complete(b"hi", b""));
        assert!(Timestamp.reply_complete(b"hi", b"[2024-01-02 03:04:05] hi"));
    }
}
