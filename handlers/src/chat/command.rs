//! What a chat message asks for: a plain message, or one of the commands. Pure parsing; the core
//! ([`super::core`]) carries the command out.
//!
//! A message starting with `/` is a command; `//` escapes a message that should start with `/`. The
//! tutorial client's bare `quit` leaves, like `/quit`. Command names ignore ASCII case.

use super::text;
use unicode_normalization::UnicodeNormalization;
use unicode_security::GeneralSecurityProfile;

/// One parsed message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command<'a> {
    /// Text for the room.
    Say(&'a str),
    Nick(&'a str),
    Join(&'a str),
    Rooms,
    Who,
    Me(&'a str),
    Help,
    Quit,
    /// Nothing but blanks: ignored.
    Empty,
    /// A malformed command; the text says what is wrong, for a one-line error.
    Bad(String),
}

/// The commands, for `/help`.
pub const HELP: &str =
    "commands: /nick NAME, /join ROOM, /rooms, /who, /me ACTION, /help, /quit (or quit); \
     start a message with // to send one that starts with /";

/// The longest nick or room name, in characters.
pub const MAX_NAME: usize = 32;

/// Parses one message (its line ending already removed).
pub fn parse(text: &str) -> Command<'_> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Command::Empty;
    }
    if trimmed == "quit" {
        return Command::Quit;
    }
    if text.starts_with("//") {
        return Command::Say(&text[1..]);
    }
    let Some(command) = trimmed.strip_prefix('/') else {
        return Command::Say(text);
    };
    let (name, arg) = match command.split_once(char::is_whitespace) {
        Some((name, arg)) => (name, arg.trim()),
        None => (command, ""),
    };
    let name = name.to_ascii_lowercase();
    match (name.as_str(), arg.is_empty()) {
        ("nick", false) => Command::Nick(arg),
        ("join", false) => Command::Join(arg),
        ("me", false) => Command::Me(arg),
        ("rooms", true) => Command::Rooms,
        ("who", true) => Command::Who,
        ("help", true) => Command::Help,
        ("quit", true) => Command::Quit,
        ("nick", true) => usage("/nick NAME"),
        ("join", true) => usage("/join ROOM"),
        ("me", true) => usage("/me ACTION"),
        ("rooms" | "who" | "help" | "quit", false) => usage(&format!("/{name}")),
        _ => Command::Bad(format!(
            "unknown command /{name} (/help lists the commands)"
        )),
    }
}

fn usage(form: &str) -> Command<'static> {
    Command::Bad(format!("usage: {form}"))
}

/// Checks a nick or room name: 1 to [`MAX_NAME`] letters, digits, `-` or `_`. Such a name can never
/// look like the `ip:port` a member is known by before it picks a nick, nor carry a control
/// character to anyone's terminal.
///
/// # Errors
///
/// A name that holds a control character (see [`text::is_hostile`]), said as such; a name that is
/// empty, too long or has another character. The message starts with `what` (`nick` or `room`) and
/// says what a name may hold; the name itself is shown escaped.
pub fn check_name(what: &str, name: &str) -> Result<(), String> {
    if let Some(c) = name.chars().find(|&c| text::is_hostile(c)) {
        let code = u32::from(c);
        return Err(format!(
            "a {what} may not hold control characters (it held U+{code:04X}); \
             use 1 to {MAX_NAME} letters, digits, - or _"
        ));
    }
    // Judged in its compatibility form (fullwidth `ａ` is `a`, so it is then refused as taken, not
    // as invalid). Letters and digits must be ones UTS #39 allows in identifiers: that leaves out
    // the invisible ones (Hangul fillers, which count as letters) and technical look-alikes such
    // as small capitals.
    let composed: String = name.nfkc().collect();
    let fits = (1..=MAX_NAME).contains(&composed.chars().count());
    let allowed = |c: char| c == '-' || c == '_' || (c.is_alphanumeric() && c.identifier_allowed());
    if fits && composed.chars().all(allowed) {
        return Ok(());
    }
    Err(format!(
        "{what} {name:?} is not valid: use 1 to {MAX_NAME} letters, digits, - or _"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_said_as_typed() {
        assert_eq!(parse("hello  world "), Command::Say("hello  world "));
        assert_eq!(parse("quit now"), Command::Say("quit now"));
        assert_eq!(parse("//etc/passwd"), Command::Say("/etc/passwd"));
    }

    #[test]
    fn commands_take_their_argument() {
        assert_eq!(parse("/nick alice"), Command::Nick("alice"));
        assert_eq!(parse("/JOIN  dev "), Command::Join("dev"));
        assert_eq!(parse("/me waves at\tyou"), Command::Me("waves at\tyou"));
        assert_eq!(parse("/rooms"), Command::Rooms);
        assert_eq!(parse(" /who "), Command::Who);
        assert_eq!(parse("/help"), Command::Help);
        assert_eq!(parse("/quit"), Command::Quit);
        assert_eq!(parse("quit"), Command::Quit);
        assert_eq!(parse(" quit\t"), Command::Quit);
        assert_eq!(parse("  "), Command::Empty);
    }

    #[test]
    fn bad_commands_say_why() {
        assert_eq!(parse("/nick"), Command::Bad("usage: /nick NAME".into()));
        assert_eq!(parse("/who x"), Command::Bad("usage: /who".into()));
        assert_eq!(
            parse("/frobnicate x"),
            Command::Bad("unknown command /frobnicate (/help lists the commands)".into())
        );
        assert!(matches!(parse("/"), Command::Bad(_)));
    }

    #[test]
    fn names_are_short_words() {
        assert_eq!(check_name("nick", "alice_2-b"), Ok(()));
        assert_eq!(check_name("nick", "émile"), Ok(()));
        for bad in [
            "",
            "a b",
            "127.0.0.1:5000",
            "x/y",
            &"n".repeat(MAX_NAME + 1),
        ] {
            assert!(check_name("nick", bad).is_err(), "{bad:?}");
        }
        // Invisible letters, and technical look-alikes of ordinary ones.
        for unseen in [
            "\u{3164}",
            "a\u{115f}",
            "\u{1160}",
            "\u{ffa0}b",
            "ᴀɴɴ",
            "ɑɴɴ",
        ] {
            assert!(check_name("nick", unseen).is_err(), "{unseen:?}");
        }
        // Compatibility forms are judged as what they stand for.
        assert_eq!(check_name("nick", "ａnn"), Ok(()));
        for hostile in ["a\x1b[31m", "a\rb", "\u{202e}nna", "a\u{85}"] {
            let err = check_name("nick", hostile).unwrap_err();
            assert!(
                err.starts_with("a nick may not hold control characters (it held U+"),
                "{err}"
            );
        }
        let err = check_name("room", "a b").unwrap_err();
        assert_eq!(
            err,
            "room \"a b\" is not valid: use 1 to 32 letters, digits, - or _"
        );
    }
}
