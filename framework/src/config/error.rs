//! What can be wrong with a config, and where. Phase 2 collects every problem rather than stopping at
//! the first, so the error type is a list ([`ConfigErrors`]) of typed problems ([`ConfigError`]), each
//! naming its place (`FILE:LINE:COL`) where the parser knows it and the server it belongs to. Tests and
//! the binary match on [`ConfigErrorKind`]; users read the `Display` lines.

use std::fmt;
use std::ops::Range;

use crate::{EndpointError, SocketKind, StrategyKind};

/// Where in a config file a problem is; line and column are 1-based, the column counts characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place {
    /// The config file's path as given, or `<embedded default>`.
    pub file: String,
    /// The line, from 1.
    pub line: usize,
    /// The column, from 1, in characters (not bytes).
    pub col: usize,
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.col)
    }
}

/// Every problem found in one config, in file order. Displays one problem per line.
#[derive(Debug)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// One problem: what ([`ConfigErrorKind`]), where, and in which server.
#[derive(Debug)]
pub struct ConfigError {
    /// Where the problem is; `None` when it is about no place in the text (an unreadable file).
    pub place: Option<Place>,
    /// The `name` of the `[[server]]` the problem is in, when it is in one.
    pub server: Option<String>,
    /// What the problem is.
    pub kind: ConfigErrorKind,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(place) = &self.place {
            write!(f, "{place}: ")?;
        }
        if let Some(server) = &self.server {
            write!(f, "server {server:?}: ")?;
        }
        write!(f, "{}", self.kind)
    }
}

impl std::error::Error for ConfigError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.kind {
            ConfigErrorKind::Io { error, .. } => Some(error),
            ConfigErrorKind::BadEndpoint(error) => Some(error),
            _ => None,
        }
    }
}

