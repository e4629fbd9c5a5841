//! The body of the frame parser's fuzz target (`fuzz/fuzz_targets/search_frame.rs`, outside the
//! workspace because cargo-fuzz needs nightly), kept here so that `cargo test` replays the committed
//! corpus (`fuzz/corpus/search_frame/`) through exactly the same checks on stable.
//!
//! [`exercise`] panics when an invariant breaks — that is what a fuzzer looks for: the parser must
//! never panic, must never claim more bytes than it was given, must consume whole frames only, and
//! must answer the same whether the bytes arrive at once or in small pieces.

use super::frame::{parse_frame, Decoder, PREFIX_LEN};
use super::index::Index;
use super::respond::{answer, respond, Answered};

/// A small content limit, so that inputs of a few hundred bytes reach the too-large path.
pub const FUZZ_MAX_CONTENT_LENGTH: usize = 256;

/// Runs `data` through the parser and the answering loop, checking every invariant.
pub fn exercise(data: &[u8]) {
    let index = Index::default();
    check_one_frame(data, &index);
    let whole = answer(&mut Decoder::new(FUZZ_MAX_CONTENT_LENGTH), data, &index);
    assert!(whole.consumed <= data.len(), "consumed more than given");
    check_replies(&whole.replies);
    let step = usize::from(data.first().copied().unwrap_or(1) % 16) + 1;
    let pieces = answer_in_pieces(data, step, &index);
    assert_eq!(
        pieces, whole.replies,
        "answers differ when the bytes come {step} at a time"
    );
}

/// `parse_frame` alone: a frame's length adds up, an error's skip length is inside the input.
fn check_one_frame(data: &[u8], index: &Index) {
    match parse_frame(data, FUZZ_MAX_CONTENT_LENGTH) {
        Ok(Some((frame, used))) => {
            assert!(used <= data.len(), "frame longer than the input");
            assert!(
                used > PREFIX_LEN + frame.content.len(),
                "frame without a header"
            );
            assert_eq!(&data[used - frame.content.len()..used], frame.content);
            let reply = respond(&frame, index).encode();
            match parse_frame(&reply, usize::MAX) {
                Ok(Some((_, len))) => assert_eq!(len, reply.len(), "reply is not one frame"),
                other => panic!("the reply does not parse: {other:?}"),
            }
        }
        Ok(None) => {}
        Err(err) => {
            if let Some(len) = err.frame_len() {
                assert!(
                    len > PREFIX_LEN && len <= data.len(),
                    "bad skip length {len}"
                );
            }
            assert!(!err.to_string().is_empty());
        }
    }
}

/// Every reply is a whole frame, back to back.
fn check_replies(mut replies: &[u8]) {
    while !replies.is_empty() {
        match parse_frame(replies, usize::MAX) {
            Ok(Some((_, used))) => replies = &replies[used..],
            other => panic!("replies are not whole frames: {other:?}"),
        }
    }
}

/// What the handler would send if the bytes arrived `step` at a time.
fn answer_in_pieces(data: &[u8], step: usize, index: &Index) -> Vec<u8> {
    let mut decoder = Decoder::new(FUZZ_MAX_CONTENT_LENGTH);
    let mut pending = Vec::new();
    let mut replies = Vec::new();
    for piece in data.chunks(step) {
        pending.extend_from_slice(piece);
        let Answered {
            replies: more,
            consumed,
            fatal,
            ..
        } = answer(&mut decoder, &pending, index);
        replies.extend_from_slice(&more);
        if fatal.is_some() {
            break;
        }
        pending.drain(..consumed);
    }
    replies
}
