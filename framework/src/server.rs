//! The server: socketserver's BaseServer with its lifecycle and names.
//!
//! The caller uses [`Server::bind`] (bind and activate), then [`Server::serve_forever`] or
//! [`Server::handle_request`], stops it through a [`Shutdown`] handle from any thread, and ends with
//! [`Server::server_close`] (also run on drop). Override behaviour through [`Hooks`]; choose where
//! requests run through the [`Strategy`](crate::Strategy) in the settings.
//!
//! The loop waits in poll(2) on the listening socket, the shutdown handle's wake-up descriptor and the
//! strategy's own descriptor (forking's SIGCHLD), so shutdown is immediate and nothing polls on a timer.

use std::io;
use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use sockserv_plugin::{Address, HandlerFactory};

use crate::request::{serve_datagram, Shared};
use crate::strategy::{dispatcher, Dispatcher};
use crate::transport::{bind, to_address, Bound, Datagram};
use crate::{
    DefaultHooks, Endpoint, Hooks, RequestFailure, ServerError, ServerSettings, Shutdown, Strategy,
};

/// How many datagrams one wake-up of `serve_forever` receives (until the socket would block) before
/// the loop looks at shutdown and its other descriptors again: a poll per datagram was a third of
/// the system calls of a UDP round trip.
const DATAGRAM_BATCH: usize = 64;

/// How long the loop pauses after accept fails for lack of descriptors, so that a full fd table does
/// not turn the loop into a busy spin while connections wait in the backlog.
const OUT_OF_FDS_PAUSE: Duration = Duration::from_millis(10);

/// A bound server. Dropping it closes it (see [`Server::server_close`]).
pub struct Server {
    settings: ServerSettings,
    bound: Bound,
    datagram: Option<Arc<Datagram>>,
    shared: Arc<Shared>,
    dispatcher: Option<Box<dyn Dispatcher>>,
    recv_buf: Vec<u8>,
    /// The reply of a datagram answered in this thread, reused from one datagram to the next.
    reply_buf: Vec<u8>,
    closed: bool,
}

/// What one turn of the loop saw.
enum Turn {
    Served,
    TimedOut,
    Woken,
}

impl Server {
    /// Bind (and for streams, listen on) the settings' endpoint, serving requests with `factory`.
    pub fn bind(
        settings: ServerSettings,
        factory: Arc<dyn HandlerFactory>,
    ) -> Result<Server, ServerError> {
        let bound = bind(&settings.endpoint, &settings.socket)?;
        let datagram = if settings.endpoint.kind().is_stream() {
            None
        } else {
            let datagram = Datagram::from_socket(&bound.socket, settings.endpoint.kind());
            Some(Arc::new(datagram.map_err(|source| ServerError::Bind {
                endpoint: settings.endpoint.clone(),
                step: "prepare",
                source,
            })?))
        };
        let shutdown = Shutdown::new().map_err(|source| ServerError::Serve {
            server: settings.name.clone(),
            source,
        })?;
        let shared = Arc::new(Shared {
            name: settings.name.clone(),
            factory,
            hooks: Arc::new(DefaultHooks),
            shutdown,
            local: bound.local.clone(),
            nodelay: settings.socket.nodelay,
        });
        Ok(Server {
            recv_buf: Vec::new(),
            reply_buf: Vec::new(),
            settings,
            bound,
            datagram,
            shared,
            dispatcher: None,
            closed: false,
        })
    }

    /// Replace the default hooks (accept everyone, log failures). Call before serving.
    pub fn set_hooks(&mut self, hooks: Arc<dyn Hooks>) {
        let shared = Shared {
            name: self.shared.name.clone(),
            factory: Arc::clone(&self.shared.factory),
            hooks,
            shutdown: self.shared.shutdown.clone(),
            local: self.shared.local.clone(),
            nodelay: self.shared.nodelay,
        };
        self.shared = Arc::new(shared);
    }

    pub fn name(&self) -> &str {
        &self.settings.name
    }

    pub fn settings(&self) -> &ServerSettings {
        &self.settings
    }

    /// The endpoint as bound: with the real port when the settings asked for port 0.
    pub fn local_endpoint(&self) -> &Endpoint {
        &self.bound.endpoint
    }

    /// The bound address, as handlers see it.
    pub fn local_address(&self) -> &Address {
        &self.bound.local
    }

