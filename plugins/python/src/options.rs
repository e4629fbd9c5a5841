//! A server's `[server.options]` for a Python handler: the module file and the class in it,
//! loaded (the interpreter started, the module imported, the class found and its kind checked)
//! when the config is checked, so a typo or an exception at import is reported by `sockserv
//! check`, with Python's traceback, before anything is served.

use std::path::{Path, PathBuf};

use pyo3::prelude::*;
use pyo3::types::PyType;
use serde::Deserialize;

use crate::interpreter;

/// What a handler's class must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A `socketserver.BaseRequestHandler` subclass (handler = "python").
    SocketServer,
    /// An `asyncio.Protocol`-style class (handler = "python-asyncio").
    Protocol,
}

impl Kind {
    fn word(self) -> &'static str {
        match self {
            Kind::SocketServer => "socketserver",
            Kind::Protocol => "protocol",
        }
    }
}

/// The options as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    /// The Python file, relative to the config's folder (or absolute).
    module: PathBuf,
    /// The class in it.
    class: String,
}

/// A loaded handler class.
pub struct Options {
    /// The module's path as resolved.
    pub module: PathBuf,
    /// The class's name, for messages.
    pub class_name: String,
    pub class: Py<PyType>,
}

impl Options {
    /// Parse `json`, resolve the module against `config_dir`, start Python, import the module and
    /// check that its class is of `kind`.
    ///
    /// # Errors
    ///
    /// A message for `sockserv check`: bad or unknown keys, a module that is missing or raises at
    /// import (with its traceback), no such class, a class of the other kind, or a Python that
    /// cannot start.
    pub fn load(json: &str, config_dir: &Path, kind: Kind) -> Result<Options, String> {
        let raw: Raw = sockserv_plugin::from_json(json)?;
        let module = config_dir.join(&raw.module);
        if !module.is_file() {
            return Err(format!(
                "module = {:?}: no such file (looked for {})",
                raw.module.display().to_string(),
                module.display()
            ));
        }
        interpreter::start()?;
        Python::attach(|py| load_class(py, &module, &raw.class, kind)).map(|class| Options {
            module,
            class_name: raw.class,
            class,
        })
    }
}

fn load_class(
    py: Python<'_>,
    module: &Path,
    class: &str,
    kind: Kind,
) -> Result<Py<PyType>, String> {
    let shim = interpreter::shim(py).map_err(|err| err.to_string())?;
    let loaded = shim
        .call_method1("load_module", (module.to_string_lossy(),))
        .map_err(|err| {
            format!(
                "importing {} failed:\n{}",
                module.display(),
                interpreter::describe(py, &err)
            )
        });
    interpreter::flush_std(py);
    let loaded = loaded?;
    let found = loaded
        .getattr(class)
        .map_err(|_| format!("{} has no class {class}", module.display()))?;
    let found_kind: Option<String> = shim
        .call_method1("kind_of", (&found,))
        .and_then(|word| word.extract())
        .map_err(|err| interpreter::describe(py, &err))?;
    match found_kind.as_deref() {
        Some(word) if word == kind.word() => found
            .cast_into::<PyType>()
            .map(Bound::unbind)
            .map_err(|err| err.to_string()),
        Some("socketserver") => Err(format!(
            "{class} is a socketserver handler: serve it with handler = \"python\""
        )),
        Some(_) => Err(format!(
            "{class} is an asyncio protocol: serve it with handler = \"python-asyncio\""
        )),
        None => Err(format!(
            "{class} is neither a socketserver.BaseRequestHandler subclass nor an asyncio \
             protocol (a class with data_received)"
        )),
    }
}
