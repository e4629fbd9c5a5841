//! sockserv's server core: Python's `socketserver`, rebuilt as a strategy value and a handler factory.
//!
//! How the pieces fit, in socketserver's words:
//!
//! - A [`Server`] (BaseServer) is bound from [`ServerSettings`] — an [`Endpoint`] over one of four socket
//!   kinds, [`SocketOptions`] made with socket2, a [`Strategy`] — and a handler factory from the
//!   registry. The caller uses `serve_forever`, `handle_request` (serve exactly one), the [`Shutdown`]
//!   handle (immediate, callable from any thread, a handler's included) and `server_close`.
//! - [`Hooks`] are the overridable methods of BaseServer: `verify_request`, `handle_error`,
//!   `handle_timeout`, `service_actions`. The defaults accept everyone and log errors.
//! - The strategy (sync, threading, forking, pool, reactor) decides where each request runs; a
//!   blocking handler never knows which. The reactor drives handlers that also offer an event-driven
//!   `Session` (see `sockserv_plugin::Session`), many connections per thread.
//! - [`proxy`] reads the PROXY protocol header of connections from trusted load balancers, so that
//!   the limits, the logs and the handler see the client behind them.
//! - [`tls`] terminates TLS (`[server.tls]`, rustls) for every strategy, so handlers read and write
//!   plaintext and find the client's identity on `Request::tls` / `SessionInfo::tls`.
//! - [`config`] reads the TOML file in two phases (raw serde structs, then validation that reports every
//!   problem with its place) into [`ServerSettings`] and a factory per server.
//!
//! [`ServerProcess`] runs a forking server in a process of its own, started by fork and execve of
//! this executable with its listener passed as socket activation passes one ([`spawn`]), so forking
//! and threading servers can run side by side; [`Listener`] keeps a listening socket apart from
//! its server, to hand it to a successor.
//!
//! [`plugin`] loads handler plugins through the SDK's versioned C ABI.
//!
//! [`metrics`] counts what every server does (accepts, refusals and closes by reason, bytes,
//! durations, failures) in memory shared by the whole process tree, forked children included, for
//! the `metrics` handler to serve; every connection gets an id ([`metrics::ConnId`]) that begins
//! each log line about it, and log lines carry their fields (server, conn, peer, reason) as
//! structured key-values ([`Fields`]).
//!
//! `unsafe` is confined to the fork code (`strategy::forking`, `process`, `spawn`), taking over
//! passed descriptors (`activation`), the plugin host (`plugin`), the one `ioctl` that reads a
//! socket's send queue (`send_queue`), the two glibc allocator calls that give memory back
//! (`memory`) and the memory the forked processes count in (`metrics`), each block with a SAFETY
//! note; the crate denies it everywhere else.

#![deny(unsafe_code)]

#[allow(unsafe_code)]
pub mod activation;
mod budget;
mod close;
pub mod config;
mod deadline;
mod descriptors;
mod endpoint;
mod error;
pub mod heartbeat;
mod hooks;
pub mod limits;
pub mod memory;
pub mod metrics;
#[doc(hidden)]
pub mod peer_log;
#[allow(unsafe_code)]
pub mod plugin;
#[allow(unsafe_code)]
mod process;
pub mod proxy;
mod registry;
mod request;
#[allow(unsafe_code)]
mod send_queue;
mod server;
mod settings;
mod shutdown;
#[allow(unsafe_code)]
pub mod spawn;
mod strategy;
#[cfg(test)]
mod test_support;
pub mod tls;
mod transport;

pub use close::FORCED_CLOSE_WAIT;
pub use endpoint::{Endpoint, EndpointError, Resolved, SocketKind};
pub use error::ServerError;
pub use hooks::{Client, DefaultHooks, Hooks, RequestFailure};
pub use peer_log::{Fields, LINES_PER_WINDOW, PEER_FAULT_STATUS, WINDOW as PEER_LOG_WINDOW};
pub use process::{
    serve_process, termination_signals, ProcessExit, ServerProcess, UNCLEAN_DRAIN_STATUS,
};
pub use registry::{BuildFn, HandlerEntry, HandlerOptions, Registry, RegistryError};
pub use server::Server;
pub use settings::{
    ServerSettings, SocketOptions, Strategy, StrategyKind, DEFAULT_DRAIN_TIMEOUT,
    DEFAULT_MAX_CHILDREN, DEFAULT_MAX_PACKET_SIZE, DEFAULT_POOL_QUEUE, DEFAULT_POOL_WORKERS,
    DEFAULT_REQUEST_QUEUE_SIZE,
};
pub use shutdown::Shutdown;
pub use strategy::is_single_threaded;
pub use transport::{Listener, UnixFile};
