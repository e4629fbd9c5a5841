//! The `sockserv` command line from the outside: `check` on the shipped configs and on every kind of
//! bad config (exit 2, each problem with its `FILE:LINE:COL`, every problem of a file in one run),
//! `serve` on a taken port (exit 1), `client echo|timestamp` against served configs, and `serve`
//! with no file (the embedded default).

mod common;

use std::ffi::OsStr;
use std::fs;
use std::net::{TcpListener, UdpSocket};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use common::{config, run, strip_stamp, temp_dir, write_config, ServeProcess};

/// A command that does not serve must be done well within this.
const RUN_LIMIT: Duration = Duration::from_secs(20);

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `sockserv ARGS`, expecting exit `code`; returns (stdout, stderr).
fn expect_exit(args: &[&str], stdin: &[u8], code: i32) -> (String, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = run(args, stdin, RUN_LIMIT);
    let (stdout, stderr) = (text(&stdout), text(&stderr));
    assert_eq!(
        status.code(),
        Some(code),
        "sockserv {args:?}\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    (stdout, stderr)
}

fn repo_config(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("config")
        .join(relative)
}

fn server_count(path: &Path) -> usize {
    let text = fs::read_to_string(path).unwrap();
    text.lines()
        .filter(|line| line.trim() == "[[server]]")
        .count()
}

// --- check: the shipped configs ---------------------------------------------------------------------

#[test]
fn check_passes_on_the_default_and_every_example_config() {
    let mut files = vec![repo_config("default.toml")];
    let examples = fs::read_dir(repo_config("examples")).expect("config/examples exists");
    let mut examples: Vec<PathBuf> = examples
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension() == Some(OsStr::new("toml")))
        // Configs with plugins need the plugins built first: tests/plugins.rs checks those.
        .filter(|path| !fs::read_to_string(path).unwrap().contains("[[plugin]]"))
        .collect();
    examples.sort();
    assert!(!examples.is_empty(), "no config/examples/*.toml");
    files.extend(examples);
    for file in files {
        let path = file.to_str().unwrap();
        let (stdout, _) = expect_exit(&["check", path], b"", 0);
        let summary = format!("{path}: ok, {} server(s)", server_count(&file));
        assert!(
            stdout.ends_with(&format!("{summary}\n")),
            "{path}:\n{stdout}"
        );
    }
}

#[test]
fn check_without_a_file_checks_the_embedded_default() {
    let (stdout, _) = expect_exit(&["check"], b"", 0);
    let count = server_count(&repo_config("default.toml"));
    assert!(
        stdout.ends_with(&format!("<embedded default>: ok, {count} server(s)\n")),
        "{stdout}"
    );
    assert!(
        stdout.contains("echo-tcp: echo on tcp://127.0.0.1:20000 (threading)"),
        "{stdout}"
    );
}

// --- check: bad configs -----------------------------------------------------------------------------

/// The start of a valid server; each bad config adds one mistake.
const SERVER: &str =
    "[[server]]\nname = \"s\"\nlisten = \"tcp://127.0.0.1:0\"\nhandler = \"echo\"\n";

/// `SERVER` with `extra` appended.
fn with(extra: &str) -> String {
    format!("{SERVER}{extra}")
}

