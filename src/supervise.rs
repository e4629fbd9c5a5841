//! The main process's supervision of its servers: what `sockserv serve` does once every server
//! listens.
//!
//! One thread waits for every event that matters — a signal, a server thread ending, SIGCHLD (a
//! server process ended) — on one channel, and acts on it:
//!
//! - SIGHUP: reload the config file (see `reload`); a file with errors changes nothing.
//! - SIGINT or SIGTERM: drain. Every server stops accepting and gives its requests their
//!   `drain_timeout`, then closes them; the process exits 0 once all are done — 1 when the drain
//!   was not clean (requests were still running at its end and were closed). A second SIGINT or
//!   SIGTERM stops at once (server processes are killed) and exits 1, as with nginx's and systemd's
//!   "stop, then stop now". A clean stop logs one line, naming the signal and how long the drain
//!   took; only a drain still running after [`DRAIN_NOTICE_AFTER`] is announced before its end, so
//!   that an operator waiting on a long one is told why.
//! - A serving server dies (its process exits or is killed, its thread returns or panics, an event
//!   loop of its dies, at start or later): it is logged with why, every other server is drained, and
//!   the process exits 1. It is not restarted here: a restart in place would hide a crash loop. A
//!   supervisor (systemd's `Restart=on-failure`, a container runtime) restarts the whole tree from
//!   a clean state instead.
//! - A server retiring after a reload (removed, or replaced by its new config) ends: logged; how
//!   its drain went does not end the others.
//! - A drain that overruns its bound (`drain_timeout` + the framework's forced-close wait + a
//!   margin) is cut short the same way as a second signal, and exits 1; a retiring server process
//!   that overruns its own is killed.

use std::path::PathBuf;
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use nix::sys::signal::{SigSet, Signal};
use signal_hook::consts::{SIGCHLD, SIGHUP, SIGINT, SIGTERM, SIGUSR1, SIGUSR2};
use signal_hook::iterator::Signals;
use sockserv_framework::config::{ConfigText, RunAs, ServerConfig};
use sockserv_framework::{
    termination_signals, Listener, ProcessExit, FORCED_CLOSE_WAIT, UNCLEAN_DRAIN_STATUS,
};

use crate::fleet::{Event, Id, Instance, Role, StartFailed, Starter, DRAIN_MARGIN};
use crate::loading::Source;
use crate::notify::Notifier;
use crate::pidfile::PidFile;
use crate::upgrade::{Executable, Handover, Upgrading};
use crate::watchdog::Watchdog;

/// How long a drain may run before it is announced: an idle server drains in milliseconds and
/// logs one line when it has stopped; a longer drain says at this point what it is waiting for.
const DRAIN_NOTICE_AFTER: Duration = Duration::from_secs(1);

/// SIGINT and SIGTERM held blocked until dropped: a signal arriving during start-up waits for the
/// handlers instead of killing the process.
pub struct Blocked(SigSet);

impl Drop for Blocked {
    fn drop(&mut self) {
        let _ = self.0.thread_unblock();
    }
}

/// Block SIGINT and SIGTERM in this thread (and the threads it starts).
pub fn block_signals() -> anyhow::Result<Blocked> {
    let signals = termination_signals();
    signals
        .thread_block()
        .context("cannot block SIGINT and SIGTERM during start-up")?;
    Ok(Blocked(signals))
}

pub struct Supervisor {
    pub(crate) instances: Vec<Instance>,
    events: Receiver<Event>,
    pub(crate) sender: Sender<Event>,
    /// Where the config comes from, read again at every reload.
    pub(crate) source: Source,
    /// The config being served, as a server process started now would load it.
    pub(crate) text: ConfigText,
    pub(crate) next_id: Id,
    /// Something went wrong: the exit status will say so.
    failed: bool,
    /// The servers were asked to stop: a server's end is expected now.
    draining: bool,
    /// The drain had to close requests under their handlers: the exit status says so.
    unclean: bool,
    /// The SIGINT or SIGTERM that started the drain, if one did.
    stop_signal: Option<i32>,
    /// sd_notify: READY, RELOADING, STOPPING and STATUS for the service manager.
    pub(crate) notifier: Notifier,
    /// systemd's watchdog, when `WATCHDOG_USEC` asks for it.
    watchdog: Option<Watchdog>,
    /// Who this process became after binding as root: sockets it binds now, it binds as them.
    pub(crate) dropped_to: Option<RunAs>,
    /// The executable to start on an upgrade (SIGUSR2).
    pub(crate) executable: Option<Executable>,
    /// An upgrade under way.
    pub(crate) upgrading: Option<Upgrading>,
    /// An upgraded successor serves every socket: the drain leaves the socket files to it.
    pub(crate) handed_over: bool,
    /// When this process is an upgrade's successor: where to say it is ready.
    handover: Option<Handover>,
    /// `--pid-file`, to write once every server listens.
    pid_path: Option<PathBuf>,
    /// The pid file written, removed at exit while it still names this process.
    pid_file: Option<PidFile>,
}

