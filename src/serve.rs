//! `sockserv serve`: bind every server of a config, run each forking server in a process of its own
//! and each other server on a thread (see `fleet`), and supervise them (see `supervise`) until
//! SIGINT or SIGTERM, or until one of them dies.

use std::io::Read;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use sockserv_framework::activation::ListenFds;
use sockserv_framework::config::{self, BindPlan, Config, ConfigText, PlannedListener};
use sockserv_framework::heartbeat::Heartbeat;
use sockserv_framework::spawn::take_fd_from_env;
use sockserv_framework::{serve_process, Listener, Server};

use crate::loading::{self, Source};
use crate::notify::Notifier;
use crate::privileges;
use crate::supervise::{self, Given, Supervisor};
use crate::upgrade::Handover;
use crate::watchdog::{Watchdog, HEARTBEAT_FD, HEARTBEAT_MS};
use crate::Failure;

/// Print one line per server: what `check` shows and what `serve` prints at start.
pub fn describe(config: &Config) {
    for server in &config.servers {
        let settings = &server.settings;
        println!(
            "{}: {} on {} ({})",
            settings.name,
            server.handler,
            settings.endpoint,
            settings.strategy.kind()
        );
    }
}

/// Print each loaded plugin with its version, ABI version and handlers.
pub fn list_plugins(config: &Config) {
    if config.plugins.is_empty() {
        println!("{}: no [[plugin]] tables", config.origin);
    }
    for plugin in &config.plugins {
        let (major, minor) = plugin.abi;
        println!(
            "{} {} (ABI {major}.{minor}) from {}",
            plugin.name,
            plugin.version,
            plugin.path.display()
        );
        for handler in &plugin.handlers {
            let kinds: Vec<String> = handler.socket_kinds.iter().map(|k| k.to_string()).collect();
            let strategies: Vec<&str> = handler.strategies.iter().map(|s| s.name()).collect();
            println!(
                "  {}: {} [{}; {}]",
                handler.name,
                handler.summary,
                kinds.join(", "),
                strategies.join(", ")
            );
        }
    }
}

/// Serve the config `text` (read from `source`) until SIGINT or SIGTERM (a clean drain exits 0),
/// or until a server dies or a drain has to be cut short (an error: exit 1).
///
/// Every socket is bound first. With `user`/`group` in the config and this process root, root is
/// then dropped, and only then is the rest of the config validated (plugins loaded, handlers
/// built), so no plugin or handler code ever runs as root. Otherwise the config is validated
/// first, as `sockserv check` does, and then bound.
///
/// SIGINT and SIGTERM are blocked from the first bind until their handlers are installed (here and in
/// each server process), so a signal that arrives during start-up is acted on, never fatal.
///
/// # Errors
///
/// [`Failure::Config`] for a bad config (exit 2); [`Failure::Runtime`] when a socket cannot be
/// bound, root cannot be dropped, or the servers fail.
pub fn serve(source: Source, text: ConfigText, pid_file: Option<PathBuf>) -> Result<(), Failure> {
    let plan = config::plan(&text).map_err(Failure::Config)?;
    let blocked = supervise::block_signals()?;
    let result = serve_blocked(source, text, plan, pid_file);
    drop(blocked);
    result
}

fn serve_blocked(
    source: Source,
    text: ConfigText,
    plan: BindPlan,
    pid_file: Option<PathBuf>,
) -> Result<(), Failure> {
    // The memory every process counts in (see `metrics`): made before any server is, and handed
    // to the forking servers' processes.
    sockserv_framework::metrics::init();
    // Before any thread exists: these read and clear the environment.
    let mut passed = ListenFds::from_env()
        .map_err(anyhow::Error::from)?
        .unwrap_or_default();
    let notifier = Notifier::from_env().context("NOTIFY_SOCKET")?;
    let watchdog = Watchdog::from_env()?;
    let handover = Handover::from_env()?;
    let dropping = plan.run_as.clone().filter(|_| privileges::is_root());
    let (config, listeners) = match &dropping {
        Some(run_as) => {
            let listeners = bind_all(&plan.listeners, &mut passed, handover.as_ref())?;
            let loaded = privileges::drop_root(run_as)
                .map_err(Failure::Runtime)
                .and_then(|()| loading::load(&text).map_err(Failure::Config));
            // The same text, so the same servers in the same order; checked all the same.
            let matches = |config: &Config| {
                (config.servers.iter().map(|s| &s.settings.name))
                    .eq(plan.listeners.iter().map(|p| &p.name))
            };
            match loaded {
                Ok(config) if matches(&config) => (config, listeners),
                Ok(_) => {
                    remove_socket_files(listeners);
                    let why = anyhow::anyhow!("the validated servers are not those bound");
                    return Err(Failure::Runtime(why));
                }
                Err(failure) => {
                    remove_socket_files(listeners);
                    return Err(failure);
                }
            }
        }
        None => {
            let config = loading::load(&text).map_err(Failure::Config)?;
            if let Some(run_as) = &plan.run_as {
                privileges::check_unprivileged(run_as);
            }
            let planned: Vec<PlannedListener> = (config.servers.iter())
                .map(|server| PlannedListener {
                    name: server.settings.name.clone(),
                    endpoint: server.settings.endpoint.clone(),
                    socket: server.settings.socket.clone(),
                })
                .collect();
            let listeners = bind_all(&planned, &mut passed, handover.as_ref())?;
            (config, listeners)
        }
    };
    if !passed.is_empty() {
        log::warn!(
            "socket activation: no [[server]] for {} passed socket(s), closed: {}",
            passed.len(),
            passed.leftovers().join(", ")
        );
        drop(passed);
    }
    let servers = config.servers.into_iter().zip(listeners).collect();
    let given = Given {
        notifier,
        watchdog,
        dropped_to: dropping,
        handover,
        pid_file,
    };
    Supervisor::start(source, text, servers, given)?.run()?;
    Ok(())
}

