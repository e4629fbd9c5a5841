//! What a handler learns of a TLS connection's peer: the protocol negotiated, the name the client
//! asked for, and — when the server asks for client certificates — who the client is.
//!
//! The server terminates TLS itself (`[server.tls]`): handlers read and write plaintext and find
//! this on [`Request::tls`](crate::Request::tls) or [`SessionInfo::tls`](crate::SessionInfo::tls);
//! it is `None` on a connection without TLS. Plugins receive the same through the C ABI (1.2).

/// The negotiated parameters and the peer's identity of one TLS connection, fixed once its
/// handshake is done.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsInfo {
    /// The protocol version, as TLS names it: `"TLSv1.3"` or `"TLSv1.2"`.
    pub version: String,
    /// The cipher suite, by its IANA name (`"TLS13_AES_256_GCM_SHA384"`).
    pub cipher_suite: String,
    /// The application protocol agreed by ALPN (RFC 7301), if the client offered one the server
    /// lists.
    pub alpn: Option<Vec<u8>>,
    /// The host name the client asked for by SNI (RFC 6066), lower case, if it sent one.
    pub server_name: Option<String>,
    /// The client certificate's subject as an RFC 4514 string (`"CN=alice,O=Example"`), when the
    /// client presented one (the server's `client_auth` is `optional` or `required`).
    pub client_subject: Option<String>,
    /// The common name (CN) of that subject, if it has one.
    pub client_common_name: Option<String>,
    /// The client's end-entity certificate, DER-encoded, when it presented one.
    pub client_cert_der: Option<Vec<u8>>,
}
