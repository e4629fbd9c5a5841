//! A plugin in plain C: `plugins/examples/c-upper/upper.c` is compiled here with the system's C
//! compiler against the SDK's generated header (`plugins/sdk/include/sockserv_plugin.h`), then
//! loaded by `sockserv` from a config and served over real sockets under every strategy and socket
//! kind it declares, its error return included.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use common::{config, temp_dir, write_config, Client, ServeProcess, SOCKSERV};

/// The example, compiled once per test run into cargo's scratch folder for integration tests.
fn c_upper() -> &'static Path {
    static LIBRARY: OnceLock<PathBuf> = OnceLock::new();
    LIBRARY.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let library = Path::new(env!("CARGO_TARGET_TMPDIR")).join("libc_upper.so");
        let output = Command::new(std::env::var("CC").unwrap_or_else(|_| "cc".into()))
            .args([
                "-std=c11",
                "-Wall",
                "-Wextra",
                "-Werror",
                "-pedantic",
                "-O2",
            ])
            .args(["-shared", "-fPIC", "-I"])
            .arg(root.join("plugins/sdk/include"))
            .arg("-o")
            .arg(&library)
            .arg(root.join("plugins/examples/c-upper/upper.c"))
            .output()
            .expect("no C compiler: install one (`cc`), as .ci/run does");
        assert!(
            output.status.success(),
            "cc failed on c-upper:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        library
    })
}

fn plugin_table() -> String {
    format!("[[plugin]]\npath = \"{}\"\n\n", c_upper().display())
}

#[test]
fn c_upper_answers_in_capitals_under_every_strategy_and_socket_kind() {
    let text = plugin_table()
        + &config(&[
            ("sync", "tcp://127.0.0.1:0", "c-upper", "sync", ""),
            ("threads", "tcp://127.0.0.1:0", "c-upper", "threading", ""),
            ("forks", "tcp://127.0.0.1:0", "c-upper", "forking", ""),
            ("pool", "tcp://127.0.0.1:0", "c-upper", "pool", ""),
            ("reactor", "tcp://127.0.0.1:0", "c-upper", "reactor", ""),
            (
                "unix",
                "unix://{dir}/upper.sock",
                "c-upper",
                "threading",
                "",
            ),
            ("udp", "udp://127.0.0.1:0", "c-upper", "threading", ""),
            (
                "dgram-forks",
                "unix-dgram://{dir}/upper-dgram.sock",
                "c-upper",
                "forking",
                "",
            ),
        ]);
    let serve = ServeProcess::start(&text);
    for name in [
        "sync",
        "threads",
        "forks",
        "pool",
        "reactor",
        "unix",
        "udp",
        "dgram-forks",
    ] {
        let mut client = Client::connect(serve.endpoint(name)).unwrap();
        for message in [&b"hello from c\n"[..], b"Mixed Case 123\n"] {
            let expected = message.to_ascii_uppercase();
            assert_eq!(client.echo(message).unwrap(), expected, "{name}");
        }
    }
}

#[test]
fn an_error_return_closes_that_connection_is_logged_with_the_peer_and_serving_goes_on() {
    let text = plugin_table()
        + &config(&[
            ("threads", "tcp://127.0.0.1:0", "c-upper", "threading", ""),
            ("reactor", "tcp://127.0.0.1:0", "c-upper", "reactor", ""),
        ]);
    let serve = ServeProcess::start(&text);
    for name in ["threads", "reactor"] {
        let mut failing = Client::connect(serve.endpoint(name)).unwrap();
        failing.send(b"please fail!\n").unwrap();
        assert_eq!(
            failing.read_to_end().unwrap(),
            b"",
            "{name}: closed, no reply"
        );
        assert!(
            serve.wait_stderr(
                "the peer asked to fail",
                if name == "threads" { 1 } else { 2 },
                Duration::from_secs(10)
            ),
            "{name}: the failure is logged: {}",
            serve.stderr()
        );
        let mut next = Client::connect(serve.endpoint(name)).unwrap();
        assert_eq!(
            next.echo(b"still here\n").unwrap(),
            b"STILL HERE\n",
            "{name}"
        );
    }
    let stderr = serve.stderr();
    let line = stderr
        .lines()
        .find(|line| line.contains("the peer asked to fail"))
        .unwrap();
    assert!(
        line.contains("threads") && line.contains("127.0.0.1:"),
        "{line}"
    );
}

#[test]
fn plugins_lists_it_and_check_shows_its_refusal_of_options() {
    let dir = temp_dir();
    let good = write_config(
        dir.path(),
        "good.toml",
        &(plugin_table() + &config(&[("u", "tcp://127.0.0.1:0", "c-upper", "", "")])),
    );
    let listed = Command::new(SOCKSERV)
        .arg("plugins")
        .arg(&good)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&listed.stdout);
    assert!(listed.status.success(), "{stdout}");
    assert!(stdout.contains("c-upper 0.1.0 (ABI 1.3)"), "{stdout}");
    assert!(
        stdout.contains("  c-upper: every byte back in ASCII capitals"),
        "{stdout}"
    );
    let bad = write_config(
        dir.path(),
        "bad.toml",
        &(plugin_table()
            + &config(&[(
                "u",
                "tcp://127.0.0.1:0",
                "c-upper",
                "",
                "[server.options]\nshout = true",
            )])),
    );
    let checked = Command::new(SOCKSERV)
        .arg("check")
        .arg(&bad)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&checked.stderr);
    assert_eq!(checked.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("c-upper takes no options"), "{stderr}");
}
