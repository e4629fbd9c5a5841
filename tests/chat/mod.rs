//! The chat tests' view of a member ([`Member`]: a connection read line by line, with the
//! assertions the tests make on it) and their paced load ([`paced_load`]): members that all send and
//! all read at once, each sender keeping at most a window of messages not yet received by everyone,
//! so that no healthy member's queue can fill however the machine schedules the threads.
//!
//! Each test file uses a part of this module, so unused items are allowed here.

#![allow(dead_code)]

use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use super::common::{Client, Endpoint};

/// The time part of the default prefix, `0102 03:04:05 `: `d` is a digit.
pub const TIME_SHAPE: &str = "dddd dd:dd:dd ";

/// `line` without its time part, if it starts with one of the default prefix's shape.
pub fn strip_time(line: &str) -> Option<&str> {
    let head = line.get(..TIME_SHAPE.len())?;
    let shaped = head
        .chars()
        .zip(TIME_SHAPE.chars())
        .all(|(got, want)| match want {
            'd' => got.is_ascii_digit(),
            _ => got == want,
        });
    shaped.then(|| &line[TIME_SHAPE.len()..])
}

/// A chat member seen from outside: a connection and what it read past the last whole line.
pub struct Member {
    pub client: Client,
    pub pending: Vec<u8>,
    /// How much of `pending` was handed out as lines.
    pub read: usize,
    /// How the server calls it: `ip:port` (or the Unix name) until it takes a nick.
    pub name: String,
}

impl Member {
    /// Connects and reads the greeting, which tells the member's name and room.
    pub fn join(endpoint: &Endpoint) -> Member {
        let client = Client::connect(endpoint).expect("connect");
        let mut member = Member {
            client,
            pending: Vec::new(),
            read: 0,
            name: String::new(),
        };
        let greeting = member.line();
        let name = greeting
            .strip_prefix("*** welcome ")
            .and_then(|rest| {
                rest.strip_suffix(", you are in room lobby; /help lists the commands\n")
            })
            .unwrap_or_else(|| panic!("not a greeting: {greeting:?}"));
        member.name = name.to_string();
        member
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.client.send(bytes).expect("send");
    }

    /// The next whole line, `\n` included; fails on end of stream or after the read timeout.
    pub fn line(&mut self) -> String {
        self.try_line()
            .unwrap_or_else(|err| panic!("{}: {err}", self.name))
    }

    pub fn try_line(&mut self) -> Result<String, String> {
        loop {
            let unread = &self.pending[self.read..];
            if let Some(at) = unread.iter().position(|&b| b == b'\n') {
                let line = String::from_utf8(unread[..=at].to_vec());
                self.read += at + 1;
                return line.map_err(|err| err.to_string());
            }
            self.pending.drain(..self.read);
            self.read = 0;
            let chunk = self.client.recv().map_err(|err| format!("recv: {err}"))?;
            if chunk.is_empty() {
                let rest = String::from_utf8_lossy(&self.pending);
                return Err(format!("closed after {rest:?}"));
            }
            self.pending.extend_from_slice(&chunk);
        }
    }

    pub fn expect(&mut self, want: &str) {
        assert_eq!(self.line(), want, "{} expected {want:?}", self.name);
    }

    /// The next line is a message from `from` with `text`, under the default prefix.
    pub fn expect_message(&mut self, from: &str, text: &str) {
        let line = self.line();
        let rest = strip_time(&line).unwrap_or_else(|| panic!("no time in {line:?}"));
        assert_eq!(rest, format!("From {from}. msg={text}\n"), "{}", self.name);
    }

    /// The server closed the connection (after anything still pending).
    pub fn expect_closed(&mut self) {
        match self.client.recv() {
            Ok(chunk) if chunk.is_empty() => {}
            Ok(chunk) => panic!("{}: more after the end: {chunk:?}", self.name),
            Err(err) => panic!("{}: not closed: {err}", self.name),
        }
    }

    /// Nothing was delivered to this member since its last line: its own `/who` answer comes next.
    pub fn expect_nothing_queued(&mut self, room: &str) {
        self.send(b"/who\n");
        let line = self.line();
        assert!(
            line.starts_with(&format!("*** in {room}: ")),
            "{} got {line:?} before its /who answer",
            self.name
        );
    }
}

