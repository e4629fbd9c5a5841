//! SIGHUP: reload the config, nginx's way — a file with any error changes nothing.
//!
//! 1. The file is read again and validated by the code `sockserv check` runs (`loading`); every
//!    problem is logged with its `FILE:LINE:COL`, and the running config keeps serving.
//! 2. Servers are matched by `name` ([`plan`]): an unchanged one (same settings, handler and
//!    handler options) is left alone, connections and all. A changed one on the same endpoint
//!    gets a new instance on this process's copy of its listening socket — both share the
//!    kernel's accept queue, so no connection is lost — and the old instance stops accepting and
//!    finishes its connections under the old options (its `drain_timeout`). A changed one on
//!    another endpoint, and an added one, bind; a removed one stops accepting and drains. A server
//!    renamed without changing its endpoint keeps its socket as a changed one does.
//! 3. Every new socket is bound before anything changes: if one cannot be bound (in use, or a
//!    privileged port after root was dropped), the reload is refused whole, with the reasons,
//!    and the running servers are untouched — never half a reload.
//!
//! TLS certificates are files the config names, not part of it: an unchanged server with
//! `[server.tls]` takes the certificates the reload has just read and checked (new handshakes
//! use them, open connections keep theirs), so SIGHUP is also how certificates are rotated; a
//! certificate that is not valid fails the reload like any other error.
//!
//! Plugins already loaded stay loaded (libraries are never unloaded); the new file's `[[plugin]]`
//! tables load as it is validated.

use std::fmt;

use sockserv_framework::config::{ConfigErrors, RunAs, ServerConfig};
use sockserv_framework::{Listener, ServerError};

use crate::fleet::Id;
use crate::loading;
use crate::supervise::Supervisor;

/// What becomes of one server of the new config.
#[derive(Debug)]
pub struct Start {
    pub config: ServerConfig,
    /// The serving instance it replaces, if any.
    pub replaces: Option<Id>,
    /// Serve on the replaced instance's socket (same endpoint) rather than binding.
    pub reuse: bool,
}

/// What a reload does, decided before anything is done.
#[derive(Debug, Default)]
pub struct Plan {
    /// New instances, in file order.
    pub starts: Vec<Start>,
    /// Serving instances with no counterpart in the new config.
    pub removed: Vec<Id>,
    /// Servers left as they are.
    pub unchanged: usize,
    /// The unchanged servers with TLS, each with its config as just loaded: their certificates,
    /// read and checked again, replace the ones in use (see `Instance::refresh_certificates`).
    pub refresh: Vec<(Id, ServerConfig)>,
}

/// Match the new config's servers against the serving ones, `(id, config)`, by name (and, for a
/// name that is new, by endpoint: a rename keeps the socket).
pub fn plan(serving: &[(Id, &ServerConfig)], new: Vec<ServerConfig>) -> Plan {
    let mut plan = Plan::default();
    let new_names: Vec<String> = new.iter().map(|s| s.settings.name.clone()).collect();
    let mut claimed: Vec<Id> = Vec::new();
    for config in new {
        let name = &config.settings.name;
        let endpoint = &config.settings.endpoint;
        let same_name = serving.iter().find(|(_, old)| &old.settings.name == name);
        if let Some((id, old)) = same_name {
            claimed.push(*id);
            if old.same_as(&config) {
                plan.unchanged += 1;
                if config.settings.tls.is_some() {
                    plan.refresh.push((*id, config));
                }
                continue;
            }
            let reuse = &old.settings.endpoint == endpoint;
            plan.starts.push(Start {
                config,
                replaces: Some(*id),
                reuse,
            });
            continue;
        }
        let renamed = serving.iter().find(|(id, old)| {
            !new_names.contains(&old.settings.name)
                && !claimed.contains(id)
                && &old.settings.endpoint == endpoint
        });
        if let Some((id, _)) = renamed {
            claimed.push(*id);
        }
        plan.starts.push(Start {
            config,
            replaces: renamed.map(|(id, _)| *id),
            reuse: renamed.is_some(),
        });
    }
    plan.removed = (serving.iter())
        .map(|(id, _)| *id)
        .filter(|id| !claimed.contains(id))
        .collect();
    plan
}

/// How a reload went, for the log line and `STATUS=`.
#[derive(Debug, Default)]
struct Summary {
    unchanged: usize,
    changed: usize,
    added: usize,
    removed: usize,
    /// Servers whose new instance could not start: they keep serving under the old config.
    kept_old: usize,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} unchanged, {} changed, {} added, {} removed",
            self.unchanged, self.changed, self.added, self.removed
        )?;
        if self.kept_old > 0 {
            write!(
                f,
                "; {} could not start and kept the previous config",
                self.kept_old
            )?;
        }
        Ok(())
    }
}

