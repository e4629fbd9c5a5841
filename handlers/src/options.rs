//! Reading a handler's `[server.options]` table: the few checks every built-in repeats (unknown keys,
//! value types), each failing with a message that names the key, so `sockserv check` can say exactly
//! what to fix. The config layer adds the file position and the server's name.

use toml::{Table, Value};

/// Refuses every key of `table` that is not in `known`, naming all of them at once.
pub(crate) fn reject_unknown(table: &Table, handler: &str, known: &[&str]) -> Result<(), String> {
    let unknown: Vec<String> = table
        .keys()
        .filter(|key| !known.contains(&key.as_str()))
        .map(|key| format!("{key:?}"))
        .collect();
    if unknown.is_empty() {
        return Ok(());
    }
    let noun = if unknown.len() == 1 {
        "option"
    } else {
        "options"
    };
    let takes = if known.is_empty() {
        format!("handler {handler:?} takes no options")
    } else {
        format!("handler {handler:?} takes: {}", known.join(", "))
    };
    Err(format!("unknown {noun} {} ({takes})", unknown.join(", ")))
}

/// The string under `key`, if present.
pub(crate) fn string<'t>(table: &'t Table, key: &str) -> Result<Option<&'t str>, String> {
    match table.get(key) {
        None => Ok(None),
        Some(Value::String(text)) => Ok(Some(text)),
        Some(other) => Err(wrong_type(key, "a string", other)),
    }
}

/// The boolean under `key`, if present.
pub(crate) fn boolean(table: &Table, key: &str) -> Result<Option<bool>, String> {
    match table.get(key) {
        None => Ok(None),
        Some(Value::Boolean(flag)) => Ok(Some(*flag)),
        Some(other) => Err(wrong_type(key, "a boolean (true or false)", other)),
    }
}

fn wrong_type(key: &str, expected: &str, found: &Value) -> String {
    format!(
        "option {key:?} must be {expected}, not {} {found}",
        found.type_str()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(text: &str) -> Table {
        text.parse().unwrap()
    }

    #[test]
    fn unknown_keys_are_all_named() {
        let t = table("format = 'x'\ncolour = 1\nzone = 2");
        assert_eq!(
            reject_unknown(&t, "timestamp", &["format", "utc"]),
            Err(
                r#"unknown options "colour", "zone" (handler "timestamp" takes: format, utc)"#
                    .into()
            )
        );
        assert_eq!(
            reject_unknown(&table("x = 1"), "echo", &[]),
            Err(r#"unknown option "x" (handler "echo" takes no options)"#.into())
        );
        assert_eq!(reject_unknown(&table("utc = true"), "t", &["utc"]), Ok(()));
    }

    #[test]
    fn values_are_typed() {
        let t = table("s = 'text'\nb = true\nn = 3");
        assert_eq!(string(&t, "s"), Ok(Some("text")));
        assert_eq!(string(&t, "missing"), Ok(None));
        assert_eq!(boolean(&t, "b"), Ok(Some(true)));
        assert_eq!(
            boolean(&t, "s"),
            Err(r#"option "s" must be a boolean (true or false), not string "text""#.into())
        );
        assert_eq!(
            string(&t, "n"),
            Err(r#"option "n" must be a string, not integer 3"#.into())
        );
    }
}
