//! `sockserv serve` with the timestamp handler, from the outside: the seed clients' habits (bare text,
//! several rounds on one connection, `text\r\n` on a new connection each time), UDP and Unix datagram
//! replies, and the `line` framing option, each under every strategy. Replies are checked with a
//! hand-written matcher for `[YYYY-mm-dd HH:MM:SS] <data>`.

mod common;

use chrono::{Local, NaiveDateTime};
use common::{config, strip_stamp, Client, ServeProcess, STAMP_LEN};

/// Every case's servers: (name, listen, strategy, framing). The stream cases run under every
/// strategy, the datagram cases too (each datagram answered whole), and line framing on both stream
/// kinds under every strategy.
#[rustfmt::skip]
const MATRIX: &[(&str, &str, &str, &str)] = &[
    ("tcp-sync",             "tcp://127.0.0.1:0",                   "sync",      "chunk"),
    ("tcp-threading",        "tcp://127.0.0.1:0",                   "threading", "chunk"),
    ("tcp-forking",          "tcp://127.0.0.1:0",                   "forking",   "chunk"),
    ("tcp-pool",             "tcp://127.0.0.1:0",                   "pool",      "chunk"),
    ("tcp-reactor",          "tcp://127.0.0.1:0",                   "reactor",   "chunk"),
    ("unix-sync",            "unix://{dir}/ts-sync.sock",           "sync",      "chunk"),
    ("unix-threading",       "unix://{dir}/ts-threading.sock",      "threading", "chunk"),
    ("unix-forking",         "unix://{dir}/ts-forking.sock",        "forking",   "chunk"),
    ("unix-pool",            "unix://{dir}/ts-pool.sock",           "pool",      "chunk"),
    ("unix-reactor",         "unix://{dir}/ts-reactor.sock",        "reactor",   "chunk"),
    ("udp-sync",             "udp://127.0.0.1:0",                   "sync",      "chunk"),
    ("udp-threading",        "udp://127.0.0.1:0",                   "threading", "chunk"),
    ("udp-forking",          "udp://127.0.0.1:0",                   "forking",   "chunk"),
    ("udp-pool",             "udp://127.0.0.1:0",                   "pool",      "chunk"),
    ("udp-reactor",          "udp://127.0.0.1:0",                   "reactor",   "chunk"),
    ("dgram-sync",           "unix-dgram://{dir}/dg-sync.sock",     "sync",      "chunk"),
    ("dgram-threading",      "unix-dgram://{dir}/dg-threading.sock","threading", "chunk"),
    ("dgram-forking",        "unix-dgram://{dir}/dg-forking.sock",  "forking",   "chunk"),
    ("dgram-pool",           "unix-dgram://{dir}/dg-pool.sock",     "pool",      "chunk"),
    ("dgram-reactor",        "unix-dgram://{dir}/dg-reactor.sock",  "reactor",   "chunk"),
    ("tcp-lines-sync",       "tcp://127.0.0.1:0",                   "sync",      "line"),
    ("tcp-lines-threading",  "tcp://127.0.0.1:0",                   "threading", "line"),
    ("tcp-lines-forking",    "tcp://127.0.0.1:0",                   "forking",   "line"),
    ("tcp-lines-pool",       "tcp://127.0.0.1:0",                   "pool",      "line"),
    ("tcp-lines-reactor",    "tcp://127.0.0.1:0",                   "reactor",   "line"),
    ("unix-lines-sync",      "unix://{dir}/tl-sync.sock",           "sync",      "line"),
    ("unix-lines-threading", "unix://{dir}/tl-threading.sock",      "threading", "line"),
    ("unix-lines-forking",   "unix://{dir}/tl-forking.sock",        "forking",   "line"),
    ("unix-lines-pool",      "unix://{dir}/tl-pool.sock",           "pool",      "line"),
    ("unix-lines-reactor",   "unix://{dir}/tl-reactor.sock",        "reactor",   "line"),
];

/// One timestamp server per row of [`MATRIX`].
fn serve_matrix() -> ServeProcess {
    let extras: Vec<String> = MATRIX
        .iter()
        .map(|(_, _, _, framing)| format!("[server.options]\nframing = \"{framing}\""))
        .collect();
    let rows: Vec<_> = MATRIX
        .iter()
        .zip(&extras)
        .map(|(&(name, listen, strategy, _), extra)| {
            (name, listen, "timestamp", strategy, extra.as_str())
        })
        .collect();
    ServeProcess::start(&config(&rows))
}

/// The names of the rows listening on `scheme` (`tcp`, `unix`, `udp`, `unix-dgram`) with `framing`.
fn servers(scheme: &'static str, framing: &'static str) -> impl Iterator<Item = &'static str> {
    MATRIX
        .iter()
        .filter(move |row| row.1.starts_with(&format!("{scheme}://")) && row.3 == framing)
        .map(|row| row.0)
}

/// How far a stamp may be from this process's clock: the server reads the same clock (and the same
/// local time zone), so only the time the reply took and a second boundary separate them.
const CLOCK_SLACK_SECS: i64 = 30;

