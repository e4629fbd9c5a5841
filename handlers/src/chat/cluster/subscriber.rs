//! The subscriber thread: the one reader of Redis of a chat server. It keeps one pub/sub
//! connection subscribed to the channel of every room with members here, and hands each message
//! to the hub, which drops its own and delivers the rest to the room's local members.
//!
//! Reads wait at most [`SUBSCRIBER_TURN`]; between two, the thread asks the hub whether rooms
//! opened or closed here, and subscribes or unsubscribes (then tells the hub which rooms it hears,
//! which releases what their members said meanwhile). Every heartbeat it pings, so a Redis that
//! stopped answering is noticed. A lost connection is made again after the backoff, and then every
//! room with local members is subscribed again.

use std::collections::BTreeSet;
use std::sync::{Arc, Weak};
use std::time::Instant;

use redis::PubSub;

use super::backoff::Backoff;
use super::options::{ClusterOptions, FIRST_BACKOFF};
use super::publisher::{connect, sleep_unless_gone};
use super::stats::ClusterStats;
use super::wire;
use super::{ClusterHub, COMMAND_TIMEOUT, SUBSCRIBER_TURN};

pub struct Subscriber {
    server: String,
    options: Arc<ClusterOptions>,
    stats: Arc<ClusterStats>,
    hub: Weak<dyn ClusterHub>,
}

/// Why a connection was given up.
enum Ended {
    /// The hub is gone: stop.
    HubGone,
    /// Redis failed or went away: connect again.
    Lost(redis::RedisError),
}

impl Subscriber {
    pub fn new(
        server: &str,
        options: Arc<ClusterOptions>,
        stats: Arc<ClusterStats>,
        hub: Weak<dyn ClusterHub>,
    ) -> Subscriber {
        Subscriber {
            server: server.to_string(),
            options,
            stats,
            hub,
        }
    }

    /// Runs until the hub is gone.
    pub fn run(self) {
        let mut backoff = Backoff::new(FIRST_BACKOFF, self.options.reconnect_max);
        let mut failed = false;
        loop {
            let ended = match connect(&self.options) {
                Ok(mut con) => {
                    if failed {
                        self.stats.reconnected();
                        log::info!("{}: chat cluster: subscribing again", self.server);
                    }
                    backoff.reset();
                    let ended = self.listen(&mut con.as_pubsub());
                    if let Ended::Lost(err) = &ended {
                        log::warn!(
                            "{}: chat cluster: lost {}: {err}",
                            self.server,
                            self.options.shown
                        );
                    }
                    ended
                }
                Err(err) => {
                    log::debug!("{}: chat cluster: cannot subscribe: {err}", self.server);
                    if !failed {
                        log::warn!(
                            "{}: chat cluster: cannot subscribe at {}: {err}",
                            self.server,
                            self.options.shown
                        );
                    }
                    Ended::Lost(err)
                }
            };
            self.stats.subscriber(false);
            let Some(hub) = self.hub.upgrade() else {
                return;
            };
            hub.link_lost();
            drop(hub);
            if let Ended::HubGone = ended {
                return;
            }
            failed = true;
            if !sleep_unless_gone(backoff.failed(), &self.hub) {
                return;
            }
        }
    }

    /// Serves one connection until it fails or the hub is gone.
    fn listen(&self, pubsub: &mut PubSub<'_>) -> Ended {
        let mut heard: BTreeSet<String> = BTreeSet::new();
        let mut generation = None;
        let mut next_ping = Instant::now() + self.options.heartbeat();
        if let Err(err) = pubsub.set_read_timeout(Some(SUBSCRIBER_TURN)) {
            return Ended::Lost(err);
        }
        loop {
            let Some(hub) = self.hub.upgrade() else {
                return Ended::HubGone;
            };
            if let Some((now, rooms)) = hub.rooms_wanted(generation) {
                if let Err(err) = self.follow(pubsub, &mut heard, rooms) {
                    return Ended::Lost(err);
                }
                generation = Some(now);
                hub.subscribed(&heard.iter().cloned().collect::<Vec<_>>());
                self.stats.subscriber(true);
            }
            if Instant::now() >= next_ping {
                next_ping = Instant::now() + self.options.heartbeat();
                if let Err(err) = with_timeout(pubsub, |p| p.ping::<()>()) {
                    return Ended::Lost(err);
                }
            }
            drop(hub);
            match pubsub.get_message() {
                Ok(message) => self.hand_over(&message),
                Err(err) if err.is_timeout() => {}
                Err(err) => return Ended::Lost(err),
            }
        }
    }

    /// Subscribes to the rooms of `wanted` not heard yet, unsubscribes from those no longer wanted.
    fn follow(
        &self,
        pubsub: &mut PubSub<'_>,
        heard: &mut BTreeSet<String>,
        wanted: Vec<String>,
    ) -> redis::RedisResult<()> {
        let prefix = &self.options.channel_prefix;
        let wanted: BTreeSet<String> = wanted.into_iter().collect();
        let new: Vec<String> = wanted
            .difference(heard)
            .map(|room| wire::channel(prefix, room))
            .collect();
        let gone: Vec<String> = heard
            .difference(&wanted)
            .map(|room| wire::channel(prefix, room))
            .collect();
        if !new.is_empty() {
            with_timeout(pubsub, |p| p.subscribe(&new))?;
        }
        if !gone.is_empty() {
            with_timeout(pubsub, |p| p.unsubscribe(&gone))?;
        }
        *heard = wanted;
        Ok(())
    }

    fn hand_over(&self, message: &redis::Msg) {
        let channel = message.get_channel_name();
        if wire::room_of(&self.options.channel_prefix, channel).is_none() {
            return;
        }
        match wire::decode(message.get_payload_bytes()) {
            Ok(decoded) => {
                if let Some(hub) = self.hub.upgrade() {
                    hub.deliver_remote(decoded);
                }
            }
            Err(err) => {
                self.stats.malformed();
                log::debug!(
                    "{}: chat cluster: a message on {channel:?} refused: {err}",
                    self.server
                );
            }
        }
    }
}

/// Runs a command on the pub/sub connection with [`COMMAND_TIMEOUT`] to answer, then goes back to
/// reads of at most [`SUBSCRIBER_TURN`].
fn with_timeout<T>(
    pubsub: &mut PubSub<'_>,
    command: impl FnOnce(&mut PubSub<'_>) -> redis::RedisResult<T>,
) -> redis::RedisResult<T> {
    pubsub.set_read_timeout(Some(COMMAND_TIMEOUT))?;
    let result = command(pubsub);
    pubsub.set_read_timeout(Some(SUBSCRIBER_TURN))?;
    result
}
