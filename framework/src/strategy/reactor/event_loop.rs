//! One event loop thread: a mio `Poll` over its connections, an inbox for new connections, and a
//! queue of sessions to wake, both signalled through the loop's mio `Waker`; and its [`Timers`]
//! (each connection's next time limit or session wake), which set how long `poll` may sleep.

use std::collections::VecDeque;
use std::io;
use std::os::fd::AsRawFd;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};
use socket2::Socket;
use sockserv_plugin::{Address, Session, SessionInfo, SessionWaker};

use super::connection::{Connection, Next};
use super::handshake::Handshake;
use super::slots::Slots;
use super::timers::Timers;
use crate::deadline::Deadlines;
use crate::heartbeat::Pulse;
use crate::limits::Ticket;
use crate::log_with;
use crate::memory;
use crate::metrics::{ConnId, Refusal};
use crate::peer_log::Fields;
use crate::request::{guarded, panic_message, Shared};
use crate::{Client, RequestFailure, Shutdown};

mod handshakes;

/// The waker's token; connections use their slot index + 1.
const WAKER: Token = Token(0);
/// How many readiness events one `poll` returns at most.
const EVENTS: usize = 1024;
/// The read buffer shared by a loop's connections.
const READ_BUFFER: usize = 64 * 1024;
/// How long a closing connection waits for its peer's end of stream (see `Next::Linger`).
const LINGER_TIME: Duration = Duration::from_secs(2);

/// A connection handed to a loop, adopted on its next wake-up.
pub(super) struct NewConnection {
    pub shared: Arc<Shared>,
    pub socket: Socket,
    pub peer: Address,
    /// Its place in the server's limits, kept in its slot until it closes.
    pub ticket: Ticket,
    /// On a TLS server: the configuration its handshake uses.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// The connection's id.
    pub id: ConnId,
}

impl NewConnection {
    /// Close it unserved: counted as refused (`dispatch`), and logged with `why`.
    fn refuse(&self, why: &str) {
        self.shared.metrics.refused(Refusal::Dispatch);
        let (server, client) = (&self.shared.name, Client::connection(&self.peer, self.id));
        let line = format_args!("{server}: {}{}: {why}", client.tag(), client.peer);
        log_with!(log::Level::Warn, &Fields::of(server, client), line);
    }
}

/// A connection whose session is about to be made.
struct Opening {
    socket: Socket,
    shared: Arc<Shared>,
    peer: Address,
    /// After a TLS handshake: its state, and the bytes it moved in and out.
    tls: Option<(rustls::ServerConnection, (u64, u64))>,
    /// Its socket is registered with the poll already (it was, for its handshake).
    registered: bool,
    /// The connection's id.
    id: ConnId,
}

/// What other threads share with a loop.
struct Mailbox {
    waker: Waker,
    stop: AtomicBool,
    /// True until the loop's thread ends (stopped, or failed): an ended loop adopts nothing. It
    /// changes only with `inbox` locked, so no connection is left in the inbox of an ended loop.
    alive: AtomicBool,
    /// New connections, adopted on the next wake-up.
    inbox: Mutex<Vec<NewConnection>>,
    /// Sessions to wake: (slot, generation).
    wakes: Mutex<Vec<(usize, u64)>>,
    /// A drain asked for: end each connection's input and let its output go out until this
    /// deadline, then close what is left and end (see `EventLoop::begin_drain`).
    drain: Mutex<Option<Instant>>,
    /// Signalled (with `inbox` locked) when `alive` turns false, for a bounded wait on the end.
    ended: Condvar,
    /// Connections still open at the end of a drain, closed under their sessions.
    forced: std::sync::atomic::AtomicUsize,
    /// Tests make the loop panic with it, as a bug in the loop's own code would.
    #[cfg(test)]
    crash: AtomicBool,
}

