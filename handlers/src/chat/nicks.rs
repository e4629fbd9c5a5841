//! When two nicks are one: a nick is unique up to Unicode compatibility, case and confusable
//! look-alikes, so that nobody can pass for `ann` as `Ann`, `ａnn` (fullwidth a), `аnn` (Cyrillic a)
//! while `ann` is online.
//!
//! The key of a nick is `fold(skeleton(fold(nfkc(nick))))`, where
//!
//! - `nfkc` + `fold` is Unicode's compatibility caseless form (NFKD, full case folding, NFKD again,
//!   as the Unicode Standard's §3.13 `compatibility caseless match` defines it): `ａ` → `a`,
//!   `ß` → `ss`, `Σ`/`ς` → `σ`; from the `caseless` crate;
//! - `skeleton` is UTS #39's confusable skeleton (the `confusables.txt` prototypes, default
//!   ignorables dropped): Cyrillic `а` → `a`, `1` and `I` → `l`, `rn` → `m`; from the
//!   `unicode-security` crate, which rustc itself uses for its confusable-identifier lint;
//! - the final `fold` evens out the few prototypes that are capitals.
//!
//! Two nicks with one key collide; the key is never shown to anybody (it is a hash-like form, not
//! text). The nick a member picked is what everyone sees.

use caseless::Caseless;
use unicode_normalization::UnicodeNormalization;
use unicode_security::confusable_detection::skeleton;

/// The key two nicks share when they would pass for each other (see the module doc).
pub fn key(nick: &str) -> String {
    let folded: String = fold(nick.chars().nfd()).collect();
    let skeleton: String = skeleton(&folded).collect();
    fold(skeleton.chars()).collect()
}

/// Compatibility caseless folding (the Unicode Standard, §3.13, D146).
fn fold(chars: impl Iterator<Item = char>) -> impl Iterator<Item = char> {
    chars.default_case_fold().nfkd().default_case_fold().nfkd()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn case_compatibility_and_look_alikes_share_a_key() {
        let ann = key("ann");
        for other in [
            "Ann",
            "ANN",
            "\u{ff41}nn",               // fullwidth a
            "\u{ff21}\u{ff2e}\u{ff2e}", // fullwidth ANN
            "\u{430}nn",                // Cyrillic a
            "\u{251}nn",                // Latin alpha
            "a\u{200b}nn",              // a zero-width space, a default ignorable
        ] {
            assert_eq!(key(other), ann, "{other:?}");
        }
        assert_eq!(key("pa\u{443}pal"), key("paypal")); // Cyrillic u
        assert_eq!(key("Stra\u{df}e"), key("STRASSE"));
        assert_eq!(key("ji11"), key("jill"));
        assert_eq!(key("\u{3a3}\u{3c2}"), key("\u{3c3}\u{3c3}")); // sigmas
    }

    #[test]
    fn different_names_keep_different_keys() {
        for (a, b) in [
            ("ann", "anne"),
            ("bob", "rob"),
            ("émile", "emile"),
            ("ann", "ana"),
        ] {
            assert_ne!(key(a), key(b), "{a:?} {b:?}");
        }
    }
}
