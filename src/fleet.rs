//! The server instances the main process runs: each a [`Server`] on a thread of this process, or,
//! for a forking server, a process of its own started by fork and execve of this executable
//! (`sockserv serve-process`, hidden) with its listener passed as socket activation passes one and
//! the config's text on its standard input.
//!
//! The main process keeps a [`Listener`] per serving instance — its own descriptor for the
//! listening socket and the Unix socket file it made — so that a reload can hand the socket to a
//! successor (a duplicate shares the kernel's accept queue: no connection is lost), an upgrade can
//! hand every socket to a new executable, and the socket files are removed in one place: once the
//! last instance on a socket has ended and nobody took it over. An instance that stops serving
//! (removed or replaced by a reload, or at the drain) is *retiring*: this process drops its copy of
//! the listener first, so that once the instance closes its own, new clients are refused (or, when
//! a successor holds the socket, accepted by the successor), and the instance finishes its requests
//! within its `drain_timeout`.

use std::ffi::OsString;
use std::os::fd::AsFd;
use std::sync::mpsc::Sender;
use std::thread;
use std::time::{Duration, Instant};

use crate::watchdog::{Watchdog, HEARTBEAT_FD, HEARTBEAT_MS};
use anyhow::Context;
use sockserv_framework::config::{ConfigText, ServerConfig};
use sockserv_framework::heartbeat::Heartbeat;
use sockserv_framework::metrics;
use sockserv_framework::spawn::{self, memory_file, Exec};
use sockserv_framework::{
    termination_signals, Listener, ProcessExit, Server, ServerProcess, Shutdown, StrategyKind,
    UnixFile, FORCED_CLOSE_WAIT,
};

/// An instance's number, unique for the life of the process (names repeat across reloads).
pub type Id = u64;

/// What a retiring instance may take beyond its own drain bound before it is stopped at once: time
/// for its thread or process to report back.
pub const DRAIN_MARGIN: Duration = Duration::from_secs(1);

/// The hidden subcommand a forking server's process runs.
pub const SERVE_PROCESS: &str = "serve-process";

/// This executable, as the running process sees it even once the file has been replaced on disk
/// (an upgrade in progress): server processes run the same code as their main process.
const OWN_EXECUTABLE: &str = "/proc/self/exe";

/// What the supervisor waits for.
pub enum Event {
    Signal(i32),
    /// A server thread's `serve_forever` returned (and the server was closed), or it panicked.
    Ended {
        id: Id,
        outcome: Result<(), String>,
        /// Requests still running at the end of the drain, closed under their handlers.
        forced: usize,
    },
    /// The new executable of an upgrade is ready (`Ok`) or failed (`Err`, why).
    Upgrade(Result<(), String>),
}

/// Where an instance runs.
enum Runner {
    Thread {
        shutdown: Shutdown,
        ended: bool,
    },
    Process {
        process: ServerProcess,
        exit: Option<ProcessExit>,
    },
}

/// Whether an instance serves or is on its way out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Serving,
    /// Asked to stop; stopped at once if still running at `deadline`.
    Retiring {
        deadline: Instant,
    },
}

/// One running server.
pub struct Instance {
    pub id: Id,
    pub config: ServerConfig,
    runner: Runner,
    pub role: Role,
    /// This process's copy of the listening socket, while the instance serves.
    pub listener: Option<Listener>,
    /// The Unix socket file to remove once the instance has ended (it retired with nobody taking
    /// its socket over).
    remove_on_end: Option<UnixFile>,
    /// The watchdog watching its loops while it serves.
    watchdog: Option<Watchdog>,
}

impl Instance {
    pub fn name(&self) -> &str {
        &self.config.settings.name
    }

    pub fn is_serving(&self) -> bool {
        self.role == Role::Serving
    }

    pub fn has_ended(&self) -> bool {
        match &self.runner {
            Runner::Thread { ended, .. } => *ended,
            Runner::Process { exit, .. } => exit.is_some(),
        }
    }

    /// Serve new handshakes with the TLS certificates of `fresh`, this server's config as a
    /// reload has just loaded (and so checked) it: at once in a thread of this process; a server
    /// process is told to read its files again (SIGHUP), which it does before its next
    /// connection.
    pub fn refresh_certificates(&self, fresh: &ServerConfig) {
        let (Some(mine), Some(fresh)) = (&self.config.settings.tls, &fresh.settings.tls) else {
            return;
        };
        match &self.runner {
            Runner::Thread { .. } => mine.take_over(fresh),
            Runner::Process { process, .. } => process.reload_certificates(),
        }
    }

