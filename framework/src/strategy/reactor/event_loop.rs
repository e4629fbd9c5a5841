//! One event loop thread: a mio `Poll` over its connections, an inbox for new connections, and a
//! queue of sessions to wake, both signalled through the loop's mio `Waker`.

use std::collections::VecDeque;
use std::io;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};
use socket2::Socket;
use sockserv_plugin::{Address, Session, SessionInfo, SessionWaker};

use super::connection::{Connection, Next};
use crate::request::{guarded, Shared};
use crate::RequestFailure;

/// The waker's token; connections use their slot index + 1.
const WAKER: Token = Token(0);
/// How many readiness events one `poll` returns at most.
const EVENTS: usize = 1024;
/// The read buffer shared by a loop's connections.
const READ_BUFFER: usize = 64 * 1024;
/// How long a closing connection waits for its peer's end of stream (see `Next::Linger`).
const LINGER_TIME: Duration = Duration::from_secs(2);

/// What other threads share with a loop.
struct Mailbox {
    waker: Waker,
    stop: AtomicBool,
    /// New connections, adopted on the next wake-up.
    inbox: Mutex<Vec<(Arc<Shared>, Socket, Address)>>,
    /// Sessions to wake: (slot, generation).
    wakes: Mutex<Vec<(usize, u64)>>,
}

impl Mailbox {
    fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
        mutex
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The serving thread's handle on a loop.
pub(super) struct LoopHandle {
    mailbox: Arc<Mailbox>,
}

impl LoopHandle {
    /// Give the loop a new connection.
    pub fn adopt(&self, shared: Arc<Shared>, socket: Socket, peer: Address) {
        Mailbox::lock(&self.mailbox.inbox).push((shared, socket, peer));
        let _ = self.mailbox.waker.wake();
    }

    /// Ask the loop to close its connections and end.
    pub fn stop(&self) {
        self.mailbox.stop.store(true, Ordering::SeqCst);
        let _ = self.mailbox.waker.wake();
    }
}

pub(super) fn spawn_loop(name: &str, index: usize) -> io::Result<(LoopHandle, JoinHandle<()>)> {
    let poll = Poll::new()?;
    let waker = Waker::new(poll.registry(), WAKER)?;
    let mailbox = Arc::new(Mailbox {
        waker,
        stop: AtomicBool::new(false),
        inbox: Mutex::default(),
        wakes: Mutex::default(),
    });
    let event_loop = EventLoop {
        poll,
        mailbox: Arc::clone(&mailbox),
        slots: Vec::new(),
        free: Vec::new(),
        lingering: VecDeque::new(),
    };
    let thread = thread::Builder::new()
        .name(format!("{name}-loop-{index}"))
        .spawn(move || event_loop.run())?;
    Ok((LoopHandle { mailbox }, thread))
}

/// A connection's place in the loop; the generation tells a reused slot from its earlier tenant.
struct Slot {
    generation: u64,
    connection: Option<Connection>,
    /// The interest registered with the poll, so an unchanged one costs no system call.
    interest: Option<Interest>,
    /// Lingering before close, with a deadline queued.
    lingers: bool,
    /// Set while a wake is queued for this slot, so wakes coalesce.
    wake_pending: Arc<AtomicBool>,
}

struct EventLoop {
    poll: Poll,
    mailbox: Arc<Mailbox>,
    slots: Vec<Slot>,
    free: Vec<usize>,
    /// Lingering connections' deadlines, oldest first (all lingers last the same time, so the
    /// queue stays in deadline order): (deadline, slot, generation).
    lingering: VecDeque<(Instant, usize, u64)>,
}

/// Wakes one session: queue its slot and wake its loop, unless a wake is already queued.
struct Wake {
    mailbox: Arc<Mailbox>,
    slot: usize,
    generation: u64,
    pending: Arc<AtomicBool>,
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
    fn run(mut self) {
        let mut events = Events::with_capacity(EVENTS);
        let mut buffer = vec![0u8; READ_BUFFER];
        loop {
            let timeout = self.linger_timeout();
            if let Err(err) = self.poll.poll(&mut events, timeout) {
                if err.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                log::error!("event loop: poll failed: {err}");
                break;
            }
            for event in events.iter() {
                match event.token() {
                    WAKER => {}
                    Token(token) => {
                        let closed = event.is_read_closed() || event.is_error();
                        let (read, write) = (event.is_readable() || closed, event.is_writable());
                        self.on_ready(token - 1, (read, closed), write, &mut buffer);
                    }
                }
            }
            if self.mailbox.stop.load(Ordering::SeqCst) {
                break;
            }
            self.adopt_new();
            self.run_wakes();
            self.end_lingers();
        }
        self.close_all();
    }

