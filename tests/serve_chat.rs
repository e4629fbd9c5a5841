//! `sockserv serve` with the chat handler, from the outside: members over TCP and Unix streams,
//! line clients (nc) and raw clients (the tutorial's, no newline), exact bytes on the wire, rooms,
//! a member that never reads among 20 senders (and one that falls behind under the `drop` policy),
//! a flooding sender held back by TCP under the reactor, 50 members × 100 messages, the limits, the client subcommand, and `sockserv check` refusing chat
//! under forking or sync. The helpers live in `chat/mod.rs`. Each case runs under threading and under
//! the reactor (the small ones under a pool too), one line per case in the table below.
//!
//! Every read is bounded (the clients' read timeout), and the load tests pace their senders so that
//! no healthy member ever has more than a window of messages in flight: what they prove is that the
//! server loses nothing and keeps order, not how fast a machine is.

mod chat;
mod common;

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use chat::{join_all, paced_load, Load, Member};
use common::{config, run, temp_dir, write_config, Client, ServeProcess};

/// Runs each case as a test under a strategy: `test_name: case(strategy),`.
macro_rules! cases {
    ($($test:ident: $case:ident($strategy:expr),)*) => {$(
        #[test]
        fn $test() {
            $case($strategy)
        }
    )*};
}

#[rustfmt::skip]
cases! {
    exact_bytes_threading:        three_members_exchange_exact_bytes("threading"),
    exact_bytes_reactor:          three_members_exchange_exact_bytes("reactor"),
    // Under a pool each member holds a worker: the default 16 are plenty for these small rooms.
    exact_bytes_pool:             three_members_exchange_exact_bytes("pool"),
    rooms_pool:                   rooms_do_not_leak_into_each_other("pool"),
    unix_threading:               raw_and_line_clients_talk_over_a_unix_socket("threading"),
    unix_reactor:                 raw_and_line_clients_talk_over_a_unix_socket("reactor"),
    rooms_threading:              rooms_do_not_leak_into_each_other("threading"),
    rooms_reactor:                rooms_do_not_leak_into_each_other("reactor"),
    limits_threading:             limits_cut_long_lines_and_refuse_a_member_too_many("threading"),
    limits_reactor:               limits_cut_long_lines_and_refuse_a_member_too_many("reactor"),
    slow_reader_threading:        a_member_that_never_reads_is_dropped_and_nobody_waits_for_it("threading"),
    slow_reader_reactor:          a_member_that_never_reads_is_dropped_and_nobody_waits_for_it("reactor"),
    drop_policy_threading:        under_the_drop_policy_a_slow_member_stays_and_learns_what_it_missed("threading"),
    drop_policy_reactor:          under_the_drop_policy_a_slow_member_stays_and_learns_what_it_missed("reactor"),
    fifty_by_a_hundred_threading: fifty_members_send_a_hundred_messages_each_and_lose_none("threading"),
    fifty_by_a_hundred_reactor:   fifty_members_send_a_hundred_messages_each_and_lose_none("reactor"),
    hostile_text_threading:       no_member_can_forge_a_notice_or_reach_a_terminal("threading"),
    hostile_text_reactor:         no_member_can_forge_a_notice_or_reach_a_terminal("reactor"),
    hostile_text_pool:            no_member_can_forge_a_notice_or_reach_a_terminal("pool"),
    look_alikes_threading:        a_nick_that_passes_for_one_in_use_is_refused("threading"),
    look_alikes_reactor:          a_nick_that_passes_for_one_in_use_is_refused("reactor"),
    burst_threading:              a_burst_of_300_lines_is_paced_and_every_reader_gets_all(("threading", "disconnect")),
    burst_pool:                   a_burst_of_300_lines_is_paced_and_every_reader_gets_all(("pool", "disconnect")),
    burst_reactor:                a_burst_of_300_lines_is_paced_and_every_reader_gets_all(("reactor", "disconnect")),
    burst_drop_threading:         a_burst_of_300_lines_is_paced_and_every_reader_gets_all(("threading", "drop")),
    burst_drop_pool:              a_burst_of_300_lines_is_paced_and_every_reader_gets_all(("pool", "drop")),
    burst_drop_reactor:           a_burst_of_300_lines_is_paced_and_every_reader_gets_all(("reactor", "drop")),
    grace_threading:              a_stuck_member_is_dropped_only_after_slow_after("threading"),
    grace_reactor:                a_stuck_member_is_dropped_only_after_slow_after("reactor"),
    reset_threading:              a_member_that_resets_is_announced_as_leaving("threading"),
    reset_pool:                   a_member_that_resets_is_announced_as_leaving("pool"),
    reset_reactor:                a_member_that_resets_is_announced_as_leaving("reactor"),
    client_threading:             the_chat_client_takes_a_nick_sends_its_lines_and_prints_the_room("threading"),
    client_reactor:               the_chat_client_takes_a_nick_sends_its_lines_and_prints_the_room("reactor"),
}

