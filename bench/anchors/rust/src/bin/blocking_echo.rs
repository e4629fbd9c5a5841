//! A blocking thread-per-connection echo with std alone: accept, spawn a thread, `read` into a 64 KiB
//! buffer and `write_all` it back until end-of-file. TCP_NODELAY on, as sockserv's bench configs set
//! it; the listen backlog is std's.
//!
//!     blocking-echo tcp://127.0.0.1:0 | blocking-echo unix:///tmp/x.sock

use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::unix::net::UnixListener;
use std::thread;

use sockserv_anchors::{announce, endpoint_arg, Endpoint, BUFFER};

fn echo<S: Read + Write>(mut socket: S) {
    let mut buf = vec![0u8; BUFFER];
    loop {
        match socket.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if socket.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
        }
    }
}

fn main() -> std::io::Result<()> {
    match endpoint_arg("blocking-echo tcp://IP:PORT | unix:///PATH") {
        Endpoint::Tcp(addr) => {
            let listener = TcpListener::bind(addr)?;
            announce(&format!("tcp://{}", listener.local_addr()?));
            for socket in listener.incoming().flatten() {
                let _ = socket.set_nodelay(true);
                thread::spawn(move || echo(socket));
            }
        }
        Endpoint::Unix(path) => {
            let _ = std::fs::remove_file(&path);
            let listener = UnixListener::bind(&path)?;
            announce(&format!("unix://{path}"));
            for socket in listener.incoming().flatten() {
                thread::spawn(move || echo(socket));
            }
        }
        Endpoint::Udp(_) => {
            eprintln!("blocking-echo: streams only (tcp:// or unix://)");
            std::process::exit(2);
        }
    }
    Ok(())
}
