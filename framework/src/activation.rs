//! systemd socket activation: listening sockets handed to this process as descriptors 3, 4, ...
//! with `LISTEN_PID`, `LISTEN_FDS` and `LISTEN_FDNAMES` saying so (sd_listen_fds(3)). The same
//! variables carry listeners from an old sockserv to its successor on a binary upgrade, so one code
//! path serves both.
//!
//! Each passed descriptor is matched to a `[[server]]` by its name (the socket unit's
//! `FileDescriptorName=`, or the upgrade's server name), or, failing names, by the address it is
//! bound to. The variables are cleared once read, so no child inherits them.

use std::fmt;
use std::os::fd::{FromRawFd, OwnedFd};

use nix::fcntl::FdFlag;
use socket2::Socket;

use crate::transport::to_address;
use crate::Endpoint;

/// The first passed descriptor (`SD_LISTEN_FDS_START`).
const LISTEN_FDS_START: i32 = 3;
/// The most descriptors taken from `LISTEN_FDS`: a bound, so a wrong number cannot make this
/// process claim descriptors it does not own by the thousand.
pub const MAX_LISTEN_FDS: usize = 1024;

/// Why the passed descriptors could not be taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActivationError {
    /// A variable is not what sd_listen_fds(3) says it is.
    BadVariable { name: &'static str, value: String },
    /// `LISTEN_FDS` counts a descriptor that is not open in this process.
    NotOpen { fd: i32 },
}

impl fmt::Display for ActivationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ActivationError::BadVariable { name, value } => write!(
                f,
                "socket activation: {name}={value:?} is not valid (see sd_listen_fds(3))"
            ),
            ActivationError::NotOpen { fd } => write!(
                f,
                "socket activation: LISTEN_FDS counts descriptor {fd}, which is not open"
            ),
        }
    }
}

impl std::error::Error for ActivationError {}

/// The sockets this process was handed, not yet matched to a server.
#[derive(Debug, Default)]
pub struct ListenFds {
    sockets: Vec<Passed>,
}

#[derive(Debug)]
struct Passed {
    /// Its `LISTEN_FDNAMES` entry; `None` for systemd's default name ("unknown") or none at all.
    name: Option<String>,
    socket: Socket,
}

