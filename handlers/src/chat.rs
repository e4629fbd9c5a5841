//! The `chat` handler: rooms of members who talk over nc, telnet or the seed tutorial's client, where
//! a member that stops reading never stalls the others.
//!
//! The design, told once:
//!
//! - **Sans-IO core.** [`Chat`] ([`core`]) holds members, rooms and nicks and runs the commands:
//!   bytes and the time go in, [`Delivery`] values ("these bytes to these members", "close this
//!   member") come out. Beneath it, [`lines`] decides where a message ends, [`command`] parses
//!   one, [`format`](mod@format) writes every line the server sends, [`text`] keeps control
//!   characters out of them, [`nicks`] says when two nicks are one, [`outbox`] is a member's bounded
//!   queue and the judge of whether it keeps up, and [`rate`] a member's sending rate. None touches
//!   a socket, a thread or the clock, so an event-loop strategy can drive the same pieces.
//! - **Hostile members** ([`text`], [`nicks`]): no line the server writes carries a control
//!   character but its final newline (escape sequences are removed whole; other C0 and C1
//!   controls, DEL, bidi overrides and isolates become U+FFFD), so nobody can forge a notice or act
//!   on another member's terminal; nicks are unique up to Unicode compatibility, case and UTS #39
//!   confusables, so `ａnn` and `аnn` (Cyrillic) cannot pass for `ann`.
//! - **Message boundaries** ([`lines`]): a newline (`\n` or `\r\n`) ends a message. A member that has
//!   never sent a newline is a raw client (the tutorial's: one bare `send` per message), so for it the
//!   end of each read ends a message too; once it sends a newline it is a line client, and a line
//!   split over reads stays one message. Messages longer than `max_line` are cut with a notice.
//! - **Backpressure on the sender** ([`rate`]): each member may send `rate` messages a second after
//!   a `burst`; beyond it its input is not read — its reader thread waits (threading, pool), or its
//!   session pauses the reactor's reading until its next token is due (see [`session`]) — so a
//!   member that floods the room slows down at its own connection, TCP pushing back on the sender,
//!   instead of overflowing its readers' queues.
//! - **Slow readers** ([`outbox`], [`mailbox`]): delivering only ever pushes onto the recipients'
//!   bounded queues (`queue_messages` and `queue_bytes`, counting what the writer took but has not
//!   written); each member's own writer drains its queue at the member's pace. A message that finds
//!   a queue full is missed and the member later told how many. A member is judged too slow only
//!   when its queue stays full for `slow_after` while its peer takes nothing: no write to its
//!   connection, and its socket's send queue (`SIOCOUTQ`, which moves as the peer takes bytes
//!   even while a write is blocked on a send buffer autotuned to megabytes) standing still. The
//!   member's owner judges — its supervising thread, or its session's turn — never the push,
//!   which cannot see the socket. Then the member is disconnected (`overflow = "disconnect"`, the
//!   default, telling the room) or left to go on missing messages (`overflow = "drop"`). Either
//!   way nobody else waits.
//! - **Threads** ([`hub`], [`handler`]): the [`Hub`] — the core and every mailbox behind one lock — is
//!   built once per server with its options and shared by all its connections through the factory.
//!   Under threading each connection runs a reader, a writer and a supervisor thread.
//! - **Events** ([`session`]): under the reactor a member is a [`ChatSession`] instead — its input goes
//!   to the same hub from the event loop, and its mailbox wakes it through its `SessionWaker` when
//!   mail arrives. There its queue counts the output the reactor has not written yet too, and a
//!   member over its rate has its reading paused and a wake set, on the reactor's own timers, for
//!   when it may send again.
//! - **Across instances** ([`cluster`]): with the `cluster` option, rooms span several instances
//!   through Redis pub/sub. The core hands what the other instances should hear to the hub as
//!   [`Delivery::Publish`] after serving its own members; the hub queues it for a publisher
//!   thread without waiting, and a subscriber thread brings the others' messages in.
//! - **Strategies**: threading, pool and reactor. Under a pool each member holds a worker for its
//!   whole stay, so `workers` should be at least the members expected (beyond it, members wait in
//!   the pool's queue until someone leaves). Members of different processes (forking) share no
//!   memory and sync serves one connection at a time, so those two are refused at config time.
//!
//! What a member sees: `0102 03:04:05 From 127.0.0.1:5000. msg=hello` for a message (the prefix is
//! the `prefix` option; a nick replaces `ip:port`), `* alice waves` for `/me waves`, and notices and
//! one-line errors starting with `***`. Commands: `/nick NAME`, `/join ROOM`, `/rooms`, `/who`,
//! `/me ACTION`, `/help`, `/quit` and a bare `quit`.

pub mod cluster;
pub mod command;
pub mod core;
pub mod format;
pub mod handler;
pub mod hub;
pub mod lines;
pub mod mailbox;
pub mod nicks;
pub mod options;
pub mod outbox;
pub mod rate;
pub mod session;
pub mod text;

use std::sync::Arc;

use sockserv_framework::config::OptionErrors;
use sockserv_framework::{HandlerOptions, SocketKind, StrategyKind};
use sockserv_plugin::{HandlerFactory, RequestHandler, Session, SessionInfo};

use crate::Builtin;

pub use self::core::{Chat, Delivery, MemberId};
pub use handler::ChatHandler;
pub use hub::Hub;
pub use options::ChatOptions;
pub use outbox::Overflow;
pub use session::ChatSession;

/// Why chat refuses forking and sync, for the config check's refusal.
pub const STRATEGY_NOTE: &str = "chat keeps its members and rooms in the memory of one process \
     and serves them all at once: under forking each member would get a process of its own that \
     shares nothing with the others, and sync would serve one member at a time";

/// The registry row of `chat`.
pub const BUILTIN: Builtin = Builtin {
    name: "chat",
    summary: "rooms where every message reaches the other members (commands /nick /join /rooms \
              /who /me /help /quit; options: prefix, room, echo, queue_messages, queue_bytes, \
              slow_after, overflow, rate, burst, cluster, ...)",
    socket_kinds: &[SocketKind::Tcp, SocketKind::UnixStream],
    strategies: &[
        StrategyKind::Threading,
        StrategyKind::Pool,
        StrategyKind::Reactor,
    ],
    strategy_note: Some(STRATEGY_NOTE),
    build,
};

/// Builds the chat factory: validates the options and makes the server's one [`Hub`].
///
/// # Errors
///
/// The problems of [`ChatOptions::from_table`].
pub fn build(opts: &HandlerOptions<'_>) -> Result<Arc<dyn HandlerFactory>, OptionErrors> {
    let options = Arc::new(ChatOptions::from_table(opts.table)?);
    let hub = Hub::shared(opts.server, options);
    Ok(Arc::new(ChatFactory { hub }))
}

/// Makes a [`ChatHandler`] per connection under threading, a [`ChatSession`] under the reactor;
/// either way a member of the server's one hub.
struct ChatFactory {
    hub: Arc<Hub>,
}

impl HandlerFactory for ChatFactory {
    fn new_handler(&self) -> Box<dyn RequestHandler> {
        Box::new(ChatHandler::new(Arc::clone(&self.hub)))
    }

    fn new_session(&self, info: &SessionInfo<'_>) -> Option<Box<dyn Session>> {
        Some(Box::new(ChatSession::new(Arc::clone(&self.hub), info)))
    }
}

#[cfg(test)]
mod tests;
