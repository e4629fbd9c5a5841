//! The chat itself, sans-IO: members, rooms, nicks and commands as a state machine. Bytes and the time
//! go in (`connect`, `input`, `disconnect`, `kick`), [`Delivery`] values come out; it never touches a
//! socket, a thread or the clock, so tests drive it directly and any strategy can wrap it — a thread
//! per connection today, an event loop later.
//!
//! The caller keeps one promise: it delivers every [`Delivery`] in the order returned, and stops
//! sending to a member once told to close it.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use chrono::{DateTime, FixedOffset};
use sockserv_plugin::Address;

use super::command::{self, Command, HELP};
use super::format::{self, Bytes};
use super::lines::{Line, LineAssembler};
use super::nicks;
use super::options::ChatOptions;

pub use super::cluster::wire::Kind;
pub use cluster::RemoteView;

/// Names a member; the caller picks it (a connection counter, an event loop's token) and never
/// reuses one while the member is connected.
pub type MemberId = u64;

/// What the caller must do for the chat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// Queue `bytes` (whole lines) for each of `to`.
    Send {
        /// The members to queue it for, in the order they joined their room.
        to: Vec<MemberId>,
        /// One or more whole lines, each ending in `\n`.
        bytes: Bytes,
    },
    /// The member has left the chat: send it nothing more, and close its connection — after writing
    /// what is already queued when `drain`, at once otherwise.
    Close {
        /// The member that left.
        member: MemberId,
        /// Write what is queued first (it quit, or its peer closed) rather than drop it (too slow).
        drain: bool,
    },
    /// In a cluster: tell the other instances (only with the `cluster` option).
    Publish(Outgoing),
    /// In a cluster: claim the nick's key for `member` across instances, then answer
    /// [`Chat::nick_claimed`] (only with the `cluster` option).
    Claim {
        member: MemberId,
        nick: String,
        /// Its [`nicks::key`].
        key: String,
    },
    /// In a cluster: the nick's key is free again.
    Release {
        /// The [`nicks::key`] `member` held.
        key: String,
        member: MemberId,
    },
}

/// What a cluster's other instances are told of one event here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    pub room: String,
    pub kind: Kind,
    /// The sender's name; empty for a notice.
    pub from: String,
    pub text: String,
}

/// What one read did: the deliveries, and how much of the read the chat took.
#[must_use = "carry out every Delivery, in order, and keep the bytes not taken for later"]
#[derive(Debug, Default)]
pub struct Input {
    pub deliveries: Vec<Delivery>,
    /// Bytes of the read taken; the rest waits for the member to have messages to spend.
    pub taken: usize,
    /// Messages the read made (each costs the member one of its rate's tokens).
    pub messages: usize,
}

/// One connected member.
#[derive(Debug)]
struct Member {
    /// How it is known until it picks a nick: `ip:port`, or the Unix peer and its id.
    address: String,
    nick: Option<String>,
    room: String,
    lines: LineAssembler,
}

impl Member {
    fn name(&self) -> &str {
        self.nick.as_deref().unwrap_or(&self.address)
    }
}

/// Why a member leaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Leaving {
    /// It said `/quit` or `quit`.
    Quit,
    /// Its connection ended.
    Closed,
    /// Its queue stayed full without progress (see the outbox).
    TooSlow,
}

/// Every member and room of one chat server.
#[derive(Debug)]
pub struct Chat {
    options: Arc<ChatOptions>,
    members: HashMap<MemberId, Member>,
    /// Each room's members in the order they joined; a room exists while it has members.
    rooms: BTreeMap<String, Vec<MemberId>>,
    /// Nicks in use by their [`nicks::key`], so that `Bob`, `bob`, `ｂob` and `bоb` (Cyrillic o)
    /// cannot all be taken.
    nicks: HashMap<String, MemberId>,
    /// In a cluster: nicks being claimed across instances, by key: who asked, and the nick.
    claims: HashMap<String, (MemberId, String)>,
    /// In a cluster: what the other instances hold, as last heard.
    remote: Option<RemoteView>,
    /// Counts the times a room opened or closed here.
    rooms_changed: u64,
}

/// The deliveries of one step, in order.
#[derive(Debug, Default)]
struct Out(Vec<Delivery>);

impl Out {
    fn send(&mut self, to: Vec<MemberId>, bytes: Bytes) {
        if !to.is_empty() {
            self.0.push(Delivery::Send { to, bytes });
        }
    }

    fn reply(&mut self, to: MemberId, bytes: Bytes) {
        self.send(vec![to], bytes);
    }
}