/// `members` joined in order, each having read the join notices of those after it.
pub fn join_all(endpoint: &Endpoint, count: usize) -> Vec<Member> {
    let mut members: Vec<Member> = Vec::new();
    for _ in 0..count {
        let newcomer = Member::join(endpoint);
        for member in &mut members {
            member.expect(&format!("*** {} joined lobby\n", newcomer.name));
        }
        members.push(newcomer);
    }
    members
}

/// How many messages of each sender each member has received, for pacing and for the verdict.
pub struct Progress {
    /// `counts[member][sender]`.
    counts: Mutex<Vec<Vec<usize>>>,
    changed: Condvar,
}

impl Progress {
    fn new(members: usize) -> Progress {
        Progress {
            counts: Mutex::new(vec![vec![0; members]; members]),
            changed: Condvar::new(),
        }
    }

    /// How many members take part.
    fn members(&self) -> usize {
        self.counts.lock().unwrap().len()
    }

    /// `member` received `sender`'s message `seq`; it must be the next one in order.
    fn record(&self, member: usize, sender: usize, seq: usize) {
        let mut counts = self.counts.lock().unwrap();
        let expected = counts[member][sender];
        assert_eq!(
            seq, expected,
            "member {member} got sender {sender}'s messages out of order"
        );
        counts[member][sender] += 1;
        self.changed.notify_all();
    }

    /// Waits until every member but `sender` has received at least `count` of `sender`'s messages.
    fn wait_delivered(&self, sender: usize, count: usize, limit: Duration) {
        let deadline = Instant::now() + limit;
        let mut counts = self.counts.lock().unwrap();
        while counts
            .iter()
            .enumerate()
            .any(|(member, row)| member != sender && row[sender] < count)
        {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "sender {sender}: message {count} not delivered in time"
            );
            counts = self.changed.wait_timeout(counts, left).unwrap().0;
        }
    }
}

/// Parses `... msg=s<sender> q<seq> <padding>` into (sender, seq).
pub fn parse_load_message(line: &str) -> Option<(usize, usize)> {
    let text = line.split_once("msg=s")?.1;
    let (sender, rest) = text.split_once(" q")?;
    let seq = rest.split(' ').next()?.trim_end();
    Some((sender.parse().ok()?, seq.parse().ok()?))
}

/// What each member of a paced load sends.
#[derive(Debug, Clone, Copy)]
pub struct Load {
    /// Messages per member.
    pub messages: usize,
    /// Bytes per message, newline included.
    pub size: usize,
    /// Messages a sender may have out that not every other member has received yet.
    pub window: usize,
}

/// Every member sends `load.messages` lines while reading everything the others send; member `i`
/// also waits for `notices(i)` lines that are not load messages. Returns each member's notices and
/// how long it all took; panics if a member got a sender's messages out of order or incomplete.
pub fn paced_load(
    members: Vec<Member>,
    load: Load,
    notices: impl Fn(usize) -> usize,
) -> (Vec<Vec<String>>, Duration) {
    let count = members.len();
    let progress = Arc::new(Progress::new(count));
    let started = Instant::now();
    let threads: Vec<_> = members
        .into_iter()
        .enumerate()
        .map(|(index, member)| {
            let progress = Arc::clone(&progress);
            let expected = notices(index);
            thread::spawn(move || run_member(index, member, &progress, load, expected))
        })
        .collect();
    let notices = threads.into_iter().map(|t| t.join().unwrap()).collect();
    (notices, started.elapsed())
}

/// One member of a paced load: a reader thread, and this one sending.
fn run_member(
    index: usize,
    member: Member,
    progress: &Progress,
    load: Load,
    expected_notices: usize,
) -> Vec<String> {
    let mut writer = member.client.try_clone().unwrap();
    let mut reader = member;
    let others = progress.members() - 1;
    thread::scope(|scope| {
        let notices = scope.spawn(|| {
            let mut notices = Vec::new();
            let mut received = 0;
            while received < others * load.messages || notices.len() < expected_notices {
                let line = reader.line();
                match parse_load_message(&line) {
                    Some((sender, seq)) => {
                        progress.record(index, sender, seq);
                        received += 1;
                    }
                    None => notices.push(line),
                }
            }
            notices
        });
        for seq in 0..load.messages {
            if seq >= load.window {
                progress.wait_delivered(index, seq - load.window + 1, Duration::from_secs(20));
            }
            let mut line = format!("s{index} q{seq} ").into_bytes();
            line.resize(load.size.max(line.len() + 1) - 1, b'x');
            line.push(b'\n');
            writer.send(&line).unwrap();
        }
        notices.join().unwrap()
    })
}
