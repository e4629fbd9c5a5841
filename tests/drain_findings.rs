//! Failing inputs a review of the robustness work found (each now a regression test): a huge
//! `drain_timeout` must not overflow a deadline, and an in-flight reply is finished within the
//! drain. (A server process that ends without being asked: `process_tree.rs`.)

mod common;

use std::fs;
use std::time::Duration;

use common::{config, temp_dir, write_config, Client, ServeProcess};

/// Generous bound for a drain of 1 s plus the forced-close wait and slack.
const EXIT: Duration = Duration::from_secs(8);

/// `sockserv check` accepts `drain_timeout = 1e19` (a "wait for ever" an operator might write), so
/// `serve` must then stop cleanly on SIGTERM. On main the drain's deadline overflows `Instant` and
/// every thread that computes it panics: exit 101.
#[test]
fn an_accepted_huge_drain_timeout_does_not_panic_on_sigterm() {
    let rows = [(
        "e",
        "tcp://127.0.0.1:0",
        "echo",
        "threading",
        "drain_timeout = 1e19",
    )];
    let text = config(&rows);
    let dir = temp_dir();
    let path = write_config(dir.path(), "check.toml", &text);
    let checked = common::run(
        &["check", path.to_str().unwrap()],
        b"",
        Duration::from_secs(10),
    );
    if !checked.status.success() {
        return; // refused up front: fine too
    }
    let mut serve = ServeProcess::start(&text);
    serve.signal("TERM");
    let status = serve.wait_exit(EXIT);
    let stderr = serve.stderr();
    let status = status.unwrap_or_else(|| panic!("still running:\n{stderr}"));
    assert!(status.success(), "{status}\n{stderr}");
}

/// The README: on SIGTERM every server "gives them drain_timeout" — an in-flight reply to a client
/// that is reading (slowly) is finished within the drain (a long one here: the point is that the
/// reply is finished, not how fast), and the process ends as soon as it is.
fn in_flight_reply_survives_sigterm(strategy: &str) {
    let dir = temp_dir();
    let value = "B".repeat(3_000_000);
    fs::write(
        dir.path().join("big.json"),
        format!("{{\"big\": \"{value}\"}}"),
    )
    .unwrap();
    let text = config(&[(
        "s",
        "tcp://127.0.0.1:0",
        "search",
        strategy,
        "drain_timeout = 30\n[server.socket]\nsend_buffer_size = 16384\n[server.options]\nindex = \"big.json\"",
    )]);
    let path = write_config(dir.path(), "sockserv.toml", &text);
    let mut serve = ServeProcess::spawn(dir, &[path.as_os_str()], 1);
    let mut client = Client::connect(serve.endpoint("s")).unwrap();
    let content = br#"{"action": "search", "value": "big"}"#;
    let header = format!(
        r#"{{"byteorder": "little", "content-type": "text/json", "content-encoding": "utf-8", "content-length": {}}}"#,
        content.len()
    );
    let mut frame = (header.len() as u16).to_be_bytes().to_vec();
    frame.extend_from_slice(header.as_bytes());
    frame.extend_from_slice(content);
    client.send(&frame).unwrap();
    // The reply has started; most of it is still in the server when SIGTERM arrives.
    let mut reply = client.recv().unwrap();
    assert!(!reply.is_empty());
    serve.signal("TERM");
    loop {
        match client.recv() {
            Ok(chunk) if chunk.is_empty() => break,
            Ok(chunk) => reply.extend_from_slice(&chunk),
            Err(_) => break,
        }
    }
    let status = serve.wait_exit(EXIT);
    assert!(
        reply.len() > value.len(),
        "{strategy}: the reply was cut at SIGTERM: {} of more than {} bytes\n{}",
        reply.len(),
        value.len(),
        serve.stderr()
    );
    assert!(status.is_some_and(|s| s.success()), "{}", serve.stderr());
}

#[test]
fn threading_finishes_an_in_flight_reply_on_sigterm() {
    in_flight_reply_survives_sigterm("threading");
}

#[test]
fn reactor_finishes_an_in_flight_reply_on_sigterm() {
    in_flight_reply_survives_sigterm("reactor");
}
