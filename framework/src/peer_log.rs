//! Log lines about what peers do — resets, broken pipes, oversized datagrams — at one level under
//! every strategy, and at a bounded rate: a peer's doing is not an error of the server's, and a
//! flood of them (5 000 resets) must not flood the log.
//!
//! At most [`LINES_PER_WINDOW`] such lines are written per [`WINDOW`] in a process; the rest are
//! counted, and the next line written after the window says how many were left out. The bound is
//! per process: a forked request child does not log its peer's fault itself but says so in its
//! exit status ([`PEER_FAULT_STATUS`]), and the serving process logs it here.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use log::kv::{ToValue, Value};
use sockserv_plugin::Address;

use crate::metrics::ConnId;
use crate::Client;

/// How long one window of the rate limit lasts.
pub const WINDOW: Duration = Duration::from_secs(1);
/// Lines about peers written per window at most.
pub const LINES_PER_WINDOW: u32 = 10;
/// The exit status of a forked request child whose request the peer ended (a reset, a broken pipe):
/// non-zero, since the request failed, and told apart from 1, a failure of the handler's own.
pub const PEER_FAULT_STATUS: i32 = 2;

/// This process is a forked request child: its peer faults are left to the serving process.
static IN_REQUEST_CHILD: AtomicBool = AtomicBool::new(false);

struct Window {
    started: Option<Instant>,
    written: u32,
    left_out: u64,
}

static LIMIT: Mutex<Window> = Mutex::new(Window {
    started: None,
    written: 0,
    left_out: 0,
});

/// Mark this process as a forked request child (see the module doc).
pub(crate) fn enter_request_child() {
    IN_REQUEST_CHILD.store(true, Ordering::Relaxed);
}

/// Whether this process is a forked request child.
pub(crate) fn in_request_child() -> bool {
    IN_REQUEST_CHILD.load(Ordering::Relaxed)
}

/// The structured fields of a log line about a server's client: with `--log-format json` each
/// is a key of the line's object (`server`, `conn`, `peer`, `reason`); the text format shows
/// only the message, which says the same in words.
#[derive(Debug, Clone, Copy, Default)]
pub struct Fields<'a> {
    pub server: &'a str,
    pub conn: Option<ConnId>,
    pub peer: Option<&'a Address>,
    /// A close's or a refusal's reason, as its metric label writes it.
    pub reason: Option<&'a str>,
}

impl<'a> Fields<'a> {
    /// The fields of a line about `client` of `server`.
    pub fn of(server: &'a str, client: Client<'a>) -> Fields<'a> {
        Fields {
            server,
            conn: client.conn,
            peer: Some(client.peer),
            reason: None,
        }
    }

    /// The same, with a reason.
    pub fn because(self, reason: &'a str) -> Fields<'a> {
        Fields {
            reason: Some(reason),
            ..self
        }
    }
}

impl ToValue for ConnId {
    fn to_value(&self) -> Value<'_> {
        Value::from_display(self)
    }
}

/// A `Display` value as a log field.
struct Shown<'a, T: fmt::Display>(&'a T);

impl<T: fmt::Display> ToValue for Shown<'_, T> {
    fn to_value(&self) -> Value<'_> {
        Value::from_display(self.0)
    }
}

/// `log_with!(level, &fields, format_args!(...))`: write the line at `level` with `fields` (see
/// [`Fields`]), under the calling module's target.
#[macro_export]
macro_rules! log_with {
    ($level:expr, $fields:expr, $line:expr $(,)?) => {
        $crate::peer_log::write(module_path!(), $level, $fields, $line)
    };
}

/// `log_peer_event!(&fields, format_args!(...))`: write the line about a peer's doing at info
/// level, at a bounded rate (see the module doc), under the calling module's target.
#[macro_export]
macro_rules! log_peer_event {
    ($fields:expr, $line:expr $(,)?) => {
        $crate::peer_log::peer_event(module_path!(), $fields, $line)
    };
}

/// What [`log_with!`] does.
#[doc(hidden)]
pub fn write(target: &str, level: log::Level, fields: &Fields<'_>, line: fmt::Arguments<'_>) {
    log::log!(
        target: target,
        level,
        server = fields.server,
        conn = fields.conn,
        peer = fields.peer.map(Shown),
        reason = fields.reason;
        "{line}"
    );
}

/// What [`log_peer_event!`] does: write `line` at info level unless this window's lines are used
/// up (then it is counted).
#[doc(hidden)]
pub fn peer_event(target: &str, fields: &Fields<'_>, line: fmt::Arguments<'_>) {
    if in_request_child() {
        write(target, log::Level::Debug, fields, line);
        return;
    }
    let left_out = {
        let mut window = LIMIT
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let now = Instant::now();
        if window.started.is_none_or(|started| now - started >= WINDOW) {
            window.started = Some(now);
            window.written = 0;
        }
        if window.written >= LINES_PER_WINDOW {
            window.left_out += 1;
            return;
        }
        window.written += 1;
        std::mem::take(&mut window.left_out)
    };
    if left_out > 0 {
        let line =
            format_args!("{line} ({left_out} more like it left out of the log before this one)");
        write(target, log::Level::Info, fields, line);
    } else {
        write(target, log::Level::Info, fields, line);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_is_cut_to_the_window_and_counted() {
        for n in 0..1000 {
            crate::log_peer_event!(&Fields::default(), format_args!("event {n}"));
        }
        let window = LIMIT.lock().unwrap();
        assert!(window.written <= LINES_PER_WINDOW);
        // Even if the window rolled over once during the loop, at most two windows' lines were
        // written and the rest are counted.
        assert!(window.left_out >= 1000 - 2 * u64::from(LINES_PER_WINDOW));
    }
}
