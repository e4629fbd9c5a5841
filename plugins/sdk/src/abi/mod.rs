//! The plugin ABI: the C-compatible table a plugin library exports and the host callbacks it calls.
//!
//! Plugins cross a C ABI, never Rust's: Rust's own ABI is not stable across compilers, host and plugin
//! may use different allocators, and a Rust `dyn Trait` has no layout promise. So:
//!
//! - A plugin is a `cdylib` exporting one `extern "C"` function, [`ENTRY_SYMBOL`], that returns a
//!   pointer to a static [`PluginTable`]: [`ABI_MAGIC`], the ABI's major and minor version (the ABI's
//!   own numbers, not the crate's), the table's size, the plugin's name and version, and its handlers.
//! - Each [`HandlerTable`] has functions to create an instance from the handler's options (JSON bytes
//!   in, an error message out through a host callback on failure), handle a stream request, handle a
//!   datagram, and destroy the instance.
//! - The host owns every buffer. During a request the plugin reads, writes, logs and asks for shutdown
//!   through the callbacks in [`HostIo`]; it never hands the host memory to free.
//!
//! Stability: a minor version may only append fields at the end of a table (each table records its
//! `size`, so either side can tell whether a field is there) and add flags; anything else is a new
//! major version, and the host refuses a plugin of another major version at load time.
//!
//! Plugin authors do not use this module directly: [`export_plugin!`](crate::export_plugin) generates
//! the table and the glue from a [`RequestHandler`](crate::RequestHandler) implementation.

mod glue;
mod session_glue;

pub use glue::{handler_table, plugin_table, StaticTable};

use std::ffi::c_void;

/// Marks a sockserv plugin table: the bytes `SOCKSERV`.
pub const ABI_MAGIC: [u8; 8] = *b"SOCKSERV";
/// Changes when the ABI changes incompatibly; the host refuses another major.
pub const ABI_MAJOR: u32 = 1;
/// Changes when fields or flags are appended; a host accepts any minor of its major.
/// 1.1 appended the event-driven session entries to [`HandlerTable`] and [`STRATEGY_REACTOR`];
/// 1.2 appended `tls` ([`TlsPeer`]) to [`HostIo`] and [`SessionIo`];
/// 1.3 appended `create_in` (the config file's folder at creation) to [`HandlerTable`].
pub const ABI_MINOR: u32 = 3;
/// The symbol the host looks up, with its terminating NUL.
pub const ENTRY_SYMBOL: &[u8] = b"sockserv_plugin_entry\0";

/// The entry function's type.
pub type EntryFn = unsafe extern "C" fn() -> *const PluginTable;

/// [`HandlerTable::create`]'s error callback.
pub type ErrorFn = unsafe extern "C" fn(error_ctx: *mut c_void, message: Bytes);
/// [`HandlerTable::create`].
pub type CreateFn =
    unsafe extern "C" fn(options: Bytes, error_ctx: *mut c_void, error: ErrorFn) -> *mut c_void;
/// [`HandlerTable::create_in`] (ABI 1.3).
pub type CreateInFn = unsafe extern "C" fn(
    options: Bytes,
    config_dir: Bytes,
    error_ctx: *mut c_void,
    error: ErrorFn,
) -> *mut c_void;
/// [`HandlerTable::handle_stream`] and [`HandlerTable::handle_datagram`].
pub type HandleFn = unsafe extern "C" fn(instance: *const c_void, io: *const HostIo) -> i32;
/// [`HandlerTable::destroy`].
pub type DestroyFn = unsafe extern "C" fn(instance: *mut c_void);
/// [`HandlerTable::session_open`] (ABI 1.1).
pub type SessionOpenFn =
    unsafe extern "C" fn(instance: *const c_void, io: *const SessionIo) -> *mut c_void;
