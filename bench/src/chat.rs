//! The chat fan-out mode: K listeners and S senders join a chat server's room; each sender sends lines
//! carrying a token with its number, a sequence number and the send time, and each listener finds the
//! token anywhere in the lines it receives (the server adds its own `<stamp> From ip:port. msg=`
//! prefix), so a delivery's latency is its arrival time minus the time in its token.
//!
//! Flow control is a window: a sender keeps at most `--depth` messages that have not yet reached every
//! live listener. Listeners add an acknowledgement per message to a small per-sender ring, and the
//! last one to arrive wakes the sender. A message that some listener never gets (a dropped or
//! disconnected member) stalls the window for at most `--timeout`, counts as an error, and is passed.
//!
//! Before measuring, a probe line is sent until every listener has seen one: that proves each
//! listener has joined the room, so the first measured messages are not lost to a join in progress.
//! Senders also receive the room's traffic; a thread per sender reads and discards it.

use std::io::{self, BufRead, BufReader, Write};
use std::net::Shutdown;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

use crate::args::Plan;
use crate::cpu::Meter;
use crate::tally::{Budget, Clock, Tally};
use crate::target::Conn;
use crate::{ChatFigures, Outcome};

/// Marks a measured message: `~lg:SENDER:SEQ:NANOS~`.
const TOKEN: &[u8] = b"~lg:";
/// Marks a probe line, sent until every listener has joined.
const PROBE: &[u8] = b"~lgp~";
/// How often a probe goes out while listeners join.
const PROBE_EVERY: Duration = Duration::from_millis(20);
/// The least time given to listeners to join, whatever `--timeout` says.
const MIN_JOIN_TIME: Duration = Duration::from_secs(3);
/// How often blocked reads look up to see whether the run is over.
const POLL: Duration = Duration::from_millis(100);
/// A line longer than this is not the chat server's (its own `max_line` is 4 KiB by default).
const MAX_LINE: usize = 1 << 20;

/// The text of message `seq` from `sender`, sent `nanos` after the run's origin, padded with `x` to
/// `size` bytes where it is shorter, newline included.
pub fn message(sender: usize, seq: u64, nanos: u64, size: usize, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(TOKEN);
    out.extend_from_slice(format!("{sender}:{seq}:{nanos}~").as_bytes());
    let body = out.len() - start;
    out.resize(start + body.max(size.saturating_sub(1)), b'x');
    out.push(b'\n');
}

/// The token in a received line: sender, sequence number, send time.
pub fn parse(line: &[u8]) -> Option<(usize, u64, u64)> {
    let at = line.windows(TOKEN.len()).position(|w| w == TOKEN)? + TOKEN.len();
    let rest = &line[at..];
    let end = rest.iter().position(|&b| b == b'~')?;
    let mut parts = std::str::from_utf8(&rest[..end]).ok()?.split(':');
    let sender = parts.next()?.parse().ok()?;
    let seq = parts.next()?.parse().ok()?;
    let nanos = parts.next()?.parse().ok()?;
    parts.next().is_none().then_some((sender, seq, nanos))
}

/// What listeners and senders share.
struct Room<'a> {
    plan: &'a Plan,
    origin: Instant,
    clock: OnceLock<Clock>,
    /// Set when every thread should finish.
    stop: AtomicBool,
    joined: Vec<AtomicBool>,
    live_listeners: AtomicUsize,
    /// Per sender, acknowledgements by sequence number modulo `depth`.
    acks: Vec<Vec<AtomicU32>>,
    senders: Vec<OnceLock<Thread>>,
    /// `--requests`: measured messages left to send, across senders.
    budget: Budget,
}

impl Room<'_> {
    fn nanos(&self, at: Instant) -> u64 {
        u64::try_from(at.duration_since(self.origin).as_nanos()).unwrap_or(u64::MAX)
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    fn slot(&self, sender: usize, seq: u64) -> &AtomicU32 {
        &self.acks[sender][(seq % self.plan.depth as u64) as usize]
    }

    fn wake_senders(&self) {
        self.senders
            .iter()
            .filter_map(OnceLock::get)
            .for_each(Thread::unpark);
    }
}

