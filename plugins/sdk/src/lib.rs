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
//! `serde` feature for `from_json`, which reads a plugin's options into a serde type.
//!
//! # A plugin in full
//!
//! The `src/lib.rs` of a `cdylib` crate that depends on this one. `Reverse` is an ordinary
//! [`RequestHandler`]; [`PluginHandler`] adds its config name and how its options are read, and the
//! macro exports it. (This example also checks what it exported, which a plugin need not do.)
//!
//! ```
//! use std::io::{BufRead, Write};
//! use std::sync::Arc;
//!
//! use sockserv_plugin::{export_plugin, HandlerResult, PluginHandler, Request, RequestHandler};
//!
//! /// Sends every line back reversed.
//! pub struct Reverse;
//!
//! impl RequestHandler for Reverse {
//!     fn handle(&mut self, req: &mut Request<'_>) -> HandlerResult {
//!         let mut line = String::new();
//!         while req.rfile.read_line(&mut line)? > 0 {
//!             let text = line.trim_end_matches('\n');
//!             let reversed: String = text.chars().rev().collect();
//!             writeln!(req.wfile, "{reversed}")?;
//!             line.clear();
//!         }
//!         Ok(())
//!     }
//! }
//!
//! impl PluginHandler for Reverse {
//!     /// No options (with the `serde` feature, a serde type read by `from_json`).
//!     type Options = ();
//!     const NAME: &'static str = "reverse"; // handler = "reverse" in a config
//!     const SUMMARY: &'static str = "every line back, reversed";
//!
//!     fn options(json: &str) -> Result<(), String> {
//!         match json.trim() {
//!             "{}" => Ok(()),
//!             other => Err(format!("reverse takes no options, got {other}")),
//!         }
//!     }
//!
//!     fn new(_options: &Arc<()>) -> Self {
//!         Reverse
//!     }
//! }
//!
//! export_plugin!(name: "reverse", version: "0.1.0", handlers: [Reverse]);
//!
//! // What the host finds behind the entry symbol when it loads the library.
//! // SAFETY: the entry returns a pointer to a static table that lives as long as the program.
//! let table = unsafe { &*sockserv_plugin_entry() };
//! assert_eq!(table.magic, sockserv_plugin::abi::ABI_MAGIC);
//! assert_eq!(table.abi_major, sockserv_plugin::abi::ABI_MAJOR);
//! assert_eq!(table.handler_count, 1);
//! assert!(Reverse::options("{}").is_ok() && Reverse::options(r#"{"x": 1}"#).is_err());
//! ```

// `unsafe` is confined to `abi::glue`, which allows it where it crosses the C ABI.
#![deny(unsafe_code)]

pub mod abi;
mod address;
mod handler;
mod plugin;
mod session;
mod tls;

pub use address::Address;
pub use handler::{
    HandlerError, HandlerFactory, HandlerResult, LogLevel, NoControl, Request, RequestControl,
    RequestHandler, RequestKind, ServerContext,
};
#[cfg(feature = "serde")]
pub use plugin::from_json;
pub use plugin::PluginHandler;
pub use session::{OutputBuffer, Reading, Session, SessionContext, SessionInfo, SessionWaker};
pub use tls::TlsInfo;
