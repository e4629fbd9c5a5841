//! Every line the chat server writes, in one place: members' messages under the configured prefix,
//! `/me` actions, and the server's own notices. Each is one line ending in `\n`, built once and shared
//! (`Arc<[u8]>`) by every recipient's queue.
//!
//! - a message: `<prefix><text>`, the prefix being a strftime format in which `{from}` stands for the
//!   sender (its nick, or `ip:port` until it has one) — by default the tutorial's
//!   `%m%d %H:%M:%S From {from}. msg=`;
//! - an action (`/me waves`): `* alice waves`;
//! - a notice: `*** alice joined lobby`; an error: `*** error: nick "bob" is taken`.
//!
//! Every line is built by [`line`], which passes its text through
//! [`super::text::neutralise`]: whatever a member typed, the only control
//! character a line ever carries is its final `\n`, so no member can end a line early, return to its
//! start, or reach the reader's terminal with an escape sequence.

use std::fmt::Display;
use std::sync::Arc;

use chrono::{DateTime, FixedOffset};

use super::text;
use crate::timestamp::{FormatError, TimeFormat};

/// The tutorial's prefix: `0102 03:04:05 From 127.0.0.1:5000. msg=`.
pub const DEFAULT_PREFIX: &str = "%m%d %H:%M:%S From {from}. msg=";

/// Where the sender goes in a prefix.
const FROM: &str = "{from}";

/// The bytes one delivery carries, shared by all its recipients.
pub type Bytes = Arc<[u8]>;

/// A validated message prefix.
#[derive(Debug, Clone)]
pub struct Prefix {
    time: TimeFormat,
}

impl Prefix {
    /// Parses `format` (strftime, with `{from}` for the sender).
    ///
    /// # Errors
    ///
    /// A strftime specifier chrono does not know or cannot write, as for timestamp's `format`.
    pub fn new(format: &str) -> Result<Prefix, FormatError> {
        Ok(Prefix {
            time: TimeFormat::new(format)?,
        })
    }

    /// The format as written in the config.
    pub fn as_str(&self) -> &str {
        self.time.as_str()
    }

    /// `<prefix><text>\n`, with the time and the sender filled in.
    pub fn message(&self, now: &DateTime<FixedOffset>, from: &str, text: &str) -> Bytes {
        let prefix = self.time.render(now).replace(FROM, from);
        line(format_args!("{prefix}{text}"))
    }
}

impl Default for Prefix {
    fn default() -> Self {
        Prefix::new(DEFAULT_PREFIX).expect("the default prefix is valid")
    }
}

/// `* <who> <action>\n`.
pub fn action(who: &str, action: &str) -> Bytes {
    line(format_args!("* {who} {action}"))
}

/// `*** <text>\n`.
pub fn notice(text: impl Display) -> Bytes {
    line(format_args!("*** {text}"))
}

/// `*** error: <text>\n`.
pub fn error(text: impl Display) -> Bytes {
    line(format_args!("*** error: {text}"))
}

/// What a member whose messages were dropped (overflow policy `drop`) is told once it catches up.
pub fn missed(count: u64) -> Bytes {
    let noun = if count == 1 { "message" } else { "messages" };
    notice(format_args!(
        "you missed {count} {noun}: your connection did not keep up"
    ))
}

/// The text of one line, neutralised, newline added.
fn line(text: impl Display) -> Bytes {
    let text = text.to_string();
    let mut line = text::neutralise(&text).into_owned();
    line.push('\n');
    line.into_bytes().into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn now() -> DateTime<FixedOffset> {
        FixedOffset::east_opt(0)
            .unwrap()
            .with_ymd_and_hms(2024, 1, 2, 3, 4, 5)
            .unwrap()
    }

    #[test]
    fn the_default_prefix_is_the_tutorial_s() {
        let got = Prefix::default().message(&now(), "127.0.0.1:5000", "hello");
        assert_eq!(&*got, b"0102 03:04:05 From 127.0.0.1:5000. msg=hello\n");
    }

    #[test]
    fn a_prefix_may_place_or_omit_the_sender() {
        let prefix = Prefix::new("[%H:%M] <{from}> ").unwrap();
        assert_eq!(&*prefix.message(&now(), "bob", "hi"), b"[03:04] <bob> hi\n");
        let prefix = Prefix::new("%Y: ").unwrap();
        assert_eq!(&*prefix.message(&now(), "bob", "hi"), b"2024: hi\n");
        assert!(Prefix::new("%Q {from}").is_err());
    }

    #[test]
    fn notices_are_one_line_each() {
        assert_eq!(&*action("bob", "waves"), b"* bob waves\n");
        assert_eq!(&*notice("bob joined lobby"), b"*** bob joined lobby\n");
        assert_eq!(&*error("no"), b"*** error: no\n");
        assert_eq!(
            &*missed(1),
            b"*** you missed 1 message: your connection did not keep up\n"
        );
        assert!(missed(7).starts_with(b"*** you missed 7 messages"));
    }

    #[test]
    fn no_line_carries_a_control_but_its_newline() {
        let got = Prefix::default().message(&now(), "ann", "hi\r*** bob left\x1b[2J\n");
        assert_eq!(
            &*got,
            "0102 03:04:05 From ann. msg=hi\u{fffd}*** bob left\u{fffd}\n".as_bytes()
        );
        assert_eq!(&*action("ann", "\x1b]0;t\x07waves"), b"* ann waves\n");
        assert_eq!(
            &*error("bad \u{202e}x"),
            "*** error: bad \u{fffd}x\n".as_bytes()
        );
    }
}
