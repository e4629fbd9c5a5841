//! The server core through its library API, the equivalent of CPython's test_socketserver for what a
//! program embedding the framework sees: lifecycle, hooks, failures, Unix socket files, descriptors.
//! Real sockets on 127.0.0.1:0, [::1]:0 and temporary Unix paths; every wait is bounded.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use sockserv_framework::{
    Client, Endpoint, Hooks, RequestFailure, Server, ServerError, ServerSettings, Strategy,
};
use sockserv_plugin::{
    Address, HandlerError, HandlerFactory, HandlerResult, Request, RequestHandler,
};

const WAIT: Duration = Duration::from_secs(10);

/// Echo, written against the handler API directly so these tests need no built-in.
struct Echo;

impl RequestHandler for Echo {
    fn handle(&mut self, req: &mut Request<'_>) -> HandlerResult {
        loop {
            let chunk = req.rfile.fill_buf()?;
            if chunk.is_empty() {
                return Ok(());
            }
            let len = chunk.len();
            req.wfile.write_all(chunk)?;
            req.rfile.consume(len);
        }
    }
}

fn echo_factory() -> Arc<dyn HandlerFactory> {
    Arc::new(|| Box::new(Echo) as Box<dyn RequestHandler>)
}

fn settings(endpoint: &str, strategy: Strategy) -> ServerSettings {
    let mut settings = ServerSettings::new("test", endpoint.parse::<Endpoint>().unwrap());
    settings.strategy = strategy;
    settings
}

const THREADING: Strategy = Strategy::Threading { max_threads: None };

/// Serve on a thread; returns the bound endpoint, the shutdown handle and the thread.
fn start(
    mut server: Server,
) -> (
    Endpoint,
    sockserv_framework::Shutdown,
    thread::JoinHandle<()>,
) {
    let endpoint = server.local_endpoint().clone();
    let shutdown = server.shutdown_handle();
    let thread = thread::spawn(move || {
        server.serve_forever().unwrap();
        server.server_close();
    });
    (endpoint, shutdown, thread)
}

fn tcp(endpoint: &Endpoint) -> TcpStream {
    let stream = TcpStream::connect(endpoint.inet().unwrap()).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream
}

fn round_trip(endpoint: &Endpoint, message: &[u8]) -> io::Result<Vec<u8>> {
    let mut stream = tcp(endpoint);
    stream.write_all(message)?;
    stream.shutdown(std::net::Shutdown::Write)?;
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply)?;
    Ok(reply)
}

#[test]
fn echoes_over_ipv4_and_ipv6() {
    for address in ["tcp://127.0.0.1:0", "tcp://[::1]:0"] {
        let Ok(server) = Server::bind(settings(address, THREADING), echo_factory()) else {
            eprintln!("skipping {address}: cannot bind here");
            continue;
        };
        let (endpoint, shutdown, thread) = start(server);
        assert_eq!(
            round_trip(&endpoint, b"hello world\n").unwrap(),
            b"hello world\n"
        );
        shutdown.shutdown();
        thread.join().unwrap();
    }
}

#[test]
fn twenty_servers_shut_down_promptly_right_after_start() {
    for strategy in [Strategy::Sync, THREADING] {
        for _ in 0..20 {
            let server =
                Server::bind(settings("tcp://127.0.0.1:0", strategy), echo_factory()).unwrap();
            let (_, shutdown, thread) = start(server);
            let asked = Instant::now();
            shutdown.shutdown();
            thread.join().unwrap();
            // Woken, not polled: far below socketserver's 0.5 s poll interval even on a busy machine.
            assert!(
                asked.elapsed() < Duration::from_secs(2),
                "took {:?}",
                asked.elapsed()
            );
        }
    }
}

#[test]
fn a_server_closed_before_it_served_releases_port_and_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("never.sock");
    let server = Server::bind(
        settings(&format!("unix://{}", path.display()), THREADING),
        echo_factory(),
    )
    .unwrap();
    assert!(path.exists());
    server.server_close();
    assert!(!path.exists());

    let server = Server::bind(
        settings("tcp://127.0.0.1:0", Strategy::Sync),
        echo_factory(),
    )
    .unwrap();
    let endpoint = server.local_endpoint().clone();
    server.server_close();
    let again = Server::bind(
        settings(&endpoint.to_string(), Strategy::Sync),
        echo_factory(),
    );
    assert!(again.is_ok(), "port not released: {:?}", again.err());
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

