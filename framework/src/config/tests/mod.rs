//! The config module's tests: good files become the expected settings (here), and every kind of
//! mistake is reported as its own [`ConfigErrorKind`] at the right `LINE:COL`, all of them at once
//! (`reading.rs` for phase 1; `errors.rs`, `ranges.rs` and `binds.rs` for phase 2). The fake
//! registry here stands in for the built-in handlers.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sockserv_plugin::{HandlerFactory, HandlerResult, Request, RequestHandler};

use super::*;

mod binds;
mod errors;
mod limits_table;
mod proxy_table;
mod ranges;
mod reading;
mod tls_table;
use crate::{
    Endpoint, HandlerEntry, SocketKind, SocketOptions, Strategy, StrategyKind, DEFAULT_MAX_CHILDREN,
};

struct Nop;

impl RequestHandler for Nop {
    fn handle(&mut self, _req: &mut Request<'_>) -> HandlerResult {
        Ok(())
    }
}

fn nop_factory() -> Arc<dyn HandlerFactory> {
    Arc::new(|| Box::new(Nop) as Box<dyn RequestHandler>)
}

fn entry(name: &str, kinds: &[SocketKind], strategies: &[StrategyKind]) -> HandlerEntry {
    HandlerEntry {
        name: name.into(),
        summary: String::new(),
        socket_kinds: kinds.to_vec(),
        strategies: strategies.to_vec(),
        strategy_note: None,
        build: Box::new(|_| Ok(nop_factory())),
    }
}

/// Like the built-in timestamp handler: refuses each key it does not know, and a `utc` that is not a
/// boolean.
fn strict_timestamp() -> HandlerEntry {
    let mut entry = entry("timestamp", &SocketKind::ALL, &StrategyKind::ALL);
    entry.build = Box::new(|options| {
        let mut errors: Vec<OptionError> = options
            .table
            .keys()
            .filter(|key| !["format", "utc", "framing"].contains(&key.as_str()))
            .map(|key| {
                let message = format!("unknown option {key:?}: expected format, utc or framing");
                OptionError::unknown_key(key, message)
            })
            .collect();
        if options.table.get("utc").is_some_and(|utc| !utc.is_bool()) {
            errors.push(OptionError::value(
                "utc",
                "option \"utc\" must be a boolean",
            ));
        }
        if errors.is_empty() {
            Ok(nop_factory())
        } else {
            Err(OptionErrors(errors))
        }
    });
    entry
}

/// Like the built-in chat handler: streams only, and no forking.
fn chat() -> HandlerEntry {
    let kinds = [SocketKind::Tcp, SocketKind::UnixStream];
    let mut entry = entry(
        "chat",
        &kinds,
        &[StrategyKind::Sync, StrategyKind::Threading],
    );
    entry.strategy_note = Some("chat needs shared memory between connections".into());
    entry
}

fn registry() -> Registry {
    let mut registry = Registry::new();
    registry
        .register(entry("echo", &SocketKind::ALL, &StrategyKind::ALL))
        .unwrap();
    registry.register(strict_timestamp()).unwrap();
    registry.register(chat()).unwrap();
    registry
}

fn load(text: &str) -> Result<Config, ConfigErrors> {
    load_str(text, "test.toml", Path::new("/base"), &mut registry())
}

fn errors(text: &str) -> Vec<ConfigError> {
    load(text).expect_err("the config should be refused").0
}

fn one_error(text: &str) -> ConfigError {
    let mut errors = errors(text);
    assert_eq!(errors.len(), 1, "expected one error, got {errors:#?}");
    errors.remove(0)
}

/// The 1-based line and column where `needle` first occurs in `text`.
fn position(text: &str, needle: &str) -> (usize, usize) {
    let offset = text.find(needle).expect("needle in text");
    let before = &text[..offset];
    let col = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    (before.matches('\n').count() + 1, col)
}

/// Where the value of the last `key = value` line of `extra` is in `text`.
fn value_position(text: &str, extra: &str) -> (usize, usize) {
    let last = extra.lines().last().unwrap();
    let (line, col) = position(text, last);
    (line, col + last.find(" = ").unwrap() + 3)
}

fn line_col(error: &ConfigError) -> (usize, usize) {
    let place = error.place.as_ref().expect("the error should have a place");
    assert_eq!(place.file, "test.toml");
    (place.line, place.col)
}

/// A one-server config on TCP with `extra` lines appended to its table.
fn server(listen: &str, handler: &str, extra: &str) -> String {
    format!("[[server]]\nname = \"s\"\nlisten = \"{listen}\"\nhandler = \"{handler}\"\n{extra}")
}

// --- good configs ---------------------------------------------------------------------------------

