//! Running out of file descriptors at accept(2) without stopping, spinning or flooding the log.
//!
//! A listener whose accept fails with `EMFILE`/`ENFILE` stays readable, so a loop that only logs
//! and retries spins at full CPU (libuv #690), floods its log (tokio #3529), or, if it stops
//! watching the listener, may never accept again (beast #3010). The remedy here is the reserved
//! descriptor of libev and nginx: each server keeps one descriptor open on `/dev/null`; when accept
//! fails for lack of descriptors it closes that one, accepts the waiting connection, closes it at
//! once (the client sees the connection end instead of waiting in the backlog), and takes its
//! reserve back. The loop wakes once per refused connection, not once per poll, and serves again
//! as soon as a descriptor is free. Should even the reserve be lost, the listener is left unwatched
//! for [`PAUSE`] at a time instead of being retried in a spin.
//!
//! Each episode is logged once when it starts and once when it ends, with how many connections
//! were refused in between. An episode ends at the first connection accepted [`QUIET`] after the
//! last refusal, so a server that flaps at the edge of its limit (each refused connection freeing
//! the descriptor the next one takes) writes at most two lines a second, not two per connection.

use std::fs::File;
use std::io;
use std::time::{Duration, Instant};

use socket2::Socket;

/// How long the listener is left unwatched when not even the reserve descriptor is left.
pub(crate) const PAUSE: Duration = Duration::from_millis(100);

/// How long without a refusal ends an episode.
pub(crate) const QUIET: Duration = Duration::from_secs(1);

/// One server's reserve descriptor and the state of an out-of-descriptors episode.
#[derive(Debug, Default)]
pub(crate) struct Reserve {
    spare: Option<File>,
    /// Connections refused since the episode began; `None` outside an episode.
    refused: Option<u64>,
    /// When the last connection was refused.
    last_refusal: Option<Instant>,
    /// While set, the listener is not watched (no reserve left).
    paused_until: Option<Instant>,
}

/// Whether `err` says the process (`EMFILE`) or the system (`ENFILE`) is out of descriptors.
pub(crate) fn is_out_of_descriptors(err: &io::Error) -> bool {
    matches!(err.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
}

impl Reserve {
    /// A reserve holding its spare descriptor.
    pub fn new() -> Reserve {
        Reserve {
            spare: open_spare(),
            ..Reserve::default()
        }
    }

    /// Whether the listener may be watched now.
    pub fn listening(&self) -> bool {
        self.paused_until
            .is_none_or(|until| Instant::now() >= until)
    }

    /// How long the serving loop may sleep before it must watch the listener again.
    pub fn pause_left(&self) -> Option<Duration> {
        self.paused_until
            .map(|until| until.saturating_duration_since(Instant::now()))
    }

    /// accept failed with `err`, out of descriptors: refuse the waiting connection with the reserve,
    /// or pause the listener when there is no reserve to use. Whether a connection was refused.
    pub fn refuse_one(&mut self, server: &str, listener: &Socket, err: &io::Error) -> bool {
        let refused = self.refused.get_or_insert_with(|| {
            log::warn!(
                "{server}: out of file descriptors ({err}): refusing new connections until some \
                 close"
            );
            0
        });
        self.last_refusal = Some(Instant::now());
        match self.spare.take() {
            Some(spare) => {
                drop(spare);
                let accepted = listener.accept().is_ok();
                if accepted {
                    *refused += 1;
                }
                self.spare = open_spare();
                accepted
            }
            None => {
                self.spare = open_spare();
                if self.spare.is_none() {
                    self.paused_until = Some(Instant::now() + PAUSE);
                }
                false
            }
        }
    }

    /// accept succeeded: end an episode, if one was going on and has been quiet for [`QUIET`].
    pub fn accepted(&mut self, server: &str) {
        let quiet = self.last_refusal.is_none_or(|last| last.elapsed() >= QUIET);
        if let Some(refused) = self.refused.take_if(|_| quiet) {
            log::info!(
                "{server}: file descriptors available again; {refused} connection(s) refused \
                 meanwhile"
            );
        }
        if self.spare.is_none() {
            self.spare = open_spare();
        }
    }
}

fn open_spare() -> Option<File> {
    File::open("/dev/null").ok()
}