#[test]
fn failed_binds_leak_no_descriptors() {
    let taken = Server::bind(
        settings("tcp://127.0.0.1:0", Strategy::Sync),
        echo_factory(),
    )
    .unwrap();
    let busy = taken.local_endpoint().to_string();
    let before = open_fds();
    for _ in 0..1024 {
        let err = Server::bind(settings(&busy, Strategy::Sync), echo_factory())
            .err()
            .unwrap();
        assert!(matches!(err, ServerError::Bind { .. }), "{err}");
    }
    // Other tests open descriptors in parallel: allow their noise, not a leak of 1024.
    assert!(
        open_fds() < before + 64,
        "{} fds before, {} after",
        before,
        open_fds()
    );
}

/// Hooks that refuse everyone and count, or record failures.
#[derive(Default)]
struct Recorder {
    refuse: bool,
    verified: AtomicUsize,
    failures: Mutex<Vec<String>>,
    timeouts: AtomicUsize,
}

impl Hooks for Recorder {
    fn verify_request(&self, _peer: &Address) -> bool {
        self.verified.fetch_add(1, Ordering::SeqCst);
        !self.refuse
    }

    fn handle_error(&self, server: &str, client: Client<'_>, failure: &RequestFailure) {
        self.failures
            .lock()
            .unwrap()
            .push(format!("{server} {} {failure}", client.peer));
    }

    fn handle_timeout(&self) {
        self.timeouts.fetch_add(1, Ordering::SeqCst);
    }
}

/// Counts handler instances and finishes.
#[derive(Default)]
struct Counters {
    made: AtomicUsize,
    finished: AtomicUsize,
}

#[test]
fn verify_request_refusal_closes_the_client_once_and_runs_no_handler() {
    let counters = Arc::new(Counters::default());
    let made = Arc::clone(&counters);
    let factory: Arc<dyn HandlerFactory> = Arc::new(move || {
        made.made.fetch_add(1, Ordering::SeqCst);
        Box::new(Echo) as Box<dyn RequestHandler>
    });
    for strategy in [Strategy::Sync, THREADING] {
        let hooks = Arc::new(Recorder {
            refuse: true,
            ..Recorder::default()
        });
        let mut server =
            Server::bind(settings("tcp://127.0.0.1:0", strategy), factory.clone()).unwrap();
        server.set_hooks(hooks.clone());
        let (endpoint, shutdown, thread) = start(server);
        let mut client = tcp(&endpoint);
        let mut buf = [0u8; 16];
        // Closed at once: end-of-file (or a reset if the write raced the close), never data.
        let _ = client.write_all(b"hello");
        assert!(matches!(client.read(&mut buf), Ok(0) | Err(_)));
        shutdown.shutdown();
        thread.join().unwrap();
        assert_eq!(hooks.verified.load(Ordering::SeqCst), 1);
    }
    assert_eq!(counters.made.load(Ordering::SeqCst), 0);
}

/// Fails the first request with an error, panics in the second, echoes the rest; counts finishes.
struct Flaky {
    nth: usize,
    counters: Arc<Counters>,
}

impl RequestHandler for Flaky {
    fn handle(&mut self, req: &mut Request<'_>) -> HandlerResult {
        match self.nth {
            0 => Err(HandlerError::Protocol("first request refused".into())),
            1 => panic!("second request panics"),
            _ => Echo.handle(req),
        }
    }