/// What the supervisor is given besides the servers: what the environment said, and what
/// start-up did.
pub struct Given {
    pub notifier: Notifier,
    pub watchdog: Option<Watchdog>,
    pub dropped_to: Option<RunAs>,
    pub handover: Option<Handover>,
    /// `--pid-file`: written once every server listens.
    pub pid_file: Option<PathBuf>,
}

impl Supervisor {
    /// Start every server (on the listener bound for it) and the signal thread. Signals are
    /// handled from here on.
    ///
    /// # Errors
    ///
    /// The signal handlers could not be installed, or a server's thread or process could not be
    /// started; the servers started before are stopped before returning.
    pub fn start(
        source: Source,
        text: ConfigText,
        servers: Vec<(ServerConfig, Listener)>,
        given: Given,
    ) -> anyhow::Result<Supervisor> {
        let executable = Executable::current()
            .map_err(|err| log::warn!("{err:#}: SIGUSR2 (upgrade) will be refused"))
            .ok();
        let (sender, events) = channel();
        forward_signals(sender.clone())?;
        // Threads inherit the mask: unblock before starting any, so signals reach the handler.
        termination_signals()
            .thread_unblock()
            .context("cannot unblock SIGINT and SIGTERM")?;
        let mut supervisor = Supervisor {
            instances: Vec::new(),
            events,
            sender,
            source,
            text,
            next_id: 0,
            failed: false,
            draining: false,
            unclean: false,
            stop_signal: None,
            notifier: given.notifier,
            watchdog: given.watchdog,
            dropped_to: given.dropped_to,
            executable,
            upgrading: None,
            handed_over: false,
            handover: given.handover,
            pid_path: given.pid_file,
            pid_file: None,
        };
        let mut servers = servers.into_iter();
        while let Some((config, listener)) = servers.next() {
            let mut starter = supervisor.starter();
            match starter.start(config, listener) {
                Ok(instance) => supervisor.instances.push(instance),
                Err(failed) => {
                    let StartFailed {
                        error,
                        config,
                        listener,
                    } = *failed;
                    supervisor.stop_now();
                    let unused = servers.map(|(_, listener)| listener);
                    for file in std::iter::once(listener)
                        .chain(unused)
                        .filter_map(|l| l.unix_file().cloned())
                    {
                        file.remove();
                    }
                    return Err(error.context(format!("server {}", config.settings.name)));
                }
            }
        }
        Ok(supervisor)
    }