/// One chat server on TCP under `strategy`, with extra option lines.
fn serve_tcp(strategy: &str, options: &str) -> ServeProcess {
    let extra = format!("[server.options]\n{options}");
    let extra = if options.is_empty() { "" } else { &extra };
    ServeProcess::start(&config(&[(
        "chat",
        "tcp://127.0.0.1:0",
        "chat",
        strategy,
        extra,
    )]))
}

fn three_members_exchange_exact_bytes(strategy: &str) {
    let serve = serve_tcp(strategy, "");
    let mut all = join_all(serve.endpoint("chat"), 3);
    let [a, b, c] = &mut all[..] else {
        unreachable!()
    };
    let (a_name, b_name, c_name) = (a.name.clone(), b.name.clone(), c.name.clone());
    assert!(a_name.starts_with("127.0.0.1:"), "{a_name}");

    a.send(b"hello from a\n");
    b.expect_message(&a_name, "hello from a");
    c.expect_message(&a_name, "hello from a");

    b.send(b"/nick bob\n");
    b.expect("*** you are now bob\n");
    a.expect(&format!("*** {b_name} is now bob\n"));
    c.expect(&format!("*** {b_name} is now bob\n"));

    // c is the tutorial's client: bare text, no newline.
    c.send(b"raw hi");
    a.expect_message(&c_name, "raw hi");
    b.expect_message(&c_name, "raw hi");

    b.send(b"/me waves\r\n");
    a.expect("* bob waves\n");
    c.expect("* bob waves\n");

    a.send(b"/who\n");
    a.expect(&format!("*** in lobby: {a_name}, bob, {c_name}\n"));
    a.send(b"/nick bob\n/frob\n");
    a.expect("*** error: nick \"bob\" is taken\n");
    a.expect("*** error: unknown command /frob (/help lists the commands)\n");

    c.send(b"quit");
    c.expect("*** bye\n");
    c.expect_closed();
    a.expect(&format!("*** {c_name} left lobby\n"));
    b.expect(&format!("*** {c_name} left lobby\n"));
    a.expect_nothing_queued("lobby");
    b.expect_nothing_queued("lobby");
}

fn raw_and_line_clients_talk_over_a_unix_socket(strategy: &str) {
    let serve = ServeProcess::start(&config(&[(
        "chat",
        "unix://{dir}/chat.sock",
        "chat",
        strategy,
        "",
    )]));
    let mut all = join_all(serve.endpoint("chat"), 2);
    let [raw, liner] = &mut all[..] else {
        unreachable!()
    };
    let raw_name = raw.name.clone();
    assert!(raw_name.starts_with("unix:unnamed#"), "{raw_name}");

    liner.send(b"/nick liner\n");
    liner.expect("*** you are now liner\n");
    raw.expect(&format!("*** {} is now liner\n", liner.name));

    raw.send(b"hello");
    liner.expect_message(&raw_name, "hello");
    // A line client's line split over two sends is one message.
    liner.send(b"hi the");
    thread::sleep(Duration::from_millis(50));
    liner.send(b"re\r\n");
    raw.expect_message("liner", "hi there");
    // Invalid UTF-8 is replaced, never fatal.
    liner.send(b"caf\xe9\n");
    raw.expect_message("liner", "caf\u{fffd}");

    raw.send(b"second");
    liner.expect_message(&raw_name, "second");
    raw.send(b"quit");
    raw.expect("*** bye\n");
    liner.expect(&format!("*** {raw_name} left lobby\n"));
}

fn rooms_do_not_leak_into_each_other(strategy: &str) {
    let serve = serve_tcp(strategy, "");
    let mut all = join_all(serve.endpoint("chat"), 4);
    let [a, b, c, d] = &mut all[..] else {
        unreachable!()
    };
    let (c_name, d_name) = (c.name.clone(), d.name.clone());
    c.send(b"/join dev\n");
    c.expect("*** you are now in room dev\n");
    for lobby in [&mut *a, &mut *b, &mut *d] {
        lobby.expect(&format!("*** {c_name} left lobby\n"));
    }
    d.send(b"/join dev\n");
    d.expect("*** you are now in room dev\n");
    c.expect(&format!("*** {d_name} joined dev\n"));
    a.expect(&format!("*** {d_name} left lobby\n"));
    b.expect(&format!("*** {d_name} left lobby\n"));

    c.send(b"for dev only\n");
    d.expect_message(&c_name, "for dev only");
    a.send(b"for lobby only\n");
    b.expect_message(&a.name.clone(), "for lobby only");
    a.expect_nothing_queued("lobby");
    b.expect_nothing_queued("lobby");
    c.expect_nothing_queued("dev");
    d.expect_nothing_queued("dev");
    a.send(b"/rooms\n");
    a.expect("*** rooms: dev (2), lobby (2)\n");
}