/// The kinds of problem, one variant per check.
#[derive(Debug)]
pub enum ConfigErrorKind {
    /// The file could not be read.
    Io {
        /// The file's path as given.
        path: String,
        /// Why reading it failed.
        error: std::io::Error,
    },
    /// Phase 1: the text is not TOML; the parser's message.
    Toml {
        /// The parser's message.
        message: String,
    },
    /// Phase 1: a key set twice in one table (or a table defined twice).
    DuplicateKey {
        /// The key, as written.
        key: String,
    },
    /// Phase 1: a key the table does not have.
    UnknownKey {
        /// The key as the docs name it (`socket.reuse_adress`).
        key: String,
        /// What the user likely meant: the known key it is closest to (`did you mean ...?`), or
        /// the table it belongs to.
        hint: Option<String>,
        /// The keys the table has.
        expected: &'static [&'static str],
    },
    /// Phase 1: a required key is missing.
    MissingKey {
        /// The key.
        key: &'static str,
        /// What the table needs, in words (`every [[server]] needs name, listen and handler`).
        needs: &'static str,
    },
    /// Phase 1: a value of the wrong type.
    WrongType {
        /// The key as the docs name it (`socket.unix_mode`).
        key: String,
        /// What the value must be, in words (`a positive whole number`).
        expected: &'static str,
        /// The value as written (`"lots"`, `0o600`), or its kind (`a table`).
        found: String,
        /// How to write it instead, where that can be told.
        hint: Option<String>,
    },
    /// The file has no `[[server]]` table.
    NoServers,
    /// A `[[plugin]]` was refused at load time (not a library, no entry, wrong magic or ABI, …).
    Plugin(crate::plugin::PluginError),
    /// A plugin's handler has the name of a handler already registered.
    PluginHandler(crate::RegistryError),
    /// Two servers share a name.
    DuplicateName {
        /// The name used twice.
        name: String,
        /// The line where the name was first used.
        first_line: usize,
    },
    /// Two servers would bind the same endpoint (port 0 excepted: the system picks a free port).
    DuplicateListen {
        /// The endpoint as this server writes it.
        endpoint: String,
        /// The name of the server that has it already.
        other: String,
    },
    /// A wildcard and a specific address on one port, which the kernel would not let both bind.
    SharedPort {
        /// The endpoint as this server writes it.
        endpoint: String,
        /// The name of the server whose endpoint this one clashes with.
        other: String,
        /// That server's endpoint, as written.
        other_endpoint: String,
        /// The line of that server's `listen`.
        other_line: usize,
        /// What would let both bind.
        fix: String,
    },
    /// The folder a Unix socket file would be made in does not exist (or is not a folder).
    SocketFolder {
        /// The folder.
        folder: std::path::PathBuf,
        /// What is wrong with it (`does not exist`).
        problem: String,
    },
    /// A Unix socket path longer than a socket address holds.
    SocketPathTooLong {
        /// The path, resolved.
        path: std::path::PathBuf,
        /// Its length in bytes.
        length: usize,
        /// The most bytes it may have.
        max: usize,
    },
    /// `listen` is not an endpoint string.
    BadEndpoint(EndpointError),
    /// `strategy` is not the name of a strategy ([`StrategyKind::ALL`]).
    UnknownStrategy {
        /// The name as written.
        name: String,
    },
    /// `handler` names nothing in the registry.
    UnknownHandler {
        /// The name as written.
        name: String,
        /// Every name the registry holds, built-ins and plugins' handlers.
        known: Vec<String>,
    },
    /// The handler cannot serve this socket kind.
    UnsupportedSocketKind {
        /// The handler's name.
        handler: String,
        /// The socket kind of this server's `listen`.
        kind: SocketKind,
        /// The kinds the handler serves.
        supported: Vec<SocketKind>,
    },
    /// The handler cannot run under this strategy.
    UnsupportedStrategy {
        /// The handler's name.
        handler: String,
        /// This server's strategy.
        strategy: StrategyKind,
        /// The strategies the handler runs under.
        supported: Vec<StrategyKind>,
        /// The handler's reason, if it gave one (chat + forking).
        note: Option<String>,
    },
    /// The handler's build function refused `[server.options]`: one error per problem it named.
    HandlerOptions {
        /// The handler's name.
        handler: String,
        /// The option the problem is about; `None` when it is about the table as a whole.
        key: Option<String>,
        /// The handler's reason, naming the key.
        message: String,
    },
    /// A strategy setting under another strategy (`max_threads` with forking, say).
    WrongStrategy {
        /// The setting, as the config names it.
        key: &'static str,
        /// The strategy the setting belongs to.
        needs: StrategyKind,
        /// This server's strategy.
        strategy: StrategyKind,
    },
    /// A socket option that means nothing for this endpoint (`unix_mode` on TCP, `v6only` on IPv4).
    NotForEndpoint {
        /// The key, as the config names it (`socket.nodelay`).
        key: &'static str,
        /// This server's endpoint.
        endpoint: String,
        /// The endpoints the key means something for, in words.
        applies_to: &'static str,
    },
    /// A value out of range or malformed (a zero size, a negative timeout, a non-octal mode).
    BadValue {
        /// The key, as the config names it.
        key: &'static str,
        /// What is wrong with its value.
        message: String,
    },
}

impl fmt::Display for ConfigErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use ConfigErrorKind::*;
        match self {
            Io { path, error } => write!(f, "{path}: cannot read the config file: {error}"),
            Toml { message } => f.write_str(message.trim_end()),
            DuplicateKey { key } => {
                write!(f, "duplicate key `{key}`: it is already set in this table")
            }
            UnknownKey {
                key,
                hint: Some(hint),
                ..
            } => write!(f, "unknown key `{key}`: {hint}"),
            UnknownKey { key, expected, .. } => {
                write!(f, "unknown key `{key}`: expected {}", list(expected))
            }
            MissingKey { key, needs } => write!(f, "missing key `{key}`: {needs}"),
            WrongType {
                key,
                expected,
                found,
                hint,
            } => {
                write!(f, "{key}: expected {expected}, found {found}")?;
                if let Some(hint) = hint {
                    write!(f, "; {hint}")?;
                }
                Ok(())
            }
            NoServers => f.write_str("no [[server]] table: a config needs at least one server"),
            Plugin(error) => write!(f, "plugin {error}"),
            PluginHandler(error) => write!(f, "plugin handler refused: {error}"),
            DuplicateName { name, first_line } => {
                write!(f, "server name {name:?} is already used on line {first_line}")
            }
            DuplicateListen { endpoint, other } => {
                write!(f, "{endpoint} is already the endpoint of server {other:?}")
            }
            SharedPort {
                endpoint,
                other,
                other_endpoint,
                other_line,
                fix,
            } => write!(
                f,
                "{endpoint} and {other_endpoint} of server {other:?} (line {other_line}) cannot both \
                 bind: a wildcard address takes the port on every address, so the second bind would \
                 fail with \"Address already in use\"; {fix}"
            ),
            SocketFolder { folder, problem } => write!(
                f,
                "listen: the socket file's folder {} {problem}",
                folder.display()
            ),
            SocketPathTooLong { path, length, max } => write!(
                f,
                "listen: the socket path {} is {length} bytes long, more than the {max} a Unix \
                 socket address holds",
                path.display()
            ),
            BadEndpoint(error) => write!(f, "listen: {error}"),
            UnknownStrategy { name } => write!(
                f,
                "unknown strategy {name:?}: expected {}",
                list(&StrategyKind::ALL)
            ),
            UnknownHandler { name, known } => unknown_handler(f, name, known),
            UnsupportedSocketKind {
                handler,
                kind,
                supported,
            } => write!(
                f,
                "handler {handler:?} does not serve {kind} endpoints (it serves {})",
                list(supported)
            ),
            UnsupportedStrategy {
                handler,
                strategy,
                supported,
                note,
            } => {
                write!(f, "handler {handler:?} cannot run under the {strategy} strategy")?;
                if let Some(note) = note {
                    write!(f, ": {note}")?;
                }
                write!(f, " (use {})", list(supported))
            }
            HandlerOptions {
                handler, message, ..
            } => {
                write!(f, "options of handler {handler:?}: {message}")
            }
            WrongStrategy {
                key,
                needs,
                strategy,
            } => write!(
                f,
                "{key} applies only to the {needs} strategy, but this server's strategy is {strategy}"
            ),
            NotForEndpoint {
                key,
                endpoint,
                applies_to,
            } => write!(f, "{key} applies only to {applies_to}, not to {endpoint}"),
            BadValue { key, message } => write!(f, "{key}: {message}"),
        }
    }
}

