//! The C header, `include/sockserv_plugin.h`, is the ABI's contract for plugins in C. It is
//! generated from `src/abi/mod.rs` by cbindgen and checked in; this test keeps it honest twice:
//! it regenerates the header and fails when the checked-in copy differs, and it compiles the header
//! with the system's C compiler against the Rust layouts — every struct's size and every field's
//! offset, and every constant — so a header that cbindgen got wrong fails here, not in a plugin.
//!
//! After changing the ABI: `SOCKSERV_BLESS=1 cargo test -p sockserv-plugin --test c_header`
//! rewrites the header; review its diff and commit it.

use std::fmt::Write as _;
use std::mem::{offset_of, size_of};
use std::path::{Path, PathBuf};
use std::process::Command;

use sockserv_plugin::abi::*;

fn sdk_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn header_path() -> PathBuf {
    sdk_dir().join("include/sockserv_plugin.h")
}

/// The header as cbindgen writes it from the SDK's source now.
fn generated() -> String {
    let config = cbindgen::Config::from_file(sdk_dir().join("cbindgen.toml"))
        .expect("cbindgen.toml is readable and valid");
    let bindings = cbindgen::Builder::new()
        .with_config(config)
        .with_src(sdk_dir().join("src/abi/mod.rs"))
        .generate()
        .expect("cbindgen reads src/abi/mod.rs");
    let mut out = Vec::new();
    bindings.write(&mut out);
    String::from_utf8(out).expect("the header is UTF-8")
}

#[test]
fn the_checked_in_header_is_what_cbindgen_generates_from_the_abi() {
    let fresh = generated();
    if std::env::var_os("SOCKSERV_BLESS").is_some() {
        std::fs::write(header_path(), &fresh).expect("cannot write the header");
    }
    let checked_in = std::fs::read_to_string(header_path()).unwrap_or_default();
    assert!(
        checked_in == fresh,
        "include/sockserv_plugin.h is not what cbindgen generates from src/abi/mod.rs: run \
         `SOCKSERV_BLESS=1 cargo test -p sockserv-plugin --test c_header` and commit the header"
    );
}

#[test]
fn the_header_spells_the_magic_and_the_entry_symbol_as_the_sdk_does() {
    let header = std::fs::read_to_string(header_path()).expect("the header is checked in");
    let magic = std::str::from_utf8(&ABI_MAGIC).unwrap();
    let entry = std::str::from_utf8(&ENTRY_SYMBOL[..ENTRY_SYMBOL.len() - 1]).unwrap();
    for line in [
        format!("#define SOCKSERV_ABI_MAGIC \"{magic}\""),
        format!("#define SOCKSERV_ENTRY_SYMBOL \"{entry}\""),
        format!("*{entry}(void);"),
    ] {
        assert!(header.contains(&line), "the header lacks {line}");
    }
}

/// The size of the field `field` picks.
fn field_size<T, F>(_field: fn(&T) -> &F) -> usize {
    size_of::<F>()
}

/// `_Static_assert`s on `sizeof` of a C struct and `offsetof` and `sizeof` of each named field, with the Rust
/// type's numbers. Listing the fields by hand is safe: one missing here still moves the size.
macro_rules! layout {
    ($out:expr, $rust:ty => $c:literal { $($field:ident),+ $(,)? }) => {{
        let out: &mut String = $out;
        writeln!(out, "_Static_assert(sizeof({}) == {}, \"size of {}\");",
            $c, size_of::<$rust>(), $c).unwrap();
        writeln!(out, "_Static_assert(_Alignof({}) == {}, \"alignment of {}\");",
            $c, std::mem::align_of::<$rust>(), $c).unwrap();
        $(
            writeln!(out, "_Static_assert(offsetof({}, {}) == {}, \"{}.{}\");",
                $c, stringify!($field), offset_of!($rust, $field), $c, stringify!($field)).unwrap();
            writeln!(out, "_Static_assert(sizeof((({} *)0)->{}) == {}, \"size of {}.{}\");",
                $c, stringify!($field), field_size(|t: &$rust| &t.$field), $c,
                stringify!($field)).unwrap();
        )+
    }};
}