fn limits_cut_long_lines_and_refuse_a_member_too_many(strategy: &str) {
    let serve = serve_tcp(strategy, "max_line = 16\nmax_members = 2");
    let mut all = join_all(serve.endpoint("chat"), 2);
    let [a, b] = &mut all[..] else { unreachable!() };
    // A newline first makes `a` a line client, so its long line is one message however the reads
    // split it (a raw client's every read is a message of its own).
    a.send(b"hi\n");
    b.expect_message(&a.name.clone(), "hi");
    let mut long = b"0123456789abcdef-and-much-more".repeat(1000);
    long.push(b'\n');
    a.send(&long);
    a.send(b"short\n");
    a.expect("*** error: message longer than 16 bytes: cut\n");
    b.expect_message(&a.name.clone(), "0123456789abcdef");
    b.expect_message(&a.name.clone(), "short");

    let mut third = Client::connect(serve.endpoint("chat")).unwrap();
    let refusal = third.recv_until(|got| got.ends_with(b"\n")).unwrap();
    assert_eq!(
        refusal,
        b"*** error: the chat is full (2 members); try again later\n"
    );
    assert!(
        third.recv().unwrap().is_empty(),
        "the refused member is closed"
    );
    a.expect_nothing_queued("lobby");
}

// --- hostile members -------------------------------------------------------------------------------

fn no_member_can_forge_a_notice_or_reach_a_terminal(strategy: &str) {
    let serve = serve_tcp(strategy, "");
    let mut all = join_all(serve.endpoint("chat"), 2);
    let [mallory, ann] = &mut all[..] else {
        unreachable!()
    };
    let mallory_name = mallory.name.clone();
    // A CR and padding: on a terminal the prefix would vanish under a forged notice.
    let padding = " ".repeat(40);
    mallory.send(format!("hi\r*** ann left lobby{padding}\n").as_bytes());
    ann.expect_message(
        &mallory_name,
        &format!("hi\u{fffd}*** ann left lobby{padding}"),
    );
    // Escape sequences (clear the screen, retitle the window, colour) go whole; DEL, a C1 control
    // and a right-to-left override become U+FFFD.
    mallory.send(b"\x1b[2J\x1b[H\x1b]0;owned\x07\x1b[31mred\x1b[0m \x7f \xc2\x85 \xe2\x80\xae!\n");
    ann.expect_message(&mallory_name, "red \u{fffd} \u{fffd} \u{fffd}!");
    mallory.send(b"/me \x1b[5mblinks\x08\n");
    ann.expect(&format!("* {mallory_name} blinks\u{fffd}\n"));
    // A nick with a control is refused, and the refusal shows it escaped.
    mallory.send(b"/nick ann\x1b[8m\n");
    mallory.expect(
        "*** error: a nick may not hold control characters (it held U+001B); \
         use 1 to 32 letters, digits, - or _\n",
    );
    // Nothing else reached ann: no line carried a control character but its newline.
    ann.expect_nothing_queued("lobby");
    let bytes = &ann.pending;
    assert!(
        bytes.iter().all(|&b| b == b'\n' || b >= 0x20 && b != 0x7f),
        "{:?}",
        String::from_utf8_lossy(bytes)
    );
}

fn a_nick_that_passes_for_one_in_use_is_refused(strategy: &str) {
    let serve = serve_tcp(strategy, "");
    let mut all = join_all(serve.endpoint("chat"), 2);
    let [ann, mallory] = &mut all[..] else {
        unreachable!()
    };
    ann.send(b"/nick ann\n");
    ann.expect("*** you are now ann\n");
    mallory.expect(&format!("*** {} is now ann\n", ann.name));
    // Fullwidth a (U+FF41), Cyrillic a (U+0430), capitals: each would pass for ann.
    for look_alike in ["\u{ff41}nn", "\u{430}nn", "ANN", "\u{ff21}nn"] {
        mallory.send(format!("/nick {look_alike}\n").as_bytes());
        mallory.expect(&format!(
            "*** error: nick \"{look_alike}\" is taken: it looks like \"ann\", which is in use\n"
        ));
    }
    mallory.send(b"/nick anna\n");
    mallory.expect("*** you are now anna\n");
    ann.expect(&format!("*** {} is now anna\n", mallory.name));
    ann.send(b"/quit\n");
    ann.expect("*** bye\n");
    mallory.expect("*** ann left lobby\n");
    // Once ann has left, its look-alike is free.
    mallory.send("/nick \u{430}nn\n".as_bytes());
    mallory.expect("*** you are now \u{430}nn\n");
}

