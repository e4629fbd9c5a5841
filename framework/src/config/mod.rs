//! The TOML config: which servers to run, each on an endpoint, under a strategy, with a handler.
//!
//! It is read in two phases, so that a user sees every mistake in one `sockserv check`:
//!
//! 1. `read` (with `table`): the text becomes structs that mirror the file (`raw`), key for key,
//!    unknown keys refused. Not serde's derive with `deny_unknown_fields`, which stops at the first
//!    problem: each table is walked key by key, so every unknown key (with the closest known one),
//!    wrong type, missing or duplicate key is reported, and what could be read goes on to phase 2
//!    (a server without its name, listen or handler does not). Only TOML syntax errors stop here,
//!    alone.
//! 2. `validate` (with `server` and `socket`): the raw values become [`ServerSettings`] and a handler factory per
//!    server. Every problem is collected — bad endpoints, unknown strategies and handlers, a handler
//!    that cannot serve this socket kind or strategy, options its build function refuses (each bad
//!    key on its own, at the key or its value: [`OptionErrors`]), keys that mean nothing for this
//!    endpoint or strategy, out-of-range values, duplicate names and endpoints — each with its
//!    `FILE:LINE:COL` and server name ([`ConfigError`]).
//!
//! The callers: `sockserv serve` and `sockserv check` use [`load_file`], or [`load_default`] for the
//! config embedded in the binary; tests use [`load_str`].
//!
//! ```toml
//! [[server]]
//! name = "echo-tcp"
//! listen = "tcp://127.0.0.1:20000"
//! handler = "echo"
//! strategy = "threading"   # sync | threading | forking
//! ```
//!
//! `config/default.toml` and `config/examples/all-options.toml` at the repository root document
//! every key.

mod binds;
mod error;
mod limits;
mod options;
mod plugins;
mod proxy_protocol;
mod raw;
mod read;
mod run_as;
mod server;
mod server_limits;
mod socket;
mod table;
mod tls;
mod validate;

#[cfg(test)]
mod tests;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sockserv_plugin::HandlerFactory;

use crate::plugin::LoadedPlugin;
use crate::{Registry, ServerSettings};
use error::Source;
use validate::Checker;

pub use error::{ConfigError, ConfigErrorKind, ConfigErrors, Place};
pub use options::{OptionAt, OptionError, OptionErrors};
pub use run_as::{Account, RunAs};

/// `config/default.toml`: what `sockserv serve` runs when given no file.
pub const DEFAULT_CONFIG: &str = include_str!("../../../config/default.toml");

/// The [`Config::origin`] of the embedded default config.
pub const EMBEDDED_ORIGIN: &str = "<embedded default>";

/// A validated config: every plugin loaded, every server ready to bind.
#[derive(Debug)]
pub struct Config {
    /// The `[[plugin]]` libraries, loaded, in file order; their handlers are in the registry.
    pub plugins: Vec<LoadedPlugin>,
    /// The `[[server]]` tables, validated, in file order.
    pub servers: Vec<ServerConfig>,
    /// The file's path as given, or [`EMBEDDED_ORIGIN`].
    pub origin: String,
    /// `user` and `group`: who to run as once every socket is bound.
    pub run_as: Option<RunAs>,
}

/// What binding needs, read before anything else is: each server's name, endpoint and socket
/// options, and who to run as once they are bound. A process started as root binds from this,
/// drops root, and only then validates the rest — which loads plugins and runs handlers' build
/// functions, code that must never run as root.
#[derive(Debug)]
pub struct BindPlan {
    /// `user` and `group`.
    pub run_as: Option<RunAs>,
    /// Each server's socket, in file order.
    pub listeners: Vec<PlannedListener>,
}

/// One server's socket, as [`BindPlan`] has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedListener {
    /// The server's name.
    pub name: String,
    /// Where it listens.
    pub endpoint: crate::Endpoint,
    /// The options its socket is made with.
    pub socket: crate::SocketOptions,
}

/// One `[[server]]`: its settings and the factory its handler's build function made from its options.
pub struct ServerConfig {
    /// Everything `Server::bind` needs but the handler.
    pub settings: ServerSettings,
    /// The handler's name, as written in the config.
    pub handler: String,
    /// The handler's `[server.options]` as written (empty without the table): with the settings
    /// and the handler's name, what a reload compares to tell a changed server from an unchanged one.
    pub options: toml::Table,
    /// Makes the handler of each request (or the session of each connection under the reactor).
    pub factory: Arc<dyn HandlerFactory>,
}

impl ServerConfig {
    /// Whether `other` serves the same way: the same settings, handler and handler options. A
    /// reload keeps such a server as it is.
    pub fn same_as(&self, other: &ServerConfig) -> bool {
        self.settings == other.settings
            && self.handler == other.handler
            && self.options == other.options
    }
}

/// A config's text with what loading it needs besides: where it came from, for error places,
/// and the folder its relative paths resolve against. What a server process and a reload load
/// again, so that every process validates exactly what the first one did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigText {
    /// The TOML.
    pub text: String,
    /// The file's path as given, or [`EMBEDDED_ORIGIN`].
    pub origin: String,
    /// The folder relative paths resolve against (absolute).
    pub base_dir: PathBuf,
}

