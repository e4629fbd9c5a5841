//! The chat core driven directly: no sockets, no threads, the clock pinned.

use chrono::TimeZone;

use super::*;

const A: MemberId = 1;
const B: MemberId = 2;
const C: MemberId = 3;

fn now() -> DateTime<FixedOffset> {
    FixedOffset::east_opt(0)
        .unwrap()
        .with_ymd_and_hms(2024, 1, 2, 3, 4, 5)
        .unwrap()
}

fn peer(id: MemberId) -> Address {
    Address::Inet(format!("127.0.0.1:{}", 5000 + id).parse().unwrap())
}

fn chat_with(options: &str) -> Chat {
    let options = ChatOptions::from_table(&options.parse().unwrap()).unwrap();
    Chat::new(Arc::new(options))
}

/// A chat with `ids` connected, their greetings and join notices already taken.
fn chat_of(options: &str, ids: &[MemberId]) -> Chat {
    let mut chat = chat_with(options);
    for &id in ids {
        let _greetings_and_notices = chat.connect(id, &peer(id), None, &now());
    }
    chat
}

/// What each member would receive, in order, as text.
fn inbox(deliveries: &[Delivery], id: MemberId) -> Vec<String> {
    deliveries
        .iter()
        .filter_map(|delivery| match delivery {
            Delivery::Send { to, bytes } if to.contains(&id) => {
                Some(String::from_utf8(bytes.to_vec()).unwrap())
            }
            _ => None,
        })
        .collect()
}

fn closes(deliveries: &[Delivery]) -> Vec<(MemberId, bool)> {
    deliveries
        .iter()
        .filter_map(|delivery| match delivery {
            Delivery::Close { member, drain } => Some((*member, *drain)),
            _ => None,
        })
        .collect()
}

fn say(chat: &mut Chat, id: MemberId, text: &str) -> Vec<Delivery> {
    chat.input(id, text.as_bytes(), &now())
}

#[test]
fn a_newcomer_is_greeted_and_announced() {
    let mut chat = chat_of("", &[A]);
    let out = chat.connect(B, &peer(B), None, &now());
    assert_eq!(
        inbox(&out, B),
        ["*** welcome 127.0.0.1:5002, you are in room lobby; /help lists the commands\n"]
    );
    assert_eq!(inbox(&out, A), ["*** 127.0.0.1:5002 joined lobby\n"]);
    assert_eq!(chat.len(), 2);
}

#[test]
fn a_message_reaches_the_others_with_the_tutorial_s_prefix() {
    let mut chat = chat_of("", &[A, B, C]);
    let out = say(&mut chat, A, "hello\n");
    let line = "0102 03:04:05 From 127.0.0.1:5001. msg=hello\n";
    assert_eq!(inbox(&out, B), [line]);
    assert_eq!(inbox(&out, C), [line]);
    assert!(inbox(&out, A).is_empty());
    // One delivery for the whole room: the bytes are built once.
    assert_eq!(out.len(), 1);
}

#[test]
fn echo_sends_a_member_its_own_messages() {
    let mut chat = chat_of("echo = true", &[A, B]);
    let out = say(&mut chat, A, "hi\n/me waves\n");
    let expected = [
        "0102 03:04:05 From 127.0.0.1:5001. msg=hi\n",
        "* 127.0.0.1:5001 waves\n",
    ];
    assert_eq!(inbox(&out, A), expected);
    assert_eq!(inbox(&out, B), expected);
}

#[test]
fn raw_and_line_clients_share_a_room() {
    let mut chat = chat_of("", &[A, B]);
    // A is the tutorial's client: bare text, one message per read.
    assert_eq!(inbox(&say(&mut chat, A, "hi there"), B).len(), 1);
    // B is nc: lines, possibly split over reads.
    assert!(say(&mut chat, B, "one\r\ntw").len() == 1);
    let out = say(&mut chat, B, "o\n");
    assert_eq!(
        inbox(&out, A),
        ["0102 03:04:05 From 127.0.0.1:5002. msg=two\n"]
    );
}

