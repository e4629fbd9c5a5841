//! TLS on stream servers — `[server.tls]` — terminated by the framework with rustls, so that every
//! handler, built in or plugin, reads and writes plaintext under every strategy.
//!
//! - [`TlsSettings`] is the validated table: the certificate and key (or several, chosen by SNI),
//!   the client CA and `client_auth`, the ALPN protocols and the lowest TLS version.
//! - [`CertStore`] holds one server's current rustls `ServerConfig`, built from those files by
//!   `load`, and hands it to each new connection ([`CertStore::current`]). [`CertStore::reload`]
//!   (on SIGHUP) reads the files again and replaces it only when they are valid: a bad new
//!   certificate keeps the old one, and the log says why. Connections keep the configuration they
//!   started with, so a reload never touches an established connection.
//! - The blocking strategies (sync, threading, pool, forking) wrap the connection in `blocking`'s
//!   reader and writer after a handshake bounded by [`handshake_timeout`]; the reactor drives a
//!   rustls connection per connection without blocking its loop (`strategy::reactor`).
//! - A PROXY protocol header comes before the TLS bytes (HAProxy's `send-proxy` in front of a TLS
//!   backend): the accept path consumes it first, so the handshake starts at the client's first
//!   TLS byte.
//! - [`identity`] turns a finished handshake into the [`TlsInfo`] handlers see.
//!
//! The crypto provider is *ring*: it builds with a C compiler alone, where aws-lc-rs also needs
//! cmake (and nasm on some targets), which a clean machine does not have.

pub(crate) mod blocking;
mod load;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock, RwLock};
use std::time::Duration;

use rustls::ServerConnection;
use sockserv_plugin::TlsInfo;

pub(crate) use load::limit_buffers;
pub use load::{TlsError, TlsFile};

/// How long a handshake may take when the server sets no `first_byte_timeout` (which bounds it
/// otherwise): a client needs two round trips and a signature; ten seconds covers a slow mobile
/// link and still frees a sync server, or a thread, from a client that connects and says nothing.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The first byte of every TLS connection: a handshake record (RFC 8446 §5.1, content type 22).
/// A connection that starts with anything else is not speaking TLS.
pub(crate) const HANDSHAKE_RECORD: u8 = 0x16;

/// The most plaintext the server's side of one TLS connection holds encrypted and unsent
/// (rustls's buffer limit), in bytes; a writer past it waits for the socket, and the reactor
/// counts it in the connection's pending output.
pub(crate) const TLS_BUFFER_LIMIT: usize = 64 * 1024;

/// The crypto provider of every sockserv TLS configuration, server's and client's: *ring* (see
/// the module doc). rustls 0.23.48 deprecates it for lacking a post-quantum key exchange
/// (X25519MLKEM768, which only aws-lc-rs offers); switching is this one function, at the cost
/// stated there.
#[allow(deprecated)]
pub fn provider() -> rustls::crypto::CryptoProvider {
    rustls::crypto::ring::default_provider()
}

/// The time limit of a TLS handshake on a server with these limits.
pub(crate) fn handshake_timeout(limits: &crate::limits::Limits) -> Duration {
    limits
        .first_byte_timeout
        .unwrap_or(DEFAULT_HANDSHAKE_TIMEOUT)
}

/// Whether clients are asked for a certificate (`client_auth`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// Never asked for.
    None,
    /// Asked for; a client without one is served, one with a certificate the CA did not sign is
    /// refused.
    Optional,
    /// Required: a client without a certificate of the CA's is refused.
    Required,
}

impl ClientAuth {
    pub fn name(self) -> &'static str {
        match self {
            ClientAuth::None => "none",
            ClientAuth::Optional => "optional",
            ClientAuth::Required => "required",
        }
    }
}

/// The lowest TLS version a server accepts (`min_version`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MinVersion {
    Tls12,
    Tls13,
}

/// One certificate chain and its private key, as PEM files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertFiles {
    /// The chain: the server's certificate first, then the intermediates.
    pub cert: PathBuf,
    /// Its private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// A certificate served to the clients that ask for one of `names` by SNI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SniCert {
    /// Host names, lower case (`"a.example.com"`).
    pub names: Vec<String>,
    pub files: CertFiles,
}

/// `[server.tls]`, validated (paths made absolute against the config's folder).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    /// The certificate for clients that send no SNI name, or one no `sni` entry lists. `None`
    /// when only `sni` entries are given: such clients are refused.
    pub default: Option<CertFiles>,
    /// Certificates chosen by the SNI name.
    pub sni: Vec<SniCert>,
    /// The CAs whose client certificates are accepted (PEM, one or more).
    pub client_ca: Option<PathBuf>,
    pub client_auth: ClientAuth,
    /// ALPN protocols, in the server's order of preference; empty: no ALPN.
    pub alpn: Vec<Vec<u8>>,
    pub min_version: MinVersion,
}

/// One server's TLS configuration, replaced whole on reload; each connection takes the current
/// one when it starts and keeps it.
pub struct CertStore {
    server: String,
    settings: TlsSettings,
    current: RwLock<Arc<rustls::ServerConfig>>,
}

