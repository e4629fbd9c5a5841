//! The plugin side of the ABI: generic `extern "C"` functions that turn a [`PluginHandler`] into a
//! [`HandlerTable`], and the adapters that present the host's callbacks as the same [`Request`] the
//! built-in handlers get. Panics are caught here, at the boundary, and reported as `STATUS_PANIC`.
//!
//! Every `unsafe` block of the SDK is in this file; each relies on the host keeping the promises
//! written on [`HostIo`].

#![allow(unsafe_code)]

use std::ffi::c_void;
use std::io::{self, BufReader, Read, Write};
use std::net::Shutdown;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use super::{Bytes, ErrorFn, HandlerTable, HostIo, PluginTable, SessionIo, TlsPeer};
use super::{ABI_MAGIC, ABI_MAJOR, ABI_MINOR};
use super::{STATUS_ERROR, STATUS_OK, STATUS_PANIC};
use crate::{
    Address, HandlerResult, LogLevel, PluginHandler, Request, RequestControl, RequestKind,
    ServerContext,
};

// The ABI's tables are plain data — addresses, lengths, numbers and function pointers — so a
// `static` of them needs no wrapper. Raw pointers are not `Sync` by default only so that a type which
// reads through them in safe code does not become `Sync` by accident; these types do no such thing.
//
// SAFETY: a `Bytes` is an address and a length. Reading them from several threads at once is
// harmless (no interior mutability), and every read of the bytes behind them is `unsafe` code that
// answers for itself. (`HandlerTable` holds `Bytes`, numbers and function pointers, and so is `Sync`
// without an impl of its own.)
unsafe impl Sync for Bytes {}
// SAFETY: as for `Bytes`: addresses, lengths and numbers, no interior mutability, and no safe method
// reads through `name`, `version` or `handlers`.
unsafe impl Sync for PluginTable {}

/// A transparent wrapper, kept so that hand-written tables that used it keep building. It adds
/// nothing: `StaticTable<T>` is `Sync` exactly when `T` is, and the ABI's tables are, so a plain
/// `static TABLE: PluginTable = ...;` does as well. It cannot make a value that is not `Sync` shared:
///
/// ```compile_fail
/// use std::cell::Cell;
/// use sockserv_plugin::abi::StaticTable;
///
/// static SHARED: StaticTable<Cell<u32>> = StaticTable(Cell::new(0));
/// ```
///
/// ```
/// use sockserv_plugin::abi::{plugin_table, PluginTable, StaticTable};
///
/// static PLAIN: PluginTable = plugin_table("p", "1.0.0", &[]);
/// static WRAPPED: StaticTable<PluginTable> = StaticTable(plugin_table("p", "1.0.0", &[]));
/// ```
#[repr(transparent)]
pub struct StaticTable<T>(pub T);

/// The read buffer a plugin's `rfile` gets: the host's size, so a connection holds no more for being a
/// plugin's (std zero-fills it on first use).
const RFILE_CAPACITY: usize = 16 * 1024;

/// The table for one plugin, from its name, version and handler tables.
pub const fn plugin_table(
    name: &'static str,
    version: &'static str,
    handlers: &'static [HandlerTable],
) -> PluginTable {
    PluginTable {
        magic: ABI_MAGIC,
        abi_major: ABI_MAJOR,
        abi_minor: ABI_MINOR,
        size: std::mem::size_of::<PluginTable>(),
        name: Bytes::from_static(name),
        version: Bytes::from_static(version),
        handlers: handlers.as_ptr(),
        handler_count: handlers.len(),
    }
}

