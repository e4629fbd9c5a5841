//! The header parser and the sniffer over bytes: whole headers of both versions, every beginning of
//! one incomplete (never an error), and each way a header is refused.

use std::net::SocketAddr;

use ppp::v2::{Builder, Command, Protocol, Type, Version as V2};

use super::*;

const V1_TCP4: &[u8] = b"PROXY TCP4 203.0.113.7 192.0.2.1 51234 443\r\n";

fn addr(text: &str) -> SocketAddr {
    text.parse().unwrap()
}

/// A v2 PROXY header for a TCP client at `client`, with `tlv` bytes of a NOOP TLV when not empty.
fn v2(client: &str, tlv: &[u8]) -> Vec<u8> {
    let client = addr(client);
    let server = addr(if client.is_ipv4() {
        "192.0.2.1:443"
    } else {
        "[2001:db8::1]:443"
    });
    let builder =
        Builder::with_addresses(V2::Two | Command::Proxy, Protocol::Stream, (client, server));
    let builder = if tlv.is_empty() {
        builder
    } else {
        builder.write_tlv(Type::NoOp, tlv).unwrap()
    };
    builder.build().unwrap()
}

fn whole(buf: &[u8]) -> Header {
    parse(buf, Versions::BOTH).unwrap().unwrap()
}

#[test]
fn a_v1_header_carries_its_client_and_its_length() {
    let mut buf = V1_TCP4.to_vec();
    buf.extend_from_slice(b"hello");
    let header = whole(&buf);
    assert_eq!(header.client, Some(addr("203.0.113.7:51234")));
    assert_eq!(
        header.len,
        V1_TCP4.len(),
        "the client's bytes are not the header's"
    );
    assert_eq!(header.version, Version::V1);
    let six = b"PROXY TCP6 2001:db8::7 2001:db8::1 51234 443\r\n";
    assert_eq!(whole(six).client, Some(addr("[2001:db8::7]:51234")));
}

#[test]
fn a_v2_header_carries_its_client_and_its_length() {
    let header = v2("203.0.113.7:51234", b"");
    let mut buf = header.clone();
    buf.extend_from_slice(b"hello");
    let parsed = whole(&buf);
    assert_eq!(parsed.client, Some(addr("203.0.113.7:51234")));
    assert_eq!((parsed.len, parsed.version), (header.len(), Version::V2));
    // TLVs are part of the header, and skipped.
    let with_tlv = v2("[2001:db8::7]:1", &[7; 100]);
    let parsed = whole(&with_tlv);
    assert_eq!(parsed.client, Some(addr("[2001:db8::7]:1")));
    assert_eq!(parsed.len, with_tlv.len());
}

#[test]
fn headers_without_a_client_leave_the_connections_own_address() {
    assert_eq!(whole(b"PROXY UNKNOWN\r\n").client, None);
    let local = Builder::new(V2::Two | Command::Local, 0).build().unwrap();
    let parsed = whole(&local);
    assert_eq!((parsed.client, parsed.len), (None, 16));
    // LOCAL (a balancer's health check) ignores whatever addresses it carries.
    let mut health = v2("203.0.113.7:1", b"");
    health[12] = 0x20;
    assert_eq!(whole(&health).client, None);
}

#[test]
fn every_beginning_of_a_header_asks_for_more() {
    for header in [V1_TCP4.to_vec(), v2("203.0.113.7:51234", &[1; 40])] {
        for end in 0..header.len() {
            assert_eq!(
                parse(&header[..end], Versions::BOTH),
                Ok(None),
                "{:?}",
                String::from_utf8_lossy(&header[..end])
            );
        }
    }
}

#[test]
fn what_is_not_a_header_is_refused_with_its_reason() {
    let refused = |buf: &[u8]| parse(buf, Versions::BOTH).unwrap_err();
    assert_eq!(refused(b"GET / HTTP/1.1\r\n"), HeaderError::Missing);
    assert_eq!(refused(b"PING"), HeaderError::Missing);
    assert_eq!(refused(b"\r\n\r\nhello"), HeaderError::Missing);
    let bad_address = refused(b"PROXY TCP4 203.0.113.999 192.0.2.1 1 2\r\n");
    assert!(
        matches!(bad_address, HeaderError::Malformed(_)),
        "{bad_address:?}"
    );
    assert!(bad_address
        .to_string()
        .starts_with("malformed PROXY header: "));
    let bad_protocol = refused(b"PROXY UDP4 203.0.113.7 192.0.2.1 1 2\r\n");
    assert!(matches!(bad_protocol, HeaderError::Malformed(_)));
    // Ended by \r\n, but with a word too many: the parser would wait for ever.
    let long_unknown = refused(b"PROXY UNKNOWN a b c d e\r\n");
    assert!(matches!(long_unknown, HeaderError::Malformed(_)));
    // No \r\n within 107 bytes.
    let mut endless = b"PROXY TCP4 ".to_vec();
    endless.resize(200, b'1');
    assert!(matches!(refused(&endless), HeaderError::Malformed(_)));
    // A v2 header of version 3.
    let mut v3 = v2("203.0.113.7:1", b"");
    v3[12] = 0x31;
    assert!(matches!(refused(&v3), HeaderError::Malformed(_)));
}

#[test]
fn a_v2_header_longer_than_the_bound_is_refused_before_it_is_read() {
    let mut head = V2_SIGNATURE.to_vec();
    head.extend_from_slice(&[0x21, 0x11, 0xff, 0xff]);
    assert_eq!(
        parse(&head, Versions::BOTH),
        Err(HeaderError::TooLong {
            declared: 16 + 65_535
        })
    );
    let at_the_bound = v2("203.0.113.7:1", &vec![0; V2_MAX_LEN - 16 - 12 - 3]);
    assert_eq!(at_the_bound.len(), V2_MAX_LEN);
    assert_eq!(whole(&at_the_bound).len, V2_MAX_LEN);
}

#[test]
fn a_version_left_out_is_refused_once_its_signature_is_whole() {
    let only_v1 = Versions {
        v1: true,
        v2: false,
    };
    let only_v2 = Versions {
        v1: false,
        v2: true,
    };
    assert_eq!(parse(b"PROXY", only_v2), Ok(None));
    assert_eq!(
        parse(b"PROXY ", only_v2),
        Err(HeaderError::VersionRefused(Version::V1))
    );
    assert_eq!(
        parse(&v2("203.0.113.7:1", b"")[..12], only_v1),
        Err(HeaderError::VersionRefused(Version::V2))
    );
    assert!(parse(V1_TCP4, only_v1).unwrap().is_some());
}

#[test]
fn sniffing_tells_headers_from_a_clients_own_bytes() {
    assert_eq!(sniff(b""), Sniff::Undecided);
    assert_eq!(sniff(b"PRO"), Sniff::Undecided);
    assert_eq!(sniff(b"\r\n"), Sniff::Undecided);
    assert_eq!(sniff(b"PROXY TCP4"), Sniff::Header);
    assert_eq!(sniff(&v2("203.0.113.7:1", b"")), Sniff::Header);
    assert_eq!(sniff(b"PROXYZ"), Sniff::Plain);
    assert_eq!(sniff(b"PING"), Sniff::Plain);
    assert_eq!(sniff(b"hello"), Sniff::Plain);
    assert_eq!(sniff(b"\r\n\r\nhello"), Sniff::Plain);
}
