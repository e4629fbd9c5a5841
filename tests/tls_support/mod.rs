//! Throwaway certificates made at test time (rcgen) and a blocking rustls client, for the TLS
//! tests: a CA, server and client certificates signed by it, files written where a config names
//! them, and connections that check the server's certificate against the CA.

#![allow(dead_code)]

use std::fs;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use rustls_pki_types::pem::PemObject;

use crate::common::{Endpoint, WAIT};

/// A certificate authority that signs the test's certificates.
pub struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A certificate and its key, as PEM text.
pub struct Issued {
    pub cert: String,
    pub key: String,
}

impl Issued {
    /// Write the pair as `NAME.pem` and `NAME.key` in `dir`.
    pub fn write(&self, dir: &Path, name: &str) {
        fs::write(dir.join(format!("{name}.pem")), &self.cert).unwrap();
        fs::write(dir.join(format!("{name}.key")), &self.key).unwrap();
    }
}

impl Ca {
    pub fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        Ca { issuer }
    }

    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// Write the CA's certificate as `NAME` in `dir`.
    pub fn write(&self, dir: &Path, name: &str) {
        fs::write(dir.join(name), self.pem()).unwrap();
    }

    /// A server certificate for `localhost` and 127.0.0.1 (and `names`), with `cn`.
    pub fn server(&self, cn: &str, names: &[&str]) -> Issued {
        let mut sans = vec!["localhost".to_string(), "127.0.0.1".to_string()];
        sans.extend(names.iter().map(|name| name.to_string()));
        self.issue(cn, sans, |_| {})
    }

    /// A client certificate with the common name `cn`.
    pub fn client(&self, cn: &str) -> Issued {
        self.issue(cn, Vec::new(), |_| {})
    }

    /// A server certificate that expired in 2020.
    pub fn expired(&self, cn: &str) -> Issued {
        self.issue(cn, vec!["localhost".to_string()], |params| {
            params.not_before = rcgen::date_time_ymd(2019, 1, 1);
            params.not_after = rcgen::date_time_ymd(2020, 1, 1);
        })
    }

    fn issue(
        &self,
        cn: &str,
        sans: Vec<String>,
        adjust: impl FnOnce(&mut CertificateParams),
    ) -> Issued {
        let mut params = CertificateParams::new(sans).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        adjust(&mut params);
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Issued {
            cert: cert.pem(),
            key: key.serialize_pem(),
        }
    }
}

/// A client configuration that trusts `ca_pem`, presenting `identity` if given, offering `alpn`.
pub fn client_config(ca_pem: &str, identity: Option<&Issued>, alpn: &[&str]) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(sockserv_framework::tls::provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let mut config = match identity {
        Some(issued) => {
            let chain = CertificateDer::pem_slice_iter(issued.cert.as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .unwrap();
            let key = PrivateKeyDer::from_pem_slice(issued.key.as_bytes()).unwrap();
            builder.with_client_auth_cert(chain, key).unwrap()
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
    Arc::new(config)
}

/// A plain stream to a stream endpoint, with read and write timeouts of [`WAIT`].
pub enum Plain {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Plain {
    pub fn connect(endpoint: &Endpoint) -> io::Result<Plain> {
        let plain = match endpoint {
            Endpoint::Tcp(addr) => Plain::Tcp(TcpStream::connect_timeout(addr, WAIT)?),
            Endpoint::Unix(path) => Plain::Unix(UnixStream::connect(path)?),
            other => panic!("not a stream endpoint: {other}"),
        };
        plain.set_timeout(WAIT)?;
        Ok(plain)
    }

    pub fn set_timeout(&self, limit: Duration) -> io::Result<()> {
        match self {
            Plain::Tcp(s) => s
                .set_read_timeout(Some(limit))
                .and(s.set_write_timeout(Some(limit))),
            Plain::Unix(s) => s
                .set_read_timeout(Some(limit))
                .and(s.set_write_timeout(Some(limit))),
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

/// A TLS connection to a test server.
pub type Tls = StreamOwned<ClientConnection, Plain>;

/// Connect to `endpoint` and finish the handshake, asking for `localhost` by SNI (or `sni`).
pub fn connect(endpoint: &Endpoint, config: &Arc<ClientConfig>) -> io::Result<Tls> {
    connect_as(endpoint, config, "localhost")
}

/// As [`connect`], asking for `sni`.
pub fn connect_as(endpoint: &Endpoint, config: &Arc<ClientConfig>, sni: &str) -> io::Result<Tls> {
    let name = ServerName::try_from(sni.to_string()).unwrap();
    let conn = ClientConnection::new(Arc::clone(config), name).map_err(io::Error::other)?;
    let mut tls = StreamOwned::new(conn, Plain::connect(endpoint)?);
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock)?;
    }
    Ok(tls)
}

/// Send `message` and read the same number of bytes back.
pub fn echo(tls: &mut Tls, message: &[u8]) -> io::Result<Vec<u8>> {
    tls.write_all(message)?;
    tls.flush()?;
    let mut back = vec![0; message.len()];
    tls.read_exact(&mut back)?;
    Ok(back)
}

/// The common name of the certificate the server presented.
pub fn server_common_name(tls: &Tls) -> String {
    let der = &tls.conn.peer_certificates().expect("a server certificate")[0];
    let (_, cert) = x509_parser::parse_x509_certificate(der).unwrap();
    let cn = cert.subject().iter_common_name().next().unwrap();
    cn.as_str().unwrap().to_string()
}
