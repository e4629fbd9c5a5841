//! Chat across several `sockserv serve` instances through a real `redis-server` (the `cluster`
//! option): members on each instance, instances under different strategies sharing rooms, every
//! message exactly once and in order, rooms kept apart, local chat that goes on with Redis killed,
//! delivery that resumes once Redis is back on the same port, presence that expires for an
//! instance killed with SIGKILL, nicks unique across instances, and a password that comes from the
//! environment and is never logged.
//!
//! Each test starts its own `redis-server` on a free loopback port (no persistence) and skips,
//! saying so, only where the binary is not installed. Every read is bounded by the clients' read
//! timeout, every poll by a deadline.

mod chat;
mod cluster;
mod common;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use chat::Member;
use cluster::RedisServer;
use common::{eventually, Client, Endpoint, ServeProcess, WAIT};

/// `presence_ttl` of the test instances, in seconds: a heartbeat every 0.5 s.
const PRESENCE_TTL: f64 = 1.5;
/// `reconnect_max` of the test instances, in seconds.
const RECONNECT_MAX: f64 = 1.0;
/// How long a poll for a state of the cluster may take before the test fails.
const POLL_LIMIT: Duration = Duration::from_secs(15);

/// One chat instance on TCP under `strategy`, in the cluster of `redis` as `node`, its options
/// raised so that pacing never holds a test back. `cluster` adds lines to the cluster table.
fn instance(redis: &RedisServer, node: &str, strategy: &str, cluster: &str) -> ServeProcess {
    let config = config(&redis.url(), node, strategy, cluster);
    ServeProcess::start(&config)
}

/// A chat server `chat` in the cluster, and a `metrics` server beside it.
fn config(url: &str, node: &str, strategy: &str, cluster: &str) -> String {
    format!(
        "[[server]]\nname = \"metrics\"\nlisten = \"tcp://127.0.0.1:0\"\nhandler = \"metrics\"\n\n\
         [[server]]\nname = \"chat\"\nlisten = \"tcp://127.0.0.1:0\"\nhandler = \"chat\"\n\
         strategy = \"{strategy}\"\n\n[server.options]\nrate = 100000\nburst = 1000\n\
         queue_messages = 4096\n\n[server.options.cluster]\nredis = \"{url}\"\nnode = \"{node}\"\n\
         presence_ttl = {PRESENCE_TTL}\nreconnect_max = {RECONNECT_MAX}\n{cluster}\n"
    )
}

/// Members joined in order, one per endpoint, each having read the join notices of those after
/// it, wherever they joined; then each says `sync` and reads everyone else's.
///
/// An instance's link starts with its first member: that member waits until its `/rooms` says the
/// link is up, by when its instance hears the lobby, so that it hears the members who join
/// elsewhere after it. A member may also hear of one that joined *before* it on another instance
/// (that notice waits for its own instance's subscription, and may still be on its way when the
/// member joins): such notices are skipped, and the sync round, which each sender's order puts
/// after its own join notice, makes sure none is left to arrive later.
fn join_across(endpoints: &[&Endpoint]) -> Vec<Member> {
    let mut members: Vec<Member> = Vec::new();
    let mut started: Vec<&Endpoint> = Vec::new();
    for endpoint in endpoints {
        let mut newcomer = Member::join(endpoint);
        let names: Vec<String> = members.iter().map(|m| m.name.clone()).collect();
        if !started.contains(endpoint) {
            started.push(endpoint);
            poll_skipping(&mut newcomer, "/rooms", &names, |answer| {
                answer.contains("cluster link up")
            });
        }
        for (n, member) in members.iter_mut().enumerate() {
            let want = format!("*** {} joined lobby\n", newcomer.name);
            expect_skipping_earlier(member, &want, &names[..n]);
        }
        members.push(newcomer);
    }
    let names: Vec<String> = members.iter().map(|m| m.name.clone()).collect();
    for member in &mut members {
        member.send(b"sync\n");
    }
    for (n, member) in members.iter_mut().enumerate() {
        let mut synced: Vec<&str> = Vec::new();
        while synced.len() < names.len() - 1 {
            let line = member.line();
            if let Some(rest) = chat::strip_time(&line) {
                let from = rest
                    .strip_prefix("From ")
                    .and_then(|r| r.strip_suffix(". msg=sync\n"));
                let from = from.unwrap_or_else(|| panic!("{}: {line:?} in the sync", member.name));
                synced.push(names.iter().find(|name| *name == from).expect("a member"));
            } else {
                assert!(is_join_of(&line, &names[..n]), "{}: {line:?}", member.name);
            }
        }
    }
    members
}

