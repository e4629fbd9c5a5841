//! Serving in a process of its own: how a forking server lives beside threaded ones.
//!
//! fork() without exec is only safe in a single-threaded process (see `strategy::forking`). A
//! program that serves a threading server and a forking server at once therefore starts the
//! forking server's process by fork and execve of its own executable ([`crate::spawn`]), handing
//! it the listening socket the way systemd's socket activation does; the new process, single
//! threaded, serves until SIGINT or SIGTERM ([`serve_process`]), drains its own children, and
//! exits. The parent keeps a [`ServerProcess`] to stop and reap it.
//!
//! The process tree holds together: a server process, and each request's process under it, asks the
//! kernel for SIGTERM when its parent dies (`PR_SET_PDEATHSIG`), so a main process killed with
//! SIGKILL does not leave a server behind holding its port.

use nix::sys::signal::{kill, SigSet, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use crate::spawn::{spawn, Exec};
use crate::{Server, ServerError};

/// The exit status of a server process that stopped when asked but had to close requests under
/// their handlers at the end of its drain: not a failure of the server, not a clean drain either.
pub const UNCLEAN_DRAIN_STATUS: i32 = 3;

/// SIGINT and SIGTERM: the signals that stop a server process.
pub fn termination_signals() -> SigSet {
    let mut set = SigSet::empty();
    set.add(Signal::SIGINT);
    set.add(Signal::SIGTERM);
    set
}

/// A server running in a child process.
#[derive(Debug)]
pub struct ServerProcess {
    pid: Pid,
    name: String,
}

impl ServerProcess {
    /// Start the process `exec` describes (this executable serving one server, its listener
    /// passed), for server `name`. It starts with [`termination_signals`] blocked and unblocks them
    /// once it handles them, so a SIGTERM sent at once is acted on, never fatal.
    ///
    /// # Errors
    ///
    /// [`ServerError::Serve`] when fork() or execve(2) fails.
    pub fn start(name: &str, exec: &Exec<'_>) -> Result<ServerProcess, ServerError> {
        let pid = spawn(exec).map_err(|source| ServerError::Serve {
            server: name.to_string(),
            source,
        })?;
        Ok(ServerProcess {
            pid,
            name: name.to_string(),
        })
    }

    pub fn pid(&self) -> u32 {
        self.pid.as_raw() as u32
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Ask the server process to shut down (SIGTERM); it drains its requests and exits.
    pub fn terminate(&self) {
        let _ = kill(self.pid, Signal::SIGTERM);
    }

    /// Ask the server process to read its TLS certificates again (SIGHUP): it does before its
    /// next connection (see `tls::reload_flag`). A server without TLS ignores it.
    pub fn reload_certificates(&self) {
        let _ = kill(self.pid, Signal::SIGHUP);
    }

    /// Stop the process at once (SIGKILL), for when its drain has taken too long.
    pub fn kill(&self) {
        let _ = kill(self.pid, Signal::SIGKILL);
    }

    /// Whether the process has ended, without waiting: `Some` with how it ended (and it is
    /// reaped), `None` while it runs.
    pub fn try_wait(&self) -> Option<ProcessExit> {
        match waitpid(self.pid, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => None,
            Ok(WaitStatus::Exited(_, code)) => Some(ProcessExit::Exited(code)),
            Ok(WaitStatus::Signaled(_, signal, _)) => Some(ProcessExit::Killed(signal)),
            Ok(_) => None,
            Err(errno) => Some(ProcessExit::Lost(errno)),
        }
    }

    /// Wait for the process to end, and say how it ended.
    pub fn wait_exit(&self) -> ProcessExit {
        loop {
            match waitpid(self.pid, None) {
                Ok(WaitStatus::Exited(_, code)) => return ProcessExit::Exited(code),
                Ok(WaitStatus::Signaled(_, signal, _)) => return ProcessExit::Killed(signal),
                Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
                Err(errno) => return ProcessExit::Lost(errno),
            }
        }
    }

    /// Wait for the process to end; true when it exited cleanly.
    pub fn wait(self) -> bool {
        loop {
            match waitpid(self.pid, None) {
                Ok(WaitStatus::Exited(_, code)) => return code == 0,
                Ok(WaitStatus::Signaled(..)) | Err(_) => return false,
                Ok(_) => continue,
            }
        }
    }
}

/// How a server process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcessExit {
    /// It exited with this status (0: a clean stop).
    Exited(i32),
    /// A signal killed it.
    Killed(Signal),
    /// It cannot be waited for (already reaped elsewhere): `waitpid`'s error.
    Lost(nix::errno::Errno),
}

impl ProcessExit {
    /// Whether this was a clean stop.
    pub fn is_clean(self) -> bool {
        self == ProcessExit::Exited(0)
    }
}

impl std::fmt::Display for ProcessExit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProcessExit::Exited(UNCLEAN_DRAIN_STATUS) => write!(
                f,
                "exited with status {UNCLEAN_DRAIN_STATUS}: requests were still running at the \
                 end of its drain and were closed"
            ),
            ProcessExit::Exited(code) => write!(f, "exited with status {code}"),
            ProcessExit::Killed(signal) => write!(f, "killed by {signal}"),
            ProcessExit::Lost(errno) => write!(f, "cannot be waited for: {errno}"),
        }
    }
}

