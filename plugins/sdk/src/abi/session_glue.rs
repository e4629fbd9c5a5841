//! The plugin side of ABI 1.1's event-driven sessions: generic `extern "C"` functions that open a
//! [`PluginHandler`]'s session and feed it events, presenting the host's [`SessionIo`] as the same
//! [`SessionContext`] the built-in sessions get. Panics are caught here and reported as
//! `STATUS_PANIC`. Each `unsafe` block relies on the promises written on [`SessionIo`].

#![allow(unsafe_code)]

use std::ffi::c_void;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use super::glue::{bytes, panic_text, parse_address, text, tls_info, HostServer, Instance};
use super::{Bytes, SessionIo, TlsPeer, EVENT_DATA, EVENT_EOF, EVENT_OPEN, EVENT_WAKE};
use super::{STATUS_ERROR, STATUS_OK, STATUS_PANIC};
use crate::{PluginHandler, Session, SessionContext, SessionInfo, SessionWaker};

/// The host's waker, owned by the plugin: released exactly once, when the last clone drops.
struct HostWaker {
    handle: *const c_void,
    wake: unsafe extern "C" fn(*const c_void),
    release: unsafe extern "C" fn(*const c_void),
}

// SAFETY: the ABI makes the waker usable from any thread.
unsafe impl Send for HostWaker {}
// SAFETY: as above.
unsafe impl Sync for HostWaker {}

impl SessionWaker for HostWaker {
    fn wake(&self) {
        // SAFETY: the handle is live until `release`, which only Drop calls.
        unsafe { (self.wake)(self.handle) }
    }
}

impl Drop for HostWaker {
    fn drop(&mut self) {
        // SAFETY: released once, here.
        unsafe { (self.release)(self.handle) }
    }
}

/// What a session is, behind the pointer the host holds.
type Boxed = Box<dyn Session>;

/// # Safety
/// `instance` came from `create::<H>`; `io` is valid for the call and its waker is ours.
pub(super) unsafe extern "C" fn session_open<H: PluginHandler>(
    instance: *const c_void,
    io: *const SessionIo,
) -> *mut c_void {
    // SAFETY: the host keeps both alive during the call.
    let (options, io) = unsafe { (&*instance.cast::<Instance<H>>(), &*io) };
    let waker = Arc::new(HostWaker {
        handle: io.waker,
        wake: io.wake,
        release: io.release_waker,
    });
    let (peer, local) = (
        parse_address(&text(io.peer)),
        parse_address(&text(io.local)),
    );
    let server = HostServer::for_session(io);
    let covers =
        io.size >= std::mem::offset_of!(SessionIo, tls) + std::mem::size_of::<*const TlsPeer>();
    // SAFETY: read only when the host's table has the field; the host keeps it valid for the call.
    let tls = if covers {
        unsafe { tls_info(io.tls) }
    } else {
        None
    };
    let info = SessionInfo {
        peer: &peer,
        local: &local,
        server: &server,
        waker,
        tls: tls.as_ref(),
    };
    match catch_unwind(AssertUnwindSafe(|| H::new_session(options, &info))) {
        Ok(Some(session)) => Box::into_raw(Box::new(session)).cast(),
        Ok(None) | Err(_) => std::ptr::null_mut(),
    }
}

/// # Safety
/// `session` came from `session_open` and is not closed; `io` is valid for the call.
pub(super) unsafe extern "C" fn session_event(
    session: *mut c_void,
    event: u32,
    data: Bytes,
    io: *const SessionIo,
) -> i32 {
    // SAFETY: the host passes its live session pointer, the event's io and the data for the call.
    let (session, io, data) = unsafe { (&mut *session.cast::<Boxed>(), &*io, bytes(data)) };
    let (peer, local) = (
        parse_address(&text(io.peer)),
        parse_address(&text(io.local)),
    );
    let server = HostServer::for_session(io);
    // SAFETY: ctx is the event's, valid during the call.
    let pending = unsafe { (io.pending)(io.ctx) };
    let mut output = Vec::new();
    let mut ctx = SessionContext::over_host(&mut output, pending, &peer, &local, &server);
    let ran = catch_unwind(AssertUnwindSafe(|| {
        deliver(&mut **session, event, data, &mut ctx)
    }));
    let closing = ctx.closing();
    // SAFETY: ctx is valid during the call; the slices live across each call.
    unsafe {
        if !output.is_empty() {
            (io.write)(io.ctx, Bytes::of(&output));
        }
        if closing {
            (io.close)(io.ctx);
        }
    }
    match ran {
        Ok(true) => STATUS_OK,
        Ok(false) => fail(io, STATUS_ERROR, &format!("unknown session event {event}")),
        Err(payload) => fail(io, STATUS_PANIC, &panic_text(&*payload)),
    }
}

fn deliver(
    session: &mut dyn Session,
    event: u32,
    data: &[u8],
    ctx: &mut SessionContext<'_>,
) -> bool {
    match event {
        EVENT_OPEN => session.on_open(ctx),
        EVENT_DATA => session.on_data(data, ctx),
        EVENT_EOF => session.on_eof(ctx),
        EVENT_WAKE => session.on_wake(ctx),
        _ => return false,
    }
    true
}

fn fail(io: &SessionIo, status: i32, message: &str) -> i32 {
    // SAFETY: ctx is valid during the call; the message for the call.
    unsafe { (io.fail)(io.ctx, Bytes::of(message.as_bytes())) };
    status
}

/// # Safety
/// `session` came from `session_open` and is closed once.
pub(super) unsafe extern "C" fn session_close(session: *mut c_void) {
    if session.is_null() {
        return;
    }
    // SAFETY: made by Box::into_raw in `session_open`, released once by the host.
    let mut session = unsafe { Box::from_raw(session.cast::<Boxed>()) };
    let _ = catch_unwind(AssertUnwindSafe(|| session.on_close()));
}
