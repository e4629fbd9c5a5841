//! Building a rustls `ServerConfig` from `[server.tls]`'s files, with every problem named by the
//! file (and so by the config key) it is in: `sockserv check` reports it at that key, a reload
//! logs it and keeps the configuration in use.
//!
//! PEM is read through rustls-pki-types' `PemObject` (rustls-pemfile is no longer maintained);
//! validity dates and the subject are read with x509-parser, which rustls does not expose.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::{shown, ClientAuth, MinVersion, TlsSettings, TLS_BUFFER_LIMIT};

/// Which file of `[server.tls]` a problem is in: the key that names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsFile {
    /// `cert` (of the `sni` entry at this index, or of the table itself).
    Cert { sni: Option<usize> },
    /// `key` (likewise).
    Key { sni: Option<usize> },
    /// `client_ca`.
    ClientCa,
}

/// A problem with one of the files of `[server.tls]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsError {
    /// The key naming the file.
    pub file: TlsFile,
    pub path: PathBuf,
    /// What is wrong, in words.
    pub reason: String,
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", shown(&self.path), self.reason)
    }
}

impl std::error::Error for TlsError {}

/// The provider of every sockserv TLS configuration, shared.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(super::provider())
}

/// A `ServerConfig` from `settings`' files.
///
/// # Errors
///
/// Every problem found, each naming its file.
pub(super) fn server_config(settings: &TlsSettings) -> Result<Arc<ServerConfig>, Vec<TlsError>> {
    let provider = provider();
    let mut errors = Vec::new();
    let default = (settings.default.as_ref())
        .and_then(|files| keep(certified_key(&provider, files, None), &mut errors));
    let mut by_name = HashMap::new();
    for (index, entry) in settings.sni.iter().enumerate() {
        if let Some(key) = keep(
            certified_key(&provider, &entry.files, Some(index)),
            &mut errors,
        ) {
            let key = Arc::new(key);
            for name in &entry.names {
                by_name.insert(name.clone(), Arc::clone(&key));
            }
        }
    }
    let verifier = client_verifier(&provider, settings, &mut errors);
    if !errors.is_empty() {
        return Err(errors);
    }
    let resolver = Arc::new(BySni {
        default: default.map(Arc::new),
        by_name,
    });
    let versions: &[&rustls::SupportedProtocolVersion] = match settings.min_version {
        MinVersion::Tls12 => &[&rustls::version::TLS13, &rustls::version::TLS12],
        MinVersion::Tls13 => &[&rustls::version::TLS13],
    };
    let builder = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .map_err(|err| vec![general(settings, err.to_string())])?;
    let builder = match verifier {
        Some(verifier) => builder.with_client_cert_verifier(verifier),
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_cert_resolver(resolver);
    config.alpn_protocols.clone_from(&settings.alpn);
    // Stateless resumption: the ticket key is made here, before a forking server forks, so every
    // request child can resume the sessions of the others.
    config.ticketer = rustls::crypto::ring::Ticketer::new().map_err(|err| {
        vec![general(
            settings,
            format!("cannot make a ticket key: {err}"),
        )]
    })?;
    config.send_tls13_tickets = 1;
    Ok(Arc::new(config))
}

/// A problem of no one file: reported at the first certificate.
fn general(settings: &TlsSettings, reason: String) -> TlsError {
    let (file, path) = match (&settings.default, settings.sni.first()) {
        (Some(files), _) => (TlsFile::Cert { sni: None }, files.cert.clone()),
        (None, Some(entry)) => (TlsFile::Cert { sni: Some(0) }, entry.files.cert.clone()),
        (None, None) => (TlsFile::Cert { sni: None }, PathBuf::new()),
    };
    TlsError { file, path, reason }
}

fn keep<T>(result: Result<T, Vec<TlsError>>, errors: &mut Vec<TlsError>) -> Option<T> {
    result.map_err(|more| errors.extend(more)).ok()
}

/// The chain and key of `files`, checked: both readable, the key usable and matching the leaf
/// certificate, every certificate of the chain valid now.
fn certified_key(
    provider: &CryptoProvider,
    files: &super::CertFiles,
    sni: Option<usize>,
) -> Result<CertifiedKey, Vec<TlsError>> {
    let cert_error = |reason: String| TlsError {
        file: TlsFile::Cert { sni },
        path: files.cert.clone(),
        reason,
    };
    let key_error = |reason: String| TlsError {
        file: TlsFile::Key { sni },
        path: files.key.clone(),
        reason,
    };
    let chain = read_certs(&files.cert).map_err(cert_error);
    let key = read_key(&files.key).map_err(key_error);
    let (chain, key) = match (chain, key) {
        (Ok(chain), Ok(key)) => (chain, key),
        (chain, key) => return Err([chain.err(), key.err()].into_iter().flatten().collect()),
    };
    let mut errors: Vec<TlsError> = (chain.iter())
        .filter_map(|der| validity_problem(der).map(cert_error))
        .collect();
    let signer = match provider.key_provider.load_private_key(key) {
        Ok(signer) => signer,
        Err(err) => {
            errors.push(key_error(format!("not a usable private key: {err}")));
            return Err(errors);
        }
    };
    let certified = CertifiedKey::new(chain, signer);
    if let Err(err) = certified.keys_match() {
        let reason = match err {
            rustls::Error::InconsistentKeys(_) => format!(
                "this key does not match the certificate in {}",
                shown(&files.cert)
            ),
            other => format!("cannot check it against its certificate: {other}"),
        };
        errors.push(key_error(reason));
    }
    if errors.is_empty() {
        Ok(certified)
    } else {
        Err(errors)
    }
}

/// Every certificate in a PEM file; at least one.
fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(pem_problem)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(pem_problem)?;
    if certs.is_empty() {
        return Err("no PEM certificate (-----BEGIN CERTIFICATE-----) in it".to_string());
    }
    for der in &certs {
        if let Err(err) = x509_parser::parse_x509_certificate(der) {
            return Err(format!("a certificate in it cannot be read: {err}"));
        }
    }
    Ok(certs)
}

