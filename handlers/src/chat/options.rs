//! The `[server.options]` of a chat server, validated once at config time; every problem in the table
//! is reported at once, each naming its key.

use std::time::Duration;

use sockserv_framework::config::{OptionError, OptionErrors};
use toml::{Table, Value};

use std::sync::Arc;

use super::cluster::options::ClusterOptions;
use super::command;
use super::format::Prefix;
use super::outbox::Overflow;
use crate::options;

/// The room members join when they connect.
pub const DEFAULT_ROOM: &str = "lobby";
/// Lines a member's outbox holds before the overflow policy applies: a few screens of chat, enough
/// to ride out a burst, small enough that a member that stopped reading costs little.
pub const DEFAULT_QUEUE_MESSAGES: usize = 256;
/// Bytes a member's queue holds (what is queued plus what was taken for writing and is not written
/// yet): 64 messages of the longest kind, many more of the usual; with `max_members` members the
/// queues can never hold more than this many times it.
pub const DEFAULT_QUEUE_BYTES: usize = 256 * 1024;
/// How long a member's queue may stay full while its peer takes nothing (no write to its
/// connection, its socket's send queue standing still) before the member is judged too slow: long
/// enough for any reader that is reading at all to make progress through a burst, short enough
/// that a stuck one is noticed.
pub const DEFAULT_SLOW_AFTER: Duration = Duration::from_secs(10);
/// The messages a second a member may send, sustained: far above typing, and a pasted page still
/// goes through in a few seconds.
pub const DEFAULT_RATE: f64 = 100.0;
/// The messages a member may send at once before its rate applies: well inside a reader's queue
/// (`queue_messages`), so one burst cannot fill it.
pub const DEFAULT_BURST: usize = 32;
/// The longest message, in bytes; longer input is cut.
pub const DEFAULT_MAX_LINE: usize = 4096;
/// The most members one chat server holds; each costs a connection and its threads.
pub const DEFAULT_MAX_MEMBERS: usize = 1024;
/// Upper bounds of the numeric options, so a typo cannot ask for unbounded memory.
const MAX_QUEUE_MESSAGES: usize = 1 << 20;
const MAX_MAX_LINE: usize = 1 << 20;
const MAX_MAX_MEMBERS: usize = 1 << 20;
const MAX_QUEUE_BYTES: usize = 1 << 30;
const MAX_BURST: usize = 1 << 20;
/// `slow_after`'s range in seconds: 0 judges a member slow as soon as a message finds its queue
/// full (no grace at all); an hour is already far past any use.
const SLOW_AFTER_RANGE: (f64, f64) = (0.0, 3600.0);
/// `rate`'s range in messages a second: one message every 100 s up to a million a second.
const RATE_RANGE: (f64, f64) = (0.01, 1_000_000.0);

/// The option keys `chat` understands.
const KEYS: &[&str] = &[
    "prefix",
    "utc",
    "room",
    "echo",
    "nick_from_certificate",
    "queue_messages",
    "queue_bytes",
    "slow_after",
    "overflow",
    "rate",
    "burst",
    "max_line",
    "max_members",
    "cluster",
];

