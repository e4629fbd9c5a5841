//! Event-driven handlers: `asyncio.Protocol`-style classes, under the reactor (a [`Session`] per
//! connection) or on a thread of their own under the blocking strategies ([`drive`]).
//!
//! The class is called with no arguments (the asyncio documentation's `lambda: Protocol()`
//! factory), then gets `connection_made(transport)`, `data_received(data)` for each chunk,
//! `eof_received()` when the peer closes its side (a false result closes the connection, as in
//! asyncio) and `connection_lost(None)` once the connection is gone. The [`Transport`] has
//! `write`, `writelines`, `close`, `abort` (as `close`), `is_closing`, `get_extra_info`
//! (`'peername'`, `'sockname'`), `get_write_buffer_size`, `is_reading`, `can_write_eof` (false)
//! and `set_write_buffer_limits` (accepted; `pause_writing` is never called: the server bounds a
//! connection's output itself).
//!
//! What the ABI does not carry yet is refused loudly rather than faked: `pause_reading`,
//! `resume_reading` and `write_eof` raise `NotImplementedError`. A protocol has no event loop to
//! schedule on (`loop.call_later`); a write or close from another thread is delivered: the
//! transport wakes the connection's reactor loop, which sends it. Under a blocking strategy such
//! a write waits for the connection's next read.
//!
//! An exception in a callback is logged with its traceback and the peer, and closes that
//! connection only (asyncio's "Fatal error: protocol.data_received() call failed").

use std::sync::{Arc, Mutex, MutexGuard};

use pyo3::buffer::PyUntypedBuffer;
use pyo3::exceptions::{PyNotImplementedError, PyOSError, PyValueError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use sockserv_plugin::{
    Address, HandlerError, HandlerResult, LogLevel, Request, Session, SessionContext, SessionInfo,
    SessionWaker,
};

use crate::blocking::raised;
use crate::interpreter;
use crate::options::Options;
use crate::socket::address;

/// The most a transport holds for its connection between events (written from another thread
/// before the loop has taken it): past it, `write` raises `OSError(ENOBUFS)`.
pub const MAX_UNSENT: usize = 4 * 1024 * 1024;

/// How much a blocking protocol connection reads at once.
const READ_CHUNK: usize = 64 * 1024;

/// What a transport shares with the connection that drives it.
#[derive(Default)]
struct State {
    /// Written by the protocol, not yet handed to the server.
    unsent: Vec<u8>,
    /// `close()` was called (or the connection is gone).
    closing: bool,
    /// An event is being delivered: what is written now is taken when it returns.
    in_event: bool,
    /// What the server still held unsent at the last event.
    host_pending: usize,
    /// Wakes the reactor loop for writes made outside an event (none under blocking strategies).
    waker: Option<Arc<dyn SessionWaker>>,
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|e| e.into_inner())
}

/// The `transport` a protocol gets: see the module's doc.
#[pyclass(module = "sockserv", name = "Transport", frozen)]
pub struct Transport {
    state: Arc<Mutex<State>>,
    peer: Address,
    local: Address,
}

impl Transport {
    /// After a change outside an event, ask the loop to come and take it.
    fn changed(state: MutexGuard<'_, State>) {
        if !state.in_event {
            if let Some(waker) = state.waker.clone() {
                drop(state);
                waker.wake();
            }
        }
    }
}

#[pymethods]
impl Transport {
    fn write(&self, data: &Bound<'_, PyAny>) -> PyResult<()> {
        let buffer = PyUntypedBuffer::get(data)?;
        if !buffer.is_c_contiguous() {
            return Err(PyValueError::new_err("data must be a contiguous buffer"));
        }
        // SAFETY: the buffer is exported and the GIL held for the copy.
        let bytes = unsafe {
            std::slice::from_raw_parts(buffer.buf_ptr().cast::<u8>(), buffer.len_bytes())
        };
        let mut state = lock(&self.state);
        if state.closing || bytes.is_empty() {
            return Ok(());
        }
        if state.unsent.len() + bytes.len() > MAX_UNSENT {
            let message =
                format!("sockserv: more than {MAX_UNSENT} bytes unsent on this transport");
            return Err(PyOSError::new_err((libc::ENOBUFS, message)));
        }
        state.unsent.extend_from_slice(bytes);
        Transport::changed(state);
        Ok(())
    }

    fn writelines(&self, lines: &Bound<'_, PyAny>) -> PyResult<()> {
        for line in lines.try_iter()? {
            self.write(&line?)?;
        }
        Ok(())
    }

