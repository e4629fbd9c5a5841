//! `sockserv serve`: bind every server of a config, run each forking server in a process of its own
//! (forked before this process starts any thread), each other server on a thread, and supervise
//! them (see `supervise`) until SIGINT or SIGTERM, or until one of them dies.

use anyhow::{bail, Context};
use sockserv_framework::activation::ListenFds;
use sockserv_framework::config::{Config, ServerConfig};
use sockserv_framework::{Server, ServerProcess, StrategyKind};

use crate::notify::Notifier;
use crate::supervise::{self, Supervisor};

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

/// Serve `config` until SIGINT or SIGTERM (a clean drain exits 0), or until a server dies or a
/// drain has to be cut short (an error: exit 1).
///
/// SIGINT and SIGTERM are blocked from the first bind until their handlers are installed (here and in
/// each server process), so a signal that arrives during start-up is acted on, never fatal.
pub fn serve(config: Config) -> anyhow::Result<()> {
    let blocked = supervise::block_signals()?;
    let result = serve_blocked(&config);
    drop(blocked);
    result
}

fn serve_blocked(config: &Config) -> anyhow::Result<()> {
    // Before any thread exists: these read and clear the environment.
    let mut passed = ListenFds::from_env()?.unwrap_or_default();
    let notifier = Notifier::from_env().context("NOTIFY_SOCKET")?;
    let (forking, in_process): (Vec<_>, Vec<_>) = config
        .servers
        .iter()
        .partition(|server| server.settings.strategy.kind() == StrategyKind::Forking);
    // Forking servers first, while this process has one thread; the others are bound only after, so
    // the server processes do not inherit their sockets.
    let processes = spawn_processes(bind_all(&forking, &mut passed)?)?;
    let servers = match bind_all(&in_process, &mut passed) {
        Ok(servers) => servers,
        Err(err) => {
            supervise::stop_processes(processes);
            return Err(err);
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
    let drain = config
        .servers
        .iter()
        .map(|server| server.settings.drain_timeout)
        .max()
        .unwrap_or_default();
    Supervisor::start(servers, processes, drain, notifier)?.run()
}

/// Bind each server — on the socket passed for it by socket activation, if there is one —
/// reporting every failure before giving up.
fn bind_all(servers: &[&ServerConfig], passed: &mut ListenFds) -> anyhow::Result<Vec<Server>> {
    let mut bound = Vec::new();
    let mut failures = Vec::new();
    for server in servers {
        let (settings, factory) = (server.settings.clone(), server.factory.clone());
        let made = match passed.take(&settings.name, &settings.endpoint) {
            Some(socket) => Server::from_socket(settings, factory, socket),
            None => Server::bind(settings, factory),
        };
        match made {
            Ok(ready) => {
                announce(&ready, &server.handler);
                bound.push(ready);
            }
            Err(err) => failures.push(format!("{}: {err}", server.settings.name)),
        }
    }
    if !failures.is_empty() {
        bail!("{}", failures.join("\n"));
    }
    Ok(bound)
}

/// The line each server prints once it listens; tests read the real port from it.
fn announce(server: &Server, handler: &str) {
    println!(
        "listening: {} {} handler={} strategy={}",
        server.name(),
        server.local_endpoint(),
        handler,
        server.settings().strategy.kind()
    );
}

fn spawn_processes(servers: Vec<Server>) -> anyhow::Result<Vec<ServerProcess>> {
    let mut processes = Vec::new();
    for server in servers {
        match ServerProcess::spawn(server) {
            Ok(process) => processes.push(process),
            Err(err) => {
                supervise::stop_processes(processes);
                return Err(err).context("cannot start a forking server's process");
            }
        }
    }
    Ok(processes)
}
