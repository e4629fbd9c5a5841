//! The `echo` handler: every byte back as received, chunk by chunk, on all four socket kinds.
//!
//! On a stream each chunk read goes straight back, so an interactive client sees its echo at once and
//! nothing is buffered beyond one read. On a datagram socket the reply is the datagram itself, an empty
//! datagram included (the server sends a reply only when the handler wrote, so that case writes an
//! empty slice explicitly).

use std::sync::Arc;

use sockserv_framework::config::OptionErrors;
use sockserv_framework::HandlerOptions;
use sockserv_plugin::{
    HandlerFactory, HandlerResult, Request, RequestHandler, RequestKind, Session, SessionContext,
    SessionInfo,
};

use crate::{input, options};

/// Builds the echo factory; echo takes no options.
///
/// # Errors
///
/// One problem per key in the options table.
pub fn build(opts: &HandlerOptions<'_>) -> Result<Arc<dyn HandlerFactory>, OptionErrors> {
    options::reject_unknown(opts.table, "echo", &[])?;
    Ok(Arc::new(EchoFactory))
}

/// Makes a blocking `Echo` per request, or an `EchoSession` per connection under the reactor.
struct EchoFactory;

impl HandlerFactory for EchoFactory {
    fn new_handler(&self) -> Box<dyn RequestHandler> {
        Box::new(Echo)
    }

    fn new_session(&self, _info: &SessionInfo<'_>) -> Option<Box<dyn Session>> {
        Some(Box::new(EchoSession))
    }
}

/// Echo, event-driven: what arrives is queued back as it is.
#[derive(Debug, Default)]
pub struct EchoSession;

impl Session for EchoSession {
    fn on_data(&mut self, data: &[u8], ctx: &mut SessionContext<'_>) {
        ctx.write(data);
    }
}

/// Sends back what it reads until the peer closes (or the datagram ends).
#[derive(Debug, Default)]
pub struct Echo;

impl RequestHandler for Echo {
    fn handle(&mut self, req: &mut Request<'_>) -> HandlerResult {
        let mut echoed = 0;
        loop {
            let buf = input::fill_buf(req.rfile)?;
            if buf.is_empty() {
                break;
            }
            req.wfile.write_all(buf)?;
            let n = buf.len();
            req.rfile.consume(n);
            echoed += n;
        }
        if req.kind == RequestKind::Datagram && echoed == 0 {
            // `write_all(&[])` never calls `write`; the empty reply must still be sent.
            let written = req.wfile.write(&[])?;
            debug_assert_eq!(written, 0);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing;

    fn echo() -> Box<dyn RequestHandler> {
        testing::factory(build, "").unwrap().new_handler()
    }

    #[test]
    fn stream_echoes_each_chunk_as_it_arrives() {
        let writes = testing::stream(&mut *echo(), &[b"hello", b" world\r\n", b"\xff\x00"]);
        assert_eq!(writes.0, [&b"hello"[..], b" world\r\n", b"\xff\x00"]);
    }

    #[test]
    fn stream_that_sends_nothing_gets_nothing() {
        assert!(testing::stream(&mut *echo(), &[]).0.is_empty());
    }

    #[test]
    fn datagram_comes_back_whole() {
        let writes = testing::datagram(&mut *echo(), b"ping\n");
        assert_eq!(writes.joined(), b"ping\n");
    }

    #[test]
    fn empty_datagram_still_gets_a_reply() {
        let writes = testing::datagram(&mut *echo(), b"");
        assert_eq!(writes.0, [Vec::<u8>::new()]);
    }

    #[test]
    fn any_option_is_refused_by_name() {
        let err = testing::factory(build, "framing = 'line'").err().unwrap();
        assert!(err.contains("\"framing\""), "{err}");
        assert!(err.contains("takes no options"), "{err}");
    }
}