    fn finish(&mut self, _req: &mut Request<'_>) -> HandlerResult {
        self.counters.finished.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

#[test]
fn handler_errors_and_panics_are_reported_and_serving_goes_on() {
    for strategy in [Strategy::Sync, THREADING] {
        let counters = Arc::new(Counters::default());
        let for_factory = Arc::clone(&counters);
        let factory: Arc<dyn HandlerFactory> = Arc::new(move || {
            let nth = for_factory.made.fetch_add(1, Ordering::SeqCst);
            Box::new(Flaky {
                nth,
                counters: Arc::clone(&for_factory),
            }) as Box<dyn RequestHandler>
        });
        let hooks = Arc::new(Recorder::default());
        let mut server = Server::bind(settings("tcp://127.0.0.1:0", strategy), factory).unwrap();
        server.set_hooks(hooks.clone());
        let (endpoint, shutdown, thread) = start(server);
        assert_eq!(round_trip(&endpoint, b"one").unwrap_or_default(), b"");
        assert_eq!(round_trip(&endpoint, b"two").unwrap_or_default(), b"");
        assert_eq!(round_trip(&endpoint, b"three").unwrap(), b"three");
        shutdown.shutdown();
        thread.join().unwrap();
        let failures = hooks.failures.lock().unwrap().clone();
        assert_eq!(failures.len(), 2, "{failures:?}");
        assert!(failures[0].contains("handle failed: protocol error: first request refused"));
        assert!(failures[1].contains("handle panicked: second request panics"));
        assert!(failures.iter().all(|f| f.starts_with("test 127.0.0.1:")));
        // finish ran for the failed, the panicked and the good request alike.
        assert_eq!(counters.finished.load(Ordering::SeqCst), 3);
    }
}

#[test]
fn handle_request_serves_exactly_one_or_times_out() {
    let mut settings = settings("tcp://127.0.0.1:0", Strategy::Sync);
    settings.timeout = Some(Duration::from_millis(50));
    let hooks = Arc::new(Recorder::default());
    let mut server = Server::bind(settings, echo_factory()).unwrap();
    server.set_hooks(hooks.clone());
    assert!(!server.handle_request().unwrap());
    assert_eq!(hooks.timeouts.load(Ordering::SeqCst), 1);

    let endpoint = server.local_endpoint().clone();
    let client = thread::spawn(move || round_trip(&endpoint, b"just one").unwrap());
    let mut served = false;
    for _ in 0..200 {
        if server.handle_request().unwrap() {
            served = true;
            break;
        }
    }
    assert!(served);
    assert_eq!(client.join().unwrap(), b"just one");
    server.server_close();
}

/// Reads the request, asks its own server to stop, then answers. (Reading first matters: closing a
/// connection with unread input resets it, and the reset can overtake the answer.)
struct Stopper;

impl RequestHandler for Stopper {
    fn handle(&mut self, req: &mut Request<'_>) -> HandlerResult {
        req.rfile.read_to_end(&mut Vec::new())?;
        req.server.shutdown();
        req.wfile.write_all(req.server.server_name().as_bytes())?;
        Ok(())
    }
}

#[test]
fn a_handler_can_shut_its_own_server_down_without_deadlock() {
    for strategy in [Strategy::Sync, THREADING] {
        let factory: Arc<dyn HandlerFactory> =
            Arc::new(|| Box::new(Stopper) as Box<dyn RequestHandler>);
        let server = Server::bind(settings("tcp://127.0.0.1:0", strategy), factory).unwrap();
        let (endpoint, _shutdown, thread) = start(server);
        assert_eq!(round_trip(&endpoint, b"stop").unwrap(), b"test");
        thread.join().unwrap();
    }
}

#[test]
fn threading_close_drains_connections_that_never_hang_up() {
    let server = Server::bind(settings("tcp://127.0.0.1:0", THREADING), echo_factory()).unwrap();
    let (endpoint, shutdown, thread) = start(server);
    let mut idle = tcp(&endpoint);
    idle.write_all(b"ping").unwrap();
    let mut buf = [0u8; 4];
    idle.read_exact(&mut buf).unwrap();
    shutdown.shutdown();
    thread.join().unwrap();
    // The server shut the connection down for reading; its handler ended and closed it.
    assert_eq!(idle.read(&mut buf).unwrap(), 0);
}

#[test]
fn bounded_threading_waits_for_a_free_thread() {
    let strategy = Strategy::Threading {
        max_threads: Some(1),
    };
    let server = Server::bind(settings("tcp://127.0.0.1:0", strategy), echo_factory()).unwrap();
    let (endpoint, shutdown, thread) = start(server);
    let mut first = tcp(&endpoint);
    first.write_all(b"1").unwrap();
    let mut buf = [0u8; 1];
    first.read_exact(&mut buf).unwrap();
    let second_endpoint = endpoint.clone();
    let second = thread::spawn(move || round_trip(&second_endpoint, b"2").unwrap());
    thread::sleep(Duration::from_millis(100));
    assert!(
        !second.is_finished(),
        "the second client was served while the only thread was busy"
    );
    drop(first);
    assert_eq!(second.join().unwrap(), b"2");
    shutdown.shutdown();
    thread.join().unwrap();
}

fn unix_settings(path: &Path, datagram: bool) -> ServerSettings {
    let scheme = if datagram { "unix-dgram" } else { "unix" };
    settings(&format!("{scheme}://{}", path.display()), THREADING)
}

#[test]
fn unix_socket_files_stale_live_and_foreign() {
    let dir = tempfile::tempdir().unwrap();
    for datagram in [false, true] {
        let path = dir.path().join(if datagram { "d.sock" } else { "s.sock" });
        // A stale file: a socket that was bound and closed without removing its file.
        if datagram {
            drop(UnixDatagram::bind(&path).unwrap());
        } else {
            drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        }
        assert!(path.exists());
        let live = Server::bind(unix_settings(&path, datagram), echo_factory()).unwrap();
        let err = Server::bind(unix_settings(&path, datagram), echo_factory())
            .err()
            .unwrap();
        assert!(matches!(err, ServerError::UnixSocketInUse { .. }), "{err}");
        drop(live);
        assert!(!path.exists());
    }
    let regular = dir.path().join("not-a-socket");
    std::fs::write(&regular, b"keep me").unwrap();
    let err = Server::bind(unix_settings(&regular, false), echo_factory())
        .err()
        .unwrap();
    assert!(matches!(err, ServerError::NotASocket { .. }), "{err}");
    assert_eq!(std::fs::read(&regular).unwrap(), b"keep me");
}

/// A live server whose backlog is full (it is not accepting) still holds its path: a second bind
/// says "in use" at once instead of waiting in connect(2) for the backlog to drain, and never
/// removes the live server's file.
#[test]
fn a_live_socket_with_a_full_backlog_is_in_use_at_once() {
    use socket2::{Domain, SockAddr, Socket, Type};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("busy.sock");
    let mut busy = unix_settings(&path, false);
    busy.socket.request_queue_size = 1;
    let live = Server::bind(busy, echo_factory()).unwrap();
    let mut queued = Vec::new();
    let full = (0..256).any(|_| {
        let client = Socket::new(Domain::UNIX, Type::STREAM.nonblocking(), None).unwrap();
        let connected = client.connect(&SockAddr::unix(&path).unwrap());
        queued.push(client);
        matches!(connected, Err(err) if err.kind() == io::ErrorKind::WouldBlock)
    });
    assert!(full, "the backlog never filled");
    let started = Instant::now();
    let err = Server::bind(unix_settings(&path, false), echo_factory())
        .err()
        .unwrap();
    assert!(matches!(err, ServerError::UnixSocketInUse { .. }), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert!(path.exists(), "the live server's file was removed");
    drop(live);
}

#[test]
fn unix_socket_mode_is_applied() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mode.sock");
    let mut settings = unix_settings(&path, false);
    settings.socket.unix_mode = Some(0o600);
    let server = Server::bind(settings, echo_factory()).unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let (_, shutdown, thread) = start(server);
    let mut client = UnixStream::connect(&path).unwrap();
    client.set_read_timeout(Some(WAIT)).unwrap();
    client.write_all(b"hi").unwrap();
    let mut buf = [0u8; 2];
    client.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"hi");
    shutdown.shutdown();
    thread.join().unwrap();
}

#[test]
fn oversized_datagrams_are_reported_not_cut() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.sock");
    let mut settings = unix_settings(&path, true);
    settings.max_packet_size = 16;
    let hooks = Arc::new(Recorder::default());
    let mut server = Server::bind(settings, echo_factory()).unwrap();
    server.set_hooks(hooks.clone());
    let (_, shutdown, thread) = start(server);
    let client_path = dir.path().join("client.sock");
    let client = UnixDatagram::bind(&client_path).unwrap();
    client.set_read_timeout(Some(WAIT)).unwrap();
    client.send_to(&[b'x'; 17], &path).unwrap();
    client.send_to(&[b'y'; 16], &path).unwrap();
    let mut buf = [0u8; 64];
    let n = client.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], &[b'y'; 16]);
    shutdown.shutdown();
    thread.join().unwrap();
    let failures = hooks.failures.lock().unwrap().clone();
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert!(
        failures[0].contains("larger than max_packet_size (16 bytes)"),
        "{failures:?}"
    );
}