/// The validated options of a chat server.
#[derive(Debug, Clone)]
pub struct ChatOptions {
    /// `prefix`: strftime with `{from}` for the sender; default
    /// [`DEFAULT_PREFIX`](super::format::DEFAULT_PREFIX).
    pub prefix: Prefix,
    /// `utc`: the prefix's time in UTC rather than local time; default false.
    pub utc: bool,
    /// `room`: where members start; default [`DEFAULT_ROOM`].
    pub room: String,
    /// `echo`: a member's messages come back to it too; default false.
    pub echo: bool,
    /// `nick_from_certificate`: on a TLS server that asks for client certificates, a member
    /// starts with its certificate's common name as its nick (when that is a valid nick no one
    /// holds; else it is told why and starts as `ip:port`); default false.
    pub nick_from_certificate: bool,
    /// `queue_messages`: the messages each member's queue holds; default
    /// [`DEFAULT_QUEUE_MESSAGES`], 1 to 1048576.
    pub queue_messages: usize,
    /// `queue_bytes`: the bytes each member's queue holds; default [`DEFAULT_QUEUE_BYTES`], 1 to
    /// 2^30. An empty queue takes one message of any length.
    pub queue_bytes: usize,
    /// `slow_after`: seconds a member's queue may stay full while its peer takes nothing (see
    /// [`outbox`](super::outbox)) before the member is judged too slow; default
    /// [`DEFAULT_SLOW_AFTER`], 0 to 3600.
    pub slow_after: Duration,
    /// `overflow`: what becomes of a member judged too slow: `"disconnect"` (default) or `"drop"`.
    pub overflow: Overflow,
    /// `rate`: messages a second each member may send, sustained; default [`DEFAULT_RATE`], 0.01
    /// to 1000000. Beyond it the server stops reading the member until it is within its rate.
    pub rate: f64,
    /// `burst`: messages a member may send at once before `rate` applies; default
    /// [`DEFAULT_BURST`], 1 to 1048576.
    pub burst: usize,
    /// `max_line`: the longest message in bytes; default [`DEFAULT_MAX_LINE`].
    pub max_line: usize,
    /// `max_members`: the most members at once; default [`DEFAULT_MAX_MEMBERS`].
    pub max_members: usize,
    /// `cluster`: rooms shared with other instances through Redis (see
    /// [`cluster`](super::cluster)); default none: this instance alone.
    pub cluster: Option<Arc<ClusterOptions>>,
}

impl Default for ChatOptions {
    fn default() -> Self {
        ChatOptions {
            prefix: Prefix::default(),
            utc: false,
            room: DEFAULT_ROOM.to_string(),
            echo: false,
            nick_from_certificate: false,
            queue_messages: DEFAULT_QUEUE_MESSAGES,
            queue_bytes: DEFAULT_QUEUE_BYTES,
            slow_after: DEFAULT_SLOW_AFTER,
            overflow: Overflow::default(),
            rate: DEFAULT_RATE,
            burst: DEFAULT_BURST,
            max_line: DEFAULT_MAX_LINE,
            max_members: DEFAULT_MAX_MEMBERS,
            cluster: None,
        }
    }
}

impl ChatOptions {
    /// Reads the options table.
    ///
    /// # Errors
    ///
    /// Every problem in the table, each naming its key: a key chat does not take, a value of the
    /// wrong type, a `prefix` chrono cannot use, a `room` that is not a valid name, a count or a
    /// number out of range, an unknown `overflow` policy.
    pub fn from_table(table: &Table) -> Result<ChatOptions, OptionErrors> {
        let mut problems = options::Problems::new(table, "chat", KEYS);
        let mut parsed = ChatOptions::default();
        parsed.read_text(table, &mut problems);
        if let Some(utc) = problems.note(options::boolean(table, "utc")).flatten() {
            parsed.utc = utc;
        }
        if let Some(echo) = problems.note(options::boolean(table, "echo")).flatten() {
            parsed.echo = echo;
        }
        let from_certificate = options::boolean(table, "nick_from_certificate");
        if let Some(from_certificate) = problems.note(from_certificate).flatten() {
            parsed.nick_from_certificate = from_certificate;
        }
        let queue = problems.note(count(table, "queue_messages", MAX_QUEUE_MESSAGES));
        if let Some(n) = queue.flatten() {
            parsed.queue_messages = n;
        }
        if let Some(n) = problems
            .note(count(table, "max_line", MAX_MAX_LINE))
            .flatten()
        {
            parsed.max_line = n;
        }
        let members = problems.note(count(table, "max_members", MAX_MAX_MEMBERS));
        if let Some(n) = members.flatten() {
            parsed.max_members = n;
        }
        if let Some(overflow) = problems.note(read_overflow(table)).flatten() {
            parsed.overflow = overflow;
        }
        parsed.read_pace(table, &mut problems);
        if let Some(value) = table.get("cluster") {
            match ClusterOptions::from_value(value) {
                Ok(cluster) => parsed.cluster = Some(Arc::new(cluster)),
                Err(errors) => errors.into_iter().for_each(|error| problems.push(error)),
            }
        }
        problems.finish(parsed)
    }

