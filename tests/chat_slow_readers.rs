//! Chat members against a flood, from outside: a member that reads slowly but steadily is never
//! called too slow, however long the server's writes to it block, while a member that stops
//! reading is dropped once its queue has stayed full for `slow_after`.
//!
//! Why this needs a test of its own: Linux grows a TCP socket's send buffer to megabytes, and a
//! writer blocked on a full one is let in only once the kernel has freed a large part of it — for
//! a reader taking 200 kB/s, seconds. A server that judged its members by its own writes alone
//! disconnected such a reader a few seconds into a flood: the threading and pool cases below
//! failed that way before the server looked at the socket's send queue. (The reactor saw progress
//! anyway, since it tries to write at every turn and the kernel takes what little room there is;
//! a Unix stream socket's send buffer does not grow, so a blocked writer is let in well within
//! `slow_after`. Their cases keep it that way.) The steady reader here takes 20 kB every 100 ms,
//! one member floods the room with 1000-byte lines for [`FLOOD_FOR`] as fast as the server reads
//! it (`rate` lifted), and a third member reads nothing at all.
//!
//! What is asserted: the steady reader stays connected, gets the flood's lines in order, and
//! accounts for every line — received, or counted in a "you missed N" notice (a queue that is full
//! misses what does not fit; that is what makes it full, and what a verdict is taken on); the
//! stopped member is dropped, not before `slow_after`, and is the only one; the flooder hears of
//! it. Every read and the whole run are bounded; the floods take turns, since one takes both of a
//! small machine's cores.

mod chat;
mod common;

