//! Logs operators can read, black-box: `--log-format json` (and `SOCKSERV_LOG_FORMAT`) writes one
//! JSON object per line; a connection's id is the same in every line about it; nothing is logged
//! per request at info under any strategy; start-up prints each endpoint once.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{config, eventually, write_config, Client, Endpoint, ServeProcess, SOCKSERV, WAIT};
use serde_json::Value;

const STRATEGIES: [&str; 5] = ["sync", "threading", "pool", "forking", "reactor"];

/// Serve `config` with `RUST_LOG=log_filter` and the log format chosen by `how` (an argument, or
/// the environment variable).
fn serve_with(config: &str, log_filter: &str, how: How) -> ServeProcess {
    ServeProcess::start_wrapped(config, |path| {
        let mut command = Command::new(SOCKSERV);
        command.env("RUST_LOG", log_filter);
        match how {
            How::Argument => {
                command.args(["--log-format", "json", "serve"]).arg(path);
            }
            How::Environment => {
                command
                    .env("SOCKSERV_LOG_FORMAT", "json")
                    .arg("serve")
                    .arg(path);
            }
        }
        command
    })
}

#[derive(Clone, Copy)]
enum How {
    Argument,
    Environment,
}

/// Every line of `stderr`, each parsed as one JSON object with the four fixed keys.
fn json_lines(stderr: &str) -> Vec<Value> {
    stderr
        .lines()
        .map(|line| {
            let parsed: Value = serde_json::from_str(line)
                .unwrap_or_else(|err| panic!("not JSON ({err}): {line:?}\n{stderr}"));
            for key in ["ts", "level", "target", "message"] {
                assert!(parsed[key].is_string(), "no {key}: {line}");
            }
            parsed
        })
        .collect()
}

fn connect(endpoint: &Endpoint) -> TcpStream {
    let Client::Tcp(stream) = Client::connect(endpoint).expect("connect") else {
        panic!("a TCP endpoint");
    };
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream
}

fn echo_once(endpoint: &Endpoint) {
    let mut stream = connect(endpoint);
    stream.write_all(b"ping").unwrap();
    let mut got = [0u8; 4];
    stream.read_exact(&mut got).unwrap();
    stream.shutdown(Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest).unwrap();
}

/// Stop the server and wait for its last lines.
fn stop(serve: &mut ServeProcess) -> String {
    assert!(serve.terminate().success(), "{}", serve.stderr());
    serve.stderr()
}

#[test]
fn n_requests_under_every_strategy_log_nothing_at_info() {
    const REQUESTS: usize = 20;
    let names: Vec<String> = STRATEGIES.iter().map(|s| format!("echo-{s}")).collect();
    let rows: Vec<_> = (names.iter().zip(STRATEGIES))
        .map(|(name, strategy)| (name.as_str(), "tcp://127.0.0.1:0", "echo", strategy, ""))
        .collect();
    let mut serve = serve_with(&config(&rows), "info", How::Argument);
    for name in &names {
        for _ in 0..REQUESTS {
            echo_once(serve.endpoint(name));
        }
    }
    let stderr = stop(&mut serve);
    let lines = json_lines(&stderr);
    let per_request: Vec<&Value> = (lines.iter())
        .filter(|line| line["level"] == "INFO" || line["level"] == "WARN")
        .filter(|line| line.get("conn").is_some() || line.get("peer").is_some())
        .collect();
    assert!(per_request.is_empty(), "{per_request:#?}");
    // What info does say is about the process, not its requests: a handful of lines, however
    // many requests there were.
    let info = lines.iter().filter(|line| line["level"] == "INFO").count();
    assert!(
        info < 10,
        "{info} info lines for {REQUESTS} requests a server:\n{stderr}"
    );
}

