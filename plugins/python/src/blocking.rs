//! Blocking handlers (the sync, threading, pool and forking strategies): a socketserver class is
//! instantiated with `(request, client_address, server)` — which runs its `setup`, `handle` and
//! `finish`, as `BaseRequestHandler.__init__` does — on the request's own thread, holding the GIL
//! for its Python code and releasing it around every read and write.

use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyTuple};
use sockserv_plugin::{HandlerError, HandlerResult, Request, RequestKind};

use crate::interpreter;
use crate::lease::Lease;
use crate::options::Options;
use crate::protocol;
use crate::socket::{address, Connection, Server};

/// Serve one request with a socketserver handler class.
///
/// # Errors
///
/// The handler's exception, with its traceback, as a [`HandlerError::Protocol`]: the server logs
/// it with its name and the peer and closes this request only.
pub fn serve(options: &Options, req: &mut Request<'_>) -> HandlerResult {
    let datagram = req.kind == RequestKind::Datagram;
    let packet = req.packet.map(<[u8]>::to_vec);
    let (peer, local) = (req.peer.clone(), req.local.clone());
    let name = req.server.server_name().to_string();
    let lease = Arc::new(Lease::new(req));
    let outcome = Python::attach(|py| {
        let run = || -> PyResult<()> {
            let socket = Py::new(
                py,
                Connection::new(Arc::clone(&lease), datagram, peer.clone(), local.clone()),
            )?;
            let request = match &packet {
                Some(packet) => PyTuple::new(
                    py,
                    [
                        PyBytes::new(py, packet).into_any(),
                        socket.into_bound(py).into_any(),
                    ],
                )?
                .into_any(),
                None => socket.into_bound(py).into_any(),
            };
            let server = Py::new(py, Server::new(Arc::clone(&lease), name, local.clone()))?;
            options
                .class
                .bind(py)
                .call1((request, address(py, &peer)?, server))?;
            Ok(())
        };
        let result = run().map_err(|err| raised(py, options, &err));
        interpreter::flush_std(py);
        result
    });
    lease.revoke();
    outcome.map_err(HandlerError::Protocol)
}

/// What the log says of a handler's exception.
pub fn raised(py: Python<'_>, options: &Options, err: &PyErr) -> String {
    format!(
        "Python exception in {} ({}):\n{}",
        options.class_name,
        options.module.display(),
        interpreter::describe(py, err)
    )
}

/// Serve one connection with an asyncio protocol class on a thread of its own: the events a
/// loop would deliver, in order, from blocking reads.
///
/// # Errors
///
/// As for [`serve`]; a read or write error as [`HandlerError::Io`].
pub fn drive_protocol(options: &Options, req: &mut Request<'_>) -> HandlerResult {
    protocol::drive(options, req)
}
