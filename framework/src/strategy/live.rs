//! The requests in flight of a threading or pool server, and their bounded close.
//!
//! Each task (a request's thread, or a pool worker) is registered with the connection it is serving,
//! if any; the connection is shared with the task, not duplicated. `close` is the one shutdown both
//! strategies use: shut every connection down for reading (handlers see end of file and finish, as
//! socketserver's `block_on_close` waits for them), wait up to `drain_timeout` for the tasks to end,
//! then shut what is still open down both ways so blocked reads and writes return, wait
//! [`FORCED_CLOSE_WAIT`] more, and give up on what still runs (it is logged; the process's exit ends
//! those threads).

use std::collections::HashMap;
use std::net::Shutdown as Direction;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use socket2::Socket;

use crate::close::{deadline_after, FORCED_CLOSE_WAIT};
use crate::memory;

/// A task's id in [`Live`].
pub(crate) type TaskId = u64;

#[derive(Default)]
pub(crate) struct Live {
    state: Mutex<LiveState>,
    /// Signalled whenever a task ends.
    ended: Condvar,
}

#[derive(Default)]
struct LiveState {
    next_id: TaskId,
    /// Each task with the connection it is serving (none between requests, or for a datagram).
    tasks: HashMap<TaskId, Option<Arc<Socket>>>,
    /// Once closing: new connections are shut down for reading as they are registered.
    closing: bool,
}

impl Live {
    fn lock(&self) -> MutexGuard<'_, LiveState> {
        // A poisoned lock only means a thread panicked while holding it; the map is still sound.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Register a task serving `conn`.
    pub fn add(&self, conn: Option<Arc<Socket>>) -> TaskId {
        let mut state = self.lock();
        let id = state.next_id;
        state.next_id += 1;
        state.tasks.insert(id, None);
        Self::serve(&mut state, id, conn);
        id
    }

    /// The task now serves `conn` (or nothing). A connection taken up after close began is shut
    /// down for reading at once, like the others.
    pub fn set(&self, id: TaskId, conn: Option<Arc<Socket>>) {
        Self::serve(&mut self.lock(), id, conn);
    }

    fn serve(state: &mut LiveState, id: TaskId, conn: Option<Arc<Socket>>) {
        if let (true, Some(conn)) = (state.closing, &conn) {
            let _ = conn.shutdown(Direction::Read);
        }
        if let Some(slot) = state.tasks.get_mut(&id) {
            *slot = conn;
        }
    }

    /// The task has ended.
    pub fn remove(&self, id: TaskId) {
        {
            let mut state = self.lock();
            state.tasks.remove(&id);
            memory::shrink_sparse_map(&mut state.tasks);
        }
        self.ended.notify_all();
    }

    /// Tasks running now.
    pub fn len(&self) -> usize {
        self.lock().tasks.len()
    }

    /// The bounded close (see the module doc). Returns how many requests were still running at
    /// the end of the drain, their connections closed under them (0: a clean drain).
    pub fn close(&self, server: &str, drain_timeout: Duration) -> usize {
        let mut state = self.lock();
        state.closing = true;
        shut_all(&state, Direction::Read);
        state = self.wait_empty(state, drain_timeout);
        let forced = state.tasks.len();
        if forced > 0 {
            log::warn!(
                "{server}: {} request(s) still running after drain_timeout ({drain_timeout:?}): \
                 closing their connections",
                state.tasks.len()
            );
            shut_all(&state, Direction::Both);
            state = self.wait_empty(state, FORCED_CLOSE_WAIT);
        }
        let left = state.tasks.len();
        if left > 0 {
            log::error!("{server}: giving up on {left} request(s) that did not end");
        }
        forced
    }

    /// Wait until no task is left or `limit` has passed.
    fn wait_empty<'a>(
        &'a self,
        mut state: MutexGuard<'a, LiveState>,
        limit: Duration,
    ) -> MutexGuard<'a, LiveState> {
        let deadline = deadline_after(limit);
        while !state.tasks.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            state = match self.ended.wait_timeout(state, left) {
                Ok((state, _)) => state,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
        state
    }
}

fn shut_all(state: &LiveState, how: Direction) {
    for conn in state.tasks.values().flatten() {
        let _ = conn.shutdown(how);
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    #[test]
    fn close_ends_a_reader_at_once_and_a_stuck_task_after_the_bounds() {
        let live = Arc::new(Live::default());
        let (ours, _theirs) = crate::test_support::socket_pair();
        let conn = Arc::new(ours);
        let reader = {
            let (live, conn) = (Arc::clone(&live), Arc::clone(&conn));
            let id = live.add(Some(Arc::clone(&conn)));
            std::thread::spawn(move || {
                let mut buf = [0u8; 8];
                let n = (&mut &*conn).read(&mut buf).unwrap();
                live.remove(id);
                n
            })
        };
        // A task that never ends (its handler ignores every error).
        let _stuck = live.add(None);
        let started = Instant::now();
        let drain = Duration::from_millis(200);
        // The reader ended with the drain's first step; the stuck task was closed under it.
        assert_eq!(live.close("test", drain), 1);
        assert_eq!(reader.join().unwrap(), 0, "the reader saw end of stream");
        let took = started.elapsed();
        assert!(took >= drain + FORCED_CLOSE_WAIT, "{took:?}");
        assert!(
            took < drain + FORCED_CLOSE_WAIT + Duration::from_secs(10),
            "{took:?}"
        );
    }
}