    fn close(&self) {
        let mut state = lock(&self.state);
        if !state.closing {
            state.closing = true;
            Transport::changed(state);
        }
    }

    fn abort(&self) {
        self.close();
    }

    fn is_closing(&self) -> bool {
        lock(&self.state).closing
    }

    fn is_reading(&self) -> bool {
        !lock(&self.state).closing
    }

    #[pyo3(signature = (name, default = None))]
    fn get_extra_info(
        &self,
        py: Python<'_>,
        name: &str,
        default: Option<Py<PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        match name {
            "peername" => address(py, &self.peer),
            "sockname" => address(py, &self.local),
            _ => Ok(default.unwrap_or_else(|| py.None())),
        }
    }

    fn get_write_buffer_size(&self) -> usize {
        let state = lock(&self.state);
        state.unsent.len() + state.host_pending
    }

    #[pyo3(signature = (high = None, low = None))]
    fn set_write_buffer_limits(&self, high: Option<usize>, low: Option<usize>) {
        let _ = (high, low);
    }

    fn can_write_eof(&self) -> bool {
        false
    }

    fn write_eof(&self) -> PyResult<()> {
        Err(not_carried("write_eof"))
    }

    fn pause_reading(&self) -> PyResult<()> {
        Err(not_carried("pause_reading"))
    }

    fn resume_reading(&self) -> PyResult<()> {
        Err(not_carried("resume_reading"))
    }

    fn __repr__(&self) -> String {
        format!(
            "<sockserv.Transport laddr={} raddr={}>",
            self.local, self.peer
        )
    }
}

fn not_carried(what: &str) -> PyErr {
    PyNotImplementedError::new_err(format!(
        "sockserv: transport.{what}() is not carried across the plugin ABI yet"
    ))
}

/// One connection's protocol instance and its transport.
struct Live {
    protocol: Py<PyAny>,
}

/// Call `connection_made` on a fresh protocol instance.
fn open(py: Python<'_>, options: &Options, transport: &Py<Transport>) -> PyResult<Live> {
    let protocol = options.class.bind(py).call0()?;
    protocol.call_method1("connection_made", (transport.clone_ref(py),))?;
    Ok(Live {
        protocol: protocol.unbind(),
    })
}

/// `eof_received()`: whether the protocol keeps the connection open (a true result).
fn eof(py: Python<'_>, live: &Live) -> PyResult<bool> {
    let protocol = live.protocol.bind(py);
    if !protocol.hasattr("eof_received")? {
        return Ok(false);
    }
    protocol.call_method0("eof_received")?.is_truthy()
}

fn lost(py: Python<'_>, live: &Live) -> PyResult<()> {
    let protocol = live.protocol.bind(py);
    if protocol.hasattr("connection_lost")? {
        protocol.call_method1("connection_lost", (py.None(),))?;
    }
    Ok(())
}

/// A protocol under the reactor.
pub struct ProtocolSession {
    options: Arc<Options>,
    state: Arc<Mutex<State>>,
    transport: Option<Py<Transport>>,
    live: Option<Live>,
    peer: Address,
    local: Address,
}

impl ProtocolSession {
    pub fn new(options: &Arc<Options>, info: &SessionInfo<'_>) -> ProtocolSession {
        let state = State {
            waker: Some(Arc::clone(&info.waker)),
            ..State::default()
        };
        ProtocolSession {
            options: Arc::clone(options),
            state: Arc::new(Mutex::new(state)),
            transport: None,
            live: None,
            peer: info.peer.clone(),
            local: info.local.clone(),
        }
    }

    /// Deliver one event: `call` runs with the GIL; what the protocol wrote is handed to the
    /// server afterwards, and an exception is logged and closes the connection.
    fn event(
        &mut self,
        ctx: &mut SessionContext<'_>,
        what: &str,
        call: impl FnOnce(Python<'_>, &mut Self) -> PyResult<()>,
    ) {
        {
            let mut state = lock(&self.state);
            state.in_event = true;
            state.host_pending = ctx.pending();
        }
        Python::attach(|py| {
            if let Err(err) = call(py, self) {
                let message = format!("{}: {what}: {}", self.peer, raised(py, &self.options, &err));
                ctx.server.log(LogLevel::Error, &message);
                lock(&self.state).closing = true;
            }
        });
        self.apply(ctx);
    }

    /// Hand what the protocol wrote (and its close) to the server.
    fn apply(&mut self, ctx: &mut SessionContext<'_>) {
        let mut state = lock(&self.state);
        if !state.unsent.is_empty() {
            ctx.write(&state.unsent);
            state.unsent.clear();
        }
        if state.closing {
            ctx.close();
        }
        state.in_event = false;
        state.host_pending = ctx.pending();
    }
}

impl Session for ProtocolSession {
    fn on_open(&mut self, ctx: &mut SessionContext<'_>) {
        self.event(ctx, "connection_made", |py, this| {
            let transport = Py::new(
                py,
                Transport {
                    state: Arc::clone(&this.state),
                    peer: this.peer.clone(),
                    local: this.local.clone(),
                },
            )?;
            this.transport = Some(transport.clone_ref(py));
            this.live = Some(open(py, &this.options, &transport)?);
            Ok(())
        });
    }