    pub(crate) fn starter(&mut self) -> Starter<'_> {
        Starter {
            events: &self.sender,
            text: &self.text,
            next_id: &mut self.next_id,
            watchdog: self.watchdog.as_ref(),
        }
    }

    /// Serve until a signal or a server's death, then drain.
    ///
    /// # Errors
    ///
    /// A server died, a drain was cut short, or a second signal stopped everything at once.
    pub fn run(mut self) -> anyhow::Result<()> {
        // A server process that died before SIGCHLD was handled is found here.
        if !self.reap() {
            self.notifier
                .send(&format!("READY=1\nSTATUS={}", self.status()));
            if let Some(watchdog) = &self.watchdog {
                if let Err(err) = watchdog.start(self.notifier.clone()) {
                    log::error!("{err:#}: stopping every server, exit status 1");
                    self.failed = true;
                    return self.drain_all();
                }
            }
            if let Some(path) = self.pid_path.take() {
                match PidFile::write(&path) {
                    Ok(written) => self.pid_file = Some(written),
                    Err(err) => log::error!("{err:#}"),
                }
            }
            if let Some(handover) = self.handover.take() {
                handover.ready();
            }
            self.watch();
            self.abandon_upgrade();
        }
        if !self.handed_over {
            self.notifier
                .send("STOPPING=1\nSTATUS=draining: requests in flight get their drain_timeout");
        }
        self.drain_all()
    }

    /// `WATCHDOG_USEC` as this process was given it, to pass on to an upgrade's successor.
    pub(crate) fn watchdog_usec(&self) -> Option<u128> {
        self.watchdog.as_ref().map(Watchdog::usec)
    }

    /// The one-line `STATUS=` while serving.
    pub(crate) fn status(&self) -> String {
        let serving = self.instances.iter().filter(|i| i.is_serving()).count();
        let retiring = self.instances.len() - serving;
        if retiring == 0 {
            format!("serving {serving} server(s)")
        } else {
            format!("serving {serving} server(s); {retiring} retiring after a reload")
        }
    }

    /// Until SIGINT or SIGTERM, or until a serving server dies.
    fn watch(&mut self) {
        loop {
            let event = match self.next_deadline() {
                Some(deadline) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    match self.events.recv_timeout(left) {
                        Ok(event) => event,
                        Err(RecvTimeoutError::Timeout) => {
                            self.overran_retirements();
                            continue;
                        }
                        Err(RecvTimeoutError::Disconnected) => return,
                    }
                }
                None => match self.events.recv() {
                    Ok(event) => event,
                    Err(_) => return,
                },
            };
            match event {
                Event::Signal(SIGCHLD) => {
                    if self.reap() {
                        return;
                    }
                }
                Event::Signal(SIGHUP) if self.upgrading.is_some() => {
                    log::warn!("received SIGHUP while an upgrade is under way: ignored");
                }
                Event::Signal(SIGHUP) => {
                    log::info!("received SIGHUP: reloading {}", self.text.origin);
                    self.reload();
                }
                Event::Signal(SIGUSR2) => {
                    log::info!("received SIGUSR2: upgrading the executable");
                    self.start_upgrade();
                }
                Event::Signal(SIGUSR1) => {
                    log::warn!("received SIGUSR1: not used, ignored");
                }
                Event::Upgrade(outcome) => {
                    if self.upgrade_reported(outcome) {
                        return;
                    }
                }
                Event::Signal(signal) => {
                    // Logged when the drain ends, or once it has run for DRAIN_NOTICE_AFTER.
                    self.stop_signal = Some(signal);
                    return;
                }
                Event::Ended {
                    id,
                    outcome,
                    forced,
                } => {
                    if self.thread_ended(id, outcome, forced) {
                        return;
                    }
                }
            }
        }
    }

    /// The earliest time a retiring instance must have ended by.
    fn next_deadline(&self) -> Option<Instant> {
        (self.instances.iter())
            .filter(|i| !i.has_ended())
            .filter_map(|i| match i.role {
                Role::Retiring { deadline } => Some(deadline),
                Role::Serving => None,
            })
            .min()
    }

    /// Retiring instances past their bound: processes are killed, threads are reported (they
    /// cannot be stopped from outside, and end with this process).
    fn overran_retirements(&mut self) {
        let now = Instant::now();
        for instance in &mut self.instances {
            let Role::Retiring { deadline } = instance.role else {
                continue;
            };
            if instance.has_ended() || deadline > now {
                continue;
            }
            log::error!(
                "server {} (retiring after a reload) is still draining past its drain_timeout",
                instance.name()
            );
            if instance.pid().is_some() {
                instance.kill();
            } else {
                // Not again: the thread is left to end on its own.
                instance.role = Role::Retiring {
                    deadline: now + Duration::from_secs(365 * 86_400),
                };
            }
        }
        self.forget_ended();
    }

    /// Reap the server processes that ended; true when a serving one ended unasked (a failure
    /// that stops everything).
    fn reap(&mut self) -> bool {
        let mut fatal = false;
        for index in 0..self.instances.len() {
            let Some(exit) = self.instances[index].try_reap() else {
                continue;
            };
            fatal |= self.process_ended(index, exit);
        }
        self.forget_ended();
        fatal
    }

    /// A server process ended with `exit`: true when that is a failure that stops everything.
    fn process_ended(&mut self, index: usize, exit: ProcessExit) -> bool {
        let instance = &self.instances[index];
        let (name, pid) = (instance.name().to_string(), instance.pid().unwrap_or(0));
        let expected = self.draining || !instance.is_serving();
        if expected && exit == ProcessExit::Exited(UNCLEAN_DRAIN_STATUS) {
            self.unclean |= self.draining;
            log::warn!("server {name} (process {pid}) {exit}");
            return false;
        }
        if expected && exit.is_clean() {
            if self.draining {
                log::debug!("server {name} (process {pid}) stopped");
            } else {
                log::info!("server {name}: the retired instance (process {pid}) has drained");
            }
            return false;
        }
        if expected {
            self.failed |= self.draining;
            log::error!("server {name} (process {pid}) {exit}");
            return false;
        }
        self.failed = true;
        log::error!(
            "server {name} (process {pid}) {exit} without being asked to stop: stopping every \
             server, exit status 1"
        );
        true
    }

    /// A server thread ended: true when it was serving (a failure that stops everything).
    fn thread_ended(&mut self, id: Id, outcome: Result<(), String>, forced: usize) -> bool {
        let Some(instance) = self.instances.iter_mut().find(|i| i.id == id) else {
            return false;
        };
        instance.mark_ended();
        let name = instance.name().to_string();
        let expected = self.draining || !instance.is_serving();
        self.forget_ended();
        if expected {
            if !self.draining && outcome.is_ok() && forced == 0 {
                log::info!("server {name}: the retired instance has drained");
            }
            if let Err(why) = outcome {
                log::error!("server {name}: {why}");
                self.failed |= self.draining;
            }
            if forced > 0 {
                self.unclean |= self.draining;
                log::warn!(
                    "server {name}: {forced} request(s) were still running at the end of the \
                     drain and were closed"
                );
            }
            return false;
        }
        self.failed = true;
        let why = outcome.err().unwrap_or_else(|| "stopped serving".into());
        // The server's own errors name it already.
        let named = why.starts_with(&format!("server {name:?}"));
        let why = if named {
            why
        } else {
            format!("server {name}: {why}")
        };
        log::error!("{why}: stopping every server, exit status 1");
        true
    }

    /// Retired instances that have ended are done with; serving ones stay (their end is acted on
    /// as a failure, and the drain counts them).
    fn forget_ended(&mut self) {
        self.instances.retain(|i| !i.has_ended() || i.is_serving());
    }

    /// Ask every server to stop, then wait for them within the drain bound.
    fn drain_all(mut self) -> anyhow::Result<()> {
        self.draining = true;
        let longest = (self.instances.iter())
            .map(|i| i.config.settings.drain_timeout)
            .max()
            .unwrap_or_default();
        for instance in &mut self.instances {
            instance.retire(self.handed_over);
        }
        self.forget_ended();
        // A drain too long to add to the clock waits a year: finite, and no overflow.
        let bound = (longest.checked_add(FORCED_CLOSE_WAIT + DRAIN_MARGIN))
            .unwrap_or(Duration::from_secs(365 * 86_400));
        let started = Instant::now();
        let deadline = started.checked_add(bound).unwrap_or(started + DRAIN_MARGIN);
        let mut announce = self.stop_signal.map(|_| started + DRAIN_NOTICE_AFTER);
        while !self.instances.is_empty() {
            let now = Instant::now();
            if announce.is_some_and(|at| at <= now) {
                announce = None;
                log::info!(
                    "{}draining every server (drain_timeout {:.1} s at most)",
                    self.stopped_by(),
                    longest.as_secs_f64()
                );
            }
            let left = deadline.saturating_duration_since(now);
            let wait = announce.map_or(left, |at| left.min(at.saturating_duration_since(now)));
            match self.events.recv_timeout(wait) {
                Ok(Event::Signal(SIGCHLD)) => {
                    self.reap();
                }
                Ok(Event::Signal(signal @ (SIGHUP | SIGUSR1 | SIGUSR2))) => {
                    log::warn!("received signal {signal} while draining: ignored");
                }
                Ok(Event::Signal(signal)) => {
                    self.stop_now();
                    bail!("received signal {signal} while draining: stopped at once");
                }
                Ok(Event::Ended {
                    id,
                    outcome,
                    forced,
                }) => {
                    self.thread_ended(id, outcome, forced);
                }
                Ok(Event::Upgrade(_)) => {}
                Err(RecvTimeoutError::Timeout) if Instant::now() < deadline => {}
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => {
                    self.stop_now();
                    bail!("the drain did not end within its bound: stopped at once");
                }
            }
        }
        if self.failed {
            bail!("a server failed (see the log above)");
        }
        if self.unclean {
            bail!("the drain was not clean: requests were closed at drain_timeout (exit status 1)");
        }
        let took = started.elapsed().as_secs_f64() * 1e3;
        log::info!(
            "{}every server stopped cleanly, drained in {took:.0} ms",
            self.stopped_by()
        );
        Ok(())
    }

    /// What started the stop, as the start of its log lines: `received SIGTERM: `, or nothing
    /// when no signal did (an upgrade's successor took over).
    fn stopped_by(&self) -> String {
        match self.stop_signal.map(Signal::try_from) {
            Some(Ok(name)) => format!("received {name}: "),
            Some(Err(_)) => format!("received signal {}: ", self.stop_signal.unwrap_or_default()),
            None => String::new(),
        }
    }

    /// Kill the server processes still running and reap them; the server threads end with this
    /// process. The Unix socket files are removed here, since the servers cannot.
    pub(crate) fn stop_now(&mut self) {
        for instance in &mut self.instances {
            instance.kill();
            instance.remove_socket_file();
        }
        self.instances.clear();
    }
}

/// A thread that turns the signals the supervisor acts on into events.
fn forward_signals(sender: Sender<Event>) -> anyhow::Result<()> {
    let mut signals = Signals::new([SIGINT, SIGTERM, SIGCHLD, SIGHUP, SIGUSR1, SIGUSR2])
        .context("cannot handle SIGINT and SIGTERM")?;
    thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for signal in signals.forever() {
                if sender.send(Event::Signal(signal)).is_err() {
                    return;
                }
            }
        })
        .context("cannot start the signal thread")?;
    Ok(())
}
