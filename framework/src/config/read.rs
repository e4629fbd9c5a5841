//! Phase 1: the TOML text becomes the raw structs of `raw.rs`, with every problem the structure of
//! the file has — a key no table has (with the closest known key), a value of the wrong type, a
//! required key missing, a key set twice — collected in one list rather than stopping at the
//! first, so one `sockserv check` shows them all. What could be read goes on to phase 2, which
//! finds the rest; a value that could not be read is left out and reported once, here.
//!
//! Only a TOML syntax error stops everything: past it the parser's recovery is a guess, so its
//! errors (all of them) are reported alone.

use toml::de::{DeTable, DeValue, ValueDeserializer};
use toml::Spanned;

use super::error::{ConfigError, ConfigErrorKind, Source};
use super::raw::{OptionPlace, RawFile, RawOptions, RawPlugin, RawServer, RawSocket};
use super::table::{Nested, Outer, TableReader};
use super::{proxy_protocol, server_limits, tls};

const FILE_KEYS: &[&str] = &["user", "group", "server", "plugin"];

const SERVER_KEYS: &[&str] = &[
    "name",
    "listen",
    "handler",
    "strategy",
    "max_threads",
    "max_children",
    "workers",
    "queue",
    "loops",
    "datagrams",
    "max_packet_size",
    "timeout",
    "drain_timeout",
    "socket",
    "limits",
    "proxy_protocol",
    "tls",
    "options",
];

const SOCKET_KEYS: &[&str] = &[
    "reuse_address",
    "reuse_port",
    "nodelay",
    "recv_buffer_size",
    "send_buffer_size",
    "request_queue_size",
    "v6only",
    "unix_mode",
    "owner",
    "group",
];

const PLUGIN_KEYS: &[&str] = &["path", "disable_after_panics"];

const SERVER_NEEDS: &str = "every [[server]] needs name, listen and handler";
const PLUGIN_NEEDS: &str = "every [[plugin]] needs the path of its library";

/// The raw file and every phase 1 problem in it (unsorted), or, when the text is not TOML, its
/// syntax errors alone.
pub(super) fn read(source: Source<'_>) -> Result<(RawFile, Vec<ConfigError>), Vec<ConfigError>> {
    let (document, parse_errors) = DeTable::parse_recoverable(source.text);
    let (duplicates, syntax): (Vec<_>, Vec<_>) =
        (parse_errors.iter()).partition(|error| error.message() == DUPLICATE_KEY);
    if !syntax.is_empty() {
        // Duplicate keys too: without the document, the server they are in is not known.
        let errors = parse_errors
            .iter()
            .map(|error| toml_error(source, error, &[]));
        return Err(errors.collect());
    }
    let document = Spanned::new(document.span(), document.get_ref());
    let (raw, headers, mut errors) = read_document(document, source);
    errors.extend(
        duplicates
            .iter()
            .map(|error| toml_error(source, error, &headers)),
    );
    Ok((raw, errors))
}

/// Where a `[[server]]` or `[[plugin]]` table starts, to say in which server a duplicate key is.
struct Header {
    /// The table's first byte.
    start: usize,
    /// The server's name; `None` for a plugin, or a server without a readable name.
    server: Option<String>,
}

/// The parser's message for a key set twice. It is matched as text, the parser having no error
/// kinds; were its wording to change, a duplicate key would be reported as a syntax error, alone
/// and without the key's name (the tests would say so).
const DUPLICATE_KEY: &str = "duplicate key";

/// A problem the parser found. A duplicate key is named (the parser says only "duplicate key"),
/// with the server it is in.
fn toml_error(source: Source<'_>, error: &toml::de::Error, headers: &[Header]) -> ConfigError {
    let span = error.span().unwrap_or(0..0);
    if error.message() != DUPLICATE_KEY {
        let message = error.message().trim_end().to_string();
        return source.error(Some(span), None, ConfigErrorKind::Toml { message });
    }
    let key = source.text.get(span.clone()).unwrap_or_default();
    let key = key.trim_matches(|c| c == '"' || c == '\'').to_string();
    let server = (headers.iter().rev())
        .find(|header| header.start <= span.start)
        .and_then(|header| header.server.as_deref());
    source.error(Some(span), server, ConfigErrorKind::DuplicateKey { key })
}

fn read_document<'d>(
    document: Spanned<&'d DeTable<'d>>,
    source: Source<'d>,
) -> (RawFile, Vec<Header>, Vec<ConfigError>) {
    let mut top = TableReader::new(document, "", source);
    let (mut raw, mut headers) = (RawFile::default(), Vec::new());
    raw.user = top.string("user");
    raw.group = top.string("group");
    for table in tables(&mut top, "plugin") {
        headers.push(Header {
            start: table.span().start,
            server: None,
        });
        let mut reader = top.nested(table, "");
        raw.plugin.extend(read_plugin(&mut reader));
        top.absorb(reader);
    }
    let servers = tables(&mut top, "server");
    let no_servers = servers.is_empty();
    for table in servers {
        let start = table.span().start;
        let mut reader = top.nested(table, "");
        let server = read_server(&mut reader);
        headers.push(Header {
            start,
            server: reader.server.clone(),
        });
        raw.server.extend(server);
        top.absorb(reader);
    }
    top.refuse_others(FILE_KEYS, None);
    if no_servers && !top.has_errors() {
        top.report(0..0, ConfigErrorKind::NoServers);
    }
    headers.sort_by_key(|header| header.start);
    (raw, headers, top.into_errors())
}

