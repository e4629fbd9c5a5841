//! Round trips against throwaway servers on loopback and in a temp directory: each server thread
//! serves one client with a bounded read timeout, so a failing test cannot hang.

use super::*;
use crate::client::echo::Echo;
use crate::client::exchange::{converse, Dialect};
use crate::client::timestamp::Timestamp;
use std::net::TcpListener;
use std::os::unix::net::UnixListener;
use std::thread;

/// How long a test server waits for its client before giving up.
const SERVER_PATIENCE: Duration = Duration::from_secs(5);
const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);
const STAMP: &[u8] = b"[2024-01-02 03:04:05] ";

type Reply = fn(&[u8]) -> Vec<u8>;

fn echo(data: &[u8]) -> Vec<u8> {
    data.to_vec()
}

fn stamp(data: &[u8]) -> Vec<u8> {
    [STAMP, data].concat()
}

/// Answer every chunk read from `stream` with `reply(chunk)` until EOF or the patience runs out.
fn serve_stream(mut stream: impl Read + Write, reply: Reply) {
    let mut buf = [0; 4096];
    while let Ok(n @ 1..) = stream.read(&mut buf) {
        if stream.write_all(&reply(&buf[..n])).is_err() {
            break;
        }
    }
}

fn tcp_server(reply: Reply) -> Endpoint {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = Endpoint::Tcp(listener.local_addr().unwrap());
    thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        stream.set_read_timeout(Some(SERVER_PATIENCE)).unwrap();
        serve_stream(stream, reply);
    });
    endpoint
}

fn unix_server(dir: &Path, reply: Reply) -> Endpoint {
    let path = dir.join("stream.sock");
    let listener = UnixListener::bind(&path).unwrap();
    thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        stream.set_read_timeout(Some(SERVER_PATIENCE)).unwrap();
        serve_stream(stream, reply);
    });
    Endpoint::Unix(path)
}

fn udp_server(bind: &str, reply: Reply) -> Option<Endpoint> {
    let socket = UdpSocket::bind(bind).ok()?;
    socket.set_read_timeout(Some(SERVER_PATIENCE)).unwrap();
    let endpoint = Endpoint::Udp(socket.local_addr().unwrap());
    thread::spawn(move || {
        let mut buf = [0; MAX_DATAGRAM];
        while let Ok((n, peer)) = socket.recv_from(&mut buf) {
            socket.send_to(&reply(&buf[..n]), peer).unwrap();
        }
    });
    Some(endpoint)
}

fn unix_datagram_server(dir: &Path, reply: Reply) -> Endpoint {
    let path = dir.join("dgram.sock");
    let socket = UnixDatagram::bind(&path).unwrap();
    socket.set_read_timeout(Some(SERVER_PATIENCE)).unwrap();
    thread::spawn(move || {
        let mut buf = [0; MAX_DATAGRAM];
        while let Ok((n, peer)) = socket.recv_from(&mut buf) {
            let peer = peer
                .as_pathname()
                .expect("the client binds a path")
                .to_owned();
            socket.send_to(&reply(&buf[..n]), peer).unwrap();
        }
    });
    Endpoint::UnixDatagram(path)
}

/// Run the request/reply loop over `endpoint` and return what it printed.
fn talk(endpoint: &Endpoint, dialect: &dyn Dialect, messages: &[&[u8]]) -> String {
    let mut connection = Connection::open(endpoint, CLIENT_TIMEOUT).unwrap();
    let messages = messages.iter().map(|m| Ok(m.to_vec()));
    let mut out = Vec::new();
    converse(&mut connection, dialect, messages, &mut out).unwrap();
    String::from_utf8(out).unwrap()
}

fn error_text(err: &anyhow::Error) -> String {
    format!("{err:#}")
}

#[test]
fn echo_over_every_socket_kind() {
    let dir = tempfile::tempdir().unwrap();
    let mut endpoints = vec![
        tcp_server(echo),
        unix_server(dir.path(), echo),
        udp_server("127.0.0.1:0", echo).unwrap(),
        unix_datagram_server(dir.path(), echo),
    ];
    endpoints.extend(udp_server("[::1]:0", echo)); // where the host has IPv6 loopback
    for endpoint in &endpoints {
        let printed = talk(endpoint, &Echo, &[b"hello", b"", b"two words"]);
        assert_eq!(printed, "hello\n\ntwo words\n", "{endpoint}");
    }
}

#[test]
fn timestamp_over_streams_and_datagrams() {
    let dir = tempfile::tempdir().unwrap();
    for endpoint in [
        tcp_server(stamp),
        unix_server(dir.path(), stamp),
        udp_server("127.0.0.1:0", stamp).unwrap(),
        unix_datagram_server(dir.path(), stamp),
    ] {
        let printed = talk(&endpoint, &Timestamp, &[b"first", b"second"]);
        let want = "[2024-01-02 03:04:05] first\n[2024-01-02 03:04:05] second\n";
        assert_eq!(printed, want, "{endpoint}");
    }
}

