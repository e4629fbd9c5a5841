//! The `timestamp` handler: replies `[<time>] <data>`, like the seed's `tsTserv` and its Twisted twin.
//!
//! The protocol core is pure (habit 1 and 2 of STYLE.md): [`stamp`], [`split_line`], [`LineSplitter`]
//! and [`datagram_reply`] turn bytes and an already-read clock into reply bytes, so tests pin the time
//! and the event loop drives the same core. [`Timestamp`] is the thin blocking handler around it, and
//! [`TimestampSession`] (in `session.rs`) the event-driven one the `reactor` strategy runs; they
//! alone read the clock (`Local::now()`, or `Utc::now()` with `utc = true`).
//!
//! Framing decides what one reply answers:
//!
//! - `chunk` (default): every chunk read from a stream, as the seeds' servers answer every `recv` — a
//!   client sending bare `hello` gets `[t] hello`, one sending `hello\r\n` gets `[t] hello\r\n`.
//! - `line`: every line of a stream, terminator kept; a partial line left at end of input is answered
//!   too, and a line longer than [`MAX_LINE`] is answered in pieces of that size, so a peer that never
//!   sends `\n` cannot make the handler buffer without bound.
//!
//! On datagram sockets every datagram gets exactly one reply datagram; with `line` framing it holds
//! one stamped line per line of the datagram.
//!
//! Data bytes are never decoded: invalid UTF-8 and `\r\n` pass through as received.

use std::fmt::{self, Display, Write as _};
use std::sync::Arc;

use chrono::format::{Item, StrftimeItems};
use chrono::{DateTime, Local, TimeZone, Utc};
use sockserv_framework::config::{OptionError, OptionErrors};
use sockserv_framework::HandlerOptions;
use sockserv_plugin::{
    HandlerFactory, HandlerResult, Request, RequestHandler, RequestKind, Session, SessionInfo,
};

use crate::{input, options};

mod session;
pub use session::TimestampSession;

/// The seed's time format: `[2024-01-02 03:04:05]`.
pub const DEFAULT_FORMAT: &str = "%Y-%m-%d %H:%M:%S";

/// The longest line `line` framing holds before answering it anyway: long enough for any interactive
/// use, small enough that a peer that never sends a newline costs a bounded amount of memory.
pub const MAX_LINE: usize = 64 * 1024;

/// The option keys `timestamp` understands.
const KEYS: &[&str] = &["format", "utc", "framing"];

// ---------------------------------------------------------------------------------------------------
// The sans-IO core.

/// A validated strftime format, parsed once at config time.
#[derive(Debug, Clone)]
pub struct TimeFormat {
    source: String,
    items: Vec<Item<'static>>,
}

impl TimeFormat {
    /// Parses `format`.
    ///
    /// # Errors
    ///
    /// A [`FormatError`] when chrono does not know a specifier of `format` or cannot write an
    /// instant with it (`%#z` parses, but only for parsing); it names the first such specifier.
    pub fn new(format: &str) -> Result<TimeFormat, FormatError> {
        let items = usable_items(format).ok_or_else(|| FormatError {
            format: format.to_string(),
            specifier: bad_specifier(format).map(str::to_string),
        })?;
        Ok(TimeFormat {
            source: format.to_string(),
            items,
        })
    }

    /// The format as written in the config.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// `now`, written in this format.
    pub fn render<Tz: TimeZone>(&self, now: &DateTime<Tz>) -> String
    where
        Tz::Offset: Display,
    {
        let mut time = String::new();
        if write!(time, "{}", now.format_with_items(self.items.iter())).is_err() {
            // `new` tried the format, so only an instant chrono cannot write gets here; never panic.
            time = now.to_rfc3339();
        }
        time
    }
}

impl Default for TimeFormat {
    fn default() -> Self {
        TimeFormat::new(DEFAULT_FORMAT).expect("the default format is valid")
    }
}

/// A `format` option chrono cannot use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormatError {
    /// The whole format, as written.
    pub format: String,
    /// The first specifier chrono refused, when it can be pointed at.
    pub specifier: Option<String>,
}

impl Display for FormatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} is not a valid strftime format", self.format)?;
        match &self.specifier {
            Some(spec) => write!(
                f,
                ": {spec:?} is unknown or unfinished (write %% for a literal %)"
            ),
            None => Ok(()),
        }
    }
}

impl std::error::Error for FormatError {}

/// The parsed `format`, if chrono accepts it and can write an instant with it: a few specifiers
/// (`%#z`) parse but are for parsing only, so one instant is tried now, making such a format a config
/// error rather than a request's.
fn usable_items(format: &str) -> Option<Vec<Item<'static>>> {
    let items = StrftimeItems::new(format).parse_to_owned().ok()?;
    let sample = Utc.with_ymd_and_hms(2000, 1, 2, 3, 4, 5).unwrap();
    let mut probe = String::new();
    write!(probe, "{}", sample.format_with_items(items.iter())).ok()?;
    Some(items)
}