impl Mailbox {
    fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
        mutex
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Held by a loop's thread while it runs: when the run ends, however it ends (stopped, a poll
/// failure, a panic in the loop's own code), the loop is marked ended and the connections still in
/// its inbox are closed rather than left waiting for a loop that will never adopt them. A loop that
/// ends without being asked wakes the serving loop, which then sees the dispatcher's `failure`.
struct Running {
    mailbox: Arc<Mailbox>,
    server: Shutdown,
}

impl Drop for Running {
    fn drop(&mut self) {
        let mut inbox = Mailbox::lock(&self.mailbox.inbox);
        self.mailbox.alive.store(false, Ordering::SeqCst);
        self.mailbox.ended.notify_all();
        for orphan in inbox.drain(..) {
            orphan.refuse("closed unserved, its event loop has ended");
        }
        if !self.mailbox.stop.load(Ordering::SeqCst) {
            self.server.wake();
        }
    }
}

/// The serving thread's handle on a loop and its thread.
pub(super) struct LoopHandle {
    mailbox: Arc<Mailbox>,
    thread: JoinHandle<()>,
}

impl LoopHandle {
    /// Give the loop a new connection; it comes back if the loop has ended.
    pub fn adopt(&self, connection: NewConnection) -> Result<(), NewConnection> {
        let mut inbox = Mailbox::lock(&self.mailbox.inbox);
        if !self.mailbox.alive.load(Ordering::SeqCst) {
            return Err(connection);
        }
        inbox.push(connection);
        drop(inbox);
        let _ = self.mailbox.waker.wake();
        Ok(())
    }

    /// Whether the loop's thread is still running (an ended loop never runs again).
    pub fn is_alive(&self) -> bool {
        self.mailbox.alive.load(Ordering::SeqCst)
    }

    /// Ask the loop to close its connections and end.
    pub fn stop(&self) {
        self.mailbox.stop.store(true, Ordering::SeqCst);
        let _ = self.mailbox.waker.wake();
    }

    /// Ask the loop to drain: every connection's input ends at once (its session sees end of
    /// stream) and its output goes out until `deadline`; then the loop closes what is left and
    /// ends.
    pub fn drain(&self, deadline: Instant) {
        *Mailbox::lock(&self.mailbox.drain) = Some(deadline);
        let _ = self.mailbox.waker.wake();
    }

    /// Connections that were still open at the end of the loop's drain.
    pub fn forced(&self) -> usize {
        self.mailbox.forced.load(Ordering::SeqCst)
    }

    /// Wait until the loop's thread has ended or `deadline` has passed; whether it ended.
    pub fn wait_ended(&self, deadline: Instant) -> bool {
        let mut inbox = Mailbox::lock(&self.mailbox.inbox);
        while self.mailbox.alive.load(Ordering::SeqCst) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            inbox = match self.mailbox.ended.wait_timeout(inbox, left) {
                Ok((inbox, _)) => inbox,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
        true
    }

    /// Wait for the loop's thread to end.
    ///
    /// # Errors
    /// The thread panicked: a line to log, with the loop's name and the panic's message.
    pub fn join(self) -> Result<(), String> {
        let name = self
            .thread
            .thread()
            .name()
            .unwrap_or("event loop")
            .to_string();
        self.thread
            .join()
            .map_err(|payload| format!("{name}: panicked: {}", panic_message(&*payload)))
    }

    /// Make the loop panic on its next turn.
    #[cfg(test)]
    pub fn crash(&self) {
        self.mailbox.crash.store(true, Ordering::SeqCst);
        let _ = self.mailbox.waker.wake();
    }

    /// Whether the loop runs, and whether its thread has let go of everything it held.
    #[cfg(test)]
    pub fn watch(&self) -> LoopWatch {
        LoopWatch(Arc::clone(&self.mailbox))
    }
}

/// A test's view of a loop that outlives its handle.
#[cfg(test)]
pub(super) struct LoopWatch(Arc<Mailbox>);

#[cfg(test)]
impl LoopWatch {
    pub fn is_alive(&self) -> bool {
        self.0.alive.load(Ordering::SeqCst)
    }

