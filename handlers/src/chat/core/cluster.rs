//! The core's side of a cluster (the `cluster` option), sans-IO like the rest of it: what it hands
//! the other instances ([`Delivery::Publish`]), what it does with theirs ([`Chat::remote`]), nicks
//! claimed across instances ([`Delivery::Claim`], [`Chat::nick_claimed`]), and `/rooms` and `/who`
//! with the other instances' members as last heard ([`RemoteView`]). Without the option none of
//! this runs and the chat is exactly the single-instance one.

use std::collections::BTreeMap;

use chrono::{DateTime, FixedOffset};

use super::{Chat, Delivery, Kind, MemberId, Out, Outgoing};
use crate::chat::cluster::wire::Message;
use crate::chat::format::{self, Bytes};
use crate::chat::nicks;

/// What this instance knows of the others: their members per room, and whether the link is up.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RemoteView {
    /// Whether the link to Redis is up (if not, `rooms` is as last heard).
    pub link_up: bool,
    /// Room → the names of its members on other instances.
    pub rooms: BTreeMap<String, Vec<String>>,
}

impl Chat {
    /// In a cluster, `id`'s message or action goes to the other instances too.
    pub(super) fn share_said(&self, id: MemberId, kind: Kind, text: &str, out: &mut Out) {
        if self.remote.is_some() {
            out.0.push(Delivery::Publish(Outgoing {
                room: self.members[&id].room.clone(),
                kind,
                from: self.name(id).to_string(),
                text: text.to_string(),
            }));
        }
    }

    /// In a cluster, a notice of `room` goes to the other instances too.
    pub(super) fn share_notice(&self, room: &str, text: &str, out: &mut Out) {
        if self.remote.is_some() {
            out.0.push(Delivery::Publish(Outgoing {
                room: room.to_string(),
                kind: Kind::Notice,
                from: String::new(),
                text: text.to_string(),
            }));
        }
    }

    /// `/nick` in a cluster: the key is free here; ask the cluster for it. The answer comes
    /// through [`Chat::nick_claimed`].
    pub(super) fn claim(&mut self, id: MemberId, nick: &str, key: String, out: &mut Out) {
        match self.claims.get(&key) {
            Some(&(owner, _)) if owner != id => {
                return out.reply(
                    id,
                    format::error(format_args!("nick {nick:?} is being taken by someone else")),
                );
            }
            _ => {}
        }
        if self.claims.values().any(|&(owner, _)| owner == id) {
            return out.reply(
                id,
                format::error("your last /nick is not answered yet; try again in a moment"),
            );
        }
        self.claims.insert(key.clone(), (id, nick.to_string()));
        out.0.push(Delivery::Claim {
            member: id,
            nick: nick.to_string(),
            key,
        });
    }

    /// The cluster's answer to a [`Delivery::Claim`]: `Ok` if the key is now `id`'s, else why not.
    /// A member that left meanwhile gets nothing, and a granted key is released again.
    #[must_use = "carry out every Delivery, in order (see the module doc)"]
    pub fn nick_claimed(
        &mut self,
        id: MemberId,
        key: &str,
        granted: Result<(), String>,
    ) -> Vec<Delivery> {
        let mut out = Out::default();
        let Some((_, nick)) = self.claims.remove(key) else {
            return out.0;
        };
        if !self.is_member(id) {
            if granted.is_ok() {
                out.0.push(Delivery::Release {
                    key: key.to_string(),
                    member: id,
                });
            }
            return out.0;
        }
        match granted {
            Ok(()) => self.rename(id, &nick, key.to_string(), &mut out),
            Err(why) => out.reply(id, format::error(why)),
        }
        out.0
    }

    /// The cluster found `id`'s nick of key `key` held by another instance (both took it while
    /// this one could not reach Redis): `id` is known by its address again, and told why.
    #[must_use = "carry out every Delivery, in order (see the module doc)"]
    pub fn nick_lost(&mut self, id: MemberId, key: &str) -> Vec<Delivery> {
        let mut out = Out::default();
        if self.nicks.get(key) != Some(&id) {
            return out.0;
        }
        self.nicks.remove(key);
        let member = self.members.get_mut(&id).expect("a member holds its nick");
        let Some(nick) = member.nick.take() else {
            return out.0;
        };
        let (address, room) = (member.address.clone(), member.room.clone());
        out.reply(
            id,
            format::notice(format_args!(
                "your nick {nick} is held on another instance (taken while this one could not \
                 reach Redis); you are {address} again"
            )),
        );
        let text = format!("{nick} is now {address}");
        self.share_notice(&room, &text, &mut out);
        out.send(self.others(&room, id), format::notice(text));
        out.0
    }