impl ListenFds {
    /// The descriptors passed to this process, read from the environment, which is then cleared of
    /// the three variables. `Ok(None)` when none were passed to this process (no `LISTEN_PID`, or
    /// another process's).
    ///
    /// Call it before any thread is started: it changes the environment.
    ///
    /// # Errors
    ///
    /// [`ActivationError::BadVariable`] for a `LISTEN_FDS` that is not a count (or is over
    /// [`MAX_LISTEN_FDS`]) or a `LISTEN_PID` that is not a number; [`ActivationError::NotOpen`]
    /// when a descriptor it counts is not open.
    pub fn from_env() -> Result<Option<ListenFds>, ActivationError> {
        let var = |name| std::env::var(name).ok();
        let (pid, count, names) = (var("LISTEN_PID"), var("LISTEN_FDS"), var("LISTEN_FDNAMES"));
        for name in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
            std::env::remove_var(name);
        }
        let Some(pid) = pid else {
            return Ok(None);
        };
        let pid: u32 = pid.parse().map_err(|_| ActivationError::BadVariable {
            name: "LISTEN_PID",
            value: pid.clone(),
        })?;
        if pid != std::process::id() {
            return Ok(None);
        }
        let count = count.unwrap_or_default();
        let n: usize = count.parse().ok().filter(|n| *n <= MAX_LISTEN_FDS).ok_or(
            ActivationError::BadVariable {
                name: "LISTEN_FDS",
                value: count.clone(),
            },
        )?;
        let fds = LISTEN_FDS_START..LISTEN_FDS_START + n as i32;
        if let Some(fd) = fds.clone().find(|fd| !is_open(*fd)) {
            return Err(ActivationError::NotOpen { fd });
        }
        let mut names = names.as_deref().unwrap_or_default().split(':');
        let sockets = (0..n)
            .map(|i| {
                let name = names.next().filter(|n| !n.is_empty() && *n != "unknown");
                // SAFETY: sd_listen_fds(3): with LISTEN_PID naming this process, descriptors 3 to
                // 3 + LISTEN_FDS - 1 are open sockets passed to it and owned by nobody else here;
                // they are taken once (the variables are cleared above).
                let fd = unsafe { OwnedFd::from_raw_fd(LISTEN_FDS_START + i as i32) };
                // Passed without close-on-exec (they had to survive an execve): made so now, so
                // that no program this one starts inherits a listener it does not serve.
                let _ = nix::fcntl::fcntl(&fd, nix::fcntl::FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC));
                Passed {
                    name: name.map(str::to_string),
                    socket: Socket::from(fd),
                }
            })
            .collect();
        Ok(Some(ListenFds { sockets }))
    }

    /// The socket for server `name` on `endpoint`: the one passed under that name, else the one
    /// bound to the endpoint's address (any port for port 0).
    pub fn take(&mut self, name: &str, endpoint: &Endpoint) -> Option<Socket> {
        let by_name = self
            .sockets
            .iter()
            .position(|passed| passed.name.as_deref() == Some(name));
        let index = by_name.or_else(|| {
            self.sockets
                .iter()
                .position(|passed| passed.name.is_none() && bound_to(&passed.socket, endpoint))
        })?;
        Some(self.sockets.remove(index).socket)
    }

    /// How many are left unmatched.
    pub fn len(&self) -> usize {
        self.sockets.len()
    }

    /// Whether none is left.
    pub fn is_empty(&self) -> bool {
        self.sockets.is_empty()
    }

    /// What is left unmatched, for the log (they are closed when this is dropped).
    pub fn leftovers(&self) -> Vec<String> {
        self.sockets
            .iter()
            .map(|passed| {
                let addr = passed.socket.local_addr().ok().map(|a| to_address(&a));
                let addr = addr.map_or("an unknown address".to_string(), |a| a.to_string());
                match &passed.name {
                    Some(name) => format!("{name} ({addr})"),
                    None => addr,
                }
            })
            .collect()
    }

    /// The sockets by name, for tests.
    #[cfg(test)]
    fn names(&self) -> std::collections::HashMap<Option<String>, usize> {
        let mut names = std::collections::HashMap::new();
        for passed in &self.sockets {
            *names.entry(passed.name.clone()).or_insert(0) += 1;
        }
        names
    }
}

/// Whether descriptor `fd` is open in this process.
fn is_open(fd: i32) -> bool {
    // SAFETY: F_GETFD only reads the descriptor's flags; a closed one gives EBADF.
    unsafe { libc::fcntl(fd, libc::F_GETFD) != -1 }
}

/// Whether `socket` is bound where `endpoint` says (its port, unless the endpoint's is 0).
fn bound_to(socket: &Socket, endpoint: &Endpoint) -> bool {
    let Ok(addr) = socket.local_addr() else {
        return false;
    };
    match endpoint {
        Endpoint::Tcp(want) | Endpoint::Udp(want) => addr.as_socket().is_some_and(|got| {
            got.ip() == want.ip() && (want.port() == 0 || got.port() == want.port())
        }),
        Endpoint::Unix(path) | Endpoint::UnixDatagram(path) => {
            addr.as_pathname() == Some(path.as_path())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matching_is_by_name_first_then_by_address() {
        let bound = |addr: &str| {
            let socket = Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
            let addr: std::net::SocketAddr = addr.parse().unwrap();
            socket.bind(&addr.into()).unwrap();
            socket
        };
        let first = bound("127.0.0.1:0");
        let port = first.local_addr().unwrap().as_socket().unwrap().port();
        let mut fds = ListenFds {
            sockets: vec![
                Passed {
                    name: None,
                    socket: first,
                },
                Passed {
                    name: Some("web".into()),
                    socket: bound("127.0.0.1:0"),
                },
            ],
        };
        assert_eq!(fds.names().len(), 2);
        let web: Endpoint = "tcp://127.0.0.1:1".parse().unwrap();
        assert!(
            fds.take("web", &web).is_some(),
            "by name, whatever its address"
        );
        let other: Endpoint = format!("tcp://127.0.0.1:{}", port + 1).parse().unwrap();
        assert!(fds.take("api", &other).is_none(), "no name, another port");
        let same: Endpoint = format!("tcp://127.0.0.1:{port}").parse().unwrap();
        assert!(fds.take("api", &same).is_some(), "by address");
        assert!(fds.is_empty());
    }
}
