//! SIGHUP reloads the config, from the outside: servers matched by name — unchanged ones keep
//! serving without a single failed request while a bounded client loop runs against them, changed
//! ones serve new connections under the new config on the same socket while their old connections
//! end under the old one, removed ones stop accepting and drain, added ones bind — a forking server
//! included; a config with errors changes nothing and its errors are logged with FILE:LINE:COL; a
//! socket that cannot be bound refuses the whole reload; and the service manager hears
//! `RELOADING=1` and then `READY=1`.

mod common;

use std::fs;
use std::io::Read;
use std::os::unix::net::UnixDatagram;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::{config, strip_stamp, write_config, Client, Endpoint, ServeProcess, WAIT};

/// How long a reload may take to be done (logged), on two slow shared cores.
const RELOAD_WAIT: Duration = Duration::from_secs(20);
/// The most round trips each load thread makes: the loop is bounded in count and in time.
const MAX_ROUND_TRIPS: usize = 20_000;

/// A client loop against one endpoint until stopped: a new connection per round trip, or one
/// connection for all of them. Counts the round trips that worked and those that failed.
struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicUsize>,
    failed: Arc<AtomicUsize>,
    threads: Vec<thread::JoinHandle<Vec<String>>>,
}

impl Load {
    fn new() -> Load {
        Load {
            stop: Arc::new(AtomicBool::new(false)),
            ok: Arc::new(AtomicUsize::new(0)),
            failed: Arc::new(AtomicUsize::new(0)),
            threads: Vec::new(),
        }
    }

    fn run(&mut self, endpoint: &Endpoint, persistent: bool) {
        let (stop, ok, failed) = (self.stop.clone(), self.ok.clone(), self.failed.clone());
        let endpoint = endpoint.clone();
        self.threads.push(thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(60);
            let mut errors = Vec::new();
            let mut kept: Option<Client> = None;
            for round in 0..MAX_ROUND_TRIPS {
                if stop.load(Ordering::SeqCst) || Instant::now() > deadline {
                    break;
                }
                let message = format!("round {round}\n");
                let result = match kept.take() {
                    Some(client) => Ok(client),
                    None => Client::connect(&endpoint),
                }
                .and_then(|mut client| {
                    let reply = client.echo(message.as_bytes())?;
                    if reply != message.as_bytes() {
                        return Err(std::io::Error::other(format!("wrong reply {reply:?}")));
                    }
                    Ok(client)
                });
                match result {
                    Ok(client) => {
                        ok.fetch_add(1, Ordering::SeqCst);
                        if persistent {
                            kept = Some(client);
                        }
                    }
                    Err(err) => {
                        failed.fetch_add(1, Ordering::SeqCst);
                        errors.push(format!("{endpoint} round {round}: {err}"));
                    }
                }
            }
            errors
        }));
    }

    /// Stop the loops; the round trips that worked, and every failure.
    fn finish(self) -> (usize, Vec<String>) {
        self.stop.store(true, Ordering::SeqCst);
        let errors = self
            .threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect();
        (self.ok.load(Ordering::SeqCst), errors)
    }

    fn ok(&self) -> usize {
        self.ok.load(Ordering::SeqCst)
    }
}

/// Read until the server closes the connection; the bytes it sent, or the error that ended it.
fn read_to_close(client: &mut Client) -> std::io::Result<Vec<u8>> {
    let mut rest = Vec::new();
    match client {
        Client::Tcp(s) => s.read_to_end(&mut rest)?,
        Client::Unix(s) => s.read_to_end(&mut rest)?,
        _ => unreachable!("streams only"),
    };
    Ok(rest)
}

fn reload(serve: &ServeProcess, done: usize) {
    serve.signal("HUP");
    assert!(
        serve.wait_stderr("reloaded ", done, RELOAD_WAIT),
        "no reload logged; stderr:\n{}",
        serve.stderr()
    );
}

const BEFORE: &[(&str, &str, &str, &str, &str)] = &[
    ("steady", "tcp://127.0.0.1:0", "echo", "threading", ""),
    (
        "steady-unix",
        "unix://{dir}/steady.sock",
        "echo",
        "pool",
        "",
    ),
    ("steady-reactor", "tcp://127.0.0.1:0", "echo", "reactor", ""),
    ("changed", "tcp://127.0.0.1:0", "echo", "threading", ""),
    (
        "changed-forking",
        "unix://{dir}/f.sock",
        "echo",
        "forking",
        "",
    ),
    (
        "removed",
        "unix://{dir}/removed.sock",
        "echo",
        "threading",
        "",
    ),
];

