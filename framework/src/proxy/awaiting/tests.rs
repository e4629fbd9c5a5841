//! The awaiting set over real loopback connections, with time passed in: a header read however it
//! is cut, only its bytes consumed, nothing left to spin on, and every deadline kept.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use super::*;
use crate::limits::{Gate, Limits, Peer, SourceRule};
use crate::proxy::Versions;

const HEADER: &[u8] = b"PROXY TCP4 203.0.113.7 192.0.2.1 51234 443\r\n";

fn set() -> Awaiting {
    let proxy = ProxyProtocol {
        trusted: vec![SourceRule::Net("127.0.0.0/8".parse().unwrap())],
        versions: Versions::BOTH,
    };
    Awaiting::new(
        "test",
        proxy,
        crate::metrics::ServerMetrics::for_server("test"),
    )
}

/// A client and the server's side of its connection, with the address it comes from.
fn connection() -> (TcpStream, Socket, Address) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let (server, from) = listener.accept().unwrap();
    (client, Socket::from(server), Address::Inet(from))
}

fn ticket() -> Ticket {
    Gate::new(Limits::none())
        .admit(Peer::Unknown, Instant::now())
        .unwrap()
}

/// The places of the watched sockets that are readable within `wait`.
fn readable(set: &Awaiting, wait: Duration) -> Vec<usize> {
    let (places, fds): (Vec<usize>, Vec<BorrowedFd<'_>>) = set.watched().unzip();
    let mut polled: Vec<PollFd<'_>> = fds
        .iter()
        .map(|fd| PollFd::new(*fd, PollFlags::POLLIN))
        .collect();
    let timeout = PollTimeout::try_from(wait.as_millis() as u64).unwrap();
    poll(&mut polled, timeout).unwrap();
    places
        .into_iter()
        .zip(&polled)
        .filter(|(_, fd)| fd.revents().is_some_and(|r| !r.is_empty()))
        .map(|(place, _)| place)
        .collect()
}

/// Poll and advance (at most 50 times, up to 100 ms each) until a connection is ready.
fn advance_until_ready(set: &mut Awaiting) -> Option<Ready> {
    for _ in 0..50 {
        let places = readable(set, Duration::from_millis(100));
        let mut ready = None;
        set.advance(&places, Instant::now(), &mut |r| {
            ready = Some(r);
            true
        });
        if ready.is_some() || set.len() == 0 {
            return ready;
        }
    }
    None
}

fn closed_by_server(client: &mut TcpStream) -> bool {
    matches!(client.read(&mut [0u8; 16]), Ok(0) | Err(_))
}

#[test]
fn a_header_cut_anywhere_is_read_and_the_clients_bytes_stay_for_the_handler() {
    for cut in [1, 6, 40, HEADER.len() - 1] {
        let mut set = set();
        let (mut client, socket, from) = connection();
        client.write_all(&HEADER[..cut]).unwrap();
        let arrived = set.arrive(
            socket,
            from.clone(),
            crate::metrics::ConnId(1),
            Arrival::Trusted,
            Instant::now(),
        );
        assert!(
            arrived.is_none(),
            "cut {cut}: ready before the header was whole"
        );
        let mut rest = HEADER[cut..].to_vec();
        rest.extend_from_slice(b"hello");
        client.write_all(&rest).unwrap();
        let ready = advance_until_ready(&mut set).expect("the header was read");
        assert_eq!(
            ready.peer,
            Address::Inet("203.0.113.7:51234".parse().unwrap())
        );
        assert_eq!(ready.via, Some(from));
        assert!(
            ready.ticket.is_none(),
            "admitted later, by the carried address"
        );
        let mut first = [0u8; 5];
        (&ready.socket).read_exact(&mut first).unwrap();
        assert_eq!(&first, b"hello", "cut {cut}");
    }
}

#[test]
fn half_a_header_is_consumed_so_poll_does_not_spin_on_it() {
    let mut set = set();
    let (mut client, socket, from) = connection();
    assert!(set
        .arrive(
            socket,
            from,
            crate::metrics::ConnId(1),
            Arrival::Trusted,
            Instant::now()
        )
        .is_none());
    client.write_all(&HEADER[..20]).unwrap();
    let places = readable(&set, Duration::from_secs(5));
    assert_eq!(places, [0]);
    set.advance(&places, Instant::now(), &mut |_| {
        unreachable!("half a header")
    });
    assert_eq!(set.len(), 1);
    assert!(
        readable(&set, Duration::ZERO).is_empty(),
        "readable again with nothing new"
    );
}

#[test]
fn a_malformed_header_closes_the_connection() {
    let mut set = set();
    let (mut client, socket, from) = connection();
    client
        .write_all(b"PROXY TCP4 203.0.113.999 192.0.2.1 1 2\r\n")
        .unwrap();
    assert!(advance_after(&mut set, socket, from, Arrival::Trusted).is_none());
    assert_eq!(set.len(), 0);
    assert!(closed_by_server(&mut client));
}

/// `arrive`, then poll and advance until the connection leaves the set.
fn advance_after(
    set: &mut Awaiting,
    socket: Socket,
    from: Address,
    arrival: Arrival,
) -> Option<Ready> {
    match set.arrive(
        socket,
        from,
        crate::metrics::ConnId(1),
        arrival,
        Instant::now(),
    ) {
        Some(ready) => Some(ready),
        None => advance_until_ready(set),
    }
}

#[test]
fn an_untrusted_client_keeps_its_bytes_and_ticket_unless_it_sends_a_header() {
    let mut set = set();
    let (mut client, socket, from) = connection();
    client.write_all(b"hello").unwrap();
    let ready = advance_after(&mut set, socket, from.clone(), Arrival::Untrusted(ticket()));
    let ready = ready.expect("served as a direct connection");
    assert_eq!((ready.peer, ready.via), (from, None));
    assert!(ready.ticket.is_some());
    let mut first = [0u8; 5];
    (&ready.socket).read_exact(&mut first).unwrap();
    assert_eq!(&first, b"hello", "only peeked");

    let (mut client, socket, from) = connection();
    client.write_all(HEADER).unwrap();
    let ready = advance_after(&mut set, socket, from, Arrival::Untrusted(ticket()));
    assert!(
        ready.is_none(),
        "a header from an untrusted source was served"
    );
    assert!(closed_by_server(&mut client));
}

#[test]
fn deadlines_close_a_silent_proxy_and_serve_an_undecided_client() {
    let mut set = set();
    let now = Instant::now();
    let (mut proxy, socket, from) = connection();
    assert!(set
        .arrive(
            socket,
            from,
            crate::metrics::ConnId(1),
            Arrival::Trusted,
            now
        )
        .is_none());
    // "\r\n" could begin a v2 signature: the client is parked, not polled (it stays readable).
    let (mut client, socket, from) = connection();
    client.write_all(b"\r\n").unwrap();
    let untrusted = Arrival::Untrusted(ticket());
    let mut ready = set.arrive(
        socket,
        from.clone(),
        crate::metrics::ConnId(1),
        untrusted,
        now,
    );
    for _ in 0..50 {
        if ready.is_some() || set.watched().count() == 1 {
            break;
        }
        let places = readable(&set, Duration::from_millis(100));
        set.advance(&places, now, &mut |r| {
            ready = Some(r);
            true
        });
    }
    assert!(ready.is_none(), "decided before its window ended");
    assert_eq!((set.len(), set.watched().count()), (2, 1));
    assert_eq!(set.next_deadline(), Some(now + SNIFF_WINDOW));

    let mut served = Vec::new();
    set.advance(&[], now + SNIFF_WINDOW, &mut |ready| {
        served.push(ready.peer);
        true
    });
    assert_eq!(
        served,
        [from],
        "served as a direct client when its window ends"
    );
    assert_eq!(set.next_deadline(), Some(now + HEADER_TIMEOUT));
    set.advance(&[], now + HEADER_TIMEOUT, &mut |_| {
        unreachable!("no header")
    });
    assert_eq!(set.len(), 0);
    assert!(closed_by_server(&mut proxy));
}

#[test]
fn without_room_the_rest_wait_for_a_later_call() {
    let mut set = set();
    let now = Instant::now();
    let mut clients = Vec::new();
    for _ in 0..3 {
        let (client, socket, from) = connection();
        assert!(set
            .arrive(
                socket,
                from,
                crate::metrics::ConnId(1),
                Arrival::Untrusted(ticket()),
                now
            )
            .is_none());
        clients.push(client);
    }
    let mut served = 0;
    set.advance(&[], now + SNIFF_WINDOW, &mut |_| {
        served += 1;
        false
    });
    assert_eq!((served, set.len()), (1, 2));
}