#[test]
fn a_full_server_becomes_its_settings() {
    let text = r#"
[[server]]
name = "web"
listen = "tcp://[::1]:8080"
handler = "echo"
strategy = "threading"
max_threads = 100
timeout = 2.5
drain_timeout = 1.5

[server.socket]
reuse_address = false
reuse_port = true
nodelay = true
recv_buffer_size = 65536
send_buffer_size = 32768
request_queue_size = 64
v6only = true
"#;
    let config = load(text).unwrap();
    assert_eq!(config.origin, "test.toml");
    let [server] = &config.servers[..] else {
        panic!("one server")
    };
    assert_eq!(server.handler, "echo");
    let expected = ServerSettings {
        name: "web".into(),
        endpoint: "tcp://[::1]:8080".parse().unwrap(),
        strategy: Strategy::Threading {
            max_threads: Some(100),
        },
        socket: SocketOptions {
            reuse_address: false,
            reuse_port: true,
            nodelay: Some(true),
            recv_buffer_size: Some(65536),
            send_buffer_size: Some(32768),
            request_queue_size: 64,
            v6only: Some(true),
            unix_mode: None,
            unix_owner: None,
            unix_group: None,
        },
        max_packet_size: crate::DEFAULT_MAX_PACKET_SIZE,
        timeout: Some(Duration::from_millis(2500)),
        spawn_per_datagram: false,
        drain_timeout: Duration::from_millis(1500),
        limits: crate::limits::Limits::default(),
        proxy_protocol: None,
        tls: None,
    };
    assert_eq!(server.settings, expected);
}

#[test]
fn pool_and_reactor_take_their_own_keys_and_defaults() {
    let strategy = |extra: &str| {
        load(&server("tcp://127.0.0.1:1", "echo", extra))
            .unwrap()
            .servers[0]
            .settings
            .strategy
    };
    assert_eq!(
        strategy("strategy = \"pool\""),
        Strategy::Pool {
            workers: crate::DEFAULT_POOL_WORKERS,
            queue: crate::DEFAULT_POOL_QUEUE
        }
    );
    assert_eq!(
        strategy("strategy = \"pool\"\nworkers = 4\nqueue = 8"),
        Strategy::Pool {
            workers: 4,
            queue: 8
        }
    );
    assert_eq!(
        strategy("strategy = \"reactor\"\nloops = 3"),
        Strategy::Reactor { loops: 3 }
    );
    let error = one_error(&server("tcp://127.0.0.1:1", "echo", "workers = 4"));
    assert!(
        matches!(
            error.kind,
            ConfigErrorKind::WrongStrategy { key: "workers", .. }
        ),
        "{error}"
    );
    let error = one_error(&server(
        "tcp://127.0.0.1:1",
        "echo",
        "strategy = \"pool\"\nloops = 2",
    ));
    assert!(
        matches!(
            error.kind,
            ConfigErrorKind::WrongStrategy { key: "loops", .. }
        ),
        "{error}"
    );
}

#[test]
fn datagrams_spawn_only_for_datagram_endpoints_under_threading_or_forking() {
    let udp = |extra: &str| load(&server("udp://127.0.0.1:1", "echo", extra));
    assert!(!udp("").unwrap().servers[0].settings.spawn_per_datagram);
    assert!(
        udp("datagrams = \"spawn\"").unwrap().servers[0]
            .settings
            .spawn_per_datagram
    );
    assert!(
        !udp("datagrams = \"inline\"").unwrap().servers[0]
            .settings
            .spawn_per_datagram
    );
    for refused in [
        server("tcp://127.0.0.1:1", "echo", "datagrams = \"spawn\""),
        server(
            "udp://127.0.0.1:1",
            "echo",
            "strategy = \"pool\"\ndatagrams = \"spawn\"",
        ),
        server("udp://127.0.0.1:1", "echo", "datagrams = \"sometimes\""),
    ] {
        let error = one_error(&refused);
        assert!(
            matches!(
                error.kind,
                ConfigErrorKind::BadValue {
                    key: "datagrams",
                    ..
                }
            ),
            "{error}"
        );
    }
}

#[test]
fn unset_keys_take_socketservers_defaults() {
    let config = load(&server("udp://127.0.0.1:9", "echo", "")).unwrap();
    let expected = ServerSettings::new("s", "udp://127.0.0.1:9".parse().unwrap());
    assert_eq!(config.servers[0].settings, expected);
    assert_eq!(expected.strategy, Strategy::Threading { max_threads: None });

    let text = server(
        "unix:///tmp/x.sock",
        "echo",
        "strategy = \"forking\"\ntimeout = 3\n",
    );
    let settings = &load(&text).unwrap().servers[0].settings;
    let max_children = DEFAULT_MAX_CHILDREN;
    assert_eq!(settings.strategy, Strategy::Forking { max_children });
    assert_eq!(settings.timeout, Some(Duration::from_secs(3)));
}

