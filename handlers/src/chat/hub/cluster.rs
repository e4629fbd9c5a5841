//! The hub's side of a cluster: numbering and handing over what local members say for the other
//! instances (never waiting: a `try_send`, or a hold while a room's subscription is not confirmed),
//! and the calls of the link's threads ([`ClusterHub`]), each a short step under the hub's lock.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Weak};

use chrono::{DateTime, FixedOffset, Local, TimeZone, Utc};

use super::{Hub, State};
use crate::chat::cluster::publisher::LINK_DOWN;
use crate::chat::cluster::sequence::{Arrival, Sequences};
use crate::chat::cluster::wire::Message;
use crate::chat::cluster::{ClusterHub, Job, NotQueued, Presence, HELD_MAX};
use crate::chat::core::{MemberId, Outgoing, RemoteView};

/// The cluster's part of the hub's state.
#[derive(Debug, Default)]
pub(super) struct Shared {
    /// The rooms the subscriber hears: what their members say may be published.
    subscribed: BTreeSet<String>,
    /// Messages of rooms not heard yet, oldest first (at most [`HELD_MAX`]).
    held: Vec<Message>,
    /// The subscriber lost Redis (or never reached it) and has not subscribed since: what members
    /// say is dropped, not held.
    down: bool,
    /// Per room with members here: its run and the last sequence number given.
    runs: HashMap<String, (u64, u64)>,
    /// The last run given out.
    last_run: u64,
    /// What arrived from the other instances, for gaps and duplicates.
    sequences: Sequences,
}

impl Hub {
    /// Starts the link's threads with the first member (once).
    pub(super) fn start_link(&self) {
        if let (Some(link), Some(me)) = (&self.link, self.me.upgrade()) {
            let me: Arc<dyn ClusterHub> = me;
            link.start(&self.server, Arc::downgrade(&me) as Weak<dyn ClusterHub>);
        }
    }

    /// Numbers `outgoing` and hands it to the publisher, or holds it until its room is heard.
    pub(super) fn publish(&self, state: &mut State, outgoing: Outgoing) {
        let Some(link) = &self.link else {
            return;
        };
        let shared = &mut state.cluster;
        let (run, seq) = match shared.runs.get_mut(&outgoing.room) {
            Some(entry) => {
                entry.1 += 1;
                *entry
            }
            None => {
                shared.last_run += 1;
                let entry = (shared.last_run, 1);
                shared.runs.insert(outgoing.room.clone(), entry);
                entry
            }
        };
        let message = Message {
            origin: link.origin().clone(),
            room: outgoing.room,
            run,
            seq,
            kind: outgoing.kind,
            from: outgoing.from,
            time: Utc::now().timestamp_millis(),
            text: outgoing.text,
        };
        if shared.subscribed.contains(&message.room) {
            self.queue(Job::Publish(message));
        } else if !shared.down && shared.held.len() < HELD_MAX {
            shared.held.push(message);
        } else {
            link.stats().dropped(1);
        }
    }

    /// Onto the publisher's queue; a full queue drops it.
    fn queue(&self, job: Job) -> Option<NotQueued> {
        let link = self.link.as_ref()?;
        let failed = link.send(job).err();
        if failed.is_some() {
            link.stats().dropped(1);
        }
        failed
    }

    /// A `/nick` for the cluster to decide; `Some(why)` if it cannot even be asked.
    pub(super) fn claim(&self, member: MemberId, nick: String, key: String) -> Option<String> {
        let link = self.link.as_ref()?;
        if !link.stats().link_up() {
            return Some(LINK_DOWN.to_string());
        }
        match link.send(Job::Claim { member, nick, key }) {
            Ok(()) => None,
            Err(_) => Some("the cluster link is busy; try again in a moment".to_string()),
        }
    }

    /// A nick's key goes; if the queue is full it expires on its own after `presence_ttl`.
    pub(super) fn release(&self, member: MemberId, key: String) {
        if let Some(link) = &self.link {
            let _expires_anyway = link.send(Job::Release { member, key });
        }
    }