/// One kind of mistake per row: (case, config, LINE:COL of the mistake, a piece of its message).
fn bad_configs() -> Vec<(&'static str, String, &'static str, &'static str)> {
    vec![
        (
            "syntax error",
            "[[server]]\nname = \"s\nlisten = \"tcp://127.0.0.1:0\"\nhandler = \"echo\"\n".into(),
            "2:10",
            "invalid basic string",
        ),
        (
            "unknown key",
            with("max_thread = 4\n"),
            "5:1",
            "server \"s\": unknown key `max_thread`: did you mean `max_threads`?",
        ),
        (
            "unknown handler",
            SERVER.replace("\"echo\"", "\"ehco\""),
            "4:11",
            "server \"s\": unknown handler \"ehco\": expected echo",
        ),
        (
            "unknown strategy",
            with("strategy = \"pools\"\n"),
            "5:12",
            "server \"s\": unknown strategy \"pools\": expected sync, threading, forking, pool or reactor",
        ),
        (
            "bad endpoint",
            SERVER.replace("127.0.0.1:0", "localhost"),
            "3:10",
            "server \"s\": listen: endpoint \"tcp://localhost\"",
        ),
        (
            "duplicate name",
            with("\n[[server]]\nname = \"s\"\nlisten = \"udp://127.0.0.1:0\"\nhandler = \"echo\"\n"),
            "7:8",
            "server \"s\": server name \"s\" is already used on line 2",
        ),
        (
            "max_children under threading",
            with("strategy = \"threading\"\nmax_children = 4\n"),
            "6:16",
            "server \"s\": max_children applies only to the forking strategy",
        ),
        (
            "handler option rejected",
            SERVER.replace("\"echo\"", "\"timestamp\"") + "[server.options]\nframing = \"word\"\n",
            "6:11",
            "server \"s\": options of handler \"timestamp\": option \"framing\" must be \"chunk\" or \"line\"",
        ),
        (
            "unix_mode on tcp",
            with("[server.socket]\nunix_mode = \"0660\"\n"),
            "6:13",
            "server \"s\": socket.unix_mode applies only to unix and unix-dgram endpoints",
        ),
    ]
}

