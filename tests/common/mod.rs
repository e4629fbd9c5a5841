//! What the black-box tests share: a `sockserv serve` process run from a config written into a
//! temporary folder ([`ServeProcess`]), a client for the four socket kinds ([`Client`]), a bounded way
//! to run the binary to completion ([`run`]), a matcher for timestamp replies ([`strip_stamp`]), and a
//! look at a process tree through /proc ([`descendants_stat`]) for the zombie checks.
//!
//! Everything listens on loopback with port 0 or on a Unix path inside the temporary folder, and every
//! wait is bounded: a hung server fails a test with what it printed, it never hangs the run.
//!
//! Each test file uses a part of this module, so unused items are allowed here.

#![allow(dead_code)]

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream, UdpSocket};
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// The binary under test.
pub const SOCKSERV: &str = env!("CARGO_BIN_EXE_sockserv");

/// How long a server may take to print its `listening:` lines, and a reply to arrive.
pub const WAIT: Duration = Duration::from_secs(10);

/// How long a server may take to exit after SIGTERM: shutdown wakes, it does not poll.
pub const EXIT_WAIT: Duration = Duration::from_secs(5);

/// The placeholder a config uses for the temporary folder it is written to.
pub const DIR: &str = "{dir}";

// ---------------------------------------------------------------------------------------------------
// Endpoints, as the `listening:` lines print them.

/// Where a server listens: the framework's own endpoint type, parsed from the `listening:` lines.
pub use sockserv_framework::{Endpoint, EndpointError};

/// What the tests ask of an endpoint beyond the framework's methods.
pub trait EndpointExt {
    /// TCP or Unix stream.
    fn is_stream(&self) -> bool;
}

impl EndpointExt for Endpoint {
    fn is_stream(&self) -> bool {
        self.kind().is_stream()
    }
}

// ---------------------------------------------------------------------------------------------------
// Configs.

/// One `[[server]]` table per row: (name, listen, handler, strategy, extra TOML lines). `listen` and
/// `extra` may use [`DIR`] for the temporary folder. An empty strategy leaves the key out.
pub fn config(rows: &[(&str, &str, &str, &str, &str)]) -> String {
    let mut text = String::new();
    for (name, listen, handler, strategy, extra) in rows {
        text += &format!(
            "[[server]]\nname = \"{name}\"\nlisten = \"{listen}\"\nhandler = \"{handler}\"\n"
        );
        if !strategy.is_empty() {
            text += &format!("strategy = \"{strategy}\"\n");
        }
        if !extra.is_empty() {
            text += extra.trim_end();
            text += "\n";
        }
        text += "\n";
    }
    text
}

/// A temporary folder with a short path, so Unix socket paths stay far below the 108-byte limit.
pub fn temp_dir() -> TempDir {
    tempfile::Builder::new()
        .prefix("sockserv-test.")
        .tempdir_in("/tmp")
        .expect("cannot make a temporary folder")
}

/// Write `text` (with [`DIR`] replaced) as `name` in `dir`; returns the file's path.
pub fn write_config(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    let text = text.replace(DIR, &dir.display().to_string());
    fs::write(&path, text).expect("cannot write the config");
    path
}

// ---------------------------------------------------------------------------------------------------
// The serving process.

/// A running `sockserv serve CONFIG`, stopped with SIGTERM (and reaped) when dropped.
pub struct ServeProcess {
    child: Child,
    dir: TempDir,
    endpoints: HashMap<String, Endpoint>,
    stderr: Arc<Mutex<Vec<u8>>>,
    /// The thread reading stderr; finished once every process holding the pipe has ended.
    stderr_reader: thread::JoinHandle<()>,
    status: Option<ExitStatus>,
    /// The lines of its stdout not read yet (more `listening:` lines come after a reload).
    lines: Receiver<String>,
}

impl ServeProcess {
    /// Write `config` into a new temporary folder, serve it, and wait (bounded) until every
    /// `[[server]]` in it has printed its `listening:` line.
    pub fn start(config: &str) -> ServeProcess {
        ServeProcess::start_wrapped(config, |path| {
            let mut command = Command::new(SOCKSERV);
            command.arg("serve").arg(path);
            command
        })
    }

    /// `sockserv serve ARGS` run in `dir` (which the process keeps), once `expected` servers listen.
    pub fn spawn(dir: TempDir, args: &[&OsStr], expected: usize) -> ServeProcess {
        ServeProcess::try_spawn(dir, args, expected).unwrap_or_else(|why| panic!("{why}"))
    }

