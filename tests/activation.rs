//! systemd's conventions from the outside: socket activation (`LISTEN_PID`, `LISTEN_FDS`,
//! `LISTEN_FDNAMES`, descriptors from 3) and sd_notify (`NOTIFY_SOCKET`). A small Python launcher
//! does what systemd does: binds the sockets, puts them at descriptors 3, 4, ..., sets the
//! variables for its own pid and execs `sockserv serve`, which keeps that pid.

mod common;

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::Command;

use common::{config, Client, Endpoint, ServeProcess, DIR, SOCKSERV, WAIT};

/// The launcher: `sockets` are (kind, address, name) to bind and pass in order.
const LAUNCHER: &str = r#"
import os, socket, sys
sockserv, config, spec = sys.argv[1], sys.argv[2], sys.argv[3:]
names, socks = [], []
for item in spec:
    kind, addr, name = item.split(",")
    if kind == "tcp":
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        host, port = addr.rsplit(":", 1)
        s.bind((host, int(port)))
        s.listen(16)
    elif kind == "udp":
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        host, port = addr.rsplit(":", 1)
        s.bind((host, int(port)))
    else:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(addr)
        s.listen(16)
    socks.append(s)
    names.append(name)
# Out of the way first (the sockets themselves sit on 3, 4, ...), then into place, inheritable.
spare = [os.dup(s.fileno()) for s in socks]
for s in socks:
    s.close()
for i, fd in enumerate(spare):
    os.dup2(fd, 3 + i)
    os.set_inheritable(3 + i, True)
    os.close(fd)
os.environ["LISTEN_PID"] = str(os.getpid())
os.environ["LISTEN_FDS"] = str(len(spec))
os.environ["LISTEN_FDNAMES"] = ":".join(names)
os.execv(sockserv, [sockserv, "serve", config])
"#;

fn launched<'a>(sockets: &'a [&'a str]) -> impl FnOnce(&Path) -> Command + 'a {
    move |path| {
        let mut command = Command::new("python3");
        command.arg("-c").arg(LAUNCHER).arg(SOCKSERV).arg(path);
        command.args(sockets);
        command
    }
}

/// A free TCP port on loopback (bound and released: the launcher binds it again at once).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn passed_sockets_are_served_matched_by_name_or_by_address() {
    let (named, by_address) = (free_port(), free_port());
    let rows = [
        // The config's address does not matter when the name matches.
        ("web", "tcp://127.0.0.1:1", "echo", "threading", ""),
        (
            "api",
            &format!("tcp://127.0.0.1:{by_address}"),
            "echo",
            "reactor",
            "",
        ),
        (
            "local",
            &format!("unix://{DIR}/l.sock"),
            "echo",
            "threading",
            "",
        ),
    ];
    let rows: Vec<_> = rows
        .iter()
        .map(|(a, b, c, d, e)| (*a, *b, *c, *d, *e))
        .collect();
    let dir_sock = std::env::temp_dir().join(format!("sockserv-act-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&dir_sock);
    let text = config(&rows).replace(
        &format!("unix://{DIR}/l.sock"),
        &format!("unix://{}", dir_sock.display()),
    );
    let web = format!("tcp,127.0.0.1:{named},web");
    let api = format!("tcp,127.0.0.1:{by_address},unknown");
    let local = format!("unix,{},local", dir_sock.display());
    let sockets = [web.as_str(), api.as_str(), local.as_str()];
    let mut serve = ServeProcess::start_wrapped(&text, launched(&sockets));
    let Endpoint::Tcp(addr) = serve.endpoint("web") else {
        panic!("tcp expected")
    };
    assert_eq!(addr.port(), named, "the passed socket, not a new bind");
    for name in ["web", "api", "local"] {
        let mut client = Client::connect(serve.endpoint(name)).unwrap();
        assert_eq!(client.echo(b"hello").unwrap(), b"hello", "{name}");
    }
    assert!(serve.terminate().success(), "{}", serve.stderr());
    // The Unix socket file is the launcher's (systemd's) to remove, not ours.
    assert!(dir_sock.exists());
    let _ = std::fs::remove_file(&dir_sock);
}

#[test]
fn a_passed_socket_of_the_wrong_kind_is_a_clear_error() {
    let port = free_port();
    let rows = [("web", "tcp://127.0.0.1:1", "echo", "threading", "")];
    let dir = common::temp_dir();
    let path = common::write_config(dir.path(), "s.toml", &config(&rows));
    let udp = format!("udp,127.0.0.1:{port},web");
    let output = launched(&[udp.as_str()])(&path)
        .output()
        .expect("python3 runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("it is a datagram socket, the endpoint needs a stream one"),
        "{stderr}"
    );
}

#[test]
fn sd_notify_says_ready_then_stopping() {
    let dir = common::temp_dir();
    let notify_path = dir.path().join("notify.sock");
    let manager = UnixDatagram::bind(&notify_path).unwrap();
    manager.set_read_timeout(Some(WAIT)).unwrap();
    let rows = [("e", "tcp://127.0.0.1:0", "echo", "threading", "")];
    let mut serve = ServeProcess::start_limited(
        &config(&rows),
        1024,
        &[("NOTIFY_SOCKET", notify_path.to_str().unwrap())],
    );
    let mut buf = [0u8; 512];
    let n = manager.recv(&mut buf).expect("READY within the wait");
    let ready = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(
        ready.starts_with("READY=1\nSTATUS=serving 1 server(s)"),
        "{ready:?}"
    );
    serve.signal("TERM");
    let n = manager.recv(&mut buf).expect("STOPPING within the wait");
    let stopping = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(stopping.starts_with("STOPPING=1"), "{stopping:?}");
    assert!(serve.wait_exit(WAIT).is_some_and(|s| s.success()));
}

/// A `LISTEN_FDS` that counts descriptors this process does not have is refused with a message,
/// never taken over (closing a descriptor that is not ours would abort the process).
#[test]
fn listen_fds_counting_closed_descriptors_is_refused() {
    let rows = [("e", "tcp://127.0.0.1:0", "echo", "threading", "")];
    let dir = common::temp_dir();
    let path = common::write_config(dir.path(), "s.toml", &config(&rows));
    let output = Command::new("sh")
        .arg("-c")
        .arg("LISTEN_PID=$$ LISTEN_FDS=40 exec \"$0\" serve \"$1\"")
        .arg(SOCKSERV)
        .arg(&path)
        .output()
        .expect("sh runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("LISTEN_FDS counts descriptor"), "{stderr}");
}