/// The case: one member pastes 300 short lines (600 bytes) in one write while two others
/// read continuously. The sender is slowed to its rate (default 100 a second after a burst of 32) at
/// its own connection, so the readers' queues never fill: nobody is called too slow, and under the
/// `drop` policy nobody misses a line. Each strategy, each policy.
fn a_burst_of_300_lines_is_paced_and_every_reader_gets_all((strategy, overflow): (&str, &str)) {
    const LINES: usize = 300;
    let extra = if strategy == "pool" {
        "workers = 8\n"
    } else {
        ""
    };
    let serve = ServeProcess::start(&config(&[(
        "chat",
        "tcp://127.0.0.1:0",
        "chat",
        strategy,
        &format!("{extra}[server.options]\nprefix = '<{{from}}> '\noverflow = '{overflow}'"),
    )]));
    let mut all = join_all(serve.endpoint("chat"), 3);
    let names: Vec<String> = all.iter().map(|m| m.name.clone()).collect();
    let mut sender = all.remove(0);
    let readers: Vec<_> = all
        .into_iter()
        .map(|mut reader| {
            let from = names[0].clone();
            thread::spawn(move || {
                let mut got = Vec::new();
                while got.len() < LINES {
                    got.push(reader.line());
                }
                let expected: Vec<String> = (0..LINES)
                    .map(|n| format!("<{from}> {}\n", letter(n)))
                    .collect();
                assert_eq!(
                    got, expected,
                    "{}: lost, reordered or extra lines",
                    reader.name
                );
                (reader, Instant::now())
            })
        })
        .collect();
    let burst: String = (0..LINES).map(|n| format!("{}\n", letter(n))).collect();
    assert_eq!(burst.len(), 600, "the issue's 600 bytes, in one write");
    let sent = Instant::now();
    sender.send(burst.as_bytes());
    let mut done_readers = Vec::new();
    for reader in readers {
        let (reader, done) = reader.join().expect("a reader lost lines or was dropped");
        done_readers.push(reader);
        // The sender was slowed at its own connection: the last line cannot be relayed before the
        // rate lets it through, (300 - 32) / 100 s after the burst was sent.
        let took = done - sent;
        assert!(
            took >= Duration::from_millis(2680),
            "{strategy}: relayed in {took:?}"
        );
        println!("{strategy}, {overflow}: 300 lines relayed to a reader in {took:?}");
    }
    // Nothing else came: no missed-messages notice, nobody dropped.
    for reader in &mut done_readers {
        reader.expect_nothing_queued("lobby");
    }
    sender.expect_nothing_queued("lobby");
    let log = serve.stderr();
    assert!(!log.contains("cannot keep up"), "{log}");
}

/// The `n`th letter of a repeating alphabet: short lines whose order still shows.
fn letter(n: usize) -> char {
    char::from(b'a' + (n % 26) as u8)
}