    /// A message from another instance for the local members of its room; `now` is its time as
    /// this server shows times.
    #[must_use = "carry out every Delivery, in order (see the module doc)"]
    pub fn remote(&self, message: &Message, now: &DateTime<FixedOffset>) -> Vec<Delivery> {
        let mut out = Out::default();
        let Some(members) = self.rooms.get(&message.room) else {
            return out.0;
        };
        let text = cut(&message.text, self.options.max_line);
        let from = cut(&message.from, self.options.max_line);
        let bytes: Bytes = match message.kind {
            Kind::Say => self.options.prefix.message(now, from, text),
            Kind::Me => format::action(from, text),
            Kind::Notice => format::notice(text),
        };
        out.send(members.clone(), bytes);
        out.0
    }

    /// What the hub heard of the other instances.
    pub fn set_remote(&mut self, view: RemoteView) {
        if self.remote.is_some() {
            self.remote = Some(view);
        }
    }

    /// Whether the link is up, as last told ([`Chat::set_remote`]).
    pub fn set_link_up(&mut self, up: bool) {
        if let Some(remote) = &mut self.remote {
            remote.link_up = up;
        }
    }

    /// A number that changes whenever a room opens or closes here.
    pub fn rooms_generation(&self) -> u64 {
        self.rooms_changed
    }

    /// The rooms with members here.
    pub fn room_names(&self) -> Vec<String> {
        self.rooms.keys().cloned().collect()
    }

    /// Whether `room` has members here.
    pub fn has_room(&self, room: &str) -> bool {
        self.rooms.contains_key(room)
    }

    /// Room → the names of its members here: this instance's presence.
    pub fn presence(&self) -> BTreeMap<String, Vec<String>> {
        self.rooms
            .iter()
            .map(|(room, members)| {
                let names = members.iter().map(|&m| self.name(m).to_string()).collect();
                (room.clone(), names)
            })
            .collect()
    }

    /// The nicks' keys held here, with their members: what the heartbeat keeps claimed.
    pub fn held_nicks(&self) -> Vec<(String, MemberId)> {
        let mut held: Vec<_> = self.nicks.iter().map(|(k, &m)| (k.clone(), m)).collect();
        held.sort();
        held
    }

    /// `/rooms`: without a cluster, each room and its members; in one, how many are here and
    /// how many elsewhere, and the link's state.
    pub(super) fn rooms_notice(&self) -> Bytes {
        let Some(remote) = &self.remote else {
            return self.local_rooms();
        };
        let mut names: Vec<&String> = self.rooms.keys().chain(remote.rooms.keys()).collect();
        names.sort();
        names.dedup();
        let list: Vec<String> = names
            .into_iter()
            .map(|room| {
                let here = self.rooms.get(room).map_or(0, Vec::len);
                let there = remote.rooms.get(room).map_or(0, Vec::len);
                match (here, there) {
                    (here, 0) => format!("{room} ({here} here)"),
                    (0, there) => format!("{room} ({there} elsewhere)"),
                    (here, there) => format!("{room} ({here} here, {there} elsewhere)"),
                }
            })
            .collect();
        format::notice(format_args!(
            "rooms: {}; {}",
            list.join(", "),
            link(remote.link_up)
        ))
    }

    /// `/who`: the room's members here, and in a cluster those elsewhere and the link's state.
    pub(super) fn who_notice(&self, id: MemberId) -> Bytes {
        let Some(remote) = &self.remote else {
            return self.local_who(id);
        };
        let room = &self.members[&id].room;
        let here: Vec<&str> = self.rooms[room].iter().map(|&m| self.name(m)).collect();
        let mut text = format!("in {room}: {} (here)", here.join(", "));
        if let Some(there) = remote.rooms.get(room).filter(|names| !names.is_empty()) {
            text += &format!("; {} (elsewhere)", there.join(", "));
        }
        format::notice(format_args!("{text}; {}", link(remote.link_up)))
    }

    /// The key of `nick` as claims use it.
    pub fn nick_key(nick: &str) -> String {
        nicks::key(nick)
    }
}

fn link(up: bool) -> &'static str {
    if up {
        "cluster link up"
    } else {
        "cluster link down (other instances as last heard)"
    }
}