    /// Nothing but this watch holds the loop's mailbox: its thread (and handle) are gone.
    pub fn thread_gone(&self) -> bool {
        Arc::strong_count(&self.0) == 1
    }
}

/// Start loop `index` of server `name`, in a thread named `{name}-loop-{index}`; `server` is the
/// server's shutdown handle, to wake its serving loop should this loop end unasked.
///
/// # Errors
/// The poll instance, its waker or the thread cannot be made (the descriptor or thread limit).
pub(super) fn spawn_loop(
    name: &str,
    index: usize,
    server: Shutdown,
    pulse: Option<(Arc<Pulse>, Duration)>,
) -> io::Result<LoopHandle> {
    let poll = Poll::new()?;
    let waker = Waker::new(poll.registry(), WAKER)?;
    let mailbox = Arc::new(Mailbox {
        waker,
        stop: AtomicBool::new(false),
        alive: AtomicBool::new(true),
        inbox: Mutex::default(),
        wakes: Mutex::default(),
        drain: Mutex::default(),
        ended: Condvar::new(),
        forced: std::sync::atomic::AtomicUsize::new(0),
        #[cfg(test)]
        crash: AtomicBool::new(false),
    });
    let name = format!("{name}-loop-{index}");
    let event_loop = EventLoop {
        name: name.clone(),
        poll,
        mailbox: Arc::clone(&mailbox),
        slots: Slots::default(),
        lingering: VecDeque::new(),
        timers: Timers::default(),
        draining: None,
        buffer: vec![0; READ_BUFFER],
        pulse,
    };
    let running = Running {
        mailbox: Arc::clone(&mailbox),
        server,
    };
    let thread = thread::Builder::new().name(name).spawn(move || {
        let _running = running;
        event_loop.run();
    })?;
    Ok(LoopHandle { mailbox, thread })
}

/// A connection in its slot (see `slots`: the slot's generation tells it from an earlier tenant),
/// with what the loop keeps beside it.
struct Slot {
    connection: Option<Connection>,
    /// A TLS connection whose handshake is not done: it has no session yet (see `handshake`).
    handshake: Option<Box<Handshake>>,
    /// The interest registered with the poll, so an unchanged one costs no system call.
    interest: Option<Interest>,
    /// Lingering before close, with a deadline queued.
    lingers: bool,
    /// The session's waker once it has a session, shared with it: its flag says a wake is queued.
    wake: Option<Arc<Wake>>,
    /// The connection's place in the server's limits, given back when it is removed.
    ticket: Option<Ticket>,
}

struct EventLoop {
    /// The thread's name, `{server}-loop-{index}`, for the log.
    name: String,
    poll: Poll,
    mailbox: Arc<Mailbox>,
    slots: Slots<Slot>,
    /// Lingering connections' deadlines, oldest first (all lingers last the same time, so the
    /// queue stays in deadline order): (deadline, slot, generation).
    lingering: VecDeque<(Instant, usize, u64)>,
    /// The connections' next times: a time limit, or a wake their session asked for.
    timers: Timers,
    /// Draining until this deadline (see [`EventLoop::begin_drain`]).
    draining: Option<Instant>,
    /// The read buffer the loop's connections share.
    buffer: Vec<u8>,
    /// For a watchdog: the loop's heartbeat, and how often it beats at least.
    pulse: Option<(Arc<Pulse>, Duration)>,
}

/// Wakes one session: queue its slot and wake its loop, unless a wake is already queued.
struct Wake {
    mailbox: Arc<Mailbox>,
    slot: usize,
    generation: u64,
    /// Set while a wake is queued for this slot, so wakes coalesce.
    pending: AtomicBool,
}

impl SessionWaker for Wake {
    fn wake(&self) {
        if !self.pending.swap(true, Ordering::AcqRel) {
            Mailbox::lock(&self.mailbox.wakes).push((self.slot, self.generation));
            let _ = self.mailbox.waker.wake();
        }
    }
}

impl EventLoop {
    /// Serve until stopped (or poll fails), then close every connection, telling its session. A
    /// panic here is a bug in the loop's own code (a session's is caught where it is called): the
    /// connections are still closed that way before the thread ends with the panic.
    fn run(mut self) {
        let served = catch_unwind(AssertUnwindSafe(|| self.serve()));
        self.close_all();
        if let Err(payload) = served {
            resume_unwind(payload);
        }
    }

    fn serve(&mut self) {
        let mut events = Events::with_capacity(EVENTS);
        loop {
            let timeout = self.poll_timeout();
            let beat = self.pulse.as_ref().map(|(_, every)| *every);
            let timeout = timeout.into_iter().chain(beat).min();
            if let Err(err) = self.poll.poll(&mut events, timeout) {
                if err.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                log::error!("{}: poll failed, the loop ends: {err}", self.name);
                return;
            }
            if let Some((pulse, _)) = &self.pulse {
                pulse.beat();
            }
            for event in events.iter() {
                match event.token() {
                    WAKER => {}
                    Token(token) => {
                        let closed = event.is_read_closed() || event.is_error();
                        let (read, write) = (event.is_readable() || closed, event.is_writable());
                        self.on_ready(token - 1, (read, closed), write);
                    }
                }
            }
            if self.mailbox.stop.load(Ordering::SeqCst) || self.drained() {
                return;
            }
            #[cfg(test)]
            if self.mailbox.crash.load(Ordering::SeqCst) {
                panic!("crashed on purpose");
            }
            self.adopt_new();
            self.run_wakes();
            self.end_lingers();
            self.run_timers();
            memory::give_back_if_due();
        }
    }

