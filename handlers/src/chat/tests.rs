//! The chat handler over in-memory requests (its threads, without sockets), and its registry row.

use super::*;
use crate::testing;

fn member(options: &str) -> Box<dyn RequestHandler> {
    testing::factory(build, options).unwrap().new_handler()
}

fn served(options: &str, chunks: &[&[u8]]) -> String {
    let writes = testing::stream(&mut *member(options), chunks);
    String::from_utf8(writes.joined()).unwrap()
}

#[test]
fn a_lone_member_is_greeted_answered_and_let_go() {
    let got = served("", &[b"/nick solo\n", b"/who\nquit\n", b"never read\n"]);
    assert_eq!(
        got,
        "*** welcome 127.0.0.1:40000, you are in room lobby; /help lists the commands\n\
         *** you are now solo\n\
         *** in lobby: solo\n\
         *** bye\n"
    );
}

#[test]
fn echo_returns_a_raw_client_s_messages() {
    let got = served("echo = true\nprefix = '{from}> '", &[b"hi", b"there"]);
    let lines: Vec<&str> = got.lines().skip(1).collect();
    assert_eq!(lines, ["127.0.0.1:40000> hi", "127.0.0.1:40000> there"]);
}

#[test]
fn a_member_that_just_closes_leaves_quietly() {
    let got = served("", &[]);
    assert!(got.starts_with("*** welcome"), "{got}");
    assert_eq!(got.lines().count(), 1);
}

#[test]
fn every_member_of_a_server_shares_one_chat() {
    let factory = testing::factory(build, "max_members = 1").unwrap();
    // Sequential members: each leaves before the next arrives, so the limit of one never refuses.
    for _ in 0..3 {
        let got = testing::stream(&mut *factory.new_handler(), &[b"/rooms\n"]).joined();
        assert!(String::from_utf8(got)
            .unwrap()
            .contains("*** rooms: lobby (1)\n"));
    }
}

#[test]
fn bad_options_are_refused_by_name() {
    let err = testing::factory(build, "overflow = 'block'").err().unwrap();
    assert!(err.contains("\"overflow\""), "{err}");
}

#[test]
fn the_registry_row_refuses_forking_and_sync_with_a_note() {
    use sockserv_framework::StrategyKind;
    let row = crate::BUILTINS.iter().find(|b| b.name == "chat").unwrap();
    assert_eq!(
        row.strategies,
        [
            StrategyKind::Threading,
            StrategyKind::Pool,
            StrategyKind::Reactor
        ]
    );
    for refused in ["forking", "sync"] {
        assert!(STRATEGY_NOTE.contains(refused), "{refused}");
    }
    assert_eq!(row.strategy_note, Some(STRATEGY_NOTE));
    assert!(row.socket_kinds.iter().all(|kind| kind.is_stream()));
}