    /// The pid of its process, if it runs in one.
    pub fn pid(&self) -> Option<u32> {
        match &self.runner {
            Runner::Process { process, .. } => Some(process.pid()),
            Runner::Thread { .. } => None,
        }
    }

    /// Stop serving: drop this process's copy of the listener (its Unix socket file is removed
    /// once the instance has ended, unless `handed_over`: a successor serves on it) and ask the
    /// instance to stop; it drains within its `drain_timeout`.
    pub fn retire(&mut self, handed_over: bool) {
        if let Some(watchdog) = self.watchdog.take() {
            watchdog.forget(self.id);
        }
        if let Some(listener) = self.listener.take() {
            if !handed_over {
                self.remove_on_end = listener.unix_file().cloned();
            }
        }
        if self.has_ended() {
            self.role = Role::Retiring {
                deadline: Instant::now(),
            };
            self.ended_cleanup();
            return;
        }
        if self.role == Role::Serving {
            let bound = self.config.settings.drain_timeout + FORCED_CLOSE_WAIT + DRAIN_MARGIN;
            let now = Instant::now();
            let deadline = now.checked_add(bound).unwrap_or(now + DRAIN_MARGIN);
            self.role = Role::Retiring { deadline };
        }
        match &self.runner {
            Runner::Thread { shutdown, .. } => shutdown.shutdown(),
            Runner::Process { process, .. } => process.terminate(),
        }
    }

    /// Its thread reported its end.
    pub fn mark_ended(&mut self) {
        if let Runner::Thread { ended, .. } = &mut self.runner {
            *ended = true;
        }
        self.ended_cleanup();
    }

    /// For a process: how it ended, if it has (and it is reaped).
    pub fn try_reap(&mut self) -> Option<ProcessExit> {
        let Runner::Process { process, exit } = &mut self.runner else {
            return None;
        };
        if exit.is_some() {
            return None;
        }
        let ended = process.try_wait()?;
        *exit = Some(ended);
        self.ended_cleanup();
        Some(ended)
    }

    /// Kill its process (SIGKILL) and reap it; a thread cannot be stopped from outside and ends
    /// with this process.
    pub fn kill(&mut self) {
        if let Runner::Process { process, exit } = &mut self.runner {
            if exit.is_none() {
                log::warn!(
                    "killing server {} (process {})",
                    self.config.settings.name,
                    process.pid()
                );
                process.kill();
                *exit = Some(process.wait_exit());
            }
        }
        self.ended_cleanup();
    }

    /// The files this instance leaves behind once it ended and nobody else serves its socket.
    fn ended_cleanup(&mut self) {
        if let Some(file) = self.remove_on_end.take() {
            file.remove();
        }
    }

    /// Remove its Unix socket file now (the process is stopping and nobody takes it over).
    pub fn remove_socket_file(&mut self) {
        let file = self.listener.as_ref().and_then(|l| l.unix_file().cloned());
        file.into_iter()
            .chain(self.remove_on_end.take())
            .for_each(|f| f.remove());
    }
}

/// An instance that could not start, with what it was given back.
pub struct StartFailed {
    pub error: anyhow::Error,
    pub config: ServerConfig,
    pub listener: Listener,
}

/// What starting an instance needs besides the server and its listener.
pub struct Starter<'a> {
    pub events: &'a Sender<Event>,
    /// The config the server comes from, which a server process loads again.
    pub text: &'a ConfigText,
    pub next_id: &'a mut Id,
    /// The watchdog, when the service manager asked for one: every new instance's loops beat.
    pub watchdog: Option<&'a Watchdog>,
}

