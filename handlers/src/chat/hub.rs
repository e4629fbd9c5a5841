//! The chat of one server as its connection threads share it: the [`Chat`] core and every member's
//! [`Mailbox`] behind one lock, and the clock. Built once per server, when the config is validated,
//! and held by the handler factory, so every connection of that server meets the same chat.
//!
//! Each step takes the lock, runs the core, and carries out its deliveries before letting go: one
//! order of events for everybody, and a member's messages reach every other member in the order
//! sent. Carrying out a delivery only pushes onto mailboxes, which never waits for a socket, so the
//! lock is held for microseconds whatever the members' connections do. A push that finds a queue
//! full only misses the message; the member's owner, which can see its socket, judges it and
//! calls [`Hub::kick`] if it is stuck (see [`mailbox`](super::mailbox)).
//!
//! The hub also hands out what paces the members: each reader asks [`Hub::input`] for at most as
//! many messages as its member's [`TokenBucket`] allows (see [`rate`](super::rate)).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Instant;

use chrono::{DateTime, FixedOffset, Local, Utc};
use sockserv_plugin::{Address, SessionWaker};

use super::cluster::stats::ClusterCounters;
use super::cluster::Link;
use super::core::{Chat, Delivery, MemberId};
use super::mailbox::{Closing, Mailbox};
use super::options::ChatOptions;
use super::outbox::{Limits, Outbox, Progress, Pushed};
use super::rate::TokenBucket;
use sockserv_framework::metrics::ServerMetrics;

/// One server's chat.
#[derive(Debug)]
pub struct Hub {
    /// The server's name, for log lines.
    server: String,
    options: Arc<ChatOptions>,
    state: Mutex<State>,
    next_id: AtomicU64,
    /// With the `cluster` option: the link to the other instances (see [`cluster`](super::cluster)).
    link: Option<Link>,
    /// This hub, for the link's threads (which hold it weakly); empty for a hub made by
    /// [`Hub::new`], which never starts them.
    me: Weak<Hub>,
    /// The server's counters: messages delivered, and missed by slow members.
    metrics: ServerMetrics,
}

/// What the chat took of one read.
#[must_use = "false `still_member` means: stop reading; bytes not taken are still to be handed in"]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Read {
    /// The member is still in the chat (false once it quit or was dropped: stop reading).
    pub still_member: bool,
    /// Bytes of the read taken.
    pub taken: usize,
    /// Messages they made: spend as many of the member's tokens.
    pub messages: usize,
}

#[derive(Debug)]
struct State {
    chat: Chat,
    mailboxes: HashMap<MemberId, Arc<Mailbox>>,
    /// What the cluster's side of the hub keeps (unused without the `cluster` option).
    cluster: cluster::Shared,
}

impl Hub {
    /// A hub for tests and single-instance use: the `cluster` option, if any, is not acted on.
    pub fn new(server: &str, options: Arc<ChatOptions>) -> Hub {
        Hub::with_me(server, options, Weak::new())
    }

    /// The server's hub; with the `cluster` option its link starts with the first member.
    pub fn shared(server: &str, options: Arc<ChatOptions>) -> Arc<Hub> {
        Arc::new_cyclic(|me| Hub::with_me(server, options, me.clone()))
    }

    fn with_me(server: &str, options: Arc<ChatOptions>, me: Weak<Hub>) -> Hub {
        let metrics = ServerMetrics::for_server(server);
        metrics.has_chat();
        Hub {
            metrics,
            server: server.to_string(),
            state: Mutex::new(State {
                chat: Chat::new(Arc::clone(&options)),
                mailboxes: HashMap::new(),
                cluster: cluster::Shared::default(),
            }),
            link: (options.cluster.as_ref()).map(|o| Link::new(Arc::clone(o), metrics)),
            options,
            next_id: AtomicU64::new(1),
            me,
        }
    }

    /// The cluster link's counters, with the `cluster` option.
    pub fn cluster_counters(&self) -> Option<ClusterCounters> {
        self.link.as_ref().map(|link| link.stats().snapshot())
    }

    /// A token bucket with the chat's `rate` and `burst`, full at `now`, for one member's reader.
    pub fn bucket(&self, now: Instant) -> TokenBucket {
        TokenBucket::new(self.options.rate, self.options.burst, now)
    }

    /// A new connection from `peer`: its id and mailbox. The mailbox may already be closing (the
    /// chat is full): its writer then writes the refusal and stops.
    #[must_use = "the member's id and mailbox are how it is served and how it leaves"]
    pub fn join(&self, peer: &Address, nick: Option<&str>) -> (MemberId, Arc<Mailbox>) {
        self.join_with(peer, nick, Progress::Exact, Mailbox::new)
    }

