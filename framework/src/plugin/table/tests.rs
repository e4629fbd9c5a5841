//! The table reader against tables built in memory: at odd addresses, cut short, with null
//! entries, and with counts and sizes that cannot be right.

use std::ffi::c_void;

use sockserv_plugin::abi::{plugin_table, ErrorFn, HostIo, SessionIo, ABI_MINOR};

use super::*;

unsafe extern "C" fn create(_: Bytes, _: *mut c_void, _: ErrorFn) -> *mut c_void {
    std::ptr::null_mut()
}
unsafe extern "C" fn create_in(_: Bytes, _: Bytes, _: *mut c_void, _: ErrorFn) -> *mut c_void {
    std::ptr::null_mut()
}
unsafe extern "C" fn handle(_: *const c_void, _: *const HostIo) -> i32 {
    0
}
unsafe extern "C" fn destroy(_: *mut c_void) {}
unsafe extern "C" fn open(_: *const c_void, _: *const SessionIo) -> *mut c_void {
    std::ptr::null_mut()
}
unsafe extern "C" fn event(_: *mut c_void, _: u32, _: Bytes, _: *const SessionIo) -> i32 {
    0
}
unsafe extern "C" fn close(_: *mut c_void) {}

/// A complete 1.3 handler table with sessions and `create_in`, allowed under every strategy.
fn handler(name: &'static str) -> HandlerTable {
    HandlerTable {
        size: size_of::<HandlerTable>(),
        name: Bytes::from_static(name),
        summary: Bytes::from_static("a test handler"),
        socket_kinds: KIND_STREAM,
        strategies: STRATEGY_SYNC | STRATEGY_REACTOR,
        create: Some(create),
        handle_stream: Some(handle),
        handle_datagram: Some(handle),
        destroy: Some(destroy),
        session_open: Some(open),
        session_event: Some(event),
        session_close: Some(close),
        create_in: Some(create_in),
    }
}

/// `table` claiming to be `size` bytes.
fn at_size(mut table: HandlerTable, size: usize) -> HandlerTable {
    table.size = size;
    table
}

/// A plugin whose table and handler tables (the first `stride` bytes of each of `handlers`)
/// lie in one byte buffer from an odd address on; `edit` may change the plugin table before it
/// is read.
fn read_laid_out(
    handlers: &[HandlerTable],
    stride: usize,
    edit: impl FnOnce(&mut PluginTable),
) -> Result<LoadedPlugin, PluginError> {
    let start = 1 + size_of::<PluginTable>();
    let mut buffer = vec![0u8; start + stride * handlers.len()];
    let base = buffer.as_mut_ptr();
    for (index, table) in handlers.iter().enumerate() {
        let at = start + index * stride;
        let from: *const HandlerTable = table;
        let len = stride.min(size_of::<HandlerTable>());
        // SAFETY: both ranges are in bounds (`stride` bytes at `at`, at most the table's own).
        unsafe { std::ptr::copy_nonoverlapping(from.cast(), base.add(at), len) };
    }
    let mut table = PluginTable {
        // SAFETY: `start` is inside the buffer.
        handlers: unsafe { base.add(start) }.cast(),
        handler_count: handlers.len(),
        ..plugin_table("laid-out", "1.2.3", &[])
    };
    edit(&mut table);
    // SAFETY: the plugin table fits at offset 1.
    unsafe { base.add(1).cast::<PluginTable>().write_unaligned(table) };
    // SAFETY: laid out as the ABI says, in a buffer that outlives the call.
    unsafe { read(Path::new("libt.so"), base.add(1).cast()) }
}

fn refusal(result: Result<LoadedPlugin, PluginError>) -> String {
    result.map(|_| ()).unwrap_err().to_string()
}

#[test]
fn tables_are_read_at_any_alignment_and_at_their_own_size() {
    let plugin = read_laid_out(
        &[handler("one"), handler("two")],
        size_of::<HandlerTable>(),
        |_| {},
    )
    .unwrap();
    assert_eq!(
        (plugin.name.as_str(), plugin.version.as_str()),
        ("laid-out", "1.2.3")
    );
    assert_eq!(plugin.abi, (ABI_MAJOR, ABI_MINOR));
    assert_eq!(plugin.handlers[1].name, "two");
    assert!(plugin.handlers[1].entries.sessions.is_some());
    assert!(plugin.handlers[1].entries.create_in.is_some());
    // ABI 1.1's size: sessions, but `create_in` lies past each table's end, and is not read.
    let v1_1 = |name| at_size(handler(name), HANDLER_TABLE_V1_1);
    let older = read_laid_out(&[v1_1("one"), v1_1("two")], HANDLER_TABLE_V1_1, |_| {}).unwrap();
    assert!(older.handlers[1].entries.sessions.is_some());
    assert!(older.handlers.iter().all(|h| h.entries.create_in.is_none()));
    assert!(plugin.handlers[1]
        .strategies
        .contains(&StrategyKind::Reactor));
    // ABI 1.0's size: the session entries lie past each table's end, and are not read.
    let v1_0 = |name| at_size(handler(name), HANDLER_TABLE_V1);
    let old = read_laid_out(&[v1_0("one"), v1_0("two")], HANDLER_TABLE_V1, |_| {}).unwrap();
    assert_eq!(old.handlers[1].name, "two");
    assert!(old.handlers.iter().all(|h| h.entries.sessions.is_none()));
    assert!(!old.handlers[0].strategies.contains(&StrategyKind::Reactor));
}

