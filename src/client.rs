//! `sockserv client`: talk to a server from the command line, the way the seeds' tutorial clients do.
//!
//! The pieces, from the bottom up:
//!
//! - [`transport`] opens one [`Connection`](transport::Connection) to an endpoint of any of the four
//!   socket kinds, sends one request and receives one reply within a timeout. It knows nothing about
//!   protocols.
//! - [`exchange`] is the request/reply loop: each message becomes one request (framed by a
//!   [`Dialect`](exchange::Dialect)), each reply is printed to stdout as it arrives. Messages come from the
//!   command line or, without any, from stdin lines.
//! - One module per protocol ([`echo`], [`timestamp`]) says how a message is framed and when a stream
//!   reply is complete. [`search`] sends one request and prints what its reply says, using the
//!   protocol's own client side in `sockserv_handlers::search::client`.
//!
//! Adding a protocol (`search`, `chat`) is adding a module and a variant of [`ClientCommand`]: a
//! request/reply protocol implements `Dialect` and reuses the loop; one that is not ([`chat`]) opens
//! its own stream and reads and writes it at once.

mod chat;
mod echo;
mod exchange;
mod search;
mod timestamp;
mod tls;
mod transport;

use std::io;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use sockserv_framework::{Endpoint, EndpointError};

use exchange::Dialect;
use transport::Connection;

/// How long to wait for a reply unless `--timeout` says otherwise (the tutorial clients block forever;
/// a command-line tool should not).
const DEFAULT_TIMEOUT_SECS: &str = "5";

/// `sockserv client PROTOCOL ...`: which protocol to speak, with its arguments.
#[derive(Args, Debug)]
pub struct ClientArgs {
    #[command(subcommand)]
    pub command: ClientCommand,
}

/// One subcommand per protocol the client speaks.
#[derive(Subcommand, Debug)]
pub enum ClientCommand {
    /// Send each message to an echo server and print what comes back.
    Echo(RequestArgs),
    /// Send each message to a timestamp server and print the stamped reply.
    Timestamp(RequestArgs),
    /// Send one search (or, with another ACTION, a binary request) and print the result.
    Search(search::SearchArgs),
    /// Chat interactively: print what the room says while sending each line typed.
    Chat(chat::ChatArgs),
}

/// The arguments of a request/reply protocol: where to send, what, and how long to wait.
#[derive(Args, Debug)]
pub struct RequestArgs {
    /// Where the server listens: tcp://HOST:PORT, udp://HOST:PORT, unix:///PATH or unix-dgram:///PATH.
    #[arg(value_parser = endpoint_string)]
    pub endpoint: String,

    /// Messages to send, one request each; without any, each line read from stdin is one message.
    pub messages: Vec<String>,

    /// How long to wait for each reply, in seconds (fractions allowed).
    #[arg(
        long,
        value_name = "SECONDS",
        default_value = DEFAULT_TIMEOUT_SECS,
        value_parser = seconds,
        allow_negative_numbers = true
    )]
    pub timeout: Duration,

    #[command(flatten)]
    pub tls: tls::TlsArgs,
}

/// Run a `sockserv client` subcommand: send every message and print every reply.
pub fn run(args: ClientArgs) -> anyhow::Result<()> {
    match args.command {
        ClientCommand::Echo(request) => request_reply(request, &echo::Echo),
        ClientCommand::Timestamp(request) => request_reply(request, &timestamp::Timestamp),
        ClientCommand::Search(args) => search::run(args),
        ClientCommand::Chat(args) => chat::run(args),
    }
}

/// Open one connection and run the request/reply loop over it, printing to stdout.
fn request_reply(args: RequestArgs, dialect: &dyn Dialect) -> anyhow::Result<()> {
    let endpoint = endpoint(&args.endpoint)?;
    let tls = args.tls.client(&args.endpoint)?;
    let mut connection = Connection::open_with(&endpoint, args.timeout, tls.as_ref())?;
    let messages = exchange::messages(args.messages, io::stdin().lock());
    exchange::converse(&mut connection, dialect, messages, &mut io::stdout().lock())
}

/// Check an endpoint string while parsing arguments, so a typo or a host name that does not
/// resolve is a usage error; keep it as typed.
fn endpoint_string(text: &str) -> Result<String, EndpointError> {
    Endpoint::resolve(text).map(|_| text.to_string())
}

/// The endpoint to connect to: a host name (`tcp://localhost:20000`) is looked up, and when it gives
/// several addresses the one taken is said on stderr.
fn endpoint(text: &str) -> anyhow::Result<Endpoint> {
    let resolved = Endpoint::resolve(text).with_context(|| format!("bad endpoint {text:?}"))?;
    if let Some(choice) = resolved.choice(text) {
        eprintln!("sockserv: {choice}");
    }
    Ok(resolved.endpoint)
}

/// Parse `--timeout`: a positive, finite number of seconds.
fn seconds(text: &str) -> Result<Duration, String> {
    let secs: f64 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a number of seconds"))?;
    if !(secs.is_finite() && secs > 0.0) {
        return Err(format!(
            "the timeout must be a positive number of seconds, not {text}"
        ));
    }
    Duration::try_from_secs_f64(secs).map_err(|err| format!("timeout {text}: {err}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    /// Stands in for main's `Command::Client(ClientArgs)`.
    #[derive(Parser, Debug)]
    struct Cli {
        #[command(flatten)]
        client: ClientArgs,
    }

    fn parse(args: &[&str]) -> Result<ClientArgs, clap::Error> {
        let argv = std::iter::once("client").chain(args.iter().copied());
        Cli::try_parse_from(argv).map(|cli| cli.client)
    }

    #[test]
    fn parses_a_protocol_an_endpoint_messages_and_a_timeout() {
        let args = parse(&["echo", "tcp://127.0.0.1:1", "a", "b c", "--timeout", "0.5"]).unwrap();
        let ClientCommand::Echo(request) = args.command else {
            panic!("not echo: {args:?}")
        };
        assert_eq!(request.endpoint, "tcp://127.0.0.1:1");
        assert_eq!(request.messages, ["a", "b c"]);
        assert_eq!(request.timeout, Duration::from_millis(500));
    }

    #[test]
    fn defaults_to_five_seconds_and_stdin() {
        let args = parse(&["timestamp", "unix-dgram:///tmp/ts.sock"]).unwrap();
        let ClientCommand::Timestamp(request) = args.command else {
            panic!("not timestamp: {args:?}")
        };
        assert!(request.messages.is_empty());
        assert_eq!(request.timeout, Duration::from_secs(5));
    }

    #[test]
    fn a_bad_endpoint_or_timeout_is_a_usage_error() {
        let err = parse(&["echo", "127.0.0.1:20000"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::ValueValidation);
        assert!(err.to_string().contains("no scheme"), "{err}");
        for bad in ["0", "-1", "soon", "inf", "NaN"] {
            let err = parse(&["echo", "tcp://127.0.0.1:1", "--timeout", bad]).unwrap_err();
            assert_eq!(err.kind(), clap::error::ErrorKind::ValueValidation, "{bad}");
        }
    }

    #[test]
    fn seconds_accepts_fractions() {
        assert_eq!(seconds("2").unwrap(), Duration::from_secs(2));
        assert_eq!(seconds("0.25").unwrap(), Duration::from_millis(250));
        assert!(seconds("1e30").is_err());
    }
}
