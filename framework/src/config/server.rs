//! Phase 2 for one `[[server]]` table: its strategy and the strategy's settings, its sizes and
//! timeout, its socket options (`socket.rs`), and its handler — known, able to serve this socket kind
//! under this strategy, and accepting its options. A bad value is reported and replaced by its default,
//! so the checks after it still run and the user sees every problem at once.

use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use sockserv_plugin::HandlerFactory;
use toml::Spanned;

use super::error::ConfigErrorKind;
use super::limits::{self, Limit};
use super::options::{OptionAt, OptionError, OptionErrors};
use super::raw::{RawServer, Seconds};
use super::socket::DATAGRAM_ONLY;
use super::validate::Checker;
use super::ServerConfig;
use crate::settings::limits::TIMEOUT;
use crate::StrategyKind::{Forking, Pool, Reactor, Sync, Threading};
use crate::{
    Endpoint, HandlerEntry, HandlerOptions, ServerSettings, Strategy, StrategyKind,
    DEFAULT_DRAIN_TIMEOUT, DEFAULT_MAX_CHILDREN, DEFAULT_MAX_PACKET_SIZE, DEFAULT_POOL_QUEUE,
    DEFAULT_POOL_WORKERS,
};

/// The reactor's default number of event loops: one per core.
fn default_loops() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// A count that belongs to one strategy.
struct StrategySetting {
    key: &'static str,
    needs: StrategyKind,
    limit: Limit,
}

const MAX_THREADS: StrategySetting = StrategySetting {
    key: "max_threads",
    needs: Threading,
    limit: limits::MAX_THREADS,
};
const MAX_CHILDREN: StrategySetting = StrategySetting {
    key: "max_children",
    needs: Forking,
    limit: limits::MAX_CHILDREN,
};
const WORKERS: StrategySetting = StrategySetting {
    key: "workers",
    needs: Pool,
    limit: limits::POOL_WORKERS,
};
const QUEUE: StrategySetting = StrategySetting {
    key: "queue",
    needs: Pool,
    limit: limits::POOL_QUEUE,
};
const LOOPS: StrategySetting = StrategySetting {
    key: "loops",
    needs: Reactor,
    limit: limits::REACTOR_LOOPS,
};

/// The checks of one server, reporting into the file's [`Checker`].
pub(super) struct ServerCheck<'c, 'a> {
    checker: &'c mut Checker<'a>,
    /// The server's table as phase 1 read it.
    pub raw: &'c RawServer,
    /// The parsed endpoint; `None` if it did not parse (already reported).
    pub endpoint: Option<Endpoint>,
}

impl<'c, 'a> ServerCheck<'c, 'a> {
    pub fn new(
        checker: &'c mut Checker<'a>,
        raw: &'c RawServer,
        endpoint: Option<Endpoint>,
    ) -> Self {
        ServerCheck {
            checker,
            raw,
            endpoint,
        }
    }

    /// The server's settings and factory; `None` when something is wrong (reported).
    pub fn run(mut self) -> Option<ServerConfig> {
        let strategy_kind = self.strategy_kind();
        let strategy = self.strategy(strategy_kind);
        let socket = self.socket_options();
        let max_packet_size = self.max_packet_size();
        let timeout = self.seconds(self.raw.timeout.as_ref(), "timeout");
        let drain_timeout = self
            .seconds(self.raw.drain_timeout.as_ref(), "drain_timeout")
            .unwrap_or(DEFAULT_DRAIN_TIMEOUT);
        let limits = self.limits();
        let proxy_protocol = self.proxy_protocol();
        let tls = self.tls();
        let stream = self.endpoint.as_ref().is_some_and(|e| e.kind().is_stream());
        let spawn_per_datagram = self.spawn_per_datagram(strategy_kind, stream);
        let factory = self.factory(strategy_kind);
        let settings = ServerSettings {
            name: self.raw.name.get_ref().clone(),
            endpoint: self.endpoint?,
            strategy,
            socket,
            max_packet_size,
            timeout,
            spawn_per_datagram,
            drain_timeout,
            limits,
            proxy_protocol,
            tls,
        };
        let handler = self.raw.handler.get_ref().clone();
        let options = (self.raw.options.as_ref())
            .map_or_else(toml::Table::new, |options| options.get_ref().table.clone());
        Some(ServerConfig {
            settings,
            handler,
            options,
            factory: factory?,
        })
    }

    /// The text written at `span`, as the user wrote it (for messages).
    pub fn written(&self, span: std::ops::Range<usize>) -> &str {
        self.checker.written(span)
    }

    /// The config file's folder, which relative paths in it are relative to.
    pub fn base_dir(&self) -> &std::path::Path {
        self.checker.base_dir
    }

