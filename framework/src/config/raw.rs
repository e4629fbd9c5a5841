//! Phase 1's result: structs that mirror the file, key for key, each value with its span, so that a
//! value that is well-typed but wrong still gets a `FILE:LINE:COL` in phase 2. `read.rs` fills them;
//! a key it could not read (a wrong type, reported there) is left out, as if it were not written.
//! Sizes are kept as signed integers so that a negative size reaches phase 2 and is told its range.

use std::collections::HashMap;
use std::ops::Range;

use toml::Spanned;

use super::proxy_protocol::RawProxyProtocol;
use super::server_limits::RawLimits;
use super::tls::RawTls;

/// The whole file: `user` and `group`, `[[plugin]]` tables and `[[server]]` tables, each as far as
/// phase 1 read it.
#[derive(Debug, Default)]
pub(super) struct RawFile {
    /// The user to run as once every socket is bound.
    pub user: Option<Spanned<String>>,
    /// The group to run as once every socket is bound.
    pub group: Option<Spanned<String>>,
    pub plugin: Vec<RawPlugin>,
    /// The servers that have a `name`, a `listen` and a `handler`; one without is reported in
    /// phase 1 and not checked further.
    pub server: Vec<RawServer>,
}

/// One `[[plugin]]` table: a library to load, and what to do when its handlers panic.
#[derive(Debug)]
pub(super) struct RawPlugin {
    pub path: Spanned<String>,
    pub disable_after_panics: Option<Spanned<i64>>,
}

/// One `[[server]]` table.
#[derive(Debug)]
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
    pub socket: RawSocket,
    /// `[server.limits]` (see `server_limits`).
    pub limits: RawLimits,
    /// `[server.proxy_protocol]` (see `proxy_protocol`), if written.
    pub proxy_protocol: Option<RawProxyProtocol>,
    /// `[server.tls]` (see `tls`), if written.
    pub tls: Option<RawTls>,
    pub options: Option<Spanned<RawOptions>>,
    /// Keys written with a value phase 1 could not read (reported there). Phase 2 must not take
    /// their absence for the default: an unreadable `strategy` is not "threading", and unreadable
    /// `options` are not an empty table.
    pub unreadable: Vec<&'static str>,
}

impl RawServer {
    /// Whether `key` was written but could not be read.
    pub fn unreadable(&self, key: &str) -> bool {
        self.unreadable.contains(&key)
    }
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

/// A `[server.socket]` table; every key is optional.
#[derive(Debug, Default)]
pub(super) struct RawSocket {
    pub reuse_address: Option<bool>,
    pub reuse_port: Option<bool>,
    pub nodelay: Option<Spanned<bool>>,
    pub recv_buffer_size: Option<Spanned<i64>>,
    pub send_buffer_size: Option<Spanned<i64>>,
    pub request_queue_size: Option<Spanned<i64>>,
    pub v6only: Option<Spanned<bool>>,
    pub unix_mode: Option<Spanned<OctalMode>>,
    pub owner: Option<Spanned<String>>,
    pub group: Option<Spanned<String>>,
}

/// A duration in seconds, written as an integer (`2`) or a float (`2.5`); checked in phase 2.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Seconds(pub f64);

/// A Unix file mode, written as an octal string (`"0660"`); TOML's own `0o660` is refused, so that a
/// decimal `660` cannot slip through as a different mode. Checked in phase 2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct OctalMode(pub String);
