//! `[server.tls]`, both phases: reading the table (phase 1) and checking it — its files loaded
//! and validated — into the server's [`CertStore`] (phase 2), every problem reported at the key
//! or value it comes from (a bad certificate at the `cert` that names its file).
//!
//! ```toml
//! [server.tls]
//! cert = "server.pem"              # chain, leaf first (PEM); paths relative to this file
//! key = "server.key"               # its private key (PEM: PKCS#8, PKCS#1 or SEC1)
//! client_ca = "clients-ca.pem"     # CAs of client certificates (optional)
//! client_auth = "required"         # "none" | "optional" | "required" (default: required with
//!                                  # client_ca, else none)
//! alpn = ["h2", "http/1.1"]        # ALPN protocols, preferred first (optional)
//! min_version = "1.2"              # "1.2" (default) or "1.3"
//!
//! [[server.tls.sni]]               # another certificate, for clients asking for these names
//! names = ["api.example.com"]
//! cert = "api.pem"
//! key = "api.key"
//! ```
//!
//! Stream endpoints only: a datagram has no connection to run TLS on (DTLS is not supported).

use std::ops::Range;
use std::sync::Arc;

use toml::Spanned;

use super::error::ConfigErrorKind;
use super::server::ServerCheck;
use super::server_limits::strings;
use super::socket::Rule;
use super::table::{Outer, TableReader};
use crate::tls::{CertFiles, CertStore, ClientAuth, MinVersion, SniCert, TlsFile, TlsSettings};

/// The keys of `[server.tls]`.
pub(super) const TLS_KEYS: &[&str] = &[
    "cert",
    "key",
    "client_ca",
    "client_auth",
    "alpn",
    "min_version",
    "sni",
];

/// The keys of each `[[server.tls.sni]]`.
const SNI_KEYS: &[&str] = &["names", "cert", "key"];

const NEEDS_CERT: &str =
    "[server.tls] needs cert and key (the PEM files of the certificate and its private key)";
const NEEDS_SNI: &str = "each [[server.tls.sni]] needs names, cert and key";

/// `[server.tls]` as written.
#[derive(Debug)]
pub(super) struct RawTls {
    /// The table's header: where a problem of the whole table is reported.
    pub span: Range<usize>,
    pub cert: Option<Spanned<String>>,
    pub key: Option<Spanned<String>>,
    pub client_ca: Option<Spanned<String>>,
    pub client_auth: Option<Spanned<String>>,
    pub alpn: Option<Vec<Spanned<String>>>,
    pub min_version: Option<Spanned<String>>,
    pub sni: Vec<RawSni>,
}

/// One `[[server.tls.sni]]` as written.
#[derive(Debug)]
pub(super) struct RawSni {
    pub span: Range<usize>,
    pub names: Option<Vec<Spanned<String>>>,
    pub cert: Option<Spanned<String>>,
    pub key: Option<Spanned<String>>,
}

/// Phase 1: `[server.tls]` of the server `server` reads, if it has one.
pub(super) fn read(
    server: &mut TableReader<'_>,
    server_keys: &'static [&'static str],
) -> Option<RawTls> {
    let table = server.table("tls")?;
    let span = table.span();
    let mut reader = server.nested(table, "tls.");
    let sni = read_sni(&mut reader);
    let raw = RawTls {
        span,
        cert: reader.string("cert"),
        key: reader.string("key"),
        client_ca: reader.string("client_ca"),
        client_auth: reader.string("client_auth"),
        alpn: strings(&mut reader, "alpn", "a list of protocol names"),
        min_version: reader.string("min_version"),
        sni,
    };
    let outer = Outer {
        keys: server_keys,
        table: "[[server]]",
        header: "[server.tls]",
    };
    reader.refuse_others_within(TLS_KEYS, outer);
    server.absorb(reader);
    Some(raw)
}

/// `[[server.tls.sni]]`: an array of tables.
fn read_sni(tls: &mut TableReader<'_>) -> Vec<RawSni> {
    let Some(value) = tls.value("sni") else {
        return Vec::new();
    };
    let expected = "an array of tables ([[server.tls.sni]])";
    let Some(items) = value.get_ref().as_array() else {
        tls.wrong_type("sni", value, expected, None);
        return Vec::new();
    };
    let mut entries = Vec::new();
    for item in items.iter() {
        let Some(table) = item.get_ref().as_table() else {
            tls.wrong_type("sni", item, expected, None);
            continue;
        };
        let mut reader = tls.nested(Spanned::new(item.span(), table), "tls.sni.");
        entries.push(RawSni {
            span: item.span(),
            names: strings(&mut reader, "names", "a list of host names"),
            cert: reader.string("cert"),
            key: reader.string("key"),
        });
        reader.refuse_others(SNI_KEYS, None);
        tls.absorb(reader);
    }
    entries
}

