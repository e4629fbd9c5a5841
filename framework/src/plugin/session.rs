//! The host side of ABI 1.1's event-driven sessions: a plugin handler's session under the reactor.
//! Each event lends the plugin the event's `SessionContext` through `SessionIo` callbacks; the
//! session's waker is handed over boxed, and the plugin releases it. A panic in the plugin closes
//! that connection, is logged with the peer, and counts toward the handler's panic policy.

use std::ffi::c_void;
use std::sync::{Arc, Mutex};

use sockserv_plugin::abi::{
    Bytes, SessionIo, TlsPeer, EVENT_DATA, EVENT_EOF, EVENT_OPEN, EVENT_WAKE,
};
use sockserv_plugin::abi::{STATUS_OK, STATUS_PANIC};
use sockserv_plugin::{
    LogLevel, ServerContext, Session, SessionContext, SessionInfo, SessionWaker,
};

use super::host::{text, Instance, SessionEntries};

/// Open the plugin's session for one connection; `None` when it has none (or refused to make one).
pub(super) fn open(instance: &Arc<Instance>, info: &SessionInfo<'_>) -> Option<Box<dyn Session>> {
    if let Some(message) = instance.disabled() {
        return Some(Box::new(Disabled(message)));
    }
    let entries = instance.entries.sessions?;
    let (peer, local) = (info.peer.to_string(), info.local.to_string());
    let server = Server(info.server);
    let waker: *const c_void = Box::into_raw(Box::new(Arc::clone(&info.waker))).cast();
    let mut unused = Vec::new();
    let mut ctx = SessionContext::new(&mut unused, info.peer, info.local, info.server);
    let failure = Mutex::new(None);
    let mut event = Event {
        ctx: &mut ctx,
        failure: &failure,
    };
    let mut io = session_io(&peer, &local, &server, &mut event, waker);
    let tls_peer = info.tls.map(TlsPeer::of);
    if let Some(tls_peer) = &tls_peer {
        io.tls = tls_peer;
    }
    // SAFETY: the instance came from this handler's `create`; `io` lives for the call; the plugin
    // owns the boxed waker from here on and releases it through `release_waker`.
    let session = unsafe { (entries.open)(instance.pointer, &io) };
    (!session.is_null()).then(|| {
        Box::new(PluginSession {
            instance: Arc::clone(instance),
            entries,
            session,
            peer,
            local,
        }) as Box<dyn Session>
    })
}

/// A session of a handler the panic policy disabled: it says so and closes.
struct Disabled(String);

impl Session for Disabled {
    fn on_open(&mut self, ctx: &mut SessionContext<'_>) {
        ctx.server
            .log(LogLevel::Error, &format!("{}: {}", ctx.peer, self.0));
        ctx.close();
    }

    fn on_data(&mut self, _data: &[u8], ctx: &mut SessionContext<'_>) {
        ctx.close();
    }
}

struct PluginSession {
    instance: Arc<Instance>,
    entries: SessionEntries,
    session: *mut c_void,
    peer: String,
    local: String,
}

// SAFETY: a session is used by one event loop thread at a time, as the ABI allows.
unsafe impl Send for PluginSession {}

impl PluginSession {
    fn event(&mut self, kind: u32, data: &[u8], ctx: &mut SessionContext<'_>) {
        let server = Server(ctx.server);
        let failure = Mutex::new(None);
        let peer = ctx.peer.clone();
        let status = {
            let mut event = Event {
                ctx,
                failure: &failure,
            };
            let io = session_io(
                &self.peer,
                &self.local,
                &server,
                &mut event,
                std::ptr::null(),
            );
            // SAFETY: the session is live (closed only in on_close); `io` and `data` live for the call.
            unsafe { (self.entries.event)(self.session, kind, Bytes::of(data), &io) }
        };
        if status == STATUS_PANIC {
            // Raised again on this side of the boundary, so the reactor contains it exactly as it
            // contains a built-in session's panic: reported through `handle_error` with the hook,
            // that connection closed at once, its session never called again.
            self.instance.panicked();
            let message = failure.into_inner().ok().flatten().unwrap_or_default();
            std::panic::resume_unwind(Box::new(message));
        }
        if status != STATUS_OK {
            let message = failure.into_inner().ok().flatten().unwrap_or_default();
            log::error!(
                "{}: request from {peer}: session failed: {message}",
                server.0.server_name()
            );
            ctx.close();
        }
    }
}

impl Session for PluginSession {
    fn on_open(&mut self, ctx: &mut SessionContext<'_>) {
        self.event(EVENT_OPEN, &[], ctx);
    }

