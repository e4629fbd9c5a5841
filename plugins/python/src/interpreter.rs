//! The embedded CPython: started once per process, the first time a server's options name a
//! module, and never finalized (a plugin library is never unloaded either).
//!
//! Starting it takes three steps before `Py_Initialize`:
//!
//! 1. **The version check.** The plugin is compiled against one Python's headers and links its
//!    `libpython3.X.so`; `Py_GetVersion` (callable before initialization) must name the same
//!    major and minor version, or the plugin refuses to start with a message naming both and how
//!    to rebuild. (A different micro version is the same ABI, and is accepted.)
//! 2. **libpython's symbols made global.** The host opens plugins with `RTLD_LOCAL`, so the
//!    libpython this library pulled in is not visible to what Python itself loads later: its
//!    extension modules (`_socket`, `select`, `_asyncio`...) expect the interpreter's symbols to
//!    be global, as they are in the `python3` executable. The loaded libpython is found with
//!    `dladdr` and reopened with `RTLD_NOLOAD | RTLD_GLOBAL`.
//! 3. **Fork handlers.** Under the forking strategy the host forks after the interpreter is up
//!    (its options were checked before serving). A child of a process running Python must do
//!    what `os.fork()` does around `fork(2)` — hold the GIL, `PyOS_BeforeFork`, then
//!    `PyOS_AfterFork_Child` in the child (which resets the GIL and the thread states, drops the
//!    parent's other threads, reinitializes the import lock and runs `os.register_at_fork`
//!    callbacks) and `PyOS_AfterFork_Parent` in the parent. `pthread_atfork` handlers do exactly
//!    that for forks the host makes; a fork Python makes itself (`os.fork()` in a handler, with
//!    the GIL held) is left to Python. So each child starts from the interpreter state a child of
//!    Python's own `ForkingMixIn` starts from, and nothing it does reaches the parent or its
//!    siblings.
//!
//! The interpreter is initialized without signal handlers (sockserv owns SIGINT and SIGTERM),
//! with the GIL released afterwards: each request or event takes it for its Python calls and
//! gives it back around socket I/O.

use std::ffi::{c_void, CStr, CString};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::OnceLock;

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::PyModule;

/// The Python the plugin was compiled against (build.rs).
const BUILT_MINOR: &str = env!("SOCKSERV_PYTHON_BUILT_MINOR");
const BUILT_VERSION: &str = env!("SOCKSERV_PYTHON_BUILT_VERSION");
const BUILT_EXECUTABLE: &str = env!("SOCKSERV_PYTHON_BUILT_EXECUTABLE");

/// The plugin's Python helpers (`shim.py`), loaded once as the module `_sockserv`.
static SHIM: OnceLock<Py<PyModule>> = OnceLock::new();
/// Whether the interpreter started, or why not (kept: every later server gets the same answer).
static STARTED: OnceLock<Result<(), String>> = OnceLock::new();

/// Start the interpreter if it is not running yet.
///
/// # Errors
///
/// A message saying why it cannot run: another Python version than the plugin was built for,
/// libpython not found among the loaded libraries, or Python failing to start.
pub fn start() -> Result<(), String> {
    STARTED
        .get_or_init(|| {
            check_version(running_version())?;
            make_libpython_global()?;
            Python::initialize();
            Python::attach(|py| load_shim(py).map_err(|err| describe(py, &err)))?;
            register_fork_handlers()
        })
        .clone()
}

