//! sockserv's Python plugin: socketserver request handlers and asyncio protocols, written in
//! Python, served by sockserv through an embedded CPython (PyO3). The core binary never links
//! libpython: this library does, and the host loads it like any plugin.
//!
//! Two handlers, each with options `module` (a Python file, relative to the config's folder) and
//! `class` (a class in it):
//!
//! - `python`: a `socketserver.BaseRequestHandler` subclass (`StreamRequestHandler`,
//!   `DatagramRequestHandler`...), run unmodified under sync, threading, pool and forking, on
//!   streams and datagrams. It is instantiated with `(request, client_address, server)` as
//!   socketserver does; `request` behaves like the socket (or is `(data, socket)` for a datagram),
//!   see [`socket`].
//! - `python-asyncio`: an `asyncio.Protocol`-style class, under the reactor (and the blocking
//!   strategies), on streams; see [`protocol`].
//!
//! The interpreter (see [`interpreter`]) starts when the first server's options are checked, so
//! `sockserv check` imports the module and reports its errors with Python's traceback.

mod blocking;
mod interpreter;
mod lease;
mod options;
mod protocol;
mod socket;

use std::path::Path;
use std::sync::Arc;

use sockserv_plugin::abi::{
    KIND_DATAGRAM, KIND_STREAM, STRATEGY_FORKING, STRATEGY_REACTOR, STRATEGY_SYNC,
    STRATEGY_THREADING,
};
use sockserv_plugin::{
    export_plugin, HandlerResult, PluginHandler, Request, RequestHandler, Session, SessionInfo,
};

use options::{Kind, Options};

/// The folder relative module paths mean when the host is older than ABI 1.3 and does not say
/// where the config is: the working directory.
fn working_dir() -> std::path::PathBuf {
    std::env::current_dir().unwrap_or_else(|_| ".".into())
}

/// `handler = "python"`: a socketserver handler class.
pub struct SocketServerHandler {
    options: Arc<Options>,
}

impl PluginHandler for SocketServerHandler {
    type Options = Options;
    const NAME: &'static str = "python";
    const SUMMARY: &'static str =
        "a socketserver.BaseRequestHandler subclass in Python (options: module, class)";
    const SOCKET_KINDS: u32 = KIND_STREAM | KIND_DATAGRAM;
    const STRATEGIES: u32 = STRATEGY_SYNC | STRATEGY_THREADING | STRATEGY_FORKING;

    fn options(json: &str) -> Result<Options, String> {
        Options::load(json, &working_dir(), Kind::SocketServer)
    }

    fn options_in(json: &str, config_dir: &Path) -> Result<Options, String> {
        Options::load(json, config_dir, Kind::SocketServer)
    }

    fn new(options: &Arc<Options>) -> Self {
        SocketServerHandler {
            options: Arc::clone(options),
        }
    }
}

impl RequestHandler for SocketServerHandler {
    fn handle(&mut self, req: &mut Request<'_>) -> HandlerResult {
        blocking::serve(&self.options, req)
    }
}

/// `handler = "python-asyncio"`: an asyncio protocol class.
pub struct ProtocolHandler {
    options: Arc<Options>,
}

impl PluginHandler for ProtocolHandler {
    type Options = Options;
    const NAME: &'static str = "python-asyncio";
    const SUMMARY: &'static str =
        "an asyncio.Protocol class in Python, under the reactor (options: module, class)";
    const SOCKET_KINDS: u32 = KIND_STREAM;
    const STRATEGIES: u32 =
        STRATEGY_SYNC | STRATEGY_THREADING | STRATEGY_FORKING | STRATEGY_REACTOR;

    fn options(json: &str) -> Result<Options, String> {
        Options::load(json, &working_dir(), Kind::Protocol)
    }

    fn options_in(json: &str, config_dir: &Path) -> Result<Options, String> {
        Options::load(json, config_dir, Kind::Protocol)
    }

    fn new(options: &Arc<Options>) -> Self {
        ProtocolHandler {
            options: Arc::clone(options),
        }
    }

    fn new_session(options: &Arc<Options>, info: &SessionInfo<'_>) -> Option<Box<dyn Session>> {
        Some(Box::new(protocol::ProtocolSession::new(options, info)))
    }
}

impl RequestHandler for ProtocolHandler {
    fn handle(&mut self, req: &mut Request<'_>) -> HandlerResult {
        blocking::drive_protocol(&self.options, req)
    }
}

export_plugin!(
    name: "python",
    version: env!("CARGO_PKG_VERSION"),
    handlers: [SocketServerHandler, ProtocolHandler],
);