    /// Like [`spawn`](Self::spawn), but a server that does not start is an error to look at (its
    /// stderr included), for a test that may skip when, say, a fixed port is taken.
    pub fn try_spawn(
        dir: TempDir,
        args: &[&OsStr],
        expected: usize,
    ) -> Result<ServeProcess, String> {
        let mut command = Command::new(SOCKSERV);
        command.arg("serve").args(args);
        ServeProcess::try_spawn_command(dir, command, expected)
    }

    /// Write `config` into a new temporary folder and serve it with at most `nofile` descriptors
    /// (`ulimit -n`, through the shell, since the tests have no libc) and `env` added.
    pub fn start_limited(config: &str, nofile: u32, env: &[(&str, &str)]) -> ServeProcess {
        ServeProcess::start_wrapped(config, |path| {
            let mut command = Command::new("sh");
            command
                .arg("-c")
                .arg(format!("ulimit -n {nofile} && exec \"$0\" serve \"$1\""))
                .arg(SOCKSERV)
                .arg(path)
                .envs(env.iter().copied());
            command
        })
    }

    /// Write `config` into a new temporary folder and serve it through the command `wrap` makes
    /// from the config's path (a launcher that execs `sockserv serve PATH`), once every
    /// `[[server]]` in it listens.
    pub fn start_wrapped(config: &str, wrap: impl FnOnce(&Path) -> Command) -> ServeProcess {
        let dir = temp_dir();
        let path = write_config(dir.path(), "sockserv.toml", config);
        let expected = config
            .lines()
            .filter(|line| line.trim() == "[[server]]")
            .count();
        ServeProcess::try_spawn_command(dir, wrap(&path), expected)
            .unwrap_or_else(|why| panic!("{why}"))
    }

    /// `command` (a `sockserv serve`) run in `dir`, once `expected` servers listen.
    fn try_spawn_command(
        dir: TempDir,
        mut command: Command,
        expected: usize,
    ) -> Result<ServeProcess, String> {
        let mut child = command
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cannot start sockserv serve");
        let (stderr, stderr_reader) =
            drain_until_closed(child.stderr.take().expect("stderr is piped"));
        let lines = line_channel(child.stdout.take().expect("stdout is piped"));
        let mut serve = ServeProcess {
            child,
            dir,
            endpoints: HashMap::new(),
            stderr,
            stderr_reader,
            status: None,
            lines,
        };
        match serve.read_listening(expected) {
            Ok(()) => Ok(serve),
            Err(why) => {
                serve.kill();
                thread::sleep(Duration::from_millis(50));
                Err(format!(
                    "sockserv serve: {why}; stderr:\n{}",
                    serve.stderr()
                ))
            }
        }
    }

    /// Collect `expected` `listening: NAME ENDPOINT ...` lines.
    fn read_listening(&mut self, expected: usize) -> Result<(), String> {
        let deadline = Instant::now() + WAIT;
        let mut seen = 0;
        while seen < expected {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = match self.lines.recv_timeout(left) {
                Ok(line) => line,
                Err(RecvTimeoutError::Timeout) => {
                    return Err("no listening line within 10 s".into())
                }
                Err(RecvTimeoutError::Disconnected) => return Err("it closed its stdout".into()),
            };
            let Some(rest) = line.strip_prefix("listening: ") else {
                continue;
            };
            let mut words = rest.split_whitespace();
            let (Some(name), Some(endpoint)) = (words.next(), words.next()) else {
                return Err(format!("malformed line {line:?}"));
            };
            let endpoint = endpoint
                .parse()
                .map_err(|err: EndpointError| err.to_string())?;
            self.endpoints.insert(name.to_string(), endpoint);
            seen += 1;
        }
        Ok(())
    }

    /// Wait (bounded) for `count` more `listening:` lines — the servers a reload started — and
    /// record their endpoints.
    pub fn wait_listening(&mut self, count: usize) {
        if let Err(why) = self.read_listening(count) {
            self.fail(&why);
        }
    }

    /// Wait at most `limit` until stderr holds `needle` `count` times; whether it did.
    pub fn wait_stderr(&self, needle: &str, count: usize, limit: Duration) -> bool {
        eventually(limit, || self.stderr().matches(needle).count() >= count)
    }

    /// The next line of stdout within `limit`, if one comes.
    pub fn next_line(&self, limit: Duration) -> Option<String> {
        self.lines.recv_timeout(limit).ok()
    }

    /// Send `sig` (a name for `kill`, e.g. "TERM") to the serving process.
    pub fn signal(&self, sig: &str) {
        signal(self.pid(), sig);
    }

