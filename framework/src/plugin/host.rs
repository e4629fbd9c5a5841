//! The host side of a plugin request: a factory per configured server holding the plugin's instance,
//! and a `RequestHandler` that lends the request's reader, writer and context to the plugin through
//! the ABI's callbacks. A plugin panic comes back as a status and is re-raised here as a panic payload,
//! so it is reported exactly like a built-in handler's panic.

use std::ffi::c_void;
use std::io::{self, BufRead, Read, Write};
use std::net::Shutdown as Direction;
use std::panic::resume_unwind;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use sockserv_plugin::abi::{
    Bytes, CreateFn, CreateInFn, DestroyFn, HandleFn, HostIo, TlsPeer, STATUS_OK, STATUS_PANIC,
};
use sockserv_plugin::abi::{SessionCloseFn, SessionEventFn, SessionOpenFn};
use sockserv_plugin::{
    HandlerError, HandlerFactory, HandlerResult, LogLevel, Request, RequestControl, RequestHandler,
    RequestKind, ServerContext, Session, SessionInfo,
};

use super::PanicPolicy;

/// A handler's functions, checked when its plugin was loaded: the four 1.0 entries are never null,
/// and the 1.1 session entries are there as a set or not at all. They belong to a library that is
/// never unloaded, and the ABI lets any thread call them.
#[derive(Debug, Clone, Copy)]
pub(super) struct Entries {
    pub create: CreateFn,
    /// ABI 1.3's `create_in`, called instead of `create` when the handler has it.
    pub create_in: Option<CreateInFn>,
    pub handle_stream: HandleFn,
    pub handle_datagram: HandleFn,
    pub destroy: DestroyFn,
    /// `None`: the handler has no event-driven sessions (or its table predates them).
    pub sessions: Option<SessionEntries>,
}

/// ABI 1.1's session entries of a handler that has all three.
#[derive(Debug, Clone, Copy)]
pub(super) struct SessionEntries {
    pub open: SessionOpenFn,
    pub event: SessionEventFn,
    pub close: SessionCloseFn,
}

/// One server's instance of a plugin handler.
pub(super) struct PluginFactory {
    inner: Arc<Instance>,
}

pub(super) struct Instance {
    pub entries: Entries,
    pub handler: String,
    pub pointer: *mut c_void,
    policy: PanicPolicy,
    panics: AtomicUsize,
}

impl Instance {
    /// Count a panic; true once the policy says the handler is disabled.
    pub fn panicked(&self) {
        self.panics.fetch_add(1, Ordering::Relaxed);
    }

    /// Why the handler is refusing requests, if the panic policy disabled it.
    pub fn disabled(&self) -> Option<String> {
        let limit = self.policy.disable_after?;
        (self.panics.load(Ordering::Relaxed) >= limit)
            .then(|| format!("handler {} disabled after {limit} panics", self.handler))
    }
}

// SAFETY: the ABI requires a plugin instance to be usable from any thread and by concurrent requests
// (`handle_stream` takes it as `*const`); the pointer itself is only passed back to the plugin.
unsafe impl Send for Instance {}
// SAFETY: as above.
unsafe impl Sync for Instance {}

impl Drop for Instance {
    fn drop(&mut self) {
        // SAFETY: made by this handler's `create`, destroyed once, after every request let go of it.
        unsafe { (self.entries.destroy)(self.pointer) }
    }
}

/// Create the plugin's instance from the server's options table (passed as JSON) and the folder
/// of the config file (for a handler with ABI 1.3's `create_in`).
pub(super) fn create(
    entries: Entries,
    handler: &str,
    options: &toml::Table,
    config_dir: &std::path::Path,
    policy: PanicPolicy,
) -> Result<PluginFactory, String> {
    use std::os::unix::ffi::OsStrExt;
    let json = serde_json::to_vec(options).map_err(|err| format!("options as JSON: {err}"))?;
    let mut error: Option<String> = None;
    let error_ctx = (&mut error as *mut Option<String>).cast();
    let dir = Bytes::of(config_dir.as_os_str().as_bytes());
    // SAFETY: `json` and `config_dir` live for the call; `error` outlives it and `record_error`
    // only writes there.
    let pointer = unsafe {
        match entries.create_in {
            Some(create_in) => create_in(Bytes::of(&json), dir, error_ctx, record_error),
            None => (entries.create)(Bytes::of(&json), error_ctx, record_error),
        }
    };
    if pointer.is_null() {
        return Err(error.unwrap_or_else(|| "the plugin refused its options".into()));
    }
    let inner = Instance {
        entries,
        handler: handler.to_string(),
        pointer,
        policy,
        panics: AtomicUsize::new(0),
    };
    Ok(PluginFactory {
        inner: Arc::new(inner),
    })
}