/// A C file that includes the header and asserts the Rust layouts and constants.
fn layout_checks() -> String {
    let mut c = String::from("#include <stddef.h>\n#include \"sockserv_plugin.h\"\n");
    layout!(&mut c, Bytes => "SockservBytes" { ptr, len });
    layout!(&mut c, PluginTable => "SockservPluginTable" {
        magic, abi_major, abi_minor, size, name, version, handlers, handler_count,
    });
    layout!(&mut c, HandlerTable => "SockservHandlerTable" {
        size, name, summary, socket_kinds, strategies, create, handle_stream, handle_datagram,
        destroy, session_open, session_event, session_close, create_in,
    });
    layout!(&mut c, HostIo => "SockservHostIo" {
        size, kind, peer, local, server_name, reader, read, writer, write, ctx, log, fail,
        shutdown_server, shutdown_connection, tls,
    });
    layout!(&mut c, SessionIo => "SockservSessionIo" {
        size, peer, local, server_name, ctx, write, close, pending, fail, server, log,
        shutdown_server, waker, wake, release_waker, tls,
    });
    layout!(&mut c, TlsPeer => "SockservTlsPeer" {
        size, version, cipher_suite, alpn, server_name, client_subject, client_common_name,
        client_cert_der,
    });
    for (name, value) in [
        ("ABI_MAJOR", ABI_MAJOR),
        ("ABI_MINOR", ABI_MINOR),
        ("KIND_STREAM", KIND_STREAM),
        ("KIND_DATAGRAM", KIND_DATAGRAM),
        ("STRATEGY_SYNC", STRATEGY_SYNC),
        ("STRATEGY_THREADING", STRATEGY_THREADING),
        ("STRATEGY_FORKING", STRATEGY_FORKING),
        ("STRATEGY_REACTOR", STRATEGY_REACTOR),
        ("EVENT_OPEN", EVENT_OPEN),
        ("EVENT_DATA", EVENT_DATA),
        ("EVENT_EOF", EVENT_EOF),
        ("EVENT_WAKE", EVENT_WAKE),
    ] {
        writeln!(c, "_Static_assert(SOCKSERV_{name} == {value}, \"{name}\");").unwrap();
    }
    for (name, value) in [
        ("STATUS_OK", STATUS_OK),
        ("STATUS_ERROR", STATUS_ERROR),
        ("STATUS_PANIC", STATUS_PANIC),
    ] {
        writeln!(c, "_Static_assert(SOCKSERV_{name} == {value}, \"{name}\");").unwrap();
    }
    // The function pointer fields take what the SDK's aliases say (a wrong parameter list is a
    // compile error under -Werror through the incompatible-pointer warning).
    c.push_str(
        "static void check_types(SockservHandlerTable *t, SockservEntryFn entry) {\n\
         \x20   (void)t; (void)entry;\n\
         \x20   SockservEntryFn mine = sockserv_plugin_entry;\n\
         \x20   (void)mine;\n\
         }\n\
         void (*use_check_types)(SockservHandlerTable *, SockservEntryFn) = check_types;\n",
    );
    c
}

#[test]
fn the_header_compiles_in_c11_and_matches_the_rust_layouts() {
    let dir = std::env::temp_dir().join(format!("sockserv-c-header-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let source = dir.join("layout.c");
    std::fs::write(&source, layout_checks()).unwrap();
    let include = sdk_dir().join("include");
    let output = Command::new(std::env::var("CC").unwrap_or_else(|_| "cc".into()))
        .args([
            "-std=c11",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-pedantic",
            "-fsyntax-only",
        ])
        .arg("-I")
        .arg(&include)
        .arg(&source)
        .output()
        .expect("no C compiler: install one (`cc`), as .ci/run does");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        output.status.success(),
        "the header does not match the Rust layouts:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}
