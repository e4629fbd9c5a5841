//! Starting a program with listening sockets handed over the way systemd hands them
//! (sd_listen_fds(3)): the sockets at descriptors 3, 4, ..., `LISTEN_FDS` counting them,
//! `LISTEN_FDNAMES` naming them and `LISTEN_PID` set to the new process's own pid. sockserv starts
//! a forking server's process this way (its own executable, a hidden subcommand), and a binary
//! upgrade starts the new executable this way, so the receiving side is the socket activation
//! code in every case ([`crate::activation`]).
//!
//! A process with threads may fork only if the child calls nothing but async-signal-safe
//! functions before execve(2) (POSIX, fork(2)): no allocation, no lock, no logging. Everything
//! the child needs — the argument and environment arrays, the `LISTEN_PID=` entry with room for
//! the pid — is therefore made before fork(); the child then only calls sigaction, sigprocmask,
//! prctl, getpid, getppid, fcntl, dup2, write, execve and _exit, all on that list (signal-safety(7)).
//! This is how decision 3 of the design ("forking never happens in a multi-threaded process")
//! still holds: the child of a threaded process runs no code of ours but those calls, then
//! becomes a fresh program.
//!
//! Whether execve(2) succeeded is known before [`spawn`] returns: the child writes its `errno`
//! into a close-on-exec pipe when execve fails, and the parent reads that pipe to its end (the
//! end comes at the successful execve, which closes it).

use std::ffi::{CString, OsStr, OsString};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use nix::sys::signal::SigSet;
use nix::unistd::Pid;

/// The first passed descriptor (`SD_LISTEN_FDS_START`).
const FIRST_FD: RawFd = 3;
/// The environment entry whose value the child writes: its own pid, up to this many digits.
const LISTEN_PID_DIGITS: usize = 20;

/// What to run, and what to hand it.
#[derive(Debug)]
pub struct Exec<'a> {
    /// The executable (`/proc/self/exe` for this process's own).
    pub program: PathBuf,
    /// `argv[0]`, then the arguments.
    pub argv: Vec<OsString>,
    /// The whole environment of the new program, without the `LISTEN_*` variables (set here).
    pub env: Vec<(OsString, OsString)>,
    /// The listening sockets, each with its `LISTEN_FDNAMES` name, at 3, 4, ... in this order.
    pub listeners: Vec<(String, BorrowedFd<'a>)>,
    /// More descriptors, placed after the listeners; each variable is set to its number there.
    pub extra: Vec<(&'static str, BorrowedFd<'a>)>,
    /// The new program's standard input, if not this process's.
    pub stdin: Option<BorrowedFd<'a>>,
    /// Ask the kernel for SIGTERM when the calling thread ends (`PR_SET_PDEATHSIG`).
    pub die_with_parent: bool,
    /// The signals blocked when the program starts (it unblocks them once it handles them).
    pub blocked: SigSet,
}

/// Everything the child needs, made before fork(): it must not allocate.
struct Prepared {
    program: CString,
    _argv: Vec<CString>,
    argv_ptrs: Vec<*const libc::c_char>,
    _env: Vec<CString>,
    env_ptrs: Vec<*const libc::c_char>,
    /// The `LISTEN_PID=` entry, where the child writes its pid: (its bytes, where the digits go).
    listen_pid: Option<(*mut u8, usize)>,
    /// The descriptors to place, in order from 3 on.
    fds: Vec<RawFd>,
    stdin: Option<RawFd>,
    die_with_parent: bool,
    parent: libc::pid_t,
    blocked: libc::sigset_t,
    /// Keeps the `LISTEN_PID=` buffer alive (its pointer is in `env_ptrs`).
    _listen_pid_buf: Option<Vec<u8>>,
}