    /// `queue_bytes`, `slow_after`, `rate` and `burst`.
    fn read_pace(&mut self, table: &Table, problems: &mut options::Problems) {
        if let Some(n) = problems
            .note(count(table, "queue_bytes", MAX_QUEUE_BYTES))
            .flatten()
        {
            self.queue_bytes = n;
        }
        if let Some(n) = problems.note(count(table, "burst", MAX_BURST)).flatten() {
            self.burst = n;
        }
        let slow = problems.note(number(table, "slow_after", "seconds", SLOW_AFTER_RANGE));
        if let Some(seconds) = slow.flatten() {
            self.slow_after = Duration::from_secs_f64(seconds);
        }
        let rate = problems.note(number(table, "rate", "messages a second", RATE_RANGE));
        if let Some(rate) = rate.flatten() {
            self.rate = rate;
        }
    }

    /// `prefix` and `room`.
    fn read_text(&mut self, table: &Table, problems: &mut options::Problems) {
        if let Some(text) = problems.note(options::string(table, "prefix")).flatten() {
            match Prefix::new(text) {
                Ok(prefix) => self.prefix = prefix,
                Err(err) => problems.push(options::invalid("prefix", err)),
            }
        }
        if let Some(room) = problems.note(options::string(table, "room")).flatten() {
            match command::check_name("room", room) {
                Ok(()) => self.room = room.to_string(),
                Err(err) => problems.push(options::invalid("room", err)),
            }
        }
    }
}

/// `overflow`, if present.
fn read_overflow(table: &Table) -> Result<Option<Overflow>, OptionError> {
    let Some(name) = options::string(table, "overflow")? else {
        return Ok(None);
    };
    let overflow = Overflow::from_name(name).ok_or_else(|| {
        let message =
            format!("option \"overflow\" must be \"disconnect\" or \"drop\", not {name:?}");
        OptionError::value("overflow", message)
    })?;
    Ok(Some(overflow))
}

/// The whole number under `key`, if present: at least 1 and at most `max`.
fn count(table: &Table, key: &str, max: usize) -> Result<Option<usize>, OptionError> {
    let number = match table.get(key) {
        None => return Ok(None),
        Some(Value::Integer(number)) => *number,
        Some(other) => {
            let message = format!(
                "option {key:?} must be a whole number, not {} {other}",
                other.type_str()
            );
            return Err(OptionError::value(key, message));
        }
    };
    match usize::try_from(number) {
        Ok(n @ 1..) if n <= max => Ok(Some(n)),
        _ => Err(OptionError::value(
            key,
            format!("option {key:?} must be from 1 to {max}, got {number}"),
        )),
    }
}

