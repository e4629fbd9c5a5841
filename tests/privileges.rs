//! `user` and `group`: a process started as root binds every socket (a privileged port
//! included), then runs as the user and group — its server processes too — before any handler
//! code runs; a reload that would need root again to bind says so and changes nothing.
//!
//! These need root; run elsewhere they print why they skip.

mod common;

use std::fs;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use common::{config, descendants_stat, write_config, Client, ServeProcess, WAIT};

/// The account the tests drop to: there on every Debian-like system.
const USER: &str = "nobody";
const GROUP: &str = "nogroup";

/// Whether the tests run as root; if not, say so (the caller skips).
fn root_or_skip(test: &str) -> bool {
    let status = fs::read_to_string("/proc/self/status").unwrap();
    let root = status
        .lines()
        .any(|line| line.starts_with("Uid:") && line.split_whitespace().nth(2) == Some("0"));
    let account = Command::new("id")
        .arg(USER)
        .output()
        .is_ok_and(|o| o.status.success());
    if !root || !account {
        eprintln!("skipping {test}: it needs root and a user named {USER} (root: {root})");
    }
    root && account
}

/// A privileged TCP port free on loopback now.
fn free_privileged_port() -> u16 {
    (600..1000)
        .find(|port| TcpListener::bind(("127.0.0.1", *port)).is_ok())
        .expect("a free port below 1000")
}

/// The ids of `pid`: (real, effective, saved, filesystem) uids and gids, from /proc.
fn ids(pid: u32) -> (String, String) {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = |key: &str| {
        let line = status.lines().find(|line| line.starts_with(key)).unwrap();
        line[key.len()..]
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    (line("Uid:"), line("Gid:"))
}

fn nobody_ids() -> (String, String) {
    let id = |flag: &str| {
        let out = Command::new("id").arg(flag).arg(USER).output().unwrap();
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    let uid = id("-u");
    let gid = String::from_utf8(
        Command::new("getent")
            .args(["group", GROUP])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap()
    .split(':')
    .nth(2)
    .unwrap()
    .to_string();
    (
        format!("{uid} {uid} {uid} {uid}"),
        format!("{gid} {gid} {gid} {gid}"),
    )
}

/// The folder must let the user read the config again (a reload) and remove socket files.
fn open_up(dir: &Path) {
    fs::set_permissions(dir, fs::Permissions::from_mode(0o777)).unwrap();
}

#[test]
fn root_is_dropped_once_every_socket_is_bound() {
    if !root_or_skip("root_is_dropped_once_every_socket_is_bound") {
        return;
    }
    let port = free_privileged_port();
    let text = format!("user = \"{USER}\"\ngroup = \"{GROUP}\"\n\n")
        + &config(&[
            (
                "low",
                &format!("tcp://127.0.0.1:{port}"),
                "echo",
                "threading",
                "",
            ),
            ("forked", "tcp://127.0.0.1:0", "echo", "forking", ""),
            ("local", "unix://{dir}/l.sock", "echo", "reactor", ""),
        ]);
    let mut serve = ServeProcess::start(&text);
    open_up(serve.dir());
    let want = nobody_ids();
    assert_eq!(ids(serve.pid()), want, "the main process");
    let children = descendants_stat(serve.pid());
    let forked = children
        .iter()
        .find(|s| s.ppid == serve.pid())
        .expect("a server process");
    assert_eq!(ids(forked.pid), want, "the forking server's process");
    for name in ["low", "forked", "local"] {
        let mut client = Client::connect(serve.endpoint(name)).unwrap();
        assert_eq!(client.echo(b"hi\n").unwrap(), b"hi\n", "{name}");
    }
    assert!(serve
        .stderr()
        .contains(&format!("now running as user = \"{USER}\"")));

    // A reload that needs a privileged port bound again is refused whole, and says why.
    let other = free_privileged_port();
    let more = text.clone()
        + &config(&[(
            "lower",
            &format!("tcp://127.0.0.1:{other}"),
            "echo",
            "threading",
            "",
        )]);
    write_config(serve.dir(), "sockserv.toml", &more);
    serve.signal("HUP");
    assert!(
        serve.wait_stderr("reload refused", 1, WAIT),
        "{}",
        serve.stderr()
    );
    let stderr = serve.stderr();
    assert!(
        stderr.contains(&format!("port {other} is privileged")),
        "{stderr}"
    );
    assert!(
        stderr.contains("restart the service to bind it"),
        "{stderr}"
    );
    let mut client = Client::connect(serve.endpoint("low")).unwrap();
    assert_eq!(client.echo(b"still\n").unwrap(), b"still\n");
    drop(client);
    assert!(serve.terminate().success(), "{}", serve.stderr());
}

/// Handler code runs after the drop: a search index only root can read cannot be loaded.
#[test]
fn handler_code_never_runs_as_root() {
    if !root_or_skip("handler_code_never_runs_as_root") {
        return;
    }
    let dir = common::temp_dir();
    open_up(dir.path());
    let index = dir.path().join("index.json");
    fs::write(&index, r#"{"ring": "In the car"}"#).unwrap();
    fs::set_permissions(&index, fs::Permissions::from_mode(0o600)).unwrap();
    let text = format!("user = \"{USER}\"\n\n")
        + &config(&[(
            "s",
            "tcp://127.0.0.1:0",
            "search",
            "threading",
            "[server.options]\nindex = \"index.json\"",
        )]);
    let path = write_config(dir.path(), "s.toml", &text);
    let output = common::run(&["serve", path.to_str().unwrap()], b"", WAIT);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("index.json"), "{stderr}");
    assert!(
        stderr.to_lowercase().contains("permission denied"),
        "{stderr}"
    );
    // Readable by the user, it serves.
    fs::set_permissions(&index, fs::Permissions::from_mode(0o644)).unwrap();
    let mut serve = ServeProcess::spawn(dir, &[path.as_os_str()], 1);
    assert_eq!(ids(serve.pid()), nobody_ids());
    assert!(serve.terminate().success(), "{}", serve.stderr());
}

#[test]
fn a_user_that_does_not_exist_is_a_config_error_with_its_place() {
    let dir = common::temp_dir();
    let text = "user = \"no-such-user-here\"\n\n".to_string()
        + &config(&[("e", "tcp://127.0.0.1:0", "echo", "threading", "")]);
    let path = write_config(dir.path(), "s.toml", &text);
    let output = common::run(&["check", path.to_str().unwrap()], b"", WAIT);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("{}:1:8", path.display())) && stderr.contains("no user named"),
        "{stderr}"
    );
}
