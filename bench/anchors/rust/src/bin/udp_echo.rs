//! A plain Rust UDP echo: one thread, `recv_from` then `send_to`, for ever.
//!
//!     udp-echo udp://127.0.0.1:0

use std::net::UdpSocket;

use sockserv_anchors::{announce, endpoint_arg, Endpoint, BUFFER};

fn main() -> std::io::Result<()> {
    let Endpoint::Udp(addr) = endpoint_arg("udp-echo udp://IP:PORT") else {
        eprintln!("udp-echo: udp:// only");
        std::process::exit(2);
    };
    let socket = UdpSocket::bind(addr)?;
    announce(&format!("udp://{}", socket.local_addr()?));
    let mut buf = vec![0u8; BUFFER];
    loop {
        if let Ok((n, from)) = socket.recv_from(&mut buf) {
            let _ = socket.send_to(&buf[..n], from);
        }
    }
}