/// The first private key in a PEM file.
fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_file(path).map_err(|err| match err {
        rustls_pki_types::pem::Error::NoItemsFound => {
            "no PEM private key (-----BEGIN PRIVATE KEY-----, RSA or EC) in it".to_string()
        }
        other => pem_problem(other),
    })
}

fn pem_problem(err: rustls_pki_types::pem::Error) -> String {
    match err {
        rustls_pki_types::pem::Error::Io(err) => format!("cannot read it: {err}"),
        other => format!("not a valid PEM file: {other}"),
    }
}

/// Why `der` is not valid now (expired, or not valid yet), if it is not.
fn validity_problem(der: &CertificateDer<'_>) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    let validity = cert.validity();
    let subject = cert.subject().to_string();
    if validity.not_after.timestamp() < now {
        return Some(format!(
            "the certificate of {subject:?} expired on {}",
            validity.not_after
        ));
    }
    if validity.not_before.timestamp() > now {
        return Some(format!(
            "the certificate of {subject:?} is not valid before {}",
            validity.not_before
        ));
    }
    None
}

/// A certificate's subject (RFC 4514 text) and its common name, if it can be read.
pub(super) fn subject_of(der: &CertificateDer<'_>) -> (Option<String>, Option<String>) {
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else {
        return (None, None);
    };
    let subject = cert.subject();
    let common_name = (subject.iter_common_name())
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(str::to_string);
    (Some(subject.to_string()), common_name)
}

/// The client certificate verifier `client_auth` asks for, over `client_ca`'s certificates.
fn client_verifier(
    provider: &Arc<CryptoProvider>,
    settings: &TlsSettings,
    errors: &mut Vec<TlsError>,
) -> Option<Arc<dyn rustls::server::danger::ClientCertVerifier>> {
    let path = settings.client_ca.as_ref()?;
    if settings.client_auth == ClientAuth::None {
        return None;
    }
    let error = |reason: String| TlsError {
        file: TlsFile::ClientCa,
        path: path.clone(),
        reason,
    };
    let certs = match read_certs(path) {
        Ok(certs) => certs,
        Err(reason) => {
            errors.push(error(reason));
            return None;
        }
    };
    errors.extend((certs.iter()).filter_map(|der| validity_problem(der).map(error)));
    let mut roots = RootCertStore::empty();
    for der in certs {
        if let Err(err) = roots.add(der) {
            errors.push(error(format!("not a usable CA certificate: {err}")));
        }
    }
    let builder =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::clone(provider));
    let builder = match settings.client_auth {
        ClientAuth::Optional => builder.allow_unauthenticated(),
        ClientAuth::Required | ClientAuth::None => builder,
    };
    match builder.build() {
        Ok(verifier) => Some(verifier),
        Err(err) => {
            errors.push(error(format!("not a usable CA: {err}")));
            None
        }
    }
}

/// Picks the certificate by the client's SNI name, else the default.
#[derive(Debug)]
struct BySni {
    default: Option<Arc<CertifiedKey>>,
    /// Lower-case host names.
    by_name: HashMap<String, Arc<CertifiedKey>>,
}

impl ResolvesServerCert for BySni {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let named = hello
            .server_name()
            .and_then(|name| self.by_name.get(&name.to_ascii_lowercase()));
        named.or(self.default.as_ref()).cloned()
    }
}

/// rustls's limit on what one connection holds encrypted and unsent.
pub(crate) fn limit_buffers(tls: &mut rustls::ServerConnection) {
    tls.set_buffer_limit(Some(TLS_BUFFER_LIMIT));
}
