//! The search handler's `[server.options]`: which index, how queries match, how many hits a reply
//! lists, and the largest content a request may carry. Read once at config time; every problem is
//! reported at once, by key, so `sockserv check` says exactly what to fix.

use std::path::{Path, PathBuf};

use sockserv_framework::config::{OptionError, OptionErrors};
use toml::{Table, Value};

use super::frame::DEFAULT_MAX_CONTENT_LENGTH;
use super::index::{load_entries, tutorial_entries, Index, MatchMode, DEFAULT_LIMIT};
use crate::options;

/// The option keys `search` understands.
pub const KEYS: &[&str] = &["index", "match", "limit", "max_content_length"];

/// The most hits one reply may list: a reply is built whole in memory.
pub const MAX_LIMIT: usize = 10_000;

/// The largest `max_content_length` allowed: a request is buffered whole before it is answered.
pub const MAX_MAX_CONTENT_LENGTH: usize = 1 << 30;

/// The validated options of a search server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchOptions {
    /// `index`: a JSON or TOML file of key → value, resolved against the config's folder; `None`
    /// serves the tutorial's three entries.
    pub index: Option<PathBuf>,
    /// `match`: `"exact"` (default), `"case-insensitive"`, `"prefix"` or `"substring"`.
    pub mode: MatchMode,
    /// `limit`: the most hits a non-exact reply lists (default 10).
    pub limit: usize,
    /// `max_content_length`: requests announcing more content are refused (default 1 MiB).
    pub max_content_length: usize,
}

impl Default for SearchOptions {
    fn default() -> Self {
        SearchOptions {
            index: None,
            mode: MatchMode::Exact,
            limit: DEFAULT_LIMIT,
            max_content_length: DEFAULT_MAX_CONTENT_LENGTH,
        }
    }
}

impl SearchOptions {
    /// Reads the options table; relative paths resolve against `base_dir`.
    ///
    /// # Errors
    ///
    /// Every problem in the table, each naming its key: a key search does not take, a value of the
    /// wrong type, an unknown `match` mode, a `limit` or `max_content_length` out of range. Whether
    /// the index file can be read is [`load_index`](Self::load_index)'s to say.
    pub fn from_table(table: &Table, base_dir: &Path) -> Result<SearchOptions, OptionErrors> {
        let mut problems = options::Problems::new(table, "search", KEYS);
        let mut parsed = SearchOptions::default();
        if let Some(path) = problems.note(options::string(table, "index")) {
            parsed.index = path.map(|path| base_dir.join(path));
        }
        if let Some(name) = problems.note(options::string(table, "match")).flatten() {
            match MatchMode::from_name(name) {
                Some(mode) => parsed.mode = mode,
                None => problems.push(OptionError::value("match", format!(
                    "option \"match\" must be \"exact\", \"case-insensitive\", \"prefix\" or \"substring\", not {name:?}"
                ))),
            }
        }
        if let Some(limit) = problems
            .note(integer(table, "limit", 1, MAX_LIMIT))
            .flatten()
        {
            parsed.limit = limit;
        }
        let max = integer(table, "max_content_length", 0, MAX_MAX_CONTENT_LENGTH);
        if let Some(max) = problems.note(max).flatten() {
            parsed.max_content_length = max;
        }
        problems.finish(parsed)
    }

    /// The index these options describe: the file's entries, or the tutorial's.
    ///
    /// # Errors
    ///
    /// The `index` file cannot be read, has no `.json` or `.toml` extension, or is not a table of
    /// key → string value; the error is about the `index` option's value.
    pub fn load_index(&self) -> Result<Index, OptionError> {
        let entries = match &self.index {
            None => tutorial_entries(),
            Some(path) => load_entries(path).map_err(|err| options::invalid("index", err))?,
        };
        Ok(Index::new(entries, self.mode, self.limit))
    }
}

/// The integer under `key`, if present, within `min..=max`.
fn integer(table: &Table, key: &str, min: usize, max: usize) -> Result<Option<usize>, OptionError> {
    let message = match table.get(key) {
        None => return Ok(None),
        Some(Value::Integer(n)) => {
            let within = usize::try_from(*n).ok().filter(|n| (min..=max).contains(n));
            if within.is_some() {
                return Ok(within);
            }
            format!("option {key:?} must be between {min} and {max}, not {n}")
        }
        Some(other) => format!(
            "option {key:?} must be an integer, not {} {other}",
            other.type_str()
        ),
    };
    Err(OptionError::value(key, message))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<SearchOptions, OptionErrors> {
        SearchOptions::from_table(&text.parse().unwrap(), Path::new("/etc/sockserv"))
    }

    #[test]
    fn defaults_are_the_tutorial_s() {
        assert_eq!(parse("").unwrap(), SearchOptions::default());
        let index = parse("").unwrap().load_index().unwrap();
        assert_eq!(index.len(), 3);
        assert_eq!(index.mode(), MatchMode::Exact);
    }

    #[test]
    fn every_option_is_read() {
        let parsed =
            parse("index = 'data/i.json'\nmatch = 'prefix'\nlimit = 3\nmax_content_length = 100")
                .unwrap();
        assert_eq!(
            parsed,
            SearchOptions {
                index: Some(PathBuf::from("/etc/sockserv/data/i.json")),
                mode: MatchMode::Prefix,
                limit: 3,
                max_content_length: 100,
            }
        );
        let absolute = parse("index = '/srv/i.toml'").unwrap();
        assert_eq!(absolute.index, Some(PathBuf::from("/srv/i.toml")));
    }

    #[test]
    fn every_problem_is_reported_on_its_own_with_its_key() {
        let errors =
            parse("index = 3\nmatch = 'fuzzy'\nlimit = 0\nmax_content_length = 'big'\ncolour = 1")
                .unwrap_err()
                .0;
        let expected = [
            ("colour", r#"unknown option "colour""#),
            ("index", r#"option "index" must be a string"#),
            (
                "match",
                r#"option "match" must be "exact", "case-insensitive", "prefix" or "substring", not "fuzzy""#,
            ),
            (
                "limit",
                r#"option "limit" must be between 1 and 10000, not 0"#,
            ),
            (
                "max_content_length",
                r#"option "max_content_length" must be an integer, not string "big""#,
            ),
        ];
        assert_eq!(errors.len(), expected.len(), "{errors:?}");
        for (error, (key, part)) in errors.iter().zip(expected) {
            assert_eq!(error.key(), Some(key));
            assert!(error.message.starts_with(part), "{part:?}: {error:?}");
        }
        assert!(parse("max_content_length = -1")
            .unwrap_err()
            .to_string()
            .contains("between 0 and"));
    }

    #[test]
    fn a_missing_index_file_is_named() {
        let err = parse("index = 'nowhere.json'")
            .unwrap()
            .load_index()
            .unwrap_err();
        assert_eq!(err.key(), Some("index"));
        assert!(err.message.starts_with("option \"index\""), "{err}");
        assert!(err.message.contains("/etc/sockserv/nowhere.json"), "{err}");
    }
}
