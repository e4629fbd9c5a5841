//! The main process's supervision of its servers: what `sockserv serve` does once every server
//! listens.
//!
//! One thread waits for every event that matters — SIGINT, SIGTERM, SIGCHLD (a server process
//! ended) and a server thread ending — on one channel, and acts on it:
//!
//! - SIGINT or SIGTERM: drain. Every server stops accepting and gives its requests their
//!   `drain_timeout`, then closes them; the process exits 0 once all are done — 1 when the drain
//!   was not clean (requests were still running at its end and were closed). A second SIGINT or
//!   SIGTERM stops at once (server processes are killed) and exits 1, as with nginx's and systemd's
//!   "stop, then stop now".
//! - A server dies (its process exits or is killed, its thread returns or panics, an event loop of
//!   its dies, at start or later): it is logged with why, every other server is drained, and the
//!   process exits 1. It does not restart the server itself: by then this process has threads, so it
//!   cannot fork a new server process safely (fork needs a single-threaded process), and a restart
//!   in place would hide a crash loop. A supervisor (systemd's `Restart=on-failure`, a container
//!   runtime) restarts the whole tree from a clean state instead.
//! - A drain that overruns its bound (`drain_timeout` + the framework's forced-close wait + a
//!   margin) is cut short the same way as a second signal, and exits 1.

use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::thread;
use std::time::{Duration, Instant};

use crate::notify::Notifier;
use anyhow::{bail, Context};
use nix::sys::signal::SigSet;
use signal_hook::consts::{SIGCHLD, SIGHUP, SIGINT, SIGTERM, SIGUSR1, SIGUSR2};
use signal_hook::iterator::Signals;
use sockserv_framework::{
    termination_signals, ProcessExit, Server, ServerProcess, Shutdown, UnixFile, FORCED_CLOSE_WAIT,
    UNCLEAN_DRAIN_STATUS,
};

/// What a drain may take beyond the servers' own bound before it is cut short: time for the server
/// threads and processes to report back.
const DRAIN_MARGIN: Duration = Duration::from_secs(1);

/// What the supervisor waits for.
enum Event {
    Signal(i32),
    /// A server thread's `serve_forever` returned (and the server was closed), or it panicked.
    Ended {
        name: String,
        outcome: Result<(), String>,
        /// Requests still running at the end of the drain, closed under their handlers.
        forced: usize,
    },
}

/// SIGINT and SIGTERM held blocked until dropped: a signal arriving during start-up waits for the
/// handlers instead of killing the process.
pub struct Blocked(SigSet);

impl Drop for Blocked {
    fn drop(&mut self) {
        let _ = self.0.thread_unblock();
    }
}

/// Block SIGINT and SIGTERM in this thread (and the threads and processes it starts).
pub fn block_signals() -> anyhow::Result<Blocked> {
    let signals = termination_signals();
    signals
        .thread_block()
        .context("cannot block SIGINT and SIGTERM during start-up")?;
    Ok(Blocked(signals))
}

/// A server running on a thread of this process.
struct Running {
    name: String,
    shutdown: Shutdown,
    ended: bool,
    /// Its Unix socket file, removed here should the process stop before the server could.
    socket_file: Option<UnixFile>,
}

/// A server running in a process of its own, and how it ended once it has.
struct Child {
    process: ServerProcess,
    exit: Option<ProcessExit>,
}

pub struct Supervisor {
    running: Vec<Running>,
    children: Vec<Child>,
    events: Receiver<Event>,
    /// The longest `drain_timeout` of any server.
    drain: Duration,
    /// Something went wrong: the exit status will say so.
    failed: bool,
    /// The servers were asked to stop: a server process's clean exit is expected now.
    draining: bool,
    /// The drain had to close requests under their handlers: the exit status says so.
    unclean: bool,
    /// sd_notify: READY, STOPPING and STATUS for the service manager.
    notifier: Notifier,
}

