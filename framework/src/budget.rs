//! `max_buffered_input`: one budget for the input a server's connections hold while a frame or a
//! line is incomplete. Each connection's handler says how much it holds
//! (`RequestControl::hold_input`, `SessionContext::hold_input`); when the sum passes the budget,
//! the connection holding the most is closed (shut down both ways, so its handler's read or write
//! fails) and logged with the reason. Without it, 200 clients each holding a search frame one
//! byte short of 1 MiB held 217 MB, every one within its own per-connection bound.
//!
//! The budget is per process: a forking server's children each hold their own input, in memory
//! of their own, which `max_children` bounds.

use std::collections::{HashMap, HashSet};
use std::net::Shutdown as Direction;
use std::sync::{Mutex, MutexGuard};

use socket2::Socket;
use sockserv_plugin::Address;

use crate::log_peer_event;
use crate::memory;
use crate::metrics::{CloseReason, ConnId};
use crate::peer_log::Fields;
use crate::Client;

/// A connection's entry in the budget.
pub(crate) type HolderId = u64;

#[derive(Debug)]
pub(crate) struct InputBudget {
    /// The budget in bytes; `None`: no budget, and nothing is tracked.
    max: Option<usize>,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    total: usize,
    next_id: HolderId,
    holders: HashMap<HolderId, Holder>,
    /// The holders the budget closed, until they leave (each leaves once, when its connection
    /// ends, so this holds at most the connections open at once).
    closed: HashSet<HolderId>,
}

#[derive(Debug)]
struct Holder {
    bytes: usize,
    peer: Address,
    conn: Option<ConnId>,
    /// A duplicate of the connection's descriptor, to shut it down from whichever thread passes
    /// the budget; made when it first holds anything.
    socket: Option<Socket>,
}

impl InputBudget {
    pub fn new(max: Option<usize>) -> InputBudget {
        InputBudget {
            max,
            state: Mutex::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Register a connection; `None` without a budget.
    pub fn enter(&self, client: Client<'_>) -> Option<HolderId> {
        self.max?;
        let mut state = self.lock();
        let id = state.next_id;
        state.next_id += 1;
        let holder = Holder {
            bytes: 0,
            peer: client.peer.clone(),
            conn: client.conn,
            socket: None,
        };
        state.holders.insert(id, holder);
        Some(id)
    }

    /// The connection holds `bytes` now; past the budget, the biggest holder is closed.
    pub fn hold(&self, server: &str, id: HolderId, conn: &Socket, bytes: usize) {
        let Some(max) = self.max else { return };
        let mut state = self.lock();
        let Some(holder) = state.holders.get_mut(&id) else {
            return;
        };
        if holder.socket.is_none() && bytes > 0 {
            holder.socket = conn.try_clone().ok();
        }
        let before = std::mem::replace(&mut holder.bytes, bytes);
        state.total = state.total - before + bytes;
        while state.total > max {
            let Some((&victim, _)) = state.holders.iter().max_by_key(|(_, h)| h.bytes) else {
                break;
            };
            if state.holders[&victim].bytes == 0 {
                break;
            }
            // Forgotten once closed: what its handler still reads from the kernel's buffers
            // afterwards is not counted (or logged) again.
            let holder = state.holders.remove(&victim).expect("found above");
            state.closed.insert(victim);
            let held = holder.bytes;
            if let Some(socket) = &holder.socket {
                let _ = socket.shutdown(Direction::Both);
            }
            let client = Client {
                peer: &holder.peer,
                conn: holder.conn,
            };
            let reason = CloseReason::MaxBufferedInput.name();
            log_peer_event!(
                &Fields::of(server, client).because(reason),
                format_args!(
                    "{server}: {}closing {}: limit: max_buffered_input ({max} bytes held by \
                     the server's connections): it held {held}",
                    client.tag(),
                    client.peer
                ),
            );
            state.total -= held;
        }
    }

    /// The connection has ended: what it held is given back. Whether the budget had closed it.
    pub fn leave(&self, id: HolderId) -> bool {
        let mut state = self.lock();
        if let Some(holder) = state.holders.remove(&id) {
            state.total -= holder.bytes;
        }
        memory::shrink_sparse_map(&mut state.holders);
        state.closed.remove(&id)
    }

    #[cfg(test)]
    fn total(&self) -> usize {
        self.lock().total
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;
    use crate::test_support::socket_pair;

    #[test]
    fn past_the_budget_the_biggest_holder_is_closed() {
        let budget = InputBudget::new(Some(100));
        let peer = Address::UnixUnnamed;
        let (small, _small_peer) = socket_pair();
        let (big, mut big_peer) = socket_pair();
        let client = Client::datagram(&peer);
        let (a, b) = (budget.enter(client).unwrap(), budget.enter(client).unwrap());
        budget.hold("t", a, &small, 30);
        budget.hold("t", b, &big, 60);
        assert_eq!(budget.total(), 90);
        budget.hold("t", a, &small, 50);
        // 110 > 100: the one holding 60 goes, its peer sees the end.
        assert_eq!(budget.total(), 50);
        let mut buf = [0u8; 1];
        assert_eq!(big_peer.read(&mut buf).unwrap(), 0);
        assert!(!budget.leave(a));
        assert!(budget.leave(b), "the budget closed it");
        assert_eq!(budget.total(), 0);
    }

    #[test]
    fn without_a_budget_nothing_is_tracked() {
        let budget = InputBudget::new(None);
        assert_eq!(budget.enter(Client::datagram(&Address::UnixUnnamed)), None);
    }
}
