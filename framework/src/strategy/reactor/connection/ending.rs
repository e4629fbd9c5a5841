//! How a reactor connection ends: its close reason (the metrics' and its log line's), and the
//! close itself (see [`Connection::close`]).

use std::net::Shutdown as Direction;

use super::Connection;
use crate::metrics::CloseReason;
use crate::request::guarded;
use crate::{log_with, Client, Fields};

impl Connection {
    /// Why the connection ends, from what ended it or its state: a budget that closed it, a
    /// reason noted when it happened, a drain, the peer's end of stream, or the session's close.
    fn close_reason(&self, over_budget: bool) -> CloseReason {
        if over_budget {
            return CloseReason::MaxBufferedInput;
        }
        let timed_out = matches!(
            self.ended,
            Some(
                CloseReason::IdleTimeout
                    | CloseReason::FirstByteTimeout
                    | CloseReason::MaxConnectionDuration
            )
        );
        match self.ended {
            // As under the blocking strategies: whatever ends a connection during the drain
            // (its input was shut at the drain's start), but a time limit, is the drain.
            _ if !timed_out && self.shared.shutdown.is_closing() => CloseReason::Drain,
            Some(reason) => reason,
            None if self.eof => CloseReason::Eof,
            None => CloseReason::Handler,
        }
    }

    /// The end: tell the session (unless it panicked) and drop it, both guarded; shut the socket
    /// down; log the connection's line.
    pub fn close(self) {
        let over_budget = self
            .holder
            .is_some_and(|h| self.shared.gate.budget.leave(h));
        let reason = self.close_reason(over_budget);
        let Connection {
            socket,
            session,
            shared,
            peer,
            panicked,
            started,
            mut bytes_in,
            mut bytes_out,
            id,
            ..
        } = self;
        shared.metrics.flush(&mut bytes_in);
        shared.metrics.flush(&mut bytes_out);
        let (bytes_in, bytes_out) = (bytes_in.total, bytes_out.total);
        let client = Client::connection(&peer, id);
        let hook = if panicked { "drop" } else { "on_close" };
        let ended = guarded(hook, move || {
            let mut session = session;
            if !panicked {
                session.on_close();
            }
            Ok(())
        });
        if let Err(failure) = ended {
            shared.report(client, &failure);
        }
        let _ = socket.shutdown(Direction::Both);
        let lasted = started.elapsed();
        shared.metrics.closed(reason, lasted);
        let name = &shared.name;
        log_with!(
            log::Level::Debug,
            &Fields::of(name, client).because(reason.name()),
            format_args!(
                "{name}: {}{peer} served in {:.1} ms, {bytes_in} bytes in, {bytes_out} bytes \
                 out, closed: {reason}",
                client.tag(),
                lasted.as_secs_f64() * 1e3,
            ),
        );
    }
}