use std::io::{self, Read};
use std::sync::{Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use chat::{join_all, Member};
use common::{config, Client, ServeProcess};

/// The chat options: the repro (`rate = 100000`, `burst = 1000`), with a prefix that names
/// the sender without the time, and `slow_after = 4` rather than the repro's 2: a reader that does
/// not run for `slow_after` is rightly judged stuck, and on a loaded machine the test's own reader
/// thread has been seen to wait 2.5 s for a core. A writer blocked on an autotuned send buffer
/// still outlasts 4 s (the threading and pool cases fail with 4 as with 2 when the send queue is
/// not looked at).
const OPTIONS: &str =
    "[server.options]\nslow_after = 4\nrate = 100000\nburst = 1000\nprefix = '{from}: '";
const SLOW_AFTER: Duration = Duration::from_secs(4);
/// How long the flooder sends: two and a half times `slow_after`, so a verdict taken on stale
/// writes would fall inside it, and so would the stopped member's.
const FLOOD_FOR: Duration = Duration::from_secs(10);
/// The most lines the flooder sends, whatever the speed of the machine.
const MAX_LINES: usize = 2_000_000;
/// Bytes per flood line, newline included.
const LINE: usize = 1000;
/// Flood lines per write.
const LINES_PER_WRITE: usize = 64;
/// The steady reader's pace: this many bytes every [`EVERY`].
const SIP: usize = 20_000;
const EVERY: Duration = Duration::from_millis(100);
/// How long the steady reader may take, once the flood is over, to read what the server still
/// holds for it (kernel buffers of a few megabytes, read at full speed).
const CATCH_UP: Duration = Duration::from_secs(60);

const TCP: &str = "tcp://127.0.0.1:0";
const UNIX: &str = "unix://{dir}/chat.sock";

/// One flood at a time in this binary.
static ONE_FLOOD_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Runs each case as a test: `test_name: case(argument),`.
macro_rules! cases {
    ($($test:ident: $case:ident($arg:expr),)*) => {$(
        #[test]
        fn $test() {
            $case($arg)
        }
    )*};
}

#[rustfmt::skip]
cases! {
    steady_reader_threading:      a_steady_reader_is_kept_and_a_stopped_one_dropped(("threading", TCP)),
    steady_reader_pool:           a_steady_reader_is_kept_and_a_stopped_one_dropped(("pool", TCP)),
    steady_reader_reactor:        a_steady_reader_is_kept_and_a_stopped_one_dropped(("reactor", TCP)),
    steady_reader_threading_unix: a_steady_reader_is_kept_and_a_stopped_one_dropped(("threading", UNIX)),
}

fn a_steady_reader_is_kept_and_a_stopped_one_dropped((strategy, listen): (&str, &str)) {
    let _turn = ONE_FLOOD_AT_A_TIME
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    let serve = ServeProcess::start(&config(&[("chat", listen, "chat", strategy, OPTIONS)]));
    let mut all = join_all(serve.endpoint("chat"), 3);
    // All three stay connected to the end: a member that left would be announced to the others.
    let (mut flooder, stopped) = (all.pop().unwrap(), all.pop().unwrap());
    let mut steady = all.pop().unwrap();
    let kicked = format!(
        "*** {} was disconnected: too slow to keep up\n",
        stopped.name
    );
    // The stopped member's kernel holds little for it, so its queue is full within a moment of
    // the flood's start and its verdict falls well inside the flood even on a slow machine.
    if let Client::Tcp(stream) = &stopped.client {
        socket2::SockRef::from(stream)
            .set_recv_buffer_size(4096)
            .unwrap();
    }
    let mut tally = Tally::new(&flooder.name, &kicked);
    let mut writer = flooder.client.try_clone().unwrap();

    let started = Instant::now();
    let (sent, kick) = thread::scope(|scope| {
        let flood = scope.spawn(|| flood(&mut writer, started));
        let ear = scope.spawn(|| hear_the_kick(&mut flooder, &kicked, started));
        // While the flood lasts: SIP bytes every EVERY, never more.
        let mut slow_bytes = 0;
        while !flood.is_finished() {
            let tick = Instant::now();
            let mut sipped = 0;
            while sipped < SIP {
                tally.reading();
                let chunk = read_some(&mut steady.client, SIP - sipped)
                    .unwrap_or_else(|err| panic!("{strategy}: {tally:?}: {err}"));
                assert!(!chunk.is_empty(), "{strategy}: closed after {tally:?}");
                sipped += chunk.len();
                tally.feed(&chunk);
            }
            slow_bytes += sipped;
            thread::sleep(EVERY.saturating_sub(tick.elapsed()));
        }
        let sent = flood.join().unwrap();
        println!("{strategy} {listen}: the steady reader took {slow_bytes} bytes during the flood");
        // The server may still be relaying what the flooder's last writes left in its socket,
        // and a reader that stopped now would rightly be judged stuck: read on, at full speed,
        // without waiting on the flooder's ear, until every line and the kick's notice (once
        // the ear has heard of the kick) are accounted for.
        let mut ear = Some(ear);
        let mut heard = None;
        let deadline = Instant::now() + CATCH_UP;
        loop {
            if ear.as_ref().is_some_and(|ear| ear.is_finished()) {
                heard = ear.take().map(|ear| ear.join().unwrap());
            }
            let notices = match heard {
                Some(Some(_)) | None => 1,
                Some(None) => 0,
            };
            if tally.accounts_for(sent + notices) && heard.is_some() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{strategy}: {tally:?} of {sent} lines and {notices} notice after the flood"
            );
            tally.reading();
            match read_within(&mut steady.client, 1 << 16, Duration::from_millis(50)) {
                Ok(Some(chunk)) => {
                    assert!(!chunk.is_empty(), "{strategy}: closed after {tally:?}");
                    tally.feed(&chunk);
                }
                Ok(None) => {}
                Err(err) => panic!("{strategy}: {tally:?} of {sent}: {err}"),
            }
        }
        (sent, heard.flatten())
    });

    // Only a message finding a full queue leads to a verdict: with the flood over and relayed,
    // whoever was not dropped by then stays, and the flooder has heard of any kick.
    let kicked_after = kick.unwrap_or_else(|| {
        panic!(
            "{strategy}: the stopped member was not dropped during the flood:\n{}",
            serve.stderr()
        )
    });
    // Still connected, and nothing else was queued for it: its own /who answer comes next.
    assert!(tally.partial.is_empty(), "{strategy}: {tally:?}");
    steady.pending.clear();
    steady.read = 0;
    steady.expect_nothing_queued("lobby");
    drop(stopped);

    assert!(kicked_after >= SLOW_AFTER, "dropped after {kicked_after:?}");
    let log = serve.stderr();
    let verdicts = log.matches("cannot keep up").count();
    assert_eq!(
        verdicts, 1,
        "{strategy}: only the stopped member is too slow:\n{log}"
    );
    println!(
        "{strategy} {listen}: {sent} lines flooded; the steady reader got {} and missed {} (its \
         longest wait between reads {:?}); the stopped member was dropped {kicked_after:?} into the \
         flood",
        tally.lines, tally.missed, tally.longest_gap
    );
}

