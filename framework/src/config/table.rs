//! Phase 1's reading of one TOML table, key by key: each known key is taken with the type it must
//! have, and what is wrong — a key of the wrong type, a required key missing, a key the table does
//! not have — is recorded and reading goes on, so that one `sockserv check` lists every such
//! problem. (serde's derived `Deserialize` with `deny_unknown_fields` stops at the first.)
//!
//! Messages name the key as the config's docs do (`socket.nodelay`), say what was expected in words
//! (`a positive whole number`, not `i64`), and quote the value as the file writes it (`0o600`, not
//! `384`).

use std::ops::Range;

use toml::de::{DeInteger, DeTable, DeValue};
use toml::Spanned;

use super::error::{ConfigError, ConfigErrorKind, Source};
use super::raw::{OctalMode, Seconds};

/// What a key's value must be, in the user's words.
const STRING: &str = "a string";
const COUNT: &str = "a positive whole number";
const BOOLEAN: &str = "true or false";
const SECONDS: &str = "a number of seconds (an integer or a float)";
const TABLE: &str = "a table";
const MODE: &str = "an octal mode in a string, such as \"0660\"";

/// One table being read; the problems found are kept until [`TableReader::into_errors`].
pub(super) struct TableReader<'d> {
    table: &'d DeTable<'d>,
    /// The table's header (or inline table): where a missing key is reported.
    span: Range<usize>,
    /// What keys of this table are called in messages: `""`, or `"socket."` for `[server.socket]`.
    prefix: &'static str,
    /// The server the table belongs to, once its name is known; problems carry it.
    pub server: Option<String>,
    source: Source<'d>,
    errors: Vec<ConfigError>,
    /// Keys present with a value of the wrong type.
    pub unreadable: Vec<&'static str>,
}

impl<'d> TableReader<'d> {
    pub fn new(table: Spanned<&'d DeTable<'d>>, prefix: &'static str, source: Source<'d>) -> Self {
        TableReader {
            span: table.span(),
            table: table.into_inner(),
            prefix,
            server: None,
            source,
            errors: Vec::new(),
            unreadable: Vec::new(),
        }
    }

    /// A reader for a table within this one, whose problems belong to the same server.
    pub fn nested(&self, table: Spanned<&'d DeTable<'d>>, prefix: &'static str) -> Self {
        let mut nested = TableReader::new(table, prefix, self.source);
        nested.server.clone_from(&self.server);
        nested
    }

    /// Takes over the problems `other` found.
    pub fn absorb(&mut self, other: TableReader<'d>) {
        self.errors.extend(other.errors);
    }

    /// Every problem found in this table (and the ones absorbed).
    pub fn into_errors(self) -> Vec<ConfigError> {
        self.errors
    }

    /// Whether any problem was found.
    pub fn has_errors(&self) -> bool {
        !self.errors.is_empty()
    }

    /// Records a problem at `span`, in this table's server if it has one.
    pub fn report(&mut self, span: Range<usize>, kind: ConfigErrorKind) {
        let error = self.source.error(Some(span), self.server.as_deref(), kind);
        self.errors.push(error);
    }

    /// The value under `key`, unread.
    pub fn value(&self, key: &str) -> Option<&'d Spanned<DeValue<'d>>> {
        self.table.get(key)
    }

    /// Reports that `value`, under `key`, is not what was `expected`.
    pub fn wrong_type(
        &mut self,
        key: &'static str,
        value: &Spanned<DeValue<'_>>,
        expected: &'static str,
        hint: Option<String>,
    ) {
        let kind = ConfigErrorKind::WrongType {
            key: format!("{}{key}", self.prefix),
            expected,
            found: self.found(value),
            hint,
        };
        self.report(value.span(), kind);
        self.unreadable.push(key);
    }

