//! A connection's time limits — `first_byte_timeout`, `idle_timeout`, `max_connection_duration` —
//! computed the same way for every strategy, with no thread or timer per connection.
//!
//! Blocking strategies (sync, threading, pool, forking) apply them through the socket's own
//! timeouts (`SO_RCVTIMEO`/`SO_SNDTIMEO`, see [`Watched`]): a read or write that waits too long
//! fails with an `io::Error` of kind `TimedOut` that the handler sees, as socketserver's `timeout`
//! attribute makes a request's socket raise `socket.timeout`. The reactor keeps a deadline heap per
//! loop and asks [`Deadlines`] when each connection's next one is.

use std::fmt;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use socket2::Socket;

use crate::limits::Limits;

/// Which limit a connection ran into; its `Display` is the reason logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Expiry {
    FirstByte(Duration),
    Idle(Duration),
    MaxDuration(Duration),
}

impl fmt::Display for Expiry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = |d: &Duration| d.as_secs_f64();
        match self {
            Expiry::FirstByte(d) => {
                write!(f, "first_byte_timeout ({} s): nothing received", secs(d))
            }
            Expiry::Idle(d) => write!(f, "idle_timeout ({} s): no byte either way", secs(d)),
            Expiry::MaxDuration(d) => write!(f, "max_duration ({} s): open too long", secs(d)),
        }
    }
}

impl std::error::Error for Expiry {}

impl Expiry {
    /// The error a handler's read or write gets; [`Expiry::of`] finds the limit in it again.
    pub fn error(self) -> io::Error {
        io::Error::new(io::ErrorKind::TimedOut, self)
    }

    /// The close reason this limit is, in the metrics and the connection's log line.
    pub fn reason(self) -> crate::metrics::CloseReason {
        use crate::metrics::CloseReason;
        match self {
            Expiry::FirstByte(_) => CloseReason::FirstByteTimeout,
            Expiry::Idle(_) => CloseReason::IdleTimeout,
            Expiry::MaxDuration(_) => CloseReason::MaxConnectionDuration,
        }
    }

    /// The limit behind `err`, if a limit made it.
    pub fn of(err: &io::Error) -> Option<Expiry> {
        err.get_ref()?.downcast_ref::<Expiry>().copied()
    }

    /// The exit status of a forked request child that this limit ended: 3, 4 or 5, so that the
    /// serving process can log the reason (the child logs nothing of a peer's doing itself).
    pub fn exit_status(self) -> i32 {
        match self {
            Expiry::FirstByte(_) => 3,
            Expiry::Idle(_) => 4,
            Expiry::MaxDuration(_) => 5,
        }
    }

    /// The limit a child's exit `status` names, with its duration from `limits`.
    pub fn from_exit_status(status: i32, limits: &Limits) -> Option<Expiry> {
        match status {
            3 => limits.first_byte_timeout.map(Expiry::FirstByte),
            4 => limits.idle_timeout.map(Expiry::Idle),
            5 => limits.max_connection_duration.map(Expiry::MaxDuration),
            _ => None,
        }
    }
}

/// The time limits of a server's connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Deadlines {
    first_byte: Option<Duration>,
    idle: Option<Duration>,
    max_duration: Option<Duration>,
}

/// Where one connection stands against its limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Progress {
    pub opened: Instant,
    pub last_activity: Instant,
    pub got_first_byte: bool,
}

impl Progress {
    pub fn new(now: Instant) -> Progress {
        Progress {
            opened: now,
            last_activity: now,
            got_first_byte: false,
        }
    }
}

impl Deadlines {
    /// The limits' deadlines; `None` when there are none.
    pub fn of(limits: &Limits) -> Option<Deadlines> {
        let deadlines = Deadlines {
            first_byte: limits.first_byte_timeout,
            idle: limits.idle_timeout,
            max_duration: limits.max_connection_duration,
        };
        let any = deadlines.first_byte.is_some()
            || deadlines.idle.is_some()
            || deadlines.max_duration.is_some();
        any.then_some(deadlines)
    }

    /// Each deadline that applies now, with what it means.
    fn each(&self, progress: &Progress) -> impl Iterator<Item = (Instant, Expiry)> {
        // A limit too long to add to the clock never falls due.
        let first = (!progress.got_first_byte)
            .then_some(self.first_byte)
            .flatten()
            .and_then(|d| Some((progress.opened.checked_add(d)?, Expiry::FirstByte(d))));
        let idle = self
            .idle
            .and_then(|d| Some((progress.last_activity.checked_add(d)?, Expiry::Idle(d))));
        let total = self
            .max_duration
            .and_then(|d| Some((progress.opened.checked_add(d)?, Expiry::MaxDuration(d))));
        [first, idle, total].into_iter().flatten()
    }

    /// The earliest deadline.
    pub fn next(&self, progress: &Progress) -> Option<Instant> {
        self.each(progress).map(|(at, _)| at).min()
    }

    /// The limit passed by `now`, if any (the earliest).
    pub fn expired(&self, progress: &Progress, now: Instant) -> Option<Expiry> {
        self.each(progress)
            .filter(|(at, _)| *at <= now)
            .min_by_key(|(at, _)| *at)
            .map(|(_, expiry)| expiry)
    }
}

