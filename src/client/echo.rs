//! `sockserv client echo`: the echo protocol's framing, for the request/reply loop.
//!
//! On a stream a message goes out as one line (`message\n`), so a line-minded server sees a line and
//! the reply is complete once as many bytes came back as went out. A datagram is sent as it is.

use super::exchange::Dialect;

/// The echo protocol: the reply is the request.
#[derive(Debug, Clone, Copy, Default)]
pub struct Echo;

impl Dialect for Echo {
    fn request(&self, message: &[u8], stream: bool) -> Vec<u8> {
        let mut request = message.to_vec();
        if stream {
            request.push(b'\n');
        }
        request
    }

    fn reply_complete(&self, request: &[u8], received: &[u8]) -> bool {
        received.len() >= request.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_get_a_line_and_datagrams_the_bare_message() {
        assert_eq!(Echo.request(b"hi", true), b"hi\n");
        assert_eq!(Echo.request(b"hi", false), b"hi");
        assert_eq!(Echo.request(b"", true), b"\n");
    }

    #[test]
    fn the_reply_is_complete_when_every_byte_came_back() {
        assert!(!Echo.reply_complete(b"hello\n", b""));
        assert!(!Echo.reply_complete(b"hello\n", b"hel"));
        assert!(Echo.reply_complete(b"hello\n", b"hello\n"));
    }
}