#[test]
fn each_kind_of_bad_config_exits_2_with_its_place_and_message() {
    let dir = temp_dir();
    let mut failures = Vec::new();
    for (case, config, place, message) in bad_configs() {
        let file = write_config(
            dir.path(),
            &format!("{}.toml", case.replace(' ', "-")),
            &config,
        );
        let path = file.to_str().unwrap();
        let output = run(&["check", path], b"", RUN_LIMIT);
        let stderr = text(&output.stderr);
        let expected = format!("{path}:{place}: ");
        let line = stderr.lines().find(|line| line.starts_with(&expected));
        let problem = if output.status.code() != Some(2) {
            Some(format!("exit status {}", output.status))
        } else if !output.stdout.is_empty() {
            Some(format!("printed {:?} on stdout", text(&output.stdout)))
        } else if stderr.lines().count() != 1 {
            Some("not exactly one problem reported".to_string())
        } else if !line.is_some_and(|line| line.contains(message)) {
            Some(format!(
                "no line starting {expected:?} and containing {message:?}"
            ))
        } else {
            None
        };
        if let Some(problem) = problem {
            failures.push(format!("{case}: {problem}; stderr:\n{stderr}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_problem_of_a_config_is_reported() {
    let dir = temp_dir();
    // Two problems in one server, and one in another.
    let text = config(&[
        ("a", "tcp://127.0.0.1:0", "ehco", "pools", ""),
        (
            "b",
            "udp://127.0.0.1:0",
            "echo",
            "threading",
            "[server.socket]\nnodelay = true",
        ),
    ]);
    let file = write_config(dir.path(), "two-servers.toml", &text);
    let path = file.to_str().unwrap();
    let (stdout, stderr) = expect_exit(&["check", path], b"", 2);
    assert_eq!(stdout, "");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 3, "{stderr}");
    assert!(
        lines[0].starts_with(&format!("{path}:4:11: server \"a\": unknown handler")),
        "{stderr}"
    );
    assert!(
        lines[1].starts_with(&format!("{path}:5:12: server \"a\": unknown strategy")),
        "{stderr}"
    );
    assert!(
        lines[2].starts_with(&format!("{path}:13:11: server \"b\": socket.nodelay")),
        "{stderr}"
    );
}

#[test]
fn each_bad_handler_option_is_its_own_error_at_its_own_place() {
    let dir = temp_dir();
    let text = SERVER.replace("\"echo\"", "\"timestamp\"")
        + "[server.options]\nframing = \"word\"\nzone = \"CET\"\nutc = true\n";
    let file = write_config(dir.path(), "options.toml", &text);
    let path = file.to_str().unwrap();
    let (stdout, stderr) = expect_exit(&["check", path], b"", 2);
    assert_eq!(stdout, "");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 2, "{stderr}");
    let prefix = "server \"s\": options of handler \"timestamp\": ";
    // A bad value is placed at the value, an unknown key at the key.
    assert_eq!(
        lines[0],
        format!(
            "{path}:6:11: {prefix}option \"framing\" must be \"chunk\" or \"line\", not \"word\""
        )
    );
    assert_eq!(
        lines[1],
        format!("{path}:7:1: {prefix}unknown option \"zone\" (handler \"timestamp\" takes: format, utc, framing)")
    );
}

/// `sockserv check` on `text`, written as `name` in `dir`: exit 2, nothing on stdout, and each
/// stderr line returned with the file's path (and its colon) cut from its start.
fn check_refuses(dir: &Path, name: &str, text: &str) -> Vec<String> {
    let file = write_config(dir, name, text);
    let path = file.to_str().unwrap();
    let (stdout, stderr) = expect_exit(&["check", path], b"", 2);
    assert_eq!(stdout, "");
    let prefix = format!("{path}:");
    let lines = stderr.lines().map(|line| {
        let cut = line.strip_prefix(&prefix);
        cut.unwrap_or_else(|| panic!("{line:?} does not start with {prefix:?}"))
    });
    lines.map(str::to_string).collect()
}

#[test]
fn check_reports_both_typos_of_a_file_in_one_run() {
    let text = with("max_thread = 10\n[server.socket]\nreuse_adress = true\n");
    let lines = check_refuses(temp_dir().path(), "typos.toml", &text);
    assert_eq!(
        lines,
        [
            "5:1: server \"s\": unknown key `max_thread`: did you mean `max_threads`?",
            "7:1: server \"s\": unknown key `socket.reuse_adress`: did you mean \
             `socket.reuse_address`?",
        ]
    );
}

#[test]
fn check_names_what_the_user_wrote_and_where() {
    let text = r#"[[server]]
name = "web"
name = "www"
listen = "tcp://127.0.0.1:70000"
handler = "echo"
max_threads = "lots"

[[server]]
name = "files"
listen = "unix://{dir}/files.sock"
handler = "echo"
colour = "blue"
[server.socket]
unix_mode = 0o600

[[server]]
name = "nameless-listen"
handler = "echo"
"#;
    let lines = check_refuses(temp_dir().path(), "wrote.toml", text);
    assert_eq!(
        lines,
        [
            "3:1: server \"web\": duplicate key `name`: it is already set in this table",
            "4:10: server \"web\": listen: endpoint \"tcp://127.0.0.1:70000\": port 70000 is out \
             of range (0 to 65535; 0 lets the system pick a free port)",
            "6:15: server \"web\": max_threads: expected a positive whole number, found \"lots\"",
            "12:1: server \"files\": unknown key `colour`: expected name, listen, handler, \
             strategy, max_threads, max_children, workers, queue, loops, datagrams, \
             max_packet_size, timeout, drain_timeout, socket, limits, proxy_protocol, tls or \
             options",
            "14:13: server \"files\": socket.unix_mode: expected an octal mode in a string, such \
             as \"0660\", found 0o600; write it as a string: \"0600\"",
            "16:1: server \"nameless-listen\": missing key `listen`: every [[server]] needs name, \
             listen and handler",
        ]
    );
}

#[test]
fn check_refuses_what_cannot_run_every_problem_in_one_run() {
    let text = r#"[[server]]
name = "any"
listen = "tcp://0.0.0.0:20900"
handler = "echo"

[[server]]
name = "loopback"
listen = "tcp://127.0.0.1:20900"
handler = "echo"
strategy = "pool"
queue = 1000000000
workers = 20000

[[server]]
name = "datagrams"
listen = "udp://127.0.0.1:0"
handler = "echo"
max_packet_size = 1000000000000

[[server]]
name = "loops"
listen = "tcp://127.0.0.1:0"
handler = "echo"
strategy = "reactor"
loops = 20000

[[server]]
name = "nowhere"
listen = "unix://{dir}/no-such-folder/x.sock"
handler = "echo"
[server.socket]
unix_mode = "07777"
"#;
    let dir = temp_dir();
    let lines = check_refuses(dir.path(), "cannot-run.toml", text);
    let folder = dir.path().join("no-such-folder");
    assert_eq!(
        lines,
        [
            "8:10: server \"loopback\": tcp://127.0.0.1:20900 and tcp://0.0.0.0:20900 of server \
             \"any\" (line 3) cannot both bind: a wildcard address takes the port on every \
             address, so the second bind would fail with \"Address already in use\"; listen on \
             one address, or set socket.reuse_port = true on both"
                .to_string(),
            "11:9: server \"loopback\": queue: must be between 1 and 65536, got 1000000000"
                .to_string(),
            "12:11: server \"loopback\": workers: must be between 1 and 4096, got 20000"
                .to_string(),
            "18:19: server \"datagrams\": max_packet_size: must be between 1 and 65507 (the \
             largest UDP payload over IPv4), got 1000000000000"
                .to_string(),
            "25:9: server \"loops\": loops: must be between 1 and 1024, got 20000".to_string(),
            format!(
                "29:10: server \"nowhere\": listen: the socket file's folder {} does not exist",
                folder.display()
            ),
            "32:13: server \"nowhere\": socket.unix_mode: \"07777\" has bits beyond the \
             permission bits: write a mode from \"0000\" to \"0777\" (setuid, setgid and sticky \
             mean nothing on a socket file)"
                .to_string(),
        ]
    );
}

#[test]
fn check_gives_the_loaders_reason_for_a_plugin_that_does_not_load() {
    let dir = temp_dir();
    // Long enough for the loader to read a header: a shorter file is "file too short".
    fs::write(dir.path().join("libtext.so"), "not a library\n".repeat(40)).unwrap();
    let text = format!(
        "[[plugin]]\npath = \"libmissing.so\"\n\n[[plugin]]\npath = \"libtext.so\"\n\n{SERVER}"
    );
    let lines = check_refuses(dir.path(), "plugins.toml", &text);
    let folder = dir.path().display();
    assert_eq!(
        lines,
        [
            format!(
                "2:8: plugin {folder}/libmissing.so: cannot load as a shared library: cannot \
                 open shared object file: No such file or directory"
            ),
            format!(
                "5:8: plugin {folder}/libtext.so: cannot load as a shared library: invalid ELF \
                 header"
            ),
        ]
    );
}

#[test]
fn check_of_a_missing_file_exits_2_naming_it() {
    let dir = temp_dir();
    let path = dir.path().join("missing.toml");
    let path = path.to_str().unwrap();
    let (_, stderr) = expect_exit(&["check", path], b"", 2);
    assert!(
        stderr.contains(&format!("{path}: cannot read the config file")),
        "{stderr}"
    );
}

// --- serve: a port already taken -------------------------------------------------------------------

/// A config whose last server's port is taken, after a threading and a forking Unix server.
fn taken_port_config(taken: &TcpListener) -> (String, String) {
    let endpoint = format!("tcp://{}", taken.local_addr().unwrap());
    let text = config(&[
        ("first", "unix://{dir}/first.sock", "echo", "threading", ""),
        ("forks", "unix://{dir}/forks.sock", "echo", "forking", ""),
        ("taken", &endpoint, "echo", "threading", ""),
    ]);
    (text, endpoint)
}

#[test]
fn serve_on_a_taken_port_exits_1_naming_the_endpoint() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let (text, endpoint) = taken_port_config(&taken);
    let dir = temp_dir();
    let file = write_config(dir.path(), "taken.toml", &text);
    let (_, stderr) = expect_exit(&["serve", file.to_str().unwrap()], b"", 1);
    assert!(
        stderr.contains(&format!("taken: cannot bind {endpoint}")),
        "{stderr}"
    );
    assert!(stderr.contains("Address already in use"), "{stderr}");
    assert!(
        !dir.path().join("first.sock").exists(),
        "first.sock left behind"
    );
}

#[test]
fn serve_on_a_taken_port_removes_the_forking_servers_socket_file() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let (text, _) = taken_port_config(&taken);
    let dir = temp_dir();
    let file = write_config(dir.path(), "taken.toml", &text);
    for attempt in 1..=10 {
        expect_exit(&["serve", file.to_str().unwrap()], b"", 1);
        let forks = dir.path().join("forks.sock");
        assert!(!forks.exists(), "attempt {attempt}: forks.sock left behind");
    }
}