/// [`HandlerTable::session_event`] (ABI 1.1).
pub type SessionEventFn = unsafe extern "C" fn(
    session: *mut c_void,
    event: u32,
    data: Bytes,
    io: *const SessionIo,
) -> i32;
/// [`HandlerTable::session_close`] (ABI 1.1).
pub type SessionCloseFn = unsafe extern "C" fn(session: *mut c_void);

/// Socket-kind flags of [`HandlerTable::socket_kinds`].
pub const KIND_STREAM: u32 = 1;
pub const KIND_DATAGRAM: u32 = 2;
/// Strategy flags of [`HandlerTable::strategies`]. The pool runs blocking handlers as threading
/// does, so `STRATEGY_THREADING` covers it.
pub const STRATEGY_SYNC: u32 = 1;
pub const STRATEGY_THREADING: u32 = 2;
pub const STRATEGY_FORKING: u32 = 4;
/// Since 1.1: the handler has event-driven sessions (`session_*` in [`HandlerTable`]).
pub const STRATEGY_REACTOR: u32 = 8;

/// Session events of [`HandlerTable::session_event`] (ABI 1.1).
pub const EVENT_OPEN: u32 = 0;
pub const EVENT_DATA: u32 = 1;
pub const EVENT_EOF: u32 = 2;
pub const EVENT_WAKE: u32 = 3;

/// What a handle function returns.
pub const STATUS_OK: i32 = 0;
/// The handler returned an error; its message was passed to [`HostIo::fail`].
pub const STATUS_ERROR: i32 = 1;
/// The handler panicked; the panic was caught in the plugin and its message passed to `fail`.
pub const STATUS_PANIC: i32 = 2;

// Log levels of `HostIo::log` are `LogLevel`'s numbers (1 error … 4 debug).

/// Borrowed bytes: static in tables, valid for the duration of a call elsewhere.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct Bytes {
    pub ptr: *const u8,
    pub len: usize,
}

impl Bytes {
    /// A `Bytes` over a string that lives for ever (for tables).
    pub const fn from_static(text: &'static str) -> Bytes {
        Bytes {
            ptr: text.as_ptr(),
            len: text.len(),
        }
    }

    /// A `Bytes` over a slice; the caller keeps the slice alive for as long as the `Bytes` is used.
    pub fn of(bytes: &[u8]) -> Bytes {
        Bytes {
            ptr: bytes.as_ptr(),
            len: bytes.len(),
        }
    }
}

/// What the entry symbol returns.
#[repr(C)]
#[derive(Debug)]
pub struct PluginTable {
    pub magic: [u8; 8],
    pub abi_major: u32,
    pub abi_minor: u32,
    /// `size_of::<PluginTable>()` as the plugin was built: fields are only ever appended.
    pub size: usize,
    /// The plugin's name and version (UTF-8).
    pub name: Bytes,
    pub version: Bytes,
    pub handlers: *const HandlerTable,
    pub handler_count: usize,
}

/// One handler a plugin provides.
///
/// Its four ABI 1.0 functions are required; they are `Option`s so that a null one is something the
/// host can see (an `Option` of a function pointer has the pointer's layout, `None` being null) and
/// refuse at load, naming the entry, instead of calling through it. The ABI 1.1 session entries are
/// optional: null, or absent from an older table, means the handler has no sessions.
#[repr(C)]
#[derive(Debug)]
pub struct HandlerTable {
    /// `size_of::<HandlerTable>()` as the plugin was built.
    pub size: usize,
    /// The name a config uses (`handler = "kv"`), and one line for listings.
    pub name: Bytes,
    pub summary: Bytes,
    /// `KIND_*` and `STRATEGY_*` flags: what this handler can serve under.
    pub socket_kinds: u32,
    pub strategies: u32,
    /// Required. Make an instance from the handler's options (a JSON object). On failure return
    /// null after passing a message to `error(error_ctx, message)`.
    pub create: Option<
        unsafe extern "C" fn(options: Bytes, error_ctx: *mut c_void, error: ErrorFn) -> *mut c_void,
    >,
    /// Required. Serve one connection; the instance is shared by concurrent requests.
    pub handle_stream:
        Option<unsafe extern "C" fn(instance: *const c_void, io: *const HostIo) -> i32>,
    /// Required. Serve one datagram: `read` gives the packet, `write` appends to the one reply
    /// datagram.
    pub handle_datagram:
        Option<unsafe extern "C" fn(instance: *const c_void, io: *const HostIo) -> i32>,
    /// Required. Release an instance. The host calls it once, when no request uses the instance
    /// any more.
    pub destroy: Option<unsafe extern "C" fn(instance: *mut c_void)>,