/// The number (whole or not) under `key`, if present, within `range` (inclusive); `unit` names
/// what it counts, for the message.
fn number(
    table: &Table,
    key: &str,
    unit: &str,
    range: (f64, f64),
) -> Result<Option<f64>, OptionError> {
    let value = match table.get(key) {
        None => return Ok(None),
        Some(Value::Integer(number)) => *number as f64,
        Some(Value::Float(number)) => *number,
        Some(other) => {
            let message = format!(
                "option {key:?} must be a number of {unit}, not {} {other}",
                other.type_str()
            );
            return Err(OptionError::value(key, message));
        }
    };
    let (low, high) = range;
    if value.is_finite() && (low..=high).contains(&value) {
        return Ok(Some(value));
    }
    Err(OptionError::value(
        key,
        format!("option {key:?} must be from {low} to {high} {unit}, got {value}"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::format::DEFAULT_PREFIX;

    fn parse(text: &str) -> Result<ChatOptions, OptionErrors> {
        ChatOptions::from_table(&text.parse().unwrap())
    }

    #[test]
    fn no_options_means_every_default() {
        let options = parse("").unwrap();
        assert_eq!(options.prefix.as_str(), DEFAULT_PREFIX);
        assert_eq!(options.room, "lobby");
        assert!(!options.echo && !options.utc);
        assert_eq!(options.queue_messages, 256);
        assert_eq!(options.overflow, Overflow::Disconnect);
        assert_eq!(options.max_line, 4096);
        assert_eq!(options.max_members, 1024);
        assert_eq!(options.queue_bytes, 262_144);
        assert_eq!(options.slow_after, Duration::from_secs(10));
        assert_eq!((options.rate, options.burst), (100.0, 32));
    }

    #[test]
    fn pace_options_take_whole_numbers_and_fractions() {
        let options = parse("queue_bytes = 1000\nslow_after = 0.5\nrate = 2\nburst = 3").unwrap();
        assert_eq!(options.queue_bytes, 1000);
        assert_eq!(options.slow_after, Duration::from_millis(500));
        assert_eq!((options.rate, options.burst), (2.0, 3));
        let options = parse("slow_after = 0\nrate = 0.5").unwrap();
        assert_eq!((options.slow_after, options.rate), (Duration::ZERO, 0.5));
    }

    #[test]
    fn pace_options_out_of_range_are_refused_by_key() {
        let errors = parse("queue_bytes = 0\nslow_after = -1\nrate = 0\nburst = 'many'")
            .unwrap_err()
            .0;
        let expected = [
            (
                "queue_bytes",
                "option \"queue_bytes\" must be from 1 to 1073741824, got 0",
            ),
            (
                "slow_after",
                "option \"slow_after\" must be from 0 to 3600 seconds, got -1",
            ),
            (
                "rate",
                "option \"rate\" must be from 0.01 to 1000000 messages a second, got 0",
            ),
            (
                "burst",
                "option \"burst\" must be a whole number, not string",
            ),
        ];
        assert_eq!(errors.len(), expected.len(), "{errors:?}");
        for (key, part) in expected {
            let error = errors
                .iter()
                .find(|error| error.key() == Some(key))
                .unwrap();
            assert!(error.message.starts_with(part), "{part:?}: {error:?}");
        }
        let errors = parse("slow_after = 'soon'\nrate = inf").unwrap_err().0;
        assert!(errors[0]
            .message
            .contains("must be a number of seconds, not string"));
        assert!(errors[1].message.contains("got inf"), "{errors:?}");
    }

    #[test]
    fn every_option_is_read() {
        let options = parse(
            "prefix = '[%H:%M] {from}: '\nutc = true\nroom = 'hall'\necho = true\n\
             queue_messages = 8\noverflow = 'drop'\nmax_line = 100\nmax_members = 3",
        )
        .unwrap();
        assert_eq!(options.prefix.as_str(), "[%H:%M] {from}: ");
        assert!(options.utc && options.echo);
        assert_eq!(options.room, "hall");
        assert_eq!(options.queue_messages, 8);
        assert_eq!(options.overflow, Overflow::Drop);
        assert_eq!((options.max_line, options.max_members), (100, 3));
    }

    #[test]
    fn every_problem_is_reported_on_its_own_with_its_key() {
        let errors = parse(
            "prefix = '%Q'\nroom = 'a b'\necho = 1\nqueue_messages = 0\noverflow = 'block'\n\
             max_line = 'big'\nmax_members = -1\ncolour = 2",
        )
        .unwrap_err()
        .0;
        let expected = [
            ("colour", "unknown option \"colour\""),
            ("prefix", "option \"prefix\": "),
            ("room", "option \"room\": room \"a b\""),
            ("echo", "option \"echo\" must be a boolean"),
            (
                "queue_messages",
                "option \"queue_messages\" must be from 1 to",
            ),
            (
                "max_line",
                "option \"max_line\" must be a whole number, not string",
            ),
            (
                "max_members",
                "option \"max_members\" must be from 1 to 1048576, got -1",
            ),
            (
                "overflow",
                "option \"overflow\" must be \"disconnect\" or \"drop\", not \"block\"",
            ),
        ];
        assert_eq!(errors.len(), expected.len(), "{errors:?}");
        for (key, part) in expected {
            let error = errors.iter().find(|error| error.key() == Some(key));
            let error = error.unwrap_or_else(|| panic!("no problem with {key}: {errors:?}"));
            assert!(error.message.starts_with(part), "{part:?}: {error:?}");
        }
    }
}
