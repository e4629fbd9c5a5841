//! Just enough JSON for a load generator without a JSON dependency: quoting strings (search requests,
//! `--json` reports) and reading one unsigned number field out of a search reply's header.

use std::fmt::Write;

/// `s` as a JSON string literal, quotes included.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The unsigned integer value of `"field": N` in a flat JSON object; `None` if absent or not a
/// number. Good for the search header, whose fields are simple; not a general JSON reader.
pub fn uint_field(json: &str, field: &str) -> Option<u64> {
    let key = quote(field);
    let mut rest = json;
    while let Some(at) = rest.find(&key) {
        let after = rest[at + key.len()..].trim_start();
        if let Some(value) = after.strip_prefix(':') {
            let value = value.trim_start();
            let digits = value.bytes().take_while(u8::is_ascii_digit).count();
            return value[..digits].parse().ok();
        }
        rest = &rest[at + key.len()..];
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_what_json_needs_quoted() {
        assert_eq!(quote("a\"b\\c\n\u{1}é"), r#""a\"b\\c\n\u0001é""#);
    }

    #[test]
    fn reads_a_number_field() {
        let header = r#"{"content-type": "text/json", "content-length" : 42, "x": 1}"#;
        assert_eq!(uint_field(header, "content-length"), Some(42));
        assert_eq!(uint_field(header, "x"), Some(1));
        assert_eq!(uint_field(header, "content-type"), None);
        assert_eq!(uint_field(header, "missing"), None);
        assert_eq!(
            uint_field(
                r#"{"v": "content-length", "content-length": 7}"#,
                "content-length"
            ),
            Some(7)
        );
    }
}