const AFTER: &[(&str, &str, &str, &str, &str)] = &[
    ("steady", "tcp://127.0.0.1:0", "echo", "threading", ""),
    (
        "steady-unix",
        "unix://{dir}/steady.sock",
        "echo",
        "pool",
        "",
    ),
    ("steady-reactor", "tcp://127.0.0.1:0", "echo", "reactor", ""),
    ("changed", "tcp://127.0.0.1:0", "timestamp", "threading", ""),
    (
        "changed-forking",
        "unix://{dir}/f.sock",
        "timestamp",
        "forking",
        "",
    ),
    ("added", "tcp://127.0.0.1:0", "echo", "threading", ""),
];

#[test]
fn a_reload_under_load_changes_what_changed_and_nothing_else() {
    let mut serve = ServeProcess::start(&config(BEFORE));
    let endpoint = |serve: &ServeProcess, name: &str| serve.endpoint(name).clone();
    // Connections made before the reload, each with one round trip under the old config.
    let mut old = Vec::new();
    for name in ["changed", "changed-forking", "removed"] {
        let mut client = Client::connect(&endpoint(&serve, name)).unwrap();
        assert_eq!(client.echo(b"before\n").unwrap(), b"before\n", "{name}");
        old.push((name, client));
    }
    let mut load = Load::new();
    for (name, persistent) in [
        ("steady", false),
        ("steady", true),
        ("steady-unix", false),
        ("steady-reactor", true),
    ] {
        load.run(&endpoint(&serve, name), persistent);
    }
    assert!(
        common::eventually(WAIT, || load.ok() > 100),
        "the load runs"
    );

    write_config(serve.dir(), "sockserv.toml", &config(AFTER));
    let steady_port = endpoint(&serve, "steady");
    reload(&serve, 1);
    // changed, changed-forking and added print their listening lines.
    serve.wait_listening(3);
    let during = load.ok();
    assert!(
        common::eventually(WAIT, || load.ok() > during + 2_000),
        "the load goes on after the reload"
    );
    let (ok, errors) = load.finish();
    eprintln!(
        "round trips during the reload: {ok} ok, {} failed",
        errors.len()
    );
    assert!(
        errors.is_empty(),
        "{} failed of {}: {errors:#?}",
        errors.len(),
        ok + errors.len()
    );

    // Unchanged: the same socket, never closed.
    assert_eq!(endpoint(&serve, "steady"), steady_port);
    // Changed: new connections get the new handler on the same socket...
    for name in ["changed", "changed-forking"] {
        let mut client = Client::connect(&endpoint(&serve, name)).unwrap();
        client.send(b"after\n").unwrap();
        let reply = client.recv_until(|got| got.ends_with(b"\n")).unwrap();
        assert_eq!(
            strip_stamp(&reply),
            Some(&b"after\n"[..]),
            "{name}: {reply:?}"
        );
    }
    // ...while the old connections ended under the old one: closed by its drain, not reset.
    for (name, mut client) in old {
        let rest = read_to_close(&mut client);
        assert!(
            rest.as_ref().is_ok_and(|rest| rest.is_empty()),
            "{name}: {rest:?}"
        );
    }
    // Removed: no longer accepting, and its socket file is gone once it drained.
    let removed = serve.dir().join("removed.sock");
    assert!(
        common::eventually(WAIT, || !removed.exists()),
        "{} is still there",
        removed.display()
    );
    // Added: serves.
    let mut added = Client::connect(&endpoint(&serve, "added")).unwrap();
    assert_eq!(added.echo(b"new\n").unwrap(), b"new\n");
    // The replaced forking server's socket file stays: its successor serves on it.
    assert!(
        serve.wait_stderr("the retired instance (process", 1, WAIT),
        "{}",
        serve.stderr()
    );
    assert!(serve.dir().join("f.sock").exists());
    let mut forking = Client::connect(&endpoint(&serve, "changed-forking")).unwrap();
    forking.send(b"again\n").unwrap();
    let reply = forking.recv_until(|got| got.ends_with(b"\n")).unwrap();
    assert!(strip_stamp(&reply).is_some(), "{reply:?}");
    drop((added, forking));
    let status = serve.terminate();
    assert!(status.success(), "{status}; stderr:\n{}", serve.stderr());
    for file in ["steady.sock", "f.sock"] {
        assert!(!serve.dir().join(file).exists(), "{file} left behind");
    }
}