#[test]
fn forking_is_refused_in_a_multi_threaded_process() {
    // The test harness runs this test on a thread of its own, so this process is multi-threaded.
    let strategy = Strategy::Forking { max_children: 4 };
    let mut server = Server::bind(settings("tcp://127.0.0.1:0", strategy), echo_factory()).unwrap();
    let err = server.serve_forever().err().unwrap();
    assert!(matches!(err, ServerError::ForkWithThreads { .. }), "{err}");
}

/// Hooks that panic: `verify_request` for the first client, `service_actions` and `handle_error`
/// every time.
#[derive(Default)]
struct Panicky {
    verified: AtomicUsize,
}

impl Hooks for Panicky {
    fn verify_request(&self, _peer: &Address) -> bool {
        if self.verified.fetch_add(1, Ordering::SeqCst) == 0 {
            panic!("verify_request panics for the first client");
        }
        true
    }

    fn handle_error(&self, _server: &str, _client: Client<'_>, _failure: &RequestFailure) {
        panic!("handle_error panics too");
    }

    fn service_actions(&self) {
        panic!("service_actions panics on every turn");
    }
}

/// A panicking hook never ends the serving loop: the peer its `verify_request` panicked on is
/// refused, and the next clients are served.
#[test]
fn panicking_hooks_refuse_one_peer_and_the_loop_goes_on() {
    for strategy in [Strategy::Sync, THREADING] {
        let hooks = Arc::new(Panicky::default());
        let mut server =
            Server::bind(settings("tcp://127.0.0.1:0", strategy), echo_factory()).unwrap();
        server.set_hooks(hooks.clone());
        let (endpoint, shutdown, thread) = start(server);
        let mut refused = tcp(&endpoint);
        let mut buf = [0u8; 16];
        let _ = refused.write_all(b"hello");
        assert!(matches!(refused.read(&mut buf), Ok(0) | Err(_)));
        for n in 0..3 {
            let message = format!("after the panic {n}");
            assert_eq!(
                round_trip(&endpoint, message.as_bytes()).unwrap(),
                message.as_bytes()
            );
        }
        shutdown.shutdown();
        thread.join().expect("the serving thread did not panic");
        assert_eq!(hooks.verified.load(Ordering::SeqCst), 4);
    }
}

