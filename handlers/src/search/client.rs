//! The client's side of the search protocol, sans-IO: the request the tutorial's app-client builds
//! ([`request`]) and what a reply says ([`read_answer`]). `sockserv client search` does the I/O around
//! these; the tests use them to talk to a real server.

use serde_json::Value;

use super::frame::{encode_frame, parse_frame, BINARY, CLIENT_BINARY, TEXT_JSON, UTF_8};
use super::json::Object;

/// The request for `ACTION VALUE`, as the tutorial's app-client makes it: action `search` is a
/// `text/json` request `{"action": "search", "value": VALUE}`; any other action sends the bytes of
/// ACTION followed by VALUE as `binary/custom-client-binary-type` content.
pub fn request(action: &str, value: &str) -> Vec<u8> {
    if action == "search" {
        let mut content = Vec::new();
        let mut object = Object::new(&mut content);
        object.string("action", action).string("value", value);
        object.finish();
        encode_frame(TEXT_JSON, UTF_8, &content)
    } else {
        let content = [action.as_bytes(), value.as_bytes()].concat();
        encode_frame(CLIENT_BINARY, BINARY, &content)
    }
}

/// What a reply says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// A `text/json` reply.
    Json {
        /// `result`: the value found, or the sentence a miss or an error reads as (text of any
        /// other JSON type as written). A reply without it is not a search server's.
        result: String,
        /// `results`: the hits (key, value) a non-exact match mode lists.
        results: Option<Vec<(String, String)>>,
        /// `error`: the error code of an error reply.
        error: Option<String>,
    },
    /// Any other content type: the content as sent.
    Binary {
        /// The reply's `content-type`.
        content_type: String,
        /// The reply's content, byte for byte.
        content: Vec<u8>,
    },
}

/// The reply at the start of `buf`: `Ok(None)` until all of it is there, then the answer and the
/// reply's length. Replies up to `max_content_length` bytes of content are read.
///
/// # Errors
///
/// A message starting `bad reply:` when the reply is not a frame (see [`parse_frame`]), or its
/// `text/json` content is not JSON or has no `"result"` (an echo server sends the request back).
pub fn read_answer(
    buf: &[u8],
    max_content_length: usize,
) -> Result<Option<(Answer, usize)>, String> {
    let (frame, used) = match parse_frame(buf, max_content_length) {
        Ok(Some(parsed)) => parsed,
        Ok(None) => return Ok(None),
        Err(err) => return Err(format!("bad reply: {err}")),
    };
    if !frame.header.content_type.eq_ignore_ascii_case(TEXT_JSON) {
        let answer = Answer::Binary {
            content_type: frame.header.content_type,
            content: frame.content.to_vec(),
        };
        return Ok(Some((answer, used)));
    }
    let body: Value = serde_json::from_slice(frame.content)
        .map_err(|err| format!("bad reply: the content is not JSON: {err}"))?;
    let text = |value: &Value| match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    };
    let result = body
        .get("result")
        .map(text)
        .ok_or("bad reply: a text/json reply with no \"result\"")?;
    let error = body.get("error").map(text);
    let results = body.get("results").and_then(Value::as_array).map(|hits| {
        hits.iter()
            .map(|hit| (text(&hit["key"]), text(&hit["value"])))
            .collect()
    });
    let answer = Answer::Json {
        result,
        results,
        error,
    };
    Ok(Some((answer, used)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::search::tutorial::{self, bytes};

    #[test]
    fn requests_are_the_tutorial_client_s() {
        let search = request("search", "morpheus");
        let binary = request("binary", "\u{1f603}");
        let content_of =
            |frame: &[u8]| parse_frame(frame, 100).unwrap().unwrap().0.content.to_vec();
        assert_eq!(
            content_of(&search),
            content_of(&bytes(tutorial::SEARCH_MORPHEUS))
        );
        assert_eq!(
            content_of(&binary),
            content_of(&bytes(tutorial::BINARY_REQUEST))
        );
        let (frame, _) = parse_frame(&binary, 100).unwrap().unwrap();
        assert_eq!(
            (
                &frame.header.content_type[..],
                &frame.header.content_encoding[..]
            ),
            (CLIENT_BINARY, BINARY)
        );
    }

    #[test]
    fn answers_are_read_from_the_tutorial_replies() {
        let reply = bytes(tutorial::REPLY_DOG);
        assert_eq!(read_answer(&reply[..reply.len() - 1], 100), Ok(None));
        let (answer, used) = read_answer(&reply, 100).unwrap().unwrap();
        assert_eq!(used, reply.len());
        assert_eq!(
            answer,
            Answer::Json {
                result: "🐾 Playing ball! 🏐".into(),
                results: None,
                error: None
            }
        );
        let (answer, _) = read_answer(&bytes(tutorial::BINARY_REPLY), 100)
            .unwrap()
            .unwrap();
        let Answer::Binary { content, .. } = answer else {
            panic!("{answer:?}")
        };
        assert_eq!(content, "First 10 bytes of request: binary😃".as_bytes());
    }

    #[test]
    fn error_replies_and_hits_are_read() {
        let error = crate::search::respond::Reply::error("bad-request", "no").encode();
        let (answer, _) = read_answer(&error, 100).unwrap().unwrap();
        let Answer::Json { error, result, .. } = answer else {
            panic!("{answer:?}")
        };
        assert_eq!(
            (error.as_deref(), &result[..]),
            (Some("bad-request"), "Error: no.")
        );
        let hits = encode_frame(
            TEXT_JSON,
            UTF_8,
            br#"{"result": "1", "results": [{"key": "a", "value": "1"}]}"#,
        );
        let (answer, _) = read_answer(&hits, 100).unwrap().unwrap();
        let Answer::Json { results, .. } = answer else {
            panic!("{answer:?}")
        };
        assert_eq!(results, Some(vec![("a".into(), "1".into())]));
        assert!(read_answer(b"\x00\x00", 100)
            .unwrap_err()
            .contains("bad reply"));
    }
}
