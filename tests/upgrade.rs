//! SIGUSR2 upgrades the executable without closing a listener, from the outside: while clients
//! open new connections without pause, the running process starts the executable again with every
//! listening socket passed (`LISTEN_FDS`), and once the new process says it is ready, the old one
//! drains and exits — and not one connection is refused or reset. A new process that fails before
//! it is ready leaves the old one serving, with the reason in the log.

mod common;

use std::fs;
use std::io::ErrorKind;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::{config, eventually, write_config, Client, Endpoint, ServeProcess, WAIT};

/// The most connections each client thread opens: bounded in count, and in time below.
const MAX_CONNECTIONS: usize = 50_000;

/// Clients that open a new connection per round trip until stopped, sorting what goes wrong.
struct Stream {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicUsize>,
    refused: Arc<AtomicUsize>,
    reset: Arc<AtomicUsize>,
    other: Arc<Mutex<Vec<String>>>,
    threads: Vec<thread::JoinHandle<()>>,
}

impl Stream {
    fn start(endpoints: &[Endpoint]) -> Stream {
        let mut stream = Stream {
            stop: Arc::default(),
            ok: Arc::default(),
            refused: Arc::default(),
            reset: Arc::default(),
            other: Arc::default(),
            threads: Vec::new(),
        };
        for endpoint in endpoints {
            let (stop, ok) = (stream.stop.clone(), stream.ok.clone());
            let (refused, reset, other) = (
                stream.refused.clone(),
                stream.reset.clone(),
                stream.other.clone(),
            );
            let endpoint = endpoint.clone();
            stream.threads.push(thread::spawn(move || {
                let deadline = Instant::now() + Duration::from_secs(90);
                for n in 0..MAX_CONNECTIONS {
                    if stop.load(Ordering::SeqCst) || Instant::now() > deadline {
                        return;
                    }
                    let message = format!("{n}\n");
                    let round = Client::connect(&endpoint)
                        .and_then(|mut client| client.echo(message.as_bytes()));
                    match round {
                        Ok(reply) if reply == message.as_bytes() => {
                            ok.fetch_add(1, Ordering::SeqCst);
                        }
                        Ok(reply) => other.lock().unwrap().push(format!("{endpoint}: {reply:?}")),
                        Err(err) if err.kind() == ErrorKind::ConnectionRefused => {
                            refused.fetch_add(1, Ordering::SeqCst);
                        }
                        Err(err)
                            if matches!(
                                err.kind(),
                                ErrorKind::ConnectionReset | ErrorKind::BrokenPipe
                            ) =>
                        {
                            reset.fetch_add(1, Ordering::SeqCst);
                        }
                        Err(err) => other.lock().unwrap().push(format!("{endpoint}: {err}")),
                    }
                }
            }));
        }
        stream
    }

    fn ok(&self) -> usize {
        self.ok.load(Ordering::SeqCst)
    }

    /// Stop; (ok, refused, reset, other errors).
    fn finish(self) -> (usize, usize, usize, Vec<String>) {
        self.stop.store(true, Ordering::SeqCst);
        for thread in self.threads {
            thread.join().unwrap();
        }
        let other = self.other.lock().unwrap().clone();
        (
            self.ok.load(Ordering::SeqCst),
            self.refused.load(Ordering::SeqCst),
            self.reset.load(Ordering::SeqCst),
            other,
        )
    }
}

/// The pid in the old process's "upgrade: process N serves every socket" line.
fn successor(stderr: &str) -> Option<u32> {
    let at = stderr.find("upgrade: process ")? + "upgrade: process ".len();
    stderr[at..].split_whitespace().next()?.parse().ok()
}

fn alive(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit(')')
            .next()
            .is_some_and(|rest| !rest.starts_with(" Z"))
    })
}

