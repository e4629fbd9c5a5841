//! Chat sessions driven the way the reactor drives them, without sockets: each member's output is
//! the reactor's own output buffer, of which the test lets "the socket" take what it likes, wakes
//! are counted and run by hand, and each member's clock moves only when the test moves it (to the
//! time of the wake its session asked for, as the reactor's timer would).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use sockserv_plugin::{Address, SessionWaker};

use super::*;
use crate::chat::options::ChatOptions;
use crate::testing::{SessionOutput, TEST_CONTEXT};

#[derive(Default)]
struct Wakes(AtomicUsize);

impl SessionWaker for Wakes {
    fn wake(&self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// A member: its session, its connection's output, how often it was woken, and its clock.
struct Member {
    session: ChatSession,
    output: SessionOutput,
    wakes: Arc<Wakes>,
    now: Arc<Mutex<Instant>>,
}

impl Member {
    fn join(hub: &Arc<Hub>, port: u16) -> Member {
        let wakes = Arc::new(Wakes::default());
        let peer = Address::Inet(([127, 0, 0, 1], port).into());
        let info = SessionInfo {
            peer: &peer,
            local: &peer,
            server: &TEST_CONTEXT,
            waker: Arc::clone(&wakes) as Arc<dyn SessionWaker>,
            tls: None,
        };
        let now = Arc::new(Mutex::new(Instant::now()));
        let clock = Arc::clone(&now);
        let clock: Clock = Arc::new(move || *clock.lock().unwrap());
        let mut member = Member {
            session: ChatSession::with_clock(Arc::clone(hub), &info, clock),
            output: SessionOutput::default(),
            wakes,
            now,
        };
        member.output.event(|ctx| member.session.on_open(ctx));
        member
    }

    /// The reactor reads `bytes` from the member's socket (never while its reading is paused).
    fn send(&mut self, bytes: &[u8]) {
        assert!(
            !self.output.paused,
            "the reactor reads nothing of a paused member"
        );
        self.output.event(|ctx| self.session.on_data(bytes, ctx));
    }

    /// The member's peer ends its input, and the reactor reads that.
    fn end_input(&mut self) {
        assert!(
            !self.output.paused,
            "the reactor reads nothing of a paused member"
        );
        self.output.event(|ctx| self.session.on_eof(ctx));
    }

    fn now(&self) -> Instant {
        *self.now.lock().unwrap()
    }

    /// The clock moves to `at` and the session is woken (by mail, say), whatever it asked.
    fn wake_at(&mut self, at: Instant) {
        *self.now.lock().unwrap() = at;
        self.output.event(|ctx| self.session.on_wake(ctx));
    }

    /// The reactor's timer: the clock moves to the time the session asked for, which it forgets,
    /// and the session is woken.
    fn timer(&mut self) {
        let at = self.output.wake_at.take().expect("no wake was asked for");
        self.wake_at(at);
    }

    /// Runs the wake the mailbox asked for, if it asked.
    fn wake(&mut self) {
        if self.wakes.0.swap(0, Ordering::SeqCst) > 0 {
            self.output.event(|ctx| self.session.on_wake(ctx));
        }
    }

    /// What the reactor does for a session that asked `wake_when_written`, once its output is out.
    fn wake_when_written(&mut self) {
        assert_eq!(self.output.pending(), 0, "the output is not out yet");
        self.output.event(|ctx| self.session.on_wake(ctx));
    }

    /// The socket takes everything pending (and the peer reads it).
    fn read_all(&mut self) -> String {
        String::from_utf8(self.output.socket_takes(usize::MAX)).unwrap()
    }
}

fn hub(options: &str) -> Arc<Hub> {
    let options = ChatOptions::from_table(&options.parse().unwrap()).unwrap();
    Arc::new(Hub::new("test", Arc::new(options)))
}

#[test]
fn a_message_reaches_the_other_member_on_its_wake_in_exact_bytes() {
    let hub = hub("prefix = '{from}: '");
    let mut a = Member::join(&hub, 1);
    assert_eq!(
        a.read_all(),
        "*** welcome 127.0.0.1:1, you are in room lobby; /help lists the commands\n"
    );
    let mut b = Member::join(&hub, 2);
    b.read_all();
    a.wake();
    assert_eq!(a.read_all(), "*** 127.0.0.1:2 joined lobby\n");
    a.send(b"hi\n/who\n");
    assert_eq!(a.read_all(), "*** in lobby: 127.0.0.1:1, 127.0.0.1:2\n");
    b.wake();
    assert_eq!(b.read_all(), "127.0.0.1:1: hi\n");
}

#[test]
fn quit_writes_the_goodbye_then_closes_and_the_room_hears_of_it() {
    let hub = hub("");
    let mut a = Member::join(&hub, 1);
    let mut b = Member::join(&hub, 2);
    a.wake();
    a.read_all();
    b.send(b"quit");
    assert!(b.output.closing);
    assert!(b.read_all().ends_with("*** bye\n"));
    a.wake();
    assert_eq!(a.read_all(), "*** 127.0.0.1:2 left lobby\n");
    assert_eq!(hub.members(), 1);
}

#[test]
fn end_of_input_leaves_and_closes() {
    let hub = hub("");
    let mut a = Member::join(&hub, 1);
    a.output.event(|ctx| a.session.on_eof(ctx));
    assert!(a.output.closing);
    assert_eq!(hub.members(), 0);
    a.session.on_close();
}

/// `b` reads nothing; `a` says `count` lines; `b` is woken after each.
fn flood(a: &mut Member, b: &mut Member, count: usize) {
    for n in 0..count {
        a.send(format!("m{n}\n").as_bytes());
        b.wake();
    }
}

#[test]
fn unwritten_output_counts_against_the_queue_and_a_full_one_disconnects() {
    // No grace: the turn that finds a line that does not fit finds the member stuck.
    let hub = hub("queue_messages = 3\nprefix = ''\nslow_after = 0");
    let mut b = Member::join(&hub, 2);
    let mut a = Member::join(&hub, 1);
    a.read_all();
    b.wake();
    // b's greeting and the join notice are unwritten: room for one more message.
    flood(&mut a, &mut b, 1);
    assert!(!b.output.closing);
    flood(&mut a, &mut b, 1);
    assert!(
        b.output.closing,
        "a fourth unwritten message is one too many"
    );
    assert_eq!(hub.members(), 1);
    a.wake();
    assert_eq!(
        a.read_all(),
        "*** 127.0.0.1:2 was disconnected: too slow to keep up\n"
    );
    // What b's connection still writes ends short of the second message.
    assert!(b.read_all().ends_with("m0\n"));
}

/// The socket takes none of b's output (its send buffer is full, say, and the kernel lets more in
/// only once much of it is free), yet b's peer is reading: the send queue moves at every turn, and
/// b stays. Once it stands still, b is disconnected `slow_after` later.
#[test]
fn a_moving_send_queue_keeps_a_member_whose_output_stands_still() {
    const SLOW_AFTER: Duration = Duration::from_millis(100);
    let hub = hub("queue_messages = 3\nprefix = ''\nslow_after = 0.1");
    let mut b = Member::join(&hub, 2);
    let mut a = Member::join(&hub, 1);
    a.read_all();
    b.wake();
    b.output.send_queue = Some(4_000_000);
    let started = Instant::now();
    let mut n = 0;
    while started.elapsed() < SLOW_AFTER * 4 {
        flood(&mut a, &mut b, 1);
        assert!(!b.output.closing, "b was dropped while its peer read on");
        b.output.send_queue = b.output.send_queue.map(|queued| queued - 1000);
        n += 1;
        std::thread::sleep(SLOW_AFTER / 5);
    }
    assert_eq!(hub.members(), 2, "after {n} messages");
    // The peer stops: nothing moves any more, and b is judged at the next turns.
    let stopped = Instant::now();
    while !b.output.closing {
        assert!(
            stopped.elapsed() < Duration::from_secs(10),
            "b was never dropped"
        );
        flood(&mut a, &mut b, 1);
        std::thread::sleep(SLOW_AFTER / 5);
    }
    assert!(stopped.elapsed() >= SLOW_AFTER);
    assert_eq!(hub.members(), 1);
}

#[test]
fn reading_makes_room_again() {
    let hub = hub("queue_messages = 3\nprefix = ''");
    let mut b = Member::join(&hub, 2);
    let mut a = Member::join(&hub, 1);
    b.wake();
    for n in 0..10 {
        a.send(format!("m{n}\n").as_bytes());
        b.wake();
        // b reads all but the last 2 bytes: at most one message stays unwritten.
        let keep = 2.min(b.output.pending());
        b.output.socket_takes(b.output.pending() - keep);
    }
    assert!(!b.output.closing);
    assert_eq!(hub.members(), 2);
}

#[test]
fn a_member_whose_socket_takes_one_message_per_message_keeps_its_place() {
    let hub = hub("queue_messages = 3\nprefix = ''");
    let mut b = Member::join(&hub, 2);
    b.read_all();
    let mut a = Member::join(&hub, 1);
    b.wake();
    b.read_all();
    // Messages of 4 bytes each; b's socket takes one per message, so two stay unwritten, then three.
    for n in 0..20 {
        a.send(format!("m{n:02}\n").as_bytes());
        b.wake();
        assert!(!b.output.closing, "kicked at m{n:02}");
        if n < 2 {
            continue;
        }
        // Less than half the buffer goes out, so the written prefix stays in it: it must not count.
        let oldest = String::from_utf8(b.output.socket_takes(4)).unwrap();
        assert_eq!(oldest, format!("m{:02}\n", n - 2));
    }
    assert_eq!(hub.members(), 2);
}

#[test]
fn under_the_drop_policy_the_notice_stands_at_the_gap() {
    let hub = hub("queue_messages = 2\noverflow = 'drop'\nprefix = ''\nslow_after = 0");
    let mut b = Member::join(&hub, 2);
    b.read_all();
    let mut a = Member::join(&hub, 1);
    b.wake();
    // The join notice and m0 fill b's unwritten output; m1 and m2 wait in its outbox (a push
    // cannot know what the loop wrote since), m3 finds both full and is missed.
    flood(&mut a, &mut b, 4);
    assert!(!b.output.closing);
    assert_eq!(b.read_all(), "*** 127.0.0.1:1 joined lobby\nm0\n");
    a.send(b"after\n");
    b.wake();
    assert_eq!(b.read_all(), "m1\nm2\n");
    // b asked to be woken once its output is out: the notice follows, where the gap was.
    b.wake_when_written();
    assert_eq!(
        b.read_all(),
        "*** you missed 2 messages: your connection did not keep up\n"
    );
    a.send(b"caught up\n");
    b.wake();
    assert_eq!(b.read_all(), "caught up\n");
}

#[test]
fn a_full_chat_refuses_the_session_and_closes() {
    let hub = hub("max_members = 1");
    let _a = Member::join(&hub, 1);
    let mut b = Member::join(&hub, 2);
    assert!(b.output.closing);
    assert!(b.read_all().starts_with("*** error: the chat is full"));
}

#[test]
fn over_its_rate_a_member_is_paused_until_its_next_token_then_read_again() {
    let hub = hub("rate = 10\nburst = 2\nprefix = ''");
    let mut b = Member::join(&hub, 2);
    let mut a = Member::join(&hub, 1);
    b.wake();
    b.read_all();
    let start = a.now();
    let token = Duration::from_millis(100);
    a.send(b"1\n2\n3\n4\n");
    b.wake();
    assert_eq!(b.read_all(), "1\n2\n", "the burst goes at once");
    // The rest of the read is held, reading paused, and a wake asked for when a token is due.
    assert_eq!(a.session.held, b"3\n4\n");
    assert!(a.output.paused);
    assert_eq!(a.output.wake_at, Some(start + token));
    // Woken early (mail, say): no token yet, nothing goes, and it stays paused.
    a.wake_at(start + token / 2);
    assert!(a.output.paused);
    assert!(a.output.wake_at >= Some(start + token));
    b.wake();
    assert_eq!(b.read_all(), "");
    // Each token lets one message through; the last one resumes reading.
    a.timer();
    b.wake();
    assert_eq!(b.read_all(), "3\n");
    assert!(a.output.paused);
    a.timer();
    b.wake();
    assert_eq!(b.read_all(), "4\n");
    assert!(!a.output.paused, "nothing held: read on");
    assert!(a.session.held.is_empty());
    // The bucket is empty again: the next read is held whole.
    a.send(b"5\n");
    assert!(a.output.paused);
    a.timer();
    b.wake();
    assert_eq!(b.read_all(), "5\n");
    assert!(a.now() >= start + 3 * token, "three tokens after the burst");
}

#[test]
fn end_of_input_read_after_the_pause_makes_the_partial_line_the_last_message() {
    let hub = hub("rate = 200\nburst = 1\nprefix = ''");
    let mut b = Member::join(&hub, 2);
    let mut a = Member::join(&hub, 1);
    b.wake();
    b.read_all();
    a.send(b"x\ny");
    assert!(a.output.paused, "y waits for a token");
    a.timer();
    assert!(
        !a.output.paused,
        "y is handed over (a partial line) and reading resumes"
    );
    a.end_input();
    assert!(a.output.closing);
    assert_eq!(hub.members(), 1);
    b.wake();
    assert_eq!(b.read_all(), "x\ny\n*** 127.0.0.1:1 left lobby\n");
}

#[test]
fn a_driver_that_reads_on_while_paused_gets_order_and_the_rate_then_a_close_past_max_held() {
    let hub = hub("rate = 10\nburst = 1\nprefix = ''");
    let mut b = Member::join(&hub, 2);
    let mut a = Member::join(&hub, 1);
    let mut c = Member::join(&hub, 3);
    b.wake();
    b.read_all();
    a.send(b"1\n2\n");
    // Not the reactor: this driver reads on although `a` paused, up to its end of stream.
    a.output.event(|ctx| a.session.on_data(b"3\n", ctx));
    a.output.event(|ctx| a.session.on_eof(ctx));
    assert_eq!(hub.members(), 3, "its input is still held");
    a.timer();
    a.timer();
    assert!(a.output.closing);
    b.wake();
    assert_eq!(b.read_all(), "1\n2\n3\n*** 127.0.0.1:1 left lobby\n");
    // Past MAX_HELD, such a driver gets the member closed rather than held without bound.
    c.send(b"1\n2\n");
    let page = vec![b'x'; MAX_HELD];
    c.output.event(|ctx| c.session.on_data(&page, ctx));
    assert!(c.output.closing);
    assert!(c.session.held.is_empty());
}
