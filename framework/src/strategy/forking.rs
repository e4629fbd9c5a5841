//! The forking strategy: a process per request (socketserver's ForkingMixIn), at most `max_children`
//! at once, every child reaped as soon as it exits.
//!
//! fork() in a multi-threaded process leaves the child with locks that other threads held (the
//! allocator's, the logger's), so this strategy refuses to run unless the process has exactly one
//! thread, checked when serving starts and again before every fork. `sockserv serve` runs each forking
//! server in a process of its own, forked before any thread exists.
//!
//! Children are noticed through a signalfd for SIGCHLD, which the serving loop polls beside the
//! listener: no zombie waits for the next connection to be reaped, and no timer polls.

use std::collections::HashMap;
use std::net::Shutdown as Direction;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::Arc;

use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};
use socket2::Socket;
use sockserv_plugin::Address;

use super::{thread_count, Dispatcher};
use crate::request::{serve_datagram, serve_stream, Shared};
use crate::transport::{Datagram, ReplyTo};
use crate::{RequestFailure, ServerError};

struct Child {
    conn: Option<Socket>,
    peer: Address,
}

pub(crate) struct ForkingDispatcher {
    max_children: usize,
    /// Live children, each with the parent's copy of its connection (for `close` to shut it down)
    /// and its peer (for the log line when a child dies of a signal).
    children: HashMap<Pid, Child>,
    /// The server's name, for log lines.
    server: String,
    sigchld: SignalFd,
    /// The signal mask before SIGCHLD was blocked, restored at close and in every child.
    old_mask: SigSet,
}

impl ForkingDispatcher {
    pub fn new(max_children: usize, server: &str) -> Result<Self, ServerError> {
        require_single_thread()?;
        let mut mask = SigSet::empty();
        mask.add(Signal::SIGCHLD);
        let old_mask = mask
            .thread_swap_mask(nix::sys::signal::SigmaskHow::SIG_BLOCK)
            .map_err(|errno| io_error("block SIGCHLD", errno))?;
        let sigchld = SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
            .map_err(|errno| io_error("open a signalfd", errno))?;
        Ok(ForkingDispatcher {
            max_children,
            children: HashMap::new(),
            server: server.to_string(),
            sigchld,
            old_mask,
        })
    }

    /// Reap every child that has exited, without blocking. A child killed by a signal (a crash in a
    /// handler or plugin) is logged: its request is lost, the server is not.
    fn reap(&mut self) {
        while let Ok(Some(_)) = self.sigchld.read_signal() {}
        let server = &self.server;
        self.children.retain(
            |&pid, child| match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(..)) | Err(_) => false,
                Ok(WaitStatus::Signaled(_, signal, _)) => {
                    log::error!(
                        "{server}: request from {}: child {pid} killed by {signal}",
                        child.peer
                    );
                    false
                }
                Ok(_) => true,
            },
        );
    }

    /// Fork; the child runs `work` and exits without returning, the parent records the child.
    fn spawn(
        &mut self,
        shared: &Shared,
        peer: &Address,
        conn: Option<Socket>,
        work: impl FnOnce(),
    ) {
        if let Err(err) = require_single_thread() {
            let failure = RequestFailure::Dispatch(err.to_string());
            return shared.hooks.handle_error(&shared.name, peer, &failure);
        }
        // SAFETY: the process has exactly one thread (checked just above), so the child inherits no
        // lock held by another thread and may run ordinary code, allocation and logging included.
        match unsafe { fork() } {
            Ok(ForkResult::Child) => {
                let _ = self.old_mask.thread_set_mask();
                // A panic must never unwind out of the child into the parent's serving loop.
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(work));
                // SAFETY: `_exit` ends the child at once, without running the parent's atexit
                // handlers or destructors (which would, say, remove the server's Unix socket file).
                unsafe { libc::_exit(0) }
            }
            Ok(ForkResult::Parent { child }) => {
                let peer = peer.clone();
                self.children.insert(child, Child { conn, peer });
            }
            Err(errno) => {
                let failure = RequestFailure::Dispatch(format!("fork failed: {errno}"));
                shared.hooks.handle_error(&shared.name, peer, &failure);
            }
        }
    }
}

impl Dispatcher for ForkingDispatcher {
    fn has_capacity(&self) -> bool {
        self.children.len() < self.max_children
    }

    fn ready_fd(&self) -> Option<BorrowedFd<'_>> {
        Some(self.sigchld.as_fd())
    }

    fn on_ready(&mut self) {
        self.reap();
    }

    fn stream(&mut self, shared: &Arc<Shared>, conn: Socket, peer: Address) {
        // The parent keeps its copy until the child is reaped; the child shuts the connection down
        // when it is done, so the peer sees the close at once all the same.
        let parent_copy = conn.try_clone().ok();
        self.spawn(shared, &peer.clone(), parent_copy, move || {
            serve_stream(shared, &conn, peer)
        });
    }

    fn datagram(
        &mut self,
        shared: &Arc<Shared>,
        socket: &Arc<Datagram>,
        packet: Vec<u8>,
        from: ReplyTo,
    ) {
        self.spawn(shared, &from.address(), None, || {
            serve_datagram(shared, socket, &packet, &from, &mut Vec::new())
        });
    }

    fn close(&mut self) {
        for conn in self
            .children
            .values()
            .filter_map(|child| child.conn.as_ref())
        {
            let _ = conn.shutdown(Direction::Read);
        }
        for (pid, _) in self.children.drain() {
            let _ = waitpid(pid, None);
        }
        let _ = self.old_mask.thread_set_mask();
    }
}

fn require_single_thread() -> Result<(), ServerError> {
    match thread_count() {
        Some(1) => Ok(()),
        other => Err(ServerError::ForkWithThreads {
            threads: other.unwrap_or(0),
        }),
    }
}

fn io_error(step: &str, errno: nix::errno::Errno) -> ServerError {
    ServerError::Serve {
        server: format!("forking strategy ({step})"),
        source: std::io::Error::from(errno),
    }
}
