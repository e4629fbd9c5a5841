//! SIGUSR2: upgrade the binary without closing a listener, nginx's way.
//!
//! The running process starts the executable it was started from (the file at that path now: the
//! new build) with its own arguments, and hands it every serving listener through `LISTEN_FDS` /
//! `LISTEN_FDNAMES` / `LISTEN_PID` — the variables of systemd's socket activation, so the new
//! process takes them over by the same code — named by server, plus a pipe (`SOCKSERV_READY_FD`).
//! The new process serves the config file as a fresh start would, on the sockets handed to it,
//! and writes one byte into the pipe once every server listens (where it sends `READY=1`).
//!
//! - Ready: the old process tells the service manager the new main pid (`MAINPID=`), stops
//!   accepting and drains every server (the new one already accepts on the same sockets: one
//!   kernel accept queue each, so no connection is refused or lost), leaves the Unix socket files
//!   to its successor (`SOCKSERV_SOCKET_FILES` names the servers whose file it now owns), and exits.
//! - The pipe closes without the byte (the new process failed: a bad config, a socket it could
//!   not bind, a missing executable), or [`READY_TIMEOUT`] passes: the old process logs why,
//!   stops the new one if it still runs, and keeps serving as if nothing happened.
//!
//! The new process is not tied to the old one's life (no parent-death signal): it outlives it by
//! design. Under systemd, `NotifyAccess=all` lets the new process's notifications through before
//! the `MAINPID=` change is known.

use std::ffi::OsString;
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::sync::mpsc::Sender;
use std::thread;
use std::time::Duration;

use anyhow::Context;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use sockserv_framework::metrics;
use sockserv_framework::spawn::{self, take_fd_from_env, Exec};
use sockserv_framework::termination_signals;

use crate::fleet::Event;
use crate::supervise::Supervisor;

/// The variable that hands the new process the pipe it reports ready on.
pub const READY_FD: &str = "SOCKSERV_READY_FD";
/// The variable naming the servers whose Unix socket file the new process owns from now on.
pub const SOCKET_FILES: &str = "SOCKSERV_SOCKET_FILES";
/// How long the new process may take to be ready before the upgrade is given up: far more than
/// loading a config and binding take, short enough that an operator sees a hung upgrade fail.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// The executable and arguments this process was started with, kept from the start: after an
/// upgrade's `mv`, the path names the new build.
#[derive(Debug, Clone)]
pub struct Executable {
    path: PathBuf,
    argv: Vec<OsString>,
}

impl Executable {
    /// This process's, as it starts.
    ///
    /// # Errors
    ///
    /// Its path cannot be read (`/proc/self/exe`).
    pub fn current() -> anyhow::Result<Executable> {
        let path = std::env::current_exe().context("cannot tell which executable this is")?;
        Ok(Executable {
            path,
            argv: std::env::args_os().collect(),
        })
    }
}

/// What an upgrading predecessor handed this process, besides the sockets.
#[derive(Debug)]
pub struct Handover {
    ready: OwnedFd,
    socket_files: Vec<String>,
}

impl Handover {
    /// From the environment (both variables are cleared); `Ok(None)` when this is no upgrade.
    ///
    /// # Errors
    ///
    /// The ready pipe's variable names no open descriptor.
    pub fn from_env() -> anyhow::Result<Option<Handover>> {
        let files = std::env::var(SOCKET_FILES).unwrap_or_default();
        std::env::remove_var(SOCKET_FILES);
        let Some(ready) = take_fd_from_env(READY_FD)? else {
            return Ok(None);
        };
        let socket_files = files
            .split(':')
            .filter(|name| !name.is_empty())
            .map(str::to_string)
            .collect();
        Ok(Some(Handover {
            ready,
            socket_files,
        }))
    }

    /// Whether the Unix socket file of server `name`'s passed socket is this process's now.
    pub fn owns_file(&self, name: &str) -> bool {
        self.socket_files.iter().any(|owned| owned == name)
    }

    /// Tell the predecessor every server listens.
    pub fn ready(self) {
        let _ = nix::unistd::write(&self.ready, b"R");
    }
}

/// An upgrade under way: the new process, not ready yet.
#[derive(Debug)]
pub struct Upgrading {
    pid: Pid,
}

impl Supervisor {
    /// SIGUSR2: start the new executable with every serving listener.
    pub fn start_upgrade(&mut self) {
        if self.upgrading.is_some() {
            log::warn!("received SIGUSR2 while an upgrade is under way: ignored");
            return;
        }
        let Some(executable) = self.executable.clone() else {
            log::error!("upgrade refused: this process does not know its executable's path");
            return;
        };
        match self.spawn_successor(&executable) {
            Ok(pid) => {
                log::info!(
                    "upgrade: started {} (process {pid}) with every listening socket; waiting \
                     for it to be ready",
                    executable.path.display()
                );
                self.upgrading = Some(Upgrading { pid });
            }
            Err(err) => log::error!("upgrade failed, still serving: {err:#}"),
        }
    }