#[test]
fn nicks_replace_the_address_and_are_unique() {
    let mut chat = chat_of("", &[A, B]);
    let out = say(&mut chat, A, "/nick Alice\n");
    assert_eq!(inbox(&out, A), ["*** you are now Alice\n"]);
    assert_eq!(inbox(&out, B), ["*** 127.0.0.1:5001 is now Alice\n"]);
    let out = say(&mut chat, B, "/nick alice\n");
    assert_eq!(
        inbox(&out, B),
        ["*** error: nick \"alice\" is taken: it looks like \"Alice\", which is in use\n"]
    );
    let out = say(&mut chat, A, "/nick Alice\n/nick alice\nhey\n");
    assert_eq!(
        inbox(&out, A),
        [
            "*** error: you are already Alice\n",
            "*** you are now alice\n"
        ]
    );
    assert_eq!(
        inbox(&out, B),
        [
            "*** Alice is now alice\n",
            "0102 03:04:05 From alice. msg=hey\n"
        ]
    );
    let out = say(&mut chat, B, "/nick a:b\n");
    assert!(inbox(&out, B)[0].starts_with("*** error: nick \"a:b\" is not valid"));
}

#[test]
fn a_nick_is_freed_when_its_member_leaves() {
    let mut chat = chat_of("", &[A, B]);
    say(&mut chat, A, "/nick bob\n");
    let _goodbyes = chat.disconnect(A, &now());
    let out = say(&mut chat, B, "/nick bob\n");
    assert_eq!(inbox(&out, B), ["*** you are now bob\n"]);
}

#[test]
fn rooms_keep_their_messages_to_themselves() {
    let mut chat = chat_of("", &[A, B, C]);
    let out = say(&mut chat, C, "/join dev\n");
    assert_eq!(inbox(&out, C), ["*** you are now in room dev\n"]);
    assert_eq!(inbox(&out, A), ["*** 127.0.0.1:5003 left lobby\n"]);
    let out = say(&mut chat, A, "/join dev\n");
    assert_eq!(inbox(&out, C), ["*** 127.0.0.1:5001 joined dev\n"]);
    assert_eq!(inbox(&out, B), ["*** 127.0.0.1:5001 left lobby\n"]);
    let out = say(&mut chat, C, "in dev\n");
    assert_eq!(inbox(&out, A).len(), 1);
    assert!(inbox(&out, B).is_empty());
    let out = say(&mut chat, B, "in lobby\n");
    assert!(inbox(&out, A).is_empty() && inbox(&out, C).is_empty());
    let out = say(&mut chat, A, "/join dev\n");
    assert_eq!(inbox(&out, A), ["*** error: you are already in dev\n"]);
}

#[test]
fn rooms_and_who_list_in_one_line() {
    let mut chat = chat_of("", &[A, B, C]);
    say(&mut chat, B, "/nick bob\n");
    say(&mut chat, C, "/join dev\n");
    let out = say(&mut chat, A, "/rooms\n/who\n");
    assert_eq!(
        inbox(&out, A),
        [
            "*** rooms: dev (1), lobby (2)\n",
            "*** in lobby: 127.0.0.1:5001, bob\n"
        ]
    );
    say(&mut chat, C, "/join lobby\n");
    let out = say(&mut chat, A, "/rooms\n");
    assert_eq!(inbox(&out, A), ["*** rooms: lobby (3)\n"]);
}

#[test]
fn help_and_bad_commands_answer_in_one_line() {
    let mut chat = chat_of("", &[A, B]);
    let out = say(&mut chat, A, "/help\n/dance\n/join\n//slash\n\n   \n");
    let got = inbox(&out, A);
    assert_eq!(got.len(), 3, "{got:?}");
    assert!(got[0].starts_with("*** commands: /nick NAME, /join ROOM"));
    assert_eq!(
        got[1],
        "*** error: unknown command /dance (/help lists the commands)\n"
    );
    assert_eq!(got[2], "*** error: usage: /join ROOM\n");
    assert!(got.iter().all(|line| line.matches('\n').count() == 1));
    assert_eq!(
        inbox(&out, B),
        ["0102 03:04:05 From 127.0.0.1:5001. msg=/slash\n"]
    );
}

