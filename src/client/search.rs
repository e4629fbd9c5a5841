//! `sockserv client search ENDPOINT ACTION VALUE`: the realpython tutorial's app-client.
//!
//! Action `search` sends a `text/json` request for VALUE and prints the result (in a non-exact match
//! mode, every hit as `KEY: VALUE`); any other action sends ACTION followed by VALUE as binary content
//! and prints the binary reply as received. An error reply from the server is a failure (exit 1) with
//! the server's message. The protocol itself (framing, the request, reading the reply) lives in
//! `sockserv_handlers::search`; this module only does the I/O and the printing.

use std::io::{self, Write};
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use sockserv_framework::Endpoint;
use sockserv_handlers::search::client::{read_answer, request, Answer};

use super::exchange::write_reply;
use super::transport::Connection;
use super::{endpoint_string, seconds, DEFAULT_TIMEOUT_SECS};

/// The largest reply content the client reads (the server's replies are far smaller).
const MAX_REPLY_CONTENT: usize = 16 * 1024 * 1024;

/// The arguments of `sockserv client search`.
#[derive(Args, Debug)]
pub struct SearchArgs {
    /// Where the server listens: tcp://HOST:PORT or unix:///PATH (search runs over streams).
    #[arg(value_parser = endpoint_string)]
    pub endpoint: String,

    /// `search` looks VALUE up; any other action sends ACTION+VALUE as a binary request.
    pub action: String,

    /// What to look up (or the rest of the binary request).
    pub value: String,

    /// How long to wait for the reply, in seconds (fractions allowed).
    #[arg(
        long,
        value_name = "SECONDS",
        default_value = DEFAULT_TIMEOUT_SECS,
        value_parser = seconds,
        allow_negative_numbers = true
    )]
    pub timeout: Duration,

    #[command(flatten)]
    pub tls: super::tls::TlsArgs,
}

/// Send one request, print its reply.
pub fn run(args: SearchArgs) -> anyhow::Result<()> {
    let endpoint = super::endpoint(&args.endpoint)?;
    if !endpoint.kind().is_stream() {
        bail!("search runs over streams: use tcp:// or unix://, not {endpoint}");
    }
    let tls = args.tls.client(&args.endpoint)?;
    let mut connection = Connection::open_with(&endpoint, args.timeout, tls.as_ref())?;
    let answer = exchange(&mut connection, &endpoint, &args)
        .with_context(|| format!("is {endpoint} a search server? no search reply came back"))?;
    print(&answer, &mut io::stdout().lock())
}

/// Send the request and read one reply.
fn exchange(
    connection: &mut Connection,
    endpoint: &Endpoint,
    args: &SearchArgs,
) -> anyhow::Result<Answer> {
    connection.send(&request(&args.action, &args.value))?;
    let reply = connection
        .receive(&|received| !matches!(read_answer(received, MAX_REPLY_CONTENT), Ok(None)))?;
    match read_answer(&reply, MAX_REPLY_CONTENT) {
        Ok(Some((answer, _))) => Ok(answer),
        Ok(None) => bail!("{endpoint} sent an incomplete reply"),
        Err(err) => bail!("{endpoint} sent a {err}"),
    }
}

/// Print what the answer says; an error reply is a failure.
fn print(answer: &Answer, out: &mut dyn Write) -> anyhow::Result<()> {
    let text = match answer {
        Answer::Json {
            result,
            error: Some(code),
            ..
        } => bail!("the server refused the request ({code}): {result}"),
        Answer::Json {
            results: Some(hits),
            ..
        } if !hits.is_empty() => hits
            .iter()
            .map(|(key, value)| format!("{key}: {value}\n"))
            .collect::<String>()
            .into_bytes(),
        Answer::Json { result, .. } => result.clone().into_bytes(),
        Answer::Binary { content, .. } => content.clone(),
    };
    write_reply(out, &text).context("cannot print the reply")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn printed(answer: Answer) -> anyhow::Result<String> {
        let mut out = Vec::new();
        print(&answer, &mut out)?;
        Ok(String::from_utf8(out).unwrap())
    }

    fn json(result: &str, results: Option<Vec<(&str, &str)>>, error: Option<&str>) -> Answer {
        Answer::Json {
            result: result.into(),
            results: results.map(|hits| {
                hits.into_iter()
                    .map(|(k, v)| (k.into(), v.into()))
                    .collect()
            }),
            error: error.map(Into::into),
        }
    }

    /// Stands in for `sockserv client search ...`.
    #[derive(clap::Parser, Debug)]
    struct Cli {
        #[command(flatten)]
        args: SearchArgs,
    }

    #[test]
    fn parses_an_endpoint_an_action_a_value_and_a_timeout() {
        use clap::Parser;
        let argv = ["search", "tcp://127.0.0.1:65432", "search", "morpheus"];
        let args = Cli::try_parse_from(argv).unwrap().args;
        assert_eq!(
            (&args.endpoint[..], &args.action[..], &args.value[..]),
            ("tcp://127.0.0.1:65432", "search", "morpheus")
        );
        assert_eq!(args.timeout, Duration::from_secs(5));
        let argv = [
            "search",
            "unix:///tmp/s.sock",
            "binary",
            "😃",
            "--timeout",
            "0.5",
        ];
        let args = Cli::try_parse_from(argv).unwrap().args;
        assert_eq!(args.timeout, Duration::from_millis(500));
        assert!(Cli::try_parse_from(["search", "tcp://127.0.0.1:1", "search"]).is_err());
        assert!(Cli::try_parse_from(["search", "127.0.0.1:1", "search", "x"]).is_err());
    }

    #[test]
    fn prints_the_result_or_every_hit() {
        assert_eq!(printed(json("found", None, None)).unwrap(), "found\n");
        let hits = Some(vec![("a", "1"), ("b", "2")]);
        assert_eq!(printed(json("1", hits, None)).unwrap(), "a: 1\nb: 2\n");
        let miss = json("No match for 'x'.", Some(vec![]), None);
        assert_eq!(printed(miss).unwrap(), "No match for 'x'.\n");
    }

    #[test]
    fn prints_a_binary_reply_as_received() {
        let answer = Answer::Binary {
            content_type: "binary/custom-server-binary-type".into(),
            content: b"First 10 bytes of request: binary".to_vec(),
        };
        assert_eq!(
            printed(answer).unwrap(),
            "First 10 bytes of request: binary\n"
        );
    }

    #[test]
    fn an_error_reply_fails() {
        let err = printed(json("Error: no.", None, Some("bad-request"))).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the server refused the request (bad-request): Error: no."
        );
    }
}