#[test]
fn datagram_and_unix_keys_are_read() {
    let extra =
        "strategy = \"sync\"\nmax_packet_size = 512\n[server.socket]\nunix_mode = \"0660\"\n";
    let config = load(&server("unix-dgram:///run/d.sock", "echo", extra)).unwrap();
    let settings = &config.servers[0].settings;
    assert_eq!(settings.strategy, Strategy::Sync);
    assert_eq!(settings.max_packet_size, 512);
    assert_eq!(settings.socket.unix_mode, Some(0o660));
}

#[test]
fn relative_unix_paths_resolve_against_the_base_folder() {
    let text = format!(
        "{}{}",
        server("unix://a.sock", "echo", ""),
        "[[server]]\nname = \"d\"\nlisten = \"unix-dgram://sub/b.sock\"\nhandler = \"echo\"\n"
    );
    // The folders must exist: the check refuses a socket it could not make.
    let base = tempfile::tempdir().unwrap();
    std::fs::create_dir(base.path().join("sub")).unwrap();
    let config = load_str(&text, "test.toml", base.path(), &mut registry()).unwrap();
    let endpoints: Vec<_> = config
        .servers
        .iter()
        .map(|s| &s.settings.endpoint)
        .collect();
    assert_eq!(endpoints[0], &Endpoint::Unix(base.path().join("a.sock")));
    assert_eq!(
        endpoints[1],
        &Endpoint::UnixDatagram(base.path().join("sub/b.sock"))
    );
}

#[test]
fn the_build_function_gets_the_options_the_folder_and_the_name() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let mut registry = registry();
    let probe_seen = Arc::clone(&seen);
    let mut probe = entry("probe", &SocketKind::ALL, &StrategyKind::ALL);
    probe.build = Box::new(move |options| {
        let line = format!(
            "{} {} {}",
            options.server,
            options.base_dir.display(),
            options.table
        );
        probe_seen.lock().unwrap().push(line);
        Ok(nop_factory())
    });
    registry.register(probe).unwrap();
    let text = format!(
        "{}[server.options]\nframing = \"line\"\n{}",
        server("tcp://127.0.0.1:1", "probe", ""),
        "[[server]]\nname = \"bare\"\nlisten = \"tcp://127.0.0.1:2\"\nhandler = \"probe\"\n"
    );
    load_str(&text, "test.toml", Path::new("/etc/ss"), &mut registry).unwrap();
    let seen = seen.lock().unwrap();
    assert_eq!(seen[0].trim_end(), "s /etc/ss framing = \"line\"");
    assert_eq!(seen[1].trim_end(), "bare /etc/ss");
}

#[test]
fn port_zero_may_repeat_and_tcp_and_udp_may_share_a_port() {
    let mut text = server("tcp://127.0.0.1:0", "echo", "");
    text += "[[server]]\nname = \"t\"\nlisten = \"tcp://127.0.0.1:0\"\nhandler = \"echo\"\n";
    text += "[[server]]\nname = \"u\"\nlisten = \"udp://127.0.0.1:0\"\nhandler = \"echo\"\n";
    assert_eq!(load(&text).unwrap().servers.len(), 3);
}

#[test]
fn the_embedded_config_is_the_shipped_default_and_parses() {
    // Its handlers are the real built-ins, which this crate cannot see: tests/cli.rs checks it (and
    // config/examples/) through the binary. Here: it is the file, and phase 1 accepts it.
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let shipped = std::fs::read_to_string(root.join("config/default.toml")).unwrap();
    assert_eq!(DEFAULT_CONFIG, shipped);
    let source = error::Source {
        file: EMBEDDED_ORIGIN,
        text: DEFAULT_CONFIG,
    };
    let (raw, problems) = super::read::read(source).unwrap();
    assert!(problems.is_empty(), "{problems:#?}");
    assert!(raw.server.len() >= 5);
}

#[test]
fn load_file_resolves_against_the_files_folder_and_reports_io_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(&path, server("unix://s.sock", "echo", "")).unwrap();
    let config = load_file(&path, &mut registry()).unwrap();
    assert_eq!(config.origin, path.display().to_string());
    let socket = dir.path().join("s.sock");
    assert_eq!(config.servers[0].settings.endpoint, Endpoint::Unix(socket));

    let missing = dir.path().join("missing.toml");
    let errors = load_file(&missing, &mut registry()).unwrap_err().0;
    assert!(matches!(
        &errors[..],
        [ConfigError {
            kind: ConfigErrorKind::Io { .. },
            place: None,
            ..
        }]
    ));
    assert!(errors[0].to_string().contains("missing.toml"));
}
