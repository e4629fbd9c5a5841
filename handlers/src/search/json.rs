//! JSON written the way the tutorial's Python writes it: `json.dumps(obj, ensure_ascii=False)`, with
//! `", "` between members and `": "` after keys, non-ASCII text as UTF-8, and only `"`, `\` and the
//! control characters escaped. Writing our replies in exactly that shape makes them byte-identical to
//! the tutorial server's, so a client that compares bytes (or a packet capture) cannot tell them apart.
//!
//! Only what replies need: objects of strings, integers and arrays of such objects, written in the
//! order the caller gives (Python keeps insertion order too).

use std::fmt::Write as _;

/// Appends `text` as a JSON string, escaped as Python's `json.dumps(..., ensure_ascii=False)` does.
pub fn push_str(out: &mut Vec<u8>, text: &str) {
    out.push(b'"');
    let bytes = text.as_bytes();
    let mut plain_from = 0;
    for (at, &byte) in bytes.iter().enumerate() {
        let escape: &[u8] = match byte {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0x00..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[plain_from..at]);
        if escape.is_empty() {
            let mut hex = String::with_capacity(6);
            let _ = write!(hex, "\\u{byte:04x}");
            out.extend_from_slice(hex.as_bytes());
        } else {
            out.extend_from_slice(escape);
        }
        plain_from = at + 1;
    }
    out.extend_from_slice(&bytes[plain_from..]);
    out.push(b'"');
}

/// A JSON object being written: `{"a": 1, "b": "x"}`.
pub struct Object<'a> {
    out: &'a mut Vec<u8>,
    empty: bool,
}

impl<'a> Object<'a> {
    /// Opens an object at the end of `out`.
    pub fn new(out: &'a mut Vec<u8>) -> Object<'a> {
        out.push(b'{');
        Object { out, empty: true }
    }

    /// Writes `"key": ` (after `, ` unless it is the first member) and returns the buffer for the value.
    pub fn key(&mut self, key: &str) -> &mut Vec<u8> {
        if !self.empty {
            self.out.extend_from_slice(b", ");
        }
        self.empty = false;
        push_str(self.out, key);
        self.out.extend_from_slice(b": ");
        self.out
    }

    /// A string member.
    pub fn string(&mut self, key: &str, value: &str) -> &mut Self {
        push_str(self.key(key), value);
        self
    }

    /// An integer member.
    pub fn integer(&mut self, key: &str, value: u64) -> &mut Self {
        let out = self.key(key);
        out.extend_from_slice(value.to_string().as_bytes());
        self
    }

    /// Closes the object.
    pub fn finish(self) {
        self.out.push(b'}');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn string(text: &str) -> String {
        let mut out = Vec::new();
        push_str(&mut out, text);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn strings_escape_like_python_without_ensure_ascii() {
        assert_eq!(string("plain"), r#""plain""#);
        assert_eq!(string("🐶 é"), "\"🐶 é\"");
        assert_eq!(string("a\"b\\c"), r#""a\"b\\c""#);
        assert_eq!(string("\n\r\t\u{8}\u{c}"), r#""\n\r\t\b\f""#);
        assert_eq!(string("\u{0}\u{1f}\u{7f}"), "\"\\u0000\\u001f\u{7f}\"");
        assert_eq!(string(""), r#""""#);
    }

    #[test]
    fn every_escape_reads_back_as_the_original() {
        let text = "x\u{0}\u{1}\"\\\n😀\u{1f}end";
        let parsed: String = serde_json::from_str(&string(text)).unwrap();
        assert_eq!(parsed, text);
    }

    #[test]
    fn objects_use_python_separators() {
        let mut out = Vec::new();
        let mut object = Object::new(&mut out);
        object.string("a", "x").integer("n", 41);
        object.finish();
        assert_eq!(out, br#"{"a": "x", "n": 41}"#);
        let mut out = Vec::new();
        Object::new(&mut out).finish();
        assert_eq!(out, b"{}");
    }
}