    /// How long poll may sleep: until the oldest linger's deadline or the next timer, or for ever.
    fn poll_timeout(&self) -> Option<Duration> {
        let linger = self.lingering.front().map(|(at, ..)| *at);
        let next = (linger.into_iter())
            .chain(self.timers.next())
            .chain(self.draining)
            .min()?;
        Some(next.saturating_duration_since(Instant::now()))
    }

    /// Whether a drain is over: begun now if newly asked for; over once no connection is left or
    /// its deadline has passed (what is left is then closed by `close_all`, and logged).
    fn drained(&mut self) -> bool {
        let asked = *Mailbox::lock(&self.mailbox.drain);
        if let (Some(deadline), None) = (asked, self.draining) {
            self.begin_drain(deadline);
        }
        let Some(deadline) = self.draining else {
            return false;
        };
        let open = (self.slots.tenants())
            .filter(|s| s.connection.is_some())
            .count();
        if open > 0 && Instant::now() >= deadline {
            self.mailbox.forced.store(open, Ordering::SeqCst);
            log::warn!(
                "{}: {open} connection(s) still open at the end of the drain: closing them",
                self.name
            );
        }
        open == 0 || Instant::now() >= deadline
    }

    /// The drain begins: every connection's input ends now (shut down for reading, and its session
    /// told at once: an edge-triggered poll would not say so), as the blocking strategies' do, and
    /// its output keeps going out until the deadline, so a reply in flight is finished.
    fn begin_drain(&mut self, deadline: Instant) {
        self.draining = Some(deadline);
        for slot in self.slots.occupied() {
            if self.slots.get(slot).is_some_and(|s| s.handshake.is_some()) {
                // No session yet: nothing in flight to finish.
                self.remove(slot);
                continue;
            }
            let Some(connection) = self.slots.get(slot).and_then(|s| s.connection.as_ref()) else {
                continue;
            };
            let _ = connection.socket.shutdown(std::net::Shutdown::Read);
            self.on_ready(slot, (true, true), false);
            // A session holding input back (paused by a rate) is woken too: it can see the server
            // is stopping and let go rather than use up the drain.
            if let Some(connection) = self.slots.get_mut(slot).and_then(|s| s.connection.as_mut()) {
                let next = connection.on_wake(&mut self.buffer);
                self.apply(slot, next);
            }
        }
    }

    /// Queue `slot`'s next time, if it has one (see [`Timers::queue`]).
    fn queue_timer(&mut self, slot: usize) {
        let (Some(generation), Some(entry)) = (self.slots.generation(slot), self.slots.get(slot))
        else {
            return;
        };
        let handshake = entry.handshake.as_ref().map(|handshake| handshake.deadline);
        if let Some(at) = (entry.connection.as_ref().and_then(Connection::next_time)).or(handshake)
        {
            self.timers.queue((slot, generation), at);
        }
    }

    /// Run the timers that have come due: close the connections past a time limit, wake the
    /// sessions whose time has come, and queue again the entries of connections whose time has
    /// moved on. The due entries are taken before any is run, so a session that asks to be woken
    /// again at once is woken on the next turn, after `poll` (it cannot starve the other
    /// connections).
    fn run_timers(&mut self) {
        let now = Instant::now();
        for (slot, generation) in self.timers.take_due(now) {
            let Some(entry) = self.slots.get_current(slot, generation) else {
                continue;
            };
            if entry.handshake.is_some() {
                self.handshake_timer(slot, now);
                continue;
            }
            let Some(connection) = entry.connection.as_mut() else {
                continue;
            };
            if let Some(expiry) = connection.expired(now) {
                connection.expire(expiry);
                self.remove(slot);
                continue;
            }
            match connection.on_timer(now, &mut self.buffer) {
                Some(next) => self.apply(slot, next),
                None => self.queue_timer(slot),
            }
        }
    }