    /// How long poll may sleep: until the oldest linger's deadline, or for ever.
    fn linger_timeout(&self) -> Option<Duration> {
        let (deadline, ..) = self.lingering.front()?;
        Some(deadline.saturating_duration_since(Instant::now()))
    }

    /// Close the lingering connections whose time is up.
    fn end_lingers(&mut self) {
        let now = Instant::now();
        while let Some(&(deadline, slot, generation)) = self.lingering.front() {
            if deadline > now {
                break;
            }
            self.lingering.pop_front();
            if self.slots[slot].generation == generation && self.slots[slot].lingers {
                self.remove(slot);
            }
        }
    }

    /// `read`: (readable, the peer closed its side).
    fn on_ready(&mut self, slot: usize, read: (bool, bool), write: bool, buffer: &mut [u8]) {
        let (read, peer_closed) = read;
        let Some(connection) = self.slots.get_mut(slot).and_then(|s| s.connection.as_mut()) else {
            return;
        };
        let mut next = if write {
            connection.on_writable()
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
        for (shared, socket, peer) in adopted {
            self.adopt(shared, socket, peer);
        }
    }

    fn adopt(&mut self, shared: Arc<Shared>, socket: Socket, peer: Address) {
        if let Err(err) = socket.set_nonblocking(true) {
            log::warn!("{}: {peer}: {err}", shared.name);
            return;
        }
        let slot = self.free.pop().unwrap_or_else(|| {
            self.slots.push(Slot {
                generation: 0,
                connection: None,
                interest: None,
                lingers: false,
                wake_pending: Arc::default(),
            });
            self.slots.len() - 1
        });
        let entry = &mut self.slots[slot];
        entry.generation += 1;
        entry.wake_pending = Arc::default();
        let waker = Arc::new(Wake {
            mailbox: Arc::clone(&self.mailbox),
            slot,
            generation: entry.generation,
            pending: Arc::clone(&entry.wake_pending),
        });
        let info = SessionInfo {
            peer: &peer,
            local: &shared.local,
            server: &*shared,
            waker,
        };
        let Some(session) = open_session(&shared, &info) else {
            self.free.push(slot);
            return;
        };
        let fd = socket.as_raw_fd();
        let registered =
            self.poll
                .registry()
                .register(&mut SourceFd(&fd), Token(slot + 1), Interest::READABLE);
        let mut connection = Connection::new(socket, session, shared, peer);
        if let Err(err) = registered {
            log::warn!("event loop: cannot watch a connection: {err}");
            connection.close();
            self.free.push(slot);
            return;
        }
        let next = connection.on_open();
        self.slots[slot].connection = Some(connection);
        self.slots[slot].interest = Some(Interest::READABLE);
        self.apply(slot, next);
    }

    /// Call `on_wake` for every session woken since the last turn.
    fn run_wakes(&mut self) {
        let wakes = std::mem::take(&mut *Mailbox::lock(&self.mailbox.wakes));
        for (slot, generation) in wakes {
            let Some(entry) = self.slots.get_mut(slot) else {
                continue;
            };
            if entry.generation != generation {
                continue;
            }
            entry.wake_pending.store(false, Ordering::Release);
            let Some(connection) = entry.connection.as_mut() else {
                continue;
            };
            let next = connection.on_wake();
            self.apply(slot, next);
        }
    }

    /// Re-register the connection's interest when it changed, or close it.
    fn apply(&mut self, slot: usize, next: Next) {
        let entry = &mut self.slots[slot];
        let Some(connection) = entry.connection.as_mut() else {
            return;
        };
        if next == Next::Linger && !entry.lingers {
            entry.lingers = true;
            let deadline = Instant::now() + LINGER_TIME;
            self.lingering.push_back((deadline, slot, entry.generation));
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

    fn remove(&mut self, slot: usize) {
        self.slots[slot].interest = None;
        self.slots[slot].lingers = false;
        if let Some(connection) = self.slots[slot].connection.take() {
            let fd = connection.socket.as_raw_fd();
            let _ = self.poll.registry().deregister(&mut SourceFd(&fd));
            connection.close();
            self.free.push(slot);
        }
    }

    fn close_all(&mut self) {
        self.adopt_new();
        for slot in 0..self.slots.len() {
            self.remove(slot);
        }
    }
}

/// The connection's session from the handler's factory, its panic caught; `None` (reported with the
/// peer) when the handler has no session or the factory panicked.
fn open_session(shared: &Shared, info: &SessionInfo<'_>) -> Option<Box<dyn Session>> {
    let failure = match guarded("new_session", || Ok(shared.factory.new_session(info))) {
        Ok(Some(session)) => return Some(session),
        Ok(None) => RequestFailure::Dispatch("this handler has no event-driven session".into()),
        Err(failure) => failure,
    };
    shared.report(info.peer, &failure);
    None
}