    /// Records a problem of this server at `span`.
    pub fn report(&mut self, span: Range<usize>, kind: ConfigErrorKind) {
        self.checker.report(span, self.raw.name.get_ref(), kind);
    }

    /// The strategy's kind (threading when not given); `None` when unknown or unreadable.
    fn strategy_kind(&mut self) -> Option<StrategyKind> {
        if self.raw.unreadable("strategy") {
            return None;
        }
        let Some(written) = &self.raw.strategy else {
            return Some(StrategyKind::Threading);
        };
        let kind = StrategyKind::from_name(written.get_ref());
        if kind.is_none() {
            let name = written.get_ref().clone();
            self.report(written.span(), ConfigErrorKind::UnknownStrategy { name });
        }
        kind
    }

    /// The strategy with its settings; each strategy's keys only under that strategy.
    fn strategy(&mut self, kind: Option<StrategyKind>) -> Strategy {
        let raw = self.raw;
        let max_threads = self.only_under(&raw.max_threads, &MAX_THREADS, kind);
        let max_children = self.only_under(&raw.max_children, &MAX_CHILDREN, kind);
        let workers = self.only_under(&raw.workers, &WORKERS, kind);
        let queue = self.only_under(&raw.queue, &QUEUE, kind);
        let loops = self.only_under(&raw.loops, &LOOPS, kind);
        match kind {
            Some(Threading) => Strategy::Threading { max_threads },
            Some(Forking) => Strategy::Forking {
                max_children: max_children.unwrap_or(DEFAULT_MAX_CHILDREN),
            },
            Some(Pool) => Strategy::Pool {
                workers: workers.unwrap_or(DEFAULT_POOL_WORKERS),
                queue: queue.unwrap_or(DEFAULT_POOL_QUEUE),
            },
            Some(Reactor) => Strategy::Reactor {
                loops: loops.unwrap_or_else(default_loops),
            },
            Some(Sync) | None => Strategy::Sync,
        }
    }

    /// `datagrams = "inline" | "spawn"`: whether threading and forking start a thread or process per
    /// datagram. Only for datagram endpoints under those two strategies.
    fn spawn_per_datagram(&mut self, kind: Option<StrategyKind>, stream: bool) -> bool {
        let Some(written) = &self.raw.datagrams else {
            return false;
        };
        let message = match (written.get_ref().as_str(), kind, stream) {
            (_, _, true) => "only datagram endpoints have datagrams to dispatch".to_string(),
            (_, Some(Sync | Pool | Reactor), _) => {
                "only threading and forking can spawn per datagram".to_string()
            }
            ("inline", ..) => return false,
            ("spawn", ..) => return true,
            (other, ..) => format!("{other:?}: expected \"inline\" or \"spawn\""),
        };
        let kind = ConfigErrorKind::BadValue {
            key: "datagrams",
            message,
        };
        self.report(written.span(), kind);
        false
    }

    /// A count that only means something under its strategy.
    fn only_under(
        &mut self,
        value: &Option<Spanned<i64>>,
        setting: &StrategySetting,
        strategy: Option<StrategyKind>,
    ) -> Option<usize> {
        let value = value.as_ref()?;
        let needs = setting.needs;
        if let Some(strategy) = strategy.filter(|strategy| *strategy != needs) {
            let key = setting.key;
            let kind = ConfigErrorKind::WrongStrategy {
                key,
                needs,
                strategy,
            };
            self.report(value.span(), kind);
            return None;
        }
        self.count(Some(value), setting.key, setting.limit)
    }

    /// `max_packet_size`: datagram servers only, at most what their socket kind can carry.
    fn max_packet_size(&mut self) -> usize {
        let value = self.applicable(self.raw.max_packet_size.as_ref(), &DATAGRAM_ONLY);
        let limit = limits::max_packet_size(self.endpoint.as_ref());
        let size = self.count(value.as_ref(), DATAGRAM_ONLY.key, limit);
        size.unwrap_or(DEFAULT_MAX_PACKET_SIZE)
    }

    /// A count or a size in bytes: from 1 to `limit.max`. A value out of range is reported as the
    /// file writes it.
    pub fn count(
        &mut self,
        value: Option<&Spanned<i64>>,
        key: &'static str,
        limit: Limit,
    ) -> Option<usize> {
        let value = value?;
        let count = usize::try_from(*value.get_ref()).ok();
        if let Some(count) = count.filter(|count| (1..=limit.max).contains(count)) {
            return Some(count);
        }
        let message = limit.message(self.checker.written(value.span()));
        self.report(value.span(), ConfigErrorKind::BadValue { key, message });
        None
    }