/// The table for one handler type.
pub const fn handler_table<H: PluginHandler>() -> HandlerTable {
    HandlerTable {
        size: std::mem::size_of::<HandlerTable>(),
        name: Bytes::from_static(H::NAME),
        summary: Bytes::from_static(H::SUMMARY),
        socket_kinds: H::SOCKET_KINDS,
        strategies: H::STRATEGIES,
        create: Some(create::<H>),
        handle_stream: Some(handle_stream::<H>),
        handle_datagram: Some(handle_datagram::<H>),
        destroy: Some(destroy::<H>),
        session_open: Some(super::session_glue::session_open::<H>),
        session_event: Some(super::session_glue::session_event),
        session_close: Some(super::session_glue::session_close),
        create_in: Some(create_in::<H>),
    }
}

/// The instance behind the host's pointer: the handler's parsed options, shared by its requests.
pub(super) type Instance<H> = Arc<<H as PluginHandler>::Options>;

/// # Safety
/// `options` points at `len` readable bytes; `error` may be called with `error_ctx`.
unsafe extern "C" fn create<H: PluginHandler>(
    options: Bytes,
    error_ctx: *mut c_void,
    error: ErrorFn,
) -> *mut c_void {
    // SAFETY: the host passes its own buffer of `len` bytes, alive for this call.
    let json = unsafe { bytes(options) };
    let parsed = catch_unwind(|| H::options(options_text(json)?));
    // SAFETY: the host's promise, passed on.
    unsafe { created::<H>(parsed, error_ctx, error) }
}

/// # Safety
/// `options` and `config_dir` point at their lengths of readable bytes; `error` may be called with
/// `error_ctx`.
unsafe extern "C" fn create_in<H: PluginHandler>(
    options: Bytes,
    config_dir: Bytes,
    error_ctx: *mut c_void,
    error: ErrorFn,
) -> *mut c_void {
    // SAFETY: the host passes its own buffers, alive for this call.
    let (json, dir) = unsafe { (bytes(options), bytes(config_dir)) };
    let parsed = catch_unwind(|| {
        use std::os::unix::ffi::OsStrExt;
        let dir = std::path::Path::new(std::ffi::OsStr::from_bytes(dir));
        H::options_in(options_text(json)?, dir)
    });
    // SAFETY: the host's promise, passed on.
    unsafe { created::<H>(parsed, error_ctx, error) }
}

fn options_text(json: &[u8]) -> Result<&str, String> {
    std::str::from_utf8(json).map_err(|err| format!("options are not UTF-8: {err}"))
}

/// The instance made from parsed options, or null after passing the reason to `error`.
///
/// # Safety
/// `error` may be called with `error_ctx`.
unsafe fn created<H: PluginHandler>(
    parsed: std::thread::Result<Result<H::Options, String>>,
    error_ctx: *mut c_void,
    error: ErrorFn,
) -> *mut c_void {
    match parsed {
        Ok(Ok(options)) => Box::into_raw(Box::new(Arc::new(options) as Instance<H>)).cast(),
        Ok(Err(message)) => {
            // SAFETY: the host's error callback takes a message valid for the call.
            unsafe { error(error_ctx, Bytes::of(message.as_bytes())) };
            std::ptr::null_mut()
        }
        Err(payload) => {
            let message = format!("creating the handler panicked: {}", panic_text(&*payload));
            // SAFETY: as above.
            unsafe { error(error_ctx, Bytes::of(message.as_bytes())) };
            std::ptr::null_mut()
        }
    }
}

/// # Safety
/// `instance` came from `create::<H>` and was not destroyed.
unsafe extern "C" fn destroy<H: PluginHandler>(instance: *mut c_void) {
    if !instance.is_null() {
        // SAFETY: made by Box::into_raw in `create::<H>`, destroyed once by the host.
        drop(unsafe { Box::from_raw(instance.cast::<Instance<H>>()) });
    }
}

/// # Safety
/// `instance` came from `create::<H>`; `io` points at a valid `HostIo` for the whole call.
unsafe extern "C" fn handle_stream<H: PluginHandler>(
    instance: *const c_void,
    io: *const HostIo,
) -> i32 {
    // SAFETY: the host keeps both alive and unchanged during the call.
    let (options, io) = unsafe { (&*instance.cast::<Instance<H>>(), &*io) };
    let mut rfile = BufReader::with_capacity(RFILE_CAPACITY, HostReader(io));
    serve::<H>(options, io, RequestKind::Stream, &mut rfile, None)
}