/// The flooding sender under the reactor, where the server used to read it anyway (holding
/// up to 256 KiB, then cutting it off): a member tries to write 2 MiB of 4000-byte lines at once,
/// on a non-blocking socket, while two others read. Its writes stall — the server stops reading it
/// while it is over its rate, so its bytes wait in the sockets and TCP pushes back — after no more
/// than what the sockets' buffers and one read hold, far short of what it tried. It then writes the
/// rest as the server reads it, at its rate; nobody is disconnected, and the readers get every line
/// in order.
#[test]
fn under_the_reactor_a_flooding_sender_is_backpressured_and_nobody_is_disconnected() {
    const LINES: usize = 524;
    const LINE: usize = 4000;
    const RATE: usize = 200;
    const BURST: usize = 10;
    /// What may go in before the sender stalls, besides what its rate lets the server read
    /// meanwhile: the server's receive buffer and the sender's send buffer (32 KiB each, which the
    /// kernel doubles), the one 64 KiB read the server makes before it pauses, and 64 KiB of room
    /// for loopback's generosity. Less than the 256 KiB the server used to hold on its own.
    const BUFFERED: usize = 256 * 1024;
    let serve = ServeProcess::start(&config(&[(
        "chat",
        "tcp://127.0.0.1:0",
        "chat",
        "reactor",
        &format!(
            "[server.socket]\nrecv_buffer_size = 32768\n\
             [server.options]\nprefix = '<{{from}}> '\nrate = {RATE}\nburst = {BURST}"
        ),
    )]));
    let mut all = join_all(serve.endpoint("chat"), 3);
    let from = all[0].name.clone();
    let mut sender = all.remove(0);
    let line = |n: usize| format!("{n:06} {}\n", "x".repeat(LINE - 8));
    let readers: Vec<_> = all
        .into_iter()
        .map(|mut reader| {
            let from = from.clone();
            thread::spawn(move || {
                for n in 0..LINES {
                    assert_eq!(
                        reader.line(),
                        format!("<{from}> {}", line(n)),
                        "{}",
                        reader.name
                    );
                }
                (reader, Instant::now())
            })
        })
        .collect();
    let flood: String = (0..LINES).map(line).collect();
    assert!(flood.len() > 2_000_000);
    let common::Client::Tcp(stream) = &mut sender.client else {
        unreachable!()
    };
    socket2::SockRef::from(&*stream)
        .set_send_buffer_size(32 * 1024)
        .unwrap();
    stream.set_nonblocking(true).unwrap();
    let sent = Instant::now();
    let mut written: usize = 0;
    let stalled = loop {
        match stream.write(&flood.as_bytes()[written..]) {
            Ok(n) => written += n,
            Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => break written,
            Err(err) => panic!("the sender's write failed after {written} bytes: {err}"),
        }
        assert!(
            written < flood.len(),
            "all {written} bytes went in: nothing pushed back"
        );
    };
    let rate_let_in = sent.elapsed().as_secs_f64() * (RATE * LINE) as f64;
    assert!(
        stalled < BUFFERED + rate_let_in as usize,
        "{stalled} bytes of the flood went in before the sender stalled"
    );
    println!(
        "the sender stalled after {stalled} of {} bytes",
        flood.len()
    );
    // The rest goes in as the server reads it (a write that waits longer than the client's
    // timeout fails the test).
    stream.set_nonblocking(false).unwrap();
    stream.write_all(&flood.as_bytes()[stalled..]).unwrap();
    let mut done_readers = Vec::new();
    for reader in readers {
        let (reader, done) = reader.join().expect("a reader lost lines or was dropped");
        done_readers.push(reader);
        let took = done - sent;
        let least = Duration::from_secs_f64((LINES - BURST) as f64 / RATE as f64);
        assert!(took >= least, "relayed in {took:?}: faster than the rate");
        println!("{LINES} lines of {LINE} bytes relayed to a reader in {took:?}");
    }
    for reader in &mut done_readers {
        reader.expect_nothing_queued("lobby");
    }
    sender.expect_nothing_queued("lobby");
    let log = serve.stderr();
    assert!(!log.contains("cannot keep up"), "{log}");
    assert!(!log.contains("kept coming"), "{log}");
}

/// A member that never reads is dropped once its queue has been full for `slow_after` with nothing
/// written: never before (the queue cannot be full before the first message), and the others keep
/// everything meanwhile.
fn a_stuck_member_is_dropped_only_after_slow_after(strategy: &str) {
    const SLOW_AFTER: Duration = Duration::from_secs(1);
    let serve = ServeProcess::start(&config(&[(
        "chat",
        "tcp://127.0.0.1:0",
        "chat",
        strategy,
        "[server.socket]\nsend_buffer_size = 4096\n\
         [server.options]\nqueue_messages = 8\nslow_after = 1\nprefix = '{from}: '",
    )]));
    let mut all = join_all(serve.endpoint("chat"), 3);
    let [stuck, sender, reader] = &mut all[..] else {
        unreachable!()
    };
    let stuck_name = stuck.name.clone();
    // The stuck member's socket is made small too, so its queue fills after a few kilobytes.
    if let common::Client::Tcp(stream) = &stuck.client {
        socket2::SockRef::from(stream)
            .set_recv_buffer_size(4096)
            .unwrap();
    }
    let padding = "x".repeat(1000);
    let started = Instant::now();
    let kicked = format!("*** {stuck_name} was disconnected: too slow to keep up\n");
    let mut seq = 0;
    let when = loop {
        assert!(started.elapsed() < Duration::from_secs(20), "never dropped");
        sender.send(format!("{seq} {padding}\n").as_bytes());
        let line = reader.line();
        if line == kicked {
            break started.elapsed();
        }
        assert_eq!(line, format!("{}: {seq} {padding}\n", sender.name));
        seq += 1;
        thread::sleep(Duration::from_millis(20)); // a steady talker, not a flood
    };
    assert!(when >= SLOW_AFTER, "dropped after {when:?}");
    println!(
        "{strategy}: the stuck member was dropped {when:?} into the talk, after {seq} messages"
    );
}