impl Supervisor {
    /// Reload the config, telling the service manager (`RELOADING=1`, then `READY=1`).
    pub fn reload(&mut self) {
        self.notifier.reloading();
        let reloaded = self.try_reload();
        sockserv_framework::metrics::reload_finished(reloaded.is_ok());
        match reloaded {
            Ok(summary) => log::info!("reloaded {}: {summary}", self.text.origin),
            Err(why) => log::error!("reload refused, the running config is kept: {why}"),
        }
        let status = self.status();
        self.notifier.send(&format!("READY=1\nSTATUS={status}"));
    }

    fn try_reload(&mut self) -> Result<Summary, String> {
        let text = self.source.read().map_err(log_errors)?;
        let config = loading::load(&text).map_err(log_errors)?;
        let serving: Vec<(Id, &ServerConfig)> = (self.instances.iter())
            .filter(|i| i.is_serving())
            .map(|i| (i.id, &i.config))
            .collect();
        if let Some(now) = &self.dropped_to {
            if config.run_as.as_ref() != Some(now) {
                log::warn!(
                    "reload: user and group take effect at the next start: this process already \
                     dropped root and runs as {}",
                    now.describe()
                );
            }
        }
        let plan = plan(&serving, config.servers);
        let mut bound = bind_new(&plan, self.dropped_to.as_ref())?.into_iter();
        self.text = text;
        let mut summary = Summary {
            unchanged: plan.unchanged,
            ..Summary::default()
        };
        for start in plan.starts {
            self.start_new(start, &mut bound, &mut summary);
        }
        for (id, fresh) in &plan.refresh {
            if let Some(instance) = self.instances.iter().find(|i| i.id == *id) {
                instance.refresh_certificates(fresh);
            }
        }
        for id in plan.removed {
            if let Some(old) = self.instances.iter_mut().find(|i| i.id == id) {
                log::info!("server {}: removed from the config, draining", old.name());
                old.retire(false);
                summary.removed += 1;
            }
        }
        Ok(summary)
    }

    /// Start one new instance, and retire the one it replaces once it serves. Should it not
    /// start, the old one keeps serving (with its socket) under the old config.
    fn start_new(
        &mut self,
        start: Start,
        bound: &mut std::vec::IntoIter<Listener>,
        summary: &mut Summary,
    ) {
        let old = (start.replaces).and_then(|id| self.instances.iter().position(|i| i.id == id));
        let listener = if start.reuse {
            let old = &mut self.instances[old.expect("a reused socket has its instance")];
            let listener = old
                .listener
                .take()
                .expect("a serving instance holds its socket");
            reconfigure(&listener, &old.config, &start.config);
            listener
        } else {
            bound
                .next()
                .expect("a socket was bound for each start that does not reuse one")
        };
        let name = start.config.settings.name.clone();
        match self.starter().start(start.config, listener) {
            Ok(instance) => {
                self.instances.push(instance);
                match old {
                    Some(index) => {
                        let old = &mut self.instances[index];
                        log::info!(
                            "server {name}: changed, the new config serves new connections; the \
                             previous one ({}) drains",
                            old.name()
                        );
                        old.retire(start.reuse);
                        summary.changed += 1;
                    }
                    None => summary.added += 1,
                }
            }
            Err(failed) => {
                let listener = failed.listener;
                log::error!(
                    "server {name}: cannot start under the new config: {:#}",
                    failed.error
                );
                match old {
                    Some(index) if start.reuse => {
                        self.instances[index].listener = Some(listener);
                    }
                    _ => {
                        if let Some(file) = listener.unix_file() {
                            file.remove();
                        }
                    }
                }
                summary.kept_old += usize::from(old.is_some());
            }
        }
    }
}

/// Bind every socket the plan needs, in its order — all, or none (those bound are closed and
/// their files removed again).
fn bind_new(plan: &Plan, dropped_to: Option<&RunAs>) -> Result<Vec<Listener>, String> {
    let mut bound = Vec::new();
    let mut failures = Vec::new();
    for start in plan.starts.iter().filter(|start| !start.reuse) {
        let settings = &start.config.settings;
        match Listener::bind(&settings.endpoint, &settings.socket) {
            Ok(listener) => bound.push(listener),
            Err(err) => {
                let hint = dropped_to.and_then(|run_as| needs_root(&err, run_as));
                let hint = hint.map_or(String::new(), |hint| format!(": {hint}"));
                failures.push(format!("server {}: {err}{hint}", settings.name));
            }
        }
    }
    if failures.is_empty() {
        return Ok(bound);
    }
    for listener in bound {
        if let Some(file) = listener.unix_file() {
            file.remove();
        }
    }
    for failure in &failures {
        log::error!("reload: {failure}");
    }
    Err(format!("{} socket(s) cannot be bound", failures.len()))
}

