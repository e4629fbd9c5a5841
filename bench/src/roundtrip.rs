//! The request/response modes (echo, search): C workers, each a connection that sends a request,
//! reads its reply, checks it and records the round trip, until the deadline or the `--requests`
//! budget says stop.
//!
//! Three shapes of worker share the protocol code in [`Proto`]:
//! - **serial** (`--depth 1`): one thread per connection, write then read;
//! - **pipelined** (`--depth N`): a writer and a reader thread per connection; the reader hands a
//!   credit back for every reply, and the writer needs one per request (and writes all the requests
//!   its credits allow in one go), so at most N are in flight and neither side can deadlock the other
//!   on full socket buffers;
//! - **reconnect**: a new connection per request (connect, write, read, close);
//! - **udp**: one datagram out, one back, over a connected UDP socket.
//!
//! Every error is counted and the worker carries on with a fresh connection after a short pause, so
//! an error cannot spin and the run still ends on time.

use std::io::{self, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, UdpSocket};
use std::sync::mpsc::{channel, sync_channel, Receiver, Sender, SyncSender};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use crate::args::{Mode, Plan};
use crate::cpu::Meter;
use crate::echo;
use crate::search;
use crate::tally::{Budget, Clock, Tally};
use crate::target::{Conn, Target};
use crate::Outcome;

/// The pause after an error before a worker tries again.
const BACKOFF: Duration = Duration::from_millis(10);
/// Buffered reads: one read usually holds a whole reply, or several when pipelined.
const READ_BUFFER: usize = 64 * 1024;

/// What a request/response mode sends and expects back.
#[derive(Debug, Clone)]
pub enum Proto {
    /// A `size`-byte payload that names its sequence number, echoed back unchanged.
    Echo { size: usize },
    /// The same search request frame every time; the reply must carry the expected answer.
    Search { request: Arc<[u8]> },
}

impl Proto {
    pub fn new(plan: &Plan) -> Proto {
        match plan.mode {
            Mode::Search => Proto::Search {
                request: search::request(search::QUERY).into(),
            },
            _ => Proto::Echo { size: plan.size },
        }
    }

    /// Appends request `seq` to `out`.
    pub fn encode(&self, seq: u64, out: &mut Vec<u8>) {
        match self {
            Proto::Echo { size } => echo::payload(seq, *size, out),
            Proto::Search { request } => out.extend_from_slice(request),
        }
    }

    /// Reads and checks the reply to request `seq`; returns its length.
    pub fn read_reply(&self, seq: u64, r: &mut impl Read, buf: &mut Vec<u8>) -> io::Result<usize> {
        match self {
            Proto::Echo { size } => {
                buf.resize(*size, 0);
                r.read_exact(buf)?;
                if echo::matches(seq, *size, buf) {
                    Ok(*size)
                } else {
                    Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        echo::mismatch(seq, *size, buf),
                    ))
                }
            }
            Proto::Search { .. } => search::read_reply(r, buf),
        }
    }
}

/// What every worker of a run shares.
struct Ctx<'a> {
    plan: &'a Plan,
    proto: Proto,
    clock: Clock,
    budget: Budget,
    /// The connection that showed the server listens, for the first persistent worker to take: a
    /// server with a per-source limit must never see more connections at once than `-c`.
    first: Mutex<Option<Conn>>,
}

impl Ctx<'_> {
    /// Whether another request may start now.
    fn may_send(&self, now: Instant) -> bool {
        now < self.clock.deadline && self.budget.take(&self.clock, now)
    }

    fn pause(&self) {
        self.clock.sleep_until(Instant::now() + BACKOFF);
    }
}

/// Runs an echo or search load as the plan says and returns what it measured.
pub fn run(plan: &Plan) -> anyhow::Result<Outcome> {
    let mut first = None;
    if plan.target.is_stream() {
        // Fail fast, with the reason, when nobody listens: not 5 s of identical errors.
        let conn = plan
            .connect()
            .map_err(|e| anyhow::anyhow!("cannot connect to {}: {e}", plan.target))?;
        // With --reconnect every request opens its own connection: this one just closes.
        first = (!plan.reconnect).then_some(conn);
    }
    let ctx = Ctx {
        plan,
        proto: Proto::new(plan),
        clock: Clock::new(plan.warmup, plan.duration),
        budget: Budget::new(plan.requests),
        first: Mutex::new(first),
    };
    let (tally, cpu) = thread::scope(|s| {
        let workers: Vec<_> = (0..plan.connections)
            .map(|id| {
                let ctx = &ctx;
                thread::Builder::new()
                    .name(format!("loadgen-{id}"))
                    .spawn_scoped(s, move || worker(ctx, id))
            })
            .collect::<io::Result<_>>()?;
        ctx.clock.sleep_until(ctx.clock.measure_from);
        let meter = Meter::start(plan.server_pid);
        let mut total = Tally::default();
        for w in workers {
            total.merge(&w.join().expect("a worker panicked"));
        }
        anyhow::Ok((total, meter.stop()))
    })?;
    Ok(Outcome::new(ctx.clock, tally, cpu))
}

