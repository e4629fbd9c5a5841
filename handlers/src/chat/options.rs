//! The `[server.options]` of a chat server, validated once at config time; every problem in the table
//! is reported at once, each naming its key.

use toml::{Table, Value};

use super::command;
use super::format::Prefix;
use super::outbox::Overflow;
use crate::options;

/// The room members join when they connect.
pub const DEFAULT_ROOM: &str = "lobby";
/// Lines a member's outbox holds before the overflow policy applies: a few screens of chat, enough
/// to ride out a burst, small enough that a member that stopped reading costs little.
pub const DEFAULT_QUEUE_MESSAGES: usize = 256;
/// The longest message, in bytes; longer input is cut.
pub const DEFAULT_MAX_LINE: usize = 4096;
/// The most members one chat server holds; each costs a connection and its threads.
pub const DEFAULT_MAX_MEMBERS: usize = 1024;
/// Upper bounds of the numeric options, so a typo cannot ask for unbounded memory.
const MAX_QUEUE_MESSAGES: usize = 1 << 20;
const MAX_MAX_LINE: usize = 1 << 20;
const MAX_MAX_MEMBERS: usize = 1 << 20;

/// The option keys `chat` understands.
const KEYS: &[&str] = &[
    "prefix",
    "utc",
    "room",
    "echo",
    "queue_messages",
    "overflow",
    "max_line",
    "max_members",
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
    /// `queue_messages`: each member's outbox size; default [`DEFAULT_QUEUE_MESSAGES`].
    pub queue_messages: usize,
    /// `overflow`: `"disconnect"` (default) or `"drop"`.
    pub overflow: Overflow,
    /// `max_line`: the longest message in bytes; default [`DEFAULT_MAX_LINE`].
    pub max_line: usize,
    /// `max_members`: the most members at once; default [`DEFAULT_MAX_MEMBERS`].
    pub max_members: usize,
}

impl Default for ChatOptions {
    fn default() -> Self {
        ChatOptions {
            prefix: Prefix::default(),
            utc: false,
            room: DEFAULT_ROOM.to_string(),
            echo: false,
            queue_messages: DEFAULT_QUEUE_MESSAGES,
            overflow: Overflow::default(),
            max_line: DEFAULT_MAX_LINE,
            max_members: DEFAULT_MAX_MEMBERS,
        }
    }
}

impl ChatOptions {
    /// Reads the options table, reporting every problem in it.
    pub fn from_table(table: &Table) -> Result<ChatOptions, String> {
        let mut problems = Vec::new();
        let mut parsed = ChatOptions::default();
        let mut note = |result: Result<(), String>| {
            if let Err(problem) = result {
                problems.push(problem);
            }
        };
        note(options::reject_unknown(table, "chat", KEYS));
        note(parsed.read_text(table));
        note(options::boolean(table, "utc").map(|utc| parsed.utc = utc.unwrap_or(false)));
        note(options::boolean(table, "echo").map(|echo| parsed.echo = echo.unwrap_or(false)));
        note(count(table, "queue_messages", MAX_QUEUE_MESSAGES).map(|n| {
            parsed.queue_messages = n.unwrap_or(DEFAULT_QUEUE_MESSAGES);
        }));
        note(count(table, "max_line", MAX_MAX_LINE).map(|n| {
            parsed.max_line = n.unwrap_or(DEFAULT_MAX_LINE);
        }));
        note(count(table, "max_members", MAX_MAX_MEMBERS).map(|n| {
            parsed.max_members = n.unwrap_or(DEFAULT_MAX_MEMBERS);
        }));
        note(parsed.read_overflow(table));
        if problems.is_empty() {
            Ok(parsed)
        } else {
            Err(problems.join("; "))
        }
    }

    /// `prefix` and `room`.
    fn read_text(&mut self, table: &Table) -> Result<(), String> {
        let mut problems = Vec::new();
        match options::string(table, "prefix") {
            Ok(None) => {}
            Ok(Some(text)) => match Prefix::new(text) {
                Ok(prefix) => self.prefix = prefix,
                Err(err) => problems.push(format!("option \"prefix\": {err}")),
            },
            Err(err) => problems.push(err),
        }
        match options::string(table, "room") {
            Ok(None) => {}
            Ok(Some(room)) => match command::check_name("room", room) {
                Ok(()) => self.room = room.to_string(),
                Err(err) => problems.push(format!("option \"room\": {err}")),
            },
            Err(err) => problems.push(err),
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        }
    }

    fn read_overflow(&mut self, table: &Table) -> Result<(), String> {
        let Some(name) = options::string(table, "overflow")? else {
            return Ok(());
        };
        self.overflow = Overflow::from_name(name).ok_or_else(|| {
            format!("option \"overflow\" must be \"disconnect\" or \"drop\", not {name:?}")
        })?;
        Ok(())
    }
}

/// The whole number under `key`, if present: at least 1 and at most `max`.
fn count(table: &Table, key: &str, max: usize) -> Result<Option<usize>, String> {
    let number = match table.get(key) {
        None => return Ok(None),
        Some(Value::Integer(number)) => *number,
        Some(other) => {
            return Err(format!(
                "option {key:?} must be a whole number, not {} {other}",
                other.type_str()
            ))
        }
    };
    match usize::try_from(number) {
        Ok(n @ 1..) if n <= max => Ok(Some(n)),
        _ => Err(format!(
            "option {key:?} must be from 1 to {max}, got {number}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::format::DEFAULT_PREFIX;

    fn parse(text: &str) -> Result<ChatOptions, String> {
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
    fn every_problem_is_reported_with_its_key() {
        let err = parse(
            "prefix = '%Q'\nroom = 'a b'\necho = 1\nqueue_messages = 0\noverflow = 'block'\n\
             max_line = 'big'\nmax_members = -1\ncolour = 2",
        )
        .unwrap_err();
        for key in [
            "\"prefix\"",
            "room \"a b\"",
            "\"echo\"",
            "\"queue_messages\" must be from 1 to",
            "\"overflow\" must be \"disconnect\" or \"drop\", not \"block\"",
            "\"max_line\" must be a whole number, not string",
            "\"max_members\" must be from 1 to 1048576, got -1",
            "unknown option \"colour\"",
        ] {
            assert!(err.contains(key), "{key} missing from: {err}");
        }
    }
}