/// `text` cut to at most `max` bytes at a character boundary.
fn cut(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use chrono::TimeZone;
    use sockserv_plugin::Address;

    use super::*;
    use crate::chat::cluster::wire::Origin;
    use crate::chat::options::ChatOptions;

    const A: MemberId = 1;
    const B: MemberId = 2;

    fn now() -> DateTime<FixedOffset> {
        FixedOffset::east_opt(0)
            .unwrap()
            .with_ymd_and_hms(2024, 1, 2, 3, 4, 5)
            .unwrap()
    }

    /// A clustered chat with A and B in the lobby, their greetings taken.
    fn chat() -> Chat {
        let text = "prefix = '{from}: '\nmax_line = 12\n[cluster]\nredis = 'redis://127.0.0.1:1/0'";
        let options = ChatOptions::from_table(&text.parse().unwrap()).unwrap();
        let mut chat = Chat::new(Arc::new(options));
        for id in [A, B] {
            let peer = Address::Inet(format!("127.0.0.1:{}", 5000 + id).parse().unwrap());
            let _greeting = chat.connect(id, &peer, None, &now());
        }
        chat
    }

    fn published(deliveries: &[Delivery]) -> Vec<(Kind, String, String)> {
        deliveries
            .iter()
            .filter_map(|delivery| match delivery {
                Delivery::Publish(o) => Some((o.kind, o.from.clone(), o.text.clone())),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn local_members_are_served_before_the_cluster_is_told() {
        let mut chat = chat();
        let out = chat.input(A, b"hi\n/me waves\n", &now());
        assert!(matches!(out[0], Delivery::Send { .. }), "{out:?}");
        assert!(matches!(out[1], Delivery::Publish(_)), "{out:?}");
        let from = "127.0.0.1:5001".to_string();
        assert_eq!(
            published(&out),
            [
                (Kind::Say, from.clone(), "hi".into()),
                (Kind::Me, from, "waves".into())
            ]
        );
        let out = chat.disconnect(B, &now());
        assert_eq!(
            published(&out),
            [(
                Kind::Notice,
                String::new(),
                "127.0.0.1:5002 left lobby".into()
            )]
        );
    }

    #[test]
    fn a_nick_waits_for_the_cluster_and_is_released_when_its_holder_leaves() {
        let mut chat = chat();
        let out = chat.input(A, b"/nick ann\n", &now());
        let key = nicks::key("ann");
        assert_eq!(
            out,
            [Delivery::Claim {
                member: A,
                nick: "ann".into(),
                key: key.clone()
            }]
        );
        let out = chat.input(B, b"/nick Ann\n", &now());
        assert!(
            matches!(&out[..], [Delivery::Send { bytes, .. }] if bytes.starts_with(b"*** error: nick \"Ann\" is being taken")),
            "{out:?}"
        );
        let out = chat.nick_claimed(A, &key, Ok(()));
        assert!(published(&out).contains(&(
            Kind::Notice,
            String::new(),
            "127.0.0.1:5001 is now ann".into()
        )));
        assert_eq!(chat.held_nicks(), [(key.clone(), A)]);
        let out = chat.disconnect(A, &now());
        assert!(
            matches!(&out[0], Delivery::Release { key: released, member: A } if *released == key),
            "released before the room hears it left: {out:?}"
        );
        let out = chat.input(B, b"/nick bob\n", &now());
        assert!(
            matches!(&out[..], [Delivery::Claim { member: B, .. }]),
            "{out:?}"
        );
        let out = chat.nick_claimed(B, &nicks::key("bob"), Err("taken elsewhere".into()));
        assert!(
            matches!(&out[..], [Delivery::Send { bytes, .. }] if &bytes[..] == b"*** error: taken elsewhere\n"),
            "{out:?}"
        );
    }

    #[test]
    fn remote_messages_reach_the_room_neutralised_and_cut() {
        let chat = chat();
        let message = Message {
            origin: Origin {
                node: "b".into(),
                inc: 1,
            },
            room: "lobby".into(),
            run: 1,
            seq: 1,
            kind: Kind::Say,
            from: "carol".into(),
            time: 0,
            text: "a\x1b[2Jbcdefghijk".into(),
        };
        let out = chat.remote(&message, &now());
        assert_eq!(
            out,
            [Delivery::Send {
                to: vec![A, B],
                bytes: b"carol: abcdefgh\n"[..].into()
            }]
        );
        let elsewhere = Message {
            room: "dev".into(),
            ..message
        };
        assert!(chat.remote(&elsewhere, &now()).is_empty());
    }

    #[test]
    fn rooms_and_who_tell_here_from_elsewhere_and_the_link() {
        let mut chat = chat();
        let mut rooms = BTreeMap::new();
        rooms.insert("lobby".to_string(), vec!["carol".to_string()]);
        rooms.insert(
            "dev".to_string(),
            vec!["dan".to_string(), "eve".to_string()],
        );
        chat.set_remote(RemoteView {
            link_up: true,
            rooms,
        });
        let text = |bytes: Bytes| String::from_utf8(bytes.to_vec()).unwrap();
        assert_eq!(
            text(chat.rooms_notice()),
            "*** rooms: dev (2 elsewhere), lobby (2 here, 1 elsewhere); cluster link up\n"
        );
        chat.set_link_up(false);
        assert_eq!(
            text(chat.who_notice(A)),
            "*** in lobby: 127.0.0.1:5001, 127.0.0.1:5002 (here); carol (elsewhere); \
             cluster link down (other instances as last heard)\n"
        );
    }
}
