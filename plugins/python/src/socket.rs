//! What a socketserver handler gets as `self.request` and `self.server`: objects that behave like
//! the socket and the server socketserver passes, over a request sockserv accepted.
//!
//! [`Connection`] (Python: `sockserv.socket`) has the socket methods handlers use — `recv`,
//! `recv_into`, `send`, `sendall`, `sendto` (a datagram's reply), `makefile` (so
//! `StreamRequestHandler`'s `rfile` and `wfile` are Python's own buffered files over it),
//! `shutdown`, `close`, `getpeername`, `getsockname`, `settimeout`/`gettimeout`/`setblocking`,
//! `setsockopt` for `TCP_NODELAY`, `fileno`, and the context manager — each blocking call with
//! the GIL released. What differs from a socket, and why:
//!
//! - `fileno()` is -1, as for a closed socket: the server keeps the descriptor (it may be
//!   TLS, and it applies the limits), so no descriptor is lent; `select` on it fails loudly.
//! - `settimeout` is kept and reported by `gettimeout`, but reads are bounded by the server's
//!   own deadlines (`idle_timeout`, `first_byte_timeout`), which the framework applies to every
//!   handler; a read past them fails with `TimeoutError`.
//! - `recv`'s flags must be 0; `recv(n)` reads at most [`RECV_LIMIT`] bytes at a time (it may
//!   return fewer than asked on any socket).
//! - On a datagram, `sendto(data, client_address)` adds to the one reply datagram sent when the
//!   request ends; another address is refused (a handler answers its sender).
//!
//! [`Server`] has `server_address` and `shutdown()` (which returns at once, from any thread,
//! unlike socketserver's, which a handler must not call on its own server's thread), and
//! `server_name`, the config's name for it.

use std::net::Shutdown;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use pyo3::buffer::PyUntypedBuffer;
use pyo3::exceptions::{PyOSError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyTuple};
use sockserv_plugin::Address;

use crate::interpreter;
use crate::lease::{over, Lease};

/// The most `recv` reads at once, whatever the handler asks: a bound on the buffer one call
/// allocates (socket.recv may return fewer bytes than asked, so this changes no handler's
/// meaning).
pub const RECV_LIMIT: usize = 256 * 1024;

/// A pointer into a Python buffer, handed to a read or write while the GIL is released. The
/// buffer stays exported (so it cannot be resized or freed) until the call returns.
struct Raw(*mut u8, usize);

// SAFETY: the memory stays valid while the exporting `PyUntypedBuffer` lives, which outlasts the
// released-GIL call that uses it; Python's own socket module reads and writes it the same way.
unsafe impl Send for Raw {}

/// `client_address` as socketserver gives it: `(host, port)` for IPv4, `(host, port, flowinfo,
/// scope_id)` for IPv6, the path for a Unix socket (`''` for an unnamed one).
pub fn address(py: Python<'_>, address: &Address) -> PyResult<Py<PyAny>> {
    let value = match address {
        Address::Inet(std::net::SocketAddr::V4(v4)) => (v4.ip().to_string(), v4.port())
            .into_pyobject(py)?
            .into_any(),
        Address::Inet(std::net::SocketAddr::V6(v6)) => {
            (v6.ip().to_string(), v6.port(), v6.flowinfo(), v6.scope_id())
                .into_pyobject(py)?
                .into_any()
        }
        Address::Unix(path) => path.to_string_lossy().into_pyobject(py)?.into_any(),
        Address::UnixUnnamed => "".into_pyobject(py)?.into_any(),
    };
    Ok(value.unbind())
}

/// Which of Python's socket constants describes `address`.
fn family(address: &Address) -> i32 {
    match address {
        Address::Inet(std::net::SocketAddr::V4(_)) => libc::AF_INET,
        Address::Inet(std::net::SocketAddr::V6(_)) => libc::AF_INET6,
        Address::Unix(_) | Address::UnixUnnamed => libc::AF_UNIX,
    }
}

fn os_error(err: std::io::Error) -> PyErr {
    PyErr::from(err)
}

fn errno(code: i32, message: &str) -> PyErr {
    PyOSError::new_err((code, message.to_string()))
}

/// `self.request` (a stream) or `self.request[1]` (a datagram): see the module's doc.
#[pyclass(module = "sockserv", name = "socket", frozen)]
pub struct Connection {
    lease: Arc<Lease>,
    datagram: bool,
    peer: Address,
    local: Address,
    /// What `settimeout` set (seconds; `None`: blocking).
    timeout: Mutex<Option<f64>>,
    closed: AtomicBool,
    /// `recv`'s read buffer, kept between calls (zeroed once, not at every call), up to
    /// [`RECV_LIMIT`] bytes.
    received: Mutex<Vec<u8>>,
}

impl Connection {
    pub fn new(lease: Arc<Lease>, datagram: bool, peer: Address, local: Address) -> Self {
        Connection {
            lease,
            datagram,
            peer,
            local,
            timeout: Mutex::new(None),
            closed: AtomicBool::new(false),
            received: Mutex::default(),
        }
    }

