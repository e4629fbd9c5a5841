//! Reading the table a plugin's entry returned, and its handler tables, without trusting their
//! layout further than the ABI lets the host know it.
//!
//! Nothing here forms a reference into the plugin's memory. The header every version shares
//! (magic, major and minor version, size) is read field by field through raw pointers; only once
//! the table's own `size` is known to cover ABI 1.0's fields is the table copied, at most at its own
//! size, into a zeroed table of this host's layout, so a shorter (older) table's missing fields read
//! as zero and nothing past its end is touched. Every value read is then checked: the names must be
//! UTF-8 and the required functions non-null, before the host keeps them as [`Entries`].

use std::mem::{offset_of, size_of, MaybeUninit};
use std::path::Path;

use sockserv_plugin::abi::{
    Bytes, HandlerTable, PluginTable, ABI_MAGIC, ABI_MAJOR, KIND_DATAGRAM, KIND_STREAM,
    STRATEGY_FORKING, STRATEGY_REACTOR, STRATEGY_SYNC, STRATEGY_THREADING,
};

use super::host::{Entries, SessionEntries};
use super::{LoadedPlugin, PluginError, PluginHandlerInfo};
use crate::{SocketKind, StrategyKind};

/// The size of the first version of each table: a plugin's table may be larger (a newer minor
/// version appended fields), never smaller.
const PLUGIN_TABLE_V1: usize = size_of::<PluginTable>();
const HANDLER_TABLE_V1: usize = offset_of!(HandlerTable, session_open);
/// A handler table this large has ABI 1.1's session entries.
const HANDLER_TABLE_V1_1: usize = offset_of!(HandlerTable, create_in);
/// A handler table this large has ABI 1.3's `create_in`.
const HANDLER_TABLE_V1_3: usize = size_of::<HandlerTable>();

/// Read and check the plugin table at `table` (what the entry returned).
///
/// # Safety
///
/// `table` is null or points at a plugin table as the ABI lays it out, at any alignment: readable
/// for the header every version has (magic, versions, size) and, if it has the magic and the major
/// version, for its own `size` bytes; its handler array readable for `handler_count` tables of the
/// first one's `size`; each of its texts for its length. The functions it names stay callable for
/// as long as the returned plugin is used.
pub(super) unsafe fn read(
    path: &Path,
    table: *const PluginTable,
) -> Result<LoadedPlugin, PluginError> {
    // SAFETY: the caller's promise.
    let own = unsafe { plugin_table(path, table)? };
    // SAFETY: the caller's promise for the handler array.
    let handlers = unsafe { handler_tables(path, &own)? };
    let refused = |what: &str| malformed(path, what.into());
    Ok(LoadedPlugin {
        path: path.into(),
        // SAFETY: the caller's promise for the texts.
        name: unsafe { utf8(own.name) }.ok_or_else(|| refused("name is null or not UTF-8"))?,
        // SAFETY: as above.
        version: unsafe { utf8(own.version) }
            .ok_or_else(|| refused("version is null or not UTF-8"))?,
        abi: (own.abi_major, own.abi_minor),
        handlers: handlers
            .iter()
            .enumerate()
            // SAFETY: each handler table came from the plugin with the texts it points at.
            .map(|(index, handler)| unsafe { describe(path, index, handler) })
            .collect::<Result<_, _>>()?,
    })
}

/// The header, checked field by field, then a copy of the table.
///
/// # Safety
///
/// As for [`read`].
unsafe fn plugin_table(path: &Path, table: *const PluginTable) -> Result<PluginTable, PluginError> {
    if table.is_null() {
        return Err(PluginError::WrongMagic { path: path.into() });
    }
    // SAFETY: a table has at least the header; each field is read on its own, unaligned, and the
    // later ones only once the earlier say this is a table of ours.
    let magic = unsafe { (&raw const (*table).magic).read_unaligned() };
    if magic != ABI_MAGIC {
        return Err(PluginError::WrongMagic { path: path.into() });
    }
    // SAFETY: as above.
    let major = unsafe { (&raw const (*table).abi_major).read_unaligned() };
    if major != ABI_MAJOR {
        return Err(PluginError::AbiMajor {
            path: path.into(),
            found: major,
            expected: ABI_MAJOR,
        });
    }
    // SAFETY: as above.
    let size = unsafe { (&raw const (*table).size).read_unaligned() };
    if size < PLUGIN_TABLE_V1 {
        return Err(malformed(
            path,
            format!("the plugin table is {size} bytes, smaller than ABI 1.0's {PLUGIN_TABLE_V1}"),
        ));
    }
    // SAFETY: the table is `size` bytes, the caller's promise.
    Ok(unsafe { read_prefix(table.cast(), size) })
}

