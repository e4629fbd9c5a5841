//! The `hold` mode: the attacker of the limits benchmark. It opens `-c` connections — from
//! `--bind`'s address if given, at most `--depth` being opened at once — optionally sends one echo
//! `--ping` on each (so the server has really accepted and served it), then keeps every one open
//! and silent for `--duration` seconds, and reports what the server did with them: how many it
//! took, answered, refused (closed before sending a byte) or closed later, and after how long.
//!
//! One thread and one mio poll watch every connection, so 10 000 held connections cost the load
//! generator 10 000 descriptors and a few hundred bytes each, not 10 000 threads; a close is seen
//! within a poll tick of its arrival. Every phase is bounded: opening by [`OPEN_LIMIT`], a connect
//! or an unanswered ping by `--timeout`, the hold by `--duration` (at most
//! [`crate::args::MAX_HOLD`]), and the hold ends early once the server has closed everything.
//!
//! When opening is done, one line goes to stderr (`loadgen hold: N open ...; holding ...`), so a
//! script can start its measurement while the connections are held; SIGTERM or SIGINT ends the hold
//! early, report included (see [`STOP`]), so the script need not guess how long its measurement
//! takes.

use std::collections::VecDeque;
use std::fs;
use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use mio::{Events, Interest, Poll, Token};

use crate::args::Plan;
use crate::echo;
use crate::histogram::Histogram;

mod report;
mod stream;
#[cfg(test)]
mod tests;

use stream::Stream;

pub use report::HoldReport;

/// Opening stops after this long even if connections are still to be opened (a server that accepts
/// one connection a second must not make the benchmark last hours); the report says how many were.
pub const OPEN_LIMIT: Duration = Duration::from_secs(120);
/// The longest one poll waits: timeouts and the end of the hold are checked at least this often.
const TICK: Duration = Duration::from_millis(20);
/// One read buffer for all connections.
const READ_CHUNK: usize = 16 * 1024;
/// Reads per readiness event at most, so one connection that floods cannot starve the rest.
const READS_PER_EVENT: usize = 64;
/// Descriptors needed besides the held connections: stdio, the poll instance, some slack.
const SPARE_DESCRIPTORS: u64 = 16;

/// Set (by `main`'s SIGTERM/SIGINT handler) to end opening and holding at the next poll tick; the
/// report still follows.
pub static STOP: AtomicBool = AtomicBool::new(false);

fn stopped() -> bool {
    STOP.load(Ordering::Relaxed)
}

/// What a hold run saw.
#[derive(Debug, Default)]
pub struct HoldOutcome {
    /// Connections whose connect completed.
    pub opened: usize,
    pub connect_errors: u64,
    pub first_error: Option<String>,
    /// How long opening took (the last connect, and with `--ping` the last reply or its timeout).
    pub open_time: Duration,
    /// Pings whose whole echo came back, correct.
    pub answered: usize,
    /// Pings whose echo came back different from what was sent.
    pub wrong_replies: usize,
    /// Connections the server closed (FIN or reset) before sending a single byte — a refusal, or
    /// without `--ping` a first-byte or idle timeout: time from the connect to the close.
    pub refused: Histogram,
    /// Connections the server closed after answering the ping (or after sending something
    /// unprompted): time from the last byte received to the close, i.e. how long they were idle.
    pub closed: Histogram,
    /// Connections closed in the middle of the ping's reply.
    pub closed_mid_reply: usize,
    /// Pings still without their whole reply at the end (a server that never served them).
    pub unanswered_at_end: usize,
    pub open_at_end: usize,
    /// How long the hold lasted after opening.
    pub held: Duration,
}

/// Runs a hold as the plan says.
pub fn run(plan: &Plan) -> anyhow::Result<HoldOutcome> {
    check_descriptors(plan.connections)?;
    let mut hold = Hold::new(plan)?;
    let started = Instant::now();
    hold.open_all(started + OPEN_LIMIT)?;
    hold.outcome.open_time = started.elapsed();
    eprintln!(
        "loadgen hold: {} open ({} answered) after {:.2} s; holding up to {} s",
        hold.open,
        hold.outcome.answered,
        hold.outcome.open_time.as_secs_f64(),
        plan.duration.as_secs_f64()
    );
    let holding = Instant::now();
    hold.hold_until(holding + plan.duration)?;
    hold.outcome.held = holding.elapsed();
    Ok(hold.finish())
}

/// Fails with advice when the descriptor limit is too low for `connections`.
fn check_descriptors(connections: usize) -> anyhow::Result<()> {
    let needed = connections as u64 + SPARE_DESCRIPTORS;
    match soft_descriptor_limit() {
        Some(limit) if limit < needed => anyhow::bail!(
            "holding {connections} connections needs {needed} descriptors; the limit is {limit} \
             (raise it first: ulimit -n {needed})"
        ),
        _ => Ok(()),
    }
}