/// A UDP port in use cannot be taken over: without an explicit `reuse_address`, a second server
/// on it fails to bind, as it does for TCP, instead of sharing the port's datagrams.
#[test]
fn a_udp_port_in_use_cannot_be_bound_again() {
    let first = Server::bind(settings("udp://127.0.0.1:0", THREADING), echo_factory()).unwrap();
    let taken = first.local_endpoint().to_string();
    let err = Server::bind(settings(&taken, THREADING), echo_factory())
        .err()
        .expect("a second server bound a UDP port in use");
    assert!(matches!(err, ServerError::Bind { .. }), "{err}");
    assert!(err.to_string().contains("in use"), "{err}");
    // Opting in still works, for a deliberate port-sharing setup (both sockets opt in).
    let mut shared = settings("udp://127.0.0.1:0", THREADING);
    shared.socket.reuse_address = true;
    let one = Server::bind(shared.clone(), echo_factory()).unwrap();
    shared.endpoint = one.local_endpoint().clone();
    Server::bind(shared, echo_factory()).expect("both opted in to SO_REUSEADDR");
}

/// A Unix socket file gets the owner and group the settings name (systemd's `SocketUser=` and
/// `SocketGroup=`). Changing a file's owner needs root: elsewhere the test says so and stops.
#[test]
fn unix_socket_owner_and_group_are_applied() {
    use std::os::unix::fs::MetadataExt;
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let root = status
        .lines()
        .any(|line| line.starts_with("Uid:") && line.split_whitespace().nth(1) == Some("0"));
    if !root {
        eprintln!("not root: cannot give a file another owner here; skipped");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("owned.sock");
    let mut settings = unix_settings(&path, false);
    settings.socket.unix_owner = Some(65534);
    settings.socket.unix_group = Some(65534);
    settings.socket.unix_mode = Some(0o660);
    let server = Server::bind(settings, echo_factory()).unwrap();
    let meta = std::fs::metadata(&path).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (65534, 65534));
    assert_eq!(meta.mode() & 0o777, 0o660);
    drop(server);
    assert!(!path.exists());
}
