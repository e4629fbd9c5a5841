//! Wakes chat sessions at given times: how a reactor member that is over its rate gets back to its
//! held input once it has messages to spend again.
//!
//! The reactor offers a session no timer (only wakes from other threads), so each chat server that
//! has reactor members over their rate runs one small thread, started on first use, that sleeps
//! until the earliest time asked for and calls those sessions' wakers. A framework timer
//! (`SessionContext::wake_after`) would make this thread unnecessary; see the session's module doc.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fmt;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::Instant;

use sockserv_plugin::SessionWaker;

/// One server's pacer.
pub struct Pacer {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

struct Shared {
    state: Mutex<State>,
    changed: Condvar,
}

#[derive(Default)]
struct State {
    /// (when, order asked, whom): the earliest first.
    due: BinaryHeap<Reverse<Due>>,
    asked: u64,
    stop: bool,
}

struct Due {
    at: Instant,
    order: u64,
    waker: Arc<dyn SessionWaker>,
}

impl PartialEq for Due {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.order) == (other.at, other.order)
    }
}

impl Eq for Due {}

impl PartialOrd for Due {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Due {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.order).cmp(&(other.at, other.order))
    }
}

impl fmt::Debug for Pacer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Pacer")
    }
}

impl Pacer {
    pub fn new() -> Pacer {
        Pacer {
            shared: Arc::new(Shared {
                state: Mutex::new(State::default()),
                changed: Condvar::new(),
            }),
            thread: Mutex::new(None),
        }
    }

    /// Calls `waker` at `at` (or soon after). Wakes at once when the thread cannot be started.
    pub fn wake_at(&self, at: Instant, waker: Arc<dyn SessionWaker>) {
        if !self.start() {
            waker.wake();
            return;
        }
        let mut state = lock(&self.shared.state);
        state.asked += 1;
        let order = state.asked;
        state.due.push(Reverse(Due { at, order, waker }));
        drop(state);
        self.shared.changed.notify_one();
    }

    /// Starts the thread unless it runs; false if it cannot.
    fn start(&self) -> bool {
        let mut thread = lock(&self.thread);
        if thread.is_some() {
            return true;
        }
        let shared = Arc::clone(&self.shared);
        match thread::Builder::new()
            .name("chat-pacer".into())
            .spawn(move || run(&shared))
        {
            Ok(handle) => {
                *thread = Some(handle);
                true
            }
            Err(err) => {
                log::warn!("chat: cannot start the pacer thread: {err}");
                false
            }
        }
    }
}

impl Default for Pacer {
    fn default() -> Self {
        Pacer::new()
    }
}

impl Drop for Pacer {
    fn drop(&mut self) {
        lock(&self.shared.state).stop = true;
        self.shared.changed.notify_one();
        if let Some(thread) = lock(&self.thread).take() {
            let _ = thread.join();
        }
    }
}

/// The thread: sleeps until the earliest due time, wakes what is due, until stopped.
fn run(shared: &Shared) {
    let mut state = lock(&shared.state);
    loop {
        if state.stop {
            return;
        }
        let now = Instant::now();
        let mut due = Vec::new();
        while state.due.peek().is_some_and(|Reverse(next)| next.at <= now) {
            let Some(Reverse(next)) = state.due.pop() else {
                break;
            };
            due.push(next.waker);
        }
        if !due.is_empty() {
            drop(state);
            due.iter().for_each(|waker| waker.wake());
            state = lock(&shared.state);
            continue;
        }
        state = match state.due.peek() {
            Some(Reverse(next)) => {
                let wait = next.at.saturating_duration_since(now);
                shared
                    .changed
                    .wait_timeout(state, wait)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0
            }
            None => shared
                .changed
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner),
        };
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    struct Tell(Mutex<mpsc::Sender<u32>>, u32);

    impl SessionWaker for Tell {
        fn wake(&self) {
            let _ = self.0.lock().unwrap().send(self.1);
        }
    }

    #[test]
    fn wakes_come_in_time_order_and_not_before_their_time() {
        let pacer = Pacer::new();
        let (tx, rx) = mpsc::channel();
        let start = Instant::now();
        for (ms, n) in [(60, 2), (20, 1), (100, 3)] {
            let waker = Arc::new(Tell(Mutex::new(tx.clone()), n));
            pacer.wake_at(start + Duration::from_millis(ms), waker);
        }
        let limit = Duration::from_secs(10);
        assert_eq!(rx.recv_timeout(limit), Ok(1));
        assert!(start.elapsed() >= Duration::from_millis(20));
        assert_eq!(rx.recv_timeout(limit), Ok(2));
        assert_eq!(rx.recv_timeout(limit), Ok(3));
        assert!(start.elapsed() >= Duration::from_millis(100));
        drop(pacer); // joins its thread
    }
}