#[test]
fn a_config_with_errors_changes_nothing_and_says_where() {
    let rows = [("e", "tcp://127.0.0.1:0", "echo", "threading", "")];
    let mut serve = ServeProcess::start(&config(&rows));
    let bad = "[[server]]\nname = \"e\"\nlisten = \"tcp://127.0.0.1:0\"\nhandler = \"echo\"\n\
               strategy = \"threading\"\nmax_threads = \"many\"\n\n\
               [[server]]\nname = \"f\"\nlisten = \"tcp://127.0.0.1:0\"\nhandler = \"nope\"\n";
    let path = write_config(serve.dir(), "sockserv.toml", bad);
    serve.signal("HUP");
    assert!(
        serve.wait_stderr("reload refused", 1, RELOAD_WAIT),
        "{}",
        serve.stderr()
    );
    let stderr = serve.stderr();
    let file = path.display().to_string();
    assert!(stderr.contains(&format!("{file}:6:15")), "{stderr}");
    assert!(stderr.contains(&format!("{file}:11:11")), "{stderr}");
    let mut client = Client::connect(serve.endpoint("e")).unwrap();
    assert_eq!(client.echo(b"still\n").unwrap(), b"still\n");
    // Fixed, it reloads.
    let good = config(&[
        ("e", "tcp://127.0.0.1:0", "echo", "threading", ""),
        ("f", "tcp://127.0.0.1:0", "echo", "threading", ""),
    ]);
    write_config(serve.dir(), "sockserv.toml", &good);
    reload(&serve, 1);
    serve.wait_listening(1);
    let mut f = Client::connect(serve.endpoint("f")).unwrap();
    assert_eq!(f.echo(b"f\n").unwrap(), b"f\n");
    assert_eq!(client.echo(b"untouched\n").unwrap(), b"untouched\n");
    drop((client, f));
    assert!(serve.terminate().success(), "{}", serve.stderr());
}

#[test]
fn a_socket_that_cannot_be_bound_refuses_the_whole_reload() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let rows = [("e", "tcp://127.0.0.1:0", "echo", "threading", "")];
    let mut serve = ServeProcess::start(&config(&rows));
    let mut client = Client::connect(serve.endpoint("e")).unwrap();
    let after = config(&[
        ("e", "tcp://127.0.0.1:0", "timestamp", "threading", ""),
        ("free", "tcp://127.0.0.1:0", "echo", "threading", ""),
        (
            "busy",
            &format!("tcp://127.0.0.1:{port}"),
            "echo",
            "threading",
            "",
        ),
    ]);
    write_config(serve.dir(), "sockserv.toml", &after);
    serve.signal("HUP");
    assert!(
        serve.wait_stderr("reload refused", 1, RELOAD_WAIT),
        "{}",
        serve.stderr()
    );
    let stderr = serve.stderr();
    assert!(stderr.contains("server busy"), "{stderr}");
    assert!(stderr.contains(&format!("127.0.0.1:{port}")), "{stderr}");
    // Nothing changed: e still echoes on its old connection and on a new one, free never started.
    assert_eq!(client.echo(b"same\n").unwrap(), b"same\n");
    let mut fresh = Client::connect(serve.endpoint("e")).unwrap();
    assert_eq!(fresh.echo(b"same\n").unwrap(), b"same\n");
    assert_eq!(serve.next_line(Duration::from_millis(200)), None);
    drop((client, fresh, taken));
    assert!(serve.terminate().success(), "{}", serve.stderr());
}

