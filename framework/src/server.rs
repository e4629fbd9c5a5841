//! The server: socketserver's BaseServer with its lifecycle and names.
//!
//! The caller uses [`Server::bind`] (bind and activate), then [`Server::serve_forever`] or
//! [`Server::handle_request`], stops it through a [`Shutdown`] handle from any thread, and ends with
//! [`Server::server_close`] (also run on drop). Override behaviour through [`Hooks`]; choose where
//! requests run through the [`Strategy`](crate::Strategy) in the settings.
//!
//! The loop waits in poll(2) on the listening socket, the shutdown handle's wake-up descriptor and the
//! strategy's own descriptor (forking's SIGCHLD), so shutdown is immediate and nothing polls on a timer.
//! Every hook it calls is guarded: a panicking `verify_request` refuses that peer, a panicking
//! `handle_timeout` or `service_actions` is logged, and the loop goes on.
//!
//! A server with `[server.proxy_protocol]` also polls the connections that await their PROXY
//! header (see `proxy`): the accept path, in `server/accept.rs`, admits a connection once its peer
//! is known, so no client's header is ever waited for in the loop.
//!
//! Closing is bounded: the listener closes first (new clients are refused rather than left in the
//! backlog), then the strategy drains what is in flight within the settings' `drain_timeout` and
//! closes the rest under it (see `strategy::Dispatcher::close`).

