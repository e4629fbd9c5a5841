//! Plugins through the real binary: the example plugins are built with cargo, loaded by `sockserv`
//! from a config, and served over real sockets under the threading and forking strategies; every
//! refusal case is checked against a real library that breaks the ABI on purpose.

mod common;

use std::mem::{offset_of, size_of};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::thread;
use std::time::Duration;

use sockserv_plugin::abi::{HandlerTable, PluginTable};

use common::{config, eventually, temp_dir, write_config, Client, ServeProcess, SOCKSERV};

/// Where cargo put the binary, and so the plugins built for the same profile.
fn target_dir() -> PathBuf {
    Path::new(SOCKSERV).parent().unwrap().to_path_buf()
}

/// Build the example plugins and the bad-plugin fixture once per test run (a no-op when up to date).
fn built() -> &'static Plugins {
    static PLUGINS: OnceLock<Plugins> = OnceLock::new();
    PLUGINS.get_or_init(|| {
        let target = target_dir();
        let profile = target.file_name().unwrap().to_str().unwrap().to_string();
        let release = (profile == "release").then_some("--release");
        cargo(
            &[
                "build",
                "-p",
                "sockserv-example-kv",
                "-p",
                "sockserv-example-shout",
                "-p",
                "sockserv-test-bad-plugin",
            ],
            release,
        );
        let no_entry_dir = target.parent().unwrap().join("no-entry");
        let no_entry_arg = no_entry_dir.to_str().unwrap().to_string();
        cargo(
            &[
                "build",
                "-p",
                "sockserv-test-bad-plugin",
                "--features",
                "no-entry",
                "--target-dir",
                &no_entry_arg,
            ],
            release,
        );
        Plugins {
            kv: target.join("libsockserv_example_kv.so"),
            shout: target.join("libsockserv_example_shout.so"),
            bad: target.join("libsockserv_test_bad_plugin.so"),
            no_entry: no_entry_dir
                .join(&profile)
                .join("libsockserv_test_bad_plugin.so"),
        }
    })
}

struct Plugins {
    kv: PathBuf,
    shout: PathBuf,
    bad: PathBuf,
    no_entry: PathBuf,
}

fn cargo(args: &[&str], release: Option<&str>) {
    let status = Command::new(env!("CARGO"))
        .args(args)
        .args(release)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .expect("cannot run cargo");
    assert!(status.success(), "cargo {args:?} failed");
}

fn plugin_table(path: &Path, extra: &str) -> String {
    format!("[[plugin]]\npath = \"{}\"\n{extra}\n", path.display())
}

/// `sockserv ARGS` with `SOCKSERV_BAD_PLUGIN` set to `fault` (empty: no fault); `check` and
/// `plugins` are quick and need no bound.
fn sockserv_with_fault(args: &[&Path], fault: &str) -> Output {
    Command::new(SOCKSERV)
        .args(args)
        .env("SOCKSERV_BAD_PLUGIN", fault)
        .output()
        .expect("cannot run sockserv")
}

fn kv_exchange(client: &mut Client, request: &[u8], reply_lines: usize) -> String {
    client.send(request).unwrap();
    let reply = client
        .recv_until(|got| got.iter().filter(|&&b| b == b'\n').count() >= reply_lines)
        .unwrap();
    String::from_utf8(reply).unwrap()
}

#[test]
fn kv_keeps_a_store_per_connection_under_threading_and_forking() {
    let plugins = built();
    let text = plugin_table(&plugins.kv, "")
        + &config(&[
            ("kv-threads", "tcp://127.0.0.1:0", "kv", "threading", ""),
            ("kv-forks", "tcp://127.0.0.1:0", "kv", "forking", ""),
            ("kv-unix", "unix://{dir}/kv.sock", "kv", "threading", ""),
        ]);
    let serve = ServeProcess::start(&text);
    for name in ["kv-threads", "kv-forks", "kv-unix"] {
        let mut first = Client::connect(serve.endpoint(name)).unwrap();
        let mut second = Client::connect(serve.endpoint(name)).unwrap();
        assert_eq!(
            kv_exchange(&mut first, b"SET lang rust\nGET lang\n", 2),
            "OK\nVALUE rust\n",
            "{name}"
        );
        assert_eq!(
            kv_exchange(&mut second, b"GET lang\n", 1),
            "NOT_FOUND\n",
            "{name}"
        );
        assert_eq!(
            kv_exchange(&mut first, b"KEYS\nQUIT\n", 2),
            "KEYS lang\nBYE\n",
            "{name}"
        );
        assert_eq!(first.read_to_end().unwrap(), b"", "{name}: open after QUIT");
    }
}