/// The soft `RLIMIT_NOFILE`, from `/proc/self/limits`; `None` for "unlimited" or unreadable.
fn soft_descriptor_limit() -> Option<u64> {
    let limits = fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Where a held connection is in its life.
enum Phase {
    /// The connect is in progress.
    Connecting,
    /// Connected, the ping written; what has come back of its echo so far.
    AwaitingEcho(Vec<u8>),
    /// Connected and quiet: nothing more is expected from the server.
    Idle,
}

struct Slot {
    stream: Stream,
    phase: Phase,
    /// From the connect's completion, or the ping's whole echo: the start of the idle time.
    idle_since: Instant,
    connected_at: Option<Instant>,
    /// Whether any byte came from the server.
    heard: bool,
    /// Counted against `--depth` (connecting, or awaiting its echo within `--timeout`).
    in_window: bool,
}

/// The run's state: every slot (indexed by its token, never reused), and the opening window.
struct Hold<'a> {
    plan: &'a Plan,
    poll: Poll,
    slots: Vec<Option<Slot>>,
    /// Slots counted against `--depth`, oldest first, with when they entered it.
    window: VecDeque<(usize, Instant)>,
    in_window: usize,
    open: usize,
    buf: Vec<u8>,
    outcome: HoldOutcome,
}

impl<'a> Hold<'a> {
    fn new(plan: &'a Plan) -> io::Result<Hold<'a>> {
        Ok(Hold {
            plan,
            poll: Poll::new()?,
            slots: Vec::with_capacity(plan.connections),
            window: VecDeque::new(),
            in_window: 0,
            open: 0,
            buf: vec![0; READ_CHUNK],
            outcome: HoldOutcome::default(),
        })
    }

    /// Opens every connection, `--depth` at a time, until `deadline` at the latest.
    fn open_all(&mut self, deadline: Instant) -> anyhow::Result<()> {
        let mut events = Events::with_capacity(1024);
        loop {
            while self.slots.len() < self.plan.connections && self.in_window < self.plan.depth {
                self.start_one();
            }
            if self.slots.len() == self.plan.connections && self.in_window == 0 {
                return Ok(());
            }
            let now = Instant::now();
            if now >= deadline || stopped() {
                return Ok(());
            }
            self.turn(&mut events, TICK.min(deadline - now))?;
            if self.outcome.opened == 0 && self.nobody_listens() {
                anyhow::bail!(
                    "cannot connect to {}: {}",
                    self.plan.target,
                    self.outcome.first_error.as_deref().unwrap_or("refused")
                );
            }
        }
    }

    /// Keeps the connections until `until`, or until the server has closed them all.
    fn hold_until(&mut self, until: Instant) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        loop {
            let now = Instant::now();
            if now >= until || self.open == 0 || stopped() {
                return Ok(());
            }
            self.turn(&mut events, TICK.min(until - now))?;
        }
    }

    fn nobody_listens(&self) -> bool {
        self.outcome.connect_errors > 0
            && self
                .outcome
                .first_error
                .as_deref()
                .is_some_and(|e| e.contains("refused"))
    }