/// A member whose connection is reset (SO_LINGER 0) while messages wait for it leaves like any
/// other member: its room reads "left", never "too slow to keep up".
fn a_member_that_resets_is_announced_as_leaving(strategy: &str) {
    let serve = serve_tcp(strategy, "prefix = '{from}: '");
    let mut all = join_all(serve.endpoint("chat"), 3);
    let [gone, talker, reader] = &mut all[..] else {
        unreachable!()
    };
    gone.send(b"/nick gone\n");
    talker.expect(&format!("*** {} is now gone\n", gone.name));
    reader.expect(&format!("*** {} is now gone\n", gone.name));
    // Messages pile up for `gone`, which reads none of them, then resets.
    for n in 0..50 {
        talker.send(format!("m{n}\n").as_bytes());
    }
    for n in 0..50 {
        reader.expect(&format!("{}: m{n}\n", talker.name));
    }
    let common::Client::Tcp(stream) = &gone.client else {
        unreachable!()
    };
    socket2::SockRef::from(stream)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    all.remove(0); // closes it: a reset, with unread input on both sides
    let [talker, reader] = &mut all[..] else {
        unreachable!()
    };
    talker.expect("*** gone left lobby\n");
    reader.expect("*** gone left lobby\n");
    reader.expect_nothing_queued("lobby");
}

/// A thousand members join one room at once under the reactor, every one reading. Join notices
/// arrive in bursts far larger than a queue (256 messages), yet nobody is dropped: a member is
/// judged slow only when its queue stays full while its peer takes nothing. What did not fit is
/// missed and said, so every member accounts for every later joiner, as a notice or in a missed
/// count.
#[test]
fn a_thousand_members_join_at_once_under_the_reactor_and_none_is_dropped() {
    const MEMBERS: usize = 1000;
    // A listen queue that holds every member at once: with the default (128) most of the thousand
    // handshakes overflow it, and under load the kernel's retransmission backoff can hold a member
    // past the read timeout before it is even accepted — a flake that says nothing about the chat.
    let serve = ServeProcess::start(&config(&[(
        "chat",
        "tcp://127.0.0.1:0",
        "chat",
        "reactor",
        "[server.socket]\nrequest_queue_size = 1024\n[server.options]\nmax_members = 1100",
    )]));
    let endpoint = serve.endpoint("chat").clone();
    let started = Instant::now();
    // Each member's tally: (its name, joined notices + missed messages), shared with the main thread
    // that learns, once all are in, how many joined after each.
    let targets: Arc<(Mutex<HashMap<String, usize>>, Condvar)> = Arc::default();
    let members: Vec<_> = (0..MEMBERS)
        .map(|_| {
            let endpoint = endpoint.clone();
            let targets = Arc::clone(&targets);
            thread::Builder::new()
                .stack_size(256 * 1024)
                .spawn(move || count_later_joiners(&endpoint, &targets))
                .unwrap()
        })
        .collect();
    // Once every member is greeted, a last one asks the room's order, which is the join order.
    let (names, greeted) = &*targets;
    let mut lock = names.lock().unwrap();
    while lock.len() < MEMBERS {
        let left = Duration::from_secs(60).saturating_sub(started.elapsed());
        assert!(!left.is_zero(), "only {} of {MEMBERS} greeted", lock.len());
        lock = greeted.wait_timeout(lock, left).unwrap().0;
    }
    drop(lock);
    let mut last = Member::join(&endpoint);
    last.send(b"/who\n");
    let who = last.line();
    let order: Vec<String> = who
        .strip_prefix("*** in lobby: ")
        .and_then(|rest| rest.strip_suffix('\n'))
        .unwrap_or_else(|| panic!("{who:?}"))
        .split(", ")
        .map(str::to_string)
        .collect();
    assert_eq!(order.len(), MEMBERS + 1);
    {
        let mut lock = names.lock().unwrap();
        for (place, name) in order.iter().enumerate() {
            // The members after it, `last` included.
            lock.insert(name.clone(), order.len() - 1 - place);
        }
    }
    greeted.notify_all();
    // Every member stays connected until all are done: one that left early would be news to the
    // others.
    let mut missed = 0;
    let mut done = Vec::new();
    for member in members {
        let (member, n) = member.join().expect("a member was dropped or lost count");
        done.push(member);
        missed += n;
    }
    let took = started.elapsed();
    assert!(took < Duration::from_secs(120), "took {took:?}");
    let log = serve.stderr();
    assert!(!log.contains("cannot keep up"), "{log}");
    println!("{MEMBERS} members joined in {took:?}; {missed} join notices were missed and said");
}

