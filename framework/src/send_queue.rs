//! How many bytes a connection's socket still holds for its peer: `SIOCOUTQ`, behind
//! [`RequestControl::send_queue`](sockserv_plugin::RequestControl::send_queue) for blocking
//! handlers and [`SessionContext::send_queue`](sockserv_plugin::SessionContext::send_queue) for
//! sessions.
//!
//! Why a handler needs it: a socket's send buffer grows with the connection (Linux autotunes it up
//! to `net.ipv4.tcp_wmem`'s maximum, 4 MiB by default), and a writer blocked on a full buffer is
//! woken only once the kernel has freed a large part of it. So "bytes written" can stand still for
//! seconds while the peer reads steadily, and a handler that judged its peer by its own writes
//! alone would call a slow but steady reader stuck. The send queue moves whenever the peer takes
//! bytes (TCP: acknowledges them; a Unix stream: reads them), however the writer is blocked.
//!
//! The one system call lives here, with its `unsafe`; other platforms answer "unsupported".

use std::io;

use socket2::Socket;

/// The bytes in `socket`'s send queue: on TCP written and not yet acknowledged by the peer, on a
/// Unix stream socket not yet read by the peer (as the kernel counts its buffers, overhead
/// included).
///
/// # Errors
///
/// The system's refusal (`EINVAL` on a listening socket), or `Unsupported` off Linux.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub(crate) fn send_queue(socket: &Socket) -> io::Result<usize> {
    use std::os::fd::AsRawFd;

    let mut queued: libc::c_int = 0;
    // SAFETY: SIOCOUTQ (TIOCOUTQ) writes one `int` through its pointer argument, which points to
    // `queued`, a live `c_int` of this frame; the descriptor is borrowed from `socket` and stays
    // open for the call.
    let done = unsafe { libc::ioctl(socket.as_raw_fd(), libc::TIOCOUTQ, &mut queued) };
    if done == -1 {
        return Err(io::Error::last_os_error());
    }
    usize::try_from(queued).map_err(|_| io::Error::from(io::ErrorKind::InvalidData))
}

/// Off Linux: not known.
///
/// # Errors
///
/// Always `Unsupported`.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub(crate) fn send_queue(_socket: &Socket) -> io::Result<usize> {
    Err(io::Error::from(io::ErrorKind::Unsupported))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::os::unix::net::UnixStream;
    use std::time::{Duration, Instant};

    /// Waits (bounded) until `socket`'s send queue satisfies `done`; returns the last figure.
    fn until(socket: &Socket, done: impl Fn(usize) -> bool) -> usize {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let queued = send_queue(socket).unwrap();
            if done(queued) || Instant::now() > deadline {
                return queued;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn a_tcp_send_queue_holds_what_the_peer_has_not_taken() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut server, _) = listener.accept().unwrap();
        let socket = Socket::from(client.try_clone().unwrap());
        assert_eq!(send_queue(&socket).unwrap(), 0);
        // Fill the way to a peer that does not read: its receive buffer, then our send buffer.
        client.set_nonblocking(true).unwrap();
        let mut sent = 0;
        while sent < 64 << 20 {
            match (&client).write(&[7; 65536]) {
                Ok(n) => sent += n,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => break,
                Err(err) => panic!("{err}"),
            }
        }
        let full = send_queue(&socket).unwrap();
        assert!(full > 0 && full <= sent, "{full} of {sent} bytes queued");
        // The peer reads it all: the send queue empties without us writing a byte.
        let mut got = vec![0; sent];
        server.read_exact(&mut got).unwrap();
        assert_eq!(until(&socket, |queued| queued == 0), 0);
    }

    #[test]
    fn a_unix_send_queue_empties_as_the_peer_reads() {
        let (ours, mut theirs) = UnixStream::pair().unwrap();
        let socket = Socket::from(ours.try_clone().unwrap());
        assert_eq!(send_queue(&socket).unwrap(), 0);
        (&ours).write_all(&[7; 1000]).unwrap();
        let queued = send_queue(&socket).unwrap();
        assert!(queued >= 1000, "{queued} bytes queued");
        let mut got = [0; 1000];
        theirs.read_exact(&mut got).unwrap();
        assert_eq!(until(&socket, |queued| queued == 0), 0);
    }

    #[test]
    fn a_listening_socket_has_no_send_queue() {
        let listener = Socket::from(TcpListener::bind("127.0.0.1:0").unwrap());
        assert!(send_queue(&listener).is_err());
    }
}