fn unknown_handler(f: &mut fmt::Formatter<'_>, name: &str, known: &[String]) -> fmt::Result {
    if known.is_empty() {
        write!(f, "unknown handler {name:?}: no handlers are registered")
    } else {
        write!(f, "unknown handler {name:?}: expected {}", list(known))
    }
}

/// `a, b or c`.
fn list<T: fmt::Display>(items: &[T]) -> String {
    let names: Vec<String> = items.iter().map(|item| item.to_string()).collect();
    match names.split_last() {
        None => "nothing".to_string(),
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
    }
}

/// Turns the byte spans the TOML parser reports into [`Place`]s in one file.
#[derive(Debug, Clone, Copy)]
pub(super) struct Source<'a> {
    /// The name places show: the file's path as given, or `<embedded default>`.
    pub file: &'a str,
    /// The whole config text the spans index into.
    pub text: &'a str,
}

impl Source<'_> {
    /// The place where `span` starts.
    pub fn place(&self, span: Range<usize>) -> Place {
        let mut offset = span.start.min(self.text.len());
        while !self.text.is_char_boundary(offset) {
            offset -= 1;
        }
        let before = &self.text[..offset];
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        Place {
            file: self.file.to_string(),
            line: before.matches('\n').count() + 1,
            col: before[line_start..].chars().count() + 1,
        }
    }

    /// A problem at `span` (or at no place), in `server` (or in none).
    pub fn error(
        &self,
        span: Option<Range<usize>>,
        server: Option<&str>,
        kind: ConfigErrorKind,
    ) -> ConfigError {
        ConfigError {
            place: span.map(|span| self.place(span)),
            server: server.map(str::to_string),
            kind,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_become_one_based_lines_and_columns() {
        let source = Source {
            file: "f.toml",
            text: "a = 1\nbé = 2\n",
        };
        let at = |offset| {
            let place = source.place(offset..offset);
            (place.line, place.col)
        };
        assert_eq!(at(0), (1, 1));
        assert_eq!(at(4), (1, 5));
        assert_eq!(at(6), (2, 1));
        assert_eq!(at(9), (2, 3), "columns count characters, not bytes");
        assert_eq!(at(99), (3, 1), "past the end clamps to the end");
    }

    #[test]
    fn displays_place_server_and_message() {
        let error = ConfigError {
            place: Some(Place {
                file: "x.toml".into(),
                line: 3,
                col: 7,
            }),
            server: Some("web".into()),
            kind: ConfigErrorKind::UnknownStrategy {
                name: "pools".into(),
            },
        };
        assert_eq!(
            error.to_string(),
            "x.toml:3:7: server \"web\": unknown strategy \"pools\": expected sync, threading, forking, pool or reactor"
        );
    }
}