use std::io;
use std::os::fd::{AsFd, AsRawFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use socket2::Socket;
use sockserv_plugin::{Address, HandlerFactory};

use crate::descriptors::Reserve;
use crate::heartbeat::{Heartbeat, Pulse};
use crate::limits::{Gate, Peer};
use crate::log_peer_event;
use crate::metrics::{DatagramDrop, ServerMetrics};
use crate::peer_log::Fields;
use crate::proxy::awaiting::Awaiting;
use crate::request::Shared;
use crate::strategy::{dispatcher, Dispatcher};
use crate::transport::{adopt, bind, Bound, Datagram, UnixFile};
use crate::{
    Client, DefaultHooks, Endpoint, Hooks, RequestFailure, ServerError, ServerSettings, Shutdown,
    StrategyKind,
};

mod accept;

/// How many datagrams one wake-up of `serve_forever` receives (until the socket would block) before
/// the loop looks at shutdown and its other descriptors again: a poll per datagram was a third of
/// the system calls of a UDP round trip.
const DATAGRAM_BATCH: usize = 64;

/// A bound server. Dropping it closes it (see [`Server::server_close`]).
pub struct Server {
    settings: ServerSettings,
    /// The bound socket; `None` once closed. For datagram servers, `datagram` is the one requests use.
    listener: Option<Socket>,
    /// The address actually bound (the real port when the settings said 0), as an endpoint.
    endpoint: Endpoint,
    /// The Unix socket file this server made, removed at close.
    unix_file: Option<UnixFile>,
    datagram: Option<Arc<Datagram>>,
    shared: Arc<Shared>,
    /// The strategy's dispatcher, made when serving first starts (forking checks threads then).
    dispatcher: Option<Box<dyn Dispatcher>>,
    recv_buf: Vec<u8>,
    /// The reserve descriptor for running out of descriptors at accept (see `descriptors`).
    reserve: Reserve,
    /// With `[server.proxy_protocol]`: the connections whose peer is not known yet.
    awaiting: Option<Awaiting>,
    /// For a watchdog: the heartbeats of this server's loops (see `heartbeat`).
    heartbeat: Option<Heartbeat>,
    /// The accept loop's own pulse.
    pulse: Option<Arc<Pulse>>,
    closed: bool,
}

/// What one turn of the loop saw.
enum Turn {
    Served,
    TimedOut,
    Woken,
}

/// Which of the descriptors the loop waits on are ready after one poll(2).
struct Readiness {
    /// The shutdown handle's wake-up descriptor: a shutdown request or a plain wake-up.
    woken: bool,
    /// The strategy's own descriptor (forking's SIGCHLD): it has housekeeping to do.
    strategy: bool,
    /// The listening socket: a connection to accept or a datagram to receive.
    requests: bool,
    /// The places (in `Awaiting::watched`) of the awaiting connections with bytes to read.
    awaiting: Vec<usize>,
}

impl Server {
    /// Bind (and for streams, listen on) the settings' endpoint, serving requests with `factory`.
    ///
    /// # Errors
    ///
    /// [`ServerError::Bind`] when the socket cannot be made, configured or bound (address in use,
    /// permission); [`ServerError::UnixSocketInUse`] / [`ServerError::NotASocket`] for a Unix path
    /// that is taken; [`ServerError::Serve`] when the shutdown handle cannot be made.
    pub fn bind(
        settings: ServerSettings,
        factory: Arc<dyn HandlerFactory>,
    ) -> Result<Server, ServerError> {
        let bound = bind(&settings.endpoint, &settings.socket)?;
        Server::from_bound(settings, factory, bound)
    }

    /// Serve on `socket`, handed over already bound (and, for streams, listening) — by systemd's
    /// socket activation or a predecessor's upgrade — instead of binding the settings' endpoint.
    /// The socket's options are its maker's; a Unix socket file stays theirs.
    ///
    /// # Errors
    ///
    /// [`ServerError::Bind`] when the socket's kind or address family is not the endpoint's.
    pub fn from_socket(
        settings: ServerSettings,
        factory: Arc<dyn HandlerFactory>,
        socket: Socket,
    ) -> Result<Server, ServerError> {
        let bound = adopt(&settings.endpoint, socket)?;
        Server::from_bound(settings, factory, bound)
    }

    fn from_bound(
        settings: ServerSettings,
        factory: Arc<dyn HandlerFactory>,
        bound: Bound,
    ) -> Result<Server, ServerError> {
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
        shutdown.set_drain_timeout(settings.drain_timeout);
        let metrics = ServerMetrics::for_server(&settings.name);
        metrics.set_labels("", settings.endpoint.kind(), settings.strategy.kind());
        let shared = Arc::new(Shared {
            metrics,
            name: settings.name.clone(),
            factory,
            hooks: Arc::new(DefaultHooks),
            shutdown,
            local: bound.local.clone(),
            nodelay: settings.socket.nodelay,
            gate: Gate::new(settings.limits.clone()),
        });
        let awaiting = (settings.proxy_protocol.clone())
            .filter(|_| settings.endpoint.kind().is_stream())
            .map(|proxy| Awaiting::new(&settings.name, proxy, metrics));
        Ok(Server {
            recv_buf: Vec::new(),
            reserve: Reserve::new(),
            awaiting,
            settings,
            listener: Some(bound.socket),
            endpoint: bound.endpoint,
            unix_file: bound.unix_file,
            datagram,
            shared,
            dispatcher: None,
            heartbeat: None,
            pulse: None,
            closed: false,
        })
    }

    /// Make this server's loops beat `heartbeat` (its accept loop, and the reactor's event
    /// loops), waking at least every `heartbeat.interval()` to do so. Call before serving.
    pub fn set_heartbeat(&mut self, heartbeat: Heartbeat) {
        self.pulse = Some(heartbeat.pulse(self.settings.name.clone()));
        self.heartbeat = Some(heartbeat);
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
            gate: Arc::clone(&self.shared.gate),
            metrics: self.shared.metrics,
        };
        self.shared = Arc::new(shared);
    }

    /// Name the handler in the server's metrics labels (the `handler` label is empty until
    /// then: the server knows its handler's factory, not its name). Call before serving.
    pub fn set_handler_name(&self, handler: &str) {
        let settings = &self.settings;
        (self.shared.metrics).set_labels(
            handler,
            settings.endpoint.kind(),
            settings.strategy.kind(),
        );
    }

    /// The server's counters (see [`metrics`](crate::metrics)).
    pub fn metrics(&self) -> ServerMetrics {
        self.shared.metrics
    }

    pub fn name(&self) -> &str {
        &self.settings.name
    }

    pub fn settings(&self) -> &ServerSettings {
        &self.settings
    }

    /// The Unix socket file this server made (none for other kinds, or for a socket it was
    /// handed): what to remove should the process have to stop without `server_close`.
    pub fn socket_file(&self) -> Option<&UnixFile> {
        self.unix_file.as_ref()
    }

    /// The endpoint as bound: with the real port when the settings asked for port 0.
    pub fn local_endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// The bound address, as handlers see it.
    pub fn local_address(&self) -> &Address {
        &self.shared.local
    }

    /// A handle that stops `serve_forever` from any thread.
    pub fn shutdown_handle(&self) -> Shutdown {
        self.shared.shutdown.clone()
    }

    /// Serve until shut down. Requests in flight are left to the strategy and drained by
    /// `server_close`. With a `timeout` in the settings, `handle_timeout` runs after each idle period.
    ///
    /// # Errors
    ///
    /// The strategy could not start ([`ServerError::ForkWithThreads`], [`ServerError::Strategy`])
    /// or stopped working (an event loop died), or poll(2) failed: the server cannot go on.
    pub fn serve_forever(&mut self) -> Result<(), ServerError> {
        let result = self.serve_until_shutdown();
        self.shared.shutdown.clear();
        result
    }

    fn serve_until_shutdown(&mut self) -> Result<(), ServerError> {
        while !self.shared.shutdown.is_requested() {
            if let Turn::TimedOut = self.turn(self.settings.timeout, DATAGRAM_BATCH)? {
                self.shared
                    .run_hook("handle_timeout", |hooks| hooks.handle_timeout());
            }
            self.shared
                .run_hook("service_actions", |hooks| hooks.service_actions());
        }
        Ok(())
    }

    /// Serve exactly one request, waiting at most the settings' `timeout` for it. Returns whether one
    /// was served; on time-out `handle_timeout` runs first. A shutdown request also ends the wait.
    ///
    /// # Errors
    ///
    /// As for [`Server::serve_forever`].
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
                    self.shared
                        .run_hook("handle_timeout", |hooks| hooks.handle_timeout());
                    return Ok(false);
                }
                Turn::Woken => {}
            }
        }
    }

    /// Wait for one event and act on it (on up to `batch` datagrams).
    fn turn(&mut self, timeout: Option<Duration>, batch: usize) -> Result<Turn, ServerError> {
        self.start()?;
        let ready = self.wait(timeout)?;
        if let Some(pulse) = &self.pulse {
            pulse.beat();
        }
        if ready.woken {
            self.shared.shutdown.drain();
        }
        let dispatcher = self.dispatcher.as_mut().expect("started above");
        if ready.strategy {
            dispatcher.on_ready();
        }
        if let Some(reason) = dispatcher.failure() {
            let source = io::Error::other(reason);
            return Err(self.serve_error(source));
        }
        let mut served = false;
        if ready.requests {
            // Under sync the request runs here, in the loop: busy, not wedged.
            let in_loop = self.settings.strategy.kind() == StrategyKind::Sync;
            let busy = self.pulse.clone().filter(|_| in_loop);
            busy.iter().for_each(|pulse| pulse.set_busy(true));
            let taken = self.take_requests(batch);
            busy.iter().for_each(|pulse| pulse.set_busy(false));
            served = taken?;
        }
        served |= self.take_awaiting(&ready.awaiting);
        if served {
            return Ok(Turn::Served);
        }
        Ok(
            if ready.woken || ready.strategy || ready.requests || !ready.awaiting.is_empty() {
                Turn::Woken
            } else {
                Turn::TimedOut
            },
        )
    }

    /// Make the strategy's dispatcher, once, when serving first starts (forking checks threads then).
    fn start(&mut self) -> Result<(), ServerError> {
        if self.dispatcher.is_none() {
            let listener = match (&self.listener, &self.datagram) {
                (Some(listener), None) => Some(listener.as_raw_fd()),
                _ => None,
            };
            let heartbeat = self.heartbeat.as_ref();
            self.dispatcher = Some(dispatcher(
                &self.settings,
                &self.shared,
                listener,
                heartbeat,
            )?);
        }
        Ok(())
    }

    /// poll(2) on the wake-up descriptor, the strategy's descriptor, and the socket while the strategy
    /// has room.
    fn wait(&self, timeout: Option<Duration>) -> Result<Readiness, ServerError> {
        let dispatcher = self.dispatcher.as_deref().expect("started before waiting");
        let mut fds = vec![PollFd::new(
            self.shared.shutdown.wake_fd(),
            PollFlags::POLLIN,
        )];
        let strategy_fd = dispatcher.ready_fd();
        let strategy_index = strategy_fd.map(|fd| {
            fds.push(PollFd::new(fd, PollFlags::POLLIN));
            fds.len() - 1
        });
        let listening = self.reserve.listening() && dispatcher.has_capacity();
        let listener = self.listener.as_ref().filter(|_| listening);
        let listener_index = listener.map(|socket| {
            fds.push(PollFd::new(socket.as_fd(), PollFlags::POLLIN));
            fds.len() - 1
        });
        // Connections awaiting their header are looked at while the strategy has room for them.
        let awaiting = self.awaiting.as_ref().filter(|_| dispatcher.has_capacity());
        let mut awaiting_places = Vec::new();
        for (place, fd) in awaiting.into_iter().flat_map(Awaiting::watched) {
            fds.push(PollFd::new(fd, PollFlags::POLLIN));
            awaiting_places.push((place, fds.len() - 1));
        }
        // A paused listener is looked at again when its pause is over, an awaiting connection
        // when its time is up (a millisecond after, so that it is up).
        let awaiting_due = awaiting.and_then(Awaiting::next_deadline).map(|deadline| {
            deadline.saturating_duration_since(Instant::now()) + Duration::from_millis(1)
        });
        let beat = self.heartbeat.as_ref().map(Heartbeat::interval);
        let timeout = [timeout, self.reserve.pause_left(), awaiting_due, beat]
            .into_iter()
            .flatten()
            .min();
        let timeout = timeout.map_or(PollTimeout::NONE, |t| {
            PollTimeout::try_from(t.as_millis().max(1)).unwrap_or(PollTimeout::MAX)
        });
        match poll(&mut fds, timeout) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(errno) => return Err(self.serve_error(errno.into())),
        }
        let hit = |index: Option<usize>| {
            index
                .and_then(|i| fds.get(i))
                .and_then(PollFd::revents)
                .is_some_and(|r| {
                    r.intersects(PollFlags::POLLIN | PollFlags::POLLERR | PollFlags::POLLHUP)
                })
        };
        let awaiting = (awaiting_places.iter())
            .filter(|(_, index)| hit(Some(*index)))
            .map(|(place, _)| *place);
        Ok(Readiness {
            woken: hit(Some(0)),
            strategy: hit(strategy_index),
            requests: hit(listener_index),
            awaiting: awaiting.collect(),
        })
    }

    /// Accept a connection or receive a batch of datagrams, verify each, and hand it to the
    /// strategy. False when the only connection taken awaits its PROXY header.
    fn take_requests(&mut self, batch: usize) -> Result<bool, ServerError> {
        let Some(socket) = self.datagram.clone() else {
            return self.take_connection();
        };
        for _ in 0..batch {
            if !self.take_datagram(&socket)? || self.shared.shutdown.is_requested() {
                break;
            }
        }
        Ok(true)
    }

    /// Receive one datagram and hand it to the strategy; false when there was none to receive.
    fn take_datagram(&mut self, socket: &Arc<Datagram>) -> Result<bool, ServerError> {
        let limit = self.settings.max_packet_size;
        self.recv_buf.resize(limit + 1, 0);
        let (len, from) = match socket.recv_from(&mut self.recv_buf) {
            Ok(received) => received,
            Err(err) => return self.accept_failed(err).map(|()| false),
        };
        let peer = from.address();
        let client = Client::datagram(&peer);
        let metrics = self.shared.metrics;
        metrics.datagram_received(len.min(limit));
        if len > limit {
            metrics.datagram_dropped(DatagramDrop::Oversized);
            self.shared
                .report(client, &RequestFailure::Oversized { limit });
            return Ok(true);
        }
        let server = &self.settings.name;
        if let Err(refusal) = self
            .shared
            .gate
            .admit_datagram(Peer::of(&peer, None), Instant::now())
        {
            let drop = DatagramDrop::from(refusal);
            metrics.datagram_dropped(drop);
            log_peer_event!(
                &Fields::of(server, client).because(drop.name()),
                format_args!("{server}: refused a datagram from {peer}: {refusal}"),
            );
            return Ok(true);
        }
        if !self.shared.verify(client) {
            let drop = DatagramDrop::VerifyRequest;
            metrics.datagram_dropped(drop);
            log_peer_event!(
                &Fields::of(server, client).because(drop.name()),
                format_args!("{server}: refused a datagram from {peer} (verify_request)"),
            );
            return Ok(true);
        }
        let dispatcher = self.dispatcher.as_mut().expect("started before taking");
        dispatcher.datagram(&self.shared, socket, &self.recv_buf[..len], from);
        Ok(true)
    }

    /// accept/recv failed: "nothing there after all" and per-connection errors (a connection reset
    /// while it waited in the backlog) are not fatal: logged, and the loop goes on. Running out of
    /// descriptors is handled before this (see `descriptors`).
    fn accept_failed(&self, err: io::Error) -> Result<(), ServerError> {
        match err.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => {}
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

    /// socketserver's `server_close`: close the listener, drain the requests in flight within the
    /// settings' `drain_timeout` (then close them), and remove the Unix socket file. Dropping the
    /// server does the same. Returns how many requests were still running at the end of the
    /// drain and were closed under their handlers: 0 for a clean drain.
    pub fn server_close(mut self) -> usize {
        self.close()
    }

    fn close(&mut self) -> usize {
        if std::mem::replace(&mut self.closed, true) {
            return 0;
        }
        if self.datagram.is_none() {
            // New clients are refused from now on, not left waiting in the backlog, nor for
            // their header.
            self.listener = None;
        }
        self.shared.shutdown.set_closing();
        if let Some(awaiting) = self.awaiting.as_mut() {
            awaiting.clear();
        }
        let mut forced = usize::from(self.shared.shutdown.forced());
        if let Some(dispatcher) = self.dispatcher.as_mut() {
            forced += dispatcher.close(self.settings.drain_timeout);
        }
        if let Some(file) = &self.unix_file {
            file.remove();
        }
        forced
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.close();
    }
}