#[test]
fn shout_answers_streams_and_datagrams_under_threading_and_forking() {
    let plugins = built();
    let plain = "[server.options]\nuppercase = false";
    let text = plugin_table(&plugins.shout, "")
        + &config(&[
            ("tcp-threads", "tcp://127.0.0.1:0", "shout", "threading", ""),
            ("tcp-forks", "tcp://127.0.0.1:0", "shout", "forking", ""),
            ("udp-threads", "udp://127.0.0.1:0", "shout", "threading", ""),
            ("udp-forks", "udp://127.0.0.1:0", "shout", "forking", ""),
            (
                "dgram-forks",
                "unix-dgram://{dir}/shout.sock",
                "shout",
                "forking",
                "",
            ),
            ("plain", "tcp://127.0.0.1:0", "shout", "threading", plain),
        ]);
    let serve = ServeProcess::start(&text);
    for name in [
        "tcp-threads",
        "tcp-forks",
        "udp-threads",
        "udp-forks",
        "dgram-forks",
    ] {
        let mut client = Client::connect(serve.endpoint(name)).unwrap();
        for _ in 0..3 {
            assert_eq!(
                client.echo(b"hello plugin\n").unwrap(),
                b"HELLO PLUGIN\n",
                "{name}"
            );
        }
    }
    let mut client = Client::connect(serve.endpoint("plain")).unwrap();
    assert_eq!(client.echo(b"as is\n").unwrap(), b"as is\n");
}

#[test]
fn plugins_command_lists_versions_abi_and_handlers() {
    let plugins = built();
    let dir = temp_dir();
    let text = plugin_table(&plugins.kv, "")
        + &plugin_table(&plugins.shout, "")
        + &config(&[("kv", "tcp://127.0.0.1:0", "kv", "", "")]);
    let path = write_config(dir.path(), "plugins.toml", &text);
    let output = sockserv_with_fault(&[Path::new("plugins"), &path], "");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("kv-example 0.1.0 (ABI 1.3)"), "{stdout}");
    assert!(stdout.contains("shout-example 0.1.0 (ABI 1.3)"), "{stdout}");
    assert!(
        stdout.contains("  kv: line-based key-value store"),
        "{stdout}"
    );
    assert!(stdout.contains("  shout: echo, in capitals"), "{stdout}");
}

/// `sockserv check` and `sockserv serve` both refuse the plugin, exit 2, and name the file.
fn assert_refused(plugin: &Path, fault: &str, expected: &str) {
    let dir = temp_dir();
    let text = plugin_table(plugin, "") + &config(&[("s", "tcp://127.0.0.1:0", "echo", "", "")]);
    let path = write_config(dir.path(), "refused.toml", &text);
    for command in ["check", "serve"] {
        let output = sockserv_with_fault(&[Path::new(command), &path], fault);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{command} {fault}: {stderr}");
        assert!(
            stderr.contains(&plugin.display().to_string()),
            "{command} {fault}: {stderr}"
        );
        assert!(stderr.contains(expected), "{command} {fault}: {stderr}");
        assert!(
            stderr.contains("refused.toml:2:8"),
            "{command} {fault}: no place in {stderr}"
        );
        assert!(
            output.stdout.is_empty(),
            "{command} {fault} served something"
        );
    }
}

#[test]
fn a_file_that_is_not_a_library_is_refused() {
    let dir = temp_dir();
    let fake = dir.path().join("libfake.so");
    std::fs::write(&fake, "not an ELF file").unwrap();
    assert_refused(&fake, "", "cannot load as a shared library");
}

