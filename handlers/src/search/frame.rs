//! The search protocol's framing, sans-IO: bytes in, frames or errors out, no socket anywhere.
//!
//! A frame is a 2-byte big-endian header length, that many bytes of UTF-8 JSON header, then the
//! content, `content-length` bytes long. The header's four fields (`byteorder`, `content-type`,
//! `content-encoding`, `content-length`) are all required and type-checked; other fields are ignored.
//!
//! [`parse_frame`] is the whole parser as one pure function: `Ok(None)` means "read more", and the
//! `usize` beside a frame is how many bytes it took. [`Decoder`] is the same parser for a connection:
//! it keeps the header it already parsed while the content trickles in, so a large frame arriving in
//! small pieces costs one header parse, not one per read.
//!
//! Bad input is reported as a [`FrameError`], which knows whether the frame's end is still known
//! ([`FrameError::frame_len`]): if it is, the server answers the error and carries on with the next
//! frame; if not (no usable `content-length`), it answers and closes. A `content-length` above the
//! limit is refused as soon as the header is read, before any content is buffered.

use std::fmt;

use serde_json::{Map, Value};

use super::json::Object;

/// The 2-byte header length in front of every frame.
pub const PREFIX_LEN: usize = 2;

/// The longest header the 2-byte length can announce.
pub const MAX_HEADER_LEN: usize = u16::MAX as usize;

/// The default `max_content_length`: 1 MiB, far above any search request, small enough to buffer.
pub const DEFAULT_MAX_CONTENT_LENGTH: usize = 1 << 20;

/// The content type of JSON requests and replies.
pub const TEXT_JSON: &str = "text/json";
/// The encoding of JSON replies.
pub const UTF_8: &str = "utf-8";
/// The content type of the server's binary replies.
pub const SERVER_BINARY: &str = "binary/custom-server-binary-type";
/// The content type the tutorial's client gives binary requests.
pub const CLIENT_BINARY: &str = "binary/custom-client-binary-type";
/// The encoding of binary content.
pub const BINARY: &str = "binary";

/// The `byteorder` header field: the sender's host byte order, as Python's `sys.byteorder` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteOrder {
    Little,
    Big,
}

impl ByteOrder {
    /// This host's byte order, which every reply carries.
    pub const HOST: ByteOrder = if cfg!(target_endian = "little") {
        ByteOrder::Little
    } else {
        ByteOrder::Big
    };

    pub fn name(self) -> &'static str {
        match self {
            ByteOrder::Little => "little",
            ByteOrder::Big => "big",
        }
    }

    fn from_name(name: &str) -> Option<ByteOrder> {
        match name {
            "little" => Some(ByteOrder::Little),
            "big" => Some(ByteOrder::Big),
            _ => None,
        }
    }
}

/// A frame's header, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// `byteorder`: the sender's byte order; required and checked, but the content is bytes, so
    /// nothing depends on it.
    pub byteorder: ByteOrder,
    /// `content-type`: `text/json` is answered as a search, anything else as binary.
    pub content_type: String,
    /// `content-encoding`: must be `utf-8` for `text/json` content; anything for binary content.
    pub content_encoding: String,
    /// `content-length`: the bytes of content after the header.
    pub content_length: usize,
}

/// One whole frame; the content borrows the caller's buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame<'a> {
    /// The validated header.
    pub header: Header,
    /// The content, `header.content_length` bytes.
    pub content: &'a [u8],
}

/// Why bytes are not a frame. Only [`FrameError::BadField`] leaves the frame's end known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// The header length is 0: no header, so no `content-length` either.
    EmptyHeader,
    /// The header is not UTF-8, not JSON, or not a JSON object.
    HeaderNotJson(String),
    /// `content-length` is missing or not a non-negative integer.
    BadContentLength(String),
    /// `content-length` is above the configured maximum.
    ContentTooLarge {
        /// The `content-length` announced.
        length: u64,
        /// The server's `max_content_length`.
        max: usize,
    },
    /// Another header field is missing or mistyped.
    BadField {
        /// Which field, and what is wrong with it.
        problem: String,
        /// The bad frame's whole length, so the stream can skip it and go on.
        frame_len: usize,
    },
    /// The peer closed the connection in the middle of a frame.
    Truncated {
        /// The bytes of the frame that arrived.
        received: usize,
        /// The frame's whole length, when its header had arrived.
        expected: Option<usize>,
    },
}

