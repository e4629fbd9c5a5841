//! What travels between instances, sans-IO: one JSON object per Redis message, and the names of the
//! channels and keys. Pure functions over bytes, fuzzable like every parser here.
//!
//! A message: `{"v":1,"node":"web-1","inc":123,"room":"lobby","run":4,"seq":17,"kind":"say",
//! "from":"ann","time":1700000000123,"text":"hi"}`:
//!
//! - `node` and `inc` name the origin: its configured name and the incarnation (a number drawn at
//!   start), so two processes that share a node name are still told apart and an instance drops
//!   exactly its own messages coming back;
//! - `room`, `run` and `seq` order them: `seq` counts the origin's messages in that room from 1,
//!   within a `run` (a number the origin draws anew each time the room opens there), so a receiver
//!   that sees `seq` jump knows how many it missed;
//! - `kind` is `say` (a message), `me` (an action) or `notice` (a join, a leave, a rename);
//!   `from` is the sender's nick (or `ip:port`), `time` milliseconds since the Unix epoch at the
//!   origin, `text` what was said.
//!
//! Whatever arrives is untrusted: [`decode`] bounds it ([`MAX_MESSAGE_BYTES`]) and checks every
//! field, and the core neutralises the text like any member's before a line is written.

use serde_json::{json, Value};

/// The largest message accepted from Redis: room for a `max_line` of up to 64 KiB escaped.
pub const MAX_MESSAGE_BYTES: usize = 512 * 1024;
/// The format's version; a message of another is refused.
const VERSION: u64 = 1;

/// What a message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Say,
    Me,
    Notice,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Say => "say",
            Kind::Me => "me",
            Kind::Notice => "notice",
        }
    }

    fn from_name(name: &str) -> Option<Kind> {
        match name {
            "say" => Some(Kind::Say),
            "me" => Some(Kind::Me),
            "notice" => Some(Kind::Notice),
            _ => None,
        }
    }
}

/// Who sent a message: a node name and its incarnation.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Origin {
    pub node: String,
    pub inc: u64,
}

/// One message between instances.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub origin: Origin,
    pub room: String,
    /// The room's run at the origin (see the module doc).
    pub run: u64,
    /// 1, 2, 3... within the run.
    pub seq: u64,
    pub kind: Kind,
    /// The sender's name; empty for a notice.
    pub from: String,
    /// Milliseconds since the Unix epoch at the origin.
    pub time: i64,
    pub text: String,
}

/// Why a message from Redis was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WireError {
    TooLong(usize),
    NotJson(String),
    /// A field missing or of the wrong type, or another version.
    Field(&'static str),
}

impl std::fmt::Display for WireError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WireError::TooLong(n) => write!(f, "{n} bytes, more than {MAX_MESSAGE_BYTES}"),
            WireError::NotJson(why) => write!(f, "not JSON: {why}"),
            WireError::Field(name) => write!(f, "field {name:?} missing or malformed"),
        }
    }
}

/// The message as it goes to Redis.
pub fn encode(message: &Message) -> Vec<u8> {
    json!({
        "v": VERSION,
        "node": message.origin.node,
        "inc": message.origin.inc,
        "room": message.room,
        "run": message.run,
        "seq": message.seq,
        "kind": message.kind.as_str(),
        "from": message.from,
        "time": message.time,
        "text": message.text,
    })
    .to_string()
    .into_bytes()
}

/// A message read from Redis.
///
/// # Errors
///
/// [`WireError`]: too long, not JSON, or a field missing, mistyped or of another version.
pub fn decode(bytes: &[u8]) -> Result<Message, WireError> {
    if bytes.len() > MAX_MESSAGE_BYTES {
        return Err(WireError::TooLong(bytes.len()));
    }
    let value: Value =
        serde_json::from_slice(bytes).map_err(|err| WireError::NotJson(err.to_string()))?;
    let text = |name: &'static str| {
        value
            .get(name)
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or(WireError::Field(name))
    };
    let number = |name: &'static str| {
        value
            .get(name)
            .and_then(Value::as_u64)
            .ok_or(WireError::Field(name))
    };
    if number("v")? != VERSION {
        return Err(WireError::Field("v"));
    }
    let kind = Kind::from_name(&text("kind")?).ok_or(WireError::Field("kind"))?;
    Ok(Message {
        origin: Origin {
            node: text("node")?,
            inc: number("inc")?,
        },
        room: text("room")?,
        run: number("run")?,
        seq: number("seq")?,
        kind,
        from: text("from")?,
        time: value
            .get("time")
            .and_then(Value::as_i64)
            .ok_or(WireError::Field("time"))?,
        text: text("text")?,
    })
}

/// The channel of `room`: `PREFIX:room:ROOM`.
pub fn channel(prefix: &str, room: &str) -> String {
    format!("{prefix}:room:{room}")
}

/// The room a channel of this deployment is for.
pub fn room_of<'a>(prefix: &str, channel: &'a str) -> Option<&'a str> {
    channel.strip_prefix(prefix)?.strip_prefix(":room:")
}

/// The set of every instance that wrote its presence: `PREFIX:instances`.
pub fn instances_key(prefix: &str) -> String {
    format!("{prefix}:instances")
}

/// One instance's presence hash (room → its members' names, one a line): `PREFIX:presence:ID`.
pub fn presence_key(prefix: &str, instance: &str) -> String {
    format!("{prefix}:presence:{instance}")
}

/// The claim on a nick's key (see [`nicks`](crate::chat::nicks)): `PREFIX:nick:KEY`.
pub fn nick_key(prefix: &str, key: &str) -> String {
    format!("{prefix}:nick:{key}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message() -> Message {
        Message {
            origin: Origin {
                node: "web-1".into(),
                inc: 99,
            },
            room: "lobby".into(),
            run: 4,
            seq: 17,
            kind: Kind::Me,
            from: "ann".into(),
            time: 1_700_000_000_123,
            text: "waves \"hi\"\n\u{1b}".into(),
        }
    }

    #[test]
    fn a_message_survives_the_trip() {
        let bytes = encode(&message());
        assert_eq!(decode(&bytes), Ok(message()));
    }

    #[test]
    fn malformed_messages_say_what_is_wrong() {
        assert!(matches!(decode(b"{"), Err(WireError::NotJson(_))));
        assert_eq!(decode(b"{\"v\":2}"), Err(WireError::Field("v")));
        let mut value: Value = serde_json::from_slice(&encode(&message())).unwrap();
        value["seq"] = json!(-1);
        let bytes = value.to_string().into_bytes();
        assert_eq!(decode(&bytes), Err(WireError::Field("seq")));
        value["seq"] = json!(1);
        value["kind"] = json!("shout");
        let bytes = value.to_string().into_bytes();
        assert_eq!(decode(&bytes), Err(WireError::Field("kind")));
        let long = vec![b' '; MAX_MESSAGE_BYTES + 1];
        assert_eq!(decode(&long), Err(WireError::TooLong(long.len())));
    }

    #[test]
    fn channels_name_their_room() {
        let channel = channel("p:x", "dev");
        assert_eq!(channel, "p:x:room:dev");
        assert_eq!(room_of("p:x", &channel), Some("dev"));
        assert_eq!(room_of("q", &channel), None);
    }
}