#[test]
fn a_library_without_the_entry_symbol_is_refused() {
    assert_refused(&built().no_entry, "", "no sockserv_plugin_entry symbol");
}

#[test]
fn a_table_without_the_magic_is_refused() {
    assert_refused(&built().bad, "magic", "SOCKSERV magic");
    assert_refused(&built().bad, "null", "SOCKSERV magic");
}

#[test]
fn another_abi_major_version_is_refused() {
    assert_refused(
        &built().bad,
        "major",
        "built for plugin ABI 2.x, this sockserv speaks ABI 1.x",
    );
}

#[test]
fn a_handler_table_with_a_null_required_entry_is_refused_naming_it() {
    let bad = &built().bad;
    assert_refused(
        bad,
        "null_entry",
        &format!(
            "plugin {}: handler \"hollow\": required entry \"create\" is null",
            bad.display()
        ),
    );
}

#[test]
fn a_handler_table_shorter_than_abi_1_0s_is_refused() {
    // The fixture's short table is ABI 1.0's without its last entry, `destroy`.
    let v1_0 = offset_of!(HandlerTable, session_open);
    let short = v1_0 - size_of::<usize>();
    assert_refused(
        &built().bad,
        "short_handler",
        &format!(
            "malformed plugin table: handler table 1 is {short} bytes, smaller than ABI 1.0's {v1_0}"
        ),
    );
}

#[test]
fn a_plugin_table_that_is_only_its_header_is_refused() {
    // The header: magic (8 bytes), major and minor (4 each), size.
    let header = 16 + size_of::<usize>();
    let v1_0 = size_of::<PluginTable>();
    assert_refused(
        &built().bad,
        "short_plugin",
        &format!(
            "malformed plugin table: the plugin table is {header} bytes, smaller than ABI 1.0's \
             {v1_0}"
        ),
    );
}

#[test]
fn a_failing_create_is_refused_with_the_plugins_message() {
    let plugins = built();
    let dir = temp_dir();
    let text =
        plugin_table(&plugins.bad, "") + &config(&[("s", "tcp://127.0.0.1:0", "bad", "", "")]);
    let path = write_config(dir.path(), "create.toml", &text);
    let output = sockserv_with_fault(&[Path::new("check"), &path], "");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("server \"s\""), "{stderr}");
    assert!(
        stderr.contains("the bad plugin refuses every option"),
        "{stderr}"
    );
}

/// A client that sends `message` and reads until the server closes (or the reply is complete).
/// The server may close (even reset) the connection before the message is out: that reads as empty.
fn send_and_read_all(client: &mut Client, message: &[u8]) -> Vec<u8> {
    let _ = client.send(message);
    let _ = client.shutdown_write();
    client.read_to_end().unwrap_or_default()
}

#[test]
fn a_panicking_plugin_closes_one_connection_and_the_others_are_served() {
    let plugins = built();
    let options = "[server.options]\npanic_on = \"boom\"";
    let text = plugin_table(&plugins.shout, "")
        + &config(&[
            (
                "threads",
                "tcp://127.0.0.1:0",
                "shout",
                "threading",
                options,
            ),
            ("forks", "tcp://127.0.0.1:0", "shout", "forking", options),
        ]);
    let mut serve = ServeProcess::start(&text);
    for name in ["threads", "forks"] {
        let endpoint = serve.endpoint(name).clone();
        // A healthy client stays connected across the panic and keeps being answered.
        let mut healthy = Client::connect(&endpoint).unwrap();
        assert_eq!(healthy.echo(b"before\n").unwrap(), b"BEFORE\n");
        let mut doomed = Client::connect(&endpoint).unwrap();
        assert_eq!(
            send_and_read_all(&mut doomed, b"boom\n"),
            b"",
            "{name}: answered a panic"
        );
        assert_eq!(healthy.echo(b"after\n").unwrap(), b"AFTER\n", "{name}");
        let mut fresh = Client::connect(&endpoint).unwrap();
        assert_eq!(fresh.echo(b"new\n").unwrap(), b"NEW\n", "{name}");
    }
    let logged = eventually(Duration::from_secs(5), || {
        serve
            .stderr()
            .matches("handle panicked: asked to panic on \"boom\"")
            .count()
            == 2
    });
    assert!(logged, "{}", serve.stderr());
    assert!(serve.terminate().success());
}

