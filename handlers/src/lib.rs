//! sockserv's built-in request handlers, one module each, all listed in [`BUILTINS`].
//!
//! A built-in is a row of that table: its config name, a one-line summary, the socket kinds and
//! strategies it runs under, and a build function that validates the server's `[server.options]`
//! table and returns the factory the server makes one handler per request from.
//! [`register_builtins`] puts every row into the framework's [`Registry`], next to whatever plugins
//! add. Adding a built-in is adding a module and a row.
//!
//! Each protocol is a sans-IO core (pure functions over bytes, time passed in) wrapped by a thin
//! handler that reads `rfile` until end of input and writes replies to `wfile`. Written that way, one
//! handler serves all four socket kinds: on a datagram socket `rfile` holds one datagram, and what the
//! handler writes goes back as one datagram. Under the `reactor` strategy the factory makes an
//! event-driven `Session` per connection instead, over the same core (`echo.rs`, and a `session.rs`
//! in each other handler's folder); datagrams still go to the blocking handler there.
//!
//! `metrics` serves the other servers' counters (see `sockserv_framework::metrics`) over HTTP.

#![forbid(unsafe_code)]

pub mod chat;
pub mod echo;
mod input;
pub mod metrics;
mod options;
pub mod search;
#[cfg(test)]
mod testing;
pub mod timestamp;

use std::sync::Arc;

use sockserv_framework::config::OptionErrors;
use sockserv_framework::{
    HandlerEntry, HandlerOptions, Registry, RegistryError, SocketKind, StrategyKind,
};
use sockserv_plugin::HandlerFactory;

/// Validates a server's options and makes the factory for its requests; a refusal names each bad
/// key (see [`OptionErrors`]).
pub type BuildBuiltin = fn(&HandlerOptions<'_>) -> Result<Arc<dyn HandlerFactory>, OptionErrors>;

/// One built-in handler, as the registry lists it.
#[derive(Debug, Clone, Copy)]
pub struct Builtin {
    /// The name a config uses: `handler = "echo"`.
    pub name: &'static str,
    /// One line for `sockserv check` and `sockserv plugins`.
    pub summary: &'static str,
    /// The socket kinds it serves; `sockserv check` refuses the others.
    pub socket_kinds: &'static [SocketKind],
    /// The strategies it runs under; `sockserv check` refuses the others.
    pub strategies: &'static [StrategyKind],
    /// Why a strategy is missing from `strategies`, for the refusal message.
    pub strategy_note: Option<&'static str>,
    /// Validates a server's options and makes its factory, once per server at `check` time.
    pub build: BuildBuiltin,
}

impl Builtin {
    /// The registry entry for this built-in.
    pub fn entry(&self) -> HandlerEntry {
        HandlerEntry {
            name: self.name.to_string(),
            summary: self.summary.to_string(),
            socket_kinds: self.socket_kinds.to_vec(),
            strategies: self.strategies.to_vec(),
            strategy_note: self.strategy_note.map(str::to_string),
            build: Box::new(self.build),
        }
    }
}

/// Every built-in handler.
pub static BUILTINS: &[Builtin] = &[
    Builtin {
        name: "echo",
        summary: "sends every byte back as received; a datagram gets itself back",
        socket_kinds: &SocketKind::ALL,
        strategies: &StrategyKind::ALL,
        strategy_note: None,
        build: echo::build,
    },
    Builtin {
        name: "timestamp",
        summary: "replies `[YYYY-mm-dd HH:MM:SS] <data>` per chunk or line (options: format, utc, framing)",
        socket_kinds: &SocketKind::ALL,
        strategies: &StrategyKind::ALL,
        strategy_note: None,
        build: timestamp::build,
    },
    search::BUILTIN,
    chat::BUILTIN,
    metrics::BUILTIN,
];

/// Registers every built-in.
///
/// # Errors
///
/// [`RegistryError::DuplicateName`] when a built-in's name is already taken (by a plugin loaded
/// first, say); the built-ins before it in [`BUILTINS`] stay registered.
pub fn register_builtins(registry: &mut Registry) -> Result<(), RegistryError> {
    BUILTINS
        .iter()
        .try_for_each(|builtin| registry.register(builtin.entry()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_names_are_unique() {
        for (i, builtin) in BUILTINS.iter().enumerate() {
            let again = BUILTINS[i + 1..].iter().find(|b| b.name == builtin.name);
            assert!(again.is_none(), "{:?} is listed twice", builtin.name);
        }
    }

    #[test]
    fn register_builtins_registers_each_once() {
        let mut registry = Registry::new();
        register_builtins(&mut registry).unwrap();
        let names: Vec<&str> = registry.names().collect();
        let expected: Vec<&str> = BUILTINS.iter().map(|b| b.name).collect();
        assert_eq!(names, expected);
        assert_eq!(
            register_builtins(&mut registry),
            Err(RegistryError::DuplicateName(BUILTINS[0].name.into()))
        );
    }

    #[test]
    fn every_builtin_builds_with_no_options_and_refuses_unknown_ones() {
        for builtin in BUILTINS {
            assert!(
                testing::factory(builtin.build, "").is_ok(),
                "{} with no options",
                builtin.name
            );
            let err = testing::factory(builtin.build, "no-such-option = 1").err();
            let err = err.unwrap_or_else(|| panic!("{} took an unknown option", builtin.name));
            assert!(
                err.contains("\"no-such-option\""),
                "{}: {err}",
                builtin.name
            );
        }
    }

    #[test]
    fn every_builtin_says_where_it_runs() {
        for builtin in BUILTINS {
            assert!(!builtin.summary.is_empty(), "{}", builtin.name);
            assert!(!builtin.socket_kinds.is_empty(), "{}", builtin.name);
            assert!(!builtin.strategies.is_empty(), "{}", builtin.name);
            let missing = builtin.strategies.len() < StrategyKind::ALL.len();
            assert_eq!(missing, builtin.strategy_note.is_some(), "{}", builtin.name);
        }
    }
}