// --- client -----------------------------------------------------------------------------------------

/// Echo and timestamp on every socket kind.
fn client_config() -> String {
    config(&[
        ("echo-tcp", "tcp://127.0.0.1:0", "echo", "threading", ""),
        ("echo-udp", "udp://127.0.0.1:0", "echo", "threading", ""),
        ("echo-unix", "unix://{dir}/echo.sock", "echo", "forking", ""),
        (
            "echo-dgram",
            "unix-dgram://{dir}/echo-dgram.sock",
            "echo",
            "sync",
            "",
        ),
        ("ts-tcp", "tcp://127.0.0.1:0", "timestamp", "threading", ""),
        ("ts-udp", "udp://127.0.0.1:0", "timestamp", "sync", ""),
        ("ts-unix", "unix://{dir}/ts.sock", "timestamp", "sync", ""),
        (
            "ts-dgram",
            "unix-dgram://{dir}/ts-dgram.sock",
            "timestamp",
            "forking",
            "",
        ),
    ])
}

/// Each line of `stdout` is `[stamp] message`, for each of `messages` in order.
fn assert_stamped_lines(stdout: &str, messages: &[&str], case: &str) {
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), messages.len(), "{case}: {stdout:?}");
    for (line, message) in lines.iter().zip(messages) {
        let data = strip_stamp(line.as_bytes());
        assert_eq!(data, Some(message.as_bytes()), "{case}: {line:?}");
    }
}