/// In a child just forked from `parent`: stop acting as the parent, and die with it.
///
/// Signals go back to what execve(2) leaves: every caught signal to its default action (ignored ones
/// stay ignored), and the mask set to `mask`, so the parent's handlers (SIGTERM: "stop the server")
/// do not act in the child. Then the kernel is asked to send SIGTERM when the parent dies
/// (`PR_SET_PDEATHSIG`); a parent already gone by then ends the child at once.
pub(crate) fn become_child_of(parent: Pid, mask: &SigSet) {
    // SAFETY: querying and setting signal dispositions with plain sigaction/signal calls; this runs
    // in a freshly forked child with a single thread, before any handler of its own is installed.
    unsafe {
        for signal in 1..libc::SIGRTMAX() {
            let mut old: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(signal, std::ptr::null(), &mut old) != 0 {
                continue;
            }
            if old.sa_sigaction != libc::SIG_DFL && old.sa_sigaction != libc::SIG_IGN {
                libc::signal(signal, libc::SIG_DFL);
            }
        }
    }
    let _ = mask.thread_set_mask();
    // SAFETY: prctl with PR_SET_PDEATHSIG takes a signal number and has no memory arguments.
    let asked = unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) };
    if asked != 0 || nix::unistd::getppid() != parent {
        // SAFETY: `_exit` ends the child at once, running none of the parent's destructors.
        unsafe { libc::_exit(1) }
    }
}

/// SIGUSR1 and SIGUSR2 mean something to the main process (upgrade), not to a server process:
/// one sent to every process of the service (`systemctl kill` without `--kill-whom=main`) must
/// not end it. SIGHUP — which the main process sends a server process whose config a reload left
/// unchanged, and which a terminal's hangup sends the whole group — asks for the TLS
/// certificates to be read again before the next connection (`tls::reload_flag`; a flag, which
/// a single-threaded process can set from a signal handler safely); it never ends the process.
fn ignore_operator_signals() {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler};
    let ignore = SigAction::new(SigHandler::SigIgn, SaFlags::empty(), SigSet::empty());
    let flagged =
        signal_hook::flag::register(signal_hook::consts::SIGHUP, crate::tls::reload_flag());
    let mut ignored = vec![Signal::SIGUSR1, Signal::SIGUSR2];
    if flagged.is_err() {
        ignored.push(Signal::SIGHUP);
    }
    for signal in ignored {
        // SAFETY: setting a signal to be ignored installs no handler code; it runs before this
        // process starts any thread.
        let _ = unsafe { sigaction(signal, &ignore) };
    }
}

/// Serve `server` in a server process until SIGINT or SIGTERM, then drain; returns the process's
/// exit status: 0 for a clean stop, [`UNCLEAN_DRAIN_STATUS`] when the drain had to close requests,
/// 1 when the server failed. The termination signals may be blocked on entry (see
/// [`ServerProcess::start`]): they are let in once handled.
pub fn serve_process(mut server: Server) -> i32 {
    ignore_operator_signals();
    let signals = [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM];
    let handled = server.shutdown_handle().shutdown_on_signals(&signals);
    let _ = termination_signals().thread_unblock();
    let code = match handled {
        Err(err) => {
            log::error!("{}: cannot handle signals: {err}", server.name());
            1
        }
        Ok(()) => match server.serve_forever() {
            Ok(()) => 0,
            Err(err) => {
                log::error!("{err}");
                1
            }
        },
    };
    let forced = server.server_close();
    if code == 0 && forced > 0 {
        UNCLEAN_DRAIN_STATUS
    } else {
        code
    }
}