impl Starter<'_> {
    /// Start `config` on `listener`: on a thread, or in a process for a forking server. The
    /// `listening:` line is printed once it runs.
    ///
    /// # Errors
    ///
    /// The socket cannot be duplicated, the thread or process cannot be started; the listener is
    /// given back then.
    pub fn start(
        &mut self,
        config: ServerConfig,
        listener: Listener,
    ) -> Result<Instance, Box<StartFailed>> {
        let id = *self.next_id;
        *self.next_id += 1;
        let runner = if config.settings.strategy.kind() == StrategyKind::Forking {
            self.start_process(id, &config, &listener)
        } else {
            self.start_thread(id, &config, &listener)
        };
        match runner {
            Ok(runner) => {
                announce(&config, &listener);
                Ok(Instance {
                    id,
                    config,
                    runner,
                    role: Role::Serving,
                    listener: Some(listener),
                    remove_on_end: None,
                    watchdog: self.watchdog.cloned(),
                })
            }
            Err(error) => Err(Box::new(StartFailed {
                error,
                config,
                listener,
            })),
        }
    }

    fn start_thread(
        &self,
        id: Id,
        config: &ServerConfig,
        listener: &Listener,
    ) -> anyhow::Result<Runner> {
        let socket = listener
            .duplicate()
            .context("cannot duplicate the listening socket")?;
        let mut server =
            Server::from_socket(config.settings.clone(), config.factory.clone(), socket)?;
        server.set_handler_name(&config.handler);
        if let Some(watchdog) = self.watchdog {
            let heartbeat = Heartbeat::new(watchdog.beat_interval());
            server.set_heartbeat(heartbeat.clone());
            watchdog.watch(id, server.name(), heartbeat);
        }
        let shutdown = server.shutdown_handle();
        run_on_thread(server, id, self.events.clone())?;
        Ok(Runner::Thread {
            shutdown,
            ended: false,
        })
    }

    fn start_process(
        &self,
        id: Id,
        config: &ServerConfig,
        listener: &Listener,
    ) -> anyhow::Result<Runner> {
        let name = &config.settings.name;
        let heartbeat = self.watchdog.map(|_| spawn::pipe()).transpose()?;
        let mut env: Vec<(OsString, OsString)> = std::env::vars_os().collect();
        let mut extra = Vec::new();
        if let (Some(watchdog), Some((_, tx))) = (self.watchdog, &heartbeat) {
            let ms = watchdog.beat_interval().as_millis().max(1);
            env.push((HEARTBEAT_MS.into(), ms.to_string().into()));
            extra.push((HEARTBEAT_FD, tx.as_fd()));
        }
        // Its counts go where the metrics server reads them (see `metrics`).
        if let Some(board) = metrics::shared_descriptor() {
            extra.push((metrics::METRICS_FD, board));
        }
        let text = memory_file("sockserv-config", self.text.text.as_bytes())
            .context("cannot hand the config to a server process")?;
        let argv: Vec<OsString> = vec![
            "sockserv".into(),
            SERVE_PROCESS.into(),
            "--server".into(),
            name.into(),
            "--origin".into(),
            (&self.text.origin).into(),
            "--base-dir".into(),
            self.text.base_dir.clone().into(),
        ];
        let exec = Exec {
            program: OWN_EXECUTABLE.into(),
            argv,
            env,
            listeners: vec![(name.clone(), listener.socket().as_fd())],
            extra,
            stdin: Some(text.as_fd()),
            die_with_parent: true,
            blocked: termination_signals(),
        };
        let process = ServerProcess::start(name, &exec)?;
        if let (Some(watchdog), Some((rx, _))) = (self.watchdog, heartbeat) {
            if let Err(err) = watchdog.watch_pipe(id, name, rx) {
                process.kill();
                process.wait();
                return Err(err);
            }
        }
        Ok(Runner::Process {
            process,
            exit: None,
        })
    }
}

/// The line each server prints once it serves; tests read the real port from it.
fn announce(config: &ServerConfig, listener: &Listener) {
    println!(
        "listening: {} {} handler={} strategy={}",
        config.settings.name,
        listener.endpoint(),
        config.handler,
        config.settings.strategy.kind()
    );
}

/// Serve on a thread of its own; the supervisor hears when it ends, however it ends.
fn run_on_thread(mut server: Server, id: Id, events: Sender<Event>) -> anyhow::Result<()> {
    thread::Builder::new()
        .name(server.name().to_string())
        .spawn(move || {
            let served = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let served = server.serve_forever().map_err(|err| err.to_string());
                (served, server.server_close())
            }));
            let (outcome, forced) =
                served.unwrap_or_else(|_| (Err("its serving thread panicked".into()), 0));
            let _ = events.send(Event::Ended {
                id,
                outcome,
                forced,
            });
        })
        .context("cannot start a server thread")?;
    Ok(())
}
