//! systemd's watchdog (`WatchdogSec=`, sd_watchdog_enabled(3)): with `WATCHDOG_USEC` set, a
//! thread sends `WATCHDOG=1` every half of it — but only while every serving loop of every server
//! has beaten within that half (see `sockserv_framework::heartbeat`). A wedged loop withholds the
//! keep-alive, and the service manager kills and restarts the process (`Restart=`): a server that
//! no longer accepts is not left looking alive.
//!
//! Loops beat at least every quarter of `WATCHDOG_USEC`, so a healthy idle loop is never late.
//! A server process beats through a pipe this process reads. Retiring servers (drained after a
//! reload or at stop) are no longer watched.

use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::Duration;

use anyhow::{bail, Context};
use sockserv_framework::heartbeat::{Heartbeat, PipeWatch};

use crate::fleet::Id;
use crate::notify::Notifier;

/// The environment variable that hands a server process its heartbeat pipe.
pub const HEARTBEAT_FD: &str = "SOCKSERV_HEARTBEAT_FD";
/// The environment variable that tells a server process how often to beat, in milliseconds.
pub const HEARTBEAT_MS: &str = "SOCKSERV_HEARTBEAT_MS";

/// The shortest `WATCHDOG_USEC` taken: below this, beats and checks would cost more than they say.
const MIN_WATCHDOG: Duration = Duration::from_millis(20);

/// The watchdog: what it watches, and how often.
#[derive(Clone)]
pub struct Watchdog {
    /// `WATCHDOG_USEC`.
    timeout: Duration,
    watched: Arc<Mutex<Vec<Watched>>>,
}

struct Watched {
    id: Id,
    name: String,
    beats: Beats,
}

enum Beats {
    /// A server on a thread of this process.
    Local(Heartbeat),
    /// A server process's pipe.
    Pipe(PipeWatch),
}

impl Watchdog {
    /// From `WATCHDOG_USEC` (and `WATCHDOG_PID`, which, when set, must be this process), both then
    /// cleared so that no child inherits them. `Ok(None)` without a watchdog for this process.
    ///
    /// # Errors
    ///
    /// `WATCHDOG_USEC` is not a number of microseconds of at least [`MIN_WATCHDOG`].
    pub fn from_env() -> anyhow::Result<Option<Watchdog>> {
        let usec = std::env::var("WATCHDOG_USEC").ok();
        let pid = std::env::var("WATCHDOG_PID").ok();
        std::env::remove_var("WATCHDOG_USEC");
        std::env::remove_var("WATCHDOG_PID");
        let Some(usec) = usec else {
            return Ok(None);
        };
        if pid.is_some_and(|pid| pid != std::process::id().to_string()) {
            return Ok(None);
        }
        let timeout = usec
            .parse::<u64>()
            .ok()
            .map(Duration::from_micros)
            .filter(|timeout| *timeout >= MIN_WATCHDOG);
        let Some(timeout) = timeout else {
            bail!(
                "WATCHDOG_USEC={usec:?} is not a number of microseconds of at least {}",
                MIN_WATCHDOG.as_micros()
            );
        };
        Ok(Some(Watchdog {
            timeout,
            watched: Arc::default(),
        }))
    }

    /// `WATCHDOG_USEC`.
    pub fn usec(&self) -> u128 {
        self.timeout.as_micros()
    }

    /// How often every loop must beat at least: a quarter of the watchdog's timeout.
    pub fn beat_interval(&self) -> Duration {
        self.timeout / 4
    }

    /// Watch a server running on a thread here, whose loops beat `heartbeat`.
    pub fn watch(&self, id: Id, name: &str, heartbeat: Heartbeat) {
        self.add(id, name, Beats::Local(heartbeat));
    }

    /// Watch a server process, whose beats come through `pipe` (the read end).
    ///
    /// # Errors
    ///
    /// The pipe cannot be made non-blocking.
    pub fn watch_pipe(&self, id: Id, name: &str, pipe: OwnedFd) -> anyhow::Result<()> {
        let watch = PipeWatch::new(pipe).context("cannot watch a server process's heartbeat")?;
        self.add(id, name, Beats::Pipe(watch));
        Ok(())
    }

    fn add(&self, id: Id, name: &str, beats: Beats) {
        self.lock().push(Watched {
            id,
            name: name.to_string(),
            beats,
        });
    }

    /// Stop watching instance `id` (it retired or ended).
    pub fn forget(&self, id: Id) {
        self.lock().retain(|watched| watched.id != id);
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Watched>> {
        self.watched
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The loops late by more than half the timeout, for the log.
    fn late(&self) -> Vec<String> {
        let bound = self.timeout / 2;
        let mut late = Vec::new();
        for watched in self.lock().iter_mut() {
            match &mut watched.beats {
                Beats::Local(heartbeat) => {
                    for (label, since) in heartbeat.stale(bound) {
                        late.push(format!("{label} (last turned {since:?} ago)"));
                    }
                }
                Beats::Pipe(pipe) => {
                    if let Some(since) = pipe.since_last().filter(|since| *since > bound) {
                        late.push(format!(
                            "{} (its process last beat {since:?} ago)",
                            watched.name
                        ));
                    }
                }
            }
        }
        late
    }

    /// Start the thread that sends `WATCHDOG=1` every half timeout while no loop is late.
    ///
    /// # Errors
    ///
    /// The thread cannot be started.
    pub fn start(&self, notifier: Notifier) -> anyhow::Result<()> {
        let watchdog = self.clone();
        thread::Builder::new()
            .name("watchdog".into())
            .spawn(move || watchdog.run(&notifier))
            .context("cannot start the watchdog thread")?;
        Ok(())
    }

    fn run(&self, notifier: &Notifier) {
        let period = self.timeout / 2;
        let mut was_late = false;
        loop {
            let late = self.late();
            if late.is_empty() {
                if was_late {
                    log::warn!("watchdog: every serving loop turns again, WATCHDOG=1 resumes");
                }
                notifier.send("WATCHDOG=1");
            } else if !was_late {
                log::error!(
                    "watchdog: WATCHDOG=1 withheld, the service manager will restart the process: \
                     serving loop(s) wedged: {}",
                    late.join(", ")
                );
            }
            was_late = !late.is_empty();
            thread::sleep(period);
        }
    }
}
