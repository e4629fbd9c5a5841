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
/// # Errors
///
/// A [`PluginError`] naming `path` when the file is not a shared library, has no entry symbol, or
/// its table is refused (no magic, another ABI major version, a table too small, a null required
/// function, a name that is not UTF-8).
pub fn load(path: &Path) -> Result<LoadedPlugin, PluginError> {
    let table = entry_table(path)?;
    // SAFETY: the library is never unloaded, so what the table points at lives for the process;
    // that it is laid out as the ABI says is the plugin's side of the trust `load` rests on.
    unsafe { table::read(path, table) }
}

/// Open the library (for good) and call its entry function. The table is not looked at here.
fn entry_table(path: &Path) -> Result<*const PluginTable, PluginError> {
    // SAFETY: loading a library runs its initialisers; plugins are trusted code (see the module doc
    // of `plugin`), and this happens before any thread of ours exists.
    let library = unsafe { Library::new(path) }.map_err(|err| PluginError::NotALibrary {
        path: path.into(),
        message: err.to_string(),
    })?;
    // Never unloaded: the tables, the functions and any thread-local destructors live in it.
    let library: &'static Library = Box::leak(Box::new(library));
    // SAFETY: the symbol's type is the ABI's entry type; a library exporting the name with another
    // type breaks the ABI's one rule about that symbol.
    let entry = unsafe { library.get::<EntryFn>(ENTRY_SYMBOL) }
        .map_err(|_| PluginError::MissingEntry { path: path.into() })?;
    // SAFETY: the entry takes no arguments and returns a pointer to a static table or null.
    Ok(unsafe { entry() })
}
