//! `sockserv serve`: bind every server of a config, run each forking server in a process of its own
//! (forked before this process starts any thread), each other server on a thread, and shut them all
//! down cleanly on SIGINT or SIGTERM.

use std::thread::{self, JoinHandle};

use anyhow::{bail, Context};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use sockserv_framework::config::{Config, ServerConfig};
use sockserv_framework::{termination_signals, Server, ServerProcess, Shutdown, StrategyKind};

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

/// Serve `config` until SIGINT or SIGTERM.
///
/// SIGINT and SIGTERM are blocked from the first bind until their handlers are installed (here and in
/// each server process), so a signal that arrives during start-up is acted on, never fatal.
pub fn serve(config: Config) -> anyhow::Result<()> {
    let signals = termination_signals();
    signals
        .thread_block()
        .context("cannot block SIGINT and SIGTERM during start-up")?;
    let result = serve_blocked(config);
    let _ = signals.thread_unblock();
    result
}

fn serve_blocked(config: Config) -> anyhow::Result<()> {
    let (forking, in_process): (Vec<_>, Vec<_>) = config
        .servers
        .iter()
        .partition(|server| server.settings.strategy.kind() == StrategyKind::Forking);
    // Forking servers first, while this process has one thread; the others are bound only after, so
    // the server processes do not inherit their sockets.
    let processes = spawn_processes(bind_all(&forking)?)?;
    let servers = match bind_all(&in_process) {
        Ok(servers) => servers,
        Err(err) => {
            stop_processes(processes);
            return Err(err);
        }
    };
    let signals = Signals::new([SIGINT, SIGTERM]).context("cannot handle SIGINT and SIGTERM")?;
    // Threads inherit the mask: unblock before starting any, so signals reach the handler.
    termination_signals()
        .thread_unblock()
        .context("cannot unblock SIGINT and SIGTERM")?;
    let running: Vec<_> = servers
        .into_iter()
        .map(run_on_thread)
        .collect::<anyhow::Result<_>>()?;
    wait_for_signal(signals);
    log::info!("shutting down");
    stop(running, processes)
}

/// Bind each server, reporting every failure before giving up.
fn bind_all(servers: &[&ServerConfig]) -> anyhow::Result<Vec<Server>> {
    let mut bound = Vec::new();
    let mut failures = Vec::new();
    for server in servers {
        match Server::bind(server.settings.clone(), server.factory.clone()) {
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
                stop_processes(processes);
                return Err(err.into());
            }
        }
    }
    Ok(processes)
}

struct Running {
    shutdown: Shutdown,
    thread: JoinHandle<()>,
}

fn run_on_thread(mut server: Server) -> anyhow::Result<Running> {
    let shutdown = server.shutdown_handle();
    let thread = thread::Builder::new()
        .name(server.name().to_string())
        .spawn(move || {
            if let Err(err) = server.serve_forever() {
                log::error!("{err}");
            }
            server.server_close();
        })
        .context("cannot start a server thread")?;
    Ok(Running { shutdown, thread })
}

fn wait_for_signal(mut signals: Signals) {
    if let Some(signal) = signals.forever().next() {
        log::info!("received signal {signal}");
    }
}

fn stop(running: Vec<Running>, processes: Vec<ServerProcess>) -> anyhow::Result<()> {
    for server in &running {
        server.shutdown.shutdown();
    }
    let clean = stop_processes(processes);
    let joined = running
        .into_iter()
        .all(|server| server.thread.join().is_ok());
    if !(clean && joined) {
        bail!("a server did not stop cleanly");
    }
    Ok(())
}

/// SIGTERM every server process and reap it; true when all exited cleanly.
fn stop_processes(processes: Vec<ServerProcess>) -> bool {
    for process in &processes {
        process.terminate();
    }
    // Reap every one before judging: `all` alone would stop at the first failure.
    let exits: Vec<bool> = processes.into_iter().map(ServerProcess::wait).collect();
    exits.into_iter().all(|clean| clean)
}