/// The first `%` specifier of `format` that chrono cannot use on its own, for the error message.
fn bad_specifier(format: &str) -> Option<&str> {
    let mut rest = format;
    while let Some(at) = rest.find('%') {
        let spec = &rest[at..];
        let spec = &spec[..specifier_len(spec)];
        if usable_items(spec).is_none() {
            return Some(spec);
        }
        rest = &rest[at + spec.len()..];
    }
    None
}

/// The length of the specifier at the start of `spec` (which starts with `%`): the modifiers chrono
/// accepts (padding `-_0`, widths and `.` precision, `:` and `#` for offsets), then one character.
fn specifier_len(spec: &str) -> usize {
    let is_modifier = |c: char| matches!(c, '-' | '_' | '0'..='9' | '.' | ':' | '#');
    let head = spec[1..]
        .find(|c| !is_modifier(c))
        .map_or(spec.len(), |i| i + 1);
    head + spec[head..].chars().next().map_or(0, char::len_utf8)
}

/// `[<now>] <data>`, with `data` kept byte for byte.
pub fn stamp<Tz: TimeZone>(data: &[u8], now: &DateTime<Tz>, format: &TimeFormat) -> Vec<u8>
where
    Tz::Offset: Display,
{
    let mut reply = Vec::new();
    push_stamped(&mut reply, &format.render(now), data);
    reply
}

/// Appends `[<time>] <data>` to `out`; `time` is already rendered.
fn push_stamped(out: &mut Vec<u8>, time: &str, data: &[u8]) {
    out.reserve(time.len() + 3 + data.len());
    out.push(b'[');
    out.extend_from_slice(time.as_bytes());
    out.extend_from_slice(b"] ");
    out.extend_from_slice(data);
}

/// The length of the first complete line of `buf`, its `\n` included; `None` when `buf` holds no
/// `\n` yet (read more). A `\r` before the `\n` belongs to the line.
pub fn split_line(buf: &[u8]) -> Option<usize> {
    buf.iter().position(|&b| b == b'\n').map(|at| at + 1)
}

/// How replies are cut from the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Framing {
    /// One reply per chunk read (per datagram on datagram sockets).
    #[default]
    Chunk,
    /// One reply per line.
    Line,
}

impl Framing {
    /// The framing with this option value.
    pub fn from_name(name: &str) -> Option<Framing> {
        match name {
            "chunk" => Some(Framing::Chunk),
            "line" => Some(Framing::Line),
            _ => None,
        }
    }
}

/// Cuts a byte stream into lines of at most `max` bytes, holding at most one partial line.
#[derive(Debug)]
pub struct LineSplitter {
    pending: Vec<u8>,
    max: usize,
}

impl LineSplitter {
    /// A splitter that hands out a line once it is complete or `max` bytes long (`max` ≥ 1).
    pub fn new(max: usize) -> LineSplitter {
        LineSplitter {
            pending: Vec::new(),
            max: max.max(1),
        }
    }

    /// Takes in `data`, calling `emit` with every line it completes, in order.
    pub fn push(&mut self, mut data: &[u8], mut emit: impl FnMut(&[u8])) {
        while !data.is_empty() {
            let room = self.max - self.pending.len();
            let window = &data[..data.len().min(room)];
            let (take, complete) = match split_line(window) {
                Some(len) => (len, true),
                None => (window.len(), window.len() == room),
            };
            if complete && self.pending.is_empty() {
                emit(&window[..take]);
            } else {
                self.pending.extend_from_slice(&window[..take]);
                if complete {
                    emit(&self.pending);
                    self.pending.clear();
                }
            }
            data = &data[take..];
        }
    }

    /// End of input: hands `emit` the partial line left over, if any.
    pub fn finish(&mut self, mut emit: impl FnMut(&[u8])) {
        if !self.pending.is_empty() {
            emit(&self.pending);
            self.pending.clear();
        }
    }
}

/// The one reply to a datagram: the datagram stamped (`Chunk`), or each of its lines stamped, a
/// final line without `\n` included (`Line`). An empty datagram gets `[<time>] `, as in the seed.
pub fn datagram_reply(packet: &[u8], time: &str, framing: Framing) -> Vec<u8> {
    let mut reply = Vec::new();
    let mut rest = packet;
    if framing == Framing::Line {
        while let Some(len) = split_line(rest) {
            push_stamped(&mut reply, time, &rest[..len]);
            rest = &rest[len..];
        }
    }
    if !rest.is_empty() || reply.is_empty() {
        push_stamped(&mut reply, time, rest);
    }
    reply
}

// ---------------------------------------------------------------------------------------------------
// Options and the handler.

/// The validated `[server.options]` of a timestamp server.
#[derive(Debug, Clone, Default)]
pub struct TimestampOptions {
    /// `format`: strftime, default [`DEFAULT_FORMAT`].
    pub format: TimeFormat,
    /// `utc`: UTC instead of local time; default false.
    pub utc: bool,
    /// `framing`: `"chunk"` (default) or `"line"`.
    pub framing: Framing,
}