/// Start `exec` and return its pid once execve(2) has succeeded.
///
/// # Errors
///
/// A name or value with a NUL byte; a pipe or fork() that fails; execve(2)'s own error (the
/// program is missing or not executable), read back from the child.
pub fn spawn(exec: &Exec<'_>) -> io::Result<Pid> {
    let prepared = prepare(exec)?;
    let (report_rx, report_tx) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    let everything = SigSet::all();
    let old = everything.thread_swap_mask(nix::sys::signal::SigmaskHow::SIG_SETMASK)?;
    // SAFETY: the child runs `child` only, which calls async-signal-safe functions on memory made
    // before the fork (see the module's doc) and never returns.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: in the child, as said above.
        unsafe { child(&prepared, report_tx.as_raw_fd()) }
    }
    let forked = io::Error::last_os_error();
    let _ = old.thread_set_mask();
    drop(report_tx);
    if pid < 0 {
        return Err(forked);
    }
    let pid = Pid::from_raw(pid);
    let mut errno = [0u8; 4];
    let mut got = 0;
    while got < errno.len() {
        match nix::unistd::read(&report_rx, &mut errno[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(err) => return Err(err.into()),
        }
    }
    if got == 0 {
        return Ok(pid);
    }
    // execve failed: the child has exited (or is about to); reap it.
    let _ = nix::sys::wait::waitpid(pid, None);
    Err(io::Error::from_raw_os_error(i32::from_ne_bytes(errno)))
}

fn c_string(bytes: &[u8]) -> io::Result<CString> {
    CString::new(bytes).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "an argument or environment entry holds a NUL byte",
        )
    })
}

fn env_entry(key: &OsStr, value: &OsStr) -> io::Result<CString> {
    c_string(&[key.as_bytes(), b"=", value.as_bytes()].concat())
}

fn prepare(exec: &Exec<'_>) -> io::Result<Prepared> {
    let program = c_string(exec.program.as_os_str().as_bytes())?;
    let argv = (exec.argv.iter())
        .map(|arg| c_string(arg.as_bytes()))
        .collect::<io::Result<Vec<_>>>()?;
    let mut env = Vec::new();
    for (key, value) in &exec.env {
        let ours = ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"]
            .iter()
            .any(|name| key == name)
            || exec.extra.iter().any(|(name, _)| key == name);
        if !ours {
            env.push(env_entry(key, value)?);
        }
    }
    let count = exec.listeners.len();
    let mut fds: Vec<RawFd> = exec
        .listeners
        .iter()
        .map(|(_, fd)| fd.as_raw_fd())
        .collect();
    for (index, (name, fd)) in exec.extra.iter().enumerate() {
        let number = FIRST_FD + (count + index) as RawFd;
        env.push(env_entry(name.as_ref(), number.to_string().as_ref())?);
        fds.push(fd.as_raw_fd());
    }
    let mut listen_pid_buf = None;
    if count > 0 {
        let names: Vec<&str> = exec
            .listeners
            .iter()
            .map(|(name, _)| name.as_str())
            .collect();
        env.push(env_entry(
            "LISTEN_FDS".as_ref(),
            count.to_string().as_ref(),
        )?);
        env.push(env_entry(
            "LISTEN_FDNAMES".as_ref(),
            names.join(":").as_ref(),
        )?);
        let mut buf = b"LISTEN_PID=".to_vec();
        buf.resize(buf.len() + LISTEN_PID_DIGITS + 1, 0);
        listen_pid_buf = Some(buf);
    }
    let mut env_ptrs: Vec<*const libc::c_char> = env.iter().map(|e| e.as_ptr()).collect();
    let listen_pid = listen_pid_buf.as_mut().map(|buf| {
        env_ptrs.push(buf.as_ptr().cast());
        (buf.as_mut_ptr(), "LISTEN_PID=".len())
    });
    env_ptrs.push(std::ptr::null());
    let mut argv_ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    argv_ptrs.push(std::ptr::null());
    Ok(Prepared {
        program,
        _argv: argv,
        argv_ptrs,
        _env: env,
        env_ptrs,
        listen_pid,
        fds,
        stdin: exec.stdin.map(|fd| fd.as_raw_fd()),
        die_with_parent: exec.die_with_parent,
        // SAFETY: getpid has no preconditions.
        parent: unsafe { libc::getpid() },
        blocked: *exec.blocked.as_ref(),
        _listen_pid_buf: listen_pid_buf,
    })
}