/// `create`'s error callback: keep the plugin's message.
unsafe extern "C" fn record_error(ctx: *mut c_void, message: Bytes) {
    // SAFETY: `ctx` is the `Option<String>` passed by `create`, alive for the call.
    let slot = unsafe { &mut *ctx.cast::<Option<String>>() };
    // SAFETY: the plugin's message is valid for the call.
    *slot = Some(unsafe { text(message) });
}

impl HandlerFactory for PluginFactory {
    fn new_handler(&self) -> Box<dyn RequestHandler> {
        Box::new(PluginRequest {
            instance: Arc::clone(&self.inner),
        })
    }

    fn new_session(&self, info: &SessionInfo<'_>) -> Option<Box<dyn Session>> {
        super::session::open(&self.inner, info)
    }
}

struct PluginRequest {
    instance: Arc<Instance>,
}

impl RequestHandler for PluginRequest {
    fn handle(&mut self, req: &mut Request<'_>) -> HandlerResult {
        let instance = &self.instance;
        if let Some(message) = instance.disabled() {
            return Err(HandlerError::Protocol(message));
        }
        let (status, failure, io_error) = call(&instance.entries, instance.pointer, req);
        match status {
            STATUS_OK => Ok(()),
            // A plugin that failed after its read or write did fails with that I/O error, as a
            // built-in would: a reset or a time limit (idle_timeout, ...) is then reported as the
            // peer's doing, with its reason, not as an error of the plugin's.
            _ if status != STATUS_PANIC && io_error.is_some() => {
                Err(HandlerError::Io(io_error.expect("checked")))
            }
            STATUS_PANIC => {
                instance.panicked();
                resume_unwind(Box::new(
                    failure.unwrap_or_else(|| "plugin panicked".into()),
                ))
            }
            _ => {
                Err(HandlerError::Protocol(failure.unwrap_or_else(|| {
                    format!("plugin returned status {status}")
                })))
            }
        }
    }
}

/// What the `ctx` callbacks reach: the server, the connection control and the failure message.
struct Context<'a> {
    server: &'a dyn ServerContext,
    control: &'a dyn RequestControl,
    failure: Mutex<Option<String>>,
}

/// One side of the connection lent to the plugin: a pointer to the request's reader (or writer),
/// and the last I/O error the plugin's calls met there.
struct Side {
    inner: *mut (),
    error: Option<io::Error>,
}

