//! What members' text may carry to other members' terminals: printable text and tabs, never a
//! character that acts on the terminal or reorders the line. Pure functions over `&str`; the chat
//! runs every line it writes through [`neutralise`] (see [`format`](super::format)), and
//! `sockserv client chat` runs every line it prints through it too, so neither a member nor a
//! hostile server can forge a notice, move the cursor, retitle a window or recolour a screen.
//!
//! The rule, exactly:
//!
//! - **Escape sequences are removed whole**: `ESC [` (CSI) with its parameter and intermediate
//!   bytes up to and including its final byte; `ESC ]` (OSC), `ESC P` (DCS), `ESC X` (SOS),
//!   `ESC ^` (PM) and `ESC _` (APC) up to and including their terminator (BEL or `ESC \`); any other
//!   `ESC` with its intermediate bytes (U+0020–U+002F) and final character; the 8-bit forms U+009B
//!   (CSI), U+009D (OSC), U+0090 (DCS), U+0098 (SOS), U+009E (PM), U+009F (APC) the same way. A
//!   sequence cut short by the end of the text is removed to the end; a lone `ESC` is removed.
//!   Removing the whole sequence, not just its `ESC`, leaves no `[31m` debris.
//! - **Every other control character becomes U+FFFD** (the replacement character, as for invalid
//!   UTF-8): C0 (U+0000–U+001F) except TAB, DEL (U+007F), C1 (U+0080–U+009F). A `CR` can thus no
//!   longer return to the start of the line and overwrite the sender's prefix.
//! - **Bidirectional embeddings, overrides and isolates become U+FFFD**: U+202A–U+202E (LRE, RLE,
//!   PDF, LRO, RLO) and U+2066–U+2069 (LRI, RLI, FSI, PDI). They can make a terminal or a viewer
//!   show a line's characters in an order other than the one sent ("Trojan Source"). The plain
//!   marks (U+200E, U+200F, U+061C) stay: they cannot reorder anything by themselves.
//! - **The Unicode line and paragraph separators** (U+2028, U+2029) become U+FFFD: a viewer may
//!   break the line there, and the next "line" could then pose as a notice.
//!
//! Everything else — letters of every script, emoji, combining marks — passes unchanged.

use std::borrow::Cow;

const ESC: char = '\u{1b}';
const BEL: char = '\u{7}';
const REPLACEMENT: char = '\u{fffd}';

/// `text` with escape sequences removed and other controls replaced (see the module doc). Borrows
/// when there is nothing to change, which is nearly always.
pub fn neutralise(text: &str) -> Cow<'_, str> {
    if !text.chars().any(is_hostile) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            ESC => skip_escape(&mut chars),
            '\u{9b}' => skip_csi(&mut chars),
            '\u{90}' | '\u{98}' | '\u{9d}' | '\u{9e}' | '\u{9f}' => skip_string(&mut chars),
            c if is_hostile(c) => out.push(REPLACEMENT),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// Whether `c` is one that [`neutralise`] removes or replaces: a control (TAB aside), a
/// bidirectional embedding, override or isolate, or a line or paragraph separator. Nicks and room
/// names may hold none of them.
pub fn is_hostile(c: char) -> bool {
    (c.is_control() && c != '\t')
        || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{2028}' | '\u{2029}')
}

type Chars<'a> = std::iter::Peekable<std::str::Chars<'a>>;

/// After an `ESC`: the rest of its sequence.
fn skip_escape(chars: &mut Chars<'_>) {
    match chars.peek() {
        Some('[') => {
            chars.next();
            skip_csi(chars);
        }
        Some(']' | 'P' | 'X' | '^' | '_') => {
            chars.next();
            skip_string(chars);
        }
        Some(&c) if ('\u{20}'..='\u{2f}').contains(&c) => {
            // nF: intermediates, then one final character.
            while chars
                .next_if(|c| ('\u{20}'..='\u{2f}').contains(c))
                .is_some()
            {}
            chars.next_if(|c| ('\u{30}'..='\u{7e}').contains(c));
        }
        Some(&c) if ('\u{30}'..='\u{7e}').contains(&c) => {
            chars.next(); // Fp, Fe, Fs: one character
        }
        _ => {} // a lone ESC
    }
}

