//! Serving in a process of its own: how a forking server lives beside threaded ones.
//!
//! fork() is only safe in a single-threaded process (see `strategy::forking`). A program that serves a
//! threading server and a forking server at once therefore forks the forking server's own process
//! first, while it still has one thread, and starts its threads after. The child serves until SIGINT or
//! SIGTERM, drains its own children, and exits; the parent keeps a [`ServerProcess`] to stop and reap it.

use nix::sys::signal::{kill, SigSet, Signal};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};

use crate::strategy::thread_count;
use crate::{Server, ServerError};

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
    /// Fork a process that serves `server` until SIGINT or SIGTERM. This process gives up its copy of
    /// the server (closing its socket here without removing the Unix socket file). Refused, like the
    /// forking strategy, unless this process has exactly one thread.
    ///
    /// Block [`termination_signals`] around the call so that a signal arriving before the child has
    /// its handlers is held, not fatal: the child unblocks them once it can act on them.
    pub fn spawn(server: Server) -> Result<ServerProcess, ServerError> {
        if let Some(threads) = thread_count().filter(|&n| n != 1) {
            return Err(ServerError::ForkWithThreads { threads });
        }
        let name = server.name().to_string();
        // SAFETY: the process has exactly one thread (checked above), so the child inherits no lock
        // held by another thread and may allocate, log and serve as usual.
        match unsafe { fork() } {
            Ok(ForkResult::Child) => serve_in_child(server),
            Ok(ForkResult::Parent { child }) => {
                server.release();
                Ok(ServerProcess { pid: child, name })
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
    server.server_close();
    // SAFETY: `_exit` ends the child without unwinding into the parent's code or running its atexit
    // handlers; everything of the child's was closed above.
    unsafe { libc::_exit(code) }
}