    /// Wait at most `limit` for the process to exit; its status, or `None` while it runs. Once it
    /// has exited, its last lines are read too (bounded: a process it left behind may hold the
    /// pipe), so [`Self::stderr`] has everything it wrote.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = wait_bounded(&mut self.child, limit);
            if self.status.is_some() {
                eventually(Duration::from_secs(2), || self.stderr_reader.is_finished());
            }
        }
        self.status
    }

    /// SIGKILL, reaped (bounded), and any server process it forked killed too.
    fn kill(&mut self) {
        if self.status.is_none() {
            let _ = self.child.kill();
            self.status = wait_bounded(&mut self.child, EXIT_WAIT);
        }
        leftovers(self.dir.path());
    }

    fn fail(&mut self, why: &str) -> ! {
        self.kill();
        thread::sleep(Duration::from_millis(50));
        panic!("sockserv serve: {why}; stderr:\n{}", self.stderr());
    }

    /// The endpoint `name` printed, with its real port.
    pub fn endpoint(&self, name: &str) -> &Endpoint {
        self.endpoints
            .get(name)
            .unwrap_or_else(|| panic!("no server {name:?} in {:?}", self.endpoints))
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The temporary folder the config (and any relative Unix socket) lives in.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// What the process wrote to stderr so far.
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().unwrap()).into_owned()
    }

    /// Send SIGTERM and wait (bounded) for the exit; panics if it does not exit in time, or if a
    /// process it started (a forking server's) outlives it.
    pub fn terminate(&mut self) -> ExitStatus {
        if let Some(status) = self.status {
            return status;
        }
        signal(self.pid(), "TERM");
        let Some(status) = self.wait_exit(EXIT_WAIT) else {
            self.fail("still running 5 s after SIGTERM");
        };
        let left = leftovers(self.dir());
        if !left.is_empty() {
            panic!(
                "sockserv exited ({status}) but left processes {left:?} running; stderr:\n{}",
                self.stderr()
            );
        }
        status
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        if self.status.is_none() {
            signal(self.pid(), "TERM");
            self.status = wait_bounded(&mut self.child, EXIT_WAIT);
        }
        // Killed if still running after SIGTERM, and so is any server process it forked.
        self.kill();
    }
}

/// The processes of the binary under test still alive in `dir` (every process a `sockserv serve`
/// started there, forked server processes included, even if orphaned) after a grace period. Each is
/// killed, so that no test leaves a server behind whatever it asserts.
pub fn leftovers(dir: &Path) -> Vec<u32> {
    let binary = fs::canonicalize(SOCKSERV).unwrap_or_else(|_| PathBuf::from(SOCKSERV));
    let dir = fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    let running_here = || -> Vec<u32> {
        all_processes()
            .into_iter()
            .filter(|stat| stat.state != 'Z')
            .map(|stat| stat.pid)
            .filter(|pid| {
                let link = |what: &str| fs::read_link(format!("/proc/{pid}/{what}")).ok();
                link("exe").as_deref() == Some(&binary)
                    && link("cwd").as_deref() == Some(dir.as_path())
            })
            .collect()
    };
    eventually(Duration::from_secs(2), || running_here().is_empty());
    let left = running_here();
    for pid in &left {
        signal(*pid, "KILL");
    }
    left
}

/// `kill -SIG pid`, through the system's `kill` (the tests have no libc).
pub fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Wait at most `limit` for `child` to exit.
pub fn wait_bounded(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// Every line of `stdout`, sent as it is read; the thread keeps draining until the pipe closes.
fn line_channel(stdout: ChildStdout) -> Receiver<String> {
    let (send, receive) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let _ = send.send(line);
        }
    });
    receive
}

/// Everything `pipe` yields, collected on a thread.
fn drain(pipe: impl Read + Send + 'static) -> Arc<Mutex<Vec<u8>>> {
    drain_until_closed(pipe).0
}

/// As [`drain`], with the draining thread, which ends when the pipe closes.
fn drain_until_closed(
    mut pipe: impl Read + Send + 'static,
) -> (Arc<Mutex<Vec<u8>>>, thread::JoinHandle<()>) {
    let buffer = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&buffer);
    let reader = thread::spawn(move || {
        let mut chunk = [0; 4096];
        while let Ok(n @ 1..) = pipe.read(&mut chunk) {
            sink.lock().unwrap().extend_from_slice(&chunk[..n]);
        }
    });
    (buffer, reader)
}

// ---------------------------------------------------------------------------------------------------
// Running the binary to completion.

