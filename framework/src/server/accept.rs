//! The serving loop's accept path for stream servers: accept, learn the peer, admit it through the
//! server's limits, ask `verify_request`, and hand the connection to the strategy.
//!
//! The peer is the connection's own address — or, on a server with `[server.proxy_protocol]`,
//! the client a trusted proxy's header names, once the header is whole (see `proxy`): such a
//! connection waits in the server's [`Awaiting`] set, polled by the loop, and comes back here
//! through [`Server::take_awaiting`]. Either way admission, `verify_request` and dispatch are the
//! same ([`Server::hand_on`]); a proxied connection's refusal names the proxy (`c7 CLIENT:
//! refused: denied via PROXY`), and so does the (debug) line of one that is served.
//!
//! Every accepted connection gets its id here (see `metrics::ConnId`), and every refusal is
//! counted by its reason and logged at a bounded rate (see `peer_log`).

use std::time::Instant;

use socket2::Socket;
use sockserv_plugin::Address;

use super::Server;
use crate::descriptors::is_out_of_descriptors;
use crate::limits::{Peer, Ticket};
use crate::metrics::{ConnId, Refusal};
use crate::peer_log::Fields;
use crate::proxy::awaiting::{Arrival, Ready};
use crate::strategy::Accepted;
use crate::transport::to_address;
use crate::{log_peer_event, log_with};
use crate::{Client, ServerError};

impl Server {
    /// Accept one connection and serve it, refuse it, or let it await its header. True unless it
    /// awaits.
    pub(super) fn take_connection(&mut self) -> Result<bool, ServerError> {
        let Some(listener) = &self.listener else {
            return Ok(true);
        };
        let (conn, addr) = match listener.accept() {
            Ok(accepted) => accepted,
            Err(err) if is_out_of_descriptors(&err) => {
                if self.reserve.refuse_one(&self.settings.name, listener, &err) {
                    self.shared.metrics.accepted();
                    self.shared.metrics.refused(Refusal::Descriptors);
                }
                return Ok(true);
            }
            Err(err) => return self.accept_failed(err).map(|()| true),
        };
        let id = self.shared.metrics.accepted();
        self.reserve.accepted(&self.settings.name);
        let from = to_address(&addr);
        if self.awaiting.is_some() {
            return Ok(self.await_peer(conn, from, id));
        }
        self.hand_on(Ready {
            socket: conn,
            peer: from,
            via: None,
            ticket: None,
            id,
        });
        Ok(true)
    }

    /// Count and log (at a bounded rate) the refusal of connection `client` (`via` a proxy,
    /// `uid`: a Unix peer's) for `why`; `detail` says more than the reason's name.
    fn refuse(&self, client: Client<'_>, why: Refusal, detail: std::fmt::Arguments<'_>) {
        self.shared.metrics.refused(why);
        let server = &self.settings.name;
        log_peer_event!(
            &Fields::of(server, client).because(why.name()),
            format_args!("{server}: {}refused {}{detail}", client.tag(), client.peer),
        );
    }

    /// A connection to a server that reads PROXY headers: a trusted source's waits for its header;
    /// any other is admitted by its own address now, and waits (briefly) to show it sends none.
    /// True unless it waits.
    fn await_peer(&mut self, conn: Socket, from: Address, id: ConnId) -> bool {
        let Some(awaiting) = self.awaiting.as_ref() else {
            return true;
        };
        let uid = from.inet().is_none().then(|| peer_uid(&conn)).flatten();
        let arrival = if awaiting.trusts(&from, uid) {
            Arrival::Trusted
        } else {
            match self.admit(&conn, Client::connection(&from, id), None) {
                Some(ticket) => Arrival::Untrusted(ticket),
                None => return true,
            }
        };
        let awaiting = self.awaiting.as_mut().expect("looked at above");
        let before = awaiting.len();
        let ready = awaiting.arrive(conn, from, id, arrival, Instant::now());
        let waits = awaiting.len() > before;
        if let Some(ready) = ready {
            self.hand_on(ready);
        }
        !waits
    }

    /// Look at the awaiting connections that poll(2) found readable (by their places) or whose
    /// time is up, and serve those whose peer is now known, while the strategy has room. True when
    /// any left the set (served or closed).
    pub(super) fn take_awaiting(&mut self, readable: &[usize]) -> bool {
        let has_room = |server: &Server| {
            (server.dispatcher.as_deref()).is_some_and(|dispatcher| dispatcher.has_capacity())
        };
        if !has_room(self) {
            return false;
        }
        let Some(mut awaiting) = self.awaiting.take() else {
            return false;
        };
        let before = awaiting.len();
        awaiting.advance(readable, Instant::now(), &mut |ready| {
            self.hand_on(ready);
            has_room(self)
        });
        let left = awaiting.len() < before;
        self.awaiting = Some(awaiting);
        left
    }

    /// Admit a connection whose peer is known (unless it was at accept), ask `verify_request`,
    /// and hand it to the strategy.
    pub(super) fn hand_on(&mut self, ready: Ready) {
        let Ready {
            socket: conn,
            peer,
            via,
            ticket,
            id,
        } = ready;
        let client = Client::connection(&peer, id);
        let ticket = match ticket {
            Some(ticket) => ticket,
            None => match self.admit(&conn, client, via.as_ref()) {
                Some(ticket) => ticket,
                None => return,
            },
        };
        let server = &self.settings.name;
        let via = via.map(|proxy| format!(" via {proxy}")).unwrap_or_default();
        if !self.shared.verify(client) {
            self.refuse(
                client,
                Refusal::VerifyRequest,
                format_args!("{via} (verify_request)"),
            );
            return;
        }
        if !via.is_empty() {
            let line = format_args!("{server}: {}{peer}{via}", client.tag());
            log_with!(log::Level::Debug, &Fields::of(server, client), line);
        }
        if let Err(err) = conn.set_nonblocking(false) {
            self.shared.metrics.refused(Refusal::Dispatch);
            let line = format_args!(
                "{server}: {}{peer}: cannot make the connection blocking: {err}",
                client.tag()
            );
            log_with!(log::Level::Warn, &Fields::of(server, client), line);
            return;
        }
        let dispatcher = self.dispatcher.as_mut().expect("started before taking");
        let tls = self.settings.tls.as_ref().map(|store| store.current());
        let accepted = Accepted {
            socket: conn,
            peer,
            ticket,
            id,
            tls,
        };
        dispatcher.stream(&self.shared, accepted);
    }

    /// The server's limits for a new connection from `peer` (through the proxy `via`): its
    /// ticket, or `None` when refused (logged at a bounded rate; the connection is closed without
    /// a byte when dropped).
    fn admit(&self, conn: &Socket, client: Client<'_>, via: Option<&Address>) -> Option<Ticket> {
        let uid = (client.peer.inet().is_none())
            .then(|| peer_uid(conn))
            .flatten();
        match (self.shared.gate).admit(Peer::of(client.peer, uid), Instant::now()) {
            Ok(ticket) => Some(ticket),
            Err(refusal) => {
                let uid = uid.map(|uid| format!(" (uid {uid})")).unwrap_or_default();
                let via = via.map(|proxy| format!(" via {proxy}")).unwrap_or_default();
                let detail = format_args!("{uid}{via}: {refusal}");
                self.refuse(client, Refusal::from(refusal), detail);
                None
            }
        }
    }
}

/// The uid of a Unix stream peer, as the kernel reports it (`SO_PEERCRED`).
fn peer_uid(conn: &Socket) -> Option<u32> {
    use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
    getsockopt(conn, PeerCredentials)
        .ok()
        .map(|cred| cred.uid())
}