/// The child, between fork() and execve(): async-signal-safe calls only.
///
/// # Safety
///
/// Only in the child of a fork(), with `prepared` made before it.
unsafe fn child(prepared: &Prepared, report: RawFd) -> ! {
    let fail = |report: RawFd| -> ! {
        let errno = io::Error::last_os_error().raw_os_error().unwrap_or(0);
        let bytes = errno.to_ne_bytes();
        // SAFETY: write and _exit are async-signal-safe; `bytes` lives on this stack.
        unsafe {
            libc::write(report, bytes.as_ptr().cast(), bytes.len());
            libc::_exit(127)
        }
    };
    // SAFETY: every call below is async-signal-safe and works on memory prepared before the fork.
    unsafe {
        // The parent's handlers must not run here: back to the default actions (execve would do the
        // same for caught signals; ignored ones stay ignored). Every signal is blocked meanwhile.
        for signal in 1..libc::SIGRTMAX() {
            let mut old: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(signal, std::ptr::null(), &mut old) == 0
                && old.sa_sigaction != libc::SIG_DFL
                && old.sa_sigaction != libc::SIG_IGN
            {
                libc::signal(signal, libc::SIG_DFL);
            }
        }
        if prepared.die_with_parent {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                fail(report);
            }
            if libc::getppid() != prepared.parent {
                libc::_exit(1);
            }
        }
        // Out of the way first (a source may sit where another one goes), then into place; the
        // copies are close-on-exec, the placed descriptors are not.
        let above = FIRST_FD + prepared.fds.len() as RawFd + 1;
        let mut moved = [0 as RawFd; crate::activation::MAX_LISTEN_FDS + 8];
        if prepared.fds.len() > moved.len() {
            libc::_exit(126);
        }
        for (slot, &fd) in moved.iter_mut().zip(&prepared.fds) {
            *slot = libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, above);
            if *slot < 0 {
                fail(report);
            }
        }
        let stdin = match prepared.stdin {
            Some(fd) => {
                let copy = libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, above);
                if copy < 0 {
                    fail(report);
                }
                Some(copy)
            }
            None => None,
        };
        for (index, &fd) in moved.iter().take(prepared.fds.len()).enumerate() {
            if libc::dup2(fd, FIRST_FD + index as RawFd) < 0 {
                fail(report);
            }
        }
        if let Some(fd) = stdin {
            if libc::dup2(fd, 0) < 0 {
                fail(report);
            }
        }
        if let Some((buf, at)) = prepared.listen_pid {
            write_decimal(buf.add(at), libc::getpid() as u64);
        }
        if libc::pthread_sigmask(libc::SIG_SETMASK, &prepared.blocked, std::ptr::null_mut()) != 0 {
            fail(report);
        }
        libc::execve(
            prepared.program.as_ptr(),
            prepared.argv_ptrs.as_ptr(),
            prepared.env_ptrs.as_ptr(),
        );
        fail(report)
    }
}

/// Write `n` in decimal at `to`, then a NUL: at most 20 digits and the NUL, which the buffer has
/// room for. No allocation.
///
/// # Safety
///
/// `to` must point at [`LISTEN_PID_DIGITS`] + 1 writable bytes.
unsafe fn write_decimal(to: *mut u8, mut n: u64) {
    let mut digits = [0u8; LISTEN_PID_DIGITS];
    let mut len = 0;
    loop {
        digits[len] = b'0' + (n % 10) as u8;
        len += 1;
        n /= 10;
        if n == 0 || len == digits.len() {
            break;
        }
    }
    for i in 0..len {
        // SAFETY: i < len <= LISTEN_PID_DIGITS, within the buffer the caller vouches for.
        unsafe { *to.add(i) = digits[len - 1 - i] };
    }
    // SAFETY: len <= LISTEN_PID_DIGITS, so the NUL is within the buffer too.
    unsafe { *to.add(len) = 0 };
}

/// A descriptor this process can hand to [`Exec::extra`]: a pipe's read end (kept here) and write
/// end (handed over), both close-on-exec in this process.
///
/// # Errors
///
/// pipe2(2)'s.
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let (rx, tx) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    Ok((rx, tx))
}

