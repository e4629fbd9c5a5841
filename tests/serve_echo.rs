//! `sockserv serve` with the echo handler, from the outside: every socket kind under every strategy,
//! a message larger than any buffer, shutdown on SIGTERM, forking without zombies, and a threading and
//! a forking server side by side in one process under load (DESIGN.md, decision 3).

mod common;

use std::thread;
use std::time::{Duration, Instant};

use common::{config, descendants_stat, eventually, Client, ServeProcess};

const HELLO: &[u8] = b"hello world\n";

/// Every socket kind under every strategy, one server each: (name, listen, strategy).
#[rustfmt::skip]
const MATRIX: &[(&str, &str, &str)] = &[
    ("tcp-sync",        "tcp://127.0.0.1:0",                       "sync"),
    ("tcp-threading",   "tcp://127.0.0.1:0",                       "threading"),
    ("tcp-forking",     "tcp://127.0.0.1:0",                       "forking"),
    ("tcp-pool",        "tcp://127.0.0.1:0",                       "pool"),
    ("tcp-reactor",     "tcp://127.0.0.1:0",                       "reactor"),
    ("udp-sync",        "udp://127.0.0.1:0",                       "sync"),
    ("udp-threading",   "udp://127.0.0.1:0",                       "threading"),
    ("udp-forking",     "udp://127.0.0.1:0",                       "forking"),
    ("udp-pool",        "udp://127.0.0.1:0",                       "pool"),
    ("udp-reactor",     "udp://127.0.0.1:0",                       "reactor"),
    ("unix-sync",       "unix://{dir}/unix-sync.sock",             "sync"),
    ("unix-threading",  "unix://{dir}/unix-threading.sock",        "threading"),
    ("unix-forking",    "unix://{dir}/unix-forking.sock",          "forking"),
    ("unix-pool",       "unix://{dir}/unix-pool.sock",             "pool"),
    ("unix-reactor",    "unix://{dir}/unix-reactor.sock",          "reactor"),
    ("dgram-sync",      "unix-dgram://{dir}/dgram-sync.sock",      "sync"),
    ("dgram-threading", "unix-dgram://{dir}/dgram-threading.sock", "threading"),
    ("dgram-forking",   "unix-dgram://{dir}/dgram-forking.sock",   "forking"),
    ("dgram-pool",      "unix-dgram://{dir}/dgram-pool.sock",      "pool"),
    ("dgram-reactor",   "unix-dgram://{dir}/dgram-reactor.sock",   "reactor"),
];

/// A config with one echo server per `(name, listen, strategy)`.
fn echo_config(servers: &[(&str, &str, &str)]) -> String {
    let rows: Vec<_> = servers
        .iter()
        .map(|&(name, listen, strategy)| (name, listen, "echo", strategy, ""))
        .collect();
    config(&rows)
}

/// One client's visit: the echo comes back whole, and a stream is closed once the client is done.
fn visit(serve: &ServeProcess, name: &str, message: &[u8]) -> Result<(), String> {
    let mut client =
        Client::connect(serve.endpoint(name)).map_err(|err| format!("connect: {err}"))?;
    let reply = client.echo(message).map_err(|err| format!("echo: {err}"))?;
    if reply != message {
        let reply = String::from_utf8_lossy(&reply);
        return Err(format!("echoed {reply:?}"));
    }
    client
        .shutdown_write()
        .map_err(|err| format!("shutdown: {err}"))?;
    match client.read_to_end() {
        Ok(rest) if rest.is_empty() => Ok(()),
        Ok(rest) => Err(format!("{} more bytes after the echo", rest.len())),
        Err(err) => Err(format!("no close after the echo: {err}")),
    }
}

