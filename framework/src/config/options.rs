//! What a handler's build function says is wrong with a server's `[server.options]`: one
//! [`OptionError`] per problem, each saying which key it is about, so that `sockserv check` reports
//! every bad key on its own line at the key's (or its value's) `FILE:LINE:COL` rather than one
//! joined message at the table.
//!
//! The framework cannot check these keys itself — each handler has its own — so the build function
//! names the key and the config layer, which kept the place of every key, adds the place.

use std::fmt;

/// What in `[server.options]` a problem is about, which decides where `sockserv check` points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OptionAt {
    /// A key the handler does not take: the error points at the key.
    Key(String),
    /// The value under a key (a wrong type, out of range, a file that cannot be read): the error
    /// points at the value.
    Value(String),
    /// The options as a whole, no key in particular (a plugin's refusal is one message): the error
    /// points at the `[server.options]` table, or at `handler` when there is none.
    Table,
}

/// One problem with a server's options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptionError {
    /// The key, value or table the problem is about.
    pub at: OptionAt,
    /// What is wrong, as the user reads it; it names the key itself (`option "utc" must be ...`),
    /// so it still reads right where no place is shown.
    pub message: String,
}

impl OptionError {
    /// `key` is not one the handler takes.
    pub fn unknown_key(key: impl Into<String>, message: impl Into<String>) -> OptionError {
        OptionError {
            at: OptionAt::Key(key.into()),
            message: message.into(),
        }
    }

    /// The value under `key` is wrong.
    pub fn value(key: impl Into<String>, message: impl Into<String>) -> OptionError {
        OptionError {
            at: OptionAt::Value(key.into()),
            message: message.into(),
        }
    }

    /// The options as a whole are refused.
    pub fn table(message: impl Into<String>) -> OptionError {
        OptionError {
            at: OptionAt::Table,
            message: message.into(),
        }
    }

    /// The key the problem is about, if it is about one.
    pub fn key(&self) -> Option<&str> {
        match &self.at {
            OptionAt::Key(key) | OptionAt::Value(key) => Some(key),
            OptionAt::Table => None,
        }
    }
}

impl fmt::Display for OptionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for OptionError {}

/// Every problem a build function found in one options table, in the order it checked them. The
/// config layer reports each as its own [`ConfigError`](super::ConfigError); `Display` joins them
/// with `"; "` for a caller that has one line to show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptionErrors(pub Vec<OptionError>);

impl fmt::Display for OptionErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for OptionErrors {}

impl From<OptionError> for OptionErrors {
    fn from(error: OptionError) -> Self {
        OptionErrors(vec![error])
    }
}

/// A refusal that names no key (a plugin's message, say) is about the whole table.
impl From<String> for OptionErrors {
    fn from(message: String) -> Self {
        OptionError::table(message).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_without_a_key_is_about_the_table_and_several_read_as_one_line() {
        let errors = OptionErrors::from("no".to_string());
        assert_eq!(errors.0[0].at, OptionAt::Table);
        assert_eq!(errors.0[0].key(), None);
        let errors = OptionErrors(vec![
            OptionError::unknown_key("a", "unknown option \"a\""),
            OptionError::value("b", "option \"b\" must be a string"),
        ]);
        assert_eq!(errors.0[1].key(), Some("b"));
        assert_eq!(
            errors.to_string(),
            "unknown option \"a\"; option \"b\" must be a string"
        );
    }
}