/// Why a bind refused with "permission denied" needs root, which this process gave up: said
/// plainly, with a privileged port named as such.
fn needs_root(err: &ServerError, run_as: &RunAs) -> Option<String> {
    let ServerError::Bind {
        endpoint, source, ..
    } = err
    else {
        return None;
    };
    if source.kind() != std::io::ErrorKind::PermissionDenied {
        return None;
    }
    let port = endpoint.inet().map(|addr| addr.port());
    let first_free = std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start")
        .ok()
        .and_then(|text| text.trim().parse::<u16>().ok())
        .unwrap_or(1024);
    let what = match port {
        Some(port) if port < first_free => format!(
            "port {port} is privileged (below net.ipv4.ip_unprivileged_port_start = {first_free})"
        ),
        _ => "binding it needs more than this process has".to_string(),
    };
    Some(format!(
        "{what}, and this process dropped root after start-up ({}): restart the service to bind it",
        run_as.describe()
    ))
}

/// The new socket options on a kept socket, as far as a bound socket takes them.
fn reconfigure(listener: &Listener, old: &ServerConfig, new: &ServerConfig) {
    let (before, after) = (&old.settings.socket, &new.settings.socket);
    let name = &new.settings.name;
    match listener.reconfigure(before, after) {
        Ok(at_bind) if !at_bind.is_empty() => log::warn!(
            "server {name}: {} changed, which takes effect only on a new socket: the listening \
             socket is kept (no connection is lost), so it applies at the next restart",
            at_bind.join(", ")
        ),
        Ok(_) => {}
        Err(err) => log::warn!("server {name}: cannot apply the new socket options: {err}"),
    }
}

/// Log every problem (each with its `FILE:LINE:COL`), and say how many there were.
fn log_errors(errors: ConfigErrors) -> String {
    for error in &errors.0 {
        log::error!("reload: {error}");
    }
    format!("{} problem(s) in the config", errors.0.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn servers(text: &str) -> Vec<ServerConfig> {
        let text = sockserv_framework::config::ConfigText {
            text: text.to_string(),
            origin: "test.toml".into(),
            base_dir: Path::new("/").into(),
        };
        loading::load(&text).unwrap().servers
    }

    fn table(name: &str, listen: &str, handler: &str) -> String {
        format!("[[server]]\nname = \"{name}\"\nlisten = \"{listen}\"\nhandler = \"{handler}\"\n")
    }

    #[test]
    fn servers_are_matched_by_name_then_by_endpoint() {
        let old = servers(
            &[
                table("same", "tcp://127.0.0.1:1", "echo"),
                table("handler", "tcp://127.0.0.1:2", "echo"),
                table("moved", "tcp://127.0.0.1:3", "echo"),
                table("gone", "tcp://127.0.0.1:4", "echo"),
                table("renamed", "tcp://127.0.0.1:5", "echo"),
            ]
            .concat(),
        );
        let serving: Vec<(Id, &ServerConfig)> =
            old.iter().enumerate().map(|(i, s)| (i as Id, s)).collect();
        let new = servers(
            &[
                table("same", "tcp://127.0.0.1:1", "echo"),
                table("handler", "tcp://127.0.0.1:2", "timestamp"),
                table("moved", "tcp://127.0.0.1:13", "echo"),
                table("new-name", "tcp://127.0.0.1:5", "echo"),
                table("added", "tcp://127.0.0.1:6", "echo"),
            ]
            .concat(),
        );
        let plan = plan(&serving, new);
        assert_eq!(plan.unchanged, 1);
        let starts: Vec<(&str, Option<Id>, bool)> = (plan.starts.iter())
            .map(|s| (s.config.settings.name.as_str(), s.replaces, s.reuse))
            .collect();
        assert_eq!(
            starts,
            [
                ("handler", Some(1), true),
                ("moved", Some(2), false),
                ("new-name", Some(4), true),
                ("added", None, false),
            ]
        );
        assert_eq!(plan.removed, [3]);
    }
}