    /// One poll: handle what is ready, then the window's timeouts.
    fn turn(&mut self, events: &mut Events, timeout: Duration) -> io::Result<()> {
        match self.poll.poll(events, Some(timeout)) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(()),
            other => other?,
        }
        for event in events.iter() {
            self.ready(event.token().0);
        }
        self.expire(Instant::now());
        Ok(())
    }

    fn start_one(&mut self) {
        let index = self.slots.len();
        let started = Instant::now();
        let slot = Stream::connect(self.plan).and_then(|mut stream| {
            let interest = Interest::READABLE | Interest::WRITABLE;
            stream.register(&self.poll, Token(index), interest)?;
            Ok(Slot {
                stream,
                phase: Phase::Connecting,
                idle_since: started,
                connected_at: None,
                heard: false,
                in_window: true,
            })
        });
        match slot {
            Ok(slot) => {
                self.slots.push(Some(slot));
                self.window.push_back((index, started));
                self.in_window += 1;
            }
            Err(e) => {
                self.slots.push(None);
                self.connect_error(&e);
            }
        }
    }

    fn connect_error(&mut self, e: &io::Error) {
        self.outcome.connect_errors += 1;
        if self.outcome.first_error.is_none() {
            self.outcome.first_error = Some(format!("connect: {e}"));
        }
    }

    /// A readiness event on slot `index`.
    fn ready(&mut self, index: usize) {
        let Some(slot) = self.slots.get(index).and_then(Option::as_ref) else {
            return;
        };
        if matches!(slot.phase, Phase::Connecting) {
            match slot.stream.connected() {
                Ok(false) => return,
                Ok(true) => self.on_connected(index),
                Err(e) => {
                    self.drop_slot(index);
                    return self.connect_error(&e);
                }
            }
        }
        self.read(index);
    }

    /// The connect completed: send the ping, or go quiet at once.
    fn on_connected(&mut self, index: usize) {
        self.outcome.opened += 1;
        self.open += 1;
        let now = Instant::now();
        let size = self.plan.ping.then_some(self.plan.size);
        let slot = self.slots[index].as_mut().expect("a live slot");
        slot.connected_at = Some(now);
        slot.idle_since = now;
        let written = match size {
            Some(size) => {
                let mut ping = Vec::with_capacity(size);
                echo::payload(index as u64, size, &mut ping);
                slot.phase = Phase::AwaitingEcho(Vec::with_capacity(size));
                slot.stream.write(&ping).map(|n| n == size)
            }
            None => {
                slot.phase = Phase::Idle;
                Ok(true)
            }
        };
        let interest = slot
            .stream
            .reregister(&self.poll, Token(index), Interest::READABLE);
        match (written, interest) {
            // A reset or a broken pipe here is the server's close: the read that follows sees it.
            (Ok(true), Ok(())) | (Err(_), Ok(())) => {}
            (Ok(false), _) => self.fail(index, "ping: short write (use a smaller --size)"),
            (_, Err(e)) => self.fail(index, &format!("poll: {e}")),
        }
        if size.is_none() {
            self.leave_window(index);
        }
    }

    /// Reads what the server sent, up to [`READS_PER_EVENT`] reads.
    fn read(&mut self, index: usize) {
        for _ in 0..READS_PER_EVENT {
            let Some(slot) = self.slots[index].as_mut() else {
                return;
            };
            match slot.stream.read(&mut self.buf) {
                Ok(0) => return self.closed_by_server(index),
                Ok(n) => {
                    slot.heard = true;
                    slot.idle_since = Instant::now();
                    self.received(index, n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return self.closed_by_server(index), // a reset: closed all the same
            }
        }
    }

    /// `n` bytes arrived in `self.buf` for slot `index`: complete the ping's echo with them.
    fn received(&mut self, index: usize, n: usize) {
        let size = self.plan.size;
        let slot = self.slots[index].as_mut().expect("a live slot");
        let Phase::AwaitingEcho(echoed) = &mut slot.phase else {
            return;
        };
        let take = n.min(size - echoed.len());
        echoed.extend_from_slice(&self.buf[..take]);
        if echoed.len() < size {
            return;
        }
        if echo::matches(index as u64, size, echoed) {
            self.outcome.answered += 1;
        } else {
            self.outcome.wrong_replies += 1;
        }
        slot.phase = Phase::Idle;
        self.leave_window(index);
    }

    /// The server closed slot `index` (FIN or reset): file it by what came before.
    fn closed_by_server(&mut self, index: usize) {
        let Some(slot) = self.drop_slot(index) else {
            return;
        };
        let now = Instant::now();
        let since = |t: Instant| u64::try_from((now - t).as_nanos()).unwrap_or(u64::MAX);
        match (&slot.phase, slot.heard) {
            (_, false) => self
                .outcome
                .refused
                .record(since(slot.connected_at.unwrap_or(now))),
            (Phase::AwaitingEcho(_), true) => self.outcome.closed_mid_reply += 1,
            _ => self.outcome.closed.record(since(slot.idle_since)),
        }
    }

    /// A local failure on slot `index`: counted as an error, the connection dropped.
    fn fail(&mut self, index: usize, what: &str) {
        self.drop_slot(index);
        self.connect_error(&io::Error::other(what.to_string()));
    }

    /// Removes slot `index` (closing its socket), keeping the counts right.
    fn drop_slot(&mut self, index: usize) -> Option<Slot> {
        self.leave_window(index);
        let slot = self.slots.get_mut(index)?.take()?;
        if slot.connected_at.is_some() {
            self.open -= 1;
        }
        Some(slot)
    }

    fn leave_window(&mut self, index: usize) {
        if let Some(slot) = self.slots.get_mut(index).and_then(Option::as_mut) {
            if std::mem::take(&mut slot.in_window) {
                self.in_window -= 1;
            }
        }
    }

    /// Connects and echoes that took longer than `--timeout`: a connect is given up (an error); a
    /// ping stays held but stops holding up the window.
    fn expire(&mut self, now: Instant) {
        while let Some(&(index, since)) = self.window.front() {
            let waiting = self.slots[index].as_ref().is_some_and(|s| s.in_window);
            if waiting && now < since + self.plan.timeout {
                return;
            }
            self.window.pop_front();
            if !waiting {
                continue;
            }
            let connecting = self.slots[index]
                .as_ref()
                .is_some_and(|s| matches!(s.phase, Phase::Connecting));
            if connecting {
                self.fail(index, "timed out");
            } else {
                self.leave_window(index);
            }
        }
    }

    fn finish(mut self) -> HoldOutcome {
        let live = self.slots.iter().flatten();
        self.outcome.unanswered_at_end = live
            .clone()
            .filter(|s| matches!(s.phase, Phase::AwaitingEcho(_)))
            .count();
        self.outcome.open_at_end = live.filter(|s| s.connected_at.is_some()).count();
        self.outcome
    }
}
