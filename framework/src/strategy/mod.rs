//! Strategies decide where a request runs — socketserver's mixins, as a value the server holds. The
//! serving loop accepts (or receives) and hands each request to its dispatcher; the dispatcher says when
//! it has no room for more, may give the loop one more descriptor to wait on, and drains what is in
//! flight when the server closes.

#[allow(unsafe_code)]
mod forking;
mod pool;
mod reactor;
mod sync;
mod threading;

use std::os::fd::BorrowedFd;
use std::sync::Arc;

use socket2::Socket;
use sockserv_plugin::Address;

use crate::request::Shared;
use crate::transport::{Datagram, ReplyTo};
use crate::{ServerError, Strategy};

/// Where requests run. One per server, driven by the serving loop only.
pub(crate) trait Dispatcher: Send {
    /// Whether the loop may take another request now (false while a bound is reached).
    fn has_capacity(&self) -> bool {
        true
    }

    /// An extra descriptor the loop waits on; when it is readable the loop calls `on_ready`.
    fn ready_fd(&self) -> Option<BorrowedFd<'_>> {
        None
    }

    /// Housekeeping after a wake-up (reaping children).
    fn on_ready(&mut self) {}

    /// Run one connection; `listener` is passed so a child process can close its copy.
    fn stream(&mut self, shared: &Arc<Shared>, conn: Socket, peer: Address);

    /// Run one datagram.
    fn datagram(
        &mut self,
        shared: &Arc<Shared>,
        socket: &Arc<Datagram>,
        packet: Vec<u8>,
        from: ReplyTo,
    );

    /// Stop new work and wait for what is in flight: connections are shut down for reading, so their
    /// handlers see end-of-file and finish.
    fn close(&mut self);
}

/// The dispatcher for `strategy`. Forking refuses to start in a multi-threaded process.
pub(crate) fn dispatcher(
    strategy: Strategy,
    shared: &Arc<Shared>,
) -> Result<Box<dyn Dispatcher>, ServerError> {
    Ok(match strategy {
        Strategy::Sync => Box::new(sync::SyncDispatcher),
        Strategy::Threading { max_threads } => Box::new(threading::ThreadingDispatcher::new(
            max_threads,
            shared.shutdown.clone(),
        )),
        Strategy::Pool { workers, queue } => {
            Box::new(pool::PoolDispatcher::new(&shared.name, workers, queue))
        }
        Strategy::Reactor { loops } => Box::new(reactor::ReactorDispatcher::new(shared, loops)?),
        Strategy::Forking { max_children } => {
            Box::new(forking::ForkingDispatcher::new(max_children, &shared.name)?)
        }
    })
}

/// The number of threads in this process, from /proc (Linux); `None` where it cannot be read.
pub(crate) fn thread_count() -> Option<usize> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name, which is in parentheses and may itself hold spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split_whitespace().nth(17)?.parse().ok()
}

/// Whether this process has exactly one thread: the condition for fork() to be safe.
pub fn is_single_threaded() -> bool {
    thread_count() == Some(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_this_process_threads() {
        // The test harness's main thread plus this test's thread plus the one spawned here.
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::spawn(move || rx.recv());
        assert!(thread_count().unwrap() >= 3);
        assert!(!is_single_threaded());
        drop(tx);
        thread.join().unwrap().unwrap_err();
    }
}
