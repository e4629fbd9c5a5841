//! What the anchors share: reading the one endpoint argument, and announcing the bound address in
//! the `listening: NAME ENDPOINT` form `sockserv serve` prints, so bench scripts find every server's
//! port the same way.

/// An endpoint the anchors serve: `tcp://IP:PORT`, `udp://IP:PORT` or `unix:///PATH`.
pub enum Endpoint {
    Tcp(String),
    Udp(String),
    Unix(String),
}

/// The single `ENDPOINT` argument, or exit 2 with the usage.
pub fn endpoint_arg(usage: &str) -> Endpoint {
    let mut args = std::env::args().skip(1);
    let (Some(arg), None) = (args.next(), args.next()) else {
        eprintln!("usage: {usage}");
        std::process::exit(2);
    };
    if let Some(rest) = arg.strip_prefix("tcp://") {
        Endpoint::Tcp(rest.to_string())
    } else if let Some(rest) = arg.strip_prefix("udp://") {
        Endpoint::Udp(rest.to_string())
    } else if let Some(rest) = arg.strip_prefix("unix://") {
        Endpoint::Unix(rest.to_string())
    } else {
        eprintln!("usage: {usage}");
        std::process::exit(2);
    }
}

/// Prints `listening: anchor ENDPOINT` and flushes (stdout may be a file).
pub fn announce(endpoint: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "listening: anchor {endpoint}");
    let _ = out.flush();
}

/// The largest read: what a plain echo loop would use.
pub const BUFFER: usize = 64 * 1024;