/// One connection's (or one UDP socket's) whole run.
fn worker(ctx: &Ctx<'_>, id: usize) -> Tally {
    let mut tally = Tally::default();
    // Sequence numbers unique across workers, so a reply can only match its own request.
    let mut seq = (id as u64) << 40;
    match &ctx.plan.target {
        Target::Udp(addr) => udp(ctx, *addr, &mut seq, &mut tally),
        _ if ctx.plan.reconnect => reconnecting(ctx, &mut seq, &mut tally),
        _ => connected(ctx, &mut seq, &mut tally),
    }
    tally
}

/// Persistent connections: reconnects only after an error.
fn connected(ctx: &Ctx<'_>, seq: &mut u64, tally: &mut Tally) {
    while ctx.clock.running() {
        let first = ctx
            .first
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let result = match first.map_or_else(|| ctx.plan.connect(), Ok) {
            Err(e) => Err(context("connect", e)),
            Ok(conn) if ctx.plan.depth == 1 => serial(ctx, conn, seq, tally),
            Ok(conn) => pipelined(ctx, conn, seq, tally),
        };
        match result {
            Ok(()) => return,
            Err(e) => {
                tally.error(e);
                ctx.pause();
            }
        }
    }
}

/// Write a request, read its reply, repeat.
fn serial(ctx: &Ctx<'_>, mut conn: Conn, seq: &mut u64, tally: &mut Tally) -> io::Result<()> {
    let mut reader = BufReader::with_capacity(READ_BUFFER, conn.try_clone()?);
    let (mut out, mut buf) = (Vec::new(), Vec::new());
    loop {
        let sent = Instant::now();
        if !ctx.may_send(sent) {
            return Ok(());
        }
        out.clear();
        ctx.proto.encode(*seq, &mut out);
        conn.write_all(&out).map_err(|e| context("write", e))?;
        let n = ctx
            .proto
            .read_reply(*seq, &mut reader, &mut buf)
            .map_err(|e| context("read", e))?;
        let done = Instant::now();
        if ctx.clock.measured(sent) {
            tally.record(done - sent, out.len(), n, done);
        }
        *seq += 1;
    }
}

/// A request sent and not yet answered: its number, when it left, and its size.
type InFlight = (u64, Instant, usize);

/// Up to `--depth` requests in flight: this thread writes, a scoped thread reads.
fn pipelined(ctx: &Ctx<'_>, conn: Conn, seq: &mut u64, tally: &mut Tally) -> io::Result<()> {
    let reader_conn = conn.try_clone()?;
    let (credit_tx, credit_rx) = sync_channel(ctx.plan.depth);
    for _ in 0..ctx.plan.depth {
        credit_tx.send(()).expect("the receiver is here");
    }
    let (sent_tx, sent_rx) = channel();
    thread::scope(|s| {
        let reader = s.spawn(|| read_side(ctx, reader_conn, sent_rx, credit_tx));
        let written = write_side(ctx, &conn, seq, sent_tx, credit_rx);
        if written.is_err() {
            let _ = conn.shutdown(Shutdown::Both); // ends the reader's wait for replies
        }
        let (reader_tally, read) = reader.join().expect("the reader panicked");
        tally.merge(&reader_tally);
        read.and(written)
    })
}

/// Sends as many requests as there are credits, in one write: a pipelining client batches, and one
/// syscall per request would make the load generator, not the server, the bottleneck.
fn write_side(
    ctx: &Ctx<'_>,
    mut conn: &Conn,
    seq: &mut u64,
    sent_tx: Sender<InFlight>,
    credits: Receiver<()>,
) -> io::Result<()> {
    let mut out = Vec::new();
    // A closed credit channel means the reader stopped; its error is the one reported.
    while credits.recv().is_ok() {
        let batch = 1 + credits.try_iter().take(ctx.plan.depth - 1).count();
        let sent = Instant::now();
        out.clear();
        let mut queued = 0;
        while queued < batch && ctx.may_send(sent) {
            let start = out.len();
            ctx.proto.encode(*seq, &mut out);
            if sent_tx.send((*seq, sent, out.len() - start)).is_err() {
                return Ok(());
            }
            *seq += 1;
            queued += 1;
        }
        conn.write_all(&out).map_err(|e| context("write", e))?;
        if queued < batch {
            break; // the deadline or the request budget
        }
    }
    Ok(())
}