#[test]
fn client_echo_and_timestamp_print_the_replies_on_every_socket_kind() {
    let serve = ServeProcess::start(&client_config());
    for kind in ["tcp", "udp", "unix", "dgram"] {
        let endpoint = serve.endpoint(&format!("echo-{kind}")).to_string();
        let (stdout, _) = expect_exit(&["client", "echo", &endpoint, "hello"], b"", 0);
        assert_eq!(stdout, "hello\n", "echo {endpoint}");
        let args = ["client", "echo", &endpoint, "one", "two words"];
        let (stdout, _) = expect_exit(&args, b"", 0);
        assert_eq!(stdout, "one\ntwo words\n", "echo {endpoint}");

        let endpoint = serve.endpoint(&format!("ts-{kind}")).to_string();
        let (stdout, _) = expect_exit(&["client", "timestamp", &endpoint, "hello"], b"", 0);
        assert_stamped_lines(&stdout, &["hello"], &format!("timestamp {endpoint}"));
        let args = ["client", "timestamp", &endpoint, "one", "two words"];
        let (stdout, _) = expect_exit(&args, b"", 0);
        assert_stamped_lines(
            &stdout,
            &["one", "two words"],
            &format!("timestamp {endpoint}"),
        );
    }
}

#[test]
fn client_reads_messages_from_stdin_without_arguments() {
    let serve = ServeProcess::start(&client_config());
    for kind in ["tcp", "udp"] {
        let endpoint = serve.endpoint(&format!("echo-{kind}")).to_string();
        let (stdout, _) = expect_exit(&["client", "echo", &endpoint], b"first\nsecond\r\nthird", 0);
        assert_eq!(stdout, "first\nsecond\nthird\n", "{endpoint}");

        let endpoint = serve.endpoint(&format!("ts-{kind}")).to_string();
        let (stdout, _) = expect_exit(&["client", "timestamp", &endpoint], b"first\nsecond\n", 0);
        assert_stamped_lines(&stdout, &["first", "second"], &endpoint);
    }
}