/// One of the thousand: greeted, its name noted; then it reads join notices and missed counts until
/// they add up to the members that joined after it (told by the main thread). Returns it, still
/// connected, and how many it missed.
fn count_later_joiners(
    endpoint: &common::Endpoint,
    targets: &(Mutex<HashMap<String, usize>>, Condvar),
) -> (Member, usize) {
    let mut member = Member::join(endpoint);
    let (names, greeted) = targets;
    names
        .lock()
        .unwrap()
        .insert(member.name.clone(), usize::MAX);
    greeted.notify_all();
    // Short reads, so that a member that has read everything sees its target when it comes.
    let common::Client::Tcp(stream) = &member.client else {
        unreachable!()
    };
    stream
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(90);
    let (mut counted, mut missed) = (0, 0);
    loop {
        let target = names.lock().unwrap()[&member.name];
        if counted == target {
            return (member, missed);
        }
        assert!(
            counted < target,
            "{}: {counted} joins of {target}",
            member.name
        );
        let line = match member.try_line() {
            Ok(line) => line,
            Err(err) if err.starts_with("recv:") && Instant::now() < deadline => continue,
            Err(err) => panic!("{}: {err} after {counted} joins", member.name),
        };
        if line.ends_with(" joined lobby\n") {
            counted += 1;
        } else if let Some(rest) = line.strip_prefix("*** you missed ") {
            let n: usize = rest.split(' ').next().unwrap().parse().unwrap();
            (counted, missed) = (counted + n, missed + n);
        } else {
            panic!("{}: {line:?}", member.name);
        }
    }
}

// --- load: paced senders ----------------------------------------------------------------------------

fn a_member_that_never_reads_is_dropped_and_nobody_waits_for_it(strategy: &str) {
    const SENDERS: usize = 20;
    const MESSAGES: usize = 40;
    const SIZE: usize = 1000;
    // Default chat options but `slow_after = 0`: no grace, the strict policy (a member is dropped as
    // soon as a message finds its queue full); the grace itself has a test of its own. A small send
    // buffer keeps the kernel from absorbing megabytes for the slow member before its own queue
    // (256 messages) even starts to fill: without it the test would have to push ~5 MB at it,
    // proving the same thing more slowly.
    let serve = ServeProcess::start(&config(&[(
        "chat",
        "tcp://127.0.0.1:0",
        "chat",
        strategy,
        "[server.socket]\nsend_buffer_size = 16384\n[server.options]\nslow_after = 0",
    )]));
    let endpoint = serve.endpoint("chat");
    let mut slow = Member::join(endpoint);
    let senders = join_all(endpoint, SENDERS);
    let slow_name = slow.name.clone();

    let load = Load {
        messages: MESSAGES,
        size: SIZE,
        window: 8,
    };
    let (notices, took) = paced_load(senders, load, |_| 1);
    let kicked = format!("*** {slow_name} was disconnected: too slow to keep up\n");
    for (index, lines) in notices.iter().enumerate() {
        assert_eq!(
            lines,
            std::slice::from_ref(&kicked),
            "sender {index}'s notices"
        );
    }
    // Every message reached every sender, in order (Progress checked it), in bounded time.
    assert!(took < Duration::from_secs(20), "took {took:?}");

    // The slow member was disconnected: what it can still read ends, well short of everything.
    let mut got = slow.pending.len() - slow.read;
    loop {
        match slow.client.recv() {
            Ok(chunk) if chunk.is_empty() => break,
            Ok(chunk) => got += chunk.len(),
            Err(err) if err.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(err) => panic!("the slow member is still connected: {err}"),
        }
    }
    let sent = SENDERS * MESSAGES * SIZE;
    assert!(got < sent, "the slow member got {got} of {sent} bytes");
    println!(
        "{strategy}: {SENDERS} senders × {MESSAGES} in {took:?}; the slow member got {got} of {sent} bytes"
    );
}

fn under_the_drop_policy_a_slow_member_stays_and_learns_what_it_missed(strategy: &str) {
    // The sender pastes 400 kB at once: its rate is lifted, since what is tested is the slow reader
    // (at the default rate the paste would take seconds to go through).
    const MESSAGES: usize = 400;
    let serve = ServeProcess::start(&config(&[(
        "chat",
        "tcp://127.0.0.1:0",
        "chat",
        strategy,
        "[server.socket]\nsend_buffer_size = 16384\n\
         [server.options]\noverflow = \"drop\"\nqueue_messages = 16\n\
         rate = 1000000\nburst = 1000",
    )]));
    let mut all = join_all(serve.endpoint("chat"), 2);
    let [slow, sender] = &mut all[..] else {
        unreachable!()
    };
    let padding = "x".repeat(1000);
    for seq in 0..MESSAGES {
        sender.send(format!("q{seq} {padding}\n").as_bytes());
    }
    // The sender's /who is answered after every message before it was delivered (or dropped).
    sender.expect_nothing_queued("lobby");
    // Each notice stands exactly where its missed messages would have been.
    let (mut next, mut received, mut notices) = (0, 0, 0);
    while next < MESSAGES {
        let line = slow.line();
        if let Some(rest) = line.strip_prefix("*** you missed ") {
            next += rest.split(' ').next().unwrap().parse::<usize>().unwrap();
            notices += 1;
            continue;
        }
        let (_, text) = line
            .split_once("msg=q")
            .unwrap_or_else(|| panic!("{line:?}"));
        let seq: usize = text.split(' ').next().unwrap().parse().unwrap();
        assert_eq!(seq, next, "message {seq} where {next} was due");
        (next, received) = (next + 1, received + 1);
    }
    assert_eq!(next, MESSAGES);
    assert!(notices > 0 && received < MESSAGES, "nothing was dropped");
    sender.send(b"caught up?\n");
    slow.expect_message(&sender.name.clone(), "caught up?");
}