/// A blocking connection's progress, shared by its reader and writer (which may run on two threads
/// of a handler), with the socket timeouts last set.
#[derive(Debug)]
pub(crate) struct Watched {
    deadlines: Deadlines,
    opened: Instant,
    /// Nanoseconds from `opened` to the last byte read or written.
    activity: AtomicU64,
    got_first_byte: AtomicBool,
    /// A limit ended the connection: its close need not wait for the peer.
    expired: AtomicBool,
}

impl Watched {
    pub fn new(deadlines: Deadlines, now: Instant) -> Watched {
        Watched {
            deadlines,
            opened: now,
            activity: AtomicU64::new(0),
            got_first_byte: AtomicBool::new(false),
            expired: AtomicBool::new(false),
        }
    }

    fn progress(&self) -> Progress {
        let nanos = self.activity.load(Ordering::Relaxed);
        Progress {
            opened: self.opened,
            last_activity: self.opened + Duration::from_nanos(nanos),
            got_first_byte: self.got_first_byte.load(Ordering::Relaxed),
        }
    }

    /// Bytes moved: the idle clock starts again (and, reading, the first byte has come).
    pub fn touch(&self, read: bool) {
        let nanos = u64::try_from(self.opened.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.activity.fetch_max(nanos, Ordering::Relaxed);
        if read {
            self.got_first_byte.store(true, Ordering::Relaxed);
        }
    }

    /// Whether a limit ended the connection.
    pub fn has_expired(&self) -> bool {
        self.expired.load(Ordering::Relaxed)
    }

    /// How long the next read or write may wait, or the limit already passed. A steady idle timeout
    /// gives the same answer every time, so the socket option is set once, not per call.
    pub fn wait_limit(&self, now: Instant) -> Result<Option<Duration>, Expiry> {
        let progress = self.progress();
        if let Some(expiry) = self.deadlines.expired(&progress, now) {
            self.expired.store(true, Ordering::Relaxed);
            return Err(expiry);
        }
        let exact = self.deadlines.next(&progress).map(|at| at - now);
        // Right after activity (the usual case) the exact wait is the idle timeout itself less a
        // few microseconds: round it up to the whole timeout so the option stays unchanged.
        Ok(match (exact, self.deadlines.idle) {
            (Some(left), Some(idle)) if idle.saturating_sub(left) < Duration::from_millis(10) => {
                Some(idle)
            }
            (exact, _) => exact,
        })
    }
}

/// A read or write that waited out the socket's timeout: expired, or try again (bytes moved on
/// another thread of the handler meanwhile).
pub(crate) fn timed_out(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// Set a socket timeout only when it changes: one system call per change, none per read.
#[derive(Debug, Default)]
pub(crate) struct SetTimeout(Option<Option<Duration>>);

impl SetTimeout {
    pub fn read(&mut self, conn: &Socket, limit: Option<Duration>) -> io::Result<()> {
        if self.0 != Some(limit) {
            conn.set_read_timeout(limit.map(|d| d.max(Duration::from_millis(1))))?;
            self.0 = Some(limit);
        }
        Ok(())
    }

    pub fn write(&mut self, conn: &Socket, limit: Option<Duration>) -> io::Result<()> {
        if self.0 != Some(limit) {
            conn.set_write_timeout(limit.map(|d| d.max(Duration::from_millis(1))))?;
            self.0 = Some(limit);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn deadlines() -> Deadlines {
        Deadlines {
            first_byte: Some(5 * S),
            idle: Some(10 * S),
            max_duration: Some(60 * S),
        }
    }

    #[test]
    fn first_byte_then_idle_then_duration() {
        let start = Instant::now();
        let mut progress = Progress::new(start);
        let d = deadlines();
        assert_eq!(d.next(&progress), Some(start + 5 * S));
        assert_eq!(
            d.expired(&progress, start + 5 * S),
            Some(Expiry::FirstByte(5 * S))
        );
        progress.got_first_byte = true;
        progress.last_activity = start + 4 * S;
        assert_eq!(d.next(&progress), Some(start + 14 * S));
        assert_eq!(d.expired(&progress, start + 13 * S), None);
        assert_eq!(
            d.expired(&progress, start + 14 * S),
            Some(Expiry::Idle(10 * S))
        );
        progress.last_activity = start + 55 * S;
        assert_eq!(
            d.expired(&progress, start + 60 * S),
            Some(Expiry::MaxDuration(60 * S))
        );
    }

    #[test]
    fn no_limits_no_deadlines() {
        assert_eq!(Deadlines::of(&Limits::none()), None);
    }

    #[test]
    fn the_wait_limit_is_the_whole_idle_timeout_right_after_activity() {
        let d = Deadlines {
            first_byte: None,
            idle: Some(10 * S),
            max_duration: None,
        };
        let watched = Watched::new(d, Instant::now());
        watched.touch(true);
        assert_eq!(watched.wait_limit(Instant::now()), Ok(Some(10 * S)));
        let later = Instant::now() + 11 * S;
        assert_eq!(watched.wait_limit(later), Err(Expiry::Idle(10 * S)));
        assert!(watched.has_expired());
    }
}
