//! Phase 1: serde structs that mirror the file, key for key. They refuse unknown keys and wrong types
//! (the parser's message, with its place), and keep the span of every value phase 2 checks, so a value
//! that is well-typed but wrong still gets a `FILE:LINE:COL`. Sizes are read as signed integers so that
//! a negative size reaches phase 2 and gets a clear message rather than a type error.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::ops::Range;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use toml::Spanned;

/// The whole file: `[[plugin]]` tables and `[[server]]` tables.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFile {
    #[serde(default)]
    pub plugin: Vec<RawPlugin>,
    #[serde(default)]
    pub server: Vec<RawServer>,
}

/// One `[[plugin]]` table: a library to load, and what to do when its handlers panic.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPlugin {
    pub path: Spanned<String>,
    pub disable_after_panics: Option<Spanned<i64>>,
}

/// One `[[server]]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawServer {
    pub name: Spanned<String>,
    pub listen: Spanned<String>,
    pub handler: Spanned<String>,
    pub strategy: Option<Spanned<String>>,
    pub max_threads: Option<Spanned<i64>>,
    pub max_children: Option<Spanned<i64>>,
    pub workers: Option<Spanned<i64>>,
    pub queue: Option<Spanned<i64>>,
    pub loops: Option<Spanned<i64>>,
    pub datagrams: Option<Spanned<String>>,
    pub max_packet_size: Option<Spanned<i64>>,
    pub timeout: Option<Spanned<Seconds>>,
    pub drain_timeout: Option<Spanned<Seconds>>,
    #[serde(default)]
    pub socket: RawSocket,
    pub options: Option<Spanned<RawOptions>>,
}

/// A `[server.options]` table: keys only the server's handler understands, so phase 1 takes any.
/// The place of each key and value is kept, so a key the handler refuses is reported where it is.
#[derive(Debug, Default)]
pub(super) struct RawOptions {
    /// The table as the handler's build function gets it.
    pub table: toml::Table,
    /// Where each top-level key of `table` is written.
    pub places: HashMap<String, OptionPlace>,
}

/// The spans of one option: its key and its value.
#[derive(Debug, Clone)]
pub(super) struct OptionPlace {
    /// The key's bytes in the file.
    pub key: Range<usize>,
    /// The value's bytes in the file.
    pub value: Range<usize>,
}

impl<'de> Deserialize<'de> for RawOptions {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let spanned = BTreeMap::<Spanned<String>, Spanned<toml::Value>>::deserialize(deserializer)?;
        let mut options = RawOptions::default();
        for (key, value) in spanned {
            let place = OptionPlace {
                key: key.span(),
                value: value.span(),
            };
            options.places.insert(key.get_ref().clone(), place);
            options.table.insert(key.into_inner(), value.into_inner());
        }
        Ok(options)
    }
}

/// A `[server.socket]` table; every key is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSocket {
    pub reuse_address: Option<bool>,
    pub reuse_port: Option<bool>,
    pub nodelay: Option<Spanned<bool>>,
    pub recv_buffer_size: Option<Spanned<i64>>,
    pub send_buffer_size: Option<Spanned<i64>>,
    pub request_queue_size: Option<Spanned<i64>>,
    pub v6only: Option<Spanned<bool>>,
    pub unix_mode: Option<Spanned<OctalMode>>,
}

/// A hint for a parse error that has a common cause the parser's message does not name.
pub(super) fn hint(text: &str) -> Option<&'static str> {
    let table: toml::Table = toml::from_str(text).ok()?;
    table
        .get("server")
        .is_some_and(toml::Value::is_table)
        .then_some("write [[server]], with double brackets, at the top of each server's table")
}

/// A duration in seconds, written as an integer (`2`) or a float (`2.5`); checked in phase 2.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Seconds(pub f64);

impl<'de> Deserialize<'de> for Seconds {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(SecondsVisitor)
    }
}

struct SecondsVisitor;

impl Visitor<'_> for SecondsVisitor {
    type Value = Seconds;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a number of seconds (an integer or a float)")
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<Seconds, E> {
        Ok(Seconds(value as f64))
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<Seconds, E> {
        Ok(Seconds(value as f64))
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<Seconds, E> {
        Ok(Seconds(value))
    }
}

/// A Unix file mode, written as an octal string (`"0660"`); TOML's own `0o660` is refused, so that a
/// decimal `660` cannot slip through as a different mode. Checked in phase 2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct OctalMode(pub String);

impl<'de> Deserialize<'de> for OctalMode {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(OctalModeVisitor)
    }
}

struct OctalModeVisitor;

impl Visitor<'_> for OctalModeVisitor {
    type Value = OctalMode;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an octal mode in a string, such as \"0660\"")
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<OctalMode, E> {
        Ok(OctalMode(value.to_string()))
    }
}