/// Runs a chat fan-out load as the plan says.
pub fn run(plan: &Plan) -> anyhow::Result<Outcome> {
    let connect = |role: &str, i: usize| {
        plan.connect()
            .map_err(|e| anyhow::anyhow!("cannot connect {role} {i} to {}: {e}", plan.target))
    };
    let listeners: Vec<Conn> = (0..plan.connections)
        .map(|i| {
            plan.connect_listener(i)
                .map_err(|e| anyhow::anyhow!("cannot connect listener {i}: {e}"))
        })
        .collect::<Result<_, _>>()?;
    let senders: Vec<Conn> = (0..plan.senders)
        .map(|i| connect("sender", i))
        .collect::<Result<_, _>>()?;
    let room = Room {
        plan,
        origin: Instant::now(),
        clock: OnceLock::new(),
        stop: AtomicBool::new(false),
        joined: (0..plan.connections)
            .map(|_| AtomicBool::new(false))
            .collect(),
        live_listeners: AtomicUsize::new(plan.connections),
        acks: (0..plan.senders)
            .map(|_| (0..plan.depth).map(|_| AtomicU32::new(0)).collect())
            .collect(),
        senders: (0..plan.senders).map(|_| OnceLock::new()).collect(),
        budget: Budget::new(plan.requests),
    };
    thread::scope(|s| run_in(s, &room, listeners, senders))
}

fn run_in<'s>(
    s: &'s thread::Scope<'s, '_>,
    room: &'s Room<'_>,
    listeners: Vec<Conn>,
    senders: Vec<Conn>,
) -> anyhow::Result<Outcome> {
    let mut readers = Vec::new();
    for (i, conn) in listeners.into_iter().enumerate() {
        let shut = conn.try_clone()?;
        readers.push((s.spawn(move || listen(room, i, conn)), shut));
    }
    for conn in &senders {
        let (reader, shut) = (conn.try_clone()?, conn.try_clone()?);
        readers.push((s.spawn(move || drain(room, reader)), shut));
    }
    let joined = join_room(room, &senders[0]);
    let clock = Clock::new(room.plan.warmup, room.plan.duration);
    room.clock.set(clock).expect("set once");
    let sending: Vec<_> = senders
        .into_iter()
        .enumerate()
        .map(|(i, conn)| s.spawn(move || send(room, i, conn)))
        .collect();
    clock.sleep_until(clock.measure_from);
    let meter = Meter::start(room.plan.server_pid);
    let mut total = Tally::default();
    let mut sent = 0;
    for sender in sending {
        let (tally, n) = sender.join().expect("a sender panicked");
        total.merge(&tally);
        sent += n;
    }
    let cpu = meter.stop();
    room.stop.store(true, Ordering::Relaxed);
    for (reader, conn) in readers {
        let _ = conn.shutdown(Shutdown::Read);
        total.merge(&reader.join().expect("a reader panicked"));
    }
    if let Err(e) = joined {
        total.error(e);
    }
    let mut outcome = Outcome::new(clock, total, cpu);
    outcome.chat = Some(ChatFigures {
        listeners: room.plan.connections,
        senders: room.plan.senders,
        sent,
    });
    Ok(outcome)
}

/// Sends probes until every listener has seen one, or the join time is up.
fn join_room(room: &Room<'_>, mut conn: &Conn) -> Result<(), String> {
    let give_up = Instant::now() + room.plan.timeout.max(MIN_JOIN_TIME);
    let mut line = PROBE.to_vec();
    line.push(b'\n');
    loop {
        let joined = room
            .joined
            .iter()
            .filter(|j| j.load(Ordering::Relaxed))
            .count();
        if joined == room.joined.len() {
            return Ok(());
        }
        if Instant::now() >= give_up {
            return Err(format!(
                "only {joined} of {} listeners received a probe line before measuring",
                room.joined.len()
            ));
        }
        conn.write_all(&line).map_err(|e| format!("probe: {e}"))?;
        thread::sleep(PROBE_EVERY);
    }
}

/// One sender: messages as fast as the window allows, until the deadline or the budget. Returns its
/// tally (bytes out, errors) and how many measured messages it sent.
fn send(room: &Room<'_>, id: usize, mut conn: Conn) -> (Tally, u64) {
    room.senders[id].set(thread::current()).expect("set once");
    let clock = room.clock.get().copied().expect("set before senders start");
    let (mut tally, mut line) = (Tally::default(), Vec::new());
    let (mut seq, mut delivered, mut sent) = (0u64, 0u64, 0u64);
    let depth = room.plan.depth as u64;
    // `--rate`: this sender's share, one message every `every`, on a fixed schedule.
    let every = room
        .plan
        .rate
        .map(|rate| Duration::from_secs_f64(room.plan.senders as f64 / rate));
    let mut next_at = Instant::now();
    loop {
        if let Err(e) = wait_window(room, id, seq, depth, &mut delivered, &clock) {
            tally.error(e);
        }
        if let Some(every) = every {
            let wait = next_at.saturating_duration_since(Instant::now());
            thread::sleep(wait.min(clock.deadline.saturating_duration_since(Instant::now())));
            next_at += every;
        }
        let now = Instant::now();
        if now >= clock.deadline || room.stopped() || !room.budget.take(&clock, now) {
            break;
        }
        line.clear();
        message(id, seq, room.nanos(now), room.plan.size, &mut line);
        if let Err(e) = conn.write_all(&line) {
            tally.error(format_args!("sender {id}: write: {e}"));
            break;
        }
        if clock.measured(now) {
            tally.bytes_out += line.len() as u64;
            sent += 1;
        }
        seq += 1;
    }
    // A count-bound run ends when its last messages have arrived (or are given up on).
    while delivered < seq && clock.running() && !room.stopped() {
        if let Err(e) = wait_window(room, id, seq, 1, &mut delivered, &clock) {
            tally.error(e);
        }
    }
    (tally, sent)
}