/// Under forking, a child whose handler panicked exits 1, as socketserver's child does after an
/// exception.
#[test]
fn a_forked_child_whose_handler_panicked_exits_1() {
    let plugins = built();
    let options = "[server.options]\npanic_on = \"boom\"";
    let text = plugin_table(&plugins.shout, "")
        + &config(&[("forks", "tcp://127.0.0.1:0", "shout", "forking", options)]);
    let mut serve = ServeProcess::start_limited(&text, 1024, &[("RUST_LOG", "debug")]);
    let mut doomed = Client::connect(serve.endpoint("forks")).unwrap();
    assert_eq!(send_and_read_all(&mut doomed, b"boom\n"), b"");
    let exited = || serve.stderr().contains("exited with status 1");
    assert!(
        eventually(Duration::from_secs(5), exited),
        "{}",
        serve.stderr()
    );
    assert!(serve.terminate().success());
}

#[test]
fn forking_contains_a_plugin_that_crashes_the_process() {
    let plugins = built();
    let options = "[server.options]\nabort_on = \"crash\"";
    let text = plugin_table(&plugins.shout, "")
        + &config(&[("forks", "tcp://127.0.0.1:0", "shout", "forking", options)]);
    let mut serve = ServeProcess::start(&text);
    let endpoint = serve.endpoint("forks").clone();
    let mut healthy = Client::connect(&endpoint).unwrap();
    for _ in 0..3 {
        let mut doomed = Client::connect(&endpoint).unwrap();
        assert_eq!(send_and_read_all(&mut doomed, b"crash\n"), b"");
        assert_eq!(healthy.echo(b"still here\n").unwrap(), b"STILL HERE\n");
    }
    // Each crash is logged with its peer; the children were reaped and the server stops cleanly.
    let logged = eventually(Duration::from_secs(5), || {
        serve.stderr().matches("killed by SIGABRT").count() == 3
    });
    assert!(logged, "{}", serve.stderr());
    assert!(serve.terminate().success(), "{}", serve.stderr());
}

#[test]
fn a_handler_is_disabled_after_the_configured_number_of_panics() {
    let plugins = built();
    let options = "[server.options]\npanic_on = \"boom\"";
    let text = plugin_table(&plugins.shout, "disable_after_panics = 2")
        + &config(&[("s", "tcp://127.0.0.1:0", "shout", "threading", options)]);
    let serve = ServeProcess::start(&text);
    let endpoint = serve.endpoint("s").clone();
    for _ in 0..2 {
        let mut doomed = Client::connect(&endpoint).unwrap();
        assert_eq!(send_and_read_all(&mut doomed, b"boom\n"), b"");
    }
    // The panics are counted once their requests are done; give the server a moment to get there.
    thread::sleep(Duration::from_millis(50));
    let mut refused = Client::connect(&endpoint).unwrap();
    assert_eq!(send_and_read_all(&mut refused, b"hello\n"), b"");
    let logged = eventually(Duration::from_secs(5), || {
        serve
            .stderr()
            .contains("handler shout disabled after 2 panics")
    });
    assert!(logged, "{}", serve.stderr());
}

#[test]
fn the_example_plugin_config_checks_once_its_plugins_are_built() {
    let plugins = built();
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/examples/plugins.toml");
    let text = std::fs::read_to_string(&example).unwrap();
    // The example points at release builds; point it at the ones this test run built.
    let text = text
        .replace(
            "../../target/release/libsockserv_example_kv.so",
            plugins.kv.to_str().unwrap(),
        )
        .replace(
            "../../target/release/libsockserv_example_shout.so",
            plugins.shout.to_str().unwrap(),
        );
    let dir = temp_dir();
    let path = write_config(dir.path(), "plugins.toml", &text);
    let output = sockserv_with_fault(&[Path::new("check"), &path], "");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.ends_with("ok, 3 server(s)\n"), "{stdout}");
}

