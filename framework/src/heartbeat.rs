//! Heartbeats: how a supervisor knows that every serving loop still turns, for systemd's watchdog
//! (`WatchdogSec=`, sd_watchdog_enabled(3)): `WATCHDOG=1` is sent only while each loop has beaten
//! recently, so a wedged loop — a deadlock, a handler spinning in an event loop — stops the
//! keep-alives and the service manager restarts the process.
//!
//! A server given a [`Heartbeat`] registers a [`Pulse`] for its accept loop and one for each of
//! its event loops (the reactor's). Each loop beats after every wake-up and wakes at least every
//! [`Heartbeat::interval`] to do so, even when idle. A server in a process of its own beats
//! through a pipe ([`Heartbeat::to_pipe`]): a byte at most every half interval, which its
//! supervisor reads ([`PipeWatch`]).
//!
//! A loop that serves a request itself (the `sync` strategy runs the request in its accept
//! loop) is *busy* meanwhile, and a busy loop counts as alive: the request's own time limits
//! (`[server.limits]`) bound it, and a long request is not a wedge.

use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The instant beats are counted from, in milliseconds.
fn now_ms() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    epoch.elapsed().as_millis() as u64 + 1
}

/// The heartbeats of one server's loops.
#[derive(Debug, Clone)]
pub struct Heartbeat {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    interval: Duration,
    pulses: Mutex<Vec<Arc<Pulse>>>,
    /// Where a server process's beats go (its supervisor reads the other end).
    pipe: Option<Arc<PipeOut>>,
}

/// A server process's end of its heartbeat pipe.
#[derive(Debug)]
struct PipeOut {
    file: Mutex<std::fs::File>,
    /// When the last byte went in, in ms.
    written: AtomicU64,
    /// The least time between two bytes, in ms.
    every: u64,
}

/// One loop's beats.
#[derive(Debug)]
pub struct Pulse {
    /// The loop, for the log: the server's name, with the event loop's number for the reactor's.
    label: String,
    /// The last beat, in ms since the epoch (0: none yet).
    last: AtomicU64,
    /// Serving a request in the loop itself (see the module's doc).
    busy: AtomicBool,
    pipe: Option<Arc<PipeOut>>,
}

impl Heartbeat {
    /// Heartbeats for loops that wake at least every `interval` (at least 1 ms).
    pub fn new(interval: Duration) -> Heartbeat {
        Heartbeat::make(interval, None)
    }

    /// Heartbeats that also go into the pipe `fd` (a byte at most every half `interval`), for a
    /// server in a process of its own. The pipe is made non-blocking: a full pipe already says the
    /// loop is alive.
    ///
    /// # Errors
    ///
    /// The pipe cannot be made non-blocking.
    pub fn to_pipe(interval: Duration, fd: OwnedFd) -> io::Result<Heartbeat> {
        set_nonblocking(&fd)?;
        let pipe = PipeOut {
            file: Mutex::new(fd.into()),
            written: AtomicU64::new(0),
            every: (interval.as_millis() as u64 / 2).max(1),
        };
        Ok(Heartbeat::make(interval, Some(Arc::new(pipe))))
    }

    fn make(interval: Duration, pipe: Option<Arc<PipeOut>>) -> Heartbeat {
        Heartbeat {
            inner: Arc::new(Inner {
                interval: interval.max(Duration::from_millis(1)),
                pulses: Mutex::new(Vec::new()),
                pipe,
            }),
        }
    }

    /// How often each loop wakes at least, to beat.
    pub fn interval(&self) -> Duration {
        self.inner.interval
    }

    /// A pulse for a new loop named `label`; it counts as having just beaten.
    pub fn pulse(&self, label: impl Into<String>) -> Arc<Pulse> {
        let pulse = Arc::new(Pulse {
            label: label.into(),
            last: AtomicU64::new(now_ms()),
            busy: AtomicBool::new(false),
            pipe: self.inner.pipe.clone(),
        });
        lock(&self.inner.pulses).push(Arc::clone(&pulse));
        pulse
    }