impl FrameError {
    /// The length of the bad frame when it is still known, so the caller can skip just that frame;
    /// `None` when the stream can no longer be cut into frames.
    pub fn frame_len(&self) -> Option<usize> {
        match self {
            FrameError::BadField { frame_len, .. } => Some(*frame_len),
            _ => None,
        }
    }

    /// The short, stable name of the error, for the `error` field of the error reply.
    pub fn code(&self) -> &'static str {
        match self {
            FrameError::EmptyHeader => "empty-header",
            FrameError::HeaderNotJson(_)
            | FrameError::BadContentLength(_)
            | FrameError::BadField { .. } => "bad-header",
            FrameError::ContentTooLarge { .. } => "content-too-large",
            FrameError::Truncated { .. } => "truncated",
        }
    }
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::EmptyHeader => f.write_str("the header length is 0 (a frame needs a header)"),
            FrameError::HeaderNotJson(why) => write!(f, "the header is not a JSON object: {why}"),
            FrameError::BadContentLength(why) => write!(f, "header field \"content-length\" {why}"),
            FrameError::ContentTooLarge { length, max } => {
                write!(f, "content-length {length} is above the maximum of {max} bytes")
            }
            FrameError::BadField { problem, .. } => f.write_str(problem),
            FrameError::Truncated {
                received,
                expected: Some(expected),
            } => write!(
                f,
                "the peer closed the connection {received} bytes into a {expected}-byte frame"
            ),
            FrameError::Truncated { received, .. } => write!(
                f,
                "the peer closed the connection {received} bytes into a frame, before its header ended"
            ),
        }
    }
}

impl std::error::Error for FrameError {}

/// Parses the frame at the start of `buf`: `Ok(None)` until all of it is there, then the frame and its
/// length; `max_content_length` bounds `content-length`.
///
/// # Errors
///
/// The [`FrameError`] of a bad frame: an empty or non-JSON header, a missing, bad or too large
/// `content-length`, another field missing or mistyped. Never `Truncated`: more bytes may come.
pub fn parse_frame(
    buf: &[u8],
    max_content_length: usize,
) -> Result<Option<(Frame<'_>, usize)>, FrameError> {
    Decoder::new(max_content_length).decode(buf)
}

/// What the decoder knows about the frame it is waiting for once its header has been read.
#[derive(Debug, Clone)]
struct Head {
    header: Result<Header, String>,
    header_end: usize,
    frame_len: usize,
}

/// [`parse_frame`] for a connection: it remembers the header of the frame it is waiting for.
///
/// Call [`Decoder::decode`] with the unconsumed bytes, always starting at the same frame, until it
/// returns a frame or an error; then drop the bytes it reports consumed (or the bad frame's
/// [`FrameError::frame_len`]) and go on.
#[derive(Debug, Clone)]
pub struct Decoder {
    max_content_length: usize,
    pending: Option<Head>,
}

impl Decoder {
    pub fn new(max_content_length: usize) -> Decoder {
        Decoder {
            max_content_length,
            pending: None,
        }
    }

    /// The frame at the start of `buf`, `Ok(None)` if it is not all there yet.
    ///
    /// # Errors
    ///
    /// As [`parse_frame`]. After an error with a [`FrameError::frame_len`], skip that many bytes
    /// and call again; after any other, the stream cannot be cut into frames any more.
    pub fn decode<'b>(&mut self, buf: &'b [u8]) -> Result<Option<(Frame<'b>, usize)>, FrameError> {
        let head = match self.pending.take() {
            Some(head) => head,
            None => match read_head(buf, self.max_content_length)? {
                Some(head) => head,
                None => return Ok(None),
            },
        };
        let Some(content) = buf.get(head.header_end..head.frame_len) else {
            self.pending = Some(head);
            return Ok(None);
        };
        match head.header {
            Ok(header) => Ok(Some((Frame { header, content }, head.frame_len))),
            Err(problem) => Err(FrameError::BadField {
                problem,
                frame_len: head.frame_len,
            }),
        }
    }

    /// How many bytes the frame being waited for needs in all, once its header is known.
    pub fn wanted(&self) -> Option<usize> {
        self.pending.as_ref().map(|head| head.frame_len)
    }

    /// The error for a connection that ended with `received` bytes of a frame unread.
    pub fn truncated(&self, received: usize) -> FrameError {
        FrameError::Truncated {
            received,
            expected: self.wanted(),
        }
    }
}

