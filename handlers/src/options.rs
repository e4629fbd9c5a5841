//! Reading a handler's `[server.options]` table: the few checks every built-in repeats (unknown keys,
//! value types), each failing with an [`OptionError`] that names its key, so `sockserv check` can say
//! exactly what to fix and where: the config layer adds the file position of that key (or its
//! value) and the server's name.

use std::fmt::Display;

use sockserv_framework::config::{OptionError, OptionErrors};
use toml::{Table, Value};

/// The problems found in one options table, collected so that a user sees all of them at once.
#[derive(Debug)]
pub(crate) struct Problems(Vec<OptionError>);

impl Problems {
    /// Starts with one problem per key of `table` that is not in `known`.
    pub fn new(table: &Table, handler: &str, known: &[&str]) -> Problems {
        let takes = if known.is_empty() {
            format!("handler {handler:?} takes no options")
        } else {
            format!("handler {handler:?} takes: {}", known.join(", "))
        };
        let unknown = table
            .keys()
            .filter(|key| !known.contains(&key.as_str()))
            .map(|key| OptionError::unknown_key(key, format!("unknown option {key:?} ({takes})")))
            .collect();
        Problems(unknown)
    }

    /// Notes a problem.
    pub fn push(&mut self, problem: OptionError) {
        self.0.push(problem);
    }

    /// The value of `result`, or `None` once its problem is noted.
    pub fn note<T>(&mut self, result: Result<T, OptionError>) -> Option<T> {
        result.map_err(|problem| self.push(problem)).ok()
    }

    /// `parsed` when nothing was noted, else every problem.
    pub fn finish<T>(self, parsed: T) -> Result<T, OptionErrors> {
        if self.0.is_empty() {
            Ok(parsed)
        } else {
            Err(OptionErrors(self.0))
        }
    }
}

/// Refuses every key of `table` that is not in `known`, each on its own.
pub(crate) fn reject_unknown(
    table: &Table,
    handler: &str,
    known: &[&str],
) -> Result<(), OptionErrors> {
    Problems::new(table, handler, known).finish(())
}

/// The string under `key`, if present.
pub(crate) fn string<'t>(table: &'t Table, key: &str) -> Result<Option<&'t str>, OptionError> {
    match table.get(key) {
        None => Ok(None),
        Some(Value::String(text)) => Ok(Some(text)),
        Some(other) => Err(wrong_type(key, "a string", other)),
    }
}

/// The boolean under `key`, if present.
pub(crate) fn boolean(table: &Table, key: &str) -> Result<Option<bool>, OptionError> {
    match table.get(key) {
        None => Ok(None),
        Some(Value::Boolean(flag)) => Ok(Some(*flag)),
        Some(other) => Err(wrong_type(key, "a boolean (true or false)", other)),
    }
}

/// The value under `key` is well-typed but its handler refuses it, for `why`.
pub(crate) fn invalid(key: &str, why: impl Display) -> OptionError {
    OptionError::value(key, format!("option {key:?}: {why}"))
}

fn wrong_type(key: &str, expected: &str, found: &Value) -> OptionError {
    let message = format!(
        "option {key:?} must be {expected}, not {} {found}",
        found.type_str()
    );
    OptionError::value(key, message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sockserv_framework::config::OptionAt;

    fn table(text: &str) -> Table {
        text.parse().unwrap()
    }

    #[test]
    fn each_unknown_key_is_its_own_problem() {
        let t = table("format = 'x'\ncolour = 1\nzone = 2");
        let errors = reject_unknown(&t, "timestamp", &["format", "utc"])
            .unwrap_err()
            .0;
        assert_eq!(
            errors,
            [
                OptionError::unknown_key(
                    "colour",
                    r#"unknown option "colour" (handler "timestamp" takes: format, utc)"#
                ),
                OptionError::unknown_key(
                    "zone",
                    r#"unknown option "zone" (handler "timestamp" takes: format, utc)"#
                ),
            ]
        );
        assert_eq!(
            reject_unknown(&table("x = 1"), "echo", &[])
                .unwrap_err()
                .to_string(),
            r#"unknown option "x" (handler "echo" takes no options)"#
        );
        assert_eq!(reject_unknown(&table("utc = true"), "t", &["utc"]), Ok(()));
    }

    #[test]
    fn values_are_typed_and_a_bad_one_is_about_its_value() {
        let t = table("s = 'text'\nb = true\nn = 3");
        assert_eq!(string(&t, "s"), Ok(Some("text")));
        assert_eq!(string(&t, "missing"), Ok(None));
        assert_eq!(boolean(&t, "b"), Ok(Some(true)));
        let err = boolean(&t, "s").unwrap_err();
        assert_eq!(err.at, OptionAt::Value("s".into()));
        assert_eq!(
            err.message,
            r#"option "s" must be a boolean (true or false), not string "text""#
        );
        assert_eq!(
            string(&t, "n").unwrap_err().message,
            r#"option "n" must be a string, not integer 3"#
        );
    }

    #[test]
    fn problems_collect_until_finished() {
        let mut problems = Problems::new(&table("a = 1"), "h", &["b"]);
        assert_eq!(
            problems.note(string(&table("b = 'x'"), "b")),
            Some(Some("x"))
        );
        assert_eq!(problems.note(string(&table("b = 1"), "b")), None);
        let errors = problems.finish(()).unwrap_err().0;
        let keys: Vec<_> = errors.iter().map(OptionError::key).collect();
        assert_eq!(keys, [Some("a"), Some("b")]);
        assert_eq!(Problems::new(&Table::new(), "h", &[]).finish(7), Ok(7));
    }
}
