//! The chat handler under the threading strategy: one connection, three threads of a
//! `std::thread::scope`.
//!
//! - The **reader** hands every read to the [`Hub`] and stops at end of input, at a read error, or
//!   once the member has left (`/quit`, or dropped as too slow). It hands over only as many
//!   messages as the member's rate allows
//!   ([`TokenBucket`](super::rate::TokenBucket)); while the member is over its rate the
//!   reader waits, leaving the rest in `rfile` and the socket, so the sender is slowed by TCP's
//!   own flow control and nobody else notices.
//! - The **writer** writes the member's mailbox to `wfile` in batches, at the member's own pace,
//!   telling the mailbox of every write (the member's progress); it is the only thread that ever
//!   waits on this member's socket buffer.
//! - The handler's own thread **supervises**: whenever a message finds the member's queue full
//!   (under `overflow = "disconnect"`), it looks at the socket's send queue
//!   ([`RequestControl::send_queue`]) and judges the member, kicking it if it is stuck. It, not
//!   the writer, must look: the writer may sit in one `write` for seconds while its peer reads
//!   steadily, since a send buffer autotuned to megabytes lets it in only once much of it is
//!   free, and the send queue is what shows the peer taking bytes meanwhile. Once the mailbox closes, the supervisor gives a draining writer a moment to
//!   finish, then shuts the connection down, which ends a read or a write still blocked on it.
//!   Neither I/O thread can do that for the other: each may be blocked in the kernel.
//!
//! Whatever way the threads end — a peer that closes, a kick, a write error, a panic — the member
//! leaves the chat exactly once: [`Hub::leave`] does nothing the second time.

use std::io::{BufRead, ErrorKind, Write};
use std::net::Shutdown;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use sockserv_plugin::{
    HandlerError, HandlerResult, Request, RequestControl, RequestHandler, RequestKind,
};

use super::core::MemberId;
use super::hub::Hub;
use super::mailbox::{Closing, Mailbox};
use crate::input;

/// How much the writer hands to one `write`: a member that fell behind catches up in few writes.
const BATCH_BYTES: usize = 64 * 1024;

/// How long a member that is leaving (it quit, or its peer closed) may take to receive what is still
/// queued for it before the connection is shut down anyway; bounds a server's shutdown too.
const DRAIN_GRACE: Duration = Duration::from_secs(1);

/// Serves one member.
#[derive(Debug)]
pub struct ChatHandler {
    hub: Arc<Hub>,
}

impl ChatHandler {
    pub fn new(hub: Arc<Hub>) -> ChatHandler {
        ChatHandler { hub }
    }
}

impl RequestHandler for ChatHandler {
    fn handle(&mut self, req: &mut Request<'_>) -> HandlerResult {
        if req.kind != RequestKind::Stream {
            return Err(HandlerError::Protocol(
                "chat serves stream sockets only".into(),
            ));
        }
        let hub = &*self.hub;
        let (id, mailbox) = hub.join(req.peer, hub.certificate_nick(req.tls));
        let _leave = Leave { hub, id };
        let (control, server) = (req.control, req.server);
        let (rfile, wfile) = (&mut *req.rfile, &mut *req.wfile);
        thread::scope(|scope| {
            let spawn = |name: &str| thread::Builder::new().name(format!("chat-{name}-{id}"));
            spawn("write").spawn_scoped(scope, || write_mail(&mailbox, wfile))?;
            let mailbox = &mailbox;
            let reader = move || read_input(hub, id, mailbox, rfile, &|| server.is_stopping());
            if let Err(err) = spawn("read").spawn_scoped(scope, reader) {
                hub.leave(id);
                mailbox.close(Closing::Abort);
                return Err(err.into());
            }
            supervise(hub, id, mailbox, control);
            Ok(())
        })
    }
}

/// The member leaves when the handler ends, whichever way it ends.
struct Leave<'a> {
    hub: &'a Hub,
    id: MemberId,
}

impl Drop for Leave<'_> {
    fn drop(&mut self) {
        self.hub.leave(self.id);
    }
}

/// The reader: every read goes to the chat, at most as many messages at a time as the member's
/// rate allows; the member leaves when input ends.
fn read_input(
    hub: &Hub,
    id: MemberId,
    mailbox: &Mailbox,
    rfile: &mut (dyn BufRead + Send),
    stopping: &(dyn Fn() -> bool + Sync),
) {
    let _leave = Leave { hub, id };
    let mut bucket = hub.bucket(Instant::now());
    loop {
        // Draining: what is still buffered would be paced out over the whole drain; leave now.
        if stopping() {
            return;
        }
        let chunk = match input::fill_buf(rfile) {
            Ok(chunk) if !chunk.is_empty() => chunk,
            Ok(_) => return,
            Err(err) => {
                log::debug!("chat: member {id}: read failed: {err}");
                return;
            }
        };
        let now = Instant::now();
        let budget = bucket.available(now);
        if budget == 0 {
            // Over its rate: read nothing until a message may be sent (or the member is gone).
            if mailbox.pause(bucket.until_next(now)) {
                return;
            }
            continue;
        }
        let read = hub.input(id, chunk, budget);
        bucket.spend(read.messages);
        rfile.consume(read.taken);
        if !read.still_member {
            return;
        }
    }
}

/// The writer: the member's mail, batch by batch, until the mailbox closes; every write is the
/// member's progress.
fn write_mail(mailbox: &Mailbox, wfile: &mut (dyn Write + Send)) {
    let _done = WriterDone(mailbox);
    let mut batch = Vec::with_capacity(BATCH_BYTES);
    while mailbox.next_batch(&mut batch, BATCH_BYTES) {
        let mut out = &batch[..];
        while !out.is_empty() {
            match wfile.write(out) {
                Ok(0) => return,
                Ok(n) => {
                    mailbox.wrote(n);
                    out = &out[n..];
                }
                Err(err) if err.kind() == ErrorKind::Interrupted => {}
                Err(err) => {
                    log::debug!("chat: write failed: {err}");
                    return;
                }
            }
        }
        if let Err(err) = wfile.flush() {
            log::debug!("chat: write failed: {err}");
            return;
        }
        batch.clear();
    }
}

/// Tells the mailbox its writer stopped, however it stopped.
struct WriterDone<'a>(&'a Mailbox);

impl Drop for WriterDone<'_> {
    fn drop(&mut self) {
        self.0.writer_finished();
    }
}

/// The supervisor: judges the member whenever a message finds its queue full, looking at its
/// socket's send queue first; once the mailbox closes (and a drain is done, or its grace is
/// over), stops the writer and shuts the connection down so that no thread stays blocked on it.
fn supervise(hub: &Hub, id: MemberId, mailbox: &Mailbox, control: &dyn RequestControl) {
    while mailbox.verdict_due() {
        if mailbox.judge(control.send_queue()) {
            // The kick closes the mailbox (an abort), which ends this watch.
            hub.kick(id);
        }
    }
    mailbox.wait_closed(DRAIN_GRACE);
    mailbox.close(Closing::Abort);
    if let Err(err) = control.shutdown(Shutdown::Both) {
        log::debug!("chat: shutdown failed: {err}");
    }
}
