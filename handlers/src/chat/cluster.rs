//! Chat across instances through Redis pub/sub (the `cluster` option): rooms that span machines,
//! and local chat that goes on when Redis is gone. Told once here; the pieces are below.
//!
//! - **Local first.** A member's message reaches the members of its own instance exactly as
//!   without a cluster, in the same step and under the same lock; only then is it handed to the
//!   [`Link`] to publish, by a `try_send` onto a bounded queue (`publish_queue`). Nothing a member
//!   or an event loop does ever waits on Redis: a full queue drops the message and counts it.
//! - **Two threads per chat server** ([`publisher`], [`subscriber`]), started with its first
//!   member, each with its own blocking redis-rs connection. The publisher publishes in batches
//!   (one pipeline a batch), and every heartbeat (`presence_ttl` / 3) writes this instance's
//!   presence, keeps its nicks claimed and reads the other instances' presence. The subscriber
//!   subscribes to the channel of every room with members here (and unsubscribes from rooms that
//!   emptied) between reads of at most [`SUBSCRIBER_TURN`], and hands what arrives to the hub.
//! - **Order and loss** ([`wire`], [`sequence`]): each message carries its origin (node and
//!   incarnation), room, a per-origin-and-room sequence number, sender, time and text. One queue,
//!   one publishing connection and one subscribing connection keep a sender's order on every
//!   instance; an instance drops its own messages coming back, drops duplicates, and counts the
//!   messages a jump in the numbers shows it missed. Across instances delivery is at most once:
//!   what is published while Redis is unreachable is not kept for later.
//! - **An instance publishes to a room only once it hears it**: until the subscriber has
//!   subscribed to a room, what its members say there is held (at most [`HELD_MAX`] messages) and
//!   published once the subscription is confirmed. So whoever hears a member's join notice can
//!   also be heard by that member.
//! - **Failure** ([`backoff`]): a lost connection is made again after a wait that doubles from
//!   100 ms up to `reconnect_max`; the subscriber then subscribes again to every room with local
//!   members (the step whose absence left Socket.IO's Redis adapter deaf after a reconnect).
//!   While the link is down messages for other instances are dropped and counted, and `/nick` is
//!   refused (its uniqueness across instances cannot be checked).
//! - **Presence** (see [`publisher`]): each instance keeps a hash of its rooms' members in Redis,
//!   expiring `presence_ttl` after its last heartbeat, so an instance that dies leaves `/who`
//!   within `presence_ttl` plus a heartbeat. A nick is claimed by a key per UTS #39 skeleton
//!   ([`nicks::key`](super::nicks::key)) set only if absent and kept alive by the heartbeats.
//! - **Counters** ([`stats`]): link state, published, received, dropped, gaps, duplicates.

pub mod backoff;
pub mod options;
pub mod publisher;
pub mod sequence;
pub mod stats;
pub mod subscriber;
pub mod wire;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sockserv_framework::metrics::ServerMetrics;

use self::options::ClusterOptions;
use self::stats::ClusterStats;
use self::wire::{Message, Origin};
use super::core::MemberId;

/// The subscriber's longest read before it looks whether the rooms with local members changed:
/// how late, at most, an instance starts hearing a room that gained its first member here.
pub const SUBSCRIBER_TURN: Duration = Duration::from_millis(50);
/// How long a connection attempt, and a command, may take before the link counts as down.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(5);
/// Messages held for rooms whose subscription is not confirmed yet; beyond it they are dropped.
pub const HELD_MAX: usize = 1024;

/// What the link's threads ask of the hub. Every call is short and never waits on Redis.
pub trait ClusterHub: Send + Sync {
    /// The rooms with members here, unless they are still those of generation `since`.
    fn rooms_wanted(&self, since: Option<u64>) -> Option<(u64, Vec<String>)>;
    /// The subscriber now hears exactly `rooms`.
    fn subscribed(&self, rooms: &[String]);
    /// The subscriber lost its connection: nothing is heard until [`ClusterHub::subscribed`].
    fn link_lost(&self);
    /// A message from Redis (possibly this instance's own).
    fn deliver_remote(&self, message: Message);
    /// The answer to a [`Job::Claim`].
    fn nick_claimed(&self, member: MemberId, key: &str, granted: Result<(), String>);
    /// A held nick's key turned out to be another instance's.
    fn nick_lost(&self, member: MemberId, key: &str);
    /// This instance's presence and the nick keys it holds.
    fn presence(&self) -> Presence;
    /// The other instances' presence, room → names.
    fn heard(&self, rooms: BTreeMap<String, Vec<String>>);
}