impl ConfigText {
    /// The config embedded in the binary; relative paths resolve against the current folder.
    pub fn embedded() -> ConfigText {
        ConfigText {
            text: DEFAULT_CONFIG.to_string(),
            origin: EMBEDDED_ORIGIN.to_string(),
            base_dir: absolute(Path::new("")),
        }
    }

    /// The file at `path`; relative paths in it resolve against its folder.
    ///
    /// # Errors
    ///
    /// [`ConfigErrorKind::Io`] when the file cannot be read.
    pub fn read(path: &Path) -> Result<ConfigText, ConfigErrors> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|error| {
            let kind = error::ConfigErrorKind::Io {
                path: origin.clone(),
                error,
            };
            ConfigErrors(vec![ConfigError {
                place: None,
                server: None,
                kind,
            }])
        })?;
        let folder = path.parent().unwrap_or(Path::new(""));
        Ok(ConfigText {
            text,
            origin,
            base_dir: absolute(folder),
        })
    }

    /// Validate it (see [`load_str`]).
    ///
    /// # Errors
    ///
    /// Every problem of [`load_str`].
    pub fn load(&self, registry: &mut Registry) -> Result<Config, ConfigErrors> {
        load_str(&self.text, &self.origin, &self.base_dir, registry)
    }
}

impl fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerConfig")
            .field("settings", &self.settings)
            .field("handler", &self.handler)
            .finish_non_exhaustive()
    }
}

/// Reads and validates a config file. Relative paths in it (Unix socket paths, handler options)
/// resolve against the file's folder.
///
/// # Errors
///
/// [`ConfigErrorKind::Io`] alone when the file cannot be read; else every problem of
/// [`load_str`].
pub fn load_file(path: &Path, registry: &mut Registry) -> Result<Config, ConfigErrors> {
    ConfigText::read(path)?.load(registry)
}

/// Validates the config embedded in the binary; relative paths resolve against the current folder.
///
/// # Errors
///
/// The problems of [`load_str`]: none for the shipped file and the built-in handlers, unless a
/// handler it names is missing from `registry`.
pub fn load_default(registry: &mut Registry) -> Result<Config, ConfigErrors> {
    ConfigText::embedded().load(registry)
}

/// Validates config text. `origin` names it in error places; relative paths resolve against
/// `base_dir`. The handlers of its `[[plugin]]`s are added to `registry`.
///
/// # Errors
///
/// TOML syntax errors alone, since past them nothing can be trusted; else every problem, in file
/// order: unknown, missing and duplicate keys, wrong types, a refused plugin, a bad value, an
/// unknown handler or strategy, a refused handler option, a duplicate name or endpoint (see
/// [`ConfigErrorKind`]).
pub fn load_str(
    text: &str,
    origin: &str,
    base_dir: &Path,
    registry: &mut Registry,
) -> Result<Config, ConfigErrors> {
    let source = Source { file: origin, text };
    let in_order = |mut errors: Vec<ConfigError>| {
        errors.sort_by_key(|e| e.place.as_ref().map(|p| (p.line, p.col)));
        ConfigErrors(errors)
    };
    let (raw, mut errors) = read::read(source).map_err(in_order)?;
    let run_as = run_as::check(&raw, source, &mut errors);
    let plugins = plugins::load_plugins(&raw.plugin, &source, base_dir, registry, &mut errors);
    match Checker::new(source, base_dir, registry).check(&raw) {
        Ok(servers) if errors.is_empty() => {
            return Ok(Config {
                plugins,
                servers,
                origin: origin.to_string(),
                run_as,
            })
        }
        Ok(_) => {}
        Err(more) => errors.extend(more),
    }
    Err(in_order(errors))
}

/// The [`BindPlan`] of `text`: phase 1, the endpoints, the socket options and `user`/`group`
/// checked as [`load_str`] checks them; no plugin is loaded and no handler is looked at.
///
/// # Errors
///
/// The problems those checks find (a later [`load_str`] finds them again, with the rest).
pub fn plan(text: &ConfigText) -> Result<BindPlan, ConfigErrors> {
    let source = Source {
        file: &text.origin,
        text: &text.text,
    };
    let in_order = |mut errors: Vec<ConfigError>| {
        errors.sort_by_key(|e| e.place.as_ref().map(|p| (p.line, p.col)));
        ConfigErrors(errors)
    };
    let (raw, mut errors) = read::read(source).map_err(in_order)?;
    let run_as = run_as::check(&raw, source, &mut errors);
    let registry = Registry::new();
    match Checker::new(source, &text.base_dir, &registry).plan(&raw) {
        Ok(listeners) if errors.is_empty() => Ok(BindPlan { run_as, listeners }),
        Ok(_) => Err(in_order(errors)),
        Err(more) => {
            errors.extend(more);
            Err(in_order(errors))
        }
    }
}

/// `folder` made absolute against the current directory (kept as is if that is unknown), so socket
/// paths stay right whatever the process's directory later becomes.
fn absolute(folder: &Path) -> PathBuf {
    if folder.is_absolute() {
        return folder.to_path_buf();
    }
    match (std::env::current_dir(), folder.as_os_str().is_empty()) {
        (Ok(current), true) => current,
        (Ok(current), false) => current.join(folder),
        (Err(_), true) => PathBuf::from("."),
        (Err(_), false) => folder.to_path_buf(),
    }
}