/// Reads the length prefix and the header; `Ok(None)` while they are incomplete.
fn read_head(buf: &[u8], max_content_length: usize) -> Result<Option<Head>, FrameError> {
    let Some(prefix) = buf.get(..PREFIX_LEN) else {
        return Ok(None);
    };
    let header_len = usize::from(u16::from_be_bytes([prefix[0], prefix[1]]));
    if header_len == 0 {
        return Err(FrameError::EmptyHeader);
    }
    let header_end = PREFIX_LEN + header_len;
    let Some(header) = buf.get(PREFIX_LEN..header_end) else {
        return Ok(None);
    };
    let fields = header_object(header)?;
    let content_length = content_length(&fields, max_content_length)?;
    let frame_len = header_end
        .checked_add(content_length)
        .ok_or(FrameError::ContentTooLarge {
            length: content_length as u64,
            max: max_content_length,
        })?;
    Ok(Some(Head {
        header: other_fields(&fields, content_length),
        header_end,
        frame_len,
    }))
}

fn header_object(bytes: &[u8]) -> Result<Map<String, Value>, FrameError> {
    let text = std::str::from_utf8(bytes).map_err(|err| {
        FrameError::HeaderNotJson(format!("invalid UTF-8 at byte {}", err.valid_up_to()))
    })?;
    match serde_json::from_str(text) {
        Ok(Value::Object(fields)) => Ok(fields),
        Ok(other) => Err(FrameError::HeaderNotJson(format!(
            "it is {}",
            describe(&other)
        ))),
        Err(err) => Err(FrameError::HeaderNotJson(err.to_string())),
    }
}

fn content_length(fields: &Map<String, Value>, max: usize) -> Result<usize, FrameError> {
    let value = fields
        .get("content-length")
        .ok_or_else(|| FrameError::BadContentLength("is missing".into()))?;
    let length = value.as_u64().ok_or_else(|| {
        FrameError::BadContentLength(format!(
            "must be a non-negative integer, not {}",
            describe(value)
        ))
    })?;
    match usize::try_from(length) {
        Ok(length) if length <= max => Ok(length),
        _ => Err(FrameError::ContentTooLarge { length, max }),
    }
}

/// Checks the fields besides `content-length`, naming the first one that is missing or mistyped.
fn other_fields(fields: &Map<String, Value>, content_length: usize) -> Result<Header, String> {
    let text = |name: &str| match fields.get(name) {
        Some(Value::String(text)) => Ok(text.clone()),
        Some(other) => Err(format!(
            "header field {name:?} must be a string, not {}",
            describe(other)
        )),
        None => Err(format!("header field {name:?} is missing")),
    };
    let order = text("byteorder")?;
    let byteorder = ByteOrder::from_name(&order).ok_or_else(|| {
        format!("header field \"byteorder\" must be \"little\" or \"big\", not {order:?}")
    })?;
    Ok(Header {
        byteorder,
        content_type: text("content-type")?,
        content_encoding: text("content-encoding")?,
        content_length,
    })
}

/// A JSON value's type and, when short, the value itself, for messages: `string "41"`, `array`.
pub fn describe(value: &Value) -> String {
    let kind = match value {
        Value::Null => return "null".into(),
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => return "an array".into(),
        Value::Object(_) => return "an object".into(),
    };
    let shown = value.to_string();
    if shown.len() <= 40 {
        format!("{kind} {shown}")
    } else {
        kind.to_string()
    }
}

/// A whole frame: the header this host writes (Python's separators, fields in the tutorial's order)
/// and `content`.
pub fn encode_frame(
    content_type: &'static str,
    content_encoding: &'static str,
    content: &[u8],
) -> Vec<u8> {
    let mut header = Vec::with_capacity(128);
    let mut object = Object::new(&mut header);
    object
        .string("byteorder", ByteOrder::HOST.name())
        .string("content-type", content_type)
        .string("content-encoding", content_encoding)
        .integer("content-length", content.len() as u64);
    object.finish();
    // The header holds two of the protocol's short constants and a number: far below 64 KiB.
    debug_assert!(header.len() <= MAX_HEADER_LEN);
    let header_len = u16::try_from(header.len()).unwrap_or(u16::MAX);
    let mut frame = Vec::with_capacity(PREFIX_LEN + header.len() + content.len());
    frame.extend_from_slice(&header_len.to_be_bytes());
    frame.extend_from_slice(&header);
    frame.extend_from_slice(content);
    frame
}

#[cfg(test)]
mod tests;