#[test]
fn quit_and_bare_quit_leave_after_a_goodbye() {
    for word in ["/quit\n", "quit", "quit\r\n"] {
        let mut chat = chat_of("", &[A, B]);
        let out = say(&mut chat, A, word);
        assert_eq!(inbox(&out, A), ["*** bye\n"], "{word:?}");
        assert_eq!(inbox(&out, B), ["*** 127.0.0.1:5001 left lobby\n"]);
        assert_eq!(closes(&out), [(A, true)]);
        assert!(!chat.is_member(A));
        assert!(say(&mut chat, A, "ghost\n").is_empty());
    }
}

#[test]
fn lines_after_quit_in_the_same_read_are_ignored() {
    let mut chat = chat_of("", &[A, B]);
    let out = say(&mut chat, A, "quit\nnever sent\n");
    assert_eq!(inbox(&out, B), ["*** 127.0.0.1:5001 left lobby\n"]);
}

#[test]
fn a_closed_connection_sends_its_partial_line_then_leaves() {
    let mut chat = chat_of("", &[A, B]);
    say(&mut chat, A, "line\n");
    assert!(say(&mut chat, A, "partial").is_empty());
    let out = chat.disconnect(A, &now());
    assert_eq!(
        inbox(&out, B),
        [
            "0102 03:04:05 From 127.0.0.1:5001. msg=partial\n",
            "*** 127.0.0.1:5001 left lobby\n"
        ]
    );
    assert_eq!(closes(&out), [(A, true)]);
    assert!(chat.disconnect(A, &now()).is_empty());
}

#[test]
fn a_kicked_member_is_closed_at_once_and_the_room_told_why() {
    let mut chat = chat_of("", &[A, B, C]);
    say(&mut chat, A, "/nick slow\n");
    let out = chat.kick(A, &now());
    assert!(inbox(&out, A).is_empty());
    assert_eq!(
        inbox(&out, B),
        ["*** slow was disconnected: too slow to keep up\n"]
    );
    assert_eq!(closes(&out), [(A, false)]);
    assert_eq!(chat.len(), 2);
    assert!(chat.kick(A, &now()).is_empty());
}

#[test]
fn a_full_chat_refuses_newcomers_politely() {
    let mut chat = chat_of("max_members = 2", &[A, B]);
    let out = chat.connect(C, &peer(C), None, &now());
    assert_eq!(
        inbox(&out, C),
        ["*** error: the chat is full (2 members); try again later\n"]
    );
    assert!(inbox(&out, A).is_empty());
    assert_eq!(closes(&out), [(C, true)]);
    assert_eq!(chat.len(), 2);
    let _goodbyes = chat.disconnect(A, &now());
    assert_eq!(inbox(&chat.connect(C, &peer(C), None, &now()), C).len(), 1);
}

#[test]
fn long_lines_are_cut_with_a_notice() {
    let mut chat = chat_of("max_line = 8", &[A, B]);
    let out = say(&mut chat, A, "0123456789abcdef\nok\n");
    assert_eq!(
        inbox(&out, A),
        ["*** error: message longer than 8 bytes: cut\n"]
    );
    assert_eq!(
        inbox(&out, B),
        [
            "0102 03:04:05 From 127.0.0.1:5001. msg=01234567\n",
            "0102 03:04:05 From 127.0.0.1:5001. msg=ok\n"
        ]
    );
}

#[test]
fn invalid_utf8_is_replaced_and_a_cut_character_dropped() {
    let mut chat = chat_of("max_line = 4", &[A, B]);
    let out = chat.input(A, b"a\xffb\n", &now());
    assert_eq!(
        inbox(&out, B),
        ["0102 03:04:05 From 127.0.0.1:5001. msg=a\u{fffd}b\n"]
    );
    // "abcé" is 5 bytes: the cut falls inside "é", which goes rather than turn into U+FFFD.
    let out = chat.input(A, "abcé\n".as_bytes(), &now());
    assert_eq!(
        inbox(&out, B),
        ["0102 03:04:05 From 127.0.0.1:5001. msg=abc\n"]
    );
}

