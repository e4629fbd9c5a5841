//! The publisher thread: the one writer to Redis of a chat server. It takes jobs from the bounded
//! queue in batches of at most [`MAX_BATCH`] and sends each batch as one pipeline; every heartbeat
//! it writes this instance's presence, keeps its nicks claimed and reads the other instances'
//! presence for `/who` and `/rooms`.
//!
//! **Keys** (all under `channel_prefix`, see [`wire`]):
//!
//! - `PREFIX:presence:NODE:INC`, a hash: room → its members' names here, one a line, plus a field
//!   `@` so the hash exists with no member; rewritten whole at each heartbeat and expiring
//!   `presence_ttl` after it, so a crashed instance's members vanish on their own;
//! - `PREFIX:instances`, a set of the `NODE:INC` that wrote presence; a reader removes those
//!   whose hash has expired;
//! - `PREFIX:nick:KEY`, a string per nick key naming its holder `NODE:INC:MEMBER`, set only if
//!   absent (or already the holder's) by [`CLAIM`], with the same expiry, renewed by the
//!   heartbeats, and deleted by [`RELEASE`] only by its holder.
//!
//! When a command fails, the connection is made again at once and the batch sent once more (a
//! message sent twice is dropped by its receivers as a duplicate); if that fails too the batch is
//! dropped (counted) and the thread waits its backoff, dropping what is queued meanwhile: what is
//! said while Redis is unreachable is not kept for later.

use std::collections::BTreeMap;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use redis::{Connection, Value};

use super::backoff::Backoff;
use super::options::{ClusterOptions, FIRST_BACKOFF};
use super::stats::ClusterStats;
use super::wire::{self, Origin};
use super::{sleep_while, ClusterHub, Job, COMMAND_TIMEOUT};
use crate::chat::core::MemberId;

/// Jobs sent in one pipeline: enough to carry a burst in one round trip, few enough that a failed
/// batch loses little.
pub const MAX_BATCH: usize = 256;

/// The most names of other instances' members kept for `/who` and `/rooms`: far more than any
/// `/who` answer is read for, and a bound on what a Redis shared with others can make us hold.
pub const MAX_PRESENCE_NAMES: usize = 65_536;

/// Sets `KEYS[1]` to `ARGV[1]` for `ARGV[2]` ms if it is absent or already `ARGV[1]`'s; 1 if so.
pub const CLAIM: &str = "local v = redis.call('GET', KEYS[1]) \
    if v == false or v == ARGV[1] then \
      redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 1 end \
    return 0";
/// Deletes `KEYS[1]` if it is `ARGV[1]`'s.
pub const RELEASE: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then \
      return redis.call('DEL', KEYS[1]) end \
    return 0";

pub struct Publisher {
    server: String,
    options: Arc<ClusterOptions>,
    stats: Arc<ClusterStats>,
    hub: Weak<dyn ClusterHub>,
    /// `NODE:INC`: this instance in presence and nick claims.
    instance: String,
    next_beat: Instant,
}

impl Publisher {
    pub fn new(
        server: &str,
        options: Arc<ClusterOptions>,
        origin: Origin,
        stats: Arc<ClusterStats>,
        hub: Weak<dyn ClusterHub>,
    ) -> Publisher {
        Publisher {
            server: server.to_string(),
            instance: format!("{}:{}", origin.node, origin.inc),
            options,
            stats,
            hub,
            next_beat: Instant::now(),
        }
    }