impl Supervisor {
    /// Start the servers' threads and the signal thread. Signals are handled from here on.
    ///
    /// # Errors
    ///
    /// The signal handlers could not be installed or a thread could not be started; the server
    /// processes are stopped before returning.
    pub fn start(
        servers: Vec<Server>,
        processes: Vec<ServerProcess>,
        drain: Duration,
        notifier: Notifier,
    ) -> anyhow::Result<Supervisor> {
        let (sender, events) = channel();
        let started = forward_signals(sender.clone()).and_then(|()| {
            // Threads inherit the mask: unblock before starting any, so signals reach the handler.
            termination_signals()
                .thread_unblock()
                .context("cannot unblock SIGINT and SIGTERM")?;
            servers
                .into_iter()
                .map(|server| run_on_thread(server, sender.clone()))
                .collect::<anyhow::Result<Vec<_>>>()
        });
        let running = match started {
            Ok(running) => running,
            Err(err) => {
                stop_processes(processes);
                return Err(err);
            }
        };
        let children = processes
            .into_iter()
            .map(|process| Child {
                process,
                exit: None,
            })
            .collect();
        Ok(Supervisor {
            running,
            children,
            events,
            drain,
            failed: false,
            draining: false,
            unclean: false,
            notifier,
        })
    }

    /// Serve until a signal or a server's death, then drain.
    ///
    /// # Errors
    ///
    /// A server died, a drain was cut short, or a second signal stopped everything at once.
    pub fn run(mut self) -> anyhow::Result<()> {
        // A server process that died before SIGCHLD was handled is found here.
        if !self.reap() {
            let servers = self.running.len() + self.children.len();
            let status = format!("serving {servers} server(s)");
            self.notifier.send(&format!("READY=1\nSTATUS={status}"));
            self.watch();
        }
        self.notifier
            .send("STOPPING=1\nSTATUS=draining: requests in flight get their drain_timeout");
        self.drain_all()
    }

    /// Until SIGINT or SIGTERM, or until a server dies.
    fn watch(&mut self) {
        while let Ok(event) = self.events.recv() {
            match event {
                Event::Signal(SIGCHLD) => {
                    if self.reap() {
                        return;
                    }
                }
                Event::Signal(signal @ (SIGHUP | SIGUSR1 | SIGUSR2)) => {
                    // Reserved (SIGHUP: reload, SIGUSR2: binary upgrade); until they exist, an
                    // operator's habit or a closed terminal must not end the service unannounced.
                    log::warn!("received signal {signal}: not used yet, ignored");
                }
                Event::Signal(signal) => {
                    log::info!("received signal {signal}: draining every server");
                    return;
                }
                Event::Ended { name, outcome, .. } => {
                    self.ended(&name, outcome);
                    return;
                }
            }
        }
    }

    /// Reap the server processes that ended; true when one ended (which while serving is a failure).
    fn reap(&mut self) -> bool {
        let mut any = false;
        for child in self
            .children
            .iter_mut()
            .filter(|child| child.exit.is_none())
        {
            let Some(exit) = child.process.try_wait() else {
                continue;
            };
            child.exit = Some(exit);
            any = true;
            if let (ProcessExit::Killed(_), Some(file)) = (exit, child.process.socket_file()) {
                // A killed server could not remove its socket file.
                file.remove();
            }
            // While serving, any end is a failure: nobody asked it to stop, and its endpoint is
            // gone. While draining, only an unclean one is; a drain that had to close requests
            // makes the exit status say so without being a server's failure.
            if self.draining && exit == ProcessExit::Exited(UNCLEAN_DRAIN_STATUS) {
                self.unclean = true;
                log::warn!(
                    "server {} (process {}) {exit}",
                    child.process.name(),
                    child.process.pid()
                );
            } else if !exit.is_clean() || !self.draining {
                self.failed = true;
                log::error!(
                    "server {} (process {}) {exit}{}: stopping every server, exit status 1",
                    child.process.name(),
                    child.process.pid(),
                    if self.draining {
                        ""
                    } else {
                        " without being asked to stop"
                    }
                );
            }
        }
        any
    }

