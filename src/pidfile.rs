//! `--pid-file`: where `sockserv serve` writes its pid once every server listens, for `sockserv
//! reload` and `sockserv upgrade` (and scripts' `kill -HUP $(cat FILE)`) to find it, as nginx's
//! `pid` file. Written whole (a temporary file renamed over it), so a reader never sees half a pid;
//! removed at exit only while it still names this process — after an upgrade it names the
//! successor, which wrote it when it became ready.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// The most bytes read from a pid file: a pid and a newline, with room to spare.
const MAX_PID_FILE: u64 = 64;

/// A pid file this process wrote.
#[derive(Debug)]
pub struct PidFile {
    path: PathBuf,
}

impl PidFile {
    /// Write this process's pid to `path`.
    ///
    /// # Errors
    ///
    /// The file cannot be written.
    pub fn write(path: &Path) -> anyhow::Result<PidFile> {
        let pid = std::process::id();
        let temporary = path.with_extension(format!("{pid}.tmp"));
        fs::write(&temporary, format!("{pid}\n"))
            .and_then(|()| fs::rename(&temporary, path))
            .with_context(|| format!("cannot write the pid file {}", path.display()))?;
        Ok(PidFile { path: path.into() })
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        if read(&self.path).is_ok_and(|pid| pid == std::process::id()) {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// The pid in `path`.
///
/// # Errors
///
/// The file cannot be read or holds no pid.
fn read(path: &Path) -> anyhow::Result<u32> {
    use std::io::Read;
    let mut text = String::new();
    fs::File::open(path)
        .and_then(|file| file.take(MAX_PID_FILE).read_to_string(&mut text))
        .with_context(|| format!("cannot read the pid file {}", path.display()))?;
    text.trim()
        .parse()
        .ok()
        .filter(|pid| *pid > 0)
        .with_context(|| format!("{} holds no pid: {text:?}", path.display()))
}

/// Send `signal` to the process named in the pid file `path`.
///
/// # Errors
///
/// The file holds no pid, or the process cannot be signalled (gone, or another user's).
pub fn signal(path: &Path, signal: Signal) -> anyhow::Result<()> {
    let pid = read(path)?;
    let Ok(raw) = i32::try_from(pid) else {
        bail!("{} holds no pid: {pid}", path.display());
    };
    kill(Pid::from_raw(raw), signal).with_context(|| {
        format!(
            "cannot send {signal} to process {pid} (from {})",
            path.display()
        )
    })?;
    println!("sent {signal} to process {pid}");
    Ok(())
}