/// Bind each server's socket — or take the one passed for it by socket activation — reporting
/// every failure before giving up (the sockets bound are closed and their files removed then).
fn bind_all(
    servers: &[PlannedListener],
    passed: &mut ListenFds,
    handover: Option<&Handover>,
) -> anyhow::Result<Vec<Listener>> {
    let mut bound = Vec::new();
    let mut failures = Vec::new();
    for server in servers {
        let made = match passed.take(&server.name, &server.endpoint) {
            Some(socket) => {
                // A predecessor's socket file is ours now; systemd's stays systemd's.
                let owned = handover.is_some_and(|h| h.owns_file(&server.name));
                Listener::adopt(&server.endpoint, socket, owned)
            }
            None => Listener::bind(&server.endpoint, &server.socket),
        };
        match made {
            Ok(listener) => bound.push(listener),
            Err(err) => failures.push(format!("{}: {err}", server.name)),
        }
    }
    if !failures.is_empty() {
        remove_socket_files(bound);
        bail!("{}", failures.join("\n"));
    }
    Ok(bound)
}

/// Close `listeners`, removing the socket files they made.
fn remove_socket_files(listeners: Vec<Listener>) {
    for listener in listeners {
        if let Some(file) = listener.unix_file() {
            file.remove();
        }
    }
}

/// `sockserv serve-process`: serve the one server `name` of the config text on standard input,
/// on the socket passed as socket activation passes one. The main process starts it for a
/// forking server (see `fleet`); it is not for people to run.
pub fn run_server_process(name: &str, origin: String, base_dir: PathBuf) -> anyhow::Result<i32> {
    // The main process's metrics board, before anything (loading the config included) counts.
    sockserv_framework::metrics::init();
    let mut passed = ListenFds::from_env()?.unwrap_or_default();
    let mut text = String::new();
    std::io::stdin()
        .read_to_string(&mut text)
        .context("cannot read the config from standard input")?;
    let text = ConfigText {
        text,
        origin,
        base_dir,
    };
    let config = loading::load(&text).map_err(|errors| anyhow::anyhow!("{errors}"))?;
    let Some(server) = config.servers.into_iter().find(|s| s.settings.name == name) else {
        bail!("the config has no server {name:?}");
    };
    let settings = server.settings;
    let Some(socket) = passed.take(name, &settings.endpoint) else {
        bail!("no socket was passed for server {name:?}");
    };
    let handler = server.handler;
    let mut server = Server::from_socket(settings, server.factory, socket)?;
    server.set_handler_name(&handler);
    if let Some(heartbeat) = heartbeat_to_parent()? {
        server.set_heartbeat(heartbeat);
    }
    Ok(serve_process(server))
}

/// The heartbeat pipe the main process handed this server process, when its watchdog is on.
fn heartbeat_to_parent() -> anyhow::Result<Option<Heartbeat>> {
    let fd = take_fd_from_env(HEARTBEAT_FD)?;
    let ms = std::env::var(HEARTBEAT_MS).ok();
    std::env::remove_var(HEARTBEAT_MS);
    let (Some(fd), Some(ms)) = (fd, ms) else {
        return Ok(None);
    };
    let ms: u64 = ms
        .parse()
        .with_context(|| format!("{HEARTBEAT_MS}={ms:?} is not a number of milliseconds"))?;
    Ok(Some(Heartbeat::to_pipe(Duration::from_millis(ms), fd)?))
}