    /// The value under `key` converted by `read`; `None` when absent, or when of the wrong type
    /// (then reported as not `expected`, and remembered in [`Self::unreadable`]).
    pub fn get<T>(
        &mut self,
        key: &'static str,
        expected: &'static str,
        read: impl FnOnce(&'d DeValue<'d>) -> Option<T>,
    ) -> Option<Spanned<T>> {
        let value = self.value(key)?;
        match read(value.get_ref()) {
            Some(read) => Some(Spanned::new(value.span(), read)),
            None => {
                self.wrong_type(key, value, expected, None);
                None
            }
        }
    }

    pub fn string(&mut self, key: &'static str) -> Option<Spanned<String>> {
        self.get(key, STRING, |value| value.as_str().map(str::to_string))
    }

    pub fn count(&mut self, key: &'static str) -> Option<Spanned<i64>> {
        self.get(key, COUNT, |value| value.as_integer().map(saturating_i64))
    }

    pub fn boolean(&mut self, key: &'static str) -> Option<Spanned<bool>> {
        self.get(key, BOOLEAN, DeValue::as_bool)
    }

    pub fn seconds(&mut self, key: &'static str) -> Option<Spanned<Seconds>> {
        self.get(key, SECONDS, |value| match value {
            DeValue::Integer(integer) => Some(Seconds(saturating_i64(integer) as f64)),
            DeValue::Float(float) => float.as_str().parse().ok().map(Seconds),
            _ => None,
        })
    }

    pub fn table(&mut self, key: &'static str) -> Option<Spanned<&'d DeTable<'d>>> {
        self.get(key, TABLE, DeValue::as_table)
    }

    /// A required string: reported at the table when missing, `needs` saying what it must have.
    pub fn required(&mut self, key: &'static str, needs: &'static str) -> Option<Spanned<String>> {
        if self.value(key).is_none() {
            let kind = ConfigErrorKind::MissingKey { key, needs };
            self.report(self.span.clone(), kind);
            return None;
        }
        self.string(key)
    }

    /// A Unix mode: an octal string. TOML's own integer is refused with the string to write
    /// instead, echoing the integer as written (`0o600`, not `384`).
    pub fn mode(&mut self, key: &'static str) -> Option<Spanned<OctalMode>> {
        let value = self.value(key)?;
        if let Some(text) = value.get_ref().as_str() {
            return Some(Spanned::new(value.span(), OctalMode(text.to_string())));
        }
        let hint = value.get_ref().as_integer().map(mode_hint);
        self.wrong_type(key, value, MODE, hint);
        None
    }

    /// Every key that is not one of `known` is reported, with the closest key of `known` (or of
    /// `nested`, a table within this one) when one is close.
    pub fn refuse_others(&mut self, known: &'static [&'static str], nested: Option<Nested>) {
        self.refuse(known, nested, None);
    }

    /// As [`Self::refuse_others`], for a table within `outer`: a key of the outer table written
    /// below this table's header is told to move above it.
    pub fn refuse_others_within(&mut self, known: &'static [&'static str], outer: Outer) {
        self.refuse(known, None, Some(outer));
    }

    fn refuse(
        &mut self,
        known: &'static [&'static str],
        nested: Option<Nested>,
        outer: Option<Outer>,
    ) {
        let table = self.table;
        let unknown = (table.keys()).filter(|key| !known.contains(&key.get_ref().as_ref()));
        for key in unknown {
            let name = key.get_ref().as_ref();
            let misplaced = outer.as_ref().filter(|outer| outer.keys.contains(&name));
            let hint = match misplaced {
                Some(outer) => Some(format!(
                    "`{name}` is a key of {}: write it above the {} header (the keys after a \
                     header belong to its table)",
                    outer.table, outer.header
                )),
                None => suggest(name, known, nested.as_ref())
                    .map(|close| format!("did you mean `{}{close}`?", self.prefix)),
            };
            let kind = ConfigErrorKind::UnknownKey {
                key: format!("{}{name}", self.prefix),
                hint,
                expected: known,
            };
            self.report(key.span(), kind);
        }
    }

    /// A value as the user wrote it: its text for a single value, its kind for a table or array.
    fn found(&self, value: &Spanned<DeValue<'_>>) -> String {
        match value.get_ref() {
            DeValue::Table(_) => "a table".to_string(),
            DeValue::Array(_) => "an array".to_string(),
            _ => (self.source.text.get(value.span()))
                .unwrap_or("?")
                .trim()
                .to_string(),
        }
    }
}