#[test]
fn the_service_manager_hears_reloading_then_ready() {
    let dir = common::temp_dir();
    let notify_path = dir.path().join("notify.sock");
    let manager = UnixDatagram::bind(&notify_path).unwrap();
    manager.set_read_timeout(Some(WAIT)).unwrap();
    let rows = [("e", "tcp://127.0.0.1:0", "echo", "threading", "")];
    let mut serve = ServeProcess::start_limited(
        &config(&rows),
        1024,
        &[("NOTIFY_SOCKET", notify_path.to_str().unwrap())],
    );
    let mut buf = [0u8; 512];
    let mut next = || {
        let n = manager
            .recv(&mut buf)
            .expect("a notification within the wait");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    assert!(next().starts_with("READY=1\n"));
    let before = monotonic_usec();
    serve.signal("HUP");
    let reloading = next();
    let usec: u64 = reloading
        .strip_prefix("RELOADING=1\nMONOTONIC_USEC=")
        .and_then(|rest| rest.lines().next())
        .and_then(|usec| usec.parse().ok())
        .unwrap_or_else(|| panic!("{reloading:?}"));
    assert!(usec >= before, "{usec} < {before}");
    assert!(next().starts_with("READY=1\nSTATUS=serving 1 server(s)"));
    // A refused reload says READY too: the old config serves on.
    fs::write(serve.dir().join("sockserv.toml"), "[[server]]\nname = 1\n").unwrap();
    serve.signal("HUP");
    assert!(next().starts_with("RELOADING=1\n"));
    assert!(next().starts_with("READY=1\n"));
    serve.signal("TERM");
    assert!(next().starts_with("STOPPING=1"));
    assert!(serve.wait_exit(WAIT).is_some_and(|s| s.success()));
    drop(dir);
}

/// CLOCK_MONOTONIC in microseconds, as `MONOTONIC_USEC` counts it: /proc/uptime is on the same
/// clock's scale (seconds since boot), to a hundredth of a second; that is enough to check the
/// value is the monotonic clock and not, say, the wall clock.
fn monotonic_usec() -> u64 {
    let uptime = fs::read_to_string("/proc/uptime").unwrap();
    let seconds: f64 = uptime.split_whitespace().next().unwrap().parse().unwrap();
    // A hundredth of a second of rounding, and /proc/uptime counts boot time a little differently.
    ((seconds - 1.0).max(0.0) * 1e6) as u64
}

#[test]
fn a_renamed_server_keeps_its_socket() {
    let rows = [("old-name", "unix://{dir}/r.sock", "echo", "threading", "")];
    let mut serve = ServeProcess::start(&config(&rows));
    let renamed = [("new-name", "unix://{dir}/r.sock", "echo", "threading", "")];
    write_config(serve.dir(), "sockserv.toml", &config(&renamed));
    reload(&serve, 1);
    serve.wait_listening(1);
    assert!(serve.wait_stderr("the retired instance has drained", 1, WAIT));
    let mut client = Client::connect(serve.endpoint("new-name")).unwrap();
    assert_eq!(client.echo(b"hi\n").unwrap(), b"hi\n");
    drop(client);
    assert!(serve.terminate().success(), "{}", serve.stderr());
}

#[test]
fn sockserv_reload_finds_the_process_through_its_pid_file() {
    let rows = [("e", "tcp://127.0.0.1:0", "echo", "threading", "")];
    let mut serve = ServeProcess::start_wrapped(&config(&rows), |path| {
        let mut command = std::process::Command::new(common::SOCKSERV);
        let pid_file = path.with_file_name("sockserv.pid");
        command
            .arg("serve")
            .arg(path)
            .arg("--pid-file")
            .arg(pid_file);
        command
    });
    let pid_file = serve.dir().join("sockserv.pid");
    let pid = serve.pid().to_string();
    assert!(common::eventually(WAIT, || fs::read_to_string(&pid_file)
        .is_ok_and(|text| text.trim() == pid)));
    let more = config(&[
        ("e", "tcp://127.0.0.1:0", "echo", "threading", ""),
        ("f", "tcp://127.0.0.1:0", "echo", "threading", ""),
    ]);
    write_config(serve.dir(), "sockserv.toml", &more);
    let pid_arg = pid_file.to_str().unwrap();
    let sent = common::run(&["reload", "--pid-file", pid_arg], b"", WAIT);
    assert!(sent.status.success(), "{sent:?}");
    assert!(
        serve.wait_stderr("reloaded ", 1, RELOAD_WAIT),
        "{}",
        serve.stderr()
    );
    serve.wait_listening(1);
    let mut f = Client::connect(serve.endpoint("f")).unwrap();
    assert_eq!(f.echo(b"f\n").unwrap(), b"f\n");
    drop(f);
    assert!(serve.terminate().success(), "{}", serve.stderr());
    assert!(!pid_file.exists(), "the pid file is removed at exit");
    let missing = common::run(&["reload", "--pid-file", pid_arg], b"", WAIT);
    assert_eq!(missing.status.code(), Some(1), "{missing:?}");
}
