//! What the `pool` and `reactor` strategies promise beyond the matrices of the other test files, from
//! the outside, with the echo handler: the reactor writes a large reply to a client that reads slowly
//! (partial writes, all bytes in order), notices an end of stream that arrives with the last bytes,
//! and stops reading a connection whose output backs up past its bound until the client drains it;
//! the pool queues a connection while its workers are busy and refuses — closes at once, and logs —
//! one more than its queue holds.

mod common;

use std::io::ErrorKind;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::{config, eventually, Client, ServeProcess};

/// `len` bytes in a pattern that shows a lost, doubled or reordered chunk.
fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

fn reactor_echo() -> ServeProcess {
    ServeProcess::start(&config(&[
        ("tcp", "tcp://127.0.0.1:0", "echo", "reactor", "loops = 2"),
        (
            "unix",
            "unix://{dir}/reactor.sock",
            "echo",
            "reactor",
            "loops = 2",
        ),
    ]))
}

/// Sends `message` then shuts the sending side, on a thread; returns the bytes sent so far too.
fn send_all(client: &Client, message: Vec<u8>) -> (thread::JoinHandle<()>, Arc<AtomicUsize>) {
    let mut writer = client.try_clone().unwrap();
    let sent = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&sent);
    let thread = thread::spawn(move || {
        for chunk in message.chunks(64 * 1024) {
            writer.send(chunk).expect("send");
            counter.fetch_add(chunk.len(), Ordering::SeqCst);
        }
        writer.shutdown_write().expect("shutdown");
    });
    (thread, sent)
}

#[test]
fn the_reactor_writes_8_mib_to_a_slow_reader_whole_and_in_order() {
    const LEN: usize = 8 << 20;
    const READ: usize = 32 * 1024;
    let serve = reactor_echo();
    let message = pattern(LEN);
    for name in ["tcp", "unix"] {
        let started = Instant::now();
        let mut reader = Client::connect(serve.endpoint(name)).unwrap();
        let (writer, _) = send_all(&reader, message.clone());
        // Small reads with a pause after each: the server's writes keep finding the socket full.
        let mut echoed = Vec::with_capacity(LEN);
        let mut buf = vec![0; READ];
        loop {
            let n = match &mut reader {
                Client::Tcp(s) => std::io::Read::read(s, &mut buf),
                Client::Unix(s) => std::io::Read::read(s, &mut buf),
                _ => unreachable!(),
            }
            .unwrap_or_else(|err| panic!("{name}: read after {} bytes: {err}", echoed.len()));
            if n == 0 {
                break;
            }
            echoed.extend_from_slice(&buf[..n]);
            thread::sleep(Duration::from_micros(500));
        }
        writer.join().expect("writer");
        let took = started.elapsed();
        assert_eq!(echoed.len(), LEN, "{name}: length");
        assert!(
            echoed == message,
            "{name}: the echo differs from the message"
        );
        assert!(took < Duration::from_secs(20), "{name}: took {took:?}");
        println!("{name}: 8 MiB to a slow reader in {took:?}");
    }
}

#[test]
fn the_reactor_sees_an_end_of_stream_that_arrives_with_the_data() {
    // The peer's FIN right behind its bytes: one readiness event reports both, and a short read
    // must not be taken for "drained" while the end of stream is still to be read.
    let serve = reactor_echo();
    for name in ["tcp", "unix"] {
        for round in 0..20 {
            let mut client = Client::connect(serve.endpoint(name)).unwrap();
            client.send(b"x").unwrap();
            client.shutdown_write().unwrap();
            let rest = client.read_to_end();
            let rest = rest.unwrap_or_else(|err| panic!("{name}, round {round}: no close: {err}"));
            assert_eq!(rest, b"x", "{name}, round {round}");
        }
    }
}

#[test]
fn the_reactor_stops_reading_a_connection_whose_output_backs_up() {
    // Unix stream sockets buffer a few hundred KiB each way (net.core.wmem_default); if the reactor
    // kept reading a client that does not read its echo, the client could send all 32 MiB while
    // the server's memory grew to match. With its 1 MiB bound on pending output it can send the
    // bound plus the sockets' buffers, then its writes block until it reads.
    const LEN: usize = 32 << 20;
    const STALLED_BELOW: usize = 8 << 20;
    let serve = reactor_echo();
    let mut client = Client::connect(serve.endpoint("unix")).unwrap();
    let message = pattern(LEN);
    let (writer, sent) = send_all(&client, message.clone());

    let mut last = (usize::MAX, Instant::now());
    let stalled = eventually(Duration::from_secs(10), || {
        let now = sent.load(Ordering::SeqCst);
        if now != last.0 {
            last = (now, Instant::now());
        }
        last.1.elapsed() > Duration::from_millis(300)
    });
    let at = sent.load(Ordering::SeqCst);
    assert!(stalled, "the writer never stalled (sent {at} bytes)");
    assert!(
        at < STALLED_BELOW,
        "the server took {at} bytes from a client that reads nothing"
    );

    // Reading lets it all through, in order.
    let echoed = client.read_to_end().expect("read");
    writer.join().expect("writer");
    assert_eq!(echoed.len(), LEN);
    assert!(echoed == message, "the echo differs from the message");
    println!("the writer stalled after {at} bytes");
}

/// The echo of `message`, or why not.
fn try_echo(client: &mut Client, message: &[u8]) -> Result<Vec<u8>, String> {
    client.echo(message).map_err(|err| err.to_string())
}

#[test]
fn a_full_pool_queues_one_refuses_the_next_and_serves_the_queued_one_later() {
    let serve = ServeProcess::start(&config(&[(
        "pool",
        "tcp://127.0.0.1:0",
        "echo",
        "pool",
        "workers = 1\nqueue = 1",
    )]));
    let endpoint = serve.endpoint("pool");
    // The worker serves the first connection (the round trip proves it took it from the queue).
    let mut first = Client::connect(endpoint).unwrap();
    assert_eq!(try_echo(&mut first, b"first\n"), Ok(b"first\n".to_vec()));
    // The second waits in the queue; the third finds it full and is closed at once.
    let mut second = Client::connect(endpoint).unwrap();
    second.send(b"second\n").unwrap();
    let mut third = Client::connect(endpoint).unwrap();
    let started = Instant::now();
    match third.recv() {
        Ok(rest) => assert!(rest.is_empty(), "the third got {rest:?}"),
        Err(err) => assert_eq!(err.kind(), ErrorKind::ConnectionReset, "{err}"),
    }
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "not closed at once"
    );
    let logged = eventually(Duration::from_secs(5), || {
        serve
            .stderr()
            .contains("limit: queue (every worker busy, 1 waiting)")
    });
    assert!(logged, "the refusal is not logged:\n{}", serve.stderr());
    // Still queued while the first holds the worker...
    if let Client::Tcp(stream) = &second {
        stream
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
    }
    let early = second.recv();
    assert!(
        early
            .as_ref()
            .is_err_and(|err| err.kind() == ErrorKind::WouldBlock),
        "the queued connection was answered early: {early:?}"
    );
    // ...and served once the first is done.
    first.shutdown_write().unwrap();
    assert_eq!(first.read_to_end().unwrap(), b"");
    if let Client::Tcp(stream) = &second {
        stream.set_read_timeout(Some(common::WAIT)).unwrap();
    }
    let reply = second.recv_until(|got| got.len() >= 7).unwrap();
    assert_eq!(reply, b"second\n");
    second.shutdown_write().unwrap();
    assert_eq!(second.read_to_end().unwrap(), b"");
}
