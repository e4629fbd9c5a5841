//! The forking strategy: a process per request (socketserver's ForkingMixIn), at most `max_children`
//! at once, every child reaped as soon as it exits.
//!
//! fork() in a multi-threaded process leaves the child with locks that other threads held (the
//! allocator's, the logger's), so this strategy refuses to run unless the process provably has
//! exactly one thread, checked when serving starts and again before every fork. `sockserv serve`
//! runs each forking server in a process of its own, forked before any thread exists.
//!
//! Children are noticed through a signalfd for SIGCHLD, which the serving loop polls beside the
//! listener: no zombie waits for the next connection to be reaped, and no timer polls.
//!
//! A child is a request's process, not a server: it resets the server's signal handlers and mask
//! (as execve(2) would), closes the listener, dies with the
//! server process (`PR_SET_PDEATHSIG`), and exits 1 when its handler failed or panicked, 2 when the
//! peer ended the request (a reset; logged here, at a bounded rate, not by the child), 0 otherwise
//! (socketserver's child exits 1 on an exception).
//!
//! Datagrams are answered in the serving process unless `spawn_per_datagram` asks for
//! socketserver's process per datagram.

use std::collections::HashMap;
use std::net::Shutdown as Direction;
use std::os::fd::{AsFd, BorrowedFd, RawFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};
use socket2::Socket;
use sockserv_plugin::Address;

use super::{require_single_thread, Accepted, Dispatcher, Inline};
use crate::close::{deadline_after, FORCED_CLOSE_WAIT};
use crate::deadline::Expiry;
use crate::limits::{Limits, Ticket};
use crate::memory;
use crate::metrics::{CloseReason, ConnId, Refusal, ServerMetrics};
use crate::peer_log::{enter_request_child, Fields};
use crate::process::become_child_of;
use crate::request::{serve_datagram, serve_stream, Outcome, Shared, HANDSHAKE_FAILED_STATUS};
use crate::transport::{Datagram, ReplyTo};
use crate::{log_peer_event, log_with};
use crate::{Client, RequestFailure, ServerError, PEER_FAULT_STATUS};

struct Child {
    /// The parent's copy of the child's connection, for `close` to shut it down.
    conn: Option<Socket>,
    /// The connection's place in the server's limits, given back when the child is reaped.
    _ticket: Option<Ticket>,
    /// For the log line when the child dies of a signal.
    peer: Address,
    /// The connection's id (`None`: a datagram's child).
    id: Option<ConnId>,
    /// When the child was forked: a child killed by a signal could not count its connection's
    /// close, so the server counts it, with this duration.
    started: Instant,
}

impl Child {
    fn client(&self) -> Client<'_> {
        Client {
            peer: &self.peer,
            conn: self.id,
        }
    }
}

pub(crate) struct ForkingDispatcher {
    max_children: usize,
    /// A process per datagram (socketserver's mixin) rather than answering in this process.
    spawn_per_datagram: bool,
    inline: Inline,
    children: HashMap<Pid, Child>,
    /// The server's name, for log lines.
    server: String,
    /// The server's limits: a child that a time limit ended says which in its exit status.
    limits: Limits,
    /// The stream listener, which children close: a request's process must not keep the port.
    listener: Option<RawFd>,
    sigchld: SignalFd,
    /// The signal mask before SIGCHLD was blocked, restored at close.
    old_mask: SigSet,
    /// `close` has begun: a child's connection may have been closed by the drain.
    closing: bool,
    /// The server's counters, for the children that die before they can count their close.
    metrics: ServerMetrics,
}

