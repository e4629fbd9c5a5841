//! Loading a plugin library and checking its table. Every `unsafe` of the plugin host that concerns
//! the library itself is here; each block says what it relies on.

use std::path::Path;

use libloading::Library;
use sockserv_plugin::abi::{
    Bytes, EntryFn, HandlerTable, PluginTable, ABI_MAGIC, ABI_MAJOR, ENTRY_SYMBOL, KIND_DATAGRAM,
    KIND_STREAM, STRATEGY_FORKING, STRATEGY_REACTOR, STRATEGY_SYNC, STRATEGY_THREADING,
};

use super::host::{Entries, SessionEntries};
use super::{LoadedPlugin, PluginError, PluginHandlerInfo};
use crate::{SocketKind, StrategyKind};

/// The size of the first version of each table: a plugin's table may be larger (a newer minor
/// version appended fields), never smaller.
const PLUGIN_TABLE_V1: usize = std::mem::size_of::<PluginTable>();
const HANDLER_TABLE_V1: usize = std::mem::offset_of!(HandlerTable, session_open);
/// A handler table this large has ABI 1.1's session entries.
const HANDLER_TABLE_V1_1: usize = std::mem::size_of::<HandlerTable>();

/// Load the plugin at `path`, check its magic, ABI version and tables, and keep it loaded for the
/// rest of the process.
pub fn load(path: &Path) -> Result<LoadedPlugin, PluginError> {
    let refused = |what: &str| PluginError::Malformed {
        path: path.into(),
        what: what.into(),
    };
    let table = entry_table(path)?;
    if table.magic != ABI_MAGIC {
        return Err(PluginError::WrongMagic { path: path.into() });
    }
    if table.abi_major != ABI_MAJOR {
        return Err(PluginError::AbiMajor {
            path: path.into(),
            found: table.abi_major,
            expected: ABI_MAJOR,
        });
    }
    if table.size < PLUGIN_TABLE_V1 {
        return Err(refused("plugin table smaller than ABI 1.0's"));
    }
    let handlers = handler_tables(table)
        .ok_or_else(|| refused("handler tables smaller than ABI 1.0's"))?
        .into_iter()
        .map(|handler| describe(path, handler))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(LoadedPlugin {
        path: path.into(),
        name: utf8(table.name).ok_or_else(|| refused("name is not UTF-8"))?,
        version: utf8(table.version).ok_or_else(|| refused("version is not UTF-8"))?,
        abi: (table.abi_major, table.abi_minor),
        handlers,
    })
}

/// Open the library (for good) and call its entry function.
fn entry_table(path: &Path) -> Result<&'static PluginTable, PluginError> {
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
    let table = unsafe { entry() };
    // SAFETY: non-null entries point at a static table that lives as long as the (leaked) library;
    // its first fields (magic, major) have the same layout in every ABI version.
    unsafe { table.as_ref() }.ok_or(PluginError::WrongMagic { path: path.into() })
}

