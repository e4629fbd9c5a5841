//! The `metrics` handler: the servers' counters (see `sockserv_framework::metrics`) in the
//! Prometheus text format, over plain HTTP: `GET /metrics` on any stream endpoint, one request
//! per connection (`Connection: close`), as a Prometheus server scrapes.
//!
//! The HTTP side is a sans-IO core, [`answer`]: request bytes in, the whole response out once the
//! request head is whole, parsed by `httparse` (hyper's HTTP/1 parser). What a client can make it
//! hold is bounded: a head longer than [`MAX_REQUEST_HEAD`] is answered `431` and closed, and one
//! that never ends is closed by the server's `[server.limits]` (`idle_timeout`,
//! `first_byte_timeout`, `max_connection_duration`) like any other connection. Anything but `GET`
//! or `HEAD` is answered `405`, any other path `404`, a malformed head `400`.

use std::sync::Arc;

use sockserv_framework::config::OptionErrors;
use sockserv_framework::{metrics, HandlerOptions, SocketKind, StrategyKind};
use sockserv_plugin::{
    HandlerFactory, HandlerResult, Request, RequestHandler, Session, SessionContext, SessionInfo,
};

use crate::{input, options, Builtin};

/// The most bytes of a request head read before answering `431 Request Header Fields Too Large`:
/// a scrape's head is a few hundred bytes; 8 KiB is what nginx's `large_client_header_buffers`
/// allows a line and Apache's `LimitRequestFieldSize` a field.
pub const MAX_REQUEST_HEAD: usize = 8 * 1024;
/// The most header fields a request may have (`httparse` needs the bound up front).
const MAX_HEADERS: usize = 64;
/// The path served.
pub const PATH: &str = "/metrics";

pub const BUILTIN: Builtin = Builtin {
    name: "metrics",
    summary: "every server's counters in the Prometheus text format: HTTP GET /metrics",
    socket_kinds: &[SocketKind::Tcp, SocketKind::UnixStream],
    strategies: &StrategyKind::ALL,
    strategy_note: None,
    build,
};

/// Builds the metrics factory; it takes no options.
///
/// # Errors
///
/// One problem per key in the options table.
pub fn build(opts: &HandlerOptions<'_>) -> Result<Arc<dyn HandlerFactory>, OptionErrors> {
    options::reject_unknown(opts.table, "metrics", &[])?;
    Ok(Arc::new(MetricsFactory))
}

struct MetricsFactory;

impl HandlerFactory for MetricsFactory {
    fn new_handler(&self) -> Box<dyn RequestHandler> {
        Box::new(Metrics)
    }

    fn new_session(&self, _info: &SessionInfo<'_>) -> Option<Box<dyn Session>> {
        Some(Box::<MetricsSession>::default())
    }
}

/// What [`answer`] makes of the bytes read so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// The head is not whole yet: read more.
    ReadMore,
    /// The response to write, after which the connection closes.
    Respond(Vec<u8>),
}

/// The response to the request whose first bytes are `head` (`render` makes the metrics text,
/// called only for a `GET /metrics`), or [`Answer::ReadMore`]. `at_eof`: the peer has closed its
/// side, so an incomplete head will not be completed (answered `400`).
pub fn answer(head: &[u8], at_eof: bool, render: impl FnOnce() -> String) -> Answer {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    let parsed = request.parse(head);
    let complete = matches!(parsed, Ok(httparse::Status::Complete(_)));
    if !complete && head.len() > MAX_REQUEST_HEAD {
        return Answer::Respond(response(431, "Request Header Fields Too Large", &[], None));
    }
    match parsed {
        Ok(httparse::Status::Partial) if !at_eof => Answer::ReadMore,
        Ok(httparse::Status::Partial) | Err(_) => {
            Answer::Respond(response(400, "Bad Request", &[], None))
        }
        Ok(httparse::Status::Complete(_)) => Answer::Respond(route(&request, render)),
    }
}

/// The response to a whole request head.
fn route(request: &httparse::Request<'_, '_>, render: impl FnOnce() -> String) -> Vec<u8> {
    let method = request.method.unwrap_or_default();
    if method != "GET" && method != "HEAD" {
        let allow = [("Allow", "GET, HEAD")];
        return response(405, "Method Not Allowed", &allow, None);
    }
    let target = request.path.unwrap_or_default();
    let path = target.split_once('?').map_or(target, |(path, _)| path);
    if path != PATH {
        return response(404, "Not Found", &[], None);
    }
    let body = render();
    let content_type = [("Content-Type", metrics::CONTENT_TYPE)];
    let mut reply = response(200, "OK", &content_type, Some(body.len()));
    if method == "GET" {
        reply.extend_from_slice(body.as_bytes());
    }
    reply
}