/// # Safety
/// As for `handle_stream`.
unsafe extern "C" fn handle_datagram<H: PluginHandler>(
    instance: *const c_void,
    io: *const HostIo,
) -> i32 {
    // SAFETY: as in handle_stream.
    let (options, io) = unsafe { (&*instance.cast::<Instance<H>>(), &*io) };
    let mut packet = Vec::new();
    if let Err(err) = HostReader(io).read_to_end(&mut packet) {
        return fail(
            io,
            STATUS_ERROR,
            &format!("cannot read the datagram: {err}"),
        );
    }
    let mut rfile = packet.as_slice();
    serve::<H>(
        options,
        io,
        RequestKind::Datagram,
        &mut rfile,
        Some(&packet),
    )
}

/// setup, handle, finish (finish even after a failed or panicking handle), with panics caught.
fn serve<H: PluginHandler>(
    options: &Instance<H>,
    io: &HostIo,
    kind: RequestKind,
    rfile: &mut (dyn io::BufRead + Send),
    packet: Option<&[u8]>,
) -> i32 {
    let context = HostContext::new(io);
    let peer = parse_address(&text(io.peer));
    let local = parse_address(&text(io.local));
    let mut wfile = HostWriter(io);
    let covers =
        io.size >= std::mem::offset_of!(HostIo, tls) + std::mem::size_of::<*const TlsPeer>();
    // SAFETY: read only when the host's table has the field; the host keeps it valid for the call.
    let tls = if covers {
        unsafe { tls_info(io.tls) }
    } else {
        None
    };
    let mut req = Request {
        kind,
        rfile,
        wfile: &mut wfile,
        peer: &peer,
        local: &local,
        packet,
        server: &context,
        control: &context,
        tls: tls.as_ref(),
    };
    let outcome = catch_unwind(AssertUnwindSafe(|| run_hooks::<H>(options, &mut req)));
    match outcome {
        Ok(Ok(())) => STATUS_OK,
        Ok(Err(message)) => fail(io, STATUS_ERROR, &message),
        Err(payload) => fail(io, STATUS_PANIC, &panic_text(&*payload)),
    }
}

fn run_hooks<H: PluginHandler>(options: &Instance<H>, req: &mut Request<'_>) -> Result<(), String> {
    let mut handler = H::new(options);
    handler
        .setup(req)
        .map_err(|err| format!("setup failed: {err}"))?;
    let handled = catch_unwind(AssertUnwindSafe(|| handler.handle(req)));
    let finished: HandlerResult = handler.finish(req);
    match handled {
        Ok(result) => result.map_err(|err| format!("handle failed: {err}"))?,
        Err(payload) => std::panic::resume_unwind(payload),
    }
    finished.map_err(|err| format!("finish failed: {err}"))
}

fn fail(io: &HostIo, status: i32, message: &str) -> i32 {
    // SAFETY: the host's callback takes a message valid for the call.
    unsafe { (io.fail)(io.ctx, Bytes::of(message.as_bytes())) };
    status
}

/// The text of a panic payload.
pub(super) fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    match (
        payload.downcast_ref::<&str>(),
        payload.downcast_ref::<String>(),
    ) {
        (Some(text), _) => (*text).to_string(),
        (_, Some(text)) => text.clone(),
        _ => "non-string panic payload".to_string(),
    }
}

/// # Safety
/// `bytes` points at `len` readable bytes for the lifetime the caller picks.
pub(super) unsafe fn bytes<'a>(bytes: Bytes) -> &'a [u8] {
    if bytes.len == 0 {
        return &[];
    }
    // SAFETY: the caller's promise.
    unsafe { std::slice::from_raw_parts(bytes.ptr, bytes.len) }
}

