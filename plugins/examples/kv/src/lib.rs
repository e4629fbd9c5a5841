//! Example plugin: a tiny key-value command protocol, with a store of its own per connection — the
//! state a plugin keeps between the lines of one request.
//!
//! ```text
//! SET name Ada      -> OK
//! GET name          -> VALUE Ada
//! GET nobody        -> NOT_FOUND
//! DEL name          -> DELETED | NOT_FOUND
//! KEYS              -> KEYS name other
//! QUIT              -> BYE (and the connection closes)
//! anything else     -> ERR <why>
//! ```
//!
//! Options (`[server.options]`): `max_keys` (default 1000), `max_line` (default 4096 bytes).

use std::collections::BTreeMap;
use std::io::{BufRead, Read};
use std::sync::Arc;

use serde::Deserialize;
use sockserv_plugin::{
    export_plugin, HandlerError, HandlerResult, LogLevel, PluginHandler, Request, RequestHandler,
};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Options {
    max_keys: usize,
    max_line: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            max_keys: 1000,
            max_line: 4096,
        }
    }
}

/// One connection's store.
pub struct Kv {
    options: Arc<Options>,
    store: BTreeMap<String, String>,
}

impl PluginHandler for Kv {
    type Options = Options;
    const NAME: &'static str = "kv";
    const SUMMARY: &'static str = "line-based key-value store, one store per connection";
    const SOCKET_KINDS: u32 = sockserv_plugin::abi::KIND_STREAM;

    fn options(json: &str) -> Result<Options, String> {
        let options: Options = sockserv_plugin::from_json(json)?;
        if options.max_keys == 0 || options.max_line < 16 {
            return Err("max_keys must be positive and max_line at least 16".into());
        }
        Ok(options)
    }

    fn new(options: &Arc<Options>) -> Self {
        Kv {
            options: Arc::clone(options),
            store: BTreeMap::new(),
        }
    }
}

/// What a command line asks for.
#[derive(Debug, PartialEq)]
enum Command<'a> {
    Set(&'a str, &'a str),
    Get(&'a str),
    Del(&'a str),
    Keys,
    Quit,
}

fn parse(line: &str) -> Result<Command<'_>, String> {
    let line = line.trim_end_matches(['\r', '\n']);
    let mut words = line.splitn(3, ' ');
    let verb = words.next().unwrap_or_default().to_ascii_uppercase();
    let (key, rest) = (words.next().filter(|k| !k.is_empty()), words.next());
    match (verb.as_str(), key, rest) {
        ("SET", Some(key), Some(value)) => Ok(Command::Set(key, value)),
        ("GET", Some(key), None) => Ok(Command::Get(key)),
        ("DEL", Some(key), None) => Ok(Command::Del(key)),
        ("KEYS", None, None) => Ok(Command::Keys),
        ("QUIT", None, None) => Ok(Command::Quit),
        ("", ..) => Err("empty command".into()),
        _ => Err(format!(
            "cannot read {line:?}: try SET k v, GET k, DEL k, KEYS or QUIT"
        )),
    }
}

impl Kv {
    /// The reply to one command, and whether the connection ends after it.
    fn apply(&mut self, command: Command<'_>) -> (String, bool) {
        let reply = match command {
            Command::Set(key, _)
                if !self.store.contains_key(key) && self.store.len() >= self.options.max_keys =>
            {
                format!("ERR store full ({} keys)", self.options.max_keys)
            }
            Command::Set(key, value) => {
                self.store.insert(key.to_string(), value.to_string());
                "OK".to_string()
            }
            Command::Get(key) => match self.store.get(key) {
                Some(value) => format!("VALUE {value}"),
                None => "NOT_FOUND".to_string(),
            },
            Command::Del(key) => match self.store.remove(key) {
                Some(_) => "DELETED".to_string(),
                None => "NOT_FOUND".to_string(),
            },
            Command::Keys => {
                let keys: Vec<&str> = self.store.keys().map(String::as_str).collect();
                format!("KEYS {}", keys.join(" ")).trim_end().to_string()
            }
            Command::Quit => return ("BYE".to_string(), true),
        };
        (reply, false)
    }
}

impl RequestHandler for Kv {
    fn handle(&mut self, req: &mut Request<'_>) -> HandlerResult {
        let limit = self.options.max_line as u64;
        loop {
            let mut line = Vec::new();
            let read = (&mut *req.rfile).take(limit).read_until(b'\n', &mut line)?;
            if read == 0 {
                return Ok(());
            }
            if !line.ends_with(b"\n") && read as u64 == limit {
                req.wfile.write_all(b"ERR line too long\n")?;
                return Err(HandlerError::Protocol(format!(
                    "line longer than {limit} bytes"
                )));
            }
            let text = String::from_utf8_lossy(&line);
            let (reply, done) = match parse(&text) {
                Ok(command) => self.apply(command),
                Err(why) => (format!("ERR {why}"), false),
            };
            req.wfile.write_all(format!("{reply}\n").as_bytes())?;
            if done {
                req.server
                    .log(LogLevel::Debug, &format!("{} said QUIT", req.peer));
                return Ok(());
            }
        }
    }
}

export_plugin!(name: "kv-example", version: env!("CARGO_PKG_VERSION"), handlers: [Kv]);

#[cfg(test)]
mod tests {
    use super::*;

    fn kv() -> Kv {
        Kv::new(&Arc::new(Options::default()))
    }

    #[test]
    fn commands_parse_and_apply() {
        let mut store = kv();
        let mut run = |line| store.apply(parse(line).unwrap()).0;
        assert_eq!(run("SET name Ada Lovelace\n"), "OK");
        assert_eq!(run("get name\r\n"), "VALUE Ada Lovelace");
        assert_eq!(run("KEYS"), "KEYS name");
        assert_eq!(run("DEL name"), "DELETED");
        assert_eq!(run("GET name"), "NOT_FOUND");
        assert_eq!(run("KEYS"), "KEYS");
        assert!(parse("SET onlykey").is_err());
        assert!(parse("").is_err());
        assert_eq!(parse("QUIT\n"), Ok(Command::Quit));
    }

    #[test]
    fn the_store_is_bounded() {
        let mut store = Kv::new(&Arc::new(Options {
            max_keys: 1,
            max_line: 64,
        }));
        assert_eq!(store.apply(Command::Set("a", "1")).0, "OK");
        assert_eq!(store.apply(Command::Set("a", "2")).0, "OK");
        assert!(store
            .apply(Command::Set("b", "1"))
            .0
            .starts_with("ERR store full"));
    }

    #[test]
    fn options_are_checked() {
        assert!(Kv::options("{}").is_ok());
        assert!(Kv::options(r#"{"max_keys": 0}"#).is_err());
        let unknown = Kv::options(r#"{"colour": "red"}"#).unwrap_err();
        assert!(unknown.contains("colour"), "{unknown}");
    }
}