impl fmt::Debug for CertStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertStore")
            .field("server", &self.server)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// Two stores are equal when made from the same settings (the files' contents may differ).
impl PartialEq for CertStore {
    fn eq(&self, other: &Self) -> bool {
        self.server == other.server && self.settings == other.settings
    }
}

/// Set by SIGHUP in a process that serves one forking server (see [`reload_flag`]).
static RELOAD_ASKED: LazyLock<Arc<AtomicBool>> = LazyLock::new(Arc::default);

/// The flag a signal handler sets to ask the stores of this process to reload before their next
/// connection: for a forking server's own process, whose only thread is its serving loop.
/// `signal_hook::flag::register(SIGHUP, reload_flag())` sets it async-signal-safely.
pub fn reload_flag() -> Arc<AtomicBool> {
    Arc::clone(&RELOAD_ASKED)
}

impl CertStore {
    /// Read and check the files of `settings` for the server `server`.
    ///
    /// # Errors
    ///
    /// Every problem found ([`TlsError`]), each naming its file: a path that cannot be read, a
    /// file without a certificate or key, a key that does not match its certificate, a
    /// certificate that has expired or is not valid yet, an unusable client CA.
    pub fn load(server: &str, settings: TlsSettings) -> Result<CertStore, Vec<TlsError>> {
        let config = load::server_config(&settings)?;
        Ok(CertStore {
            server: server.to_string(),
            settings,
            current: RwLock::new(config),
        })
    }

    /// The settings the store was made from.
    pub fn settings(&self) -> &TlsSettings {
        &self.settings
    }

    /// The configuration for a new connection. In a process whose [`reload_flag`] was set, the
    /// files are read again first (see [`CertStore::reload`]).
    pub fn current(&self) -> Arc<rustls::ServerConfig> {
        if RELOAD_ASKED.swap(false, Ordering::SeqCst) {
            let _ = self.reload();
        }
        Arc::clone(&self.current.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// Serve new handshakes with the configuration `fresh` holds (made from the same settings,
    /// its files read more recently: by a config reload). Established connections are not
    /// touched.
    pub fn take_over(&self, fresh: &CertStore) {
        let config = Arc::clone(&fresh.current.read().unwrap_or_else(|p| p.into_inner()));
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = config;
        log::info!("{}: TLS certificates reloaded", self.server);
    }

    /// Read the files again and, when every one is valid, serve new handshakes with them; on any
    /// problem keep the configuration in use. Either way the outcome is logged with the server's
    /// name (an error line per problem). Established connections are not touched.
    ///
    /// # Errors
    ///
    /// The problems that kept the old configuration, as [`CertStore::load`] reports them.
    pub fn reload(&self) -> Result<(), Vec<TlsError>> {
        match load::server_config(&self.settings) {
            Ok(config) => {
                *self.current.write().unwrap_or_else(|p| p.into_inner()) = config;
                log::info!("{}: TLS certificates reloaded", self.server);
                Ok(())
            }
            Err(errors) => {
                for error in &errors {
                    log::error!(
                        "{}: TLS reload refused, the certificates in use are kept: {error}",
                        self.server
                    );
                }
                Err(errors)
            }
        }
    }
}

/// What a handler sees of a finished handshake.
pub(crate) fn identity(tls: &ServerConnection) -> TlsInfo {
    let version = match tls.protocol_version() {
        Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3".to_string(),
        Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2".to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    };
    let cipher_suite = (tls.negotiated_cipher_suite())
        .map(|suite| format!("{:?}", suite.suite()))
        .unwrap_or_default();
    let leaf = tls.peer_certificates().and_then(|chain| chain.first());
    let (subject, common_name) = leaf.map(|der| load::subject_of(der)).unwrap_or_default();
    TlsInfo {
        version,
        cipher_suite,
        alpn: tls.alpn_protocol().map(<[u8]>::to_vec),
        server_name: tls.server_name().map(str::to_ascii_lowercase),
        client_subject: subject,
        client_common_name: common_name,
        client_cert_der: leaf.map(|der| der.to_vec()),
    }
}

/// Why a handshake failed, for the log line (`TLS handshake failed: ...`).
#[derive(Debug)]
pub(crate) enum HandshakeError {
    /// The client's first byte cannot begin a TLS record: it speaks plaintext.
    NotTls,
    /// rustls refused what the client sent (an unknown CA, no common version or cipher suite...).
    Tls(rustls::Error),
    /// The peer closed the connection before the handshake was done.
    Closed,
    /// The handshake was not done within its time limit.
    TimedOut(Duration),
    /// Reading or writing the socket failed (a reset).
    Io(std::io::Error),
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HandshakeError::NotTls => {
                f.write_str("the client does not speak TLS (plaintext sent to a TLS port?)")
            }
            HandshakeError::Tls(err) => write!(f, "{err}"),
            HandshakeError::Closed => f.write_str("the peer closed the connection mid-handshake"),
            HandshakeError::TimedOut(limit) => {
                write!(f, "not done within {} s", limit.as_secs_f64())
            }
            HandshakeError::Io(err) => write!(f, "{err}"),
        }
    }
}

/// A path as written in log lines and errors.
pub(crate) fn shown(path: &Path) -> std::path::Display<'_> {
    path.display()
}
