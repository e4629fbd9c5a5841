//! The plugin host: loads handler plugins (shared libraries exporting the `sockserv-plugin` C ABI) and
//! turns each handler they export into a registry entry, so a config names a plugin's handler exactly
//! like a built-in.
//!
//! Plugins are trusted code: they run in this process, with its privileges, and a crash in one (as
//! opposed to a panic, which is caught at the boundary) takes the process down. The forking strategy
//! is how a user isolates a crash-prone plugin: each request then runs in a child process.
//!
//! Libraries are loaded before any thread is started or process forked (config loading comes first),
//! and never unloaded: unloading a Rust cdylib can run thread-local destructors that no longer exist.

mod host;
mod loader;
mod session;
mod table;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::{HandlerEntry, SocketKind, StrategyKind};

pub use loader::load;

/// Load a plugin that a config's `[[plugin]]` table names; only the config loader calls it.
///
/// This is safe to call where [`load`] is not because a config file is where the trust `load`
/// needs is given: naming a library in a `[[plugin]]` table is the operator's statement that it is
/// a trusted sockserv plugin, as choosing which binary to run is (the docs' "Trust" section says
/// so). It keeps that one `unsafe` call here, with the plugin host, rather than in `config`, which
/// has no `unsafe` of its own.
///
/// # Errors
///
/// As for [`load`].
pub(crate) fn load_trusted_by_config(path: &Path) -> Result<LoadedPlugin, PluginError> {
    // SAFETY: the operator named this library in a `[[plugin]]` table, which declares it trusted
    // code (see above); config loading runs before any server thread or fork.
    unsafe { load(path) }
}

/// A plugin that loaded and passed every check.
#[derive(Debug, Clone)]
pub struct LoadedPlugin {
    pub path: PathBuf,
    pub name: String,
    pub version: String,
    /// The ABI version the plugin was built against (major, minor).
    pub abi: (u32, u32),
    pub handlers: Vec<PluginHandlerInfo>,
}

/// One handler a plugin exports.
#[derive(Debug, Clone)]
pub struct PluginHandlerInfo {
    pub name: String,
    pub summary: String,
    pub socket_kinds: Vec<SocketKind>,
    pub strategies: Vec<StrategyKind>,
    entries: host::Entries,
}

/// What the host does about a handler that keeps panicking.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PanicPolicy {
    /// Refuse every further request of a server's handler after this many panics; `None`: never.
    pub disable_after: Option<usize>,
}

impl LoadedPlugin {
    /// A registry entry per handler; its build function creates the plugin's instance from the
    /// server's options.
    pub fn entries(&self, policy: PanicPolicy) -> Vec<HandlerEntry> {
        self.handlers
            .iter()
            .map(|handler| handler.entry(&self.name, policy))
            .collect()
    }
}

impl PluginHandlerInfo {
    fn entry(&self, plugin: &str, policy: PanicPolicy) -> HandlerEntry {
        let entries = self.entries;
        let handler = self.name.clone();
        HandlerEntry {
            name: self.name.clone(),
            summary: format!("{} (plugin {plugin})", self.summary),
            socket_kinds: self.socket_kinds.clone(),
            strategies: self.strategies.clone(),
            strategy_note: Some(format!("plugin {plugin} does not declare it")),
            build: Box::new(move |options| {
                let factory =
                    host::create(entries, &handler, options.table, options.base_dir, policy)?;
                Ok(Arc::new(factory) as Arc<dyn sockserv_plugin::HandlerFactory>)
            }),
        }
    }
}

/// Why a plugin was refused. Each names the file.
#[derive(Debug)]
pub enum PluginError {
    /// The file could not be loaded as a shared library (missing, not a library, wrong architecture).
    NotALibrary {
        path: PathBuf,
        /// The system loader's reason (`dlerror`), without the path it starts with.
        message: String,
    },
    /// The library has no `sockserv_plugin_entry` symbol: not a sockserv plugin.
    MissingEntry { path: PathBuf },
    /// The entry returned null or a table without the sockserv magic.
    WrongMagic { path: PathBuf },
    /// Built against another major version of the ABI.
    AbiMajor {
        path: PathBuf,
        found: u32,
        expected: u32,
    },
    /// A table is smaller than ABI 1.0's, the handler array cannot be right (null, too large for
    /// memory, tables of different sizes), or a text is null or not UTF-8.
    Malformed { path: PathBuf, what: String },
    /// A handler table has a null pointer where the ABI requires a function.
    NullEntry {
        path: PathBuf,
        handler: String,
        entry: &'static str,
    },
}

impl fmt::Display for PluginError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PluginError::NotALibrary { path, message } => {
                write!(f, "{}: cannot load as a shared library: {message}", path.display())
            }
            PluginError::MissingEntry { path } => write!(
                f,
                "{}: not a sockserv plugin (no sockserv_plugin_entry symbol)",
                path.display()
            ),
            PluginError::WrongMagic { path } => write!(
                f,
                "{}: not a sockserv plugin (its entry returned no table with the SOCKSERV magic)",
                path.display()
            ),
            PluginError::AbiMajor {
                path,
                found,
                expected,
            } => write!(
                f,
                "{}: built for plugin ABI {found}.x, this sockserv speaks ABI {expected}.x: rebuild the \
                 plugin against a matching sockserv-plugin",
                path.display()
            ),
            PluginError::Malformed { path, what } => {
                write!(f, "{}: malformed plugin table: {what}", path.display())
            }
            PluginError::NullEntry {
                path,
                handler,
                entry,
            } => write!(
                f,
                "{}: handler \"{handler}\": required entry \"{entry}\" is null",
                path.display()
            ),
        }
    }
}

impl std::error::Error for PluginError {}
