//! Loading a plugin library: open it for good, find its entry symbol and call it. The table the
//! entry returns is read by [`super::table`], through raw pointers. Every `unsafe` of the plugin host
//! that concerns opening the library is here; each block says what it relies on.

use std::path::Path;

use libloading::Library;
use sockserv_plugin::abi::{EntryFn, PluginTable, ENTRY_SYMBOL};

use super::{table, LoadedPlugin, PluginError};

/// Load the plugin at `path`, check its magic, ABI version and tables, and keep it loaded for the
/// rest of the process.
///
/// # Safety
///
/// The library at `path` must be trusted code: opening it runs its initialisers in this process,
/// `load` calls its entry, and every request later runs its handlers here, with this process's
/// memory and privileges. What `load` checks of the table (magic, versions, sizes, null functions,
/// UTF-8 texts) protects against a library built for another ABI or a broken table, not against
/// a library that lies: its pointers must point where they say and its functions follow the ABI.
/// Load plugins before starting threads or forking servers, as the config loader does.
///
/// # Errors
///
/// A [`PluginError`] naming `path` when the file is not a shared library, has no entry symbol, or
/// its table is refused (no magic, another ABI major version, a table too small, a null required
/// function, a name that is not UTF-8).
pub unsafe fn load(path: &Path) -> Result<LoadedPlugin, PluginError> {
    // SAFETY: the caller vouches for the library, which is all opening it and calling its entry
    // rely on.
    let table = unsafe { entry_table(path)? };
    // SAFETY: the library is never unloaded, so what the table points at lives for the process;
    // that it is laid out as the ABI says is part of the caller's trust in the library.
    unsafe { table::read(path, table) }
}

/// Open the library (for good) and call its entry function. The table is not looked at here.
///
/// # Safety
///
/// As for [`load`]: the library is trusted code.
unsafe fn entry_table(path: &Path) -> Result<*const PluginTable, PluginError> {
    // SAFETY: loading a library runs its initialisers; the caller vouches for them.
    let library = unsafe { Library::new(path) }.map_err(|err| not_a_library(path, &err))?;
    // Never unloaded: the tables, the functions and any thread-local destructors live in it.
    let library: &'static Library = Box::leak(Box::new(library));
    // SAFETY: the symbol's type is the ABI's entry type; a library exporting the name with another
    // type breaks the ABI's one rule about that symbol.
    let entry = unsafe { library.get::<EntryFn>(ENTRY_SYMBOL) }
        .map_err(|_| PluginError::MissingEntry { path: path.into() })?;
    // SAFETY: the entry takes no arguments and returns a pointer to a static table or null.
    Ok(unsafe { entry() })
}

/// The loader's own reason (`dlerror`'s text: "No such file or directory", "invalid ELF header"),
/// which libloading keeps as the error's source while its `Display` says only "dlopen failed".
/// dlerror starts with the path, which [`PluginError`]'s `Display` already names, so it is cut.
fn not_a_library(path: &Path, error: &libloading::Error) -> PluginError {
    let reason =
        std::error::Error::source(error).map_or_else(|| error.to_string(), |e| e.to_string());
    let named = format!("{}: ", path.display());
    let message = reason.strip_prefix(&named).unwrap_or(&reason).to_string();
    PluginError::NotALibrary {
        path: path.into(),
        message,
    }
}