/// An in-memory file (memfd_create(2)) holding `bytes`, read from its start: how a config's text
/// goes to a server process, as its standard input ([`Exec::stdin`]), without a file on disk that
/// could change in between. Close-on-exec here.
///
/// # Errors
///
/// memfd_create(2)'s, or the write's.
pub fn memory_file(name: &str, bytes: &[u8]) -> io::Result<OwnedFd> {
    use std::io::{Seek, Write};
    let fd = nix::sys::memfd::memfd_create(name, nix::sys::memfd::MFdFlags::MFD_CLOEXEC)?;
    let mut file = std::fs::File::from(fd);
    file.write_all(bytes)?;
    file.rewind()?;
    Ok(file.into())
}

/// Take over a descriptor named by an environment variable (a number), clearing the variable:
/// the receiving side of [`Exec::extra`]. `Ok(None)` when it is not set.
///
/// # Errors
///
/// The variable is not a descriptor number, or that descriptor is not open.
pub fn take_fd_from_env(name: &str) -> io::Result<Option<OwnedFd>> {
    let Some(value) = std::env::var_os(name) else {
        return Ok(None);
    };
    std::env::remove_var(name);
    let bad = || {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{name}={value:?} is not an open descriptor"),
        )
    };
    let fd: RawFd = value
        .to_str()
        .and_then(|v| v.parse().ok())
        .filter(|fd| *fd >= FIRST_FD)
        .ok_or_else(bad)?;
    // SAFETY: F_GETFD only reads the descriptor's flags; a closed one gives EBADF.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } == -1 {
        return Err(bad());
    }
    // SAFETY: the variable names a descriptor the parent placed for this process alone, and it is
    // taken once (the variable is cleared above). It is made close-on-exec so that no program this
    // one starts inherits it.
    unsafe {
        libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
        Ok(Some(OwnedFd::from_raw_fd(fd)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::fd::AsFd;

    #[test]
    fn decimal_pids_are_written_in_place() {
        let mut buf = [0xffu8; LISTEN_PID_DIGITS + 1];
        for (n, want) in [(0u64, "0"), (7, "7"), (4_194_304, "4194304")] {
            // SAFETY: the buffer has the room write_decimal needs.
            unsafe { write_decimal(buf.as_mut_ptr(), n) };
            let end = buf.iter().position(|b| *b == 0).unwrap();
            assert_eq!(std::str::from_utf8(&buf[..end]).unwrap(), want);
        }
    }

    /// A real child: sh sees the socket at 3 with the variables set for its own pid, and the extra
    /// descriptor where its variable says.
    #[test]
    fn the_child_gets_the_listeners_at_3_with_its_own_pid() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let (rx, tx) = pipe().unwrap();
        let script = "[ \"$LISTEN_PID\" = \"$$\" ] && [ -e /proc/$$/fd/3 ] && \
                      echo \"$LISTEN_FDS $LISTEN_FDNAMES $EXTRA_FD\" >&$EXTRA_FD";
        let env: Vec<(OsString, OsString)> = std::env::vars_os().collect();
        let exec = Exec {
            program: "/bin/sh".into(),
            argv: vec!["sh".into(), "-c".into(), script.into()],
            env,
            listeners: vec![("web".into(), listener.as_fd())],
            extra: vec![("EXTRA_FD", tx.as_fd())],
            stdin: None,
            die_with_parent: true,
            blocked: SigSet::empty(),
        };
        let pid = spawn(&exec).unwrap();
        drop(exec);
        drop(tx);
        let mut said = String::new();
        std::fs::File::from(rx).read_to_string(&mut said).unwrap();
        let status = nix::sys::wait::waitpid(pid, None).unwrap();
        assert_eq!(said.trim(), "1 web 4", "{status:?}");
    }

    #[test]
    fn a_missing_program_is_an_error_here() {
        let exec = Exec {
            program: "/nonexistent/sockserv".into(),
            argv: vec!["sockserv".into()],
            env: Vec::new(),
            listeners: Vec::new(),
            extra: Vec::new(),
            stdin: None,
            die_with_parent: false,
            blocked: SigSet::empty(),
        };
        let err = spawn(&exec).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound, "{err}");
    }
}
