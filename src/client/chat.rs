//! `sockserv client chat ENDPOINT [--nick NAME]`: an interactive chat client, like the seed tutorial's
//! but for both directions at once — a thread prints whatever the server sends the moment it arrives,
//! while the main loop sends each line the user types.
//!
//! With `--nick`, `/nick NAME` goes out first. The client ends when stdin ends (it then closes its
//! sending half and prints what the server still sends until it closes, waiting at most
//! [`CLOSE_WAIT`]) or when the server closes the connection (`/quit`, or a server shutting down).
//! Chat is not request/reply, so this module uses a plain stream rather than the request loop.
//!
//! What it prints is neutralised line by line with the server's own rule
//! ([`sockserv_handlers::chat::text`]): escape sequences removed, other control characters and
//! bidirectional overrides shown as U+FFFD. A sockserv server already sends nothing else, but the
//! client does not take that on trust: whatever it is connected to cannot act on the user's terminal.

use std::io::{self, BufRead, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::unix::net::UnixStream;
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use sockserv_framework::Endpoint;
use sockserv_handlers::chat::text::neutralise;

use super::tls::{Plain, TlsClient, TlsStream};

/// How long a TCP connect may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// After stdin ends, how long to keep printing what the server sends before it closes.
pub const CLOSE_WAIT: Duration = Duration::from_secs(2);

/// The longest line held back waiting for its newline; a longer one is printed in pieces (each
/// neutralised), so a server that never sends a newline cannot make the client hoard memory.
const MAX_HELD_LINE: usize = 64 * 1024;

/// The arguments of `sockserv client chat`.
#[derive(Args, Debug)]
pub struct ChatArgs {
    /// Where the chat server listens: tcp://HOST:PORT or unix:///PATH.
    #[arg(value_parser = super::endpoint_string)]
    pub endpoint: String,

    /// Take this nick before sending anything else.
    #[arg(long, value_name = "NAME")]
    pub nick: Option<String>,

    #[command(flatten)]
    pub tls: super::tls::TlsArgs,
}

/// Connect, then chat between stdin/stdout and the server until either side ends.
pub fn run(args: ChatArgs) -> anyhow::Result<()> {
    let endpoint = super::endpoint(&args.endpoint)?;
    let stream =
        ChatStream::connect(&endpoint).with_context(|| format!("cannot connect to {endpoint}"))?;
    let stream = match args.tls.client(&args.endpoint)? {
        Some(tls) => stream.into_tls(&tls, &endpoint)?,
        None => stream,
    };
    let stdin = io::BufReader::new(io::stdin());
    converse(stream, args.nick.as_deref(), stdin, io::stdout())
}

/// A connection to a chat server: TCP or Unix stream, or TLS over one.
pub enum ChatStream {
    Tcp(TcpStream),
    Unix(UnixStream),
    /// Shared by the reading and the writing thread (see [`SharedTls`]).
    Tls(Arc<SharedTls>),
}

/// One TLS connection used by two threads. rustls's state is one object, so each side takes the
/// lock in turn; the socket's read timeout ([`TLS_READ_SLICE`]) makes a waiting reader let go of
/// it often, so the other thread's writes wait at most that long.
pub struct SharedTls(Mutex<TlsStream>);

/// How long a TLS reader holds the connection waiting for the server before letting the writer
/// in: short enough that typing feels immediate.
const TLS_READ_SLICE: Duration = Duration::from_millis(50);

impl SharedTls {
    fn lock(&self) -> std::sync::MutexGuard<'_, TlsStream> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl ChatStream {
    fn connect(endpoint: &Endpoint) -> anyhow::Result<ChatStream> {
        Ok(match endpoint {
            Endpoint::Tcp(addr) => {
                ChatStream::Tcp(TcpStream::connect_timeout(addr, CONNECT_TIMEOUT)?)
            }
            Endpoint::Unix(path) => ChatStream::Unix(UnixStream::connect(path)?),
            _ => bail!("chat runs over streams: use a tcp:// or unix:// endpoint"),
        })
    }

    /// The same connection with TLS over it.
    fn into_tls(self, tls: &TlsClient, endpoint: &Endpoint) -> anyhow::Result<ChatStream> {
        let plain = match self {
            ChatStream::Tcp(s) => Plain::Tcp(s),
            ChatStream::Unix(s) => Plain::Unix(s),
            ChatStream::Tls(_) => bail!("already TLS"),
        };
        plain.set_read_timeout(Some(CONNECT_TIMEOUT))?;
        let stream = tls.start(plain, endpoint)?;
        stream.sock.set_read_timeout(Some(TLS_READ_SLICE))?;
        Ok(ChatStream::Tls(Arc::new(SharedTls(Mutex::new(stream)))))
    }

    fn try_clone(&self) -> io::Result<ChatStream> {
        Ok(match self {
            ChatStream::Tcp(s) => ChatStream::Tcp(s.try_clone()?),
            ChatStream::Unix(s) => ChatStream::Unix(s.try_clone()?),
            ChatStream::Tls(s) => ChatStream::Tls(Arc::clone(s)),
        })
    }

    fn shutdown_write(&self) -> io::Result<()> {
        match self {
            ChatStream::Tcp(s) => s.shutdown(Shutdown::Write),
            ChatStream::Unix(s) => s.shutdown(Shutdown::Write),
            ChatStream::Tls(s) => {
                let mut stream = s.lock();
                stream.conn.send_close_notify();
                stream.flush()?;
                stream.sock.shutdown(Shutdown::Write)
            }
        }
    }
}

impl Read for ChatStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            ChatStream::Tcp(s) => s.read(buf),
            ChatStream::Unix(s) => s.read(buf),
            ChatStream::Tls(s) => loop {
                match s.lock().read(buf) {
                    Err(err)
                        if matches!(
                            err.kind(),
                            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                        ) => {}
                    // The server closed without close_notify: the end all the same.
                    Err(err) if err.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                    other => return other,
                }
                // The lock is released here: the writer may go.
                thread::yield_now();
            },
        }
    }
}

