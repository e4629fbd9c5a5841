//! The sockserv handler API, shared by the built-in handlers and by plugins.
//!
//! This crate is the bottom of the dependency graph (`sockserv-plugin` ← framework ← handlers ← binary)
//! and has no dependencies of its own, so a plugin that builds against it builds in seconds and never
//! links the server core.
//!
//! What it holds, in socketserver's words:
//!
//! - [`RequestHandler`]: BaseRequestHandler. One instance serves one request — a connection on a stream
//!   socket, a datagram on a datagram socket. The server calls [`RequestHandler::setup`], then
//!   [`RequestHandler::handle`], then [`RequestHandler::finish`]; `finish` runs even when `handle`
//!   returned an error or panicked (it is skipped only when `setup` failed, as in socketserver).
//! - [`Request`]: what a handler sees of its request — `rfile` and `wfile` (socketserver's names), the
//!   peer and local addresses, the datagram itself on datagram sockets, and the [`ServerContext`].
//! - [`HandlerFactory`]: makes one handler per request from options validated once, at config time.
//!
//! Handler authors implement `handle` and, where they need them, `setup` and `finish`; the server does
//! everything else: accepting, the strategy (sync, threading, forking), error reporting, logging.
//!
//! Plugins — handlers in a shared library loaded at run time — implement [`PluginHandler`] too and
//! export it with [`export_plugin!`]; [`abi`] is the versioned C ABI that macro targets. Enable the
//! `serde` feature for [`from_json`], which reads a plugin's options into a serde type.

// `unsafe` is confined to `abi::glue`, which allows it where it crosses the C ABI.
#![deny(unsafe_code)]

pub mod abi;
mod address;
mod handler;
mod plugin;
mod session;

pub use address::Address;
pub use handler::{
    HandlerError, HandlerFactory, HandlerResult, LogLevel, NoControl, Request, RequestControl,
    RequestHandler, RequestKind, ServerContext,
};
#[cfg(feature = "serde")]
pub use plugin::from_json;
pub use plugin::PluginHandler;
pub use session::{OutputBuffer, Session, SessionContext, SessionInfo, SessionWaker};