    // --- ABI 1.1: event-driven sessions, for the reactor strategy. A host reads these only from a
    // table whose `size` covers them, and only when all three are there.
    /// Open a session for one connection; null when the handler has none. The waker in `io` belongs
    /// to the plugin from this call on, whatever it returns: it must release it exactly once.
    pub session_open:
        Option<unsafe extern "C" fn(instance: *const c_void, io: *const SessionIo) -> *mut c_void>,
    /// Deliver one `EVENT_*` (with its bytes for `EVENT_DATA`); returns a `STATUS_*`.
    pub session_event: Option<
        unsafe extern "C" fn(
            session: *mut c_void,
            event: u32,
            data: Bytes,
            io: *const SessionIo,
        ) -> i32,
    >,
    /// Release a session: its connection is gone.
    pub session_close: Option<unsafe extern "C" fn(session: *mut c_void)>,

    // --- ABI 1.3. A host reads it only from a table whose `size` covers it.
    /// Optional. As `create`, and also given the folder of the config file that names the handler
    /// (its path's bytes: absolute, UTF-8 on any usual system), against which the handler resolves
    /// relative paths in its options. A 1.3 host calls it instead of `create` when it is not
    /// null; an older host calls `create`, so a handler that has it keeps `create` as well.
    pub create_in: Option<
        unsafe extern "C" fn(
            options: Bytes,
            config_dir: Bytes,
            error_ctx: *mut c_void,
            error: ErrorFn,
        ) -> *mut c_void,
    >,
}

/// The host's side of one session event (ABI 1.1). `ctx` and `server` are valid during the call
/// only, on the event loop's thread; the waker may be used from any thread until released.
#[repr(C)]
#[derive(Debug)]
pub struct SessionIo {
    /// `size_of::<SessionIo>()` as the host was built.
    pub size: usize,
    pub peer: Bytes,
    pub local: Bytes,
    pub server_name: Bytes,
    pub ctx: *mut c_void,
    /// Queue bytes for the peer.
    pub write: unsafe extern "C" fn(ctx: *mut c_void, data: Bytes),
    /// Close the connection once its output is written.
    pub close: unsafe extern "C" fn(ctx: *mut c_void),
    /// Bytes queued and not yet on the wire.
    pub pending: unsafe extern "C" fn(ctx: *mut c_void) -> usize,
    /// Say why an event failed, before returning `STATUS_ERROR` or `STATUS_PANIC`.
    pub fail: unsafe extern "C" fn(ctx: *mut c_void, message: Bytes),
    pub server: *const c_void,
    pub log: unsafe extern "C" fn(server: *const c_void, level: u32, message: Bytes),
    pub shutdown_server: unsafe extern "C" fn(server: *const c_void),
    /// At `session_open` only (null otherwise): the session's waker.
    pub waker: *const c_void,
    pub wake: unsafe extern "C" fn(waker: *const c_void),
    pub release_waker: unsafe extern "C" fn(waker: *const c_void),

    // --- ABI 1.2. A plugin reads it only when `size` covers it.
    /// At `session_open` only, on a TLS connection: its parameters and peer identity; null
    /// otherwise (no TLS, an event other than open, or a host older than 1.2).
    pub tls: *const TlsPeer,
}