/// What one instance holds, as its heartbeat writes it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Presence {
    /// Room → the names of its members here.
    pub rooms: BTreeMap<String, Vec<String>>,
    /// The nick keys held here, each with its member.
    pub nicks: Vec<(String, MemberId)>,
}

/// What the publisher thread is asked to do, in order.
#[derive(Debug)]
pub enum Job {
    Publish(Message),
    Claim {
        member: MemberId,
        nick: String,
        key: String,
    },
    Release {
        member: MemberId,
        key: String,
    },
}

/// One chat server's link to the cluster: the bounded queue to the publisher, the counters, and the
/// threads once started.
pub struct Link {
    options: Arc<ClusterOptions>,
    origin: Origin,
    stats: Arc<ClusterStats>,
    queue: SyncSender<Job>,
    /// The publisher's end of the queue until the threads start.
    pub(crate) jobs: Mutex<Option<Receiver<Job>>>,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link")
            .field("origin", &self.origin)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

/// Why a job was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotQueued {
    /// The queue is full: Redis is slow or unreachable.
    Full,
    /// The publisher thread is gone.
    Stopped,
}

impl Link {
    /// A link whose counters `metrics` exports too; its threads start with [`Link::start`].
    pub fn new(options: Arc<ClusterOptions>, metrics: ServerMetrics) -> Link {
        let (queue, jobs) = mpsc::sync_channel(options.publish_queue);
        Link {
            origin: Origin {
                node: options.node.clone(),
                inc: incarnation(),
            },
            options,
            stats: Arc::new(ClusterStats::new(metrics)),
            queue,
            jobs: Mutex::new(Some(jobs)),
        }
    }

    /// Starts the two threads (once; later calls do nothing).
    pub fn start(&self, server: &str, hub: Weak<dyn ClusterHub>) {
        let Some(jobs) = self
            .jobs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        else {
            return;
        };
        log::info!(
            "{server}: chat cluster node {} (incarnation {}) through {}",
            self.origin.node,
            self.origin.inc,
            self.options.shown
        );
        let publisher = publisher::Publisher::new(
            server,
            Arc::clone(&self.options),
            self.origin.clone(),
            Arc::clone(&self.stats),
            hub.clone(),
        );
        let subscriber = subscriber::Subscriber::new(
            server,
            Arc::clone(&self.options),
            Arc::clone(&self.stats),
            hub,
        );
        let spawned = thread::Builder::new()
            .name(format!("chat-publish-{server}"))
            .spawn(move || publisher.run(jobs))
            .and_then(|_| {
                thread::Builder::new()
                    .name(format!("chat-subscribe-{server}"))
                    .spawn(move || subscriber.run())
            });
        if let Err(err) = spawned {
            log::error!("{server}: cannot start the chat cluster's threads: {err}");
        }
    }

    /// Queues `job` for the publisher without waiting.
    ///
    /// # Errors
    ///
    /// [`NotQueued::Full`] when `publish_queue` jobs wait already, [`NotQueued::Stopped`] once the
    /// publisher is gone.
    pub fn send(&self, job: Job) -> Result<(), NotQueued> {
        self.queue.try_send(job).map_err(|err| match err {
            TrySendError::Full(_) => NotQueued::Full,
            TrySendError::Disconnected(_) => NotQueued::Stopped,
        })
    }

    pub fn origin(&self) -> &Origin {
        &self.origin
    }

    pub fn stats(&self) -> &ClusterStats {
        &self.stats
    }

    pub fn options(&self) -> &ClusterOptions {
        &self.options
    }
}

/// A number drawn at start that tells this chat server's messages from those of any other process
/// or server that shares its node name: the clock's nanoseconds, the pid and a counter, mixed.
fn incarnation() -> u64 {
    static COUNT: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mixed =
        nanos ^ (u64::from(std::process::id()) << 40) ^ COUNT.fetch_add(1, Ordering::Relaxed);
    // Kept within 2^53 so that any JSON reader holds it exactly.
    mixed & ((1 << 53) - 1)
}

/// Sleeps `total` in slices of at most [`SUBSCRIBER_TURN`], returning early (false) once `alive`
/// says the hub is gone.
pub(crate) fn sleep_while(total: Duration, alive: impl Fn() -> bool) -> bool {
    let deadline = std::time::Instant::now() + total;
    loop {
        if !alive() {
            return false;
        }
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return true;
        }
        thread::sleep(left.min(SUBSCRIBER_TURN));
    }
}