impl ForkingDispatcher {
    /// # Errors
    ///
    /// [`ServerError::ForkWithThreads`] / [`ServerError::ThreadsUnknown`] unless this process
    /// provably has one thread; [`ServerError::Strategy`] when SIGCHLD cannot be blocked or its
    /// signalfd made.
    pub fn new(
        max_children: usize,
        spawn_per_datagram: bool,
        server: &str,
        limits: Limits,
        listener: Option<RawFd>,
        metrics: ServerMetrics,
    ) -> Result<Self, ServerError> {
        require_single_thread()?;
        let failed = |step: &'static str| {
            move |errno: nix::errno::Errno| ServerError::Strategy {
                server: server.to_string(),
                step,
                source: errno.into(),
            }
        };
        let mut mask = SigSet::empty();
        mask.add(Signal::SIGCHLD);
        let old_mask = mask
            .thread_swap_mask(nix::sys::signal::SigmaskHow::SIG_BLOCK)
            .map_err(failed("block SIGCHLD"))?;
        let sigchld = SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
            .map_err(failed("open a signalfd for SIGCHLD"))?;
        Ok(ForkingDispatcher {
            max_children,
            spawn_per_datagram,
            inline: Inline::default(),
            children: HashMap::new(),
            server: server.to_string(),
            limits,
            listener,
            sigchld,
            old_mask,
            closing: false,
            metrics,
        })
    }

    /// Reap every child that has exited, without blocking. A child killed by a signal (a crash in a
    /// handler or plugin) is logged: its request is lost, the server is not. A child that exited 1
    /// has logged its own failure.
    fn reap(&mut self) {
        while let Ok(Some(_)) = self.sigchld.read_signal() {}
        let (server, limits, closing) = (&self.server, &self.limits, self.closing);
        let metrics = self.metrics;
        self.children.retain(|&pid, child| {
            let client = child.client();
            let (tag, peer) = (client.tag(), client.peer);
            let fields = Fields::of(server, client);
            match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(_, 0)) | Err(_) => false,
                Ok(WaitStatus::Exited(_, PEER_FAULT_STATUS)) => {
                    let failure = if closing {
                        RequestFailure::ClosedByDrain(Box::new(RequestFailure::EndedByPeer))
                    } else {
                        RequestFailure::EndedByPeer
                    };
                    let line =
                        format_args!("{server}: {tag}request from {peer}: {failure} (child {pid})");
                    log_peer_event!(&fields, line);
                    false
                }
                Ok(WaitStatus::Exited(_, HANDSHAKE_FAILED_STATUS)) => {
                    let fields = fields.because(Refusal::TlsHandshake.name());
                    let line = format_args!(
                        "{server}: {tag}request from {peer}: TLS handshake failed (child {pid}; \
                         its debug log says why)"
                    );
                    log_peer_event!(&fields, line);
                    false
                }
                Ok(WaitStatus::Exited(_, code))
                    if Expiry::from_exit_status(code, limits).is_some() =>
                {
                    let expiry = Expiry::from_exit_status(code, limits).expect("checked");
                    let fields = fields.because(expiry.reason().name());
                    log_peer_event!(
                        &fields,
                        format_args!("{server}: {tag}request from {peer}: {expiry} (child {pid})"),
                    );
                    false
                }
                Ok(WaitStatus::Exited(_, code)) => {
                    let line = format_args!(
                        "{server}: {tag}request from {peer}: child {pid} exited with status {code}"
                    );
                    log_with!(log::Level::Debug, &fields, line);
                    false
                }
                Ok(WaitStatus::Signaled(_, signal, _)) => {
                    if child.id.is_some() {
                        metrics.closed(CloseReason::Error, child.started.elapsed());
                    }
                    let line = format_args!(
                        "{server}: {tag}request from {peer}: child {pid} killed by {signal}"
                    );
                    log_with!(log::Level::Error, &fields.because("error"), line);
                    false
                }
                Ok(_) => true,
            }
        });
        memory::shrink_sparse_map(&mut self.children);
        memory::give_back_if_due();
    }

    /// Fork; the child runs `work` and exits without returning (1 when `work` says it failed), the
    /// parent records the child.
    fn spawn(
        &mut self,
        shared: &Shared,
        client: Client<'_>,
        conn: Option<Socket>,
        ticket: Option<Ticket>,
        work: impl FnOnce() -> Outcome,
    ) {
        let refuse = |failure: RequestFailure| {
            if client.conn.is_some() {
                shared.metrics.refused(Refusal::Dispatch);
            }
            shared.report(client, &failure);
        };
        if let Err(err) = require_single_thread() {
            return refuse(RequestFailure::Dispatch(err.to_string()));
        }
        let server_pid = nix::unistd::getpid();
        // SAFETY: the process has exactly one thread (checked just above), so the child inherits no
        // lock held by another thread and may run ordinary code, allocation and logging included.
        match unsafe { fork() } {
            Ok(ForkResult::Child) => {
                become_child_of(server_pid, &SigSet::empty());
                enter_request_child();
                self.leave_server();
                // A panic must never unwind out of the child into the parent's serving loop.
                let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(work));
                let code = outcome.unwrap_or(Outcome::Failed).exit_status();
                // SAFETY: `_exit` ends the child at once, without running the parent's atexit
                // handlers or destructors (which would, say, remove the server's Unix socket file).
                unsafe { libc::_exit(code) }
            }
            Ok(ForkResult::Parent { child }) => {
                let child_entry = Child {
                    conn,
                    _ticket: ticket,
                    peer: client.peer.clone(),
                    id: client.conn,
                    started: Instant::now(),
                };
                self.children.insert(child, child_entry);
            }
            Err(errno) => refuse(RequestFailure::Dispatch(format!("fork failed: {errno}"))),
        }
    }

    /// In a new child: give up the listener, so the port is free once the server process is gone.
    ///
    /// The other requests' connections (the parent's copies) are left alone: closing them made
    /// the n-th child pay for n closes and copy the whole children table (0.15 s to open 500
    /// connections, 4 s for 4 000, 720 KiB private per child at 4 000; see bench/RESULTS.md's
    /// limits section), while holding them costs nothing — a request ends its own connection with
    /// an explicit shutdown, whoever else holds a descriptor to it, and every child dies with the
    /// server process.
    fn leave_server(&self) {
        if let Some(listener) = self.listener {
            // SAFETY: the listener's descriptor is the server's, open for the server's whole life; the
            // child never uses it, and exits with `_exit` without dropping the parent's `Socket`.
            unsafe { libc::close(listener) };
        }
    }

    /// Wait until every child is reaped or `limit` has passed.
    fn wait_children(&mut self, limit: Duration) {
        let deadline = deadline_after(limit);
        self.reap();
        while !self.children.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            let timeout =
                PollTimeout::try_from(left.as_millis().max(1)).unwrap_or(PollTimeout::MAX);
            let mut fds = [PollFd::new(self.sigchld.as_fd(), PollFlags::POLLIN)];
            let _ = poll(&mut fds, timeout);
            self.reap();
        }
    }

    fn shut_connections(&self, how: Direction) {
        for conn in self
            .children
            .values()
            .filter_map(|child| child.conn.as_ref())
        {
            let _ = conn.shutdown(how);
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

    fn stream(&mut self, shared: &Arc<Shared>, conn: Accepted) {
        // The parent keeps its copy until the child is reaped; the child shuts the connection down
        // when it is done, so the peer sees the close at once all the same.
        let Accepted {
            socket,
            peer,
            ticket,
            tls,
            id,
        } = conn;
        let parent_copy = socket.try_clone().ok();
        let client_peer = peer.clone();
        self.spawn(
            shared,
            Client::connection(&client_peer, id),
            parent_copy,
            Some(ticket),
            move || serve_stream(shared, &socket, peer, id, tls),
        );
    }

    fn datagram(
        &mut self,
        shared: &Arc<Shared>,
        socket: &Arc<Datagram>,
        packet: &[u8],
        from: ReplyTo,
    ) {
        if !self.spawn_per_datagram {
            return self.inline.serve(shared, socket, packet, &from);
        }
        let peer = from.address();
        self.spawn(shared, Client::datagram(&peer), None, None, || {
            serve_datagram(shared, socket, packet, &from, &mut Vec::new())
        });
    }

    /// Children's connections are shut for reading; after `drain_timeout` they are shut both ways
    /// (and counted, for the return value),
    /// and a child still running [`FORCED_CLOSE_WAIT`] later is killed (SIGKILL) and reaped.
    fn close(&mut self, drain_timeout: Duration) -> usize {
        self.closing = true;
        self.shut_connections(Direction::Read);
        self.wait_children(drain_timeout);
        let forced = self.children.len();
        if forced > 0 {
            log::warn!(
                "{}: {} request(s) still running after drain_timeout ({drain_timeout:?}): \
                 closing their connections",
                self.server,
                self.children.len()
            );
            self.shut_connections(Direction::Both);
            self.wait_children(FORCED_CLOSE_WAIT);
        }
        for (&pid, child) in &self.children {
            let (server, client) = (&self.server, child.client());
            let line = format_args!(
                "{server}: {}request from {}: child {pid} did not end; killing it",
                client.tag(),
                client.peer
            );
            log_with!(log::Level::Error, &Fields::of(server, client), line);
            let _ = kill(pid, Signal::SIGKILL);
        }
        for (pid, child) in self.children.drain() {
            let _ = waitpid(pid, None);
            if child.id.is_some() {
                self.metrics
                    .closed(CloseReason::Drain, child.started.elapsed());
            }
        }
        let _ = self.old_mask.thread_set_mask();
        forced
    }
}
