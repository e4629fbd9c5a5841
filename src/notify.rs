//! sd_notify(3): telling the service manager how the process is doing, when `NOTIFY_SOCKET` says
//! where to (a unit with `Type=notify` or `Type=notify-reload`). `READY=1` once every server
//! listens, `RELOADING=1` (with `MONOTONIC_USEC`) then `READY=1` around a reload, `STOPPING=1` when
//! the drain begins, and a one-line `STATUS=` with each. Without `NOTIFY_SOCKET` nothing is sent.

use std::ffi::OsString;
use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::Arc;

/// Where notifications go; `None` inside when there is no service manager listening. Clones share
/// the socket (the watchdog's thread sends through one).
#[derive(Clone)]
pub struct Notifier {
    target: Option<Arc<Target>>,
}

struct Target {
    socket: UnixDatagram,
    addr: SocketAddr,
    /// `NOTIFY_SOCKET` as it was, for a successor (a binary upgrade) to notify the same manager.
    variable: OsString,
}

impl Notifier {
    /// From `NOTIFY_SOCKET` (a path, or `@name` for an abstract socket), which is then cleared so
    /// that no child inherits it. Call before starting threads.
    ///
    /// # Errors
    ///
    /// The variable names no usable socket address, or no datagram socket could be made.
    pub fn from_env() -> io::Result<Notifier> {
        let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
            return Ok(Notifier { target: None });
        };
        std::env::remove_var("NOTIFY_SOCKET");
        let variable = path.clone();
        let path = path.to_string_lossy().into_owned();
        let addr = match path.strip_prefix('@') {
            Some(name) => SocketAddr::from_abstract_name(name.as_bytes())?,
            None => SocketAddr::from_pathname(&path)?,
        };
        let socket = UnixDatagram::unbound()?;
        Ok(Notifier {
            target: Some(Arc::new(Target {
                socket,
                addr,
                variable,
            })),
        })
    }

    /// `NOTIFY_SOCKET` as this process was given it, if it was.
    #[allow(dead_code)]
    pub fn variable(&self) -> Option<&OsString> {
        self.target.as_ref().map(|t| &t.variable)
    }

    /// `RELOADING=1` with `MONOTONIC_USEC` (what `Type=notify-reload` waits for after its
    /// SIGHUP); `READY=1` follows once the reload is done, whatever its outcome.
    pub fn reloading(&self) {
        let now = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC);
        let usec = now.map_or(0, |t| {
            t.tv_sec() as u64 * 1_000_000 + t.tv_nsec() as u64 / 1_000
        });
        self.send(&format!(
            "RELOADING=1\nMONOTONIC_USEC={usec}\nSTATUS=reloading the config"
        ));
    }

    /// Send `state` (newline-separated `KEY=VALUE` lines). A failure is logged, never fatal: the
    /// servers serve whether or not the manager hears.
    pub fn send(&self, state: &str) {
        let Some(target) = &self.target else {
            return;
        };
        if let Err(err) = target.socket.send_to_addr(state.as_bytes(), &target.addr) {
            log::warn!("sd_notify: cannot send {state:?}: {err}");
        }
    }
}