    fn spawn_successor(&mut self, executable: &Executable) -> anyhow::Result<Pid> {
        let (ready_rx, ready_tx) = spawn::pipe().context("cannot make the ready pipe")?;
        let serving: Vec<_> = (self.instances.iter())
            .filter(|i| i.is_serving())
            .filter_map(|i| i.listener.as_ref().map(|l| (i.name().to_string(), l)))
            .collect();
        let socket_files: Vec<&str> = (serving.iter())
            .filter(|(_, listener)| listener.unix_file().is_some())
            .map(|(name, _)| name.as_str())
            .collect();
        let mut env: Vec<(OsString, OsString)> = std::env::vars_os().collect();
        env.push((SOCKET_FILES.into(), socket_files.join(":").into()));
        if let Some(variable) = self.notifier.variable() {
            env.push(("NOTIFY_SOCKET".into(), variable.clone()));
        }
        if let Some(usec) = self.watchdog_usec() {
            env.push(("WATCHDOG_USEC".into(), usec.to_string().into()));
        }
        let exec = Exec {
            program: executable.path.clone(),
            argv: executable.argv.clone(),
            env,
            listeners: (serving.iter())
                .map(|(name, listener)| (name.clone(), listener.socket().as_fd()))
                .collect(),
            extra: [(READY_FD, ready_tx.as_fd())]
                .into_iter()
                // The counts, and the connection ids, go on where they were (see `metrics`).
                .chain(metrics::shared_descriptor().map(|fd| (metrics::METRICS_FD, fd)))
                .collect(),
            stdin: None,
            die_with_parent: false,
            blocked: termination_signals(),
        };
        let pid = spawn::spawn(&exec)
            .with_context(|| format!("cannot start {}", executable.path.display()))?;
        drop(exec);
        drop(ready_tx);
        wait_ready(ready_rx, pid, self.sender.clone())?;
        Ok(pid)
    }

    /// The new process reported (`Ok`) or failed (`Err` with why): true when it is ready and this
    /// process is to drain and hand over.
    pub fn upgrade_reported(&mut self, outcome: Result<(), String>) -> bool {
        let Some(Upgrading { pid }) = self.upgrading.take() else {
            return false;
        };
        match outcome {
            Ok(()) => {
                log::info!(
                    "upgrade: process {pid} serves every socket; this process drains and exits"
                );
                self.notifier.send(&format!(
                    "MAINPID={pid}\nSTATUS=upgraded: process {pid} serves, the old one drains"
                ));
                self.handed_over = true;
                true
            }
            Err(why) => {
                let exit = stop_and_reap(pid, why.contains("not ready within"));
                log::error!("upgrade failed, still serving: the new process {why}{exit}");
                false
            }
        }
    }

    /// Stopping while an upgrade is under way: the new process is stopped too (it is not ready,
    /// and nothing would supervise it).
    pub fn abandon_upgrade(&mut self) {
        if let Some(Upgrading { pid }) = self.upgrading.take() {
            let exit = stop_and_reap(pid, true);
            log::warn!("upgrade abandoned: stopping; the new process (process {pid}){exit}");
        }
    }
}

/// A thread that waits (bounded) for the new process's byte, and reports.
fn wait_ready(ready: OwnedFd, pid: Pid, events: Sender<Event>) -> anyhow::Result<()> {
    thread::Builder::new()
        .name("upgrade".into())
        .spawn(move || {
            let outcome = read_ready(&ready, pid);
            let _ = events.send(Event::Upgrade(outcome));
        })
        .context("cannot start the thread that waits for the new process")?;
    Ok(())
}

fn read_ready(ready: &OwnedFd, pid: Pid) -> Result<(), String> {
    let timeout = PollTimeout::try_from(READY_TIMEOUT).unwrap_or(PollTimeout::MAX);
    let mut fds = [PollFd::new(ready.as_fd(), PollFlags::POLLIN)];
    loop {
        match poll(&mut fds, timeout) {
            Ok(0) => {
                return Err(format!(
                    "(process {pid}) was not ready within {READY_TIMEOUT:?}"
                ))
            }
            Ok(_) => break,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(err) => return Err(format!("(process {pid}) cannot be waited for: {err}")),
        }
    }
    let mut byte = [0u8; 1];
    match nix::unistd::read(ready, &mut byte) {
        Ok(1) => Ok(()),
        _ => Err(format!("(process {pid}) ended before it was ready")),
    }
}

/// How long a new process that closed its ready pipe may take to be reaped before it is killed:
/// it is exiting, so this is only a bound on a process that closed the pipe and went on.
const EXIT_WAIT: Duration = Duration::from_secs(2);

/// Reap `pid` — killing it (SIGKILL) if it still runs after [`EXIT_WAIT`], or at once when
/// `kill_now` — and say how it ended (for the log).
fn stop_and_reap(pid: Pid, kill_now: bool) -> String {
    let deadline = std::time::Instant::now() + EXIT_WAIT;
    let mut status = waitpid(pid, Some(WaitPidFlag::WNOHANG));
    while !kill_now
        && matches!(status, Ok(WaitStatus::StillAlive))
        && std::time::Instant::now() < deadline
    {
        thread::sleep(Duration::from_millis(10));
        status = waitpid(pid, Some(WaitPidFlag::WNOHANG));
    }
    if matches!(status, Ok(WaitStatus::StillAlive)) {
        let _ = kill(pid, Signal::SIGKILL);
        status = waitpid(pid, None);
    }
    match status {
        Ok(WaitStatus::Exited(_, code)) => format!(": it exited with status {code}"),
        Ok(WaitStatus::Signaled(_, signal, _)) => format!(": it was stopped by {signal}"),
        _ => String::new(),
    }
}