/// Whether `line` is the join notice of one of `earlier`.
fn is_join_of(line: &str, earlier: &[String]) -> bool {
    earlier
        .iter()
        .any(|name| line == format!("*** {name} joined lobby\n"))
}

/// The next line is `want`, after any join notices of `earlier` members.
fn expect_skipping_earlier(member: &mut Member, want: &str, earlier: &[String]) {
    loop {
        let line = member.line();
        if line == want {
            return;
        }
        assert!(
            is_join_of(&line, earlier),
            "{} expected {want:?}, got {line:?}",
            member.name
        );
    }
}

/// The value of the chat server's cluster series `name` in a scrape of `serve`'s `/metrics`.
fn cluster_metric(serve: &ServeProcess, name: &str, strategy: &str) -> Option<u64> {
    let Client::Tcp(mut stream) = Client::connect(serve.endpoint("metrics")).expect("metrics")
    else {
        panic!("the metrics server is on TCP");
    };
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .expect("a request");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("a response");
    let series = format!(
        "sockserv_chat_cluster_{name}{{server=\"chat\",handler=\"chat\",transport=\"tcp\",\
         strategy=\"{strategy}\"}} "
    );
    response
        .lines()
        .find_map(|line| line.strip_prefix(&series))
        .and_then(|value| value.parse().ok())
}

/// Sends `command` (`/who` or `/rooms`) until its answer satisfies `done`, every 50 ms at most for
/// [`POLL_LIMIT`]; the answer, and how long it took. Nobody else may talk meanwhile.
fn poll(member: &mut Member, command: &str, done: impl Fn(&str) -> bool) -> (String, Duration) {
    poll_skipping(member, command, &[], done)
}