fn read_side(
    ctx: &Ctx<'_>,
    conn: Conn,
    sent: Receiver<InFlight>,
    credits: SyncSender<()>,
) -> (Tally, io::Result<()>) {
    let mut tally = Tally::default();
    let mut reader = BufReader::with_capacity(READ_BUFFER, conn);
    let mut buf = Vec::new();
    // Ends when the writer is done and every reply it expects has been read.
    while let Ok((seq, at, out_len)) = sent.recv() {
        match ctx.proto.read_reply(seq, &mut reader, &mut buf) {
            Ok(n) => {
                let done = Instant::now();
                if ctx.clock.measured(at) {
                    tally.record(done - at, out_len, n, done);
                }
                let _ = credits.send(());
            }
            Err(e) => {
                let _ = reader.get_ref().shutdown(Shutdown::Both); // unblocks the writer
                return (tally, Err(context("read", e)));
            }
        }
    }
    (tally, Ok(()))
}

/// A new connection for every request; latency includes the connect.
fn reconnecting(ctx: &Ctx<'_>, seq: &mut u64, tally: &mut Tally) {
    let (mut out, mut buf) = (Vec::new(), Vec::new());
    loop {
        let sent = Instant::now();
        if !ctx.may_send(sent) {
            return;
        }
        out.clear();
        ctx.proto.encode(*seq, &mut out);
        match one_shot(ctx, &out, *seq, &mut buf) {
            Ok(n) => {
                let done = Instant::now();
                if ctx.clock.measured(sent) {
                    tally.record(done - sent, out.len(), n, done);
                }
            }
            Err(e) => {
                tally.error(e);
                ctx.pause();
            }
        }
        *seq += 1;
    }
}

fn one_shot(ctx: &Ctx<'_>, out: &[u8], seq: u64, buf: &mut Vec<u8>) -> io::Result<usize> {
    let mut conn = ctx.plan.connect().map_err(|e| context("connect", e))?;
    conn.write_all(out).map_err(|e| context("write", e))?;
    ctx.proto
        .read_reply(seq, &mut conn, buf)
        .map_err(|e| context("read", e))
}

/// One datagram out, its echo back; a reply to an earlier request (late) is skipped.
fn udp(ctx: &Ctx<'_>, addr: SocketAddr, seq: &mut u64, tally: &mut Tally) {
    let socket = match udp_socket(addr, ctx.plan.timeout) {
        Ok(s) => s,
        Err(e) => return tally.error(context("udp socket", e)),
    };
    let size = ctx.plan.size;
    let (mut out, mut buf) = (Vec::new(), vec![0; size + 1]);
    loop {
        let sent = Instant::now();
        if !ctx.may_send(sent) {
            return;
        }
        out.clear();
        echo::payload(*seq, size, &mut out);
        match udp_round_trip(ctx, &socket, &out, *seq, &mut buf) {
            Ok(()) => {
                let done = Instant::now();
                if ctx.clock.measured(sent) {
                    tally.record(done - sent, size, size, done);
                }
            }
            Err(e) => {
                tally.error(e);
                ctx.pause();
            }
        }
        *seq += 1;
    }
}

fn udp_socket(addr: SocketAddr, timeout: Duration) -> io::Result<UdpSocket> {
    let local: SocketAddr = if addr.is_ipv4() {
        "0.0.0.0:0".parse().expect("valid")
    } else {
        "[::]:0".parse().expect("valid")
    };
    let socket = UdpSocket::bind(local)?;
    socket.connect(addr)?;
    socket.set_read_timeout(Some(timeout))?;
    Ok(socket)
}

fn udp_round_trip(
    ctx: &Ctx<'_>,
    socket: &UdpSocket,
    out: &[u8],
    seq: u64,
    buf: &mut [u8],
) -> io::Result<()> {
    let sent = Instant::now();
    socket.send(out).map_err(|e| context("send", e))?;
    while sent.elapsed() < ctx.plan.timeout {
        match socket.recv(buf) {
            Ok(n) if echo::matches(seq, out.len(), &buf[..n]) => return Ok(()),
            Ok(_) => continue, // a late reply to an earlier datagram
            Err(e) => return Err(context("recv", e)),
        }
    }
    Err(io::Error::new(
        io::ErrorKind::TimedOut,
        "recv: no reply in time",
    ))
}

/// Prefixes an I/O error with the step that failed; a timeout or a close reads as such.
fn context(step: &str, e: io::Error) -> io::Error {
    let what = match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => "timed out".to_string(),
        io::ErrorKind::UnexpectedEof => "the server closed the connection".to_string(),
        _ => e.to_string(),
    };
    io::Error::new(e.kind(), format!("{step}: {what}"))
}

#[cfg(test)]
mod tests;
