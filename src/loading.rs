//! Reading and validating a config, the one way every command does it: `check`, `serve` at start,
//! a server process, and a reload (SIGHUP) all go through [`read`] and [`load`], so a file that
//! passes `sockserv check` is exactly a file a reload accepts.

use std::path::{Path, PathBuf};

use sockserv_framework::config::{Config, ConfigErrors, ConfigText};
use sockserv_framework::Registry;

/// Where the served config comes from: a file, read again at every reload, or the embedded one.
#[derive(Debug, Clone)]
pub struct Source {
    path: Option<PathBuf>,
}

impl Source {
    pub fn new(path: Option<&Path>) -> Source {
        Source {
            path: path.map(Path::to_path_buf),
        }
    }

    /// The config's text as it is now.
    ///
    /// # Errors
    ///
    /// The file cannot be read.
    pub fn read(&self) -> Result<ConfigText, ConfigErrors> {
        read(self.path.as_deref())
    }
}

/// The text of `path`, or of the embedded default config.
///
/// # Errors
///
/// The file cannot be read.
pub fn read(path: Option<&Path>) -> Result<ConfigText, ConfigErrors> {
    match path {
        Some(path) => ConfigText::read(path),
        None => Ok(ConfigText::embedded()),
    }
}

/// Validate `text` with the built-in handlers registered (and its plugins loaded).
///
/// # Errors
///
/// Every problem in it, each with its `FILE:LINE:COL`.
pub fn load(text: &ConfigText) -> Result<Config, ConfigErrors> {
    text.load(&mut registry())
}

/// Every handler a config may name: the built-ins.
fn registry() -> Registry {
    let mut registry = Registry::new();
    sockserv_handlers::register_builtins(&mut registry).expect("built-in handler names are unique");
    registry
}