/// `_sockserv`, the plugin's helpers.
///
/// # Errors
///
/// None once [`start`] succeeded; before, a RuntimeError.
pub fn shim(py: Python<'_>) -> PyResult<&Bound<'_, PyModule>> {
    SHIM.get()
        .map(|module| module.bind(py))
        .ok_or_else(|| pyo3::exceptions::PyRuntimeError::new_err("sockserv: Python not started"))
}

/// What `sys.version` will say: `Py_GetVersion`, which is valid before initialization.
fn running_version() -> String {
    // SAFETY: Py_GetVersion returns a static NUL-terminated string, before or after
    // initialization.
    let version = unsafe { CStr::from_ptr(ffi::Py_GetVersion()) };
    version.to_string_lossy().into_owned()
}

/// Refuse a Python whose major and minor version differ from the build's.
fn check_version(running: String) -> Result<(), String> {
    let number = running.split_whitespace().next().unwrap_or("");
    let minor: String = number.split('.').take(2).collect::<Vec<_>>().join(".");
    if minor == BUILT_MINOR {
        return Ok(());
    }
    Err(format!(
        "this Python plugin was built against Python {BUILT_VERSION} ({BUILT_EXECUTABLE}), but \
         the Python library loaded with it is {number}: rebuild the plugin with PYO3_PYTHON naming \
         the Python {minor} interpreter to serve with (`PYO3_PYTHON=/path/to/python3 cargo build \
         --release -p sockserv-python`)"
    ))
}

/// Reopen the libpython this library loaded with `RTLD_GLOBAL` (see the module's doc).
fn make_libpython_global() -> Result<(), String> {
    // SAFETY: dladdr reads the loader's tables for an address in a loaded library, writing only
    // `info`; dlopen with RTLD_NOLOAD only changes the flags of a library already loaded (it is
    // not opened a second time, and no initialiser runs).
    unsafe {
        let mut info: libc::Dl_info = std::mem::zeroed();
        let symbol = ffi::Py_GetVersion as *const c_void;
        if libc::dladdr(symbol, &mut info) == 0 || info.dli_fname.is_null() {
            return Err("cannot find the Python library among the loaded ones (dladdr)".into());
        }
        let handle = libc::dlopen(
            info.dli_fname,
            libc::RTLD_NOW | libc::RTLD_GLOBAL | libc::RTLD_NOLOAD,
        );
        if handle.is_null() {
            let path = CStr::from_ptr(info.dli_fname).to_string_lossy();
            return Err(format!(
                "cannot make {path}'s symbols global: {}",
                dl_error()
            ));
        }
    }
    Ok(())
}

fn dl_error() -> String {
    // SAFETY: dlerror returns null or a NUL-terminated message owned by the loader.
    unsafe {
        let message = libc::dlerror();
        if message.is_null() {
            "unknown error".into()
        } else {
            CStr::from_ptr(message).to_string_lossy().into_owned()
        }
    }
}

fn load_shim(py: Python<'_>) -> PyResult<()> {
    let code = CString::new(include_str!("shim.py")).expect("shim.py has no NUL");
    let module = PyModule::from_code(py, &code, c"sockserv/shim.py", c"_sockserv")?;
    py.import("sys")?
        .getattr("modules")?
        .set_item("_sockserv", &module)?;
    let _ = SHIM.set(module.unbind());
    Ok(())
}

/// An exception as Python prints it, traceback included (its `str` if even that fails).
pub fn describe(py: Python<'_>, err: &PyErr) -> String {
    let described = shim(py)
        .and_then(|shim| shim.call_method1("describe", (err.value(py),)))
        .and_then(|text| text.extract::<String>());
    described.unwrap_or_else(|_| err.to_string())
}

/// Flush `sys.stdout` and `sys.stderr` (see `shim.flush_std`).
pub fn flush_std(py: Python<'_>) {
    if let Ok(shim) = shim(py) {
        let _ = shim.call_method0("flush_std");
    }
}

/// Whether the fork in progress is one this plugin prepared (the GIL was not held by the forking
/// thread), and the GIL state to release after it.
static PREPARED: AtomicBool = AtomicBool::new(false);
static GIL_STATE: AtomicI32 = AtomicI32::new(0);

fn register_fork_handlers() -> Result<(), String> {
    // SAFETY: registers three `extern "C"` functions that live for the process (the library is
    // never unloaded).
    let result = unsafe {
        libc::pthread_atfork(
            Some(before_fork),
            Some(after_fork_parent),
            Some(after_fork_child),
        )
    };
    if result != 0 {
        return Err(format!("pthread_atfork failed: error {result}"));
    }
    Ok(())
}

extern "C" fn before_fork() {
    // SAFETY: the interpreter is initialized (the handlers are registered after it started).
    // PyGILState_Check says whether this thread holds the GIL: if it does, Python itself is
    // forking (os.fork) and does its own before/after calls. Otherwise take the GIL and prepare
    // as os.fork does.
    unsafe {
        if ffi::PyGILState_Check() == 1 {
            PREPARED.store(false, Ordering::SeqCst);
            return;
        }
        let state = ffi::PyGILState_Ensure();
        GIL_STATE.store(state as i32, Ordering::SeqCst);
        PREPARED.store(true, Ordering::SeqCst);
        ffi::PyOS_BeforeFork();
    }
}

extern "C" fn after_fork_parent() {
    if PREPARED.load(Ordering::SeqCst) {
        // SAFETY: pairs with `before_fork`, on the same thread, GIL held.
        unsafe {
            ffi::PyOS_AfterFork_Parent();
            ffi::PyGILState_Release(gil_state());
        }
    }
}

extern "C" fn after_fork_child() {
    if PREPARED.load(Ordering::SeqCst) {
        // SAFETY: pairs with `before_fork`: the child's only thread holds the GIL.
        unsafe {
            ffi::PyOS_AfterFork_Child();
            ffi::PyGILState_Release(gil_state());
        }
    }
}

fn gil_state() -> ffi::PyGILState_STATE {
    if GIL_STATE.load(Ordering::SeqCst) == ffi::PyGILState_STATE::PyGILState_LOCKED as i32 {
        ffi::PyGILState_STATE::PyGILState_LOCKED
    } else {
        ffi::PyGILState_STATE::PyGILState_UNLOCKED
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_minor_version_passes_and_another_is_refused_naming_both() {
        let same = format!("{BUILT_MINOR}.99 (main, Jan 1 2030, 00:00:00) [GCC]");
        assert_eq!(check_version(same), Ok(()));
        let refused = check_version("2.7.18 (default) [GCC]".into()).unwrap_err();
        assert!(
            refused.contains(BUILT_VERSION) && refused.contains("2.7.18"),
            "{refused}"
        );
        assert!(refused.contains("PYO3_PYTHON"), "{refused}");
    }
}
