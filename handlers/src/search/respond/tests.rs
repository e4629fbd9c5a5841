//! Unit tests of the answers: the tutorial's exchanges byte for byte, every bad content, match modes,
//! and pipelined buffers.

use serde_json::{json, Value};

use super::*;
use crate::search::frame::{parse_frame, ByteOrder, DEFAULT_MAX_CONTENT_LENGTH};
use crate::search::tutorial::{self, bytes};

/// A request frame the way the tutorial's client writes one.
fn request(content_type: &str, encoding: &str, content: &[u8]) -> Vec<u8> {
    let header = format!(
        r#"{{"byteorder": "little", "content-type": "{content_type}", "content-encoding": "{encoding}", "content-length": {}}}"#,
        content.len()
    );
    let mut out = (header.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(content);
    out
}

fn json_request(content: &str) -> Vec<u8> {
    request("text/json", "utf-8", content.as_bytes())
}

/// The reply to one request frame.
fn reply_to(frame_bytes: &[u8], index: &Index) -> Reply {
    let (frame, _) = parse_frame(frame_bytes, DEFAULT_MAX_CONTENT_LENGTH)
        .unwrap()
        .unwrap();
    respond(&frame, index)
}

fn content_json(reply: &Reply) -> Value {
    assert_eq!(
        (reply.content_type, reply.content_encoding),
        (TEXT_JSON, UTF_8)
    );
    serde_json::from_slice(&reply.content).unwrap()
}

#[test]
fn the_tutorial_exchanges_byte_for_byte() {
    let index = Index::default();
    for (request, reply) in [
        (tutorial::SEARCH_MORPHEUS, tutorial::REPLY_MORPHEUS),
        (tutorial::SEARCH_DOG, tutorial::REPLY_DOG),
        (tutorial::BINARY_REQUEST, tutorial::BINARY_REPLY),
    ] {
        let got = reply_to(&bytes(request), &index).encode();
        let want = bytes(reply);
        let (got_frame, _) = parse_frame(&got, usize::MAX).unwrap().unwrap();
        let (want_frame, _) = parse_frame(&want, usize::MAX).unwrap().unwrap();
        assert_eq!(got_frame.content, want_frame.content);
        assert_eq!(
            got_frame.header.content_type,
            want_frame.header.content_type
        );
        assert_eq!(
            got_frame.header.content_encoding,
            want_frame.header.content_encoding
        );
        assert_eq!(got_frame.header.byteorder, ByteOrder::HOST);
        if ByteOrder::HOST == ByteOrder::Little {
            assert_eq!(got, want, "whole reply to {request}");
        }
    }
}

#[test]
fn a_miss_and_another_action_read_as_in_the_tutorial() {
    let index = Index::default();
    let miss = reply_to(
        &json_request(r#"{"action": "search", "value": "neo"}"#),
        &index,
    );
    assert_eq!(miss.content, br#"{"result": "No match for 'neo'."}"#);
    let other = reply_to(&json_request(r#"{"action": "find", "value": 1}"#), &index);
    assert_eq!(
        other.content,
        br#"{"result": "Error: invalid action 'find'."}"#
    );
    let quoted = reply_to(
        &json_request(r#"{"value": "a\"b", "action": "search"}"#),
        &index,
    );
    assert_eq!(quoted.content, br#"{"result": "No match for 'a\"b'."}"#);
}

#[test]
fn binary_replies_show_at_most_ten_bytes() {
    let index = Index::default();
    for (content, shown) in [
        (&b"0123456789abcdef"[..], &b"0123456789"[..]),
        (b"\xff\x00", b"\xff\x00"),
        (b"", b""),
    ] {
        let reply = reply_to(
            &request("application/octet-stream", "binary", content),
            &index,
        );
        assert_eq!(
            (reply.content_type, reply.content_encoding),
            (SERVER_BINARY, BINARY)
        );
        assert_eq!(
            reply.content,
            [&b"First 10 bytes of request: "[..], shown].concat()
        );
    }
    let upper = reply_to(
        &request(
            "TEXT/JSON",
            "UTF-8",
            br#"{"action": "search", "value": "ring"}"#,
        ),
        &index,
    );
    assert_eq!(
        content_json(&upper)["result"],
        "In the caves beneath the Misty Mountains. 💍"
    );
}

#[test]
fn non_exact_modes_list_every_hit() {
    let entries = [("ring", "1"), ("Ring", "2"), ("ringo", "3")].map(|(k, v)| (k.into(), v.into()));
    let index = Index::new(entries, MatchMode::Prefix, 10);
    let reply = reply_to(
        &json_request(r#"{"action": "search", "value": "RING"}"#),
        &index,
    );
    assert_eq!(
        String::from_utf8(reply.content).unwrap(),
        r#"{"result": "2", "results": [{"key": "Ring", "value": "2"}, {"key": "ring", "value": "1"}, {"key": "ringo", "value": "3"}]}"#
    );
    let miss = reply_to(
        &json_request(r#"{"action": "search", "value": "x"}"#),
        &index,
    );
    assert_eq!(
        content_json(&miss),
        json!({"result": "No match for 'x'.", "results": []})
    );
}

/// Each bad content, with the error code and a piece of the message it must get.
const BAD_CONTENT: &[(&str, &[u8], &str, &str)] = &[
    (
        "latin-1",
        b"{}",
        "bad-encoding",
        r#"content-encoding "latin-1" is not supported"#,
    ),
    (
        "utf-8",
        b"{\"action\": \"\xff\"}",
        "bad-content",
        "not valid UTF-8 (at byte 12)",
    ),
    (
        "utf-8",
        b"{\"action\": ",
        "bad-content",
        "the content is not JSON: EOF",
    ),
    (
        "utf-8",
        b"[\"search\"]",
        "bad-content",
        "must be a JSON object, not an array",
    ),
    (
        "utf-8",
        b"{\"value\": \"x\"}",
        "bad-request",
        r#"the request has no "action""#,
    ),
    (
        "utf-8",
        b"{\"action\": 1}",
        "bad-request",
        r#""action" must be a string, not integer 1"#,
    ),
    (
        "utf-8",
        b"{\"action\": \"search\"}",
        "bad-request",
        r#"a search needs a "value""#,
    ),
    (
        "utf-8",
        b"{\"action\": \"search\", \"value\": [1]}",
        "bad-request",
        r#""value" must be a string, not an array"#,
    ),
];

#[test]
fn every_bad_content_gets_an_error_reply() {
    let index = Index::default();
    for &(encoding, content, code, message) in BAD_CONTENT {
        let reply = reply_to(&request("text/json", encoding, content), &index);
        let body = content_json(&reply);
        assert_eq!(body["error"], code, "{body}");
        let result = body["result"].as_str().unwrap();
        assert!(
            result.starts_with("Error: ") && result.ends_with('.'),
            "{result}"
        );
        assert!(result.contains(message), "{result:?} lacks {message:?}");
    }
}

#[test]
fn the_error_reply_has_a_fixed_shape() {
    let reply = Reply::error("bad-request", "the request has no \"action\"");
    assert_eq!(
        reply.content,
        br#"{"error": "bad-request", "result": "Error: the request has no \"action\"."}"#
    );
}

fn answer_all(buf: &[u8]) -> (Answered, Vec<Value>) {
    let mut decoder = Decoder::new(100);
    let answered = answer(&mut decoder, buf, &Index::default());
    let mut replies = Vec::new();
    let mut rest = &answered.replies[..];
    while let Some((frame, used)) = parse_frame(rest, usize::MAX).unwrap() {
        replies.push(serde_json::from_slice(frame.content).unwrap_or(Value::Null));
        rest = &rest[used..];
    }
    assert!(rest.is_empty(), "the replies end with a whole frame");
    (answered, replies)
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let morpheus = bytes(tutorial::SEARCH_MORPHEUS);
    let dog = bytes(tutorial::SEARCH_DOG);
    let buf = [&morpheus[..], &dog, &morpheus, &dog[..10]].concat();
    let (answered, replies) = answer_all(&buf);
    let results: Vec<&str> = replies
        .iter()
        .map(|r| r["result"].as_str().unwrap())
        .collect();
    assert_eq!(
        results,
        [
            "Follow the white rabbit. 🐰",
            "🐾 Playing ball! 🏐",
            "Follow the white rabbit. 🐰"
        ]
    );
    assert_eq!(answered.consumed, 2 * morpheus.len() + dog.len());
    assert!(answered.skipped.is_empty() && answered.fatal.is_none());
}

#[test]
fn a_skippable_bad_frame_is_answered_and_the_next_served() {
    let missing_byteorder =
        br#"{"content-type": "text/json", "content-encoding": "utf-8", "content-length": 2}"#;
    let mut bad = (missing_byteorder.len() as u16).to_be_bytes().to_vec();
    bad.extend_from_slice(missing_byteorder);
    bad.extend_from_slice(b"{}");
    let dog = bytes(tutorial::SEARCH_DOG);
    let buf = [&bad[..], &json_request("not json"), &dog].concat();
    let (answered, replies) = answer_all(&buf);
    assert_eq!(replies.len(), 3);
    assert_eq!(replies[0]["error"], "bad-header");
    assert_eq!(replies[1]["error"], "bad-content");
    assert_eq!(replies[2]["result"], "🐾 Playing ball! 🏐");
    assert_eq!(answered.consumed, buf.len());
    assert_eq!(answered.skipped.len(), 1);
}

#[test]
fn a_fatal_error_is_answered_last() {
    let morpheus = bytes(tutorial::SEARCH_MORPHEUS);
    let too_large = json_request(&format!("\"{}\"", "x".repeat(200)));
    for (bad, code) in [
        (&b"\x00\x00"[..], "empty-header"),
        (&too_large[..], "content-too-large"),
        (b"\x00\x03abc", "bad-header"),
    ] {
        let buf = [&morpheus[..], bad, &morpheus].concat();
        let (answered, replies) = answer_all(&buf);
        assert_eq!(replies.len(), 2, "{code}");
        assert_eq!(replies[1]["error"], code);
        assert_eq!(answered.consumed, morpheus.len());
        assert_eq!(answered.fatal.as_ref().map(FrameError::code), Some(code));
    }
}
