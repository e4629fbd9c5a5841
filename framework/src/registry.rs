//! The handler registry: maps the names a config uses (`handler = "echo"`) to factories. The built-ins
//! register themselves from one slice in the handlers crate; plugins add entries at load time.
//!
//! Each entry validates its own options table and says which socket kinds and strategies it supports,
//! so a config that pairs a handler with something it cannot run under is refused at `check` time.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use sockserv_plugin::HandlerFactory;

use crate::config::OptionErrors;
use crate::{SocketKind, StrategyKind};

/// What a handler's build function gets: the server's `options` table and where to resolve paths.
#[derive(Debug, Clone, Copy)]
pub struct HandlerOptions<'a> {
    /// The server's `[server.options]` table (empty when the config has none).
    pub table: &'a toml::Table,
    /// The folder relative paths in the options resolve against: the config file's folder, or the
    /// current directory for the embedded default config.
    pub base_dir: &'a Path,
    /// The server's name, for messages.
    pub server: &'a str,
}

/// Builds a handler factory from the server's options, or says what is wrong with them: every
/// problem, each naming its key, so that `sockserv check` can point at each one.
pub type BuildFn = dyn Fn(&HandlerOptions<'_>) -> Result<Arc<dyn HandlerFactory>, OptionErrors>
    + Send
    + Sync
    + 'static;

/// One handler a config can name.
pub struct HandlerEntry {
    /// The name a config uses: `handler = "echo"`; unique in a registry.
    pub name: String,
    /// One line for `sockserv check` and listings.
    pub summary: String,
    /// The socket kinds the handler serves; `check` refuses the others.
    pub socket_kinds: Vec<SocketKind>,
    /// The strategies the handler runs under; `check` refuses the others.
    pub strategies: Vec<StrategyKind>,
    /// Why a strategy is missing from `strategies`, for the error message (e.g. chat + forking).
    pub strategy_note: Option<String>,
    /// Validates a server's options and makes its factory; run once per server, at `check` time.
    pub build: Box<BuildFn>,
}

impl fmt::Debug for HandlerEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HandlerEntry")
            .field("name", &self.name)
            .field("socket_kinds", &self.socket_kinds)
            .field("strategies", &self.strategies)
            .finish_non_exhaustive()
    }
}

/// Why a registration was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistryError {
    DuplicateName(String),
}

impl fmt::Display for RegistryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RegistryError::DuplicateName(name) => {
                write!(f, "a handler named {name:?} is already registered")
            }
        }
    }
}

impl std::error::Error for RegistryError {}

/// Every handler a config may name.
#[derive(Debug, Default)]
pub struct Registry {
    entries: Vec<HandlerEntry>,
}

impl Registry {
    pub fn new() -> Self {
        Registry::default()
    }

    /// Add a handler; names are unique.
    ///
    /// # Errors
    ///
    /// [`RegistryError::DuplicateName`] when a handler of that name is registered already (a
    /// plugin's handler named like a built-in, say); the registry is left as it was.
    pub fn register(&mut self, entry: HandlerEntry) -> Result<(), RegistryError> {
        if self.get(&entry.name).is_some() {
            return Err(RegistryError::DuplicateName(entry.name));
        }
        self.entries.push(entry);
        Ok(())
    }

    pub fn get(&self, name: &str) -> Option<&HandlerEntry> {
        self.entries.iter().find(|entry| entry.name == name)
    }

    /// The registered names, in registration order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|entry| entry.name.as_str())
    }

    pub fn entries(&self) -> &[HandlerEntry] {
        &self.entries
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sockserv_plugin::{HandlerResult, Request, RequestHandler};

    struct Nop;
    impl RequestHandler for Nop {
        fn handle(&mut self, _req: &mut Request<'_>) -> HandlerResult {
            Ok(())
        }
    }

    fn entry(name: &str) -> HandlerEntry {
        HandlerEntry {
            name: name.into(),
            summary: String::new(),
            socket_kinds: SocketKind::ALL.to_vec(),
            strategies: StrategyKind::ALL.to_vec(),
            strategy_note: None,
            build: Box::new(|_| {
                let factory = || Box::new(Nop) as Box<dyn RequestHandler>;
                Ok(Arc::new(factory) as Arc<dyn HandlerFactory>)
            }),
        }
    }

    #[test]
    fn names_are_unique() {
        let mut registry = Registry::new();
        registry.register(entry("a")).unwrap();
        registry.register(entry("b")).unwrap();
        assert_eq!(
            registry.register(entry("a")),
            Err(RegistryError::DuplicateName("a".into()))
        );
        assert_eq!(registry.names().collect::<Vec<_>>(), ["a", "b"]);
        assert!(registry.get("b").is_some() && registry.get("c").is_none());
    }
}