/// Waits until fewer than `limit` of this sender's `seq` messages are undelivered (or the run is
/// over). A message stuck for longer than `--timeout` is counted as an error and passed.
fn wait_window(
    room: &Room<'_>,
    id: usize,
    seq: u64,
    limit: u64,
    delivered: &mut u64,
    clock: &Clock,
) -> Result<(), String> {
    let mut stuck_since = Instant::now();
    loop {
        while *delivered < seq {
            let slot = room.slot(id, *delivered);
            let live = room.live_listeners.load(Ordering::Acquire) as u32;
            if slot.load(Ordering::Acquire) < live {
                break;
            }
            slot.store(0, Ordering::Release);
            *delivered += 1;
            stuck_since = Instant::now();
        }
        if seq - *delivered < limit || !clock.running() || room.stopped() {
            return Ok(());
        }
        if stuck_since.elapsed() >= room.plan.timeout {
            let msg = format!(
                "message {} of sender {id} did not reach every listener within {:?}",
                *delivered, room.plan.timeout
            );
            room.slot(id, *delivered).store(0, Ordering::Release);
            *delivered += 1;
            return Err(msg);
        }
        thread::park_timeout(Duration::from_millis(10));
    }
}

/// One listener: reads lines, records each measured delivery's latency, acknowledges it.
fn listen(room: &Room<'_>, id: usize, conn: Conn) -> Tally {
    let mut tally = Tally::default();
    let result = read_lines(room, conn, |line| {
        let Some((sender, seq, nanos)) = parse(line) else {
            if line.windows(PROBE.len()).any(|w| w == PROBE) {
                room.joined[id].store(true, Ordering::Relaxed);
            }
            return;
        };
        let now = Instant::now();
        if let Some(clock) = room.clock.get().filter(|_| room.plan.measures(id)) {
            if nanos >= room.nanos(clock.measure_from) {
                let latency = Duration::from_nanos(room.nanos(now).saturating_sub(nanos));
                tally.record(latency, 0, line.len(), now);
            }
        }
        if sender < room.acks.len() {
            let live = room.live_listeners.load(Ordering::Acquire) as u32;
            if room.slot(sender, seq).fetch_add(1, Ordering::AcqRel) + 1 >= live {
                room.senders[sender].get().map(Thread::unpark);
            }
        }
    });
    room.live_listeners.fetch_sub(1, Ordering::AcqRel);
    room.wake_senders();
    if let Err(e) = result {
        tally.error(format_args!("listener {id}: {e}"));
    }
    tally
}

/// A sender's incoming traffic, read and dropped so the server never sees it as a slow reader.
fn drain(room: &Room<'_>, conn: Conn) -> Tally {
    let mut tally = Tally::default();
    if let Err(e) = read_lines(room, conn, |_| {}) {
        tally.error(format_args!("sender: {e}"));
    }
    tally
}

/// Calls `each` with every line until the run stops; the server closing early is an error.
fn read_lines(room: &Room<'_>, conn: Conn, mut each: impl FnMut(&[u8])) -> io::Result<()> {
    conn.set_read_timeout(Some(POLL))?;
    let mut reader = BufReader::new(conn);
    let mut line = Vec::new();
    while !room.stopped() {
        match reader.read_until(b'\n', &mut line) {
            Ok(0) if room.stopped() => break,
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the server closed the connection",
                ))
            }
            Ok(_) if line.ends_with(b"\n") => {
                each(&line);
                line.clear();
            }
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(e) if room.stopped() => {
                let _ = e;
                break;
            }
            Err(e) => return Err(e),
        }
        if line.len() > MAX_LINE {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("a line over {MAX_LINE} bytes"),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