impl Write for ChatStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            ChatStream::Tcp(s) => s.write(buf),
            ChatStream::Unix(s) => s.write(buf),
            ChatStream::Tls(s) => {
                let mut stream = s.lock();
                let n = stream.write(buf)?;
                stream.flush()?;
                Ok(n)
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Which side ended first.
enum Ended {
    /// The server closed the connection (or reading it failed).
    Server(anyhow::Result<()>),
    /// Stdin ended (or sending failed).
    Input(anyhow::Result<()>),
}

/// Print what `stream` sends to `output` while sending `input`'s lines to it, until one side ends.
pub fn converse(
    stream: ChatStream,
    nick: Option<&str>,
    input: impl BufRead + Send + 'static,
    output: impl Write + Send + 'static,
) -> anyhow::Result<()> {
    let (ended, events) = mpsc::channel();
    let mut incoming = stream.try_clone().context("cannot share the connection")?;
    let server_ended = ended.clone();
    thread::spawn(move || {
        let _ = server_ended.send(Ended::Server(print_incoming(&mut incoming, output)));
    });
    let mut outgoing = stream.try_clone().context("cannot share the connection")?;
    let nick_line = nick.map(|nick| format!("/nick {nick}\n"));
    thread::spawn(move || {
        let _ = ended.send(Ended::Input(send_lines(nick_line, input, &mut outgoing)));
    });
    match events.recv() {
        // The input thread may still be blocked on stdin: returning ends it with the process.
        Ok(Ended::Server(result)) => result,
        Ok(Ended::Input(sent)) => {
            let _ = stream.shutdown_write();
            match events.recv_timeout(CLOSE_WAIT) {
                Ok(Ended::Server(result)) => result.and(sent),
                _ => sent,
            }
        }
        Err(mpsc::RecvError) => unreachable!("each thread reports before it ends"),
    }
}

/// Copies everything the server sends to `output`, a whole line at a time and neutralised, flushing
/// at once so the user sees it.
fn print_incoming(stream: &mut ChatStream, mut output: impl Write) -> anyhow::Result<()> {
    let mut buf = [0; 16 * 1024];
    let mut held = Vec::new();
    loop {
        let n = match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) if err.kind() == io::ErrorKind::ConnectionReset => break,
            Err(err) => return Err(err).context("cannot read from the server"),
        };
        held.extend_from_slice(&buf[..n]);
        let shown = printable(&mut held, false);
        output
            .write_all(&shown)
            .and_then(|()| output.flush())
            .context("cannot print")?;
    }
    let shown = printable(&mut held, true);
    output
        .write_all(&shown)
        .and_then(|()| output.flush())
        .context("cannot print")
}

/// Takes the whole lines out of `held` (everything at the `end`, or when a line outgrows
/// [`MAX_HELD_LINE`]) and returns them neutralised, each with its newline.
fn printable(held: &mut Vec<u8>, end: bool) -> Vec<u8> {
    let whole = match held.iter().rposition(|&b| b == b'\n') {
        Some(at) => at + 1,
        None => 0,
    };
    let take = if end || held.len() - whole > MAX_HELD_LINE {
        held.len()
    } else {
        whole
    };
    let mut shown = Vec::with_capacity(take);
    for line in held[..take].split_inclusive(|&b| b == b'\n') {
        let (text, newline) = match line.strip_suffix(b"\n") {
            Some(text) => (text, true),
            None => (line, false),
        };
        shown.extend_from_slice(neutralise(&String::from_utf8_lossy(text)).as_bytes());
        if newline {
            shown.push(b'\n');
        }
    }
    held.drain(..take);
    shown
}