/// `reply` is `[stamp] data`, the data byte for byte, the stamp in local time and about now.
fn assert_stamped(reply: &[u8], data: &[u8], case: &str) {
    let shown = String::from_utf8_lossy(reply);
    let stripped = strip_stamp(reply).unwrap_or_else(|| panic!("{case}: not stamped: {shown:?}"));
    assert_eq!(stripped, data, "{case}: {shown:?}");
    let stamp = std::str::from_utf8(&reply[1..STAMP_LEN - 2]).unwrap();
    let when = NaiveDateTime::parse_from_str(stamp, "%Y-%m-%d %H:%M:%S").unwrap();
    let off = (Local::now().naive_local() - when).num_seconds().abs();
    assert!(
        off <= CLOCK_SLACK_SECS,
        "{case}: stamp {stamp} is {off} s from now"
    );
}

/// Send `data` and read one stamped reply of the default format's length.
fn stamped_round(client: &mut Client, data: &[u8]) -> Vec<u8> {
    client.send(data).unwrap();
    client
        .recv_until(|got| got.len() >= STAMP_LEN + data.len())
        .unwrap()
}

#[test]
fn the_matcher_knows_a_stamp_from_a_lookalike() {
    assert_eq!(strip_stamp(b"[2024-01-02 03:04:05] hi"), Some(&b"hi"[..]));
    assert_eq!(strip_stamp(b"[2024-01-02 03:04:05] "), Some(&b""[..]));
    for bad in [
        &b"2024-01-02 03:04:05 hi"[..],
        b"[2024-01-02 03:04:05]hi",
        b"[2024-1-02 03:04:05] hi",
        b"[2024-13-02 03:04:05] hi",
        b"[2024-01-02 24:04:05] hi",
        b"[2024-01-02T03:04:05] hi",
        b"[2024-01-02 03:04] hi",
        b"",
    ] {
        assert_eq!(strip_stamp(bad), None, "{:?}", String::from_utf8_lossy(bad));
    }
}

#[test]
fn bare_text_gets_one_reply_per_round_on_one_connection() {
    let serve = serve_matrix();
    for name in servers("tcp", "chunk").chain(servers("unix", "chunk")) {
        let mut client = Client::connect(serve.endpoint(name)).unwrap();
        for round in ["hello", "again", "and a third time"] {
            let reply = stamped_round(&mut client, round.as_bytes());
            assert_stamped(&reply, round.as_bytes(), &format!("{name}, {round:?}"));
        }
        client.shutdown_write().unwrap();
        assert_eq!(
            client.read_to_end().unwrap(),
            b"",
            "{name}: more after the last reply"
        );
    }
}

#[test]
fn text_with_crlf_on_a_new_connection_each_time_keeps_its_crlf() {
    let serve = serve_matrix();
    for name in servers("tcp", "chunk").chain(servers("unix", "chunk")) {
        for round in 0..3 {
            let data = format!("message {round}\r\n").into_bytes();
            let mut client = Client::connect(serve.endpoint(name)).unwrap();
            let reply = stamped_round(&mut client, &data);
            assert_stamped(&reply, &data, &format!("{name}, connection {round}"));
            client.shutdown_write().unwrap();
            assert_eq!(
                client.read_to_end().unwrap(),
                b"",
                "{name}: more after the reply"
            );
        }
    }
}

#[test]
fn every_datagram_gets_exactly_one_stamped_reply() {
    let serve = serve_matrix();
    for name in servers("udp", "chunk").chain(servers("unix-dgram", "chunk")) {
        let mut client = Client::connect(serve.endpoint(name)).unwrap();
        // Three datagrams out before any reply is read: three replies, each answering its own.
        let data: [&[u8]; 3] = [b"one", b"two\r\n", b"three\nlines\n"];
        for datagram in data {
            client.send(datagram).unwrap();
        }
        let mut replies: Vec<Vec<u8>> = (0..3).map(|_| client.recv().unwrap()).collect();
        for reply in &mut replies {
            let shown = String::from_utf8_lossy(reply).into_owned();
            *reply = strip_stamp(reply)
                .unwrap_or_else(|| panic!("{name}: not stamped: {shown:?}"))
                .to_vec();
        }
        // Servers that answer in the serving thread answer in order; a pool's workers may not.
        replies.sort();
        let mut expected: Vec<Vec<u8>> = data.iter().map(|d| d.to_vec()).collect();
        expected.sort();
        assert_eq!(replies, expected, "{name}");
    }
}

#[test]
fn line_framing_answers_two_lines_in_one_write_with_two_stamped_lines() {
    let serve = serve_matrix();
    for name in servers("tcp", "line").chain(servers("unix", "line")) {
        let mut client = Client::connect(serve.endpoint(name)).unwrap();
        client.send(b"first line\nsecond line\r\n").unwrap();
        let reply = client
            .recv_until(|got| got.iter().filter(|&&b| b == b'\n').count() >= 2)
            .unwrap();
        let text = String::from_utf8_lossy(&reply).into_owned();
        let lines: Vec<&[u8]> = reply.split_inclusive(|&b| b == b'\n').collect();
        assert_eq!(lines.len(), 2, "{name}: {text:?}");
        assert_stamped(lines[0], b"first line\n", name);
        assert_stamped(lines[1], b"second line\r\n", name);

        // A partial line waits for its end, then is answered as one line.
        client.send(b"half").unwrap();
        client.send(b" and half\n").unwrap();
        let reply = client.recv_until(|got| got.ends_with(b"\n")).unwrap();
        assert_stamped(&reply, b"half and half\n", name);

        // What is left without a newline at end of input is answered too.
        client.send(b"no newline").unwrap();
        client.shutdown_write().unwrap();
        let rest = client.read_to_end().unwrap();
        assert_stamped(&rest, b"no newline", name);
    }
}
