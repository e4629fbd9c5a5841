//! Example plugin: echo that can shout. It answers on streams (chunk by chunk) and on datagrams (one
//! reply datagram per datagram); with `uppercase = false` it is a plain echo, which is what the
//! plugin-versus-built-in benchmark runs. Its `panic_on` option makes it panic on a chosen input, to
//! show (and test) that a plugin's panic closes one request and nothing else; `abort_on` makes it
//! abort the whole process instead — a crash, which only the forking strategy contains.
//!
//! Options: `uppercase` (default true), `panic_on`, `abort_on` (default none).

use std::sync::Arc;

use serde::Deserialize;
use sockserv_plugin::abi::{STRATEGY_FORKING, STRATEGY_REACTOR, STRATEGY_SYNC, STRATEGY_THREADING};
use sockserv_plugin::{
    export_plugin, HandlerResult, PluginHandler, Request, RequestHandler, Session, SessionContext,
    SessionInfo,
};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Options {
    #[serde(default = "yes")]
    uppercase: bool,
    #[serde(default)]
    panic_on: Option<String>,
    #[serde(default)]
    abort_on: Option<String>,
}

/// Whether `chunk` holds `trigger`.
fn contains(chunk: &[u8], trigger: &Option<String>) -> bool {
    trigger
        .as_ref()
        .is_some_and(|t| chunk.windows(t.len().max(1)).any(|w| w == t.as_bytes()))
}

fn yes() -> bool {
    true
}

pub struct Shout {
    options: Arc<Options>,
}

impl PluginHandler for Shout {
    type Options = Options;
    const NAME: &'static str = "shout";
    const SUMMARY: &'static str =
        "echo, in capitals unless uppercase = false; streams and datagrams";
    /// Every strategy: it has an event-driven session for the reactor too.
    const STRATEGIES: u32 =
        STRATEGY_SYNC | STRATEGY_THREADING | STRATEGY_FORKING | STRATEGY_REACTOR;

    fn options(json: &str) -> Result<Options, String> {
        sockserv_plugin::from_json(json)
    }

    fn new(options: &Arc<Options>) -> Self {
        Shout {
            options: Arc::clone(options),
        }
    }

    /// Under the reactor: the same transformation, event by event.
    fn new_session(options: &Arc<Options>, _info: &SessionInfo<'_>) -> Option<Box<dyn Session>> {
        Some(Box::new(Shout::new(options)))
    }
}

impl Shout {
    /// Panic or abort when the chunk holds the configured trigger.
    fn trip(&self, chunk: &[u8]) {
        if contains(chunk, &self.options.panic_on) {
            let trigger = self.options.panic_on.as_deref().unwrap_or_default();
            panic!("asked to panic on {trigger:?}");
        }
        if contains(chunk, &self.options.abort_on) {
            std::process::abort();
        }
    }
}

impl Session for Shout {
    fn on_data(&mut self, data: &[u8], ctx: &mut SessionContext<'_>) {
        self.trip(data);
        if self.options.uppercase {
            ctx.write(&data.to_ascii_uppercase());
        } else {
            ctx.write(data);
        }
    }
}

impl RequestHandler for Shout {
    fn handle(&mut self, req: &mut Request<'_>) -> HandlerResult {
        loop {
            let chunk = req.rfile.fill_buf()?;
            if chunk.is_empty() {
                return Ok(());
            }
            self.trip(chunk);
            let len = chunk.len();
            if self.options.uppercase {
                req.wfile.write_all(&chunk.to_ascii_uppercase())?;
            } else {
                req.wfile.write_all(chunk)?;
            }
            req.rfile.consume(len);
        }
    }
}

export_plugin!(name: "shout-example", version: env!("CARGO_PKG_VERSION"), handlers: [Shout]);