/// Sends `first` (the /nick line), then every line of `input`, each ending in a newline.
fn send_lines(
    first: Option<String>,
    mut input: impl BufRead,
    stream: &mut ChatStream,
) -> anyhow::Result<()> {
    if let Some(line) = first {
        stream.write_all(line.as_bytes()).context("cannot send")?;
    }
    let mut line = Vec::new();
    loop {
        line.clear();
        if input
            .read_until(b'\n', &mut line)
            .context("cannot read stdin")?
            == 0
        {
            return Ok(());
        }
        if !line.ends_with(b"\n") {
            line.push(b'\n');
        }
        stream.write_all(&line).context("cannot send")?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;
    use std::sync::{Arc, Mutex};

    /// An output the test can read after the printing thread wrote it.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// A one-member "server": greets, then answers each line with `got: LINE`, closing at end of
    /// input or after `quit`.
    fn fake_server(mut socket: UnixStream) -> thread::JoinHandle<Vec<u8>> {
        thread::spawn(move || {
            socket.write_all(b"*** welcome\n").unwrap();
            let mut received = Vec::new();
            let mut reader = io::BufReader::new(socket.try_clone().unwrap());
            let mut line = Vec::new();
            while reader.read_until(b'\n', &mut line).unwrap() > 0 {
                socket.write_all(b"got: ").unwrap();
                socket.write_all(&line).unwrap();
                received.extend_from_slice(&line);
                if line == b"quit\n" {
                    break;
                }
                line.clear();
            }
            received
        })
    }

    #[test]
    fn sends_the_nick_then_each_line_and_prints_every_reply() {
        let (client, server) = UnixStream::pair().unwrap();
        let server = fake_server(server);
        let output = Shared::default();
        let input = Cursor::new(b"hello\r\nlast".to_vec());
        converse(ChatStream::Unix(client), Some("ann"), input, output.clone()).unwrap();
        assert_eq!(server.join().unwrap(), b"/nick ann\nhello\r\nlast\n");
        let printed = String::from_utf8(output.0.lock().unwrap().clone()).unwrap();
        assert_eq!(
            printed,
            // The fake server echoes the CR it got: the client shows it, harmlessly.
            "*** welcome\ngot: /nick ann\ngot: hello\u{fffd}\ngot: last\n"
        );
    }

    #[test]
    fn prints_no_control_character_a_server_sends() {
        let (client, mut server) = UnixStream::pair().unwrap();
        server
            .write_all(b"*** welcome\nhi\r*** bob left lobby\n\x1b]0;owned\x07\x1b[2Jclear\n\x1b[3")
            .unwrap();
        server
            .write_all(b"1mred, cut in two\nno newline\x07")
            .unwrap();
        drop(server);
        let output = Shared::default();
        converse(
            ChatStream::Unix(client),
            None,
            Cursor::new(Vec::new()),
            output.clone(),
        )
        .unwrap();
        let printed = String::from_utf8(output.0.lock().unwrap().clone()).unwrap();
        assert_eq!(
            printed,
            "*** welcome\nhi\u{fffd}*** bob left lobby\nclear\nred, cut in two\nno newline\u{fffd}"
        );
    }

    #[test]
    fn a_line_without_end_is_printed_in_bounded_pieces() {
        let mut held = vec![b'x'; MAX_HELD_LINE + 1];
        assert_eq!(printable(&mut held, false).len(), MAX_HELD_LINE + 1);
        assert!(held.is_empty());
        let mut held = b"a\nb".to_vec();
        assert_eq!(printable(&mut held, false), b"a\n");
        assert_eq!(held, b"b");
    }

    #[test]
    fn ends_when_the_server_closes_even_if_stdin_does_not() {
        let (client, server) = UnixStream::pair().unwrap();
        let server = fake_server(server);
        // An input that sends `quit` and then never ends.
        let (mut typist, keyboard) = UnixStream::pair().unwrap();
        typist.write_all(b"quit\n").unwrap();
        let input = io::BufReader::new(keyboard);
        let output = Shared::default();
        converse(ChatStream::Unix(client), None, input, output.clone()).unwrap();
        assert_eq!(server.join().unwrap(), b"quit\n");
        drop(typist);
    }
}