impl TimestampOptions {
    /// Reads the options table.
    ///
    /// # Errors
    ///
    /// Every problem in the table, each naming its key: a key timestamp does not take, a value of
    /// the wrong type, a `format` chrono cannot use, a `framing` other than `chunk` or `line`.
    pub fn from_table(table: &toml::Table) -> Result<TimestampOptions, OptionErrors> {
        let mut problems = options::Problems::new(table, "timestamp", KEYS);
        let mut parsed = TimestampOptions::default();
        if let Some(text) = problems.note(options::string(table, "format")).flatten() {
            match TimeFormat::new(text) {
                Ok(format) => parsed.format = format,
                Err(err) => problems.push(options::invalid("format", err)),
            }
        }
        if let Some(utc) = problems.note(options::boolean(table, "utc")).flatten() {
            parsed.utc = utc;
        }
        if let Some(name) = problems.note(options::string(table, "framing")).flatten() {
            match Framing::from_name(name) {
                Some(framing) => parsed.framing = framing,
                None => problems.push(OptionError::value(
                    "framing",
                    format!("option \"framing\" must be \"chunk\" or \"line\", not {name:?}"),
                )),
            }
        }
        problems.finish(parsed)
    }
}

/// Builds the timestamp factory from the server's options.
///
/// # Errors
///
/// The problems of [`TimestampOptions::from_table`].
pub fn build(opts: &HandlerOptions<'_>) -> Result<Arc<dyn HandlerFactory>, OptionErrors> {
    let options = Arc::new(TimestampOptions::from_table(opts.table)?);
    Ok(Arc::new(TimestampFactory { options }))
}

/// Makes a blocking [`Timestamp`] per request, or a [`TimestampSession`] per connection under the
/// reactor, all with the server's options.
struct TimestampFactory {
    options: Arc<TimestampOptions>,
}

impl HandlerFactory for TimestampFactory {
    fn new_handler(&self) -> Box<dyn RequestHandler> {
        Box::new(Timestamp::new(Arc::clone(&self.options)))
    }

    fn new_session(&self, _info: &SessionInfo<'_>) -> Option<Box<dyn Session>> {
        Some(Box::new(TimestampSession::new(Arc::clone(&self.options))))
    }
}

/// The time now in the options' format and zone: the one place the handlers read the clock.
fn now(options: &TimestampOptions) -> String {
    if options.utc {
        options.format.render(&Utc::now())
    } else {
        options.format.render(&Local::now())
    }
}

/// Serves one connection or datagram with the shared options.
#[derive(Debug)]
pub struct Timestamp {
    options: Arc<TimestampOptions>,
}

impl Timestamp {
    pub fn new(options: Arc<TimestampOptions>) -> Timestamp {
        Timestamp { options }
    }

    fn now(&self) -> String {
        now(&self.options)
    }

    fn serve_datagram(&self, req: &mut Request<'_>) -> HandlerResult {
        let mut packet = Vec::new();
        req.rfile.read_to_end(&mut packet)?;
        let reply = datagram_reply(&packet, &self.now(), self.options.framing);
        req.wfile.write_all(&reply)?;
        Ok(())
    }

    fn serve_chunks(&self, req: &mut Request<'_>) -> HandlerResult {
        loop {
            let chunk = input::fill_buf(req.rfile)?;
            if chunk.is_empty() {
                return Ok(());
            }
            let mut reply = Vec::new();
            push_stamped(&mut reply, &self.now(), chunk);
            req.wfile.write_all(&reply)?;
            let len = chunk.len();
            req.rfile.consume(len);
        }
    }

    fn serve_lines(&self, req: &mut Request<'_>) -> HandlerResult {
        let mut lines = LineSplitter::new(MAX_LINE);
        loop {
            let chunk = input::fill_buf(req.rfile)?;
            let len = chunk.len();
            let mut time = None;
            let mut reply = Vec::new();
            let mut answer = |line: &[u8]| {
                push_stamped(&mut reply, time.get_or_insert_with(|| self.now()), line);
            };
            if len == 0 {
                lines.finish(answer);
            } else {
                lines.push(chunk, &mut answer);
            }
            // One write per chunk read: every line it completed, in order.
            if !reply.is_empty() {
                req.wfile.write_all(&reply)?;
            }
            if len == 0 {
                return Ok(());
            }
            req.rfile.consume(len);
        }
    }
}

impl RequestHandler for Timestamp {
    fn handle(&mut self, req: &mut Request<'_>) -> HandlerResult {
        match (req.kind, self.options.framing) {
            (RequestKind::Datagram, _) => self.serve_datagram(req),
            (RequestKind::Stream, Framing::Chunk) => self.serve_chunks(req),
            (RequestKind::Stream, Framing::Line) => self.serve_lines(req),
        }
    }
}

#[cfg(test)]
mod tests;