/// The [`TlsInfo`](crate::TlsInfo) behind a host's [`TlsPeer`]; `None` for a null pointer.
///
/// # Safety
/// `peer` is null or points at a `TlsPeer` (of at least its `size`) whose bytes are valid for the
/// call.
pub(super) unsafe fn tls_info(peer: *const TlsPeer) -> Option<crate::TlsInfo> {
    if peer.is_null() {
        return None;
    }
    // SAFETY: the caller's promise.
    let peer = unsafe { &*peer };
    if peer.size < std::mem::size_of::<TlsPeer>() {
        return None;
    }
    let present = |value: Bytes| (value.len > 0).then(|| text(value));
    // SAFETY: as above, each field is valid for the call.
    let der =
        (peer.client_cert_der.len > 0).then(|| unsafe { bytes(peer.client_cert_der) }.to_vec());
    let alpn = (peer.alpn.len > 0).then(|| unsafe { bytes(peer.alpn) }.to_vec());
    Some(crate::TlsInfo {
        version: text(peer.version),
        cipher_suite: text(peer.cipher_suite),
        alpn,
        server_name: present(peer.server_name),
        client_subject: present(peer.client_subject),
        client_common_name: present(peer.client_common_name),
        client_cert_der: der,
    })
}

/// The text of host-provided bytes (replacing invalid UTF-8, which a correct host never sends).
pub(super) fn text(value: Bytes) -> String {
    // SAFETY: HostIo's address and name fields are valid during the call.
    String::from_utf8_lossy(unsafe { bytes(value) }).into_owned()
}

/// An address as the host printed it: `ip:port`, a Unix path, or `unix:unnamed`.
pub(super) fn parse_address(text: &str) -> Address {
    match text.parse() {
        Ok(inet) => Address::Inet(inet),
        Err(_) if text == "unix:unnamed" || text.is_empty() => Address::UnixUnnamed,
        Err(_) => Address::Unix(text.into()),
    }
}

fn errno_error(result: isize) -> io::Error {
    io::Error::from_raw_os_error(i32::try_from(-result).unwrap_or(libc_eio()))
}

/// EIO, for a host error code that does not fit.
const fn libc_eio() -> i32 {
    5
}

/// `rfile` over the host's read callback.
struct HostReader<'a>(&'a HostIo);

impl Read for HostReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // SAFETY: `buf` is ours and writable for `len` bytes; the reader context is valid.
        let n = unsafe { (self.0.read)(self.0.reader, buf.as_mut_ptr(), buf.len()) };
        usize::try_from(n).map_err(|_| errno_error(n))
    }
}

/// `wfile` over the host's write callback.
struct HostWriter<'a>(&'a HostIo);

impl Write for HostWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // SAFETY: `buf` is readable for `len` bytes; the writer context is valid.
        let n = unsafe { (self.0.write)(self.0.writer, buf.as_ptr(), buf.len()) };
        usize::try_from(n).map_err(|_| errno_error(n))
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

// SAFETY: the host promises (HostIo's doc) that the reader and the writer may each be used from
// another thread, one thread at a time — which is what `&mut` access through these types gives.
unsafe impl Send for HostReader<'_> {}
// SAFETY: as above.
unsafe impl Send for HostWriter<'_> {}

/// The server context and connection control over the host's thread-safe `ctx` callbacks.
struct HostContext<'a> {
    io: &'a HostIo,
    server_name: String,
}

impl<'a> HostContext<'a> {
    fn new(io: &'a HostIo) -> Self {
        HostContext {
            io,
            server_name: text(io.server_name),
        }
    }
}

// SAFETY: the `ctx` callbacks (log, fail, shutdown_server, shutdown_connection) are thread-safe by
// the ABI's contract.
unsafe impl Sync for HostContext<'_> {}
// SAFETY: as above.
unsafe impl Send for HostContext<'_> {}