    /// A message's time as this server shows times.
    fn shown_time(&self, millis: i64) -> DateTime<FixedOffset> {
        let utc = Utc
            .timestamp_millis_opt(millis)
            .single()
            .unwrap_or_else(Utc::now);
        if self.options.utc {
            utc.fixed_offset()
        } else {
            utc.with_timezone(&Local).fixed_offset()
        }
    }
}

impl ClusterHub for Hub {
    fn rooms_wanted(&self, since: Option<u64>) -> Option<(u64, Vec<String>)> {
        let mut state = self.lock();
        let generation = state.chat.rooms_generation();
        if since == Some(generation) {
            return None;
        }
        let rooms = state.chat.room_names();
        let State { chat, cluster, .. } = &mut *state;
        cluster.runs.retain(|room, _| chat.has_room(room));
        Some((generation, rooms))
    }

    fn subscribed(&self, rooms: &[String]) {
        let mut state = self.lock();
        let Some(link) = &self.link else {
            return;
        };
        let shared = &mut state.cluster;
        shared.down = false;
        shared.subscribed = rooms.iter().cloned().collect();
        let heard = &shared.subscribed;
        shared.sequences.retain_rooms(|room| heard.contains(room));
        let (ready, waiting): (Vec<Message>, Vec<Message>) = std::mem::take(&mut shared.held)
            .into_iter()
            .partition(|message| heard.contains(&message.room));
        shared.held = waiting;
        for message in ready {
            self.queue(Job::Publish(message));
        }
        let up = link.stats().link_up();
        state.chat.set_link_up(up);
    }

    fn link_lost(&self) {
        let mut state = self.lock();
        let Some(link) = &self.link else {
            return;
        };
        state.cluster.subscribed.clear();
        state.cluster.down = true;
        link.stats().dropped(state.cluster.held.len() as u64);
        state.cluster.held.clear();
        state.chat.set_link_up(false);
    }

    fn deliver_remote(&self, message: Message) {
        let Some(link) = &self.link else {
            return;
        };
        if message.origin == *link.origin() {
            return;
        }
        let mut state = self.lock();
        if !state.chat.has_room(&message.room) {
            return;
        }
        let arrival = state.cluster.sequences.arrive(
            &message.origin,
            &message.room,
            message.run,
            message.seq,
        );
        match arrival {
            Arrival::Duplicate => return link.stats().duplicate(),
            Arrival::Gap { missed } => link.stats().gaps(missed),
            Arrival::Next => {}
        }
        link.stats().received();
        let now = self.shown_time(message.time);
        let deliveries = state.chat.remote(&message, &now);
        self.deliver(&mut state, deliveries);
    }

    fn nick_claimed(&self, member: MemberId, key: &str, granted: Result<(), String>) {
        let mut state = self.lock();
        let deliveries = state.chat.nick_claimed(member, key, granted);
        self.deliver(&mut state, deliveries);
    }

    fn nick_lost(&self, member: MemberId, key: &str) {
        let mut state = self.lock();
        let deliveries = state.chat.nick_lost(member, key);
        self.deliver(&mut state, deliveries);
    }

    fn presence(&self) -> Presence {
        let state = self.lock();
        Presence {
            rooms: state.chat.presence(),
            nicks: state.chat.held_nicks(),
        }
    }