/// Run `sockserv ARGS` with `stdin`, killing it and failing if it takes longer than `limit`.
pub fn run(args: &[&str], stdin: &[u8], limit: Duration) -> Output {
    let mut child = Command::new(SOCKSERV)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot start sockserv");
    let stdout = drain(child.stdout.take().unwrap());
    let stderr = drain(child.stderr.take().unwrap());
    let mut input = child.stdin.take().unwrap();
    let stdin = stdin.to_vec();
    let writer = thread::spawn(move || input.write_all(&stdin));
    let Some(status) = wait_bounded(&mut child, limit) else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("sockserv {args:?} still running after {limit:?}");
    };
    let _ = writer.join();
    // The drain threads end when the pipes close, just after the exit.
    let collected = |buffer: &Arc<Mutex<Vec<u8>>>| {
        let deadline = Instant::now() + WAIT;
        while Arc::strong_count(buffer) > 1 && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(5));
        }
        buffer.lock().unwrap().clone()
    };
    Output {
        status,
        stdout: collected(&stdout),
        stderr: collected(&stderr),
    }
}

// ---------------------------------------------------------------------------------------------------
// A client for any socket kind.

/// Numbers the Unix datagram clients' own socket files.
static NEXT_CLIENT: AtomicUsize = AtomicUsize::new(0);

/// A connection (or connected datagram socket) to a server, with read and write timeouts of [`WAIT`].
pub enum Client {
    Tcp(TcpStream),
    Unix(UnixStream),
    Udp(UdpSocket),
    /// A Unix datagram client needs an address of its own for the reply: a file in its own folder.
    UnixDgram(UnixDatagram, TempDir),
}

impl Client {
    pub fn connect(endpoint: &Endpoint) -> io::Result<Client> {
        let client = match endpoint {
            Endpoint::Tcp(addr) => Client::Tcp(TcpStream::connect_timeout(addr, WAIT)?),
            Endpoint::Unix(path) => Client::Unix(UnixStream::connect(path)?),
            Endpoint::Udp(addr) => {
                let local: SocketAddr = if addr.is_ipv6() {
                    "[::1]:0"
                } else {
                    "127.0.0.1:0"
                }
                .parse()
                .unwrap();
                let socket = UdpSocket::bind(local)?;
                socket.connect(addr)?;
                Client::Udp(socket)
            }
            Endpoint::UnixDatagram(path) => {
                let dir = temp_dir();
                let n = NEXT_CLIENT.fetch_add(1, Ordering::Relaxed);
                let socket = UnixDatagram::bind(dir.path().join(format!("client-{n}.sock")))?;
                socket.connect(path)?;
                Client::UnixDgram(socket, dir)
            }
        };
        client.set_timeouts(WAIT)?;
        Ok(client)
    }

    fn set_timeouts(&self, limit: Duration) -> io::Result<()> {
        let limit = Some(limit);
        match self {
            Client::Tcp(s) => s.set_read_timeout(limit).and(s.set_write_timeout(limit)),
            Client::Unix(s) => s.set_read_timeout(limit).and(s.set_write_timeout(limit)),
            Client::Udp(s) => s.set_read_timeout(limit).and(s.set_write_timeout(limit)),
            Client::UnixDgram(s, _) => s.set_read_timeout(limit).and(s.set_write_timeout(limit)),
        }
    }

    pub fn is_stream(&self) -> bool {
        matches!(self, Client::Tcp(_) | Client::Unix(_))
    }