/// Lend the request to the plugin for one call; returns its status, its failure message and the
/// last I/O error its reads or writes met.
fn call(
    entries: &Entries,
    instance: *mut c_void,
    req: &mut Request<'_>,
) -> (i32, Option<String>, Option<io::Error>) {
    let peer = req.peer.to_string();
    let local = req.local.to_string();
    let context = Context {
        server: req.server,
        control: req.control,
        failure: Mutex::new(None),
    };
    let tls_peer = req.tls.map(TlsPeer::of);
    let mut reader: &mut (dyn BufRead + Send) = &mut *req.rfile;
    let mut writer: &mut (dyn Write + Send) = &mut *req.wfile;
    let mut read_side = Side {
        inner: (&mut reader as *mut &mut (dyn BufRead + Send)).cast::<()>(),
        error: None,
    };
    let mut write_side = Side {
        inner: (&mut writer as *mut &mut (dyn Write + Send)).cast::<()>(),
        error: None,
    };
    let io = HostIo {
        size: std::mem::size_of::<HostIo>(),
        kind: u32::from(req.kind == RequestKind::Datagram),
        peer: Bytes::of(peer.as_bytes()),
        local: Bytes::of(local.as_bytes()),
        server_name: Bytes::of(req.server.server_name().as_bytes()),
        reader: (&mut read_side as *mut Side).cast(),
        read: host_read,
        writer: (&mut write_side as *mut Side).cast(),
        write: host_write,
        ctx: (&context as *const Context<'_>).cast(),
        log: host_log,
        fail: host_fail,
        shutdown_server: host_shutdown_server,
        shutdown_connection: host_shutdown_connection,
        tls: tls_peer
            .as_ref()
            .map_or(std::ptr::null(), |peer| peer as *const TlsPeer),
    };
    let handle = match req.kind {
        RequestKind::Stream => entries.handle_stream,
        RequestKind::Datagram => entries.handle_datagram,
    };
    // SAFETY: `instance` came from this handler's `create`; `io` and everything it points at live until
    // the call returns, and the callbacks below honour HostIo's threading contract.
    let status = unsafe { handle(instance, &io) };
    let failure = context.failure.lock().map(|mut f| f.take()).unwrap_or(None);
    let io_error = read_side.error.or(write_side.error);
    (status, failure, io_error)
}

/// The negative errno a callback returns for `err`; an error the system did not make (a time
/// limit's) by its kind.
fn errno(err: &io::Error) -> isize {
    let code = err.raw_os_error().unwrap_or(match err.kind() {
        io::ErrorKind::TimedOut => libc::ETIMEDOUT,
        io::ErrorKind::BrokenPipe => libc::EPIPE,
        io::ErrorKind::ConnectionReset => libc::ECONNRESET,
        _ => libc::EIO,
    });
    -(code as isize)
}

/// What the read and write callbacks return for a buffer that cannot be one: null with a length,
/// or longer than any slice (`-EINVAL`).
const BAD_BUFFER: isize = -(libc::EINVAL as isize);

/// The plugin's read callback. Like read(2), a length of 0 reads nothing and returns 0, whatever
/// the pointer (null included).
///
/// # Safety
///
/// `reader` is the one `call` lent; a non-null `buf` is writable for `len` bytes.
unsafe extern "C" fn host_read(reader: *mut c_void, buf: *mut u8, len: usize) -> isize {
    if len == 0 {
        return 0;
    }
    if buf.is_null() || len > isize::MAX as usize {
        return BAD_BUFFER;
    }
    // SAFETY: `reader` is `call`'s read side (whose `inner` is its reader), used by one plugin
    // thread at a time; `buf` is the plugin's writable buffer of `len` bytes, checked non-null and
    // short enough for a slice.
    let (side, buf) = unsafe {
        (
            &mut *reader.cast::<Side>(),
            std::slice::from_raw_parts_mut(buf, len),
        )
    };
    // SAFETY: as above: `inner` points at `call`'s `&mut dyn BufRead`, alive during the call.
    let reader = unsafe { &mut *side.inner.cast::<&mut (dyn BufRead + Send)>() };
    loop {
        match reader.read(buf) {
            Ok(n) => return n as isize,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => {
                let code = errno(&err);
                side.error = Some(err);
                return code;
            }
        }
    }
}

/// The plugin's write callback. A length of 0 writes nothing and returns 0, whatever the pointer.
///
/// # Safety
///
/// `writer` is the one `call` lent; a non-null `buf` is readable for `len` bytes.
unsafe extern "C" fn host_write(writer: *mut c_void, buf: *const u8, len: usize) -> isize {
    if len == 0 {
        return 0;
    }
    if buf.is_null() || len > isize::MAX as usize {
        return BAD_BUFFER;
    }
    // SAFETY: `writer` is `call`'s write side (whose `inner` is its writer), used by one plugin
    // thread at a time; `buf` holds `len` bytes, checked non-null and short enough for a slice.
    let (side, buf) = unsafe {
        (
            &mut *writer.cast::<Side>(),
            std::slice::from_raw_parts(buf, len),
        )
    };
    // SAFETY: as above: `inner` points at `call`'s `&mut dyn Write`, alive during the call.
    let writer = unsafe { &mut *side.inner.cast::<&mut (dyn Write + Send)>() };
    loop {
        match writer.write(buf) {
            Ok(n) => return n as isize,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => {
                let code = errno(&err);
                side.error = Some(err);
                return code;
            }
        }
    }
}

/// # Safety
/// `ctx` is `call`'s context, alive during the call; its parts are all `Sync`.
unsafe fn context<'a>(ctx: *const c_void) -> &'a Context<'a> {
    // SAFETY: the caller's promise.
    unsafe { &*ctx.cast::<Context<'a>>() }
}

unsafe extern "C" fn host_log(ctx: *const c_void, level: u32, message: Bytes) {
    // SAFETY: see `context`.
    let context = unsafe { context(ctx) };
    // SAFETY: the plugin's message is valid for the call.
    let message = unsafe { text(message) };
    context.server.log(LogLevel::from_number(level), &message);
}

unsafe extern "C" fn host_fail(ctx: *const c_void, message: Bytes) {
    // SAFETY: see `context`.
    let context = unsafe { context(ctx) };
    // SAFETY: the plugin's message is valid for the call.
    let message = unsafe { text(message) };
    if let Ok(mut failure) = context.failure.lock() {
        *failure = Some(message);
    }
}

unsafe extern "C" fn host_shutdown_server(ctx: *const c_void) {
    // SAFETY: see `context`.
    unsafe { context(ctx) }.server.shutdown();
}

unsafe extern "C" fn host_shutdown_connection(ctx: *const c_void, how: u32) -> i32 {
    let how = match how {
        0 => Direction::Read,
        1 => Direction::Write,
        _ => Direction::Both,
    };
    // SAFETY: see `context`.
    match unsafe { context(ctx) }.control.shutdown(how) {
        Ok(()) => 0,
        Err(err) => errno(&err) as i32,
    }
}

/// Text a plugin passed for the duration of a call; empty when null (like a length of 0).
///
/// # Safety
///
/// A non-null `message.ptr` points at `message.len` readable bytes.
pub(super) unsafe fn text(message: Bytes) -> String {
    if message.len == 0 || message.ptr.is_null() || message.len > isize::MAX as usize {
        return String::new();
    }
    // SAFETY: the caller's promise; non-null and short enough for a slice.
    let bytes = unsafe { std::slice::from_raw_parts(message.ptr, message.len) };
    String::from_utf8_lossy(bytes).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_and_write_take_null_with_length_0_and_refuse_it_with_a_length() {
        let mut input: &[u8] = b"abc";
        let mut reader: &mut (dyn BufRead + Send) = &mut input;
        let mut read_side = Side {
            inner: (&mut reader as *mut &mut (dyn BufRead + Send)).cast(),
            error: None,
        };
        let reader: *mut c_void = (&mut read_side as *mut Side).cast();
        let mut output = Vec::new();
        let mut writer: &mut (dyn Write + Send) = &mut output;
        let mut write_side = Side {
            inner: (&mut writer as *mut &mut (dyn Write + Send)).cast(),
            error: None,
        };
        let writer: *mut c_void = (&mut write_side as *mut Side).cast();
        let mut buf = [0u8; 8];
        // SAFETY: the reader and writer are the shape `call` lends; buffers are null or ours.
        unsafe {
            assert_eq!(host_read(reader, std::ptr::null_mut(), 0), 0);
            assert_eq!(host_read(reader, std::ptr::null_mut(), 8), BAD_BUFFER);
            assert_eq!(host_write(writer, std::ptr::null(), 0), 0);
            assert_eq!(host_write(writer, std::ptr::null(), 8), BAD_BUFFER);
            // Nothing was consumed or written by those; a real buffer still works.
            assert_eq!(host_read(reader, buf.as_mut_ptr(), buf.len()), 3);
            assert_eq!(host_write(writer, buf.as_ptr(), 3), 3);
        }
        assert!(read_side.error.is_none() && write_side.error.is_none());
        assert_eq!(output, b"abc");
    }
}
