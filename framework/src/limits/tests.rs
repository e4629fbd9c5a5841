use super::*;

fn ip(text: &str) -> Peer {
    let address = Address::Inet(std::net::SocketAddr::new(text.parse().unwrap(), 1));
    Peer::of(&address, None)
}

fn limits() -> Limits {
    Limits::none()
}

#[test]
fn max_connections_refuses_one_more_and_a_dropped_ticket_makes_room() {
    let gate = Gate::new(Limits {
        max_connections: Some(2),
        ..limits()
    });
    let now = Instant::now();
    let a = gate.admit(ip("10.0.0.1"), now).unwrap();
    let _b = gate.admit(ip("10.0.0.2"), now).unwrap();
    assert_eq!(
        gate.admit(ip("10.0.0.3"), now).unwrap_err(),
        Refusal::MaxConnections(2)
    );
    drop(a);
    assert_eq!(gate.open(), 1);
    gate.admit(ip("10.0.0.3"), now).unwrap();
}

#[test]
fn per_source_counts_an_ipv6_prefix_as_one_source_and_a_uid_as_one() {
    let gate = Gate::new(Limits {
        max_connections_per_source: Some(2),
        ..limits()
    });
    let now = Instant::now();
    let _one = gate.admit(ip("2001:db8::1"), now).unwrap();
    let _two = gate.admit(ip("2001:db8::ffff:2"), now).unwrap();
    assert_eq!(
        gate.admit(ip("2001:db8::3"), now).unwrap_err(),
        Refusal::PerSource(2)
    );
    // Another /64 is another source; an IPv4-mapped address is its IPv4 source.
    let _other = gate.admit(ip("2001:db8:0:1::1"), now).unwrap();
    let _v4 = gate.admit(ip("::ffff:192.0.2.1"), now).unwrap();
    let _v4_again = gate.admit(ip("192.0.2.1"), now).unwrap();
    assert!(gate.admit(ip("192.0.2.1"), now).is_err());
    let _u1 = gate.admit(Peer::Uid(1000), now).unwrap();
    let u2 = gate.admit(Peer::Uid(1000), now).unwrap();
    assert!(gate.admit(Peer::Uid(1000), now).is_err());
    drop(u2);
    gate.admit(Peer::Uid(1000), now).unwrap();
}

#[test]
fn the_rate_allows_a_burst_then_refills() {
    let gate = Gate::new(Limits {
        accept_rate: Some(Rate {
            per_second: 2.0,
            burst: 3,
        }),
        ..limits()
    });
    let start = Instant::now();
    for _ in 0..3 {
        gate.admit_datagram(ip("192.0.2.7"), start).unwrap();
    }
    assert_eq!(
        gate.admit_datagram(ip("192.0.2.7"), start).unwrap_err(),
        Refusal::Rate
    );
    // Another source has its own bucket.
    gate.admit_datagram(ip("192.0.2.8"), start).unwrap();
    // Half a second later, one token is back (2 per second).
    let later = start + Duration::from_millis(500);
    gate.admit_datagram(ip("192.0.2.7"), later).unwrap();
    assert!(gate.admit_datagram(ip("192.0.2.7"), later).is_err());
}

#[test]
fn a_flood_of_sources_keeps_the_table_bounded() {
    let gate = Gate::new(Limits {
        accept_rate: Some(Rate {
            per_second: 1.0,
            burst: 1,
        }),
        ..limits()
    });
    let now = Instant::now();
    for n in 0..(MAX_SOURCES as u32 + 1000) {
        let peer = Peer::Ip(IpAddr::V4(n.into()));
        gate.admit_datagram(peer, now).unwrap();
        assert!(gate.lock().buckets.len() <= MAX_SOURCES);
    }
}

#[test]
fn deny_outranks_allow_and_an_allow_list_refuses_the_rest() {
    let net = |text: &str| SourceRule::Net(text.parse().unwrap());
    let gate = Gate::new(Limits {
        allow: vec![net("10.0.0.0/8"), SourceRule::Uid(0)],
        deny: vec![net("10.9.0.0/16")],
        ..limits()
    });
    let now = Instant::now();
    gate.admit(ip("10.1.2.3"), now).unwrap();
    gate.admit(Peer::Uid(0), now).unwrap();
    for refused in [
        ip("10.9.1.1"),
        ip("192.0.2.1"),
        Peer::Uid(1000),
        Peer::Unknown,
    ] {
        assert_eq!(gate.admit(refused, now).unwrap_err(), Refusal::Denied);
    }
}