    fn heard(&self, rooms: BTreeMap<String, Vec<String>>) {
        let link_up = self
            .link
            .as_ref()
            .is_some_and(|link| link.stats().link_up());
        self.lock().chat.set_remote(RemoteView { link_up, rooms });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::cluster::wire::{Kind, Origin};
    use crate::chat::mailbox::{Closing, Mailbox};
    use crate::chat::options::ChatOptions;
    use sockserv_plugin::Address;

    /// A clustered hub whose link is never started: what it would publish waits in the queue of
    /// `publish_queue` jobs, and the tests play the link's threads.
    fn hub() -> Hub {
        let text =
            "prefix = '{from}: '\n[cluster]\nredis = 'redis://127.0.0.1:1/0'\nnode = 'here'\n\
                    publish_queue = 2";
        let options = ChatOptions::from_table(&text.parse().unwrap()).unwrap();
        Hub::new("test", Arc::new(options))
    }

    fn remote(seq: u64, text: &str) -> Message {
        Message {
            origin: Origin {
                node: "there".into(),
                inc: 7,
            },
            room: "lobby".into(),
            run: 1,
            seq,
            kind: Kind::Say,
            from: "carol".into(),
            time: 0,
            text: text.into(),
        }
    }

    /// The lines queued in `mailbox` after its greeting, without waiting.
    fn lines(mailbox: &Mailbox) -> Vec<String> {
        let (mut all, mut batch) = (Vec::new(), Vec::new());
        mailbox.close(Closing::Drain);
        while mailbox.next_batch(&mut batch, usize::MAX) {
            mailbox.wrote(batch.len());
            all.append(&mut batch);
        }
        let text = String::from_utf8(all).unwrap();
        text.lines().skip(1).map(str::to_string).collect()
    }

    #[test]
    fn remote_messages_are_delivered_once_with_gaps_counted_and_own_ones_dropped() {
        let hub = hub();
        let (_id, mailbox) = hub.join(&Address::Inet(([127, 0, 0, 1], 1).into()), None);
        hub.deliver_remote(remote(1, "one"));
        hub.deliver_remote(remote(2, "two"));
        hub.deliver_remote(remote(2, "two again"));
        hub.deliver_remote(remote(5, "five"));
        let own = Message {
            origin: hub.link.as_ref().unwrap().origin().clone(),
            ..remote(6, "mine")
        };
        hub.deliver_remote(own);
        let elsewhere = Message {
            room: "dev".into(),
            ..remote(1, "not here")
        };
        hub.deliver_remote(elsewhere);
        assert_eq!(lines(&mailbox), ["carol: one", "carol: two", "carol: five"]);
        let counters = hub.cluster_counters().unwrap();
        assert_eq!(
            (counters.received, counters.gaps, counters.duplicates),
            (3, 2, 1)
        );
    }

    #[test]
    fn what_is_said_is_held_until_its_room_is_heard_and_a_full_queue_drops() {
        let hub = hub();
        let (ann, _) = hub.join(&Address::Inet(([127, 0, 0, 1], 1).into()), None);
        // Held: the join notice and two messages (the room is not subscribed yet).
        assert!(hub.input(ann, b"a\nb\n", usize::MAX).still_member);
        assert_eq!(hub.lock().cluster.held.len(), 3);
        // Heard: released in order onto a queue of 2; the third is dropped and counted.
        hub.subscribed(&["lobby".to_string()]);
        assert_eq!(hub.lock().cluster.held.len(), 0);
        assert_eq!(hub.cluster_counters().unwrap().dropped, 1);
        let link = hub.link.as_ref().unwrap();
        let jobs = link.jobs.lock().unwrap().take().unwrap();
        let queued: Vec<(u64, String)> = jobs
            .try_iter()
            .map(|job| match job {
                Job::Publish(message) => (message.seq, message.text),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            queued,
            [(1, "127.0.0.1:1 joined lobby".to_string()), (2, "a".into())]
        );
        // The link is lost: what is said is dropped, not held, and numbered all the same.
        hub.link_lost();
        assert!(hub.input(ann, b"c\n", usize::MAX).still_member);
        assert_eq!(hub.lock().cluster.held.len(), 0);
        assert_eq!(hub.cluster_counters().unwrap().dropped, 2);
        hub.subscribed(&["lobby".to_string()]);
        assert!(hub.input(ann, b"d\n", usize::MAX).still_member);
        match jobs.try_recv() {
            Ok(Job::Publish(message)) => assert_eq!((message.seq, message.text.as_str()), (5, "d")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_nick_is_refused_at_once_while_the_link_is_down() {
        let hub = hub();
        let (ann, mailbox) = hub.join(&Address::Inet(([127, 0, 0, 1], 1).into()), None);
        assert!(hub.input(ann, b"/nick ann\n", usize::MAX).still_member);
        let got = lines(&mailbox);
        assert!(
            got[0].starts_with("*** error: nicks cannot change while the cluster link is down"),
            "{got:?}"
        );
    }
}
