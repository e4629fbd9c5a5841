//! Phase 2: turns the raw structs into [`ServerConfig`]s, or into the list of everything wrong with
//! them. Every check runs even after one has failed (a bad value is replaced by its default so the
//! checks after it still see something), so a user fixes a config in one round, not one per problem.
//!
//! This file holds the checks across servers — every endpoint parses, names are unique — and runs
//! the checks of where servers bind (`binds.rs`) and of each server (`server.rs`, `socket.rs`).

use std::collections::HashMap;
use std::ops::Range;
use std::path::Path;

use super::error::{ConfigError, ConfigErrorKind, Source};
use super::raw::{RawFile, RawServer};
use super::server::ServerCheck;
use super::{PlannedListener, ServerConfig};
use crate::{Endpoint, Registry};

/// Runs the phase 2 checks over one file, collecting every problem.
pub(super) struct Checker<'a> {
    source: Source<'a>,
    /// What relative paths resolve against.
    pub base_dir: &'a Path,
    /// The handlers servers may name: built-ins, and the handlers of this file's plugins.
    pub registry: &'a Registry,
    errors: Vec<ConfigError>,
    /// Log how an ambiguous endpoint was resolved (once per validation, not again for a plan).
    announce: bool,
}

impl<'a> Checker<'a> {
    pub fn new(source: Source<'a>, base_dir: &'a Path, registry: &'a Registry) -> Self {
        Checker {
            source,
            base_dir,
            registry,
            errors: Vec::new(),
            announce: true,
        }
    }

    /// Every server's socket as [`super::BindPlan`] has it, or every problem found on the way.
    pub fn plan(mut self, raw: &RawFile) -> Result<Vec<PlannedListener>, Vec<ConfigError>> {
        self.announce = false;
        self.check_names(&raw.server);
        let endpoints: Vec<_> = raw.server.iter().map(|s| self.endpoint(s)).collect();
        self.check_binds(&raw.server, &endpoints);
        let mut listeners = Vec::new();
        for (server, endpoint) in raw.server.iter().zip(endpoints) {
            let socket = ServerCheck::new(&mut self, server, endpoint.clone()).socket_options();
            if let Some(endpoint) = endpoint {
                listeners.push(PlannedListener {
                    name: server.name.get_ref().clone(),
                    endpoint,
                    socket,
                });
            }
        }
        if self.errors.is_empty() {
            return Ok(listeners);
        }
        Err(self.errors)
    }

    /// Every server, or every problem (in file order).
    pub fn check(mut self, raw: &RawFile) -> Result<Vec<ServerConfig>, Vec<ConfigError>> {
        self.check_names(&raw.server);
        let endpoints: Vec<_> = raw.server.iter().map(|s| self.endpoint(s)).collect();
        self.check_binds(&raw.server, &endpoints);
        let servers: Vec<_> = (raw.server.iter().zip(endpoints))
            .filter_map(|(server, endpoint)| ServerCheck::new(&mut self, server, endpoint).run())
            .collect();
        if self.errors.is_empty() {
            return Ok(servers);
        }
        self.errors
            .sort_by_key(|e| e.place.as_ref().map(|p| (p.line, p.col)));
        Err(self.errors)
    }

    /// Records a problem at `span` in `server`.
    pub(super) fn report(&mut self, span: Range<usize>, server: &str, kind: ConfigErrorKind) {
        let error = self.source.error(Some(span), Some(server), kind);
        self.errors.push(error);
    }

    /// The line `span` starts on.
    pub(super) fn line(&self, span: Range<usize>) -> usize {
        self.source.place(span).line
    }

    /// The text at `span` as the file has it, to quote a value back as the user wrote it (`0o600`,
    /// `1_000_000`, a number too large for any integer type).
    pub(super) fn written(&self, span: Range<usize>) -> &'a str {
        self.source.text.get(span).unwrap_or_default()
    }

    /// Names are non-empty and unique.
    fn check_names(&mut self, servers: &[RawServer]) {
        let mut first_lines: HashMap<&str, usize> = HashMap::new();
        for raw in servers {
            let (name, span) = (raw.name.get_ref().as_str(), raw.name.span());
            if name.is_empty() {
                let message = "a server needs a non-empty name".to_string();
                let kind = ConfigErrorKind::BadValue {
                    key: "name",
                    message,
                };
                self.report(span, name, kind);
                continue;
            }
            if let Some(message) = unfit_name(name) {
                let kind = ConfigErrorKind::BadValue {
                    key: "name",
                    message,
                };
                self.report(span.clone(), name, kind);
            }
            let line = self.source.place(span.clone()).line;
            if let Some(&first_line) = first_lines.get(name) {
                let kind = ConfigErrorKind::DuplicateName {
                    name: name.into(),
                    first_line,
                };
                self.report(span, name, kind);
            } else {
                first_lines.insert(name, line);
            }
        }
    }

    /// The endpoint, with a relative Unix socket path resolved against the base folder.
    fn endpoint(&mut self, raw: &RawServer) -> Option<Endpoint> {
        let written = raw.listen.get_ref();
        match Endpoint::resolve(written) {
            Ok(resolved) => {
                if let Some(choice) = resolved.choice(written).filter(|_| self.announce) {
                    log::info!("server {:?}: listen: {choice}", raw.name.get_ref());
                }
                Some(resolve(resolved.endpoint, self.base_dir))
            }
            Err(error) => {
                let kind = ConfigErrorKind::BadEndpoint(error);
                self.report(raw.listen.span(), raw.name.get_ref(), kind);
                None
            }
        }
    }
}

/// The longest server name: systemd's limit on a `FileDescriptorName=` (`FDNAME_MAX`), which is
/// what a server's name is when its socket is passed (socket activation, binary upgrade).
const MAX_NAME_BYTES: usize = 255;

/// Why `name` cannot name a passed socket in `LISTEN_FDNAMES` (sd_listen_fds(3)), if it cannot:
/// `:` separates the names there, and control characters are refused by systemd.
fn unfit_name(name: &str) -> Option<String> {
    if name.len() > MAX_NAME_BYTES {
        return Some(format!(
            "a server name has at most {MAX_NAME_BYTES} bytes (it names the server's socket in \
             LISTEN_FDNAMES, like systemd's FileDescriptorName=)"
        ));
    }
    let bad = name.chars().find(|c| *c == ':' || c.is_control())?;
    Some(format!(
        "{bad:?} cannot be in a server name: it names the server's socket in LISTEN_FDNAMES \
         (like systemd's FileDescriptorName=), where ':' separates names and control characters \
         are refused"
    ))
}

/// Resolves a relative Unix socket path against `base_dir`.
fn resolve(endpoint: Endpoint, base_dir: &Path) -> Endpoint {
    if endpoint.abstract_name().is_some() {
        return endpoint;
    }
    match endpoint {
        Endpoint::Unix(path) if path.is_relative() => Endpoint::Unix(base_dir.join(path)),
        Endpoint::UnixDatagram(path) if path.is_relative() => {
            Endpoint::UnixDatagram(base_dir.join(path))
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::unfit_name;

    #[test]
    fn names_must_fit_listen_fdnames() {
        assert_eq!(unfit_name("echo-tcp"), None);
        assert_eq!(unfit_name("écho"), None);
        assert!(unfit_name("a:b").unwrap().contains("':'"));
        assert!(unfit_name("a\nb").is_some());
        assert!(unfit_name(&"x".repeat(256)).unwrap().contains("255"));
    }
}