/// A datagram has no connection to run TLS on.
const STREAM_ONLY: Rule = Rule {
    key: "tls",
    applies_to: "stream (tcp and unix) endpoints: a datagram has no connection for TLS, and \
                 DTLS is not supported",
    test: |endpoint| endpoint.kind().is_stream(),
};

impl ServerCheck<'_, '_> {
    /// Phase 2: the server's TLS store, its files loaded and checked; `None` when it has no
    /// `[server.tls]`, or when something is wrong (reported).
    pub(super) fn tls(&mut self) -> Option<Arc<CertStore>> {
        let raw = self.raw.tls.as_ref()?;
        let table = Spanned::new(raw.span.clone(), ());
        self.applicable(Some(&table), &STREAM_ONLY)?;
        let default = self.cert_files(raw.span.clone(), raw.cert.as_ref(), raw.key.as_ref());
        let sni = self.sni_entries(&raw.sni);
        if raw.cert.is_none() && raw.key.is_none() && raw.sni.is_empty() {
            let kind = ConfigErrorKind::MissingKey {
                key: "tls.cert",
                needs: NEEDS_CERT,
            };
            self.report(raw.span.clone(), kind);
            return None;
        }
        let client_auth = self.client_auth(raw);
        let alpn = self.alpn(raw.alpn.as_deref());
        let min_version = self.min_version(raw.min_version.as_ref());
        let valid = default.is_some()
            && sni.is_some()
            && client_auth.is_some()
            && alpn.is_some()
            && min_version.is_some();
        // The files are checked even when a value is wrong, so one `check` shows every problem.
        let settings = TlsSettings {
            default: default.flatten(),
            sni: sni.unwrap_or_default(),
            client_ca: raw.client_ca.as_ref().map(|ca| self.path(ca)),
            client_auth: client_auth.unwrap_or(ClientAuth::None),
            alpn: alpn.unwrap_or_default(),
            min_version: min_version.unwrap_or(MinVersion::Tls12),
        };
        let name = self.raw.name.get_ref().clone();
        match CertStore::load(&name, settings) {
            Ok(store) => valid.then(|| Arc::new(store)),
            Err(errors) => {
                for error in errors {
                    self.file_problem(raw, &error);
                }
                None
            }
        }
    }

    /// A path of the config, resolved against its folder.
    fn path(&self, written: &Spanned<String>) -> std::path::PathBuf {
        self.base_dir().join(written.get_ref())
    }

    /// `cert` and `key` of a table: both or neither (`Some(None)`); `None` when one is missing
    /// (reported at `table`).
    fn cert_files(
        &mut self,
        table: Range<usize>,
        cert: Option<&Spanned<String>>,
        key: Option<&Spanned<String>>,
    ) -> Option<Option<CertFiles>> {
        match (cert, key) {
            (Some(cert), Some(key)) => Some(Some(CertFiles {
                cert: self.path(cert),
                key: self.path(key),
            })),
            (None, None) => Some(None),
            (Some(_), None) | (None, Some(_)) => {
                let key = if cert.is_some() {
                    "tls.key"
                } else {
                    "tls.cert"
                };
                let kind = ConfigErrorKind::MissingKey {
                    key,
                    needs: NEEDS_CERT,
                };
                self.report(table, kind);
                None
            }
        }
    }

    /// Every `[[server.tls.sni]]`: names (valid host names, each in one entry only), cert, key.
    fn sni_entries(&mut self, raw: &[RawSni]) -> Option<Vec<SniCert>> {
        let mut entries = Some(Vec::new());
        let mut seen = std::collections::HashSet::new();
        for entry in raw {
            let (Some(names), Some(cert), Some(key)) = (&entry.names, &entry.cert, &entry.key)
            else {
                let missing = [
                    (entry.names.is_none(), "tls.sni.names"),
                    (entry.cert.is_none(), "tls.sni.cert"),
                    (entry.key.is_none(), "tls.sni.key"),
                ];
                for (_, key) in missing.into_iter().filter(|(gone, _)| *gone) {
                    let kind = ConfigErrorKind::MissingKey {
                        key,
                        needs: NEEDS_SNI,
                    };
                    self.report(entry.span.clone(), kind);
                }
                entries = None;
                continue;
            };
            let mut checked = Vec::new();
            for name in names {
                let lower = name.get_ref().to_ascii_lowercase();
                let message = if rustls_pki_types::DnsName::try_from(lower.as_str()).is_err()
                    || lower.parse::<std::net::IpAddr>().is_ok()
                {
                    format!("{:?} is not a DNS host name", name.get_ref())
                } else if !seen.insert(lower.clone()) {
                    format!("{lower:?} is already listed by another sni entry")
                } else {
                    checked.push(lower);
                    continue;
                };
                let kind = ConfigErrorKind::BadValue {
                    key: "tls.sni.names",
                    message,
                };
                self.report(name.span(), kind);
                entries = None;
            }
            if names.is_empty() {
                let message = "must list at least one host name".to_string();
                let kind = ConfigErrorKind::BadValue {
                    key: "tls.sni.names",
                    message,
                };
                self.report(entry.span.clone(), kind);
                entries = None;
            }
            let files = CertFiles {
                cert: self.path(cert),
                key: self.path(key),
            };
            if let Some(entries) = entries.as_mut() {
                entries.push(SniCert {
                    names: checked,
                    files,
                });
            }
        }
        entries
    }