#[test]
fn a_plugin_built_for_abi_1_0_loads_with_its_tables_read_at_their_own_size() {
    let plugins = built();
    let dir = temp_dir();
    let text =
        plugin_table(&plugins.bad, "") + &config(&[("s", "tcp://127.0.0.1:0", "echo", "", "")]);
    let path = write_config(dir.path(), "old.toml", &text);
    let output = sockserv_with_fault(&[Path::new("plugins"), &path], "v1_0");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("old-plugin 1.0.0 (ABI 1.0)"), "{stdout}");
    // The second handler is found at 1.0's stride, and no 1.0 handler runs under the reactor.
    assert!(
        stdout
            .contains("  old-two: an ABI 1.0 handler [tcp, unix; sync, threading, forking, pool]"),
        "{stdout}"
    );
    let reactor = plugin_table(&plugins.bad, "")
        + &config(&[("old", "tcp://127.0.0.1:0", "old-one", "reactor", "")]);
    let path = write_config(dir.path(), "old-reactor.toml", &reactor);
    let output = sockserv_with_fault(&[Path::new("check"), &path], "v1_0");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("cannot run under the reactor strategy"),
        "{stderr}"
    );
}

#[test]
fn shout_serves_under_the_reactor_and_a_panic_closes_only_its_connection() {
    let plugins = built();
    let options = "[server.options]\npanic_on = \"boom\"";
    let text = plugin_table(&plugins.shout, "")
        + &config(&[
            ("loop", "tcp://127.0.0.1:0", "shout", "reactor", options),
            (
                "loop-unix",
                "unix://{dir}/shout.sock",
                "shout",
                "reactor",
                "",
            ),
        ]);
    let serve = ServeProcess::start(&text);
    for name in ["loop", "loop-unix"] {
        let mut client = Client::connect(serve.endpoint(name)).unwrap();
        for _ in 0..3 {
            assert_eq!(
                client.echo(b"event driven\n").unwrap(),
                b"EVENT DRIVEN\n",
                "{name}"
            );
        }
    }
    let endpoint = serve.endpoint("loop").clone();
    let mut healthy = Client::connect(&endpoint).unwrap();
    assert_eq!(healthy.echo(b"before\n").unwrap(), b"BEFORE\n");
    let mut doomed = Client::connect(&endpoint).unwrap();
    assert_eq!(send_and_read_all(&mut doomed, b"boom\n"), b"");
    assert_eq!(healthy.echo(b"after\n").unwrap(), b"AFTER\n");
    let logged = eventually(Duration::from_secs(5), || {
        serve
            .stderr()
            .contains("on_data panicked: asked to panic on \"boom\"")
    });
    assert!(logged, "{}", serve.stderr());
}

#[test]
fn a_blocking_only_plugin_is_refused_under_the_reactor() {
    let plugins = built();
    let dir = temp_dir();
    let text = plugin_table(&plugins.kv, "")
        + &config(&[("kv", "tcp://127.0.0.1:0", "kv", "reactor", "")]);
    let path = write_config(dir.path(), "kv-reactor.toml", &text);
    let output = sockserv_with_fault(&[Path::new("check"), &path], "");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("server \"kv\""), "{stderr}");
    assert!(
        stderr.contains("cannot run under the reactor strategy"),
        "{stderr}"
    );
}

#[test]
fn bad_plugin_tables_in_the_config_are_reported_with_their_place() {
    let dir = temp_dir();
    let text = "[[plugin]]\npath = \"missing.so\"\ndisable_after_panics = 0\n\n".to_string()
        + &config(&[("s", "tcp://127.0.0.1:0", "echo", "", "")]);
    let path = write_config(dir.path(), "bad.toml", &text);
    let output = sockserv_with_fault(&[Path::new("check"), &path], "");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("bad.toml:3:24"), "{stderr}");
    assert!(stderr.contains("disable_after_panics"), "{stderr}");
}