    /// Close the lingering connections whose time is up.
    fn end_lingers(&mut self) {
        let now = Instant::now();
        while let Some(&(deadline, slot, generation)) = self.lingering.front() {
            if deadline > now {
                break;
            }
            self.lingering.pop_front();
            if self
                .slots
                .get_current(slot, generation)
                .is_some_and(|entry| entry.lingers)
            {
                self.remove(slot);
            }
        }
        if memory::is_sparse(self.lingering.len(), self.lingering.capacity()) {
            self.lingering.shrink_to(self.lingering.len() * 2);
        }
    }

    /// `read`: (readable, the peer closed its side).
    fn on_ready(&mut self, slot: usize, read: (bool, bool), write: bool) {
        let (read, peer_closed) = read;
        if self.slots.get(slot).is_some_and(|s| s.handshake.is_some()) {
            return self.step_handshake(slot);
        }
        let Some(connection) = self.slots.get_mut(slot).and_then(|s| s.connection.as_mut()) else {
            return;
        };
        let buffer = &mut self.buffer;
        let mut next = if write {
            connection.on_writable(buffer)
        } else {
            Next::Watch {
                read: true,
                write: false,
            }
        };
        if read && next != Next::Close {
            next = connection.on_readable(buffer, peer_closed);
        }
        self.apply(slot, next);
    }

    /// Take the inbox's connections: make each one's session and register it.
    fn adopt_new(&mut self) {
        let adopted = std::mem::take(&mut *Mailbox::lock(&self.mailbox.inbox));
        for connection in adopted {
            self.adopt(connection);
        }
    }

    fn adopt(&mut self, connection: NewConnection) {
        if let Err(err) = connection.socket.set_nonblocking(true) {
            return connection.refuse(&err.to_string());
        }
        let NewConnection {
            shared,
            socket,
            peer,
            ticket,
            tls,
            id,
        } = connection;
        let (slot, _) = self.slots.claim();
        let entry = Slot {
            connection: None,
            handshake: None,
            interest: None,
            lingers: false,
            wake: None,
            ticket: Some(ticket),
        };
        self.slots.fill(slot, entry);
        let opening = Opening {
            socket,
            shared,
            peer,
            tls: None,
            registered: false,
            id,
        };
        match tls {
            None => self.open(slot, opening),
            Some(config) => self.begin_handshake(slot, opening, config),
        }
    }

    /// Make the connection's session and start serving it (after its handshake, on TLS).
    fn open(&mut self, slot: usize, opening: Opening) {
        let Opening {
            socket,
            shared,
            peer,
            tls,
            registered,
            id,
        } = opening;
        let Some(generation) = self.slots.generation(slot) else {
            return;
        };
        let wake = Arc::new(Wake {
            mailbox: Arc::clone(&self.mailbox),
            slot,
            generation,
            pending: AtomicBool::new(false),
        });
        let identity = tls.as_ref().map(|(tls, _)| crate::tls::identity(tls));
        let info = SessionInfo {
            peer: &peer,
            local: &shared.local,
            server: &*shared,
            waker: Arc::clone(&wake) as Arc<dyn SessionWaker>,
            tls: identity.as_ref(),
        };
        let fd = socket.as_raw_fd();
        let Some(session) = open_session(&shared, &info, id) else {
            if registered {
                let _ = self.poll.registry().deregister(&mut SourceFd(&fd));
            }
            return self.release(slot);
        };
        let registered = if registered {
            Ok(())
        } else {
            let token = Token(slot + 1);
            let registry = self.poll.registry();
            registry.register(&mut SourceFd(&fd), token, Interest::READABLE)
        };
        let deadlines = Deadlines::of(shared.gate.limits());
        let mut connection = Connection::new(socket, session, shared, peer, id);
        if let Some((tls, moved)) = tls {
            connection = connection.with_tls(tls, moved);
        }
        if let Some(deadlines) = deadlines {
            connection.watch(deadlines);
        }
        if let Err(err) = registered {
            log::warn!("{}: cannot watch a connection: {err}", self.name);
            connection.close();
            return self.release(slot);
        }
        let next = connection.on_open(&mut self.buffer);
        let Some(entry) = self.slots.get_mut(slot) else {
            return connection.close();
        };
        entry.connection = Some(connection);
        entry.wake = Some(wake);
        if entry.interest.is_none() {
            entry.interest = Some(Interest::READABLE);
        }
        self.apply(slot, next);
    }

