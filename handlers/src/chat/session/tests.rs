//! Chat sessions driven the way the reactor drives them, without sockets: each member's output is
//! the reactor's own output buffer, of which the test lets "the socket" take what it likes, and wakes
//! are counted and run by hand.

use std::sync::atomic::{AtomicUsize, Ordering};

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

/// A member: its session, its connection's output, and how often it was woken.
struct Member {
    session: ChatSession,
    output: SessionOutput,
    wakes: Arc<Wakes>,
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
        };
        let mut member = Member {
            session: ChatSession::new(Arc::clone(hub), &info),
            output: SessionOutput::default(),
            wakes,
        };
        member.output.event(|ctx| member.session.on_open(ctx));
        member
    }

    fn send(&mut self, bytes: &[u8]) {
        self.output.event(|ctx| self.session.on_data(bytes, ctx));
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

/// Runs `member`'s wakes until `done` holds; the pacer's thread wakes it in real time (bounded).
fn wake_until(member: &mut Member, mut done: impl FnMut(&mut Member) -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !done(member) {
        assert!(std::time::Instant::now() < deadline, "never woken");
        std::thread::yield_now();
        member.wake();
    }
}

#[test]
fn input_over_the_rate_is_held_and_handed_over_as_tokens_come_back() {
    let hub = hub("rate = 200\nburst = 2\nprefix = ''");
    let mut b = Member::join(&hub, 2);
    let mut a = Member::join(&hub, 1);
    b.wake();
    b.read_all();
    a.send(b"1\n2\n3\n4\n");
    b.wake();
    assert_eq!(b.read_all(), "1\n2\n", "the burst goes at once");
    let mut got = String::new();
    wake_until(&mut a, |a| {
        b.wake();
        got.push_str(&b.read_all());
        let _ = a;
        got == "3\n4\n"
    });
}

#[test]
fn end_of_input_waits_for_the_held_input_then_leaves() {
    let hub = hub("rate = 200\nburst = 1\nprefix = ''");
    let mut b = Member::join(&hub, 2);
    let mut a = Member::join(&hub, 1);
    b.wake();
    b.read_all();
    a.send(b"x\ny");
    a.output.event(|ctx| a.session.on_eof(ctx));
    assert_eq!(hub.members(), 2, "y is still held");
    wake_until(&mut a, |_| hub.members() == 1);
    b.wake();
    assert_eq!(b.read_all(), "x\ny\n*** 127.0.0.1:1 left lobby\n");
}

#[test]
fn a_member_that_outruns_what_can_be_held_is_disconnected_as_flooding() {
    let hub = hub("rate = 0.01\nburst = 1\nprefix = ''");
    let mut b = Member::join(&hub, 2);
    let mut a = Member::join(&hub, 1);
    b.wake();
    b.read_all();
    a.read_all();
    let page = b"line\n".repeat(MAX_HELD / 5 + 2); // one line goes, the rest is over MAX_HELD
    a.send(&page);
    assert!(!a.output.closing);
    a.send(b"more\n");
    assert!(a.output.closing);
    assert_eq!(
        a.read_all(),
        "*** error: you kept sending faster than 0.01 messages a second; disconnected\n"
    );
    b.wake();
    assert_eq!(
        b.read_all(),
        "line\n*** 127.0.0.1:1 was disconnected: sending faster than the chat allows\n"
    );
}