    /// [`join`](Self::join) for a session: its mailbox wakes it through `waker`.
    #[must_use = "the member's id and mailbox are how it is served and how it leaves"]
    pub fn join_session(
        &self,
        peer: &Address,
        nick: Option<&str>,
        waker: Arc<dyn SessionWaker>,
    ) -> (MemberId, Arc<Mailbox>) {
        self.join_with(peer, nick, Progress::AtTurns, |outbox| {
            Mailbox::with_waker(outbox, waker)
        })
    }

    fn join_with(
        &self,
        peer: &Address,
        nick: Option<&str>,
        progress: Progress,
        mailbox: impl FnOnce(Outbox) -> Mailbox,
    ) -> (MemberId, Arc<Mailbox>) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let limits = Limits {
            messages: self.options.queue_messages,
            bytes: self.options.queue_bytes,
            slow_after: self.options.slow_after,
        };
        let outbox = Outbox::with_progress(limits, self.options.overflow, progress);
        let mailbox = Arc::new(mailbox(outbox));
        self.start_link();
        let mut state = self.lock();
        state.mailboxes.insert(id, Arc::clone(&mailbox));
        let deliveries = state.chat.connect(id, peer, nick, &self.now());
        self.deliver(&mut state, deliveries);
        (id, mailbox)
    }

    /// The bytes of one read from `id`'s connection, up to the end of its `max`-th message (the
    /// member's tokens): what was taken, and whether `id` is still a member.
    pub fn input(&self, id: MemberId, bytes: &[u8], max: usize) -> Read {
        let mut state = self.lock();
        if let Some(link) = &self.link {
            state.chat.set_link_up(link.stats().link_up());
        }
        let input = state.chat.input_up_to(id, bytes, max, &self.now());
        self.deliver(&mut state, input.deliveries);
        Read {
            still_member: state.chat.is_member(id),
            taken: input.taken,
            messages: input.messages,
        }
    }

    /// `id`'s connection ended. Nothing happens if it already left.
    pub fn leave(&self, id: MemberId) {
        let mut state = self.lock();
        let deliveries = state.chat.disconnect(id, &self.now());
        self.deliver(&mut state, deliveries);
        if let Some(mailbox) = state.mailboxes.remove(&id) {
            // Not a member (refused when the chat was full): its refusal is being drained.
            mailbox.close(Closing::Drain);
        }
    }

    /// `id` cannot keep up (its queue stayed full for `slow_after` without progress, as its owner
    /// judged): it is dropped at once and its room told. Nothing happens if it already left.
    pub fn kick(&self, id: MemberId) {
        let mut state = self.lock();
        if state.chat.is_member(id) {
            self.log_kick(id);
            let kicked = state.chat.kick(id, &self.now());
            self.deliver(&mut state, kicked);
        }
    }

    /// Members connected now.
    pub fn members(&self) -> usize {
        self.lock().chat.len()
    }

    /// The nick a member joins with: its client certificate's common name, where the options
    /// ask for it (`nick_from_certificate`) and the connection has one.
    pub fn certificate_nick<'t>(
        &self,
        tls: Option<&'t sockserv_plugin::TlsInfo>,
    ) -> Option<&'t str> {
        let tls = tls.filter(|_| self.options.nick_from_certificate)?;
        tls.client_common_name.as_deref()
    }

    /// The options the chat was built with.
    pub fn options(&self) -> &ChatOptions {
        &self.options
    }

    fn log_kick(&self, id: MemberId) {
        log::info!(
            "{}: chat member {id} cannot keep up with its room; disconnecting it",
            self.server
        );
    }

    /// The time the prefix shows: local, or UTC with the `utc` option.
    fn now(&self) -> DateTime<FixedOffset> {
        if self.options.utc {
            Utc::now().fixed_offset()
        } else {
            Local::now().fixed_offset()
        }
    }

    /// Carries out `deliveries` in order.
    fn deliver(&self, state: &mut State, deliveries: Vec<Delivery>) {
        let mut work = VecDeque::from(deliveries);
        while let Some(delivery) = work.pop_front() {
            match delivery {
                Delivery::Send { to, bytes } => {
                    for id in to {
                        // A member without a mailbox has left; there is nobody to tell.
                        let Some(mailbox) = state.mailboxes.get(&id) else {
                            continue;
                        };
                        match mailbox.push(&bytes) {
                            Pushed::Queued => self.metrics.chat_delivered(1),
                            // Dropped: missed; the member hears of it once it catches up, and its
                            // owner judges whether it is stuck.
                            Pushed::Dropped => self.metrics.chat_dropped(1),
                            // Closed: its writer stopped (a failed write); its connection is being
                            // shut down and it leaves the chat when its handler ends.
                            Pushed::Closed => {}
                        }
                    }
                }
                Delivery::Close { member, drain } => {
                    if let Some(mailbox) = state.mailboxes.remove(&member) {
                        mailbox.close(if drain {
                            Closing::Drain
                        } else {
                            Closing::Abort
                        });
                    }
                }
                Delivery::Publish(outgoing) => self.publish(state, outgoing),
                Delivery::Claim { member, nick, key } => {
                    let refused = self.claim(member, nick, key.clone());
                    if let Some(why) = refused {
                        let answer = state.chat.nick_claimed(member, &key, Err(why));
                        for delivery in answer.into_iter().rev() {
                            work.push_front(delivery);
                        }
                    }
                }
                Delivery::Release { member, key } => self.release(member, key),
            }
        }
    }

    /// The lock, even after a panic on another connection's thread: every step leaves the chat
    /// consistent before it can panic, so one connection's bug does not take the server's chat down.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