    /// All of `bytes` on a stream; one datagram otherwise.
    pub fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            Client::Tcp(s) => s.write_all(bytes),
            Client::Unix(s) => s.write_all(bytes),
            Client::Udp(s) => s.send(bytes).map(drop),
            Client::UnixDgram(s, _) => s.send(bytes).map(drop),
        }
    }

    /// One read: a chunk of a stream (empty at end of stream) or one whole datagram.
    pub fn recv(&mut self) -> io::Result<Vec<u8>> {
        let mut buf = vec![0; 65_536];
        let n = match self {
            Client::Tcp(s) => s.read(&mut buf)?,
            Client::Unix(s) => s.read(&mut buf)?,
            Client::Udp(s) => s.recv(&mut buf)?,
            Client::UnixDgram(s, _) => s.recv(&mut buf)?,
        };
        buf.truncate(n);
        Ok(buf)
    }

    /// Stream bytes until `done` says the reply is whole; fails at end of stream before that.
    pub fn recv_until(&mut self, done: impl Fn(&[u8]) -> bool) -> io::Result<Vec<u8>> {
        let mut reply = Vec::new();
        while !done(&reply) {
            let chunk = self.recv()?;
            if chunk.is_empty() {
                let got = String::from_utf8_lossy(&reply);
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("closed after {got:?}"),
                ));
            }
            reply.extend_from_slice(&chunk);
        }
        Ok(reply)
    }

    /// Send `message` and read as many bytes back (a stream) or one datagram.
    pub fn echo(&mut self, message: &[u8]) -> io::Result<Vec<u8>> {
        self.send(message)?;
        if self.is_stream() {
            self.recv_until(|got| got.len() >= message.len())
        } else {
            self.recv()
        }
    }

    /// Close the sending half of a stream; nothing for datagrams.
    pub fn shutdown_write(&self) -> io::Result<()> {
        match self {
            Client::Tcp(s) => s.shutdown(Shutdown::Write),
            Client::Unix(s) => s.shutdown(Shutdown::Write),
            _ => Ok(()),
        }
    }

    /// After [`shutdown_write`](Self::shutdown_write): the rest of the stream up to the server's close.
    pub fn read_to_end(&mut self) -> io::Result<Vec<u8>> {
        let mut rest = Vec::new();
        match self {
            Client::Tcp(s) => s.read_to_end(&mut rest)?,
            Client::Unix(s) => s.read_to_end(&mut rest)?,
            _ => 0,
        };
        Ok(rest)
    }

    /// A second handle on the same stream, for writing on one thread while reading on another.
    pub fn try_clone(&self) -> io::Result<Client> {
        Ok(match self {
            Client::Tcp(s) => Client::Tcp(s.try_clone()?),
            Client::Unix(s) => Client::Unix(s.try_clone()?),
            _ => return Err(io::Error::other("only streams are cloned")),
        })
    }
}

// ---------------------------------------------------------------------------------------------------
// Timestamp replies.

/// The stamp's shape in the default format, `[YYYY-mm-dd HH:MM:SS] `: `d` is a digit, anything else
/// stands for itself.
const STAMP_SHAPE: &[u8] = b"[dddd-dd-dd dd:dd:dd] ";

/// The data of `[YYYY-mm-dd HH:MM:SS] <data>`, or `None` if `reply` does not start with such a stamp
/// (or its date and time are out of range).
pub fn strip_stamp(reply: &[u8]) -> Option<&[u8]> {
    let head = reply.get(..STAMP_SHAPE.len())?;
    let shaped = head
        .iter()
        .zip(STAMP_SHAPE)
        .all(|(&got, &want)| match want {
            b'd' => got.is_ascii_digit(),
            _ => got == want,
        });
    if !shaped {
        return None;
    }
    let number = |range: std::ops::Range<usize>| -> u32 {
        std::str::from_utf8(&head[range]).unwrap().parse().unwrap()
    };
    let in_range = (1..=12).contains(&number(6..8))
        && (1..=31).contains(&number(9..11))
        && number(12..14) < 24
        && number(15..17) < 60
        && number(18..20) < 61;
    in_range.then(|| &reply[STAMP_SHAPE.len()..])
}

/// The length of the default stamp, `[YYYY-mm-dd HH:MM:SS] `.
pub const STAMP_LEN: usize = STAMP_SHAPE.len();

// ---------------------------------------------------------------------------------------------------
// Processes, through /proc.

/// One process's pid, parent and state letter (`Z` for a zombie), from `/proc/PID/stat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcStat {
    pub pid: u32,
    pub ppid: u32,
    pub state: char,
}

/// Parse `/proc/PID/stat`: `pid (comm) state ppid ...`, where comm may hold spaces and parentheses.
fn proc_stat(pid: u32) -> Option<ProcStat> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &text[text.rfind(')')? + 1..];
    let mut fields = after.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some(ProcStat { pid, ppid, state })
}

/// Every process there is, as far as /proc shows it.
fn all_processes() -> Vec<ProcStat> {
    fs::read_dir("/proc")
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|entry| entry.file_name().to_str()?.parse().ok())
                .filter_map(proc_stat)
                .collect()
        })
        .unwrap_or_default()
}

/// Every process below `root` (children, grandchildren, ...), zombies included.
pub fn descendants_stat(root: u32) -> Vec<ProcStat> {
    let all = all_processes();
    let mut found = Vec::new();
    let mut parents = vec![root];
    while let Some(parent) = parents.pop() {
        for stat in all.iter().filter(|stat| stat.ppid == parent) {
            found.push(*stat);
            parents.push(stat.pid);
        }
    }
    found
}

/// Poll (every 20 ms, at most `limit`) until `check` holds; returns whether it did.
pub fn eventually(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if check() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(20));
    }
}