#[test]
fn client_without_a_server_fails_with_exit_1() {
    let dir = temp_dir();
    let endpoint = format!("unix://{}", dir.path().join("nobody.sock").display());
    let (stdout, stderr) = expect_exit(&["client", "echo", &endpoint, "hi"], b"", 1);
    assert_eq!(stdout, "");
    assert!(stderr.contains(&endpoint), "{stderr}");
}

// --- serve with no file: the embedded default -------------------------------------------------------

/// The default config's fixed addresses, if all are free to serve on now.
fn default_addresses_free() -> Result<(), String> {
    for port in [20000, 21567] {
        TcpListener::bind(("127.0.0.1", port)).map_err(|err| format!("tcp port {port}: {err}"))?;
        UdpSocket::bind(("127.0.0.1", port)).map_err(|err| format!("udp port {port}: {err}"))?;
    }
    // search and chat: TCP only.
    for port in [65432, 9999] {
        TcpListener::bind(("127.0.0.1", port)).map_err(|err| format!("tcp port {port}: {err}"))?;
    }
    let path = "/tmp/sockserv-echo.sock";
    if UnixStream::connect(path).is_ok() {
        return Err(format!("something serves {path}"));
    }
    Ok(())
}

#[test]
fn serve_without_a_file_serves_the_embedded_default() {
    if let Err(busy) = default_addresses_free() {
        println!("skipped: the default config's addresses are busy ({busy})");
        return;
    }
    let count = server_count(&repo_config("default.toml"));
    // Checked and then bound: something may still take a port in between; that is a skip too.
    let mut serve = match ServeProcess::try_spawn(temp_dir(), &[], count) {
        Ok(serve) => serve,
        Err(why) if why.contains("Address already in use") => {
            println!("skipped: a default address was taken meanwhile:\n{why}");
            return;
        }
        Err(why) => panic!("{why}"),
    };
    let (stdout, _) = expect_exit(&["client", "echo", "tcp://127.0.0.1:20000", "hi"], b"", 0);
    assert_eq!(stdout, "hi\n");
    let (stdout, _) = expect_exit(
        &["client", "echo", "unix:///tmp/sockserv-echo.sock", "hi"],
        b"",
        0,
    );
    assert_eq!(stdout, "hi\n");
    let (stdout, _) = expect_exit(
        &["client", "timestamp", "udp://127.0.0.1:21567", "hi"],
        b"",
        0,
    );
    assert_stamped_lines(&stdout, &["hi"], "default timestamp-udp");
    let status = serve.terminate();
    assert!(
        status.success(),
        "exit status {status}; stderr:\n{}",
        serve.stderr()
    );
    assert!(
        !Path::new("/tmp/sockserv-echo.sock").exists(),
        "the default socket file was left"
    );
}

/// `--help` tells a new user how to see more or fewer log lines, and what the exit codes mean.
#[test]
fn help_names_rust_log_and_the_exit_codes() {
    let output = run(&["--help"], b"", common::WAIT);
    assert!(output.status.success(), "{output:?}");
    let help = String::from_utf8_lossy(&output.stdout);
    assert!(help.contains("RUST_LOG"), "{help}");
    assert!(help.contains("Exit codes: 0 ok"), "{help}");
}

/// The README's `sockserv check bad.toml` example is what `check` prints for the `bad.toml` it
/// shows: the file and the output are read from the README itself, so neither can drift.
#[test]
fn the_readmes_check_example_is_true() {
    let readme = fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("README.md");
    let after = |marker: &str, from: usize| {
        let start = readme[from..].find(marker).expect(marker) + from + marker.len();
        let end = readme[start..].find("```").expect("a closing fence") + start;
        (readme[start..end].to_string(), end)
    };
    let (bad, end) = after("With this `bad.toml`:\n\n```toml\n", 0);
    let (shown, _) = after("$ sockserv check bad.toml\n", end);
    let dir = temp_dir();
    fs::write(dir.path().join("bad.toml"), bad).unwrap();
    let output = std::process::Command::new(common::SOCKSERV)
        .args(["check", "bad.toml"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(text(&output.stderr), shown);
}