/// The plugin's handler tables, copied into this ABI version's layout. The array's stride is the
/// first table's `size`: tables built for an older minor version are shorter, and the fields they
/// lack are optional ones, which read as `None` from zeroed memory.
///
/// # Safety
///
/// `table.handlers` is null or points at `table.handler_count` tables of the first one's `size`.
unsafe fn handler_tables(
    path: &Path,
    table: &PluginTable,
) -> Result<Vec<HandlerTable>, PluginError> {
    let count = table.handler_count;
    if count == 0 {
        return Ok(Vec::new());
    }
    if table.handlers.is_null() {
        let what = format!("handler_count is {count} but handlers is null");
        return Err(malformed(path, what));
    }
    let base = table.handlers.cast::<u8>();
    // SAFETY: every handler table starts with its size, and there is a first one (count > 0).
    let stride = unsafe { base.cast::<usize>().read_unaligned() };
    if stride < HANDLER_TABLE_V1 {
        let what =
            format!("handler table 1 is {stride} bytes, smaller than ABI 1.0's {HANDLER_TABLE_V1}");
        return Err(malformed(path, what));
    }
    if stride
        .checked_mul(count)
        .is_none_or(|total| total > isize::MAX as usize)
    {
        let what = format!("{count} handler tables of {stride} bytes cannot be in memory");
        return Err(malformed(path, what));
    }
    (0..count)
        .map(|index| {
            // SAFETY: `index * stride` is inside the array, whose size was checked to fit an isize.
            let at = unsafe { base.add(index * stride) };
            // SAFETY: table `index` starts with its size.
            let size = unsafe { at.cast::<usize>().read_unaligned() };
            if size != stride {
                let what = format!(
                    "handler table {} is {size} bytes, but the first is {stride}: the tables of \
                     one plugin share a layout",
                    index + 1
                );
                return Err(malformed(path, what));
            }
            // SAFETY: table `index` spans `stride` bytes, which cover ABI 1.0's fields.
            Ok(unsafe { read_prefix(at, stride) })
        })
        .collect()
}

/// Table types whose every bit pattern is a value: numbers, addresses and nullable function
/// pointers, without padding. [`read_prefix`] may fill them with a plugin's bytes and zeros.
///
/// # Safety
///
/// Implement only for such types.
unsafe trait AnyBits {}

// SAFETY: bytes, `u32`s, `usize`s, `Bytes` (an address and a length) and a raw pointer, packed.
unsafe impl AnyBits for PluginTable {}
// SAFETY: a `usize`, `Bytes`, `u32`s, then `Option`s of function pointers, packed; any non-null
// address is a function pointer's value, and null is `None`.
unsafe impl AnyBits for HandlerTable {}

/// A `T` from the first `size` bytes at `src` (at most `T`'s own size) over an all-zero `T`: the
/// fields a shorter table lacks read as zero, and nothing past `size` is touched.
///
/// # Safety
///
/// `src` is readable for `min(size, size_of::<T>())` bytes; it need not be aligned.
unsafe fn read_prefix<T: AnyBits>(src: *const u8, size: usize) -> T {
    let mut own = MaybeUninit::<T>::zeroed();
    // SAFETY: `src` by the caller's promise, `own` is ours and `size_of::<T>()` long; zeros with a
    // prefix of the plugin's bytes are a `T`, since any bits are (`AnyBits`).
    unsafe {
        std::ptr::copy_nonoverlapping(src, own.as_mut_ptr().cast(), size.min(size_of::<T>()));
        own.assume_init()
    }
}

/// The host's view of handler table `index` (0-based): names, flags and checked functions.
///
/// # Safety
///
/// The table's texts point at their lengths of readable bytes.
unsafe fn describe(
    path: &Path,
    index: usize,
    table: &HandlerTable,
) -> Result<PluginHandlerInfo, PluginError> {
    // SAFETY: the caller's promise.
    let name = unsafe { utf8(table.name) }.ok_or_else(|| {
        malformed(
            path,
            format!("handler table {}: name is null or not UTF-8", index + 1),
        )
    })?;
    // SAFETY: as above.
    let summary = unsafe { utf8(table.summary) }.ok_or_else(|| {
        malformed(
            path,
            format!("handler \"{name}\": summary is null or not UTF-8"),
        )
    })?;
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
    let create_in = table.create_in.filter(|_| table.size >= HANDLER_TABLE_V1_3);
    Ok(Entries {
        create: table.create.ok_or("create")?,
        create_in,
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

fn malformed(path: &Path, what: String) -> PluginError {
    PluginError::Malformed {
        path: path.into(),
        what,
    }
}

/// Static text from a plugin table; `None` when it is null (with a length) or not UTF-8.
///
/// # Safety
///
/// A non-null `bytes.ptr` points at `bytes.len` readable bytes.
unsafe fn utf8(bytes: Bytes) -> Option<String> {
    if bytes.len == 0 {
        return Some(String::new());
    }
    if bytes.ptr.is_null() || bytes.len > isize::MAX as usize {
        return None;
    }
    // SAFETY: the caller's promise; non-null and not too long for a slice.
    let slice = unsafe { std::slice::from_raw_parts(bytes.ptr, bytes.len) };
    String::from_utf8(slice.to_vec()).ok()
}

#[cfg(test)]
mod tests;