#[test]
fn unix_members_are_told_apart_by_their_id() {
    let mut chat = chat_of("", &[A]);
    let out = chat.connect(9, &Address::UnixUnnamed, None, &now());
    assert_eq!(inbox(&out, A), ["*** unix:unnamed#9 joined lobby\n"]);
}

#[test]
fn options_set_the_room_and_the_prefix() {
    let mut chat = chat_of("room = 'hall'\nprefix = '<{from}> '", &[A, B]);
    let out = say(&mut chat, A, "/nick ann\nhi\n/who\n");
    assert_eq!(inbox(&out, B)[1], "<ann> hi\n");
    assert_eq!(inbox(&out, A)[1], "*** in hall: ann, 127.0.0.1:5002\n");
}

#[test]
fn a_nick_that_passes_for_one_in_use_is_refused() {
    let mut chat = chat_of("", &[A, B]);
    say(&mut chat, A, "/nick ann\n");
    for (look_alike, what) in [
        ("\u{ff41}nn", "fullwidth a"),
        ("\u{430}nn", "Cyrillic a"),
        ("ANN", "capitals"),
    ] {
        let out = say(&mut chat, B, &format!("/nick {look_alike}\n"));
        assert_eq!(
            inbox(&out, B),
            [format!("*** error: nick \"{look_alike}\" is taken: it looks like \"ann\", which is in use\n")],
            "{what}"
        );
    }
    let out = say(&mut chat, B, "/nick anne\n");
    assert_eq!(inbox(&out, B), ["*** you are now anne\n"]);
}

#[test]
fn a_nick_with_a_control_character_is_refused_and_not_echoed_raw() {
    let mut chat = chat_of("", &[A, B]);
    let out = say(&mut chat, A, "/nick ann\x1b[31m\n/join x\x07\n");
    let got = inbox(&out, A);
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(
        got[0].starts_with("*** error: a nick may not hold control characters (it held U+001B)")
    );
    assert!(
        got[1].starts_with("*** error: a room may not hold control characters (it held U+0007)")
    );
    assert!(inbox(&out, B).is_empty());
}

#[test]
fn what_members_relay_carries_no_control_character() {
    let mut chat = chat_of("", &[A, B]);
    let forged = "hi\r*** 127.0.0.1:5002 left lobby                              \n";
    let out = say(&mut chat, A, forged);
    assert_eq!(
        inbox(&out, B),
        ["0102 03:04:05 From 127.0.0.1:5001. msg=hi\u{fffd}*** 127.0.0.1:5002 left lobby                              \n"]
    );
    let out = say(
        &mut chat,
        A,
        "\x1b[2J\x1b]0;pwned\x07/me \x1b[5mblinks\n/me \x1b[5mblinks\n/fr\x1bcob\n",
    );
    let got = inbox(&out, B);
    assert_eq!(
        got[0],
        "0102 03:04:05 From 127.0.0.1:5001. msg=/me blinks\n"
    );
    assert_eq!(got[1], "* 127.0.0.1:5001 blinks\n");
    assert_eq!(
        inbox(&out, A),
        ["*** error: unknown command /frob (/help lists the commands)\n"]
    );
}

#[test]
fn a_certificate_name_is_the_first_nick_when_it_may_be_one() {
    let mut chat = chat_of("", &[A]);
    let out = chat.connect(B, &peer(B), Some("alice"), &now());
    assert_eq!(
        inbox(&out, B),
        ["*** welcome alice, you are in room lobby; /help lists the commands\n"]
    );
    assert_eq!(inbox(&out, A), ["*** alice joined lobby\n"]);
    // Taken, or not a nick at all: told why, and known by address.
    let out = chat.connect(C, &peer(C), Some("ALICE"), &now());
    let told = inbox(&out, C);
    assert!(
        told[0].starts_with("*** error: your certificate's name cannot be your nick"),
        "{told:?}"
    );
    assert!(
        told[1].starts_with("*** welcome 127.0.0.1:5003"),
        "{told:?}"
    );
    let out = chat.connect(9, &peer(9), Some("two words"), &now());
    assert!(inbox(&out, 9)[0].contains("cannot be your nick"));
}