/// After a CSI: parameter bytes (U+0030–U+003F), intermediates (U+0020–U+002F), one final byte
/// (U+0040–U+007E). A malformed sequence ends at the first character that fits none of them, which
/// is then treated as ordinary text (or a control of its own).
fn skip_csi(chars: &mut Chars<'_>) {
    while chars
        .next_if(|c| ('\u{30}'..='\u{3f}').contains(c))
        .is_some()
    {}
    while chars
        .next_if(|c| ('\u{20}'..='\u{2f}').contains(c))
        .is_some()
    {}
    chars.next_if(|c| ('\u{40}'..='\u{7e}').contains(c));
}

/// After a string introducer (OSC, DCS, SOS, PM, APC): everything up to and including BEL, ST
/// (U+009C) or `ESC \`.
fn skip_string(chars: &mut Chars<'_>) {
    while let Some(c) = chars.next() {
        match c {
            BEL | '\u{9c}' => return,
            ESC if chars.peek() == Some(&'\\') => {
                chars.next();
                return;
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_borrowed_unchanged() {
        for text in ["hello", "tab\there", "émile 🐶 שלום", "\u{200e}mark", ""] {
            assert!(
                matches!(neutralise(text), Cow::Borrowed(t) if t == text),
                "{text:?}"
            );
        }
    }

    #[test]
    fn a_carriage_return_cannot_forge_a_notice() {
        let forged = "hi\r*** ann left lobby                    ";
        assert_eq!(
            neutralise(forged),
            "hi\u{fffd}*** ann left lobby                    "
        );
    }

    #[test]
    fn other_controls_become_the_replacement_character() {
        assert_eq!(
            neutralise("a\0b\x07c\x08d\x7fe\nf"),
            "a\u{fffd}b\u{fffd}c\u{fffd}d\u{fffd}e\u{fffd}f"
        );
        assert_eq!(neutralise("c1:\u{85}\u{8d}"), "c1:\u{fffd}\u{fffd}");
    }

    #[test]
    fn escape_sequences_go_whole() {
        let cases = [
            ("\x1b[31mred\x1b[0m", "red"),
            ("\x1b[2J\x1b[Hwiped", "wiped"),
            ("\x1b[?1049h", ""),
            ("\x1b]0;owned\x07title", "title"),
            ("\x1b]8;;http://x\x1b\\link\x1b]8;;\x1b\\", "link"),
            ("\x1bPq#0;2;0;0;0\x1b\\sixel", "sixel"),
            ("\x1b(0box", "box"),
            ("\x1bcreset", "reset"),
            ("\x1b7saved\x1b8", "saved"),
            ("\u{9b}31mc1 csi", "c1 csi"),
            ("\u{9d}0;t\u{9c}c1 osc", "c1 osc"),
            ("cut \x1b[12", "cut "),
            ("cut \x1b]0;never ends", "cut "),
            ("lone \x1b", "lone "),
        ];
        for (input, want) in cases {
            assert_eq!(neutralise(input), want, "{input:?}");
        }
    }

    #[test]
    fn a_malformed_csi_ends_where_it_stops_fitting() {
        // A control inside a CSI ends it and is replaced itself.
        assert_eq!(neutralise("\x1b[1\rx"), "\u{fffd}x");
        assert_eq!(neutralise("\x1b[1;\u{e9}t\u{e9}"), "\u{e9}t\u{e9}");
    }

    #[test]
    fn bidi_overrides_and_isolates_are_replaced() {
        assert_eq!(
            neutralise("a\u{202e}evil\u{202c}b\u{2067}c\u{2069}"),
            "a\u{fffd}evil\u{fffd}b\u{fffd}c\u{fffd}"
        );
        assert!(is_hostile('\u{202e}') && is_hostile('\r') && !is_hostile('\t'));
        assert!(!is_hostile('a') && !is_hostile('\u{200f}'));
    }
}