/// A response head (and, without `length`, an empty body): `length` is the body's, when it is
/// added after (a `HEAD` gets the length of the `GET` body it leaves out).
fn response(status: u16, reason: &str, headers: &[(&str, &str)], length: Option<usize>) -> Vec<u8> {
    let mut head = format!("HTTP/1.1 {status} {reason}\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    let length = length.unwrap_or(0);
    head.push_str(&format!(
        "Content-Length: {length}\r\nConnection: close\r\n\r\n"
    ));
    head.into_bytes()
}

/// Reads the request head, answers it and returns (the framework closes the connection).
#[derive(Debug, Default)]
pub struct Metrics;

impl RequestHandler for Metrics {
    fn handle(&mut self, req: &mut Request<'_>) -> HandlerResult {
        let mut head = Vec::new();
        loop {
            let buf = input::fill_buf(req.rfile)?;
            let at_eof = buf.is_empty();
            let take = buf.len().min(MAX_REQUEST_HEAD + 1 - head.len());
            head.extend_from_slice(&buf[..take]);
            req.rfile.consume(take);
            if let Answer::Respond(reply) = answer(&head, at_eof, metrics::render) {
                if !(at_eof && head.is_empty()) {
                    req.wfile.write_all(&reply)?;
                }
                return Ok(());
            }
        }
    }
}

/// The same, event-driven: bytes gather until the head is whole, then the answer goes out and
/// the session closes.
#[derive(Debug, Default)]
pub struct MetricsSession {
    head: Vec<u8>,
    answered: bool,
}

impl MetricsSession {
    fn step(&mut self, at_eof: bool, ctx: &mut SessionContext<'_>) {
        if self.answered {
            return;
        }
        if let Answer::Respond(reply) = answer(&self.head, at_eof, metrics::render) {
            self.answered = true;
            if !(at_eof && self.head.is_empty()) {
                ctx.write(&reply);
            }
            self.head = Vec::new();
            ctx.close();
        }
    }
}

impl Session for MetricsSession {
    fn on_data(&mut self, data: &[u8], ctx: &mut SessionContext<'_>) {
        if self.answered {
            return;
        }
        let take = data.len().min(MAX_REQUEST_HEAD + 1 - self.head.len());
        self.head.extend_from_slice(&data[..take]);
        self.step(false, ctx);
    }

    fn on_eof(&mut self, ctx: &mut SessionContext<'_>) {
        self.step(true, ctx);
        ctx.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing;

    fn text(answer: Answer) -> String {
        match answer {
            Answer::Respond(bytes) => String::from_utf8(bytes).unwrap(),
            Answer::ReadMore => panic!("no answer yet"),
        }
    }

    fn body() -> String {
        "series 1\n".to_string()
    }

    #[test]
    fn a_scrape_gets_the_text_with_its_length() {
        let reply = text(answer(
            b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n",
            false,
            body,
        ));
        assert!(reply.starts_with("HTTP/1.1 200 OK\r\n"), "{reply}");
        assert!(
            reply.contains("Content-Type: text/plain; version=0.0.4"),
            "{reply}"
        );
        assert!(reply.contains("Content-Length: 9\r\n"), "{reply}");
        assert!(reply.contains("Connection: close\r\n"), "{reply}");
        assert!(reply.ends_with("\r\n\r\nseries 1\n"), "{reply}");
    }

    #[test]
    fn a_query_string_is_ignored_and_head_gets_no_body() {
        let get = text(answer(b"GET /metrics?x=1 HTTP/1.0\r\n\r\n", false, body));
        assert!(get.starts_with("HTTP/1.1 200 OK"), "{get}");
        let head = text(answer(b"HEAD /metrics HTTP/1.1\r\n\r\n", false, body));
        assert!(head.contains("Content-Length: 9\r\n"), "{head}");
        assert!(head.ends_with("\r\n\r\n"), "{head}");
    }

    #[test]
    fn other_methods_paths_and_garbage_are_refused() {
        let never = || -> String { panic!("not rendered for a refused request") };
        let post = text(answer(b"POST /metrics HTTP/1.1\r\n\r\n", false, never));
        assert!(post.starts_with("HTTP/1.1 405 "), "{post}");
        assert!(post.contains("Allow: GET, HEAD\r\n"), "{post}");
        let other = text(answer(b"GET / HTTP/1.1\r\n\r\n", false, never));
        assert!(other.starts_with("HTTP/1.1 404 "), "{other}");
        let garbage = text(answer(b"\x00\x01 nonsense\r\n\r\n", false, never));
        assert!(garbage.starts_with("HTTP/1.1 400 "), "{garbage}");
        let cut = text(answer(b"GET /metr", true, never));
        assert!(cut.starts_with("HTTP/1.1 400 "), "{cut}");
    }

    #[test]
    fn an_incomplete_head_waits_and_an_oversize_one_is_refused() {
        let never = || -> String { panic!("not rendered") };
        assert_eq!(
            answer(b"GET /metrics HTTP/1.1\r\n", false, never),
            Answer::ReadMore
        );
        let mut long = b"GET /metrics HTTP/1.1\r\nX: ".to_vec();
        long.resize(MAX_REQUEST_HEAD + 1, b'a');
        let reply = text(answer(&long, false, never));
        assert!(reply.starts_with("HTTP/1.1 431 "), "{reply}");
    }

    #[test]
    fn the_handler_answers_a_head_that_comes_in_pieces() {
        let factory = testing::factory(build, "").unwrap();
        let writes = testing::stream(
            &mut *factory.new_handler(),
            &[b"GET /met", b"rics HTTP/1.1\r\n", b"\r\n"],
        );
        let reply = String::from_utf8(writes.joined()).unwrap();
        assert!(reply.starts_with("HTTP/1.1 200 OK"), "{reply}");
        assert!(reply.contains("sockserv_build_info"), "{reply}");
    }

    #[test]
    fn the_session_answers_once_and_closes() {
        let mut session = MetricsSession::default();
        let mut out = testing::SessionOutput::default();
        let first = out.event(|ctx| session.on_data(b"GET /nope HTTP/1.1\r\n", ctx));
        assert!(first.is_empty());
        let reply = out.event(|ctx| session.on_data(b"\r\n", ctx));
        assert!(reply.starts_with(b"HTTP/1.1 404 "));
        assert!(out.closing);
        assert!(out.event(|ctx| session.on_data(b"more", ctx)).is_empty());
    }
}