#[test]
fn a_connection_s_id_is_the_same_in_every_line_about_it() {
    let strategies = ["threading", "forking", "reactor"];
    let names: Vec<String> = strategies.iter().map(|s| format!("idle-{s}")).collect();
    let rows: Vec<_> = (names.iter().zip(strategies))
        .map(|(name, strategy)| {
            let extra = "[server.limits]\nidle_timeout = 1";
            (name.as_str(), "tcp://127.0.0.1:0", "echo", strategy, extra)
        })
        .collect();
    let mut serve = serve_with(&config(&rows), "debug", How::Environment);
    let mut ports = HashMap::new();
    for name in &names {
        // Two connections each: one that ends cleanly, one the idle timeout ends.
        echo_once(serve.endpoint(name));
        let mut idle = connect(serve.endpoint(name));
        let port = idle.local_addr().unwrap().port();
        let mut rest = Vec::new();
        let _ = idle.read_to_end(&mut rest);
        ports.insert(name.clone(), port);
    }
    // The forking child's timeout is logged by the serving process once it reaps the child.
    let logged = eventually(WAIT, || {
        let stderr = serve.stderr();
        names.iter().all(|name| {
            (stderr.lines())
                .any(|line| line.contains(name.as_str()) && line.contains("idle_timeout ("))
        })
    });
    assert!(logged, "{}", serve.stderr());
    let stderr = stop(&mut serve);
    let lines = json_lines(&stderr);
    for name in &names {
        let port = format!(":{}", ports[name]);
        let about: Vec<&Value> = (lines.iter())
            .filter(|line| line["server"] == name.as_str())
            .filter(|line| {
                line["peer"]
                    .as_str()
                    .is_some_and(|peer| peer.ends_with(&port))
            })
            .collect();
        // The timeout's line (info) and the connection's own line (debug), at least.
        assert!(about.len() >= 2, "{name}: {about:#?}\n{stderr}");
        let ids: Vec<&str> = about
            .iter()
            .filter_map(|line| line["conn"].as_str())
            .collect();
        assert_eq!(
            ids.len(),
            about.len(),
            "every line about it has its id: {about:#?}"
        );
        assert!(ids.iter().all(|id| *id == ids[0]), "{name}: {ids:?}");
        assert!(ids[0].starts_with('c'), "{ids:?}");
        // The id is in the message too, right after the server's name.
        for line in &about {
            let message = line["message"].as_str().unwrap();
            assert!(
                message.starts_with(&format!("{name}: {}: ", ids[0])),
                "{message}"
            );
        }
        let closed = (about.iter()).find(|line| line["reason"].is_string());
        let closed = closed.unwrap_or_else(|| panic!("{name}: no line with a reason: {about:#?}"));
        assert_eq!(closed["reason"], "idle_timeout", "{closed}");
        // The clean one was another connection, with another id, closed at its end of stream.
        let other = (lines.iter())
            .filter(|line| line["server"] == name.as_str() && line["reason"] == "eof")
            .map(|line| line["conn"].as_str().unwrap())
            .collect::<Vec<_>>();
        assert_eq!(other.len(), 1, "{name}: {stderr}");
        assert_ne!(other[0], ids[0]);
    }
}

#[test]
fn start_up_prints_each_endpoint_once() {
    let dir = common::temp_dir();
    let text = config(&[
        ("a", "tcp://127.0.0.1:0", "echo", "threading", ""),
        ("b", "unix://{dir}/b.sock", "echo", "forking", ""),
        ("c", "udp://127.0.0.1:0", "echo", "sync", ""),
    ]);
    let path = write_config(dir.path(), "sockserv.toml", &text);
    let mut child = Command::new(SOCKSERV)
        .arg("serve")
        .arg(&path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut listening = Vec::new();
    let deadline = Instant::now() + WAIT;
    while listening.len() < 3 && Instant::now() < deadline {
        let mut line = String::new();
        if stdout.read_line(&mut line).unwrap() == 0 {
            break;
        }
        listening.push(line);
    }
    common::signal(child.id(), "TERM");
    let status = common::wait_bounded(&mut child, Duration::from_secs(10));
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(status.is_some_and(|s| s.success()), "{stderr}");
    let all = format!("{}{rest}{stderr}", listening.concat());
    assert_eq!(listening.len(), 3, "{all}");
    for line in &listening {
        let endpoint = line.split_whitespace().nth(2).expect("an endpoint");
        assert_eq!(all.matches(endpoint).count(), 1, "{endpoint} in:\n{all}");
    }
}