/// Sends flood lines on `writer` as fast as the server takes them, until [`FLOOD_FOR`] has passed
/// since `started` or [`MAX_LINES`] are out; returns how many were sent.
fn flood(writer: &mut Client, started: Instant) -> usize {
    let mut sent = 0;
    let mut chunk = Vec::with_capacity(LINE * LINES_PER_WRITE);
    while started.elapsed() < FLOOD_FOR && sent < MAX_LINES {
        chunk.clear();
        for seq in sent..sent + LINES_PER_WRITE {
            chunk.extend_from_slice(&flood_line(seq));
        }
        writer.send(&chunk).expect("the flooder's write");
        sent += LINES_PER_WRITE;
    }
    sent
}

/// Flood line `seq`: its number, padding, a newline; [`LINE`] bytes.
fn flood_line(seq: usize) -> Vec<u8> {
    let mut line = format!("{seq:08} ").into_bytes();
    line.resize(LINE - 1, b'x');
    line.push(b'\n');
    line
}

/// The flooder reads nothing but notices (nobody else talks): waits for the stopped member's
/// kick and returns when it came, counted from `started`; `None` if it had not come a read
/// timeout after the flood.
fn hear_the_kick(flooder: &mut Member, kicked: &str, started: Instant) -> Option<Duration> {
    let deadline = started + FLOOD_FOR + common::WAIT;
    while Instant::now() < deadline {
        match flooder.try_line() {
            Ok(line) => {
                assert_eq!(line, kicked, "the flooder heard something else");
                return Some(started.elapsed());
            }
            // A read timeout: look again until the deadline.
            Err(err) if err.starts_with("recv:") => continue,
            Err(err) => panic!("the flooder: {err}"),
        }
    }
    None
}

/// One read of at most `max` bytes within `limit`: `None` if nothing came (the read timeout of
/// the client is set back to [`WAIT`](common::WAIT) after).
fn read_within(client: &mut Client, max: usize, limit: Duration) -> io::Result<Option<Vec<u8>>> {
    set_read_timeout(client, limit)?;
    let read = read_some(client, max);
    set_read_timeout(client, common::WAIT)?;
    match read {
        Ok(chunk) => Ok(Some(chunk)),
        Err(err)
            if matches!(
                err.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) =>
        {
            Ok(None)
        }
        Err(err) => Err(err),
    }
}

fn set_read_timeout(client: &Client, limit: Duration) -> io::Result<()> {
    match client {
        Client::Tcp(stream) => stream.set_read_timeout(Some(limit)),
        Client::Unix(stream) => stream.set_read_timeout(Some(limit)),
        _ => unreachable!("chat members are streams"),
    }
}