#[test]
fn a_stream_reply_is_gathered_across_reads() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = Endpoint::Tcp(listener.local_addr().unwrap());
    thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut line = [0; 6];
        stream.read_exact(&mut line).unwrap();
        for byte in line {
            stream.write_all(&[byte]).unwrap();
            thread::sleep(Duration::from_millis(10));
        }
    });
    assert_eq!(talk(&endpoint, &Echo, &[b"hello"]), "hello\n");
}

#[test]
fn no_reply_within_the_timeout_is_a_clear_error() {
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let endpoint = Endpoint::Udp(silent.local_addr().unwrap());
    let mut connection = Connection::open(&endpoint, Duration::from_millis(200)).unwrap();
    connection.send(b"anyone?").unwrap();
    let started = Instant::now();
    let err = connection.receive(&|_| true).unwrap_err();
    assert!(started.elapsed() >= Duration::from_millis(200));
    let no_reply = err.downcast_ref::<NoReply>().expect("a NoReply error");
    assert_eq!(
        no_reply.to_string(),
        format!("no reply from {endpoint} within 0.2 s")
    );
}

#[test]
fn a_stream_reply_that_stops_short_times_out() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = Endpoint::Tcp(listener.local_addr().unwrap());
    let (done, client_done) = std::sync::mpsc::channel::<()>();
    let server = thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        stream.write_all(b"hel").unwrap();
        // Keep the connection open until the client has timed out (bounded, should it not).
        let _ = client_done.recv_timeout(Duration::from_secs(10));
    });
    let mut connection = Connection::open(&endpoint, Duration::from_millis(100)).unwrap();
    connection.send(b"hello\n").unwrap();
    let err = connection.receive(&|got| got.len() >= 6).unwrap_err();
    let _ = done.send(());
    assert!(err.downcast_ref::<NoReply>().is_some(), "{err:#}");
    server.join().unwrap();
}

#[test]
fn a_refused_connection_names_the_endpoint() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let endpoint = Endpoint::Tcp(port); // the listener is gone: nobody listens there now
    let text = error_text(&Connection::open(&endpoint, CLIENT_TIMEOUT).err().unwrap());
    assert!(
        text.starts_with(&format!("cannot connect to {endpoint}: ")),
        "{text}"
    );
    assert!(text.to_lowercase().contains("refused"), "{text}");
}

#[test]
fn udp_with_nobody_listening_is_refused_not_silent() {
    let port = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let endpoint = Endpoint::Udp(port);
    let mut connection = Connection::open(&endpoint, CLIENT_TIMEOUT).unwrap();
    connection.send(b"anyone?").unwrap();
    let text = error_text(&connection.receive(&|_| true).unwrap_err());
    assert!(
        text.starts_with(&format!("cannot receive from {endpoint}: ")),
        "{text}"
    );
    assert!(text.to_lowercase().contains("refused"), "{text}");
}

#[test]
fn missing_unix_sockets_name_the_endpoint() {
    let dir = tempfile::tempdir().unwrap();
    for endpoint in [
        Endpoint::Unix(dir.path().join("none.sock")),
        Endpoint::UnixDatagram(dir.path().join("none.sock")),
    ] {
        let text = error_text(&Connection::open(&endpoint, CLIENT_TIMEOUT).err().unwrap());
        assert!(
            text.starts_with(&format!("cannot connect to {endpoint}: ")),
            "{text}"
        );
    }
}

#[test]
fn a_server_that_hangs_up_is_reported() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = Endpoint::Tcp(listener.local_addr().unwrap());
    thread::spawn(move || drop(listener.accept().unwrap()));
    let mut connection = Connection::open(&endpoint, CLIENT_TIMEOUT).unwrap();
    let _ = connection.send(b"hello\n"); // may or may not fail, depending on timing
    let text = error_text(&connection.receive(&|got| got.len() >= 6).unwrap_err());
    let closed = text == format!("{endpoint} closed the connection without replying");
    assert!(closed || text.contains("reset"), "{text}");
}

#[test]
fn the_unix_datagram_socket_file_goes_away_with_the_connection() {
    let dir = tempfile::tempdir().unwrap();
    let endpoint = unix_datagram_server(dir.path(), echo);
    let connection = Connection::open(&endpoint, CLIENT_TIMEOUT).unwrap();
    let Socket::UnixDatagram { _file: file, .. } = &connection.socket else {
        panic!("not a Unix datagram socket")
    };
    let path = file.path().to_owned();
    assert!(path.starts_with(std::env::temp_dir()), "{}", path.display());
    assert!(path.exists());
    drop(connection);
    assert!(!path.exists(), "{} left behind", path.display());
}

#[test]
fn temp_socket_files_are_unique_and_removed_on_drop() {
    let (a, b) = (TempSocketFile::new(), TempSocketFile::new());
    assert_ne!(a.path(), b.path());
    let path = a.path().to_owned();
    let socket = UnixDatagram::bind(&path).unwrap();
    drop(a);
    assert!(!path.exists());
    drop(socket);
}
