//! What the server answers, sans-IO: a frame in, a reply out ([`respond`]); a buffer of pipelined
//! frames in, every reply in order out ([`answer`]).
//!
//! The answers are the tutorial's: a `text/json` request `{"action": "search", "value": Q}` gets
//! `{"result": V}` (or `No match for 'Q'.`), another action gets `Error: invalid action 'A'.` (the
//! tutorial's current wording, single quotes and all), and any
//! other content type gets the binary reply `First 10 bytes of request: ` + those bytes. With a match
//! mode other than exact, the reply also lists every hit: `"results": [{"key": K, "value": V}, ...]`,
//! and `"result"` is the first hit's value.
//!
//! Bad input gets an error reply in the same JSON shape, so the tutorial's client prints it as it
//! prints any result: `{"error": CODE, "result": "Error: MESSAGE."}` (CODE is one of
//! [`FrameError::code`]'s or `bad-encoding`, `bad-content`, `bad-request`).

use serde_json::{Map, Value};

use super::frame::{
    describe, encode_frame, Decoder, Frame, FrameError, BINARY, SERVER_BINARY, TEXT_JSON, UTF_8,
};
use super::index::{Hit, Index, MatchMode};
use super::json::Object;

/// How many request bytes the binary reply shows, as in the tutorial.
const BINARY_ECHO_LEN: usize = 10;

/// A reply before framing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The reply header's `content-type`: `text/json`, or the tutorial's binary type.
    pub content_type: &'static str,
    /// The reply header's `content-encoding`: `utf-8` or `binary`.
    pub content_encoding: &'static str,
    /// The reply's content, `content-length` bytes once framed.
    pub content: Vec<u8>,
}

impl Reply {
    /// A `text/json` reply, UTF-8 encoded.
    fn json(content: Vec<u8>) -> Reply {
        Reply {
            content_type: TEXT_JSON,
            content_encoding: UTF_8,
            content,
        }
    }

    /// The error reply: `{"error": code, "result": "Error: message."}`.
    pub fn error(code: &str, message: &str) -> Reply {
        let mut content = Vec::new();
        let mut object = Object::new(&mut content);
        object
            .string("error", code)
            .string("result", &format!("Error: {message}."));
        object.finish();
        Reply::json(content)
    }

    /// The error reply for a framing error.
    pub fn frame_error(err: &FrameError) -> Reply {
        Reply::error(err.code(), &err.to_string())
    }

    /// The reply as a frame, ready to send.
    pub fn encode(&self) -> Vec<u8> {
        encode_reply(self)
    }
}

/// The reply as a frame: header with this host's byte order, then the content.
pub fn encode_reply(reply: &Reply) -> Vec<u8> {
    encode_frame(reply.content_type, reply.content_encoding, &reply.content)
}

/// The answer to one request frame.
pub fn respond(frame: &Frame<'_>, index: &Index) -> Reply {
    if !frame.header.content_type.eq_ignore_ascii_case(TEXT_JSON) {
        return binary_reply(frame.content);
    }
    match json_request(frame) {
        Ok(request) => search_reply(&request, index),
        Err((code, message)) => Reply::error(code, &message),
    }
}

/// `First 10 bytes of request: ` and those bytes, as the tutorial's server answers binary content.
fn binary_reply(content: &[u8]) -> Reply {
    let shown = &content[..content.len().min(BINARY_ECHO_LEN)];
    let mut reply = b"First 10 bytes of request: ".to_vec();
    reply.extend_from_slice(shown);
    Reply {
        content_type: SERVER_BINARY,
        content_encoding: BINARY,
        content: reply,
    }
}

/// A `text/json` request's fields, checked: what it asks and, for a search, what for.
#[derive(Debug)]
struct JsonRequest {
    action: String,
    value: Option<String>,
}