    /// A duration key (`timeout`, `drain_timeout`): more than 0 and at most a day of seconds.
    fn seconds(&mut self, value: Option<&Spanned<Seconds>>, key: &'static str) -> Option<Duration> {
        let value = value?;
        let Seconds(seconds) = *value.get_ref();
        let duration = Some(seconds)
            .filter(|seconds| *seconds > 0.0)
            .and_then(|seconds| Duration::try_from_secs_f64(seconds).ok())
            .filter(|duration| *duration <= TIMEOUT);
        if duration.is_none() {
            let message = format!(
                "must be more than 0 and at most {} seconds (1 day), got {}",
                TIMEOUT.as_secs(),
                self.checker.written(value.span())
            );
            let kind = ConfigErrorKind::BadValue { key, message };
            self.report(value.span(), kind);
        }
        duration
    }

    /// The handler's factory, after checking the handler fits this endpoint and strategy.
    fn factory(&mut self, strategy: Option<StrategyKind>) -> Option<Arc<dyn HandlerFactory>> {
        let (registry, handler) = (self.checker.registry, self.raw.handler.get_ref());
        let Some(entry) = registry.get(handler) else {
            let known = registry.names().map(str::to_string).collect();
            let kind = ConfigErrorKind::UnknownHandler {
                name: handler.clone(),
                known,
            };
            self.report(self.raw.handler.span(), kind);
            return None;
        };
        self.check_socket_kind(entry);
        self.check_strategy(entry, strategy);
        if self.raw.unreadable("options") {
            // Reported in phase 1; an empty table would make up errors of its own.
            return None;
        }
        self.build(entry)
    }

    /// Points at `listen`.
    fn check_socket_kind(&mut self, entry: &HandlerEntry) {
        let kind = self.endpoint.as_ref().map(Endpoint::kind);
        let Some(kind) = kind.filter(|kind| !entry.socket_kinds.contains(kind)) else {
            return;
        };
        let kind = ConfigErrorKind::UnsupportedSocketKind {
            handler: entry.name.clone(),
            kind,
            supported: entry.socket_kinds.clone(),
        };
        self.report(self.raw.listen.span(), kind);
    }

    /// Points at `strategy`, or at `handler` when the strategy is the default.
    fn check_strategy(&mut self, entry: &HandlerEntry, strategy: Option<StrategyKind>) {
        let Some(strategy) = strategy.filter(|strategy| !entry.strategies.contains(strategy))
        else {
            return;
        };
        let span = self
            .raw
            .strategy
            .as_ref()
            .unwrap_or(&self.raw.handler)
            .span();
        let kind = ConfigErrorKind::UnsupportedStrategy {
            handler: entry.name.clone(),
            strategy,
            supported: entry.strategies.clone(),
            note: entry.strategy_note.clone(),
        };
        self.report(span, kind);
    }

    /// Hands `[server.options]` (or an empty table) to the handler's build function. Each problem it
    /// names is reported on its own, at its key or value; one about no key in particular points at
    /// the options table, or at `handler` when there is none.
    fn build(&mut self, entry: &HandlerEntry) -> Option<Arc<dyn HandlerFactory>> {
        let (raw, empty) = (self.raw, toml::Table::new());
        let options = HandlerOptions {
            table: raw
                .options
                .as_ref()
                .map_or(&empty, |table| &table.get_ref().table),
            base_dir: self.checker.base_dir,
            server: raw.name.get_ref(),
        };
        let OptionErrors(mut errors) = match (entry.build)(&options) {
            Ok(factory) => return Some(factory),
            Err(errors) => errors,
        };
        if errors.is_empty() {
            // A refusal must not vanish, or the server would be silently left out.
            errors.push(OptionError::table("refused its options without saying why"));
        }
        for error in errors {
            let kind = ConfigErrorKind::HandlerOptions {
                handler: entry.name.clone(),
                key: error.key().map(str::to_string),
                message: error.message,
            };
            self.report(self.option_span(&error.at), kind);
        }
        None
    }

    /// Where a problem with the options points: at its key or value when the table has that key,
    /// else at the table, else at `handler`.
    fn option_span(&self, at: &OptionAt) -> Range<usize> {
        let options = self.raw.options.as_ref();
        let place = |key: &str| options.and_then(|table| table.get_ref().places.get(key));
        let span = match at {
            OptionAt::Key(key) => place(key).map(|place| place.key.clone()),
            OptionAt::Value(key) => place(key).map(|place| place.value.clone()),
            OptionAt::Table => None,
        };
        span.or_else(|| options.map(Spanned::span))
            .unwrap_or_else(|| self.raw.handler.span())
    }
}