/// The plugin's handler tables, each copied into this ABI version's layout: a table built for an
/// older minor version is shorter (its array's stride is its own `size`), and the fields it lacks
/// are optional ones, which read as `None` from zeroed memory. Copies live for the process, like
/// the library.
fn handler_tables(table: &'static PluginTable) -> Option<Vec<&'static HandlerTable>> {
    if table.handler_count == 0 || table.handlers.is_null() {
        return Some(Vec::new());
    }
    let base = table.handlers.cast::<u8>();
    // SAFETY: every handler table starts with its size; the first one is there (count > 0).
    let stride = unsafe { base.cast::<usize>().read_unaligned() };
    if stride < HANDLER_TABLE_V1 {
        return None;
    }
    let copy = std::mem::size_of::<HandlerTable>().min(stride);
    let tables = (0..table.handler_count).map(|index| {
        let mut own = std::mem::MaybeUninit::<HandlerTable>::zeroed();
        // SAFETY: handler `index` spans `stride` bytes at `base + index * stride` (the plugin's
        // array); we copy at most our own size of it into zeroed memory of our layout, so fields a
        // shorter table lacks stay zero, which is `None` for the optional fields that follow 1.0.
        let own = unsafe {
            std::ptr::copy_nonoverlapping(base.add(index * stride), own.as_mut_ptr().cast(), copy);
            own.assume_init()
        };
        &*Box::leak(Box::new(own))
    });
    Some(tables.collect())
}

fn describe(path: &Path, table: &HandlerTable) -> Result<PluginHandlerInfo, PluginError> {
    let refused = |what: &str| PluginError::Malformed {
        path: path.into(),
        what: what.into(),
    };
    if table.size < HANDLER_TABLE_V1 {
        return Err(refused("a handler table is smaller than ABI 1.0's"));
    }
    let name = utf8(table.name).ok_or_else(|| refused("a handler's name is not UTF-8"))?;
    let summary = utf8(table.summary)
        .ok_or_else(|| refused(&format!("handler \"{name}\": summary is not UTF-8")))?;
    let entries = entries(table).map_err(|entry| PluginError::NullEntry {
        path: path.into(),
        handler: name.clone(),
        entry,
    })?;
    Ok(PluginHandlerInfo {
        socket_kinds: socket_kinds(table.socket_kinds),
        strategies: strategies(table.strategies, entries.sessions.is_some()),
        name,
        summary,
        entries,
    })
}

/// A handler's functions, or the name of a required one that is null. The session entries count
/// only as a set: a table lacking any of them (null, or too old to have them) has no sessions.
fn entries(table: &HandlerTable) -> Result<Entries, &'static str> {
    let sessions = match (table.session_open, table.session_event, table.session_close) {
        (Some(open), Some(event), Some(close)) if table.size >= HANDLER_TABLE_V1_1 => {
            Some(SessionEntries { open, event, close })
        }
        _ => None,
    };
    Ok(Entries {
        create: table.create.ok_or("create")?,
        handle_stream: table.handle_stream.ok_or("handle_stream")?,
        handle_datagram: table.handle_datagram.ok_or("handle_datagram")?,
        destroy: table.destroy.ok_or("destroy")?,
        sessions,
    })
}

fn socket_kinds(flags: u32) -> Vec<SocketKind> {
    let mut kinds = Vec::new();
    if flags & KIND_STREAM != 0 {
        kinds.extend([SocketKind::Tcp, SocketKind::UnixStream]);
    }
    if flags & KIND_DATAGRAM != 0 {
        kinds.extend([SocketKind::Udp, SocketKind::UnixDatagram]);
    }
    kinds
}

/// The strategies a handler's flags allow. The pool runs blocking handlers as threading does; the
/// reactor needs the flag and ABI 1.1's session entries.
fn strategies(flags: u32, sessions: bool) -> Vec<StrategyKind> {
    [
        (STRATEGY_SYNC, StrategyKind::Sync),
        (STRATEGY_THREADING, StrategyKind::Threading),
        (STRATEGY_FORKING, StrategyKind::Forking),
        (STRATEGY_THREADING, StrategyKind::Pool),
        (
            if sessions { STRATEGY_REACTOR } else { 0 },
            StrategyKind::Reactor,
        ),
    ]
    .into_iter()
    .filter(|(flag, _)| flags & flag != 0)
    .map(|(_, kind)| kind)
    .collect()
}

/// Static text from a plugin table.
fn utf8(bytes: Bytes) -> Option<String> {
    if bytes.len == 0 {
        return Some(String::new());
    }
    if bytes.ptr.is_null() {
        return None;
    }
    // SAFETY: table strings point at `len` bytes of the plugin's static data.
    let slice = unsafe { std::slice::from_raw_parts(bytes.ptr, bytes.len) };
    String::from_utf8(slice.to_vec()).ok()
}
