//! Serving in a process of its own: how a forking server lives beside threaded ones.
//!
//! fork() is only safe in a single-threaded process (see `strategy::forking`). A program that serves a
//! threading server and a forking server at once therefore forks the forking server's own process
//! first, while it still has one thread, and starts its threads after. The child serves until SIGINT or
//! SIGTERM, drains its own children, and exits; the parent keeps a [`ServerProcess`] to stop and reap it.
//!
//! The process tree holds together: a server process, and each request's process under it, asks the
//! kernel for SIGTERM when its parent dies (`PR_SET_PDEATHSIG`), so a main process killed with
//! SIGKILL does not leave a server behind holding its port.

use nix::sys::signal::{kill, SigSet, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};

use crate::strategy::require_single_thread;
use crate::{Server, ServerError, UnixFile};

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
    /// The server's Unix socket file, to remove should the process be killed before it could.
    socket_file: Option<UnixFile>,
}

impl ServerProcess {
    /// Fork a process that serves `server` until SIGINT or SIGTERM. This process gives up its copy of
    /// the server (closing its socket here without removing the Unix socket file). Refused, like the
    /// forking strategy, unless this process has exactly one thread.
    ///
    /// Block [`termination_signals`] around the call so that a signal arriving before the child has
    /// its handlers is held, not fatal: the child unblocks them once it can act on them.
    ///
    /// # Errors
    ///
    /// [`ServerError::ForkWithThreads`] or [`ServerError::ThreadsUnknown`] unless this process
    /// provably has one thread; [`ServerError::Serve`] when fork() fails.
    pub fn spawn(server: Server) -> Result<ServerProcess, ServerError> {
        require_single_thread()?;
        let name = server.name().to_string();
        let socket_file = server.socket_file().cloned();
        let parent = nix::unistd::getpid();
        // SAFETY: the process has exactly one thread (checked above), so the child inherits no lock
        // held by another thread and may allocate, log and serve as usual.
        match unsafe { fork() } {
            Ok(ForkResult::Child) => {
                // The termination signals stay blocked until the child's own handlers exist.
                become_child_of(parent, &termination_signals());
                serve_in_child(server)
            }
            Ok(ForkResult::Parent { child }) => {
                server.release();
                Ok(ServerProcess {
                    pid: child,
                    name,
                    socket_file,
                })
            }
            Err(errno) => Err(ServerError::Serve {
                server: name,
                source: errno.into(),
            }),
        }
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

    /// Stop the process at once (SIGKILL), for when its drain has taken too long.
    pub fn kill(&self) {
        let _ = kill(self.pid, Signal::SIGKILL);
    }

    /// The server's Unix socket file, if it has one: a killed process leaves it behind.
    pub fn socket_file(&self) -> Option<&UnixFile> {
        self.socket_file.as_ref()
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

fn serve_in_child(mut server: Server) -> ! {
    let signals = [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM];
    let handled = server.shutdown_handle().shutdown_on_signals(&signals);
    // A parent that blocked these signals around the fork (so that none is lost before the handlers
    // exist) left them blocked here: with the handlers in place, let them in.
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
    let code = if code == 0 && forced > 0 {
        UNCLEAN_DRAIN_STATUS
    } else {
        code
    };
    // SAFETY: `_exit` ends the child without unwinding into the parent's code or running its atexit
    // handlers; everything of the child's was closed above.
    unsafe { libc::_exit(code) }
}
