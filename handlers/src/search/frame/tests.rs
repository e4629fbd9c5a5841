//! Unit tests of the framing: the tutorial's frames, incomplete input, and every kind of bad header.

use super::*;
use crate::search::tutorial::{self, bytes};

const MAX: usize = DEFAULT_MAX_CONTENT_LENGTH;

/// A frame with `header` as its header text, followed by `content`.
fn raw_frame(header: &str, content: &[u8]) -> Vec<u8> {
    let mut out = (header.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(content);
    out
}

/// A header with the four fields, `content-length` matching `content`.
fn good_frame(content_type: &str, content: &[u8]) -> Vec<u8> {
    let header = format!(
        r#"{{"byteorder": "big", "content-type": "{content_type}", "content-encoding": "utf-8", "content-length": {}}}"#,
        content.len()
    );
    raw_frame(&header, content)
}

fn parse(buf: &[u8]) -> Result<Option<(Frame<'_>, usize)>, FrameError> {
    parse_frame(buf, MAX)
}

#[test]
fn the_tutorial_requests_parse_byte_for_byte() {
    let search = bytes(tutorial::SEARCH_MORPHEUS);
    let (frame, used) = parse(&search).unwrap().unwrap();
    assert_eq!(used, search.len());
    assert_eq!(
        frame.header,
        Header {
            byteorder: ByteOrder::Big,
            content_type: "text/json".into(),
            content_encoding: "utf-8".into(),
            content_length: 41,
        }
    );
    assert_eq!(
        frame.content,
        br#"{"action": "search", "value": "morpheus"}"#
    );

    let binary = bytes(tutorial::BINARY_REQUEST);
    let (frame, used) = parse(&binary).unwrap().unwrap();
    assert_eq!(used, binary.len());
    assert_eq!(frame.header.content_type, CLIENT_BINARY);
    assert_eq!(frame.header.content_encoding, BINARY);
    assert_eq!(frame.content, "binary\u{1f603}".as_bytes());
}

#[test]
fn the_tutorial_replies_parse_too() {
    for hex in [
        tutorial::REPLY_MORPHEUS,
        tutorial::REPLY_DOG,
        tutorial::BINARY_REPLY,
    ] {
        let reply = bytes(hex);
        let (frame, used) = parse(&reply).unwrap().unwrap();
        assert_eq!(used, reply.len());
        assert_eq!(frame.header.byteorder, ByteOrder::Little);
    }
}

#[test]
fn encode_frame_writes_what_the_tutorial_server_writes() {
    let content = "{\"result\": \"Follow the white rabbit. \u{1f430}\"}";
    let frame = encode_frame(TEXT_JSON, UTF_8, content.as_bytes());
    if ByteOrder::HOST == ByteOrder::Little {
        assert_eq!(frame, bytes(tutorial::REPLY_MORPHEUS));
    }
    let (parsed, used) = parse(&frame).unwrap().unwrap();
    assert_eq!(used, frame.len());
    assert_eq!(parsed.header.byteorder, ByteOrder::HOST);
    assert_eq!(parsed.content, content.as_bytes());
}

#[test]
fn every_prefix_of_a_frame_asks_for_more() {
    let search = bytes(tutorial::SEARCH_DOG);
    for len in 0..search.len() {
        assert_eq!(parse(&search[..len]), Ok(None), "prefix of {len} bytes");
    }
}

#[test]
fn bytes_after_a_frame_are_left_for_the_next() {
    let mut two = bytes(tutorial::SEARCH_MORPHEUS);
    let first = two.len();
    two.extend_from_slice(&bytes(tutorial::SEARCH_DOG)[..5]);
    let (_, used) = parse(&two).unwrap().unwrap();
    assert_eq!(used, first);
    assert_eq!(parse(&two[used..]), Ok(None));
}

#[test]
fn extra_header_fields_and_empty_content_are_fine() {
    let frame = raw_frame(
        r#"{"content-length": 0, "x-extra": [1], "content-encoding": "binary", "content-type": "a/b", "byteorder": "little"}"#,
        b"",
    );
    let (parsed, used) = parse(&frame).unwrap().unwrap();
    assert_eq!(used, frame.len());
    assert_eq!(parsed.content, b"");
    assert_eq!(parsed.header.byteorder, ByteOrder::Little);
}

#[test]
fn a_zero_header_length_loses_the_frame() {
    let err = parse(b"\x00\x00{}").unwrap_err();
    assert_eq!(err, FrameError::EmptyHeader);
    assert_eq!(err.frame_len(), None);
    assert_eq!(err.code(), "empty-header");
}

#[test]
fn a_header_that_is_not_a_json_object_loses_the_frame() {
    for (header, why) in [
        (&b"not json at all"[..], "expected"),
        (b"{\"content-length\": 1", "EOF"),
        (b"[1, 2]", "an array"),
        (b"\"text\"", "string"),
        (b"{\"a\": \"\xff\"}", "invalid UTF-8 at byte 7"),
    ] {
        let mut frame = (header.len() as u16).to_be_bytes().to_vec();
        frame.extend_from_slice(header);
        let err = parse(&frame).unwrap_err();
        assert!(matches!(err, FrameError::HeaderNotJson(_)), "{err:?}");
        assert!(err.to_string().contains(why), "{err} lacks {why:?}");
        assert_eq!((err.frame_len(), err.code()), (None, "bad-header"));
    }
}

#[test]
fn a_missing_or_mistyped_content_length_loses_the_frame() {
    for (header, why) in [
        (r#"{"byteorder": "big"}"#, "is missing"),
        (r#"{"content-length": "41"}"#, r#"not string "41""#),
        (r#"{"content-length": -1}"#, "not integer -1"),
        (r#"{"content-length": 4.5}"#, "not number 4.5"),
        (r#"{"content-length": null}"#, "not null"),
    ] {
        let err = parse(&raw_frame(header, b"")).unwrap_err();
        assert!(matches!(err, FrameError::BadContentLength(_)), "{err:?}");
        assert!(err.to_string().contains(why), "{err} lacks {why:?}");
        assert_eq!(err.frame_len(), None);
    }
}

#[test]
fn too_much_content_is_refused_before_it_arrives() {
    let header = r#"{"byteorder": "big", "content-type": "x", "content-encoding": "x", "content-length": 101}"#;
    let only_header = raw_frame(header, b"");
    let err = parse_frame(&only_header, 100).unwrap_err();
    assert_eq!(
        err,
        FrameError::ContentTooLarge {
            length: 101,
            max: 100
        }
    );
    assert_eq!((err.frame_len(), err.code()), (None, "content-too-large"));
    assert!(parse_frame(&only_header, 101).unwrap().is_none());
    let huge = raw_frame(r#"{"content-length": 18446744073709551615}"#, b"");
    assert!(matches!(
        parse(&huge),
        Err(FrameError::ContentTooLarge { .. })
    ));
}

#[test]
fn other_bad_fields_skip_just_that_frame_once_it_is_whole() {
    for (header, why) in [
        (
            r#"{"content-type": "text/json", "content-encoding": "utf-8", "content-length": 2}"#,
            r#"header field "byteorder" is missing"#,
        ),
        (
            r#"{"byteorder": "middle", "content-type": "text/json", "content-encoding": "utf-8", "content-length": 2}"#,
            r#"header field "byteorder" must be "little" or "big", not "middle""#,
        ),
        (
            r#"{"byteorder": "big", "content-type": 3, "content-encoding": "utf-8", "content-length": 2}"#,
            r#"header field "content-type" must be a string, not integer 3"#,
        ),
        (
            r#"{"byteorder": "big", "content-type": "text/json", "content-length": 2}"#,
            r#"header field "content-encoding" is missing"#,
        ),
    ] {
        let frame = raw_frame(header, b"{}");
        assert_eq!(parse(&frame[..frame.len() - 1]), Ok(None), "{header}");
        let err = parse(&frame).unwrap_err();
        assert_eq!(err.to_string(), why);
        assert_eq!(
            (err.frame_len(), err.code()),
            (Some(frame.len()), "bad-header")
        );
    }
}

#[test]
fn the_decoder_parses_a_header_once_while_content_trickles_in() {
    let frame = good_frame("text/json", &[b' '; 1000]);
    let mut decoder = Decoder::new(MAX);
    assert_eq!(decoder.wanted(), None);
    assert_eq!(decoder.decode(&frame[..200]), Ok(None));
    assert_eq!(decoder.wanted(), Some(frame.len()));
    // The header is remembered: the bytes it came from are not looked at again.
    let mut later = vec![0xff; 200];
    later.extend_from_slice(&frame[200..]);
    let (parsed, used) = decoder.decode(&later).unwrap().unwrap();
    assert_eq!((parsed.content.len(), used), (1000, frame.len()));
    assert_eq!(decoder.wanted(), None);
    // And forgotten once the frame is out.
    assert_eq!(decoder.decode(&frame).unwrap().unwrap().1, frame.len());
}

#[test]
fn the_decoder_names_a_cut_frame() {
    let frame = good_frame("text/json", b"{}");
    let mut decoder = Decoder::new(MAX);
    assert_eq!(
        decoder.truncated(1),
        FrameError::Truncated {
            received: 1,
            expected: None
        }
    );
    assert_eq!(decoder.decode(&frame[..frame.len() - 1]), Ok(None));
    let err = decoder.truncated(frame.len() - 1);
    assert_eq!(err.code(), "truncated");
    assert!(err.to_string().contains("-byte frame"), "{err}");
}

#[test]
fn the_longest_header_the_prefix_can_say_is_accepted() {
    let base = r#"{"byteorder": "big", "content-type": "x", "content-encoding": "x", "content-length": 0, "pad": ""}"#;
    let pad = "p".repeat(MAX_HEADER_LEN - base.len());
    let header = base.replace(r#""pad": """#, &format!(r#""pad": "{pad}""#));
    assert_eq!(header.len(), MAX_HEADER_LEN);
    let frame = raw_frame(&header, b"");
    assert_eq!(
        parse(&frame).unwrap().unwrap().1,
        PREFIX_LEN + MAX_HEADER_LEN
    );
}

#[test]
fn values_are_described_for_messages() {
    assert_eq!(describe(&serde_json::json!("41")), r#"string "41""#);
    assert_eq!(describe(&serde_json::json!(true)), "boolean true");
    assert_eq!(describe(&serde_json::json!({"a": 1})), "an object");
    assert_eq!(describe(&serde_json::json!("x".repeat(50))), "string");
}
