//! A real `redis-server` for the cluster tests: started on a free loopback port with a temporary
//! folder and no persistence, killed (SIGKILL) and started again on the same port, and stopped
//! when dropped. Where the binary is not installed, [`RedisServer::start`] says so and the test
//! skips; `.ci/run` installs Debian's `redis-server`, so CI never skips.

use std::env;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use super::common::{temp_dir, wait_bounded, EXIT_WAIT, WAIT};

/// A running `redis-server` of a test.
pub struct RedisServer {
    binary: PathBuf,
    port: u16,
    dir: TempDir,
    extra: Vec<String>,
    child: Option<Child>,
}

impl RedisServer {
    /// A new server on a free port with `extra` arguments (such as `--requirepass`), answering
    /// PING; `None`, with a message, where `redis-server` is not on PATH.
    pub fn start(test: &str, extra: &[&str]) -> Option<RedisServer> {
        let Some(binary) = find("redis-server") else {
            eprintln!(
                "SKIPPED {test}: redis-server is not installed (Debian package redis-server; \
                 .ci/run installs it)"
            );
            return None;
        };
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        let mut server = RedisServer {
            binary,
            port,
            dir: temp_dir(),
            extra: extra.iter().map(|arg| arg.to_string()).collect(),
            child: None,
        };
        server.restart();
        Some(server)
    }

    /// `redis://127.0.0.1:PORT/0`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Starts the server (again) on its port, bounded: it must answer within [`WAIT`].
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "redis-server is running already");
        let deadline = Instant::now() + WAIT;
        loop {
            let child = Command::new(&self.binary)
                .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
                .arg("--dir")
                .arg(self.dir.path())
                .args(&self.extra)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("cannot start redis-server");
            self.child = Some(child);
            if self.wait_answering(Duration::from_secs(3)) {
                return;
            }
            // The port may still be held by the previous run's sockets: try again, bounded.
            self.kill();
            assert!(
                Instant::now() < deadline,
                "redis-server did not answer on port {} within {WAIT:?}",
                self.port
            );
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// SIGKILL, reaped (bounded).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            wait_bounded(&mut child, EXIT_WAIT);
        }
    }

    /// Whether it answers PING (or asks for a password) within `limit`.
    fn wait_answering(&mut self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(child) = &mut self.child {
                if let Ok(Some(_)) = child.try_wait() {
                    return false;
                }
            }
            if ping(self.port) {
                return true;
            }
            thread::sleep(Duration::from_millis(20));
        }
        false
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

fn ping(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    if stream.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut reply = [0; 64];
    matches!(stream.read(&mut reply), Ok(n) if n > 0 && (reply[..n].starts_with(b"+PONG") || reply[..n].starts_with(b"-NOAUTH")))
}

/// `name` on PATH.
fn find(name: &str) -> Option<PathBuf> {
    let path = env::var_os("PATH")?;
    env::split_paths(&path)
        .chain(["/usr/bin".into(), "/usr/sbin".into()])
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}