#[test]
fn every_socket_kind_echoes_under_every_strategy() {
    let serve = ServeProcess::start(&echo_config(MATRIX));
    let mut failures = Vec::new();
    for &(name, _, _) in MATRIX {
        for client in 1..=3 {
            if let Err(err) = visit(&serve, name, HELLO) {
                failures.push(format!("{name}, client {client}: {err}"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "failed cases:\n  {}\nstderr:\n{}",
        failures.join("\n  "),
        serve.stderr()
    );
}

/// 16 MiB + 1 byte, in a pattern that shows a lost, doubled or reordered chunk.
fn big_message() -> Vec<u8> {
    (0..16 * 1024 * 1024 + 1)
        .map(|i: usize| (i % 251) as u8)
        .collect()
}

#[test]
fn a_16_mib_message_comes_back_whole_on_streams() {
    let servers = [
        ("tcp", "tcp://127.0.0.1:0", "threading"),
        ("unix", "unix://{dir}/big.sock", "threading"),
    ];
    let serve = ServeProcess::start(&echo_config(&servers));
    let message = big_message();
    for (name, _, _) in servers {
        let mut reader = Client::connect(serve.endpoint(name)).unwrap();
        let mut writer = reader.try_clone().unwrap();
        let sent = message.clone();
        // The echo comes back while the message is still going out: write and read at once.
        let writing = thread::spawn(move || {
            writer.send(&sent)?;
            writer.shutdown_write()
        });
        let echoed = reader.read_to_end();
        writing
            .join()
            .unwrap()
            .unwrap_or_else(|err| panic!("{name}: write: {err}"));
        let echoed = echoed.unwrap_or_else(|err| panic!("{name}: read: {err}"));
        assert_eq!(echoed.len(), message.len(), "{name}: length");
        assert!(
            echoed == message,
            "{name}: the echo differs from the message"
        );
    }
}

#[test]
fn sigterm_stops_every_server_and_removes_the_unix_socket_files() {
    let servers: Vec<_> = MATRIX
        .iter()
        .copied()
        .filter(|(_, listen, _)| listen.starts_with("unix"))
        .chain([("tcp-forking", "tcp://127.0.0.1:0", "forking")])
        .collect();
    let mut serve = ServeProcess::start(&echo_config(&servers));
    let files: Vec<_> = servers
        .iter()
        .filter_map(|(name, _, _)| serve.endpoint(name).path().map(|path| path.to_path_buf()))
        .collect();
    assert_eq!(files.len(), 10);
    for file in &files {
        assert!(file.exists(), "{} missing while serving", file.display());
    }
    // Every server answers once (so each is serving, not still starting); the streams' clients stay
    // connected, idle: they must not hold the shutdown up (for a sync server, see the test below).
    let idle: Vec<Client> = servers
        .iter()
        .filter_map(|&(name, _, strategy)| {
            let mut client = Client::connect(serve.endpoint(name)).unwrap();
            assert_eq!(client.echo(HELLO).unwrap(), HELLO, "{name}");
            (client.is_stream() && strategy != "sync").then_some(client)
        })
        .collect();
    assert_eq!(idle.len(), 5);

    let started = Instant::now();
    let status = serve.terminate();
    let took = started.elapsed();
    assert!(
        status.success(),
        "exit status {status}; stderr:\n{}",
        serve.stderr()
    );
    assert!(took < Duration::from_secs(2), "took {took:?} to exit");
    for file in &files {
        assert!(!file.exists(), "{} left behind", file.display());
    }
    // `terminate` has checked that no forked server process outlived sockserv.
    drop(idle);
}

#[test]
fn forking_reaps_every_child_after_1000_connections() {
    let servers = [("forks", "tcp://127.0.0.1:0", "forking")];
    let serve = ServeProcess::start(&echo_config(&servers));
    let endpoint = serve.endpoint("forks").clone();
    const THREADS: usize = 4;
    const CONNECTIONS: usize = 250;
    let clients: Vec<_> = (0..THREADS)
        .map(|t| {
            let endpoint = endpoint.clone();
            thread::spawn(move || {
                for i in 0..CONNECTIONS {
                    let message = format!("client {t} connection {i}\n").into_bytes();
                    let mut client = Client::connect(&endpoint).unwrap();
                    let reply = client.echo(&message).unwrap();
                    assert_eq!(reply, message);
                }
            })
        })
        .collect();
    for client in clients {
        client.join().expect("a client failed");
    }
    // Left: the forking server's own process, and no zombie anywhere below sockserv.
    let settled = eventually(Duration::from_secs(5), || {
        let below = descendants_stat(serve.pid());
        below.len() == 1 && below.iter().all(|process| process.state != 'Z')
    });
    assert!(
        settled,
        "processes below sockserv 5 s after the last connection: {:?}\nstderr:\n{}",
        descendants_stat(serve.pid()),
        serve.stderr()
    );
}

#[test]
fn a_threading_and_a_forking_server_share_a_process_under_load() {
    let servers = [
        ("threads", "tcp://127.0.0.1:0", "threading"),
        ("forks", "unix://{dir}/forks.sock", "forking"),
    ];
    let mut serve = ServeProcess::start(&echo_config(&servers));
    let endpoints = [
        serve.endpoint("threads").clone(),
        serve.endpoint("forks").clone(),
    ];
    const THREADS: usize = 8;
    const ROUND_TRIPS: usize = 100;
    let clients: Vec<_> = (0..THREADS)
        .map(|t| {
            let endpoints = endpoints.clone();
            thread::spawn(move || {
                for i in 0..ROUND_TRIPS {
                    let endpoint = &endpoints[i % 2];
                    let message = format!("thread {t} round trip {i} to {endpoint}\n").into_bytes();
                    let mut client = Client::connect(endpoint)
                        .unwrap_or_else(|err| panic!("{endpoint}: connect: {err}"));
                    let reply = client
                        .echo(&message)
                        .unwrap_or_else(|err| panic!("{endpoint}: {err}"));
                    assert_eq!(reply, message, "{endpoint}");
                }
            })
        })
        .collect();
    let failed = clients
        .into_iter()
        .map(|client| client.join())
        .filter(Result::is_err)
        .count();
    assert_eq!(
        failed,
        0,
        "client threads failed; stderr:\n{}",
        serve.stderr()
    );
    let status = serve.terminate();
    assert!(
        status.success(),
        "exit status {status}; stderr:\n{}",
        serve.stderr()
    );
    assert!(
        !serve.dir().join("forks.sock").exists(),
        "socket file left behind"
    );
}

#[test]
fn sigterm_right_after_the_listening_lines_still_exits_cleanly() {
    let servers = [
        ("forks", "unix://{dir}/forks.sock", "forking"),
        ("threads", "unix://{dir}/threads.sock", "threading"),
    ];
    for attempt in 1..=20 {
        let mut serve = ServeProcess::start(&echo_config(&servers));
        let status = serve.terminate();
        assert!(status.success(), "attempt {attempt}: exit status {status}");
        for file in ["forks.sock", "threads.sock"] {
            assert!(
                !serve.dir().join(file).exists(),
                "attempt {attempt}: {file} left behind"
            );
        }
    }
}

#[test]
fn sigterm_does_not_wait_for_an_idle_client_of_a_sync_server() {
    let servers = [("sync", "tcp://127.0.0.1:0", "sync")];
    let mut serve = ServeProcess::start(&echo_config(&servers));
    let mut idle = Client::connect(serve.endpoint("sync")).unwrap();
    assert_eq!(idle.echo(HELLO).unwrap(), HELLO);
    let started = Instant::now();
    let status = serve.terminate();
    assert!(status.success(), "exit status {status}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );
    drop(idle);
}

/// The sockets tutorial's multiconn-client opens 100 connections at once before the server has
/// accepted any: with the default listen backlog every one of them is served, none reset.
#[test]
fn a_hundred_connections_at_once_are_all_served_with_the_default_backlog() {
    const CLIENTS: usize = 100;
    // The kernel completes a loopback handshake by itself while the backlog has room; a full
    // backlog drops the SYN, and the retry comes only after the initial 1 s retransmission time.
    const HANDSHAKE: Duration = Duration::from_millis(900);
    for strategy in ["threading", "reactor"] {
        let rows = [("e", "tcp://127.0.0.1:0", "echo", strategy, "")];
        let serve = ServeProcess::start(&config(&rows));
        let endpoint = serve.endpoint("e").clone();
        // Every connection is opened before any is used, as the tutorial's client does.
        let common::Endpoint::Tcp(addr) = endpoint else {
            unreachable!()
        };
        let clients: Vec<Client> = (0..CLIENTS)
            .map(|n| {
                let stream = std::net::TcpStream::connect_timeout(&addr, HANDSHAKE)
                    .unwrap_or_else(|err| panic!("{strategy} #{n}: backlog full? {err}"));
                stream.set_read_timeout(Some(common::WAIT)).unwrap();
                Client::Tcp(stream)
            })
            .collect();
        let failures: Vec<String> = clients
            .into_iter()
            .enumerate()
            .filter_map(|(n, mut client)| {
                let message = format!("message {n}");
                match client.echo(message.as_bytes()) {
                    Ok(reply) if reply == message.as_bytes() => None,
                    Ok(reply) => Some(format!("#{n}: {reply:?}")),
                    Err(err) => Some(format!("#{n}: {err}")),
                }
            })
            .collect();
        assert!(failures.is_empty(), "{strategy}: {failures:#?}");
    }
}

/// Host names work where users write them, as socketserver's `("localhost", 9999)` does: in a
/// config's `listen` and in `sockserv client`; a name that does not resolve says so.
#[test]
fn host_names_work_in_the_config_and_the_client() {
    let rows = [("e", "tcp://localhost:0", "echo", "threading", "")];
    let serve = ServeProcess::start(&config(&rows));
    let common::Endpoint::Tcp(addr) = serve.endpoint("e").clone() else {
        panic!("tcp expected")
    };
    assert!(addr.ip().is_loopback(), "{addr}");
    let by_name = format!("tcp://localhost:{}", addr.port());
    let output = common::run(&["client", "echo", &by_name, "hello"], b"", common::WAIT);
    assert!(output.status.success(), "{output:?}");
    assert_eq!(String::from_utf8_lossy(&output.stdout), "hello\n");
    let dir = common::temp_dir();
    let bad = [(
        "x",
        "tcp://no-such-host.invalid:80",
        "echo",
        "threading",
        "",
    )];
    let path = common::write_config(dir.path(), "bad.toml", &config(&bad));
    let output = common::run(&["check", path.to_str().unwrap()], b"", common::WAIT);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("host name \"no-such-host.invalid\" does not resolve"),
        "{stderr}"
    );
}

/// Linux abstract Unix sockets (`unix://@name`, Python's `"\0name"`): served and reached by name,
/// no file anywhere; `unix_mode` means nothing for them and is refused.
#[test]
fn abstract_unix_sockets_are_served_by_name() {
    let stream = format!("unix://@sockserv-test-{}-stream", std::process::id());
    let datagram = format!("unix-dgram://@sockserv-test-{}-dgram", std::process::id());
    let rows = [
        ("s", stream.as_str(), "echo", "threading", ""),
        ("d", datagram.as_str(), "echo", "threading", ""),
    ];
    let mut serve = ServeProcess::start(&config(&rows));
    assert_eq!(serve.endpoint("s").to_string(), stream);
    for endpoint in [&stream, &datagram] {
        let output = common::run(&["client", "echo", endpoint, "hello"], b"", common::WAIT);
        assert!(output.status.success(), "{endpoint}: {output:?}");
        assert_eq!(
            String::from_utf8_lossy(&output.stdout),
            "hello\n",
            "{endpoint}"
        );
    }
    // Nothing was made on disk, relative to the config or anywhere else it could land.
    assert!(std::fs::read_dir(serve.dir())
        .unwrap()
        .flatten()
        .all(|entry| !entry.file_name().to_string_lossy().starts_with('@')));
    assert!(serve.terminate().success(), "{}", serve.stderr());
    let dir = common::temp_dir();
    let moded = config(&[(
        "s",
        stream.as_str(),
        "echo",
        "threading",
        "[server.socket]\nunix_mode = \"0600\"",
    )]);
    let path = common::write_config(dir.path(), "m.toml", &moded);
    let output = common::run(&["check", path.to_str().unwrap()], b"", common::WAIT);
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    assert!(String::from_utf8_lossy(&output.stderr).contains("socket.unix_mode"));
}