    /// The loops that have not beaten within `bound` and are not busy, each with how long ago
    /// it last beat. Empty: every loop is alive.
    pub fn stale(&self, bound: Duration) -> Vec<(String, Duration)> {
        let now = now_ms();
        let bound = bound.as_millis() as u64;
        lock(&self.inner.pulses)
            .iter()
            .filter(|pulse| !pulse.busy.load(Ordering::SeqCst))
            .filter_map(|pulse| {
                let since = now.saturating_sub(pulse.last.load(Ordering::SeqCst));
                (since > bound).then(|| (pulse.label.clone(), Duration::from_millis(since)))
            })
            .collect()
    }
}

impl Pulse {
    /// The loop turned.
    pub fn beat(&self) {
        let now = now_ms();
        self.last.store(now, Ordering::SeqCst);
        let Some(pipe) = &self.pipe else {
            return;
        };
        if now.saturating_sub(pipe.written.load(Ordering::SeqCst)) >= pipe.every {
            pipe.written.store(now, Ordering::SeqCst);
            let _ = lock(&pipe.file).write(b".");
        }
    }

    /// The loop starts (`true`) or ends (`false`) serving a request itself.
    pub fn set_busy(&self, busy: bool) {
        self.busy.store(busy, Ordering::SeqCst);
        if !busy {
            self.beat();
        }
    }
}

/// The supervisor's end of a server process's heartbeat pipe.
#[derive(Debug)]
pub struct PipeWatch {
    pipe: std::fs::File,
    /// The last time a beat was read, in ms since the epoch.
    last: u64,
    /// The pipe's far end is closed: the process has ended.
    closed: bool,
}

impl PipeWatch {
    /// Watch the read end `fd`; it counts as having just beaten.
    ///
    /// # Errors
    ///
    /// The pipe cannot be made non-blocking.
    pub fn new(fd: OwnedFd) -> io::Result<PipeWatch> {
        set_nonblocking(&fd)?;
        Ok(PipeWatch {
            pipe: fd.into(),
            last: now_ms(),
            closed: false,
        })
    }

    /// How long ago the process last beat, having read what it sent since the last look.
    /// `None` once the process has closed the pipe (it has ended: its supervisor hears so apart).
    pub fn since_last(&mut self) -> Option<Duration> {
        let mut buf = [0u8; 64];
        loop {
            match self.pipe.read(&mut buf) {
                Ok(0) => {
                    self.closed = true;
                    break;
                }
                Ok(_) => self.last = now_ms(),
                Err(_) => break,
            }
        }
        if self.closed {
            return None;
        }
        Some(Duration::from_millis(now_ms().saturating_sub(self.last)))
    }
}

fn set_nonblocking(fd: &OwnedFd) -> io::Result<()> {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    let flags = OFlag::from_bits_truncate(fcntl(fd, FcntlArg::F_GETFL)?);
    fcntl(fd, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
    Ok(())
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_loop_that_stops_beating_is_stale_unless_busy() {
        let heartbeat = Heartbeat::new(Duration::from_millis(10));
        let alive = heartbeat.pulse("alive");
        let wedged = heartbeat.pulse("wedged");
        let busy = heartbeat.pulse("busy");
        busy.set_busy(true);
        std::thread::sleep(Duration::from_millis(60));
        alive.beat();
        let stale = heartbeat.stale(Duration::from_millis(40));
        let labels: Vec<&str> = stale.iter().map(|(label, _)| label.as_str()).collect();
        assert_eq!(labels, ["wedged"]);
        assert!(stale[0].1 >= Duration::from_millis(40));
        wedged.beat();
        assert!(heartbeat.stale(Duration::from_millis(40)).is_empty());
    }

    #[test]
    fn beats_cross_a_pipe() {
        let (rx, tx) = crate::spawn::pipe().unwrap();
        let heartbeat = Heartbeat::to_pipe(Duration::from_millis(2), tx).unwrap();
        let mut watch = PipeWatch::new(rx).unwrap();
        let pulse = heartbeat.pulse("child");
        std::thread::sleep(Duration::from_millis(30));
        assert!(watch.since_last().unwrap() >= Duration::from_millis(30));
        pulse.beat();
        assert!(watch.since_last().unwrap() < Duration::from_millis(30));
        drop((pulse, heartbeat));
        assert_eq!(watch.since_last(), None, "the writer is gone");
    }
}