#[test]
fn a_null_table_another_magic_or_another_major_is_refused() {
    let path = Path::new("libt.so");
    // SAFETY: null is allowed.
    let null = unsafe { read(path, std::ptr::null()) };
    assert!(matches!(null, Err(PluginError::WrongMagic { .. })));
    let magic = read_laid_out(&[], 0, |table| table.magic = *b"SOCKSERW");
    assert!(matches!(magic, Err(PluginError::WrongMagic { .. })));
    let major = read_laid_out(&[], 0, |table| table.abi_major = 7);
    assert!(matches!(major, Err(PluginError::AbiMajor { found: 7, .. })));
}

#[test]
fn a_plugin_table_that_is_only_its_header_is_refused_reading_only_the_header() {
    #[repr(C)]
    struct Header {
        magic: [u8; 8],
        abi_major: u32,
        abi_minor: u32,
        size: usize,
    }
    // Boxed, so the allocation ends where the header does.
    let header = Box::new(Header {
        magic: ABI_MAGIC,
        abi_major: ABI_MAJOR,
        abi_minor: 0,
        size: size_of::<Header>(),
    });
    let at: *const Header = &*header;
    // SAFETY: the header is all a table must have before its size is checked.
    let result = unsafe { read(Path::new("libt.so"), at.cast()) };
    assert_eq!(
        refusal(result),
        format!(
            "libt.so: malformed plugin table: the plugin table is {} bytes, smaller than ABI \
             1.0's {PLUGIN_TABLE_V1}",
            size_of::<Header>()
        )
    );
}

#[test]
fn a_handler_table_shorter_than_1_0s_is_refused() {
    let short = HANDLER_TABLE_V1 - size_of::<usize>();
    assert_eq!(
        refusal(read_laid_out(
            &[at_size(handler("one"), short)],
            short,
            |_| {}
        )),
        format!(
            "libt.so: malformed plugin table: handler table 1 is {short} bytes, smaller than \
             ABI 1.0's {HANDLER_TABLE_V1}"
        )
    );
}

/// Empties one field of a handler table.
type Blank = fn(&mut HandlerTable);

#[test]
fn every_null_required_entry_is_refused_by_name() {
    let blanks: [(&str, Blank); 4] = [
        ("create", |t| t.create = None),
        ("handle_stream", |t| t.handle_stream = None),
        ("handle_datagram", |t| t.handle_datagram = None),
        ("destroy", |t| t.destroy = None),
    ];
    for (entry, blank) in blanks {
        let mut hollow = handler("hollow");
        blank(&mut hollow);
        let result = read_laid_out(
            &[handler("fine"), hollow],
            size_of::<HandlerTable>(),
            |_| {},
        );
        assert_eq!(
            refusal(result),
            format!("libt.so: handler \"hollow\": required entry \"{entry}\" is null")
        );
    }
}

#[test]
fn a_partial_set_of_session_entries_means_no_sessions() {
    let mut table = handler("half");
    table.session_event = None;
    let plugin = read_laid_out(&[table], size_of::<HandlerTable>(), |_| {}).unwrap();
    assert!(plugin.handlers[0].entries.sessions.is_none());
    assert!(!plugin.handlers[0]
        .strategies
        .contains(&StrategyKind::Reactor));
}

#[test]
fn an_array_that_cannot_be_right_is_refused_before_it_is_read() {
    let stride = size_of::<HandlerTable>();
    let missing = read_laid_out(&[], 0, |table| {
        table.handlers = std::ptr::null();
        table.handler_count = 2;
    });
    assert_eq!(
        refusal(missing),
        "libt.so: malformed plugin table: handler_count is 2 but handlers is null"
    );
    let huge = read_laid_out(&[handler("one")], stride, |table| {
        table.handler_count = usize::MAX
    });
    assert!(
        refusal(huge).contains("handler tables of"),
        "too many tables"
    );
    let mixed = read_laid_out(
        &[handler("one"), at_size(handler("two"), 8)],
        stride,
        |_| {},
    );
    assert_eq!(
        refusal(mixed),
        format!(
            "libt.so: malformed plugin table: handler table 2 is 8 bytes, but the first is \
             {stride}: the tables of one plugin share a layout"
        )
    );
}

#[test]
fn texts_that_are_null_or_not_utf8_are_refused() {
    let mut table = handler("x");
    table.name = Bytes {
        ptr: std::ptr::null(),
        len: 3,
    };
    assert_eq!(
        refusal(read_laid_out(&[table], size_of::<HandlerTable>(), |_| {})),
        "libt.so: malformed plugin table: handler table 1: name is null or not UTF-8"
    );
    let version = read_laid_out(&[], 0, |table| table.version = Bytes::of(b"\xff"));
    assert_eq!(
        refusal(version),
        "libt.so: malformed plugin table: version is null or not UTF-8"
    );
}
