//! The search mode's frames (the realpython application protocol): a 2-byte big-endian header length,
//! a UTF-8 JSON header with `byteorder`, `content-type`, `content-encoding` and `content-length`, then
//! the content. Every request is the same `{"action": "search", "value": "morpheus"}`, whose answer in
//! the default index is the seed's "Follow the white rabbit" line; a reply without it is an error.
//!
//! Building and measuring frames are pure functions over bytes ([`request`], [`reply_len`]); only
//! [`read_reply`] touches a reader.

use std::io::{self, Read};

use crate::json;

/// What every request searches for.
pub const QUERY: &str = "morpheus";
/// What a correct reply to [`QUERY`] contains (the default index's entry).
pub const EXPECTED: &str = "Follow the white rabbit";
/// The 2-byte header length in front of every frame.
const PREFIX_LEN: usize = 2;
/// A reply larger than this is refused rather than buffered: a search answer is a line of text.
pub const MAX_REPLY: usize = 1 << 20;

/// This host's byte order as Python's `sys.byteorder` names it, which the header carries.
const BYTEORDER: &str = if cfg!(target_endian = "little") {
    "little"
} else {
    "big"
};

/// One frame: prefix, header, content.
pub fn frame(content: &[u8], content_type: &str, encoding: &str) -> Vec<u8> {
    let header = format!(
        "{{\"byteorder\": {}, \"content-type\": {}, \"content-encoding\": {}, \"content-length\": {}}}",
        json::quote(BYTEORDER),
        json::quote(content_type),
        json::quote(encoding),
        content.len()
    );
    let header_len = u16::try_from(header.len()).expect("a search header is short");
    let mut out = Vec::with_capacity(PREFIX_LEN + header.len() + content.len());
    out.extend_from_slice(&header_len.to_be_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(content);
    out
}

/// The request frame searching for `value`.
pub fn request(value: &str) -> Vec<u8> {
    let content = format!(
        "{{\"action\": \"search\", \"value\": {}}}",
        json::quote(value)
    );
    frame(content.as_bytes(), "text/json", "utf-8")
}

/// The whole length of the frame at the start of `buf`, once its prefix and header are there:
/// `Ok(None)` means "read more".
pub fn reply_len(buf: &[u8]) -> Result<Option<usize>, String> {
    let Some(prefix) = buf.get(..PREFIX_LEN) else {
        return Ok(None);
    };
    let header_len = usize::from(u16::from_be_bytes([prefix[0], prefix[1]]));
    let Some(header) = buf.get(PREFIX_LEN..PREFIX_LEN + header_len) else {
        return Ok(None);
    };
    let header =
        std::str::from_utf8(header).map_err(|_| "reply header is not UTF-8".to_string())?;
    let content_len = json::uint_field(header, "content-length")
        .ok_or_else(|| format!("reply header has no content-length: {header}"))?;
    let total = PREFIX_LEN as u64 + header_len as u64 + content_len;
    if total > MAX_REPLY as u64 {
        return Err(format!(
            "reply of {total} bytes is over the {MAX_REPLY}-byte limit"
        ));
    }
    Ok(Some(total as usize))
}

/// Whether a whole reply frame carries the expected answer.
pub fn reply_ok(frame: &[u8]) -> bool {
    let needle = EXPECTED.as_bytes();
    frame.windows(needle.len()).any(|w| w == needle)
}

/// Reads one reply frame into `buf` (cleared first) and returns its length; checks the answer.
pub fn read_reply(r: &mut impl Read, buf: &mut Vec<u8>) -> io::Result<usize> {
    buf.clear();
    let mut want = PREFIX_LEN;
    loop {
        fill_to(r, buf, want)?;
        match reply_len(buf).map_err(invalid)? {
            Some(total) if total <= buf.len() => break,
            Some(total) => want = total,
            None => want = PREFIX_LEN + usize::from(u16::from_be_bytes([buf[0], buf[1]])),
        }
    }
    if !reply_ok(buf) {
        let shown = String::from_utf8_lossy(&buf[..buf.len().min(200)]).into_owned();
        return Err(invalid(format!("search reply lacks {EXPECTED:?}: {shown}")));
    }
    Ok(buf.len())
}

/// Reads until `buf` holds `want` bytes.
fn fill_to(r: &mut impl Read, buf: &mut Vec<u8>, want: usize) -> io::Result<()> {
    let have = buf.len();
    if have < want {
        buf.resize(want, 0);
        r.read_exact(&mut buf[have..])?;
    }
    Ok(())
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_frame_has_the_four_header_fields_and_the_content() {
        let req = request(QUERY);
        let header_len = usize::from(u16::from_be_bytes([req[0], req[1]]));
        let header = std::str::from_utf8(&req[2..2 + header_len]).unwrap();
        let content = &req[2 + header_len..];
        assert_eq!(content, br#"{"action": "search", "value": "morpheus"}"#);
        assert!(header.contains(r#""byteorder": "little""#) || header.contains(r#""big""#));
        assert!(header.contains(r#""content-type": "text/json""#));
        assert!(header.contains(r#""content-encoding": "utf-8""#));
        assert_eq!(
            json::uint_field(header, "content-length"),
            Some(content.len() as u64)
        );
        assert_eq!(reply_len(&req), Ok(Some(req.len())));
    }

    #[test]
    fn reply_len_asks_for_more_until_the_header_is_in() {
        let reply = frame(
            b"{\"result\": \"Follow the white rabbit.\"}",
            "text/json",
            "utf-8",
        );
        assert_eq!(reply_len(&reply[..1]), Ok(None));
        assert_eq!(reply_len(&reply[..10]), Ok(None));
        let header_end = 2 + usize::from(u16::from_be_bytes([reply[0], reply[1]]));
        assert_eq!(reply_len(&reply[..header_end]), Ok(Some(reply.len())));
    }

    #[test]
    fn reply_len_refuses_a_header_without_length_or_too_big() {
        let mut bad = vec![0, 2];
        bad.extend_from_slice(b"{}");
        assert!(reply_len(&bad).unwrap_err().contains("content-length"));
        let huge = br#"{"content-length": 99999999}"#;
        let mut big = (huge.len() as u16).to_be_bytes().to_vec();
        big.extend_from_slice(huge);
        assert!(reply_len(&big).unwrap_err().contains("limit"));
    }

    #[test]
    fn read_reply_reads_exactly_one_frame_and_checks_it() {
        let good = frame(
            b"{\"result\": \"Follow the white rabbit. \xf0\x9f\x90\xb0\"}",
            "text/json",
            "utf-8",
        );
        let miss = frame(br#"{"result": "No match for 'x'."}"#, "text/json", "utf-8");
        let mut stream = [good.clone(), miss.clone()].concat();
        stream.extend_from_slice(b"rest");
        let mut r = &stream[..];
        let mut buf = Vec::new();
        assert_eq!(read_reply(&mut r, &mut buf).unwrap(), good.len());
        let err = read_reply(&mut r, &mut buf).unwrap_err();
        assert!(err.to_string().contains("No match"), "{err}");
        assert_eq!(r, b"rest");
    }
}