    fn on_data(&mut self, data: &[u8], ctx: &mut SessionContext<'_>) {
        self.event(EVENT_DATA, data, ctx);
    }

    fn on_eof(&mut self, ctx: &mut SessionContext<'_>) {
        self.event(EVENT_EOF, &[], ctx);
    }

    fn on_wake(&mut self, ctx: &mut SessionContext<'_>) {
        self.event(EVENT_WAKE, &[], ctx);
    }

    fn on_close(&mut self) {
        if self.session.is_null() {
            return;
        }
        // SAFETY: the session is live (not null) and closed exactly once, here.
        unsafe { (self.entries.close)(self.session) };
        self.session = std::ptr::null_mut();
    }
}

impl Drop for PluginSession {
    fn drop(&mut self) {
        if !self.session.is_null() {
            self.on_close();
        }
    }
}

/// What the per-event callbacks reach.
struct Event<'e, 'c> {
    ctx: &'e mut SessionContext<'c>,
    failure: &'e Mutex<Option<String>>,
}

/// The server callbacks reach a `&dyn ServerContext` through this thin pointer.
struct Server<'s>(&'s dyn ServerContext);

fn session_io(
    peer: &str,
    local: &str,
    server: &Server<'_>,
    event: &mut Event<'_, '_>,
    waker: *const c_void,
) -> SessionIo {
    SessionIo {
        size: std::mem::size_of::<SessionIo>(),
        peer: Bytes::of(peer.as_bytes()),
        local: Bytes::of(local.as_bytes()),
        server_name: Bytes::of(server.0.server_name().as_bytes()),
        ctx: (event as *mut Event<'_, '_>).cast(),
        write: session_write,
        close: session_close,
        pending: session_pending,
        fail: session_fail,
        server: (server as *const Server<'_>).cast(),
        log: server_log,
        shutdown_server: server_shutdown,
        waker,
        wake: waker_wake,
        release_waker: waker_release,
        tls: std::ptr::null(),
    }
}

/// # Safety
/// `ctx` is the `Event` of the call in progress.
unsafe fn event<'a>(ctx: *mut c_void) -> &'a mut Event<'a, 'a> {
    // SAFETY: the caller's promise; events are delivered on one thread, one at a time.
    unsafe { &mut *ctx.cast::<Event<'a, 'a>>() }
}

unsafe extern "C" fn session_write(ctx: *mut c_void, data: Bytes) {
    if data.len == 0 || data.ptr.is_null() {
        return;
    }
    // SAFETY: ctx is the call's event; the plugin's bytes are valid for the call.
    let (event, data) = unsafe { (event(ctx), std::slice::from_raw_parts(data.ptr, data.len)) };
    event.ctx.write(data);
}

unsafe extern "C" fn session_close(ctx: *mut c_void) {
    // SAFETY: ctx is the call's event.
    unsafe { event(ctx) }.ctx.close();
}

unsafe extern "C" fn session_pending(ctx: *mut c_void) -> usize {
    // SAFETY: ctx is the call's event.
    unsafe { event(ctx) }.ctx.pending()
}

unsafe extern "C" fn session_fail(ctx: *mut c_void, message: Bytes) {
    // SAFETY: ctx is the call's event.
    let event = unsafe { event(ctx) };
    // SAFETY: the plugin's message is valid for the call.
    let message = unsafe { text(message) };
    if let Ok(mut failure) = event.failure.lock() {
        *failure = Some(message);
    }
}

/// # Safety
/// `server` is a `Server` alive for the call.
unsafe fn server<'a>(server: *const c_void) -> &'a Server<'a> {
    // SAFETY: the caller's promise.
    unsafe { &*server.cast::<Server<'a>>() }
}

unsafe extern "C" fn server_log(srv: *const c_void, level: u32, message: Bytes) {
    // SAFETY: srv is the call's Server; the plugin's message is valid for the call.
    let (server, message) = unsafe { (server(srv), text(message)) };
    server.0.log(LogLevel::from_number(level), &message);
}

unsafe extern "C" fn server_shutdown(srv: *const c_void) {
    // SAFETY: srv is the call's Server.
    unsafe { server(srv) }.0.shutdown();
}

unsafe extern "C" fn waker_wake(waker: *const c_void) {
    // SAFETY: the boxed Arc made in `open`, live until released.
    unsafe { &*waker.cast::<Arc<dyn SessionWaker>>() }.wake();
}

unsafe extern "C" fn waker_release(waker: *const c_void) {
    // SAFETY: the boxed Arc made in `open`, released exactly once by the plugin.
    drop(unsafe { Box::from_raw(waker.cast_mut().cast::<Arc<dyn SessionWaker>>()) });
}