/// A TLS connection's parameters and peer identity (ABI 1.2), the C form of
/// [`TlsInfo`](crate::TlsInfo): each field UTF-8 text (the DER certificate excepted), valid during
/// the call; an empty field means "none" (an ALPN protocol, an SNI name, a subject and a
/// certificate are never empty when present).
#[repr(C)]
#[derive(Debug)]
pub struct TlsPeer {
    /// `size_of::<TlsPeer>()` as the host was built: fields are only ever appended.
    pub size: usize,
    pub version: Bytes,
    pub cipher_suite: Bytes,
    pub alpn: Bytes,
    pub server_name: Bytes,
    pub client_subject: Bytes,
    pub client_common_name: Bytes,
    pub client_cert_der: Bytes,
}

impl TlsPeer {
    /// The C form of `info`, borrowing its fields: keep `info` alive while this is used.
    pub fn of(info: &crate::TlsInfo) -> TlsPeer {
        let text = |value: &Option<String>| Bytes::of(value.as_deref().unwrap_or("").as_bytes());
        let bytes = |value: &Option<Vec<u8>>| Bytes::of(value.as_deref().unwrap_or(&[]));
        TlsPeer {
            size: std::mem::size_of::<TlsPeer>(),
            version: Bytes::of(info.version.as_bytes()),
            cipher_suite: Bytes::of(info.cipher_suite.as_bytes()),
            alpn: bytes(&info.alpn),
            server_name: text(&info.server_name),
            client_subject: text(&info.client_subject),
            client_common_name: text(&info.client_common_name),
            client_cert_der: bytes(&info.client_cert_der),
        }
    }
}

/// The host's side of one request. Each of `reader`, `writer` and `ctx` may be used from one thread
/// at a time, and `reader` and `writer` from two different threads at once. The `ctx` callbacks are
/// thread-safe.
#[repr(C)]
#[derive(Debug)]
pub struct HostIo {
    /// `size_of::<HostIo>()` as the host was built.
    pub size: usize,
    /// 0: a connection; 1: a datagram.
    pub kind: u32,
    /// Peer and local address, and the server's name, as UTF-8 text, valid during the call.
    pub peer: Bytes,
    pub local: Bytes,
    pub server_name: Bytes,
    pub reader: *mut c_void,
    /// Read up to `len` bytes into `buf`: the count, 0 at end of input, or a negated errno. A `len`
    /// of 0 reads nothing and returns 0, whatever `buf` is (null included); a null `buf` with a
    /// length returns `-EINVAL`.
    pub read: unsafe extern "C" fn(reader: *mut c_void, buf: *mut u8, len: usize) -> isize,
    pub writer: *mut c_void,
    /// Write up to `len` bytes from `buf`: the count written, or a negated errno. A `len` of 0
    /// writes nothing and returns 0, whatever `buf` is; a null `buf` with a length returns
    /// `-EINVAL`.
    pub write: unsafe extern "C" fn(writer: *mut c_void, buf: *const u8, len: usize) -> isize,
    pub ctx: *const c_void,
    /// Log a line under the server's name.
    pub log: unsafe extern "C" fn(ctx: *const c_void, level: u32, message: Bytes),
    /// Say why the request failed, before returning `STATUS_ERROR` or `STATUS_PANIC`.
    pub fail: unsafe extern "C" fn(ctx: *const c_void, message: Bytes),
    /// Ask the server to shut down.
    pub shutdown_server: unsafe extern "C" fn(ctx: *const c_void),
    /// Shut the connection down (0 read, 1 write, 2 both); 0 or a negated errno.
    pub shutdown_connection: unsafe extern "C" fn(ctx: *const c_void, how: u32) -> i32,

    // --- ABI 1.2. A plugin reads it only when `size` covers it.
    /// On a TLS connection: its parameters and peer identity, valid during the call; null
    /// otherwise (no TLS, a datagram, or a host older than 1.2).
    pub tls: *const TlsPeer,
}