type Refusal = (&'static str, String);

fn json_request(frame: &Frame<'_>) -> Result<JsonRequest, Refusal> {
    let fields = content_object(frame)?;
    let action = string_field(&fields, "action")?
        .ok_or_else(|| ("bad-request", "the request has no \"action\"".to_string()))?;
    if action != "search" {
        return Ok(JsonRequest {
            action,
            value: None,
        });
    }
    let value = string_field(&fields, "value")?
        .ok_or_else(|| ("bad-request", "a search needs a \"value\"".to_string()))?;
    Ok(JsonRequest {
        action,
        value: Some(value),
    })
}

/// The content as a JSON object: UTF-8 text (the only text encoding served), JSON, an object.
fn content_object(frame: &Frame<'_>) -> Result<Map<String, Value>, Refusal> {
    let encoding = &frame.header.content_encoding;
    if !["utf-8", "utf8"].contains(&encoding.to_ascii_lowercase().as_str()) {
        return Err((
            "bad-encoding",
            format!("content-encoding {encoding:?} is not supported for text/json (use \"utf-8\")"),
        ));
    }
    let text = std::str::from_utf8(frame.content).map_err(|err| {
        let at = err.valid_up_to();
        (
            "bad-content",
            format!("the content is not valid UTF-8 (at byte {at})"),
        )
    })?;
    let fields = match serde_json::from_str(text) {
        Ok(Value::Object(fields)) => fields,
        Ok(other) => {
            let what = describe(&other);
            return Err((
                "bad-content",
                format!("the content must be a JSON object, not {what}"),
            ));
        }
        Err(err) => return Err(("bad-content", format!("the content is not JSON: {err}"))),
    };
    Ok(fields)
}

fn string_field(fields: &Map<String, Value>, name: &str) -> Result<Option<String>, Refusal> {
    match fields.get(name) {
        None => Ok(None),
        Some(Value::String(text)) => Ok(Some(text.clone())),
        Some(other) => Err((
            "bad-request",
            format!("{name:?} must be a string, not {}", describe(other)),
        )),
    }
}

fn search_reply(request: &JsonRequest, index: &Index) -> Reply {
    let mut content = Vec::new();
    let mut object = Object::new(&mut content);
    let query = match (&request.action[..], &request.value) {
        ("search", Some(query)) => query,
        (action, _) => {
            object.string("result", &format!("Error: invalid action '{action}'."));
            object.finish();
            return Reply::json(content);
        }
    };
    let hits = index.lookup(query);
    match hits.first() {
        Some(hit) => object.string("result", hit.value),
        None => object.string("result", &format!("No match for '{query}'.")),
    };
    if index.mode() != MatchMode::Exact {
        push_hits(object.key("results"), &hits);
    }
    object.finish();
    Reply::json(content)
}

/// `[{"key": K, "value": V}, ...]`
fn push_hits(out: &mut Vec<u8>, hits: &[Hit<'_>]) {
    out.push(b'[');
    for (n, hit) in hits.iter().enumerate() {
        if n > 0 {
            out.extend_from_slice(b", ");
        }
        let mut object = Object::new(out);
        object.string("key", hit.key).string("value", hit.value);
        object.finish();
    }
    out.push(b']');
}

/// What [`answer`] made of a buffer.
#[must_use = "write the replies, drop the consumed bytes, and close after a fatal error"]
#[derive(Debug, Default)]
pub struct Answered {
    /// Every reply, framed, in request order: one write's worth.
    pub replies: Vec<u8>,
    /// How many bytes of the buffer were used up (whole frames, bad ones included).
    pub consumed: usize,
    /// Frames that were bad but skippable: each was answered with an error reply.
    pub skipped: Vec<FrameError>,
    /// The error that ends the connection; its error reply is the last in `replies`.
    pub fatal: Option<FrameError>,
}

/// Answers every whole frame at the start of `buf`, in order. Stops at an incomplete frame (keep its
/// bytes and read more) or at an error that leaves the frame's end unknown (answer it, then close).
pub fn answer(decoder: &mut Decoder, buf: &[u8], index: &Index) -> Answered {
    let mut answered = Answered::default();
    loop {
        let rest = &buf[answered.consumed..];
        match decoder.decode(rest) {
            Ok(None) => return answered,
            Ok(Some((frame, used))) => {
                let reply = respond(&frame, index);
                answered.replies.extend_from_slice(&reply.encode());
                answered.consumed += used;
            }
            Err(err) => {
                let reply = Reply::frame_error(&err);
                answered.replies.extend_from_slice(&reply.encode());
                match err.frame_len() {
                    Some(len) => {
                        answered.consumed += len;
                        answered.skipped.push(err);
                    }
                    None => {
                        answered.fatal = Some(err);
                        return answered;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