/// One read of at most `max` bytes (empty at end of stream), on a stream client.
fn read_some(client: &mut Client, max: usize) -> io::Result<Vec<u8>> {
    let mut buf = vec![0; max];
    let n = match client {
        Client::Tcp(stream) => stream.read(&mut buf)?,
        Client::Unix(stream) => stream.read(&mut buf)?,
        _ => unreachable!("chat members are streams"),
    };
    buf.truncate(n);
    Ok(buf)
}

/// What the steady reader has seen of the flood: lines in order, missed counts, and the notice
/// of the stopped member's kick (which, like any message, it may have missed too).
struct Tally {
    /// `"<flooder>: "`, the prefix of every flood line relayed.
    from: String,
    kicked: String,
    /// The least sequence number the next flood line may carry.
    next: usize,
    lines: usize,
    missed: usize,
    saw_kick: bool,
    /// The longest time between two reads begun (the sleeps between sips included): a reader
    /// the machine left waiting for a core for `slow_after` was not reading, and is rightly
    /// judged stuck (failures print this).
    longest_gap: Duration,
    last_read: Option<Instant>,
    /// Bytes after the last whole line.
    partial: Vec<u8>,
}

impl std::fmt::Debug for Tally {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tally")
            .field("next", &self.next)
            .field("lines", &self.lines)
            .field("missed", &self.missed)
            .field("saw_kick", &self.saw_kick)
            .field("longest_gap", &self.longest_gap)
            .field("partial_bytes", &self.partial.len())
            .finish()
    }
}

impl Tally {
    fn new(flooder: &str, kicked: &str) -> Tally {
        Tally {
            from: format!("{flooder}: "),
            kicked: kicked.to_string(),
            next: 0,
            lines: 0,
            missed: 0,
            saw_kick: false,
            longest_gap: Duration::ZERO,
            last_read: None,
            partial: Vec::new(),
        }
    }

    /// The reader is about to read (whether anything comes or not).
    fn reading(&mut self) {
        let now = Instant::now();
        if let Some(last) = self.last_read.replace(now) {
            self.longest_gap = self.longest_gap.max(now - last);
        }
    }

    fn feed(&mut self, bytes: &[u8]) {
        self.partial.extend_from_slice(bytes);
        let whole = self.partial.iter().rposition(|&b| b == b'\n');
        let Some(end) = whole else {
            return;
        };
        let lines: Vec<u8> = self.partial.drain(..=end).collect();
        for line in lines.split_inclusive(|&b| b == b'\n') {
            self.line(line);
        }
    }

    fn line(&mut self, line: &[u8]) {
        let text = String::from_utf8_lossy(line);
        if let Some(relayed) = line.strip_prefix(self.from.as_bytes()) {
            let seq: usize = text[self.from.len()..self.from.len() + 8]
                .parse()
                .unwrap_or_else(|_| panic!("a flood line without its number: {text:?}"));
            assert!(seq >= self.next, "line {seq} after line {}", self.next - 1);
            assert_eq!(relayed, flood_line(seq), "flood line {seq} was altered");
            self.next = seq + 1;
            self.lines += 1;
        } else if let Some(count) = missed(&text) {
            self.missed += count;
        } else if text == self.kicked {
            assert!(!self.saw_kick, "two notices of one kick");
            self.saw_kick = true;
        } else {
            panic!("the steady reader got {text:?}");
        }
    }

    /// `expected` flood lines and notices were each received or counted missed.
    fn accounts_for(&self, expected: usize) -> bool {
        let seen = self.lines + self.missed + usize::from(self.saw_kick);
        assert!(seen <= expected, "{self:?} is more than {expected}");
        seen == expected
    }
}

/// The count of a "you missed N message(s)" notice.
fn missed(line: &str) -> Option<usize> {
    let rest = line.strip_prefix("*** you missed ")?;
    let (count, rest) = rest.split_once(' ')?;
    let noun = rest.strip_suffix(": your connection did not keep up\n")?;
    matches!(noun, "message" | "messages")
        .then(|| count.parse().ok())
        .flatten()
}