mod cluster;

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn hub(options: &str) -> Hub {
        let options = ChatOptions::from_table(&options.parse().unwrap()).unwrap();
        Hub::new("test", Arc::new(options))
    }

    fn peer(port: u16) -> Address {
        Address::Inet(([127, 0, 0, 1], port).into())
    }

    /// Everything queued in `mailbox`, without waiting.
    fn queued(mailbox: &Mailbox) -> String {
        let (mut all, mut batch) = (Vec::new(), Vec::new());
        mailbox.close(Closing::Drain);
        while mailbox.next_batch(&mut batch, usize::MAX) {
            mailbox.wrote(batch.len());
            all.append(&mut batch);
        }
        String::from_utf8(all).unwrap()
    }

    #[test]
    fn a_stuck_member_is_kicked_by_its_owner_and_the_others_keep_everything() {
        let hub = hub("queue_messages = 3\nprefix = ''\nslow_after = 0");
        let (slow, slow_box) = hub.join(&peer(1), None);
        let (_fast, fast_box) = hub.join(&peer(2), None);
        let (talker, _) = hub.join(&peer(3), None);
        // slow's outbox is full of its greeting and two join notices: the first message that does
        // not fit is missed, and its owner is called to judge it. With no grace at all
        // (slow_after = 0) and a socket that stands still, the owner finds it stuck.
        let mut batch = Vec::new();
        assert!(fast_box.next_batch(&mut batch, usize::MAX));
        fast_box.wrote(batch.len());
        assert!(hub.input(talker, b"one\n", usize::MAX).still_member);
        assert_eq!(hub.members(), 3, "a push judges nobody");
        assert!(slow_box.verdict_due() && slow_box.judge(Some(0)));
        hub.kick(slow);
        assert!(hub.input(talker, b"two\n", usize::MAX).still_member);
        assert_eq!(hub.members(), 2);
        assert_eq!(slow_box.wait_closed(Duration::ZERO), Closing::Abort);
        assert!(!hub.input(slow, b"too late\n", usize::MAX).still_member);
        assert_eq!(
            queued(&fast_box),
            "one\n*** 127.0.0.1:1 was disconnected: too slow to keep up\ntwo\n"
        );
    }

    #[test]
    fn the_drop_policy_keeps_the_member() {
        let hub = hub("queue_messages = 2\noverflow = 'drop'\nprefix = ''");
        let (_slow, slow_box) = hub.join(&peer(1), None);
        let (talker, _) = hub.join(&peer(2), None);
        assert!(hub.input(talker, b"a\nb\nc\n", usize::MAX).still_member);
        assert_eq!(hub.members(), 2);
        let got = queued(&slow_box);
        assert!(got.ends_with("*** you missed 3 messages: your connection did not keep up\n"));
    }

    #[test]
    fn a_full_queue_within_its_grace_misses_and_keeps_its_member() {
        let hub = hub("queue_messages = 2\nprefix = ''");
        let (_slow, slow_box) = hub.join(&peer(1), None);
        let (talker, _) = hub.join(&peer(2), None);
        assert!(hub.input(talker, b"a\nb\n", usize::MAX).still_member);
        assert_eq!(hub.members(), 2, "10 s of grace have not passed");
        let got = queued(&slow_box);
        assert!(got.ends_with("*** you missed 2 messages: your connection did not keep up\n"));
    }

    #[test]
    fn input_takes_only_the_messages_asked_for() {
        let hub = hub("prefix = ''");
        let (listener, inbox) = hub.join(&peer(1), None);
        let (talker, _) = hub.join(&peer(2), None);
        let read = hub.input(talker, b"one\ntwo\nthree\n", 2);
        assert_eq!(
            read,
            Read {
                still_member: true,
                taken: 8,
                messages: 2
            }
        );
        let _ = listener;
        assert!(queued(&inbox).ends_with("one\ntwo\n"));
    }

    #[test]
    fn a_refused_member_gets_its_refusal_then_a_drain() {
        let hub = hub("max_members = 1");
        let _member = hub.join(&peer(1), None);
        let (id, mailbox) = hub.join(&peer(2), None);
        assert_eq!(mailbox.wait_closed(Duration::ZERO), Closing::Drain);
        let mut batch = Vec::new();
        assert!(mailbox.next_batch(&mut batch, usize::MAX));
        assert!(batch.starts_with(b"*** error: the chat is full"));
        hub.leave(id);
        assert_eq!(hub.members(), 1);
    }
}