    /// Give a slot that holds nothing back (and its place in the limits).
    fn release(&mut self, slot: usize) {
        drop(self.take_slot(slot));
    }

    /// Free `slot`, taking out what it held; the timers forget what the slot table no longer has.
    fn take_slot(&mut self, slot: usize) -> Option<Slot> {
        let entry = self.slots.release(slot);
        self.timers.truncate(self.slots.len());
        entry
    }

    /// Call `on_wake` for every session woken since the last turn.
    fn run_wakes(&mut self) {
        let wakes = std::mem::take(&mut *Mailbox::lock(&self.mailbox.wakes));
        for (slot, generation) in wakes {
            let Some(entry) = self.slots.get_current(slot, generation) else {
                continue;
            };
            if let Some(wake) = &entry.wake {
                wake.pending.store(false, Ordering::Release);
            }
            let Some(connection) = entry.connection.as_mut() else {
                continue;
            };
            let next = connection.on_wake(&mut self.buffer);
            self.apply(slot, next);
        }
    }

    /// Re-register the connection's interest when it changed, or close it; queue its next time.
    fn apply(&mut self, slot: usize, next: Next) {
        if next != Next::Close {
            self.queue_timer(slot);
        }
        let (Some(generation), Some(entry)) =
            (self.slots.generation(slot), self.slots.get_mut(slot))
        else {
            return;
        };
        let Some(connection) = entry.connection.as_mut() else {
            return;
        };
        if next == Next::Linger && !entry.lingers {
            entry.lingers = true;
            let deadline = Instant::now() + LINGER_TIME;
            self.lingering.push_back((deadline, slot, generation));
        }
        let interest = match next {
            Next::Close => None,
            Next::Linger => Some(Interest::READABLE),
            Next::Watch {
                read: true,
                write: true,
            } => Some(Interest::READABLE | Interest::WRITABLE),
            Next::Watch {
                read: false,
                write: true,
            } => Some(Interest::WRITABLE),
            // Nothing to do until a wake (half-closed, output done): readable still reports errors.
            Next::Watch { .. } => Some(Interest::READABLE),
        };
        let Some(interest) = interest else {
            return self.remove(slot);
        };
        if entry.interest == Some(interest) {
            return;
        }
        let fd = connection.socket.as_raw_fd();
        let registry = self.poll.registry();
        if registry
            .reregister(&mut SourceFd(&fd), Token(slot + 1), interest)
            .is_ok()
        {
            entry.interest = Some(interest);
        } else {
            self.remove(slot);
        }
    }

    /// Close what `slot` holds and free the slot; its limits ticket goes last, once the loop's
    /// tables have let go of it (see `memory`).
    fn remove(&mut self, slot: usize) {
        self.timers.cancel(slot);
        let Some(entry) = self.take_slot(slot) else {
            return;
        };
        let Slot {
            connection,
            handshake,
            ticket,
            ..
        } = entry;
        if let Some(handshake) = handshake {
            let fd = handshake.socket.as_raw_fd();
            let _ = self.poll.registry().deregister(&mut SourceFd(&fd));
            let _ = handshake.socket.shutdown(std::net::Shutdown::Both);
        }
        if let Some(connection) = connection {
            let fd = connection.socket.as_raw_fd();
            let _ = self.poll.registry().deregister(&mut SourceFd(&fd));
            connection.close();
        }
        drop(ticket);
    }

    fn close_all(&mut self) {
        self.adopt_new();
        for slot in self.slots.occupied() {
            self.remove(slot);
        }
    }
}

/// The connection's session from the handler's factory, its panic caught; `None` (reported with the
/// peer, and counted as refused) when the handler has no session or the factory panicked.
fn open_session(shared: &Shared, info: &SessionInfo<'_>, id: ConnId) -> Option<Box<dyn Session>> {
    let failure = match guarded("new_session", || Ok(shared.factory.new_session(info))) {
        Ok(Some(session)) => return Some(session),
        Ok(None) => RequestFailure::Dispatch("this handler has no event-driven session".into()),
        Err(failure) => failure,
    };
    shared.metrics.refused(Refusal::Dispatch);
    shared.report(Client::connection(info.peer, id), &failure);
    None
}
