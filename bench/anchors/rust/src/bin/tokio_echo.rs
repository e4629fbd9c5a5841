//! A minimal tokio echo, as its README's example is written: a task per connection on the
//! multi-threaded runtime (2 workers, one per core here), `read` into a buffer, `write_all` it back.
//! TCP_NODELAY on, as sockserv's bench configs set it.
//!
//!     tokio-echo tcp://127.0.0.1:0 | tokio-echo unix:///tmp/x.sock

use sockserv_anchors::{announce, endpoint_arg, Endpoint, BUFFER};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, UnixListener};

async fn echo<S: AsyncRead + AsyncWrite + Unpin>(mut socket: S) {
    let mut buf = vec![0u8; BUFFER];
    loop {
        match socket.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if socket.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
        }
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> std::io::Result<()> {
    match endpoint_arg("tokio-echo tcp://IP:PORT | unix:///PATH") {
        Endpoint::Tcp(addr) => {
            let listener = TcpListener::bind(&addr).await?;
            announce(&format!("tcp://{}", listener.local_addr()?));
            loop {
                let (socket, _) = listener.accept().await?;
                let _ = socket.set_nodelay(true);
                tokio::spawn(echo(socket));
            }
        }
        Endpoint::Unix(path) => {
            let _ = std::fs::remove_file(&path);
            let listener = UnixListener::bind(&path)?;
            announce(&format!("unix://{path}"));
            loop {
                let (socket, _) = listener.accept().await?;
                tokio::spawn(echo(socket));
            }
        }
        Endpoint::Udp(_) => {
            eprintln!("tokio-echo: streams only (tcp:// or unix://)");
            std::process::exit(2);
        }
    }
}