    /// A server thread ended while serving: always a failure.
    fn ended(&mut self, name: &str, outcome: Result<(), String>) {
        self.mark_ended(name);
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
    }

    fn mark_ended(&mut self, name: &str) {
        if let Some(running) = self.running.iter_mut().find(|r| r.name == name) {
            running.ended = true;
        }
    }

    /// Ask every server to stop, then wait for them within the drain bound.
    fn drain_all(mut self) -> anyhow::Result<()> {
        self.draining = true;
        for running in &self.running {
            running.shutdown.shutdown();
        }
        for child in self.children.iter().filter(|child| child.exit.is_none()) {
            child.process.terminate();
        }
        // A drain too long to add to the clock waits a year: finite, and no overflow.
        let bound = (self.drain.checked_add(FORCED_CLOSE_WAIT + DRAIN_MARGIN))
            .unwrap_or(Duration::from_secs(365 * 86_400));
        let now = Instant::now();
        let deadline = now.checked_add(bound).unwrap_or(now + DRAIN_MARGIN);
        while !self.all_ended() {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
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
                    name,
                    outcome,
                    forced,
                }) => {
                    if let Err(why) = outcome {
                        log::error!("server {name}: {why}");
                        self.failed = true;
                    }
                    if forced > 0 {
                        self.unclean = true;
                        log::warn!(
                            "server {name}: {forced} request(s) were still running at the end of \
                             the drain and were closed"
                        );
                    }
                    self.mark_ended(&name);
                }
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
        log::info!("every server stopped cleanly");
        Ok(())
    }

    fn all_ended(&self) -> bool {
        self.running.iter().all(|r| r.ended) && self.children.iter().all(|c| c.exit.is_some())
    }

    /// Kill the server processes still running and reap them; the server threads end with this
    /// process. The Unix socket files their servers made are removed here, since they cannot.
    fn stop_now(&mut self) {
        let files: Vec<UnixFile> = (self.running.iter().filter(|r| !r.ended))
            .filter_map(|r| r.socket_file.clone())
            .chain(
                self.children
                    .iter()
                    .filter_map(|c| c.process.socket_file().cloned()),
            )
            .collect();
        for child in self
            .children
            .iter_mut()
            .filter(|child| child.exit.is_none())
        {
            log::warn!(
                "killing server {} (process {})",
                child.process.name(),
                child.process.pid()
            );
            child.process.kill();
        }
        self.children.drain(..).for_each(|child| {
            if child.exit.is_none() {
                child.process.wait();
            }
        });
        for file in files {
            file.remove();
        }
    }
}

/// A thread that turns SIGINT, SIGTERM and SIGCHLD into events.
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

/// Serve on a thread of its own; the supervisor hears when it ends, however it ends.
fn run_on_thread(mut server: Server, events: Sender<Event>) -> anyhow::Result<Running> {
    let name = server.name().to_string();
    let shutdown = server.shutdown_handle();
    let socket_file = server.socket_file().cloned();
    let thread_name = name.clone();
    thread::Builder::new()
        .name(name.clone())
        .spawn(move || {
            let served = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let served = server.serve_forever().map_err(|err| err.to_string());
                (served, server.server_close())
            }));
            let (outcome, forced) =
                served.unwrap_or_else(|_| (Err("its serving thread panicked".into()), 0));
            let _ = events.send(Event::Ended {
                name: thread_name,
                outcome,
                forced,
            });
        })
        .context("cannot start a server thread")?;
    Ok(Running {
        name,
        shutdown,
        ended: false,
        socket_file,
    })
}

/// SIGTERM every server process and reap it (used when start-up fails half-way).
pub fn stop_processes(processes: Vec<ServerProcess>) {
    for process in &processes {
        process.terminate();
    }
    for process in processes {
        process.wait();
    }
}