/// [`poll`], skipping the join notices of the `earlier` members.
fn poll_skipping(
    member: &mut Member,
    command: &str,
    earlier: &[String],
    done: impl Fn(&str) -> bool,
) -> (String, Duration) {
    let started = Instant::now();
    let answer_start = if command == "/rooms" {
        "*** rooms: "
    } else {
        "*** in "
    };
    loop {
        member.send(format!("{command}\n").as_bytes());
        let mut answer = member.line();
        while is_join_of(&answer, earlier) {
            answer = member.line();
        }
        assert!(
            answer.starts_with(answer_start),
            "{}: {answer:?} came before the answer to {command}",
            member.name
        );
        if done(&answer) {
            return (answer, started.elapsed());
        }
        assert!(
            started.elapsed() < POLL_LIMIT,
            "{}: {command} still answers {answer:?} after {POLL_LIMIT:?}",
            member.name
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The message lines `count` of them, without their time, sorted.
fn messages(member: &mut Member, count: usize) -> Vec<String> {
    let mut got: Vec<String> = (0..count)
        .map(|_| {
            let line = member.line();
            chat::strip_time(&line)
                .unwrap_or_else(|| panic!("{}: not a message: {line:?}", member.name))
                .to_string()
        })
        .collect();
    got.sort();
    got
}

#[test]
fn three_instances_under_three_strategies_deliver_each_message_exactly_once() {
    let Some(redis) = RedisServer::start("exactly_once", &[]) else {
        return;
    };
    let a = instance(&redis, "a", "threading", "");
    let b = instance(&redis, "b", "reactor", "");
    let c = instance(&redis, "c", "pool", "");
    let (ea, eb, ec) = (a.endpoint("chat"), b.endpoint("chat"), c.endpoint("chat"));
    let mut members = join_across(&[ea, eb, ea, ec, eb]);
    for member in &mut members {
        let text = format!("hello from {}", member.name);
        member.send(format!("{text}\n").as_bytes());
    }
    let names: Vec<String> = members.iter().map(|m| m.name.clone()).collect();
    for (n, member) in members.iter_mut().enumerate() {
        let mut want: Vec<String> = names
            .iter()
            .enumerate()
            .filter(|&(other, _)| other != n)
            .map(|(_, name)| format!("From {name}. msg=hello from {name}\n"))
            .collect();
        want.sort();
        assert_eq!(messages(member, want.len()), want, "{}", member.name);
    }
    // A second round: a duplicate of the first would arrive before its sender's second message.
    for member in &mut members {
        member.send(b"second\n");
    }
    for (n, member) in members.iter_mut().enumerate() {
        let mut want: Vec<String> = names
            .iter()
            .enumerate()
            .filter(|&(other, _)| other != n)
            .map(|(_, name)| format!("From {name}. msg=second\n"))
            .collect();
        want.sort();
        assert_eq!(messages(member, want.len()), want, "{}", member.name);
        member.expect_nothing_queued("lobby");
    }
}

#[test]
fn rooms_stay_separate_across_instances() {
    let Some(redis) = RedisServer::start("rooms", &[]) else {
        return;
    };
    let a = instance(&redis, "a", "reactor", "");
    let b = instance(&redis, "b", "threading", "");
    let (ea, eb) = (a.endpoint("chat"), b.endpoint("chat"));
    let mut members = join_across(&[ea, eb, ea, eb]);
    let names: Vec<String> = members.iter().map(|m| m.name.clone()).collect();
    let [a1, b1, a2, b2] = &mut members[..] else {
        unreachable!()
    };
    a1.send(b"/join dev\n");
    a1.expect("*** you are now in room dev\n");
    for member in [&mut *b1, &mut *a2, &mut *b2] {
        member.expect(&format!("*** {} left lobby\n", names[0]));
    }
    b1.send(b"/join dev\n");
    b1.expect("*** you are now in room dev\n");
    a1.expect(&format!("*** {} joined dev\n", names[1]));
    for member in [&mut *a2, &mut *b2] {
        member.expect(&format!("*** {} left lobby\n", names[1]));
    }
    a1.send(b"in dev\n");
    b1.expect_message(&names[0], "in dev");
    a2.send(b"in lobby\n");
    b2.expect_message(&names[2], "in lobby");
    b2.send(b"lobby again\n");
    a2.expect_message(&names[3], "lobby again");
    a1.expect_nothing_queued("dev");
    b1.expect_nothing_queued("dev");
    a2.expect_nothing_queued("lobby");
    b2.expect_nothing_queued("lobby");
}

#[test]
fn a_thousand_messages_from_one_sender_arrive_in_order_on_the_other_instance() {
    let Some(redis) = RedisServer::start("in_order", &[]) else {
        return;
    };
    let a = instance(&redis, "a", "threading", "");
    let b = instance(&redis, "b", "reactor", "");
    let mut members = join_across(&[a.endpoint("chat"), b.endpoint("chat")]);
    let sender = members[0].name.clone();
    let lines: String = (0..1000).map(|n| format!("m{n}\n")).collect();
    let started = Instant::now();
    members[0].send(lines.as_bytes());
    let receiver = &mut members[1];
    for n in 0..1000 {
        receiver.expect_message(&sender, &format!("m{n}"));
    }
    eprintln!("1000 messages across instances in {:?}", started.elapsed());
    receiver.expect_nothing_queued("lobby");
}

#[test]
fn with_redis_killed_local_chat_goes_on_and_resumes_across_once_redis_is_back() {
    let Some(mut redis) = RedisServer::start("redis_down", &[]) else {
        return;
    };
    let a = instance(&redis, "a", "threading", "");
    let b = instance(&redis, "b", "reactor", "");
    let (ea, eb) = (a.endpoint("chat"), b.endpoint("chat"));
    let mut members = join_across(&[ea, eb, ea, eb]);
    let names: Vec<String> = members.iter().map(|m| m.name.clone()).collect();
    assert_eq!(cluster_metric(&a, "link_up", "threading"), Some(1));
    assert!(cluster_metric(&a, "published_total", "threading") > Some(0));
    assert!(cluster_metric(&b, "received_total", "reactor") > Some(0));
    redis.kill();
    let [a1, b1, a2, b2] = &mut members[..] else {
        unreachable!()
    };
    let mut slowest = Duration::ZERO;
    for round in 0..5 {
        for (from, to, name) in [
            (&mut *a1, &mut *a2, &names[0]),
            (&mut *b1, &mut *b2, &names[1]),
        ] {
            let text = format!("while down {round}");
            let sent = Instant::now();
            from.send(format!("{text}\n").as_bytes());
            to.expect_message(name, &text);
            slowest = slowest.max(sent.elapsed());
        }
    }
    eprintln!("slowest local delivery with Redis killed: {slowest:?}");
    assert!(
        slowest < Duration::from_millis(100),
        "a local delivery took {slowest:?} with Redis down"
    );
    for member in [&mut *a1, &mut *b1] {
        let (answer, _) = poll(member, "/rooms", |answer| answer.contains("link down"));
        assert!(answer.contains("lobby (2 here"), "{answer}");
    }
    assert_eq!(cluster_metric(&a, "link_up", "threading"), Some(0));
    // What a1 said while down was not published (dropped, counted).
    assert!(cluster_metric(&a, "dropped_total", "threading") >= Some(5));
    let back = Instant::now();
    redis.restart();
    for member in [&mut *a1, &mut *b1] {
        poll(member, "/rooms", |answer| {
            answer.contains("cluster link up")
        });
    }
    let resumed = back.elapsed();
    eprintln!("link up on both instances {resumed:?} after Redis was started again");
    // The cap, plus a connection and a subscription on a loaded machine.
    let bound = Duration::from_secs_f64(RECONNECT_MAX) + Duration::from_secs(4);
    assert!(resumed < bound, "link up only after {resumed:?}");
    a1.send(b"back\n");
    for member in [&mut *b1, &mut *a2, &mut *b2] {
        member.expect_message(&names[0], "back");
    }
    b2.send(b"back too\n");
    for member in [&mut *a1, &mut *b1, &mut *a2] {
        member.expect_message(&names[3], "back too");
    }
    for member in &mut members {
        member.expect_nothing_queued("lobby");
    }
    // B found what A said while Redis was down missing from A's sequence.
    assert!(
        eventually(WAIT, || cluster_metric(&b, "gaps_total", "reactor")
            >= Some(5)),
        "gaps: {:?}",
        cluster_metric(&b, "gaps_total", "reactor")
    );
    assert_eq!(cluster_metric(&a, "link_up", "threading"), Some(1));
}

#[test]
fn an_instance_killed_with_sigkill_leaves_who_within_the_presence_ttl() {
    let Some(redis) = RedisServer::start("presence", &[]) else {
        return;
    };
    let a = instance(&redis, "a", "pool", "");
    let b = instance(&redis, "b", "threading", "");
    let mut members = join_across(&[a.endpoint("chat"), b.endpoint("chat")]);
    let bob_address = members[1].name.clone();
    members[1].send(b"/nick bob\n");
    members[1].expect("*** you are now bob\n");
    let ann = &mut members[0];
    ann.expect(&format!("*** {bob_address} is now bob\n"));
    let (who, _) = poll(ann, "/who", |answer| answer.contains("bob (elsewhere)"));
    assert!(who.ends_with("; cluster link up\n"), "{who}");
    b.signal("KILL");
    let (who, gone) = poll(ann, "/who", |answer| !answer.contains("bob"));
    eprintln!("a killed instance left /who after {gone:?}: {who:?}");
    let heartbeat = PRESENCE_TTL / 3.0;
    // The lifetime and a heartbeat, plus the scheduling of a loaded machine.
    let bound = Duration::from_secs_f64(PRESENCE_TTL + heartbeat) + Duration::from_secs(8);
    assert!(gone < bound, "still listed after {gone:?}");
    // Its nick's claim expired with it.
    let (answer, _) = poll(ann, "/rooms", |_| true);
    assert!(answer.contains("lobby (1 here)"), "{answer}");
    ann.send(b"/nick bob\n");
    ann.expect("*** you are now bob\n");
}

#[test]
fn a_nick_is_unique_across_the_cluster_look_alikes_included() {
    let Some(redis) = RedisServer::start("nicks", &[]) else {
        return;
    };
    let a = instance(&redis, "a", "reactor", "");
    let b = instance(&redis, "b", "threading", "");
    let mut members = join_across(&[a.endpoint("chat"), b.endpoint("chat")]);
    let names: Vec<String> = members.iter().map(|m| m.name.clone()).collect();
    let [a1, b1] = &mut members[..] else {
        unreachable!()
    };
    a1.send(b"/nick ann\n");
    a1.expect("*** you are now ann\n");
    b1.expect(&format!("*** {} is now ann\n", names[0]));
    for look_alike in ["ann", "ANN", "\u{430}nn"] {
        b1.send(format!("/nick {look_alike}\n").as_bytes());
        b1.expect(&format!(
            "*** error: nick {look_alike:?} is taken on another instance\n"
        ));
    }
    a1.send(b"/quit\n");
    a1.expect("*** bye\n");
    b1.expect("*** ann left lobby\n");
    b1.send(b"/nick ann\n");
    b1.expect("*** you are now ann\n");
}

#[test]
fn the_password_comes_from_the_environment_and_is_never_logged() {
    let Some(redis) = RedisServer::start("password", &["--requirepass", "s3cret-pw"]) else {
        return;
    };
    let url = redis.url().replace("redis://", "redis://:in-url-pw@");
    let var = "SOCKSERV_TEST_CLUSTER_PASSWORD";
    let cluster = format!("password_env = \"{var}\"");
    let start = |node: &str, strategy: &str| {
        let config = config(&url, node, strategy, &cluster);
        ServeProcess::start_limited(&config, 1024, &[(var, "s3cret-pw")])
    };
    let a = start("a", "threading");
    let b = start("b", "reactor");
    let mut members = join_across(&[a.endpoint("chat"), b.endpoint("chat")]);
    let sender = members[0].name.clone();
    members[0].send(b"through a password\n");
    members[1].expect_message(&sender, "through a password");
    for process in [&a, &b] {
        let log = process.stderr();
        assert!(log.contains("through redis://***@127.0.0.1:"), "{log}");
        assert!(
            !log.contains("s3cret-pw") && !log.contains("in-url-pw"),
            "{log}"
        );
    }
    // A wrong password: the link stays down, local chat works, and the log has no password.
    let wrong = ServeProcess::start_limited(
        &config(&redis.url(), "c", "pool", &cluster),
        1024,
        &[(var, "wrong-pw")],
    );
    let mut c1 = Member::join(wrong.endpoint("chat"));
    let (answer, _) = poll(&mut c1, "/rooms", |answer| answer.contains("link down"));
    assert!(answer.contains("lobby (1 here)"), "{answer}");
    assert!(wrong.wait_stderr("chat cluster", 2, POLL_LIMIT));
    assert!(!wrong.stderr().contains("wrong-pw"), "{}", wrong.stderr());
}
