//! Log lines about what peers do — resets, broken pipes, oversized datagrams — at one level under
//! every strategy, and at a bounded rate: a peer's doing is not an error of the server's, and a
//! flood of them (5 000 resets) must not flood the log.
//!
//! At most [`LINES_PER_WINDOW`] such lines are written per [`WINDOW`] in a process; the rest are
//! counted, and the next line written after the window says how many were left out. The bound is
//! per process: a forked request child does not log its peer's fault itself but says so in its
//! exit status ([`PEER_FAULT_STATUS`]), and the serving process logs it here.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

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

/// Write `line` at info level unless this window's lines are used up (then it is counted).
pub fn log_peer_event(line: std::fmt::Arguments<'_>) {
    if in_request_child() {
        log::debug!("{line}");
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
        log::info!("{line} ({left_out} more like it left out of the log before this one)");
    } else {
        log::info!("{line}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_is_cut_to_the_window_and_counted() {
        for n in 0..1000 {
            log_peer_event(format_args!("event {n}"));
        }
        let window = LIMIT.lock().unwrap();
        assert!(window.written <= LINES_PER_WINDOW);
        // Even if the window rolled over once during the loop, at most two windows' lines were
        // written and the rest are counted.
        assert!(window.left_out >= 1000 - 2 * u64::from(LINES_PER_WINDOW));
    }
}
