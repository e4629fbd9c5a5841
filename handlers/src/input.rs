//! Reading helpers shared by the built-in handlers.

use std::io::{self, BufRead, ErrorKind};

/// `rfile.fill_buf()`, retried when a signal interrupts the read (`BufReader::fill_buf` does not retry,
/// and the server installs signal handlers). An empty slice means end of input.
pub(crate) fn fill_buf(rfile: &mut dyn BufRead) -> io::Result<&[u8]> {
    loop {
        match rfile.fill_buf() {
            Err(err) if err.kind() == ErrorKind::Interrupted => continue,
            Err(err) => return Err(err),
            Ok(_) => break,
        }
    }
    // The first call left the data buffered (or hit end of input, which a second read repeats);
    // calling again keeps the borrow checker happy about returning the slice from a loop.
    rfile.fill_buf()
}
