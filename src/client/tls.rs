//! The client's TLS: `--tls [--ca FILE] [--cert FILE --key FILE] [--server-name NAME]` for every
//! stream protocol, with rustls and the same crypto provider as the server.
//!
//! The server's certificate is checked against `--ca` (PEM), or without it the system's trust
//! store (rustls-native-certs). The name checked is `--server-name`, else the endpoint's host as
//! typed (`tcp://localhost:20000` checks `localhost`, `tcp://127.0.0.1:20000` the address), and
//! `localhost` for a Unix socket. `--cert` and `--key` present a client certificate.
//!
//! The handshake happens when the connection opens, within the client's timeout, so a TLS client
//! sent to a port that does not speak TLS fails there with a message that says so.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{anyhow, bail, Context};
use clap::Args;
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use sockserv_framework::Endpoint;

/// The TLS options every stream client takes.
#[derive(Args, Debug, Default, Clone)]
pub struct TlsArgs {
    /// Speak TLS to the server.
    #[arg(long)]
    pub tls: bool,

    /// Trust the CA certificates in this PEM file (default: the system's trust store).
    #[arg(long, value_name = "FILE", requires = "tls")]
    pub ca: Option<PathBuf>,

    /// Present this client certificate chain (PEM); needs --key.
    #[arg(long, value_name = "FILE", requires_all = ["tls", "key"])]
    pub cert: Option<PathBuf>,

    /// The private key (PEM) of --cert.
    #[arg(long, value_name = "FILE", requires_all = ["tls", "cert"])]
    pub key: Option<PathBuf>,

    /// The name to ask for by SNI and to check the certificate against (default: the endpoint's
    /// host, or localhost for a Unix socket).
    #[arg(long, value_name = "NAME", requires = "tls")]
    pub server_name: Option<String>,
}

/// What a connection needs to start TLS: the configuration and the name to check.
pub struct TlsClient {
    config: Arc<ClientConfig>,
    name: ServerName<'static>,
}

impl TlsArgs {
    /// The TLS client these options ask for (`None` without `--tls`), for the endpoint typed as
    /// `endpoint`.
    ///
    /// # Errors
    /// A file that cannot be read or holds no certificate or key, a bad server name, or no
    /// trusted certificate at all.
    pub fn client(&self, endpoint: &str) -> anyhow::Result<Option<TlsClient>> {
        if !self.tls {
            return Ok(None);
        }
        let roots = self.roots()?;
        let builder =
            ClientConfig::builder_with_provider(Arc::new(sockserv_framework::tls::provider()))
                .with_safe_default_protocol_versions()
                .context("cannot set up TLS")?
                .with_root_certificates(roots);
        let config = match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => {
                let chain = CertificateDer::pem_file_iter(cert)
                    .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                    .map_err(|err| anyhow!("{}: {err}", cert.display()))?;
                if chain.is_empty() {
                    bail!("{}: no PEM certificate in it", cert.display());
                }
                let key = PrivateKeyDer::from_pem_file(key)
                    .map_err(|err| anyhow!("{}: {err}", key.display()))?;
                builder
                    .with_client_auth_cert(chain, key)
                    .context("--cert and --key do not go together")?
            }
            _ => builder.with_no_client_auth(),
        };
        let name = match &self.server_name {
            Some(name) => name.clone(),
            None => default_name(endpoint),
        };
        let name = ServerName::try_from(name.clone())
            .map_err(|_| anyhow!("{name:?} is not a host name or address for --server-name"))?;
        Ok(Some(TlsClient {
            config: Arc::new(config),
            name,
        }))
    }

    fn roots(&self) -> anyhow::Result<RootCertStore> {
        let mut roots = RootCertStore::empty();
        let certs = match &self.ca {
            Some(path) => CertificateDer::pem_file_iter(path)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .map_err(|err| anyhow!("--ca {}: {err}", path.display()))?,
            None => rustls_native_certs::load_native_certs().certs,
        };
        let (added, _ignored) = roots.add_parsable_certificates(certs);
        if added == 0 {
            bail!("no CA certificate to trust: give one with --ca FILE");
        }
        Ok(roots)
    }
}

/// The host of `tcp://HOST:PORT` as typed, without IPv6 brackets; `localhost` otherwise.
fn default_name(endpoint: &str) -> String {
    let Some(rest) = endpoint.strip_prefix("tcp://") else {
        return "localhost".to_string();
    };
    let host = rest.rsplit_once(':').map_or(rest, |(host, _)| host);
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .to_string()
}

/// A TCP or Unix stream under TLS.
pub enum Plain {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Plain {
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        match self {
            Plain::Tcp(s) => s.shutdown(how),
            Plain::Unix(s) => s.shutdown(how),
        }
    }

    pub fn set_read_timeout(&self, limit: Option<std::time::Duration>) -> io::Result<()> {
        match self {
            Plain::Tcp(s) => s.set_read_timeout(limit),
            Plain::Unix(s) => s.set_read_timeout(limit),
        }
    }

    pub fn set_write_timeout(&self, limit: Option<std::time::Duration>) -> io::Result<()> {
        match self {
            Plain::Tcp(s) => s.set_write_timeout(limit),
            Plain::Unix(s) => s.set_write_timeout(limit),
        }
    }
}

impl Read for Plain {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Plain::Tcp(s) => s.read(buf),
            Plain::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Plain {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Plain::Tcp(s) => s.write(buf),
            Plain::Unix(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A stream with TLS running over it.
pub type TlsStream = StreamOwned<ClientConnection, Plain>;

impl TlsClient {
    /// Run the handshake over `plain` (its timeouts already set), to `endpoint`.
    ///
    /// # Errors
    /// The handshake failed; the message says the port may not speak TLS.
    pub fn start(&self, plain: Plain, endpoint: &Endpoint) -> anyhow::Result<TlsStream> {
        let conn = ClientConnection::new(Arc::clone(&self.config), self.name.clone())
            .context("cannot start TLS")?;
        let mut stream = StreamOwned::new(conn, plain);
        while stream.conn.is_handshaking() {
            if let Err(err) = stream.conn.complete_io(&mut stream.sock) {
                return Err(handshake_error(err, endpoint));
            }
        }
        Ok(stream)
    }
}

/// A failed handshake, said in words: most often the port does not speak TLS.
fn handshake_error(err: io::Error, endpoint: &Endpoint) -> anyhow::Error {
    let hint = match err.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
            "no answer in time: does it speak TLS?"
        }
        io::ErrorKind::InvalidData => "is it a TLS port? (a plaintext server answers this way)",
        io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset => {
            "it closed the connection: is it a TLS port, and does it want a client certificate?"
        }
        _ => "is it a TLS port?",
    };
    anyhow!("TLS handshake with {endpoint} failed: {err}; {hint}")
}