fn fifty_members_send_a_hundred_messages_each_and_lose_none(strategy: &str) {
    const MEMBERS: usize = 50;
    const MESSAGES: usize = 100;
    let serve = serve_tcp(strategy, "");
    let members: Vec<Member> = (0..MEMBERS)
        .map(|_| Member::join(serve.endpoint("chat")))
        .collect();
    let load = Load {
        messages: MESSAGES,
        size: 24,
        window: 4,
    };
    // Nobody read the join notices: member i has one for each member after it.
    let (notices, took) = paced_load(members, load, |i| MEMBERS - 1 - i);
    for (index, lines) in notices.iter().enumerate() {
        assert!(
            lines.iter().all(|line| line.contains(" joined lobby\n")),
            "member {index}: {lines:?}"
        );
    }
    assert!(took < Duration::from_secs(30), "took {took:?}");
    println!("{strategy}: {MEMBERS} members × {MESSAGES} messages in {took:?}");
}

// --- the client subcommand --------------------------------------------------------------------------

fn the_chat_client_takes_a_nick_sends_its_lines_and_prints_the_room(strategy: &str) {
    let serve = serve_tcp(strategy, "");
    let endpoint = serve.endpoint("chat").to_string();
    let mut watcher = Member::join(serve.endpoint("chat"));
    let output = run(
        &["client", "chat", &endpoint, "--nick", "cli"],
        b"hello room\n/who\n",
        Duration::from_secs(10),
    );
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8(output.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines[0].starts_with("*** welcome 127.0.0.1:"), "{stdout}");
    assert_eq!(
        lines[1..],
        [
            "*** you are now cli",
            &*format!("*** in lobby: {}, cli", watcher.name)
        ]
    );

    let joined = watcher.line();
    let address = joined
        .strip_prefix("*** ")
        .and_then(|rest| rest.strip_suffix(" joined lobby\n"))
        .unwrap_or_else(|| panic!("{joined:?}"))
        .to_string();
    watcher.expect(&format!("*** {address} is now cli\n"));
    watcher.expect_message("cli", "hello room");
    watcher.expect("*** cli left lobby\n");
}

#[test]
fn the_chat_client_refuses_a_datagram_endpoint() {
    let output = run(
        &["client", "chat", "udp://127.0.0.1:9"],
        b"",
        Duration::from_secs(10),
    );
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        stderr.contains("use a tcp:// or unix:// endpoint"),
        "{stderr}"
    );
}

// --- the config check -------------------------------------------------------------------------------

#[test]
fn check_refuses_chat_under_forking_or_sync_and_on_datagrams() {
    let dir = temp_dir();
    let text = config(&[
        ("forked", "tcp://127.0.0.1:0", "chat", "forking", ""),
        ("synced", "tcp://127.0.0.1:0", "chat", "sync", ""),
        ("pooled", "tcp://127.0.0.1:0", "chat", "pool", ""),
        ("dgram", "udp://127.0.0.1:0", "chat", "threading", ""),
        ("good", "tcp://127.0.0.1:0", "chat", "threading", ""),
        ("good-too", "unix://{dir}/chat.sock", "chat", "reactor", ""),
    ]);
    let path = write_config(dir.path(), "chat.toml", &text);
    let output = run(
        &["check", path.to_str().unwrap()],
        b"",
        Duration::from_secs(10),
    );
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let stderr = String::from_utf8(output.stderr).unwrap();
    let why = "chat keeps its members and rooms in the memory of one process";
    for expected in [
        format!("server \"forked\": handler \"chat\" cannot run under the forking strategy: {why}"),
        format!("server \"synced\": handler \"chat\" cannot run under the sync strategy: {why}"),
        "(use threading, pool or reactor)".to_string(),
        "server \"dgram\": handler \"chat\" does not serve udp endpoints".to_string(),
    ] {
        assert!(
            stderr.contains(&expected),
            "{expected:?} missing from:\n{stderr}"
        );
    }
    assert!(!stderr.contains("\"good"), "{stderr}");
    assert!(!stderr.contains("\"pooled\""), "a pool runs chat: {stderr}");
}

#[test]
fn check_accepts_the_chat_example() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/config/examples/chat.toml");
    let output = run(&["check", example], b"", Duration::from_secs(10));
    assert!(output.status.success(), "{output:?}");
}
