//! sd_notify(3): telling the service manager how the process is doing, when `NOTIFY_SOCKET` says
//! where to (a unit with `Type=notify` or `Type=notify-reload`). `READY=1` once every server
//! listens, `RELOADING=1` (with `MONOTONIC_USEC`) then `READY=1` around a reload, `STOPPING=1` when
//! the drain begins, and a one-line `STATUS=` with each. Without `NOTIFY_SOCKET` nothing is sent.

use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};

/// Where notifications go; `None` inside when there is no service manager listening.
pub struct Notifier {
    target: Option<(UnixDatagram, SocketAddr)>,
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
        let path = path.to_string_lossy().into_owned();
        let addr = match path.strip_prefix('@') {
            Some(name) => SocketAddr::from_abstract_name(name.as_bytes())?,
            None => SocketAddr::from_pathname(&path)?,
        };
        let socket = UnixDatagram::unbound()?;
        Ok(Notifier {
            target: Some((socket, addr)),
        })
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
        let Some((socket, addr)) = &self.target else {
            return;
        };
        if let Err(err) = socket.send_to_addr(state.as_bytes(), addr) {
            log::warn!("sd_notify: cannot send {state:?}: {err}");
        }
    }
}