const SERVERS: &[(&str, &str, &str, &str, &str)] = &[
    ("threading", "tcp://127.0.0.1:0", "echo", "threading", ""),
    ("reactor", "tcp://127.0.0.1:0", "echo", "reactor", ""),
    ("forking", "unix://{dir}/f.sock", "echo", "forking", ""),
    ("pool", "unix://{dir}/p.sock", "echo", "pool", ""),
];

#[test]
fn an_upgrade_under_new_connections_refuses_and_resets_none() {
    let mut serve = ServeProcess::start_wrapped(&config(SERVERS), |path| {
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
    let names = ["threading", "reactor", "forking", "pool"];
    let before: Vec<Endpoint> = names.iter().map(|n| serve.endpoint(n).clone()).collect();
    let stream = Stream::start(&before);
    assert!(eventually(WAIT, || stream.ok() > 200), "the clients run");

    let pid_arg = pid_file.to_str().unwrap();
    let sent = common::run(&["upgrade", "--pid-file", pid_arg], b"", WAIT);
    assert!(sent.status.success(), "{sent:?}");
    // The new process prints a listening line for each server, on the same sockets.
    serve.wait_listening(names.len());
    for (name, endpoint) in names.iter().zip(&before) {
        assert_eq!(serve.endpoint(name), endpoint, "{name} keeps its socket");
    }
    assert!(
        serve.wait_stderr("serves every socket", 1, WAIT),
        "{}",
        serve.stderr()
    );
    let new = successor(&serve.stderr()).expect("the new process's pid");
    let old = serve
        .wait_exit(WAIT)
        .expect("the old process exits once drained");
    assert!(old.success(), "{old}; stderr:\n{}", serve.stderr());
    let after_exit = stream.ok();
    assert!(
        eventually(WAIT, || stream.ok() > after_exit + 2_000),
        "the new process serves"
    );
    let (ok, refused, reset, other) = stream.finish();
    eprintln!("connections across the upgrade: {ok} ok, {refused} refused, {reset} reset");
    assert_eq!((refused, reset), (0, 0), "{ok} ok; {other:?}");
    assert!(other.is_empty(), "{other:?}");

    // The new process owns the pid file and the socket files now, and removes them when it stops.
    let named = fs::read_to_string(&pid_file).unwrap();
    assert_eq!(named.trim(), new.to_string());
    assert!(serve.dir().join("f.sock").exists());
    common::signal(new, "TERM");
    assert!(
        eventually(WAIT, || !alive(new)),
        "the new process stops on SIGTERM"
    );
    assert!(
        serve.wait_stderr("every server stopped cleanly", 2, WAIT),
        "{}",
        serve.stderr()
    );
    for file in ["f.sock", "p.sock", "sockserv.pid"] {
        assert!(!serve.dir().join(file).exists(), "{file} left behind");
    }
}

#[test]
fn a_failed_upgrade_keeps_the_old_process_serving() {
    let rows = [("e", "tcp://127.0.0.1:0", "echo", "threading", "")];
    let mut serve = ServeProcess::start(&config(&rows));
    let mut client = Client::connect(serve.endpoint("e")).unwrap();
    // The new process reads the file again: one it refuses makes it fail before it is ready.
    write_config(serve.dir(), "sockserv.toml", "[[server]]\nname = \"e\"\n");
    serve.signal("USR2");
    assert!(
        serve.wait_stderr("upgrade failed, still serving", 1, WAIT),
        "{}",
        serve.stderr()
    );
    let stderr = serve.stderr();
    assert!(
        stderr.contains("ended before it was ready: it exited with status 2"),
        "{stderr}"
    );
    assert!(
        stderr.contains("sockserv.toml:1:1"),
        "the new process's own reason: {stderr}"
    );
    assert_eq!(client.echo(b"still\n").unwrap(), b"still\n");
    let mut fresh = Client::connect(serve.endpoint("e")).unwrap();
    assert_eq!(fresh.echo(b"fresh\n").unwrap(), b"fresh\n");
    drop((client, fresh));
    assert!(serve.terminate().success(), "{}", serve.stderr());
}