impl ServerContext for HostContext<'_> {
    fn server_name(&self) -> &str {
        &self.server_name
    }

    fn shutdown(&self) {
        // SAFETY: ctx is valid during the request.
        unsafe { (self.io.shutdown_server)(self.io.ctx) }
    }

    fn log(&self, level: LogLevel, message: &str) {
        // SAFETY: ctx is valid during the request; the message is valid for the call.
        unsafe { (self.io.log)(self.io.ctx, level as u32, Bytes::of(message.as_bytes())) }
    }
}

impl RequestControl for HostContext<'_> {
    fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        let how = match how {
            Shutdown::Read => 0,
            Shutdown::Write => 1,
            Shutdown::Both => 2,
        };
        // SAFETY: ctx is valid during the request.
        let result = unsafe { (self.io.shutdown_connection)(self.io.ctx, how) };
        if result == 0 {
            Ok(())
        } else {
            Err(errno_error(result as isize))
        }
    }
}

/// The server context of a session event: the host's thread-safe `server` callbacks.
pub(super) struct HostServer {
    server: *const c_void,
    name: String,
    log: unsafe extern "C" fn(*const c_void, u32, Bytes),
    shutdown: unsafe extern "C" fn(*const c_void),
}

impl HostServer {
    pub(super) fn for_session(io: &SessionIo) -> Self {
        HostServer {
            server: io.server,
            name: text(io.server_name),
            log: io.log,
            shutdown: io.shutdown_server,
        }
    }
}

// SAFETY: the `server` callbacks are thread-safe by the ABI's contract.
unsafe impl Send for HostServer {}
// SAFETY: as above.
unsafe impl Sync for HostServer {}

impl ServerContext for HostServer {
    fn server_name(&self) -> &str {
        &self.name
    }

    fn shutdown(&self) {
        // SAFETY: the server pointer is valid while the host's server lives, which outlasts sessions.
        unsafe { (self.shutdown)(self.server) }
    }

    fn log(&self, level: LogLevel, message: &str) {
        // SAFETY: as above; the message is valid for the call.
        unsafe { (self.log)(self.server, level as u32, Bytes::of(message.as_bytes())) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_are_sync_without_a_wrapper() {
        fn shared<T: Sync>() {}
        shared::<PluginTable>();
        shared::<HandlerTable>();
        shared::<Bytes>();
    }

    #[test]
    fn addresses_read_back_as_printed() {
        for address in [
            Address::Inet("127.0.0.1:5".parse().unwrap()),
            Address::Inet("[::1]:5".parse().unwrap()),
            Address::Unix("/tmp/a.sock".into()),
            Address::UnixUnnamed,
        ] {
            assert_eq!(parse_address(&address.to_string()), address);
        }
    }

    #[test]
    fn a_tls_peer_carries_the_info_across_and_back() {
        let info = crate::TlsInfo {
            version: "TLSv1.3".into(),
            cipher_suite: "TLS13_AES_128_GCM_SHA256".into(),
            alpn: Some(b"chat/1".to_vec()),
            server_name: Some("chat.example".into()),
            client_subject: Some("CN=alice, O=Example".into()),
            client_common_name: Some("alice".into()),
            client_cert_der: Some(vec![0x30, 0x82, 1, 2]),
        };
        let peer = TlsPeer::of(&info);
        // SAFETY: `peer` borrows `info`, alive for the call.
        assert_eq!(unsafe { tls_info(&peer) }, Some(info));
        let bare = crate::TlsInfo {
            version: "TLSv1.2".into(),
            ..crate::TlsInfo::default()
        };
        // SAFETY: as above.
        assert_eq!(unsafe { tls_info(&TlsPeer::of(&bare)) }, Some(bare));
        // SAFETY: null means no TLS.
        assert_eq!(unsafe { tls_info(std::ptr::null()) }, None);
    }
}