    /// A handle that stops `serve_forever` from any thread.
    pub fn shutdown_handle(&self) -> Shutdown {
        self.shared.shutdown.clone()
    }

    /// Serve until shut down. Requests in flight are left to the strategy and drained by
    /// `server_close`. With a `timeout` in the settings, `handle_timeout` runs after each idle period.
    pub fn serve_forever(&mut self) -> Result<(), ServerError> {
        let result = self.serve_until_shutdown();
        self.shared.shutdown.clear();
        result
    }

    fn serve_until_shutdown(&mut self) -> Result<(), ServerError> {
        while !self.shared.shutdown.is_requested() {
            if let Turn::TimedOut = self.turn(self.settings.timeout, DATAGRAM_BATCH)? {
                self.shared.hooks.handle_timeout();
            }
            self.shared.hooks.service_actions();
        }
        Ok(())
    }

    /// Serve exactly one request, waiting at most the settings' `timeout` for it. Returns whether one
    /// was served; on time-out `handle_timeout` runs first. A shutdown request also ends the wait.
    pub fn handle_request(&mut self) -> Result<bool, ServerError> {
        let deadline = self.settings.timeout.map(|t| Instant::now() + t);
        loop {
            if self.shared.shutdown.is_requested() {
                return Ok(false);
            }
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            match self.turn(left, 1)? {
                Turn::Served => return Ok(true),
                Turn::TimedOut => {
                    self.shared.hooks.handle_timeout();
                    return Ok(false);
                }
                Turn::Woken => {}
            }
        }
    }

    /// Wait for one event and act on it (on up to `batch` datagrams).
    fn turn(&mut self, timeout: Option<Duration>, batch: usize) -> Result<Turn, ServerError> {
        let (woken, ready, readable) = self.wait(timeout)?;
        if woken {
            self.shared.shutdown.drain();
        }
        if ready {
            self.dispatcher_mut()?.on_ready();
        }
        if readable {
            self.take_request(batch)?;
            return Ok(Turn::Served);
        }
        Ok(if woken || ready {
            Turn::Woken
        } else {
            Turn::TimedOut
        })
    }

