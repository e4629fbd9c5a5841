//! What the framework's unit tests share.

use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;

use socket2::Socket;

/// A connected Unix stream pair: the server's end as the framework holds a connection, and the
/// peer's end. Both blocking.
pub(crate) fn socket_pair() -> (Socket, UnixStream) {
    let (ours, theirs) = UnixStream::pair().unwrap();
    (Socket::from(OwnedFd::from(ours)), theirs)
}