    fn open(&self) -> PyResult<()> {
        if self.closed.load(Ordering::Relaxed) {
            return Err(os_error(over()));
        }
        Ok(())
    }

    fn stream(&self, what: &str) -> PyResult<()> {
        self.open()?;
        if self.datagram {
            let message = format!("{what} on a datagram request: use request[0] and sendto()");
            return Err(errno(libc::ENOTCONN, &message));
        }
        Ok(())
    }

    /// Write `data` (any bytes-like object) with the GIL released.
    fn write(&self, py: Python<'_>, data: &Bound<'_, PyAny>, all: bool) -> PyResult<usize> {
        let buffer = PyUntypedBuffer::get(data)?;
        if !buffer.is_c_contiguous() {
            return Err(PyValueError::new_err("data must be a contiguous buffer"));
        }
        let raw = Raw(buffer.buf_ptr().cast(), buffer.len_bytes());
        let lease = Arc::clone(&self.lease);
        let written = py.detach(move || {
            let raw = raw;
            // SAFETY: `buffer` keeps the memory exported for this call (see `Raw`).
            let bytes = unsafe { std::slice::from_raw_parts(raw.0, raw.1) };
            lease.write(bytes, all)
        });
        drop(buffer);
        written.map_err(os_error)
    }
}

#[pymethods]
impl Connection {
    #[pyo3(signature = (bufsize, flags = 0))]
    fn recv<'py>(
        &self,
        py: Python<'py>,
        bufsize: isize,
        flags: i32,
    ) -> PyResult<Bound<'py, PyBytes>> {
        self.stream("recv")?;
        no_flags(flags)?;
        let len = usize::try_from(bufsize)
            .map_err(|_| PyValueError::new_err("negative buffersize in recv"))?
            .min(RECV_LIMIT);
        // Taken out for the read (a concurrent recv on another thread gets a buffer of its own).
        let mut buf = std::mem::take(&mut *self.received.lock().unwrap_or_else(|e| e.into_inner()));
        if buf.len() < len {
            buf.resize(len, 0);
        }
        let lease = Arc::clone(&self.lease);
        let (read, buf) = py.detach(move || (lease.read(&mut buf[..len]), buf));
        let data = read.map(|n| PyBytes::new(py, &buf[..n]));
        *self.received.lock().unwrap_or_else(|e| e.into_inner()) = buf;
        data.map_err(os_error)
    }

    #[pyo3(signature = (buffer, nbytes = 0, flags = 0))]
    fn recv_into(
        &self,
        py: Python<'_>,
        buffer: &Bound<'_, PyAny>,
        nbytes: isize,
        flags: i32,
    ) -> PyResult<usize> {
        self.stream("recv_into")?;
        no_flags(flags)?;
        let target = PyUntypedBuffer::get(buffer)?;
        if target.readonly() || !target.is_c_contiguous() {
            return Err(PyValueError::new_err(
                "recv_into needs a writable contiguous buffer",
            ));
        }
        let room = target.len_bytes();
        let len = match usize::try_from(nbytes) {
            Err(_) => return Err(PyValueError::new_err("negative buffersize in recv_into")),
            Ok(0) => room,
            Ok(n) if n > room => {
                return Err(PyValueError::new_err(
                    "buffer too small for requested bytes",
                ))
            }
            Ok(n) => n,
        };
        let raw = Raw(target.buf_ptr().cast(), len);
        let lease = Arc::clone(&self.lease);
        let read = py.detach(move || {
            let raw = raw;
            // SAFETY: `target` keeps the writable memory exported for this call (see `Raw`).
            let buf = unsafe { std::slice::from_raw_parts_mut(raw.0, raw.1) };
            lease.read(buf)
        });
        drop(target);
        read.map_err(os_error)
    }

    #[pyo3(signature = (data, flags = 0))]
    fn send(&self, py: Python<'_>, data: &Bound<'_, PyAny>, flags: i32) -> PyResult<usize> {
        self.stream("send")?;
        no_flags(flags)?;
        self.write(py, data, false)
    }

    #[pyo3(signature = (data, flags = 0))]
    fn sendall(&self, py: Python<'_>, data: &Bound<'_, PyAny>, flags: i32) -> PyResult<()> {
        self.stream("sendall")?;
        no_flags(flags)?;
        self.write(py, data, true).map(drop)
    }

    /// `sendto(data, address)` or `sendto(data, flags, address)`.
    #[pyo3(signature = (data, *rest))]
    fn sendto(
        &self,
        py: Python<'_>,
        data: &Bound<'_, PyAny>,
        rest: &Bound<'_, PyTuple>,
    ) -> PyResult<usize> {
        self.open()?;
        let to = match rest.len() {
            1 => rest.get_item(0)?,
            2 => {
                no_flags(rest.get_item(0)?.extract()?)?;
                rest.get_item(1)?
            }
            n => {
                let message = format!("sendto() takes 2 or 3 arguments ({} given)", n + 1);
                return Err(pyo3::exceptions::PyTypeError::new_err(message));
            }
        };
        if !self.datagram {
            return self.write(py, data, true);
        }
        if !to.eq(address(py, &self.peer)?)? {
            let message = "sockserv: a datagram handler replies to its sender only";
            return Err(errno(libc::EDESTADDRREQ, message));
        }
        self.write(py, data, true)
    }

    #[pyo3(signature = (*args, **kwargs))]
    fn makefile(
        slf: &Bound<'_, Self>,
        args: &Bound<'_, PyTuple>,
        kwargs: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        let makefile = interpreter::shim(py)?.getattr("makefile")?;
        let mut all = vec![slf.clone().into_any()];
        all.extend(args.iter());
        Ok(makefile.call(PyTuple::new(py, all)?, kwargs)?.unbind())
    }

    fn shutdown(&self, how: i32) -> PyResult<()> {
        self.stream("shutdown")?;
        let how = match how {
            libc::SHUT_RD => Shutdown::Read,
            libc::SHUT_WR => Shutdown::Write,
            libc::SHUT_RDWR => Shutdown::Both,
            _ => {
                return Err(errno(
                    libc::EINVAL,
                    "shutdown: how must be SHUT_RD, SHUT_WR or SHUT_RDWR",
                ))
            }
        };
        self.lease.shutdown(how).map_err(os_error)
    }

    /// Close: the peer sees the connection end now; the server closes the socket when the
    /// request is over.
    fn close(&self) {
        if !self.closed.swap(true, Ordering::Relaxed) && !self.datagram {
            let _ = self.lease.shutdown(Shutdown::Both);
        }
    }

    fn detach(&self) -> i32 {
        self.closed.store(true, Ordering::Relaxed);
        -1
    }

    /// Called by `socket.SocketIO.close` (the files `makefile` returns); nothing to count here.
    fn _decref_socketios(&self) {}

    fn fileno(&self) -> i32 {
        -1
    }

    fn getpeername(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        address(py, &self.peer)
    }

    fn getsockname(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        address(py, &self.local)
    }

    fn settimeout(&self, value: Option<f64>) -> PyResult<()> {
        if value.is_some_and(|v| v.is_nan() || v < 0.0) {
            return Err(PyValueError::new_err("Timeout value out of range"));
        }
        *self.timeout.lock().unwrap_or_else(|e| e.into_inner()) = value;
        Ok(())
    }

    fn gettimeout(&self) -> Option<f64> {
        *self.timeout.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn setblocking(&self, flag: bool) -> PyResult<()> {
        self.settimeout(if flag { None } else { Some(0.0) })
    }

    fn getblocking(&self) -> bool {
        self.gettimeout() != Some(0.0)
    }

    /// `TCP_NODELAY` is accepted and left to the server (its `tcp_nodelay` key); any other option
    /// is refused, since the server owns the socket.
    #[pyo3(signature = (level, option, value, optlen = None))]
    fn setsockopt(
        &self,
        level: i32,
        option: i32,
        value: &Bound<'_, PyAny>,
        optlen: Option<usize>,
    ) -> PyResult<()> {
        let _ = (value, optlen);
        if level == libc::IPPROTO_TCP && option == libc::TCP_NODELAY {
            return Ok(());
        }
        let message = "sockserv: the server owns the socket; set options in its config";
        Err(errno(libc::ENOPROTOOPT, message))
    }

    #[getter]
    fn family(&self) -> i32 {
        family(&self.local)
    }

    #[getter]
    fn r#type(&self) -> i32 {
        if self.datagram {
            libc::SOCK_DGRAM
        } else {
            libc::SOCK_STREAM
        }
    }

    #[getter]
    fn proto(&self) -> i32 {
        0
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, _args: &Bound<'_, PyTuple>) {
        self.close();
    }

    fn __repr__(&self) -> String {
        let kind = if self.datagram { "datagram" } else { "stream" };
        format!(
            "<sockserv.socket {kind} laddr={} raddr={}>",
            self.local, self.peer
        )
    }
}

fn no_flags(flags: i32) -> PyResult<()> {
    if flags != 0 {
        return Err(PyValueError::new_err(
            "sockserv: socket flags are not supported (use 0)",
        ));
    }
    Ok(())
}

/// `self.server`: see the module's doc.
#[pyclass(module = "sockserv", name = "Server", frozen)]
pub struct Server {
    lease: Arc<Lease>,
    name: String,
    local: Address,
}

impl Server {
    pub fn new(lease: Arc<Lease>, name: String, local: Address) -> Self {
        Server { lease, name, local }
    }
}

#[pymethods]
impl Server {
    #[getter]
    fn server_address(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        address(py, &self.local)
    }

    #[getter]
    fn server_name(&self) -> &str {
        &self.name
    }

    /// Stop the server: returns at once; requests in flight, this one included, are drained.
    fn shutdown(&self) -> PyResult<()> {
        self.lease.shutdown_server().map_err(os_error)
    }

    fn __repr__(&self) -> String {
        format!("<sockserv.Server {} at {}>", self.name, self.local)
    }
}