    fn on_data(&mut self, data: &[u8], ctx: &mut SessionContext<'_>) {
        if lock(&self.state).closing {
            return;
        }
        self.event(ctx, "data_received", |py, this| match &this.live {
            Some(live) => live
                .protocol
                .bind(py)
                .call_method1(intern!(py, "data_received"), (PyBytes::new(py, data),))
                .map(drop),
            None => Ok(()),
        });
    }

    fn on_eof(&mut self, ctx: &mut SessionContext<'_>) {
        self.event(ctx, "eof_received", |py, this| {
            let keep = match &this.live {
                Some(live) => eof(py, live)?,
                None => false,
            };
            if !keep {
                lock(&this.state).closing = true;
            }
            Ok(())
        });
    }

    fn on_wake(&mut self, ctx: &mut SessionContext<'_>) {
        lock(&self.state).in_event = true;
        self.apply(ctx);
    }

    fn on_close(&mut self) {
        {
            let mut state = lock(&self.state);
            state.closing = true;
            state.waker = None;
        }
        let (live, transport) = (self.live.take(), self.transport.take());
        Python::attach(|py| {
            if let Some(live) = &live {
                if let Err(err) = lost(py, live) {
                    eprintln!(
                        "{}: connection_lost: {}",
                        self.peer,
                        raised(py, &self.options, &err)
                    );
                }
            }
            interpreter::flush_std(py);
            drop((live, transport));
        });
    }
}

/// Serve one connection with a protocol class on this thread (the blocking strategies).
///
/// # Errors
///
/// The protocol's exception as [`HandlerError::Protocol`], a read or write error as
/// [`HandlerError::Io`].
pub fn drive(options: &Options, req: &mut Request<'_>) -> HandlerResult {
    let state = Arc::new(Mutex::new(State::default()));
    let transport = Transport {
        state: Arc::clone(&state),
        peer: req.peer.clone(),
        local: req.local.clone(),
    };
    Python::attach(|py| {
        let failed = |err: PyErr| HandlerError::Protocol(raised(py, options, &err));
        let transport = Py::new(py, transport).map_err(failed)?;
        let live = open(py, options, &transport);
        interpreter::flush_std(py);
        let live = live.map_err(failed)?;
        let served = serve_events(py, options, req, &state, &live);
        let ended = lost(py, &live).map_err(failed);
        interpreter::flush_std(py);
        served.and(ended)
    })
}

fn serve_events(
    py: Python<'_>,
    options: &Options,
    req: &mut Request<'_>,
    state: &Mutex<State>,
    live: &Live,
) -> HandlerResult {
    let failed = |err: PyErr| HandlerError::Protocol(raised(py, options, &err));
    let mut buf = vec![0u8; READ_CHUNK];
    loop {
        flush(py, req, state)?;
        if lock(state).closing {
            return Ok(());
        }
        let rfile = &mut *req.rfile;
        let read = py.detach(|| rfile.read(&mut buf))?;
        if read == 0 {
            let keep = eof(py, live).map_err(failed)?;
            flush(py, req, state)?;
            let _ = keep; // no more input comes on this thread: the connection ends either way
            return Ok(());
        }
        live.protocol
            .bind(py)
            .call_method1(
                intern!(py, "data_received"),
                (PyBytes::new(py, &buf[..read]),),
            )
            .map_err(failed)?;
    }
}

/// Write what the protocol queued, with the GIL released.
fn flush(py: Python<'_>, req: &mut Request<'_>, state: &Mutex<State>) -> HandlerResult {
    let unsent = std::mem::take(&mut lock(state).unsent);
    if unsent.is_empty() {
        return Ok(());
    }
    let wfile = &mut *req.wfile;
    py.detach(|| wfile.write_all(&unsent))?;
    Ok(())
}