/// The tables of an array of tables (`[[server]]`); a single `[server]` table is refused with
/// how to write it.
fn tables<'d>(top: &mut TableReader<'d>, key: &'static str) -> Vec<Spanned<&'d DeTable<'d>>> {
    let Some(value) = top.value(key) else {
        return Vec::new();
    };
    let expected = if key == "server" {
        "[[server]] tables"
    } else {
        "[[plugin]] tables"
    };
    let items = match value.get_ref() {
        DeValue::Array(items) => items,
        DeValue::Table(_) => {
            let hint =
                format!("write [[{key}]], with double brackets, at the top of each {key}'s table");
            top.wrong_type(key, value, expected, Some(hint));
            return Vec::new();
        }
        _ => {
            top.wrong_type(key, value, expected, None);
            return Vec::new();
        }
    };
    let mut tables = Vec::new();
    for item in items.iter() {
        match item.get_ref().as_table() {
            Some(table) => tables.push(Spanned::new(item.span(), table)),
            None => top.wrong_type(key, item, expected, None),
        }
    }
    tables
}

fn read_plugin(reader: &mut TableReader<'_>) -> Option<RawPlugin> {
    let path = reader.required("path", PLUGIN_NEEDS);
    let disable_after_panics = reader.count("disable_after_panics");
    reader.refuse_others(PLUGIN_KEYS, None);
    Some(RawPlugin {
        path: path?,
        disable_after_panics,
    })
}

/// A server, if it has its three required keys; its problems are in `reader` either way.
fn read_server(reader: &mut TableReader<'_>) -> Option<RawServer> {
    let name = required(reader, "name");
    reader.server = name.as_ref().map(|name| name.get_ref().clone());
    let listen = required(reader, "listen");
    let handler = required(reader, "handler");
    let strategy = reader.string("strategy");
    let max_threads = reader.count("max_threads");
    let max_children = reader.count("max_children");
    let workers = reader.count("workers");
    let queue = reader.count("queue");
    let loops = reader.count("loops");
    let datagrams = reader.string("datagrams");
    let max_packet_size = reader.count("max_packet_size");
    let timeout = reader.seconds("timeout");
    let drain_timeout = reader.seconds("drain_timeout");
    let socket = read_socket(reader);
    let limits = server_limits::read(reader, SERVER_KEYS);
    let proxy_protocol = proxy_protocol::read(reader, SERVER_KEYS);
    let tls = tls::read(reader, SERVER_KEYS);
    let options = read_options(reader);
    let nested = Nested {
        key: "socket",
        known: SOCKET_KEYS,
    };
    reader.refuse_others(SERVER_KEYS, Some(nested));
    Some(RawServer {
        name: name?,
        listen: listen?,
        handler: handler?,
        strategy,
        max_threads,
        max_children,
        workers,
        queue,
        loops,
        datagrams,
        max_packet_size,
        timeout,
        drain_timeout,
        socket,
        limits,
        proxy_protocol,
        tls,
        options,
        unreadable: reader.unreadable.clone(),
    })
}

/// A required key of a server. One written below the `[server.socket]` header by mistake (so in
/// the socket table) is reported there, as belonging above it, and not here as missing too.
fn required(reader: &mut TableReader<'_>, key: &'static str) -> Option<Spanned<String>> {
    let socket = reader
        .value("socket")
        .and_then(|socket| socket.get_ref().as_table());
    if socket.is_some_and(|socket| socket.contains_key(key)) {
        return None;
    }
    reader.required(key, SERVER_NEEDS)
}

/// `[server.socket]`, or every default when there is none.
fn read_socket(server: &mut TableReader<'_>) -> RawSocket {
    let Some(table) = server.table("socket") else {
        return RawSocket::default();
    };
    let mut reader = server.nested(table, "socket.");
    let socket = RawSocket {
        reuse_address: reader.boolean("reuse_address").map(Spanned::into_inner),
        reuse_port: reader.boolean("reuse_port").map(Spanned::into_inner),
        nodelay: reader.boolean("nodelay"),
        recv_buffer_size: reader.count("recv_buffer_size"),
        send_buffer_size: reader.count("send_buffer_size"),
        request_queue_size: reader.count("request_queue_size"),
        v6only: reader.boolean("v6only"),
        unix_mode: reader.mode("unix_mode"),
        owner: reader.string("owner"),
        group: reader.string("group"),
    };
    let outer = Outer {
        keys: SERVER_KEYS,
        table: "[[server]]",
        header: "[server.socket]",
    };
    reader.refuse_others_within(SOCKET_KEYS, outer);
    server.absorb(reader);
    socket
}

/// `[server.options]` as the handler gets it, with the place of each key and value.
fn read_options(server: &mut TableReader<'_>) -> Option<Spanned<RawOptions>> {
    let table = server.table("options")?;
    let mut options = RawOptions::default();
    for (key, value) in table.get_ref().iter() {
        let place = OptionPlace {
            key: key.span(),
            value: value.span(),
        };
        match plain_value(value) {
            Ok(plain) => {
                options.places.insert(key.get_ref().to_string(), place);
                options.table.insert(key.get_ref().to_string(), plain);
            }
            Err(message) => server.report(value.span(), ConfigErrorKind::Toml { message }),
        }
    }
    Some(Spanned::new(table.span(), options))
}

/// A value as a `toml::Value`, for handlers, which take their options as a plain table.
fn plain_value(value: &Spanned<DeValue<'_>>) -> Result<toml::Value, String> {
    use serde::Deserialize;
    let deserializer = ValueDeserializer::from(value.clone());
    toml::Value::deserialize(deserializer).map_err(|error| error.message().to_string())
}