    /// `client_auth`, with `client_ca` required unless it is `none`.
    fn client_auth(&mut self, raw: &RawTls) -> Option<ClientAuth> {
        let Some(written) = &raw.client_auth else {
            return Some(if raw.client_ca.is_some() {
                ClientAuth::Required
            } else {
                ClientAuth::None
            });
        };
        let auth = match written.get_ref().as_str() {
            "none" => ClientAuth::None,
            "optional" => ClientAuth::Optional,
            "required" => ClientAuth::Required,
            other => {
                let message =
                    format!("{other:?} is not one of \"none\", \"optional\", \"required\"");
                let kind = ConfigErrorKind::BadValue {
                    key: "tls.client_auth",
                    message,
                };
                self.report(written.span(), kind);
                return None;
            }
        };
        if auth != ClientAuth::None && raw.client_ca.is_none() {
            let message = format!(
                "\"{}\" needs client_ca: the CA certificates that sign the clients' certificates",
                auth.name()
            );
            let kind = ConfigErrorKind::BadValue {
                key: "tls.client_auth",
                message,
            };
            self.report(written.span(), kind);
            return None;
        }
        Some(auth)
    }

    /// `alpn`: protocol names of 1 to 255 bytes (RFC 7301 §3.1).
    fn alpn(&mut self, written: Option<&[Spanned<String>]>) -> Option<Vec<Vec<u8>>> {
        let mut protocols = Some(Vec::new());
        for name in written.unwrap_or_default() {
            let len = name.get_ref().len();
            if (1..=255).contains(&len) {
                if let Some(protocols) = protocols.as_mut() {
                    protocols.push(name.get_ref().as_bytes().to_vec());
                }
                continue;
            }
            let message = format!("an ALPN protocol name has 1 to 255 bytes, not {len}");
            let kind = ConfigErrorKind::BadValue {
                key: "tls.alpn",
                message,
            };
            self.report(name.span(), kind);
            protocols = None;
        }
        protocols
    }

    /// `min_version`: "1.2" (the default) or "1.3".
    fn min_version(&mut self, written: Option<&Spanned<String>>) -> Option<MinVersion> {
        let Some(written) = written else {
            return Some(MinVersion::Tls12);
        };
        match written.get_ref().as_str() {
            "1.2" => Some(MinVersion::Tls12),
            "1.3" => Some(MinVersion::Tls13),
            other => {
                let message =
                    format!("{other:?} is not a TLS version sockserv serves: \"1.2\" or \"1.3\"");
                let kind = ConfigErrorKind::BadValue {
                    key: "tls.min_version",
                    message,
                };
                self.report(written.span(), kind);
                None
            }
        }
    }

    /// A problem of a file, at the key that names it.
    fn file_problem(&mut self, raw: &RawTls, error: &crate::tls::TlsError) {
        let sni = |index: Option<usize>| index.and_then(|i| raw.sni.get(i));
        let (key, span) = match error.file {
            TlsFile::Cert { sni: None } => ("tls.cert", raw.cert.as_ref().map(Spanned::span)),
            TlsFile::Key { sni: None } => ("tls.key", raw.key.as_ref().map(Spanned::span)),
            TlsFile::Cert { sni: index } => (
                "tls.sni.cert",
                sni(index).and_then(|e| e.cert.as_ref()).map(Spanned::span),
            ),
            TlsFile::Key { sni: index } => (
                "tls.sni.key",
                sni(index).and_then(|e| e.key.as_ref()).map(Spanned::span),
            ),
            TlsFile::ClientCa => ("tls.client_ca", raw.client_ca.as_ref().map(Spanned::span)),
        };
        let span = span.unwrap_or_else(|| raw.span.clone());
        let message = error.to_string();
        self.report(span, ConfigErrorKind::BadValue { key, message });
    }
}