    /// Runs until the hub is gone (its end of the queue closes).
    pub fn run(mut self, jobs: Receiver<Job>) {
        let mut backoff = Backoff::new(FIRST_BACKOFF, self.options.reconnect_max);
        // `failed`: attempts have failed since the last connection (logged once); `lost`: a
        // connection was up, so the next one that works is a reconnection.
        let (mut failed, mut lost) = (false, false);
        loop {
            match connect(&self.options) {
                Ok(mut con) => {
                    if failed || lost {
                        self.stats.reconnected();
                        log::info!("{}: chat cluster: publishing again", self.server);
                    }
                    failed = false;
                    backoff.reset();
                    self.stats.publisher(true);
                    if self.serve(&mut con, &jobs).is_none() {
                        self.leave(&mut con);
                        return;
                    }
                    lost = true;
                }
                Err(err) => {
                    log::debug!("{}: chat cluster: cannot publish: {err}", self.server);
                    if !failed {
                        log::warn!(
                            "{}: chat cluster: cannot publish to {}: {err}",
                            self.server,
                            self.options.shown
                        );
                    }
                    failed = true;
                }
            }
            self.stats.publisher(false);
            let wait = backoff.failed();
            let deadline = Instant::now() + wait;
            while Instant::now() < deadline {
                match jobs.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                    Ok(job) => self.fail(vec![job]),
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => return,
                }
            }
        }
    }

    /// Serves `con` until a command fails (`Some`) or the hub is gone (`None`).
    fn serve(&mut self, con: &mut Connection, jobs: &Receiver<Job>) -> Option<()> {
        loop {
            let wait = self.next_beat.saturating_duration_since(Instant::now());
            match jobs.recv_timeout(wait) {
                Ok(job) => {
                    let mut batch = vec![job];
                    batch.extend(jobs.try_iter().take(MAX_BATCH - 1));
                    if let Err(batch) = self.send(con, batch) {
                        // Once more on a new connection; a duplicate is dropped by its receivers.
                        let retried = match connect(&self.options) {
                            Ok(new) => {
                                *con = new;
                                self.send(con, batch)
                            }
                            Err(_) => Err(batch),
                        };
                        if let Err(batch) = retried {
                            log::warn!(
                                "{}: chat cluster: lost {}; {} jobs not sent",
                                self.server,
                                self.options.shown,
                                batch.len()
                            );
                            self.fail(batch);
                            return Some(());
                        }
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return None,
            }
            if Instant::now() >= self.next_beat {
                self.next_beat = Instant::now() + self.options.heartbeat();
                if let Err(err) = self.heartbeat(con) {
                    log::warn!("{}: chat cluster: heartbeat failed: {err}", self.server);
                    return Some(());
                }
            }
        }
    }

    /// One batch as one pipeline; on failure, the batch back for another try.
    fn send(&self, con: &mut Connection, batch: Vec<Job>) -> Result<(), Vec<Job>> {
        let prefix = &self.options.channel_prefix;
        let ttl = self.ttl_ms();
        let mut pipe = redis::pipe();
        for job in &batch {
            match job {
                Job::Publish(message) => {
                    pipe.cmd("PUBLISH")
                        .arg(wire::channel(prefix, &message.room))
                        .arg(wire::encode(message));
                }
                Job::Claim { member, key, .. } => {
                    pipe.cmd("EVAL")
                        .arg(CLAIM)
                        .arg(1)
                        .arg(wire::nick_key(prefix, key))
                        .arg(self.holder(*member))
                        .arg(ttl);
                }
                Job::Release { member, key } => {
                    pipe.cmd("EVAL")
                        .arg(RELEASE)
                        .arg(1)
                        .arg(wire::nick_key(prefix, key))
                        .arg(self.holder(*member));
                }
            }
        }
        let replies: Vec<Value> = match pipe.query(con) {
            Ok(replies) => replies,
            Err(err) => {
                log::debug!("{}: chat cluster: publish failed: {err}", self.server);
                return Err(batch);
            }
        };
        let hub = self.hub.upgrade();
        for (job, reply) in batch.into_iter().zip(replies) {
            match job {
                Job::Publish(_) => self.stats.published(1),
                Job::Claim { member, nick, key } => {
                    let granted = if reply == Value::Int(1) {
                        Ok(())
                    } else {
                        Err(format!("nick {nick:?} is taken on another instance"))
                    };
                    if let Some(hub) = &hub {
                        hub.nick_claimed(member, &key, granted);
                    }
                }
                Job::Release { .. } => {}
            }
        }
        Ok(())
    }

    /// What could not be sent: messages are dropped (counted), claims refused.
    fn fail(&self, batch: Vec<Job>) {
        let hub = self.hub.upgrade();
        for job in batch {
            match job {
                Job::Publish(_) => self.stats.dropped(1),
                Job::Claim { member, key, .. } => {
                    if let Some(hub) = &hub {
                        hub.nick_claimed(member, &key, Err(LINK_DOWN.to_string()));
                    }
                }
                Job::Release { .. } => {}
            }
        }
    }

    /// Presence out, nicks kept, the others' presence in.
    fn heartbeat(&self, con: &mut Connection) -> redis::RedisResult<()> {
        let Some(hub) = self.hub.upgrade() else {
            return Ok(());
        };
        let presence = hub.presence();
        self.write_presence(con, &presence.rooms)?;
        self.keep_nicks(con, &*hub, &presence.nicks)?;
        let others = self.read_presence(con)?;
        hub.heard(others);
        Ok(())
    }

    fn write_presence(
        &self,
        con: &mut Connection,
        rooms: &BTreeMap<String, Vec<String>>,
    ) -> redis::RedisResult<()> {
        let prefix = &self.options.channel_prefix;
        let key = wire::presence_key(prefix, &self.instance);
        let mut fields = vec![("@".to_string(), String::new())];
        fields.extend(
            rooms
                .iter()
                .map(|(room, names)| (room.clone(), names.join("\n"))),
        );
        redis::pipe()
            .atomic()
            .del(&key)
            .ignore()
            .hset_multiple(&key, &fields)
            .ignore()
            .pexpire(&key, self.ttl_ms() as i64)
            .ignore()
            .sadd(wire::instances_key(prefix), &self.instance)
            .ignore()
            .query::<()>(con)
    }

    fn keep_nicks(
        &self,
        con: &mut Connection,
        hub: &dyn ClusterHub,
        nicks: &[(String, MemberId)],
    ) -> redis::RedisResult<()> {
        if nicks.is_empty() {
            return Ok(());
        }
        let prefix = &self.options.channel_prefix;
        let mut pipe = redis::pipe();
        for (key, member) in nicks {
            pipe.cmd("EVAL")
                .arg(CLAIM)
                .arg(1)
                .arg(wire::nick_key(prefix, key))
                .arg(self.holder(*member))
                .arg(self.ttl_ms());
        }
        let held: Vec<i64> = pipe.query(con)?;
        for ((key, member), held) in nicks.iter().zip(held) {
            if held != 1 {
                hub.nick_lost(*member, key);
            }
        }
        Ok(())
    }

    /// The other live instances' presence, merged: room → names. Instances whose hash expired
    /// are removed from the set.
    fn read_presence(
        &self,
        con: &mut Connection,
    ) -> redis::RedisResult<BTreeMap<String, Vec<String>>> {
        let prefix = &self.options.channel_prefix;
        let instances_key = wire::instances_key(prefix);
        let instances: Vec<String> = redis::cmd("SMEMBERS").arg(&instances_key).query(con)?;
        let others: Vec<&String> = instances.iter().filter(|i| **i != self.instance).collect();
        let mut pipe = redis::pipe();
        for instance in &others {
            pipe.hgetall(wire::presence_key(prefix, instance));
        }
        let hashes: Vec<BTreeMap<String, String>> = if others.is_empty() {
            Vec::new()
        } else {
            pipe.query(con)?
        };
        let mut rooms: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut gone = Vec::new();
        let mut kept = 0;
        for (instance, hash) in others.into_iter().zip(hashes) {
            if hash.is_empty() {
                gone.push(instance);
                continue;
            }
            for (room, names) in hash.into_iter().filter(|(room, _)| room != "@") {
                let names: Vec<String> = names
                    .lines()
                    .filter(|n| !n.is_empty())
                    .take(MAX_PRESENCE_NAMES - kept)
                    .map(str::to_string)
                    .collect();
                kept += names.len();
                rooms.entry(room).or_default().extend(names);
            }
        }
        if !gone.is_empty() {
            redis::cmd("SREM")
                .arg(&instances_key)
                .arg(gone)
                .query::<()>(con)?;
        }
        Ok(rooms)
    }

    /// Best effort on the way out: this instance's presence goes at once rather than expire.
    fn leave(&self, con: &mut Connection) {
        let prefix = &self.options.channel_prefix;
        let _ = redis::pipe()
            .del(wire::presence_key(prefix, &self.instance))
            .srem(wire::instances_key(prefix), &self.instance)
            .query::<()>(con);
    }

    fn holder(&self, member: MemberId) -> String {
        format!("{}:{member}", self.instance)
    }

    fn ttl_ms(&self) -> u64 {
        self.options.presence_ttl.as_millis().max(1) as u64
    }
}

/// The refusal of a `/nick` that could not reach Redis.
pub const LINK_DOWN: &str =
    "nicks cannot change while the cluster link is down (uniqueness across instances cannot be \
     checked); try again later";

/// A connection with [`COMMAND_TIMEOUT`] on connecting, reading and writing, and `TCP_NODELAY`
/// (redis-rs leaves Nagle's algorithm on; a message should not wait for the last one's ACK).
///
/// # Errors
///
/// redis-rs's: the server unreachable or slow, a refused password.
pub fn connect(options: &ClusterOptions) -> redis::RedisResult<Connection> {
    let tcp = options.info.tcp_settings().clone().set_nodelay(true);
    let client = redis::Client::open(options.info.clone().set_tcp_settings(tcp))?;
    let con = client.get_connection_with_timeout(COMMAND_TIMEOUT)?;
    con.set_read_timeout(Some(COMMAND_TIMEOUT))?;
    con.set_write_timeout(Some(COMMAND_TIMEOUT))?;
    Ok(con)
}

/// [`sleep_while`] for a thread that holds `hub` weakly.
pub(crate) fn sleep_unless_gone(total: Duration, hub: &Weak<dyn ClusterHub>) -> bool {
    sleep_while(total, || hub.strong_count() > 0)
}