impl Chat {
    pub fn new(options: Arc<ChatOptions>) -> Chat {
        Chat {
            members: HashMap::new(),
            remote: options.cluster.as_ref().map(|_| RemoteView::default()),
            options,
            rooms: BTreeMap::new(),
            nicks: HashMap::new(),
            claims: HashMap::new(),
            rooms_changed: 0,
        }
    }

    /// Members connected now.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    pub fn is_member(&self, id: MemberId) -> bool {
        self.members.contains_key(&id)
    }

    /// A new connection from `peer`: greet it and tell its room — or, when the chat is full, tell it
    /// so and close it. `nick`: the nick it starts with (its certificate's name), if it is a
    /// valid nick no one holds; otherwise the member is told why and starts without one.
    #[must_use = "carry out every Delivery, in order (see the module doc)"]
    pub fn connect(
        &mut self,
        id: MemberId,
        peer: &Address,
        nick: Option<&str>,
        _now: &DateTime<FixedOffset>,
    ) -> Vec<Delivery> {
        debug_assert!(!self.is_member(id), "member id {id} reused");
        let mut out = Out::default();
        if self.is_member(id) {
            return out.0;
        }
        if self.members.len() >= self.options.max_members {
            let max = self.options.max_members;
            out.reply(
                id,
                format::error(format_args!(
                    "the chat is full ({max} members); try again later"
                )),
            );
            out.0.push(Delivery::Close {
                member: id,
                drain: true,
            });
            return out.0;
        }
        let address = match peer.inet() {
            Some(addr) => addr.to_string(),
            None => format!("{peer}#{id}"),
        };
        let member = Member {
            address,
            nick: None,
            room: self.options.room.clone(),
            lines: LineAssembler::new(self.options.max_line),
        };
        self.members.insert(id, member);
        if let Some(nick) = nick {
            self.first_nick(id, nick, &mut out);
        }
        let member = &self.members[&id];
        let (name, room) = (member.name().to_string(), member.room.clone());
        out.reply(
            id,
            format::notice(format_args!(
                "welcome {name}, you are in room {room}; /help lists the commands"
            )),
        );
        self.enter(id, &room, &mut out);
        out.0
    }

    /// The bytes of one read from the member's connection.
    #[must_use = "carry out every Delivery, in order (see the module doc)"]
    pub fn input(
        &mut self,
        id: MemberId,
        bytes: &[u8],
        now: &DateTime<FixedOffset>,
    ) -> Vec<Delivery> {
        self.input_up_to(id, bytes, usize::MAX, now).deliveries
    }

    /// The bytes of one read, up to the end of its `max`-th message (see
    /// [`LineAssembler::push_up_to`]): a member out of its rate's tokens sends no more for now.
    pub fn input_up_to(
        &mut self,
        id: MemberId,
        bytes: &[u8],
        max: usize,
        now: &DateTime<FixedOffset>,
    ) -> Input {
        let mut lines = Vec::new();
        let taken = match self.members.get_mut(&id) {
            Some(member) => member.lines.push_up_to(bytes, max, |line| lines.push(line)),
            None => return Input::default(),
        };
        let messages = lines.len();
        Input {
            deliveries: self.handle_lines(id, lines, now),
            taken,
            messages,
        }
    }

    /// The member's connection ended (or failed): a partial line it left is its last message, then
    /// it leaves. Nothing happens for a member that already left.
    #[must_use = "carry out every Delivery, in order (see the module doc)"]
    pub fn disconnect(&mut self, id: MemberId, now: &DateTime<FixedOffset>) -> Vec<Delivery> {
        let mut lines = Vec::new();
        match self.members.get_mut(&id) {
            Some(member) => member.lines.finish(|line| lines.push(line)),
            None => return Vec::new(),
        }
        let mut out = Out(self.handle_lines(id, lines, now));
        self.leave(id, Leaving::Closed, &mut out);
        out.0
    }

    /// The member's outbox overflowed: drop it at once and tell its room why.
    #[must_use = "carry out every Delivery, in order (see the module doc)"]
    pub fn kick(&mut self, id: MemberId, _now: &DateTime<FixedOffset>) -> Vec<Delivery> {
        let mut out = Out::default();
        self.leave(id, Leaving::TooSlow, &mut out);
        out.0
    }

    fn handle_lines(
        &mut self,
        id: MemberId,
        lines: Vec<Line>,
        now: &DateTime<FixedOffset>,
    ) -> Vec<Delivery> {
        let mut out = Out::default();
        for line in lines {
            if !self.is_member(id) {
                break; // it quit earlier in this read
            }
            self.handle_line(id, line, now, &mut out);
        }
        out.0
    }

    fn handle_line(
        &mut self,
        id: MemberId,
        line: Line,
        now: &DateTime<FixedOffset>,
        out: &mut Out,
    ) {
        if line.cut {
            let max = self.options.max_line;
            out.reply(
                id,
                format::error(format_args!("message longer than {max} bytes: cut")),
            );
        }
        let text = decode(&line);
        match command::parse(&text) {
            Command::Say(text) => {
                self.say(id, &self.message(id, text, now), out);
                self.share_said(id, Kind::Say, text, out);
            }
            Command::Me(action) => {
                self.say(id, &format::action(self.name(id), action), out);
                self.share_said(id, Kind::Me, action, out);
            }
            Command::Nick(nick) => self.nick(id, nick, out),
            Command::Join(room) => self.join(id, room, out),
            Command::Rooms => out.reply(id, self.rooms_notice()),
            Command::Who => out.reply(id, self.who_notice(id)),
            Command::Help => out.reply(id, format::notice(HELP)),
            Command::Quit => {
                out.reply(id, format::notice("bye"));
                self.leave(id, Leaving::Quit, out);
            }
            Command::Empty => {}
            Command::Bad(why) => out.reply(id, format::error(why)),
        }
    }

    fn message(&self, id: MemberId, text: &str, now: &DateTime<FixedOffset>) -> Bytes {
        self.options.prefix.message(now, self.name(id), text)
    }

    /// `bytes` to the member's room: to the others, and to itself too with the `echo` option.
    fn say(&self, id: MemberId, bytes: &Bytes, out: &mut Out) {
        let echo = self.options.echo;
        let room = &self.members[&id].room;
        let to = self.rooms[room]
            .iter()
            .copied()
            .filter(|&other| echo || other != id)
            .collect();
        out.send(to, bytes.clone());
    }

    /// A new member's nick from its certificate, when it is one it may have.
    fn first_nick(&mut self, id: MemberId, nick: &str, out: &mut Out) {
        let why = match command::check_name("nick", nick) {
            Err(why) => why.to_string(),
            // In a cluster the nick is claimed across instances at the next heartbeat; should
            // another instance hold it, the member is told and known by its address again.
            Ok(()) => match self.nicks.get(&nicks::key(nick)).or_else(|| {
                let claim = self.claims.get(&nicks::key(nick));
                claim.map(|(owner, _)| owner)
            }) {
                Some(&owner) => self.taken(nick, owner),
                None => {
                    self.nicks.insert(nicks::key(nick), id);
                    let member = self.members.get_mut(&id).expect("a member");
                    member.nick = Some(nick.to_string());
                    return;
                }
            },
        };
        out.reply(
            id,
            format::error(format_args!(
                "your certificate's name cannot be your nick: {why}"
            )),
        );
    }

    fn nick(&mut self, id: MemberId, nick: &str, out: &mut Out) {
        if let Err(why) = command::check_name("nick", nick) {
            return out.reply(id, format::error(why));
        }
        let key = nicks::key(nick);
        if let Some(&owner) = self.nicks.get(&key) {
            if owner != id {
                return out.reply(id, format::error(self.taken(nick, owner)));
            }
            if self.name(id) == nick {
                return out.reply(id, format::error(format_args!("you are already {nick}")));
            }
        }
        if self.remote.is_some() && self.nicks.get(&key) != Some(&id) {
            return self.claim(id, nick, key, out);
        }
        self.rename(id, nick, key, out);
    }

    /// Gives `id` the nick `nick` (of key `key`), tells it and its room; the old nick's key is
    /// freed.
    fn rename(&mut self, id: MemberId, nick: &str, key: String, out: &mut Out) {
        let old_name = self.name(id).to_string();
        let member = self.members.get_mut(&id).expect("a member");
        let old = member.nick.replace(nick.to_string());
        let room = member.room.clone();
        if let Some(old_key) = old.map(|old| nicks::key(&old)).filter(|old| *old != key) {
            self.free_nick(id, old_key, out);
        }
        self.nicks.insert(key, id);
        out.reply(id, format::notice(format_args!("you are now {nick}")));
        let others = self.others(&room, id);
        let text = format!("{old_name} is now {nick}");
        self.share_notice(&room, &text, out);
        out.send(others, format::notice(text));
    }

    /// `key` is no longer `id`'s: here, and across the cluster.
    fn free_nick(&mut self, id: MemberId, key: String, out: &mut Out) {
        self.nicks.remove(&key);
        if self.remote.is_some() {
            out.0.push(Delivery::Release { key, member: id });
        }
    }

    /// Why `nick` cannot be had: `owner` has it, or one that passes for it.
    fn taken(&self, nick: &str, owner: MemberId) -> String {
        match self.name(owner) {
            held if held == nick => format!("nick {nick:?} is taken"),
            held => format!("nick {nick:?} is taken: it looks like {held:?}, which is in use"),
        }
    }

    fn join(&mut self, id: MemberId, room: &str, out: &mut Out) {
        if let Err(why) = command::check_name("room", room) {
            return out.reply(id, format::error(why));
        }
        if self.members[&id].room == room {
            return out.reply(id, format::error(format_args!("you are already in {room}")));
        }
        self.exit_room(id, out);
        self.members.get_mut(&id).expect("a member").room = room.to_string();
        out.reply(
            id,
            format::notice(format_args!("you are now in room {room}")),
        );
        self.enter(id, room, out);
    }

    fn local_rooms(&self) -> Bytes {
        let list: Vec<String> = self
            .rooms
            .iter()
            .map(|(room, members)| format!("{room} ({})", members.len()))
            .collect();
        format::notice(format_args!("rooms: {}", list.join(", ")))
    }

    fn local_who(&self, id: MemberId) -> Bytes {
        let room = &self.members[&id].room;
        let names: Vec<&str> = self.rooms[room].iter().map(|&m| self.name(m)).collect();
        format::notice(format_args!("in {room}: {}", names.join(", ")))
    }

    /// Adds the member to `room` (its `room` field already says so) and tells the others.
    fn enter(&mut self, id: MemberId, room: &str, out: &mut Out) {
        let others = self.others(room, id);
        let text = format!("{} joined {room}", self.name(id));
        if !self.rooms.contains_key(room) {
            self.rooms_changed += 1;
        }
        self.rooms.entry(room.to_string()).or_default().push(id);
        self.share_notice(room, &text, out);
        out.send(others, format::notice(text));
    }

    /// Takes the member out of its room, telling the others; a room left empty goes.
    fn exit_room(&mut self, id: MemberId, out: &mut Out) {
        let room = self.members[&id].room.clone();
        let text = format!("{} left {room}", self.name(id));
        self.remove_from_room(id, &room);
        self.share_notice(&room, &text, out);
        out.send(self.others(&room, id), format::notice(text));
    }

    fn remove_from_room(&mut self, id: MemberId, room: &str) {
        if let Some(members) = self.rooms.get_mut(room) {
            members.retain(|&m| m != id);
            if members.is_empty() {
                self.rooms.remove(room);
                self.rooms_changed += 1;
            }
        }
    }

    /// The member leaves the chat: its room is told, its nick is freed, its connection closes.
    fn leave(&mut self, id: MemberId, why: Leaving, out: &mut Out) {
        if !self.is_member(id) {
            return;
        }
        // The nick is free before anyone hears that its holder left.
        if let Some(nick) = &self.members[&id].nick {
            let key = nicks::key(nick);
            self.free_nick(id, key, out);
        }
        let reason = match why {
            Leaving::Quit | Leaving::Closed => None,
            Leaving::TooSlow => Some("too slow to keep up"),
        };
        match reason {
            None => self.exit_room(id, out),
            Some(reason) => {
                let room = self.members[&id].room.clone();
                let text = format!("{} was disconnected: {reason}", self.name(id));
                self.remove_from_room(id, &room);
                self.share_notice(&room, &text, out);
                out.send(self.others(&room, id), format::notice(text));
            }
        }
        self.members.remove(&id);
        out.0.push(Delivery::Close {
            member: id,
            drain: why != Leaving::TooSlow,
        });
    }

    /// The members of `room` but `id`, in the order they joined.
    fn others(&self, room: &str, id: MemberId) -> Vec<MemberId> {
        self.rooms.get(room).map_or_else(Vec::new, |members| {
            members.iter().copied().filter(|&m| m != id).collect()
        })
    }

    fn name(&self, id: MemberId) -> &str {
        self.members[&id].name()
    }
}

/// A message as text: invalid UTF-8 becomes U+FFFD, except that a character a cut split in two is
/// dropped rather than mangled.
fn decode(line: &Line) -> String {
    let mut bytes = &line.bytes[..];
    if line.cut {
        if let Err(err) = std::str::from_utf8(bytes) {
            if err.error_len().is_none() {
                bytes = &bytes[..err.valid_up_to()];
            }
        }
    }
    String::from_utf8_lossy(bytes).into_owned()
}

mod cluster;

#[cfg(test)]
mod tests;
