//! Unit tests of the search handler over in-memory connections (no sockets), the options it is built
//! from, and the replay of the fuzz corpus.

use std::path::Path;

use serde_json::Value;

use super::*;
use crate::search::frame::parse_frame;
use crate::search::tutorial::{self, bytes};
use crate::testing;

fn handler(options: &str) -> Box<dyn RequestHandler> {
    testing::factory(build, options).unwrap().new_handler()
}

/// Every reply frame in `written`, decoded: (content type, content).
fn replies(written: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut rest = written;
    while !rest.is_empty() {
        let (frame, used) = parse_frame(rest, usize::MAX).unwrap().unwrap();
        out.push((frame.header.content_type.clone(), frame.content.to_vec()));
        rest = &rest[used..];
    }
    out
}

fn json(content: &[u8]) -> Value {
    serde_json::from_slice(content).unwrap()
}

#[test]
fn the_tutorial_exchanges_on_one_connection() {
    let chunks = [
        bytes(tutorial::SEARCH_MORPHEUS),
        bytes(tutorial::SEARCH_DOG),
        bytes(tutorial::BINARY_REQUEST),
    ];
    let chunks: Vec<&[u8]> = chunks.iter().map(Vec::as_slice).collect();
    let writes = testing::stream(&mut *handler(""), &chunks);
    assert_eq!(writes.0.len(), 3, "one write per request");
    if frame::ByteOrder::HOST == frame::ByteOrder::Little {
        assert_eq!(writes.0[0], bytes(tutorial::REPLY_MORPHEUS));
        assert_eq!(writes.0[1], bytes(tutorial::REPLY_DOG));
        assert_eq!(writes.0[2], bytes(tutorial::BINARY_REPLY));
    }
}

#[test]
fn a_request_trickled_one_byte_at_a_time_gets_one_reply() {
    let request = bytes(tutorial::SEARCH_MORPHEUS);
    let chunks: Vec<&[u8]> = request.chunks(1).collect();
    let writes = testing::stream(&mut *handler(""), &chunks);
    assert_eq!(writes.0.len(), 1);
    let got = replies(&writes.joined());
    assert_eq!(json(&got[0].1)["result"], "Follow the white rabbit. 🐰");
}

#[test]
fn two_requests_in_one_read_get_both_replies_in_one_write() {
    let two = [
        bytes(tutorial::SEARCH_DOG),
        bytes(tutorial::SEARCH_MORPHEUS),
    ]
    .concat();
    let writes = testing::stream(&mut *handler(""), &[&two]);
    assert_eq!(writes.0.len(), 1);
    let got = replies(&writes.0[0]);
    assert_eq!(json(&got[0].1)["result"], "🐾 Playing ball! 🏐");
    assert_eq!(json(&got[1].1)["result"], "Follow the white rabbit. 🐰");
}

#[test]
fn a_frame_cut_short_by_the_peer_gets_an_error_reply() {
    let request = bytes(tutorial::SEARCH_MORPHEUS);
    let writes = testing::stream(&mut *handler(""), &[&request[..120]]);
    let got = replies(&writes.joined());
    assert_eq!(got.len(), 1);
    let body = json(&got[0].1);
    assert_eq!(body["error"], "truncated");
    let result = body["result"].as_str().unwrap();
    assert!(
        result.contains("120 bytes into a 143-byte frame"),
        "{result}"
    );
}

#[test]
fn a_fatal_error_is_the_last_reply_and_the_rest_is_ignored() {
    let morpheus = bytes(tutorial::SEARCH_MORPHEUS);
    let writes = testing::stream(
        &mut *handler("max_content_length = 10"),
        &[b"\x00\x00garbage", &morpheus],
    );
    let got = replies(&writes.joined());
    assert_eq!(got.len(), 1);
    assert_eq!(json(&got[0].1)["error"], "empty-header");
}

#[test]
fn the_content_limit_is_an_option() {
    let morpheus = bytes(tutorial::SEARCH_MORPHEUS);
    let writes = testing::stream(&mut *handler("max_content_length = 40"), &[&morpheus]);
    let body = json(&replies(&writes.joined())[0].1);
    assert_eq!(body["error"], "content-too-large");
    assert_eq!(
        body["result"],
        "Error: content-length 41 is above the maximum of 40 bytes."
    );
}

#[test]
fn an_index_file_and_a_match_mode_are_options() {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/data");
    let table: toml::Table = "index = 'search-index.json'\nmatch = 'substring'\nlimit = 2"
        .parse()
        .unwrap();
    let factory = build(&HandlerOptions {
        table: &table,
        base_dir: &data,
        server: "test",
    })
    .unwrap();
    let request = {
        let content = br#"{"action": "search", "value": "socket"}"#;
        let header = format!(
            r#"{{"byteorder": "big", "content-type": "text/json", "content-encoding": "utf-8", "content-length": {}}}"#,
            content.len()
        );
        [
            &(header.len() as u16).to_be_bytes()[..],
            header.as_bytes(),
            content,
        ]
        .concat()
    };
    let writes = testing::stream(&mut *factory.new_handler(), &[&request]);
    let body = json(&replies(&writes.joined())[0].1);
    let results = body["results"].as_array().unwrap();
    assert_eq!(results.len(), 2, "{body}");
    assert_eq!(body["result"], results[0]["value"]);
}

#[test]
fn bad_options_fail_the_build() {
    assert!(testing::factory(build, "match = 'fuzzy'").is_err());
    let err = testing::factory(build, "index = 'no/such/file.json'")
        .err()
        .unwrap();
    assert!(err.contains("cannot read index file"), "{err}");
}

/// Every file of the committed fuzz corpus goes through the fuzz target's checks.
#[test]
fn the_fuzz_corpus_replays_without_a_panic() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/search_frame");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|err| panic!("{}: {err}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .collect();
    files.sort();
    assert!(files.len() >= 20, "only {} corpus files", files.len());
    for file in files {
        let data = std::fs::read(&file).unwrap();
        let run = std::panic::catch_unwind(|| fuzz::exercise(&data));
        assert!(run.is_ok(), "{} fails the fuzz checks", file.display());
    }
}