/// A table nested in the one being read (`[server.socket]` in `[[server]]`), whose keys are
/// suggested, dotted, for an unknown key that is one of them or close to one.
pub(super) struct Nested {
    /// The nested table's key: `socket`.
    pub key: &'static str,
    /// Its keys.
    pub known: &'static [&'static str],
}

/// The table around the one being read (`[[server]]` around `[server.socket]`), whose keys are
/// easily written below the inner table's header by mistake.
pub(super) struct Outer {
    /// The outer table's keys.
    pub keys: &'static [&'static str],
    /// The outer table, as the user knows it: `[[server]]`.
    pub table: &'static str,
    /// The inner table's header: `[server.socket]`.
    pub header: &'static str,
}

/// The key of `known` (or `socket.X` of `nested`) closest to `key`, if it is close enough to be a
/// typo: at most one edit in three characters (and one edit for short keys).
fn suggest(key: &str, known: &[&str], nested: Option<&Nested>) -> Option<String> {
    let here = known.iter().map(|known| (known.to_string(), *known));
    let there = nested.into_iter().flat_map(|nested| {
        (nested.known.iter()).map(move |known| (format!("{}.{known}", nested.key), *known))
    });
    here.chain(there)
        .map(|(suggestion, candidate)| {
            let distance = strsim::damerau_levenshtein(key, candidate);
            (distance, suggestion, candidate.chars().count())
        })
        .filter(|(distance, _, length)| *distance <= (length / 3).max(1))
        .min_by_key(|(distance, ..)| *distance)
        .map(|(_, suggestion, _)| suggestion)
}

/// The string to write for a mode written as an integer: its digits, if they are octal.
fn mode_hint(integer: &DeInteger<'_>) -> String {
    let digits = integer.as_str();
    let octal = !digits.is_empty() && digits.bytes().all(|b| (b'0'..=b'7').contains(&b));
    if octal && matches!(integer.radix(), 8 | 10) {
        format!(
            "write it as a string: \"0{}\"",
            digits.trim_start_matches('0')
        )
    } else {
        "write it as a string of octal digits, such as \"0660\"".to_string()
    }
}

/// The integer's value, saturated to `i64`: a number too large for any integer type is still only
/// "out of range" to phase 2, which quotes it as written.
pub(super) fn saturating_i64(integer: &DeInteger<'_>) -> i64 {
    let digits = integer.as_str();
    match i128::from_str_radix(digits, integer.radix()) {
        Ok(value) => value.clamp(i64::MIN.into(), i64::MAX.into()) as i64,
        Err(_) if digits.starts_with('-') => i64::MIN,
        Err(_) => i64::MAX,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions_are_close_keys_only() {
        let known = ["max_threads", "listen", "queue", "loops"];
        let nested = Nested {
            key: "socket",
            known: &["nodelay", "reuse_address"],
        };
        let at = |key| suggest(key, &known, Some(&nested));
        assert_eq!(at("max_thread").as_deref(), Some("max_threads"));
        assert_eq!(at("lisen").as_deref(), Some("listen"));
        assert_eq!(at("reuse_adress").as_deref(), Some("socket.reuse_address"));
        assert_eq!(at("nodelay").as_deref(), Some("socket.nodelay"));
        assert_eq!(at("colour"), None);
        assert_eq!(at("q"), None);
    }

    #[test]
    fn integers_saturate() {
        let value = |text: &str| {
            let doc = DeTable::parse(text).unwrap();
            let value = doc.get_ref().get("a").unwrap().get_ref().clone();
            saturating_i64(value.as_integer().unwrap())
        };
        assert_eq!(value("a = 0x10"), 16);
        assert_eq!(value("a = -8"), -8);
        assert_eq!(value("a = 99999999999999999999"), i64::MAX);
        assert_eq!(
            value("a = -99999999999999999999999999999999999999999"),
            i64::MIN
        );
    }
}