    /// poll(2) on the wake-up descriptor, the strategy's descriptor, and the socket while the strategy
    /// has room. Returns which of the three are readable.
    fn wait(&mut self, timeout: Option<Duration>) -> Result<(bool, bool, bool), ServerError> {
        self.dispatcher_mut()?;
        let dispatcher = self.dispatcher.as_deref().expect("dispatcher made above");
        let listen = dispatcher.has_capacity();
        let mut fds = vec![PollFd::new(
            self.shared.shutdown.wake_fd(),
            PollFlags::POLLIN,
        )];
        let ready_fd = dispatcher.ready_fd();
        fds.extend(ready_fd.map(|fd| PollFd::new(fd, PollFlags::POLLIN)));
        if listen {
            fds.push(PollFd::new(self.bound.socket.as_fd(), PollFlags::POLLIN));
        }
        let timeout = timeout.map_or(PollTimeout::NONE, |t| {
            PollTimeout::try_from(t.as_millis().max(1)).unwrap_or(PollTimeout::MAX)
        });
        match poll(&mut fds, timeout) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(errno) => return Err(self.serve_error(errno.into())),
        }
        let hit = |fd: Option<&PollFd>| {
            fd.and_then(PollFd::revents).is_some_and(|r| {
                r.intersects(PollFlags::POLLIN | PollFlags::POLLERR | PollFlags::POLLHUP)
            })
        };
        let ready_index = ready_fd.map(|_| 1);
        let listen_index = listen.then(|| fds.len() - 1);
        Ok((
            hit(fds.first()),
            hit(ready_index.and_then(|i| fds.get(i))),
            hit(listen_index.and_then(|i| fds.get(i))),
        ))
    }

    /// The strategy's dispatcher, made when serving first starts (forking checks threads then).
    fn dispatcher_mut(&mut self) -> Result<&mut Box<dyn Dispatcher>, ServerError> {
        if self.dispatcher.is_none() {
            self.dispatcher = Some(dispatcher(self.settings.strategy, &self.shared)?);
        }
        Ok(self.dispatcher.as_mut().expect("dispatcher set above"))
    }

    /// Accept a connection or receive a datagram, verify it, and hand it to the strategy.
    fn take_request(&mut self, batch: usize) -> Result<(), ServerError> {
        let Some(socket) = self.datagram.clone() else {
            return self.take_connection();
        };
        for _ in 0..batch {
            if !self.take_datagram(&socket)? || self.shared.shutdown.is_requested() {
                break;
            }
        }
        Ok(())
    }

    fn take_connection(&mut self) -> Result<(), ServerError> {
        let (conn, addr) = match self.bound.socket.accept() {
            Ok(accepted) => accepted,
            Err(err) => return self.accept_failed(err),
        };
        let peer = to_address(&addr);
        if !self.shared.hooks.verify_request(&peer) {
            log::info!("{}: refused {peer} (verify_request)", self.settings.name);
            return Ok(());
        }
        if let Err(err) = conn.set_nonblocking(false) {
            log::warn!(
                "{}: {peer}: cannot make the connection blocking: {err}",
                self.settings.name
            );
            return Ok(());
        }
        let shared = Arc::clone(&self.shared);
        self.dispatcher_mut()?.stream(&shared, conn, peer);
        Ok(())
    }

    /// Receive and serve one datagram; false when there was none to receive.
    fn take_datagram(&mut self, socket: &Arc<Datagram>) -> Result<bool, ServerError> {
        let limit = self.settings.max_packet_size;
        self.recv_buf.resize(limit + 1, 0);
        let (len, from) = match socket.recv_from(&mut self.recv_buf) {
            Ok(received) => received,
            Err(err) => return self.accept_failed(err).map(|()| false),
        };
        let peer = from.address();
        if len > limit {
            let failure = RequestFailure::Oversized { limit };
            self.shared
                .hooks
                .handle_error(&self.settings.name, &peer, &failure);
            return Ok(true);
        }
        if !self.shared.hooks.verify_request(&peer) {
            log::info!(
                "{}: refused a datagram from {peer} (verify_request)",
                self.settings.name
            );
            return Ok(true);
        }
        if self.datagrams_inline() {
            let packet = &self.recv_buf[..len];
            serve_datagram(&self.shared, socket, packet, &from, &mut self.reply_buf);
            return Ok(true);
        }
        let packet = self.recv_buf[..len].to_vec();
        let shared = Arc::clone(&self.shared);
        self.dispatcher_mut()?
            .datagram(&shared, socket, packet, from);
        Ok(true)
    }

    /// Whether datagrams are answered in this thread rather than handed to the strategy: always
    /// under sync and the reactor, and under threading and forking unless `spawn_per_datagram` asks
    /// for socketserver's thread or process per datagram. The pool hands them to its workers.
    fn datagrams_inline(&self) -> bool {
        match self.settings.strategy {
            Strategy::Sync | Strategy::Reactor { .. } => true,
            Strategy::Threading { .. } | Strategy::Forking { .. } => {
                !self.settings.spawn_per_datagram
            }
            Strategy::Pool { .. } => false,
        }
    }

    /// accept/recv failed: "nothing there after all" and per-connection errors are not fatal; a full
    /// descriptor table pauses briefly; anything else is logged and the loop goes on.
    fn accept_failed(&self, err: io::Error) -> Result<(), ServerError> {
        match err.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => {}
            _ if matches!(err.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) => {
                log::error!("{}: out of file descriptors: {err}", self.settings.name);
                std::thread::sleep(OUT_OF_FDS_PAUSE);
            }
            _ => log::warn!("{}: accept failed: {err}", self.settings.name),
        }
        Ok(())
    }

    fn serve_error(&self, source: io::Error) -> ServerError {
        ServerError::Serve {
            server: self.settings.name.clone(),
            source,
        }
    }

    /// socketserver's `server_close`: drain the requests in flight, close the socket and remove the
    /// Unix socket file. Dropping the server does the same.
    pub fn server_close(mut self) {
        self.close();
    }

    /// Give up this process's copy of the server without draining or removing the Unix socket file:
    /// for a process that has handed the server to a child.
    pub(crate) fn release(mut self) {
        self.closed = true;
    }

    fn close(&mut self) {
        if std::mem::replace(&mut self.closed, true) {
            return;
        }
        if let Some(dispatcher) = self.dispatcher.as_mut() {
            dispatcher.close();
        }
        if let Some(file) = &self.bound.unix_file {
            file.remove();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.close();
    }
}
