//! The CA keys that sign, loaded only by commands that sign.
//!
//! A single-CA home has one: `ca.key` for `ca.crt`. A hierarchy has the current intermediate
//! (named by `intermediate.crt`), which signs every new certificate, and the earlier
//! intermediates that have not expired: certificates they signed stay valid until they end
//! or are revoked, so each keeps signing its own CRL, and nothing else.

use rcgen::{Issuer, KeyPair};
use rustls::pki_types::CertificateDer;
use x509_parser::prelude::FromDer;

use super::{CaError, Home};
use crate::fsutil;
use crate::pki::{self, inspect, keyfile, PkiError};

/// One CA certificate with its key.
pub struct IssuingCa {
    /// The intermediate's serial (lower-case hex); `None` for a single CA.
    id: Option<String>,
    key: KeyPair,
    /// The CA certificate, DER.
    der: Vec<u8>,
    /// What follows a leaf in the files the CA hands out: the intermediate and, for an
    /// imported one, the rest of its chain below the root. Empty for a single CA.
    chain_pem: String,
    not_after: i64,
}

impl std::fmt::Debug for IssuingCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuingCa")
            .field("id", &self.id)
            .field("key", &"<redacted>")
            .finish()
    }
}

impl IssuingCa {
    fn new(
        id: Option<String>,
        key: KeyPair,
        chain: &[Vec<u8>],
        file: &str,
    ) -> Result<Self, CaError> {
        let der = chain
            .first()
            .cloned()
            .ok_or_else(|| PkiError::Parse(format!("{file} holds no certificate")))?;
        let (_, cert) = x509_parser::certificate::X509Certificate::from_der(&der)
            .map_err(|e| PkiError::Parse(format!("{file}: {e}")))?;
        if cert.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
            return Err(PkiError::Key(format!(
                "the key of {file} does not belong to it: the key or the certificate was replaced"
            ))
            .into());
        }
        let not_after = cert.validity().not_after.timestamp();
        let chain_pem = if id.is_some() {
            chain.iter().map(|d| inspect::der_to_pem(d)).collect()
        } else {
            String::new()
        };
        Ok(IssuingCa {
            id,
            key,
            der,
            chain_pem,
            not_after,
        })
    }

    /// The intermediate's serial; `None` for a single CA.
    pub fn id(&self) -> Option<&str> {
        self.id.as_deref()
    }

    /// The CA certificate, DER.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// The PEM that follows a leaf in certificate files (empty for a single CA).
    pub fn chain_pem(&self) -> &str {
        &self.chain_pem
    }

    /// The CA certificate's notAfter (Unix seconds): nothing it signs may outlive it.
    pub fn not_after(&self) -> i64 {
        self.not_after
    }

    /// rcgen's view, for signing.
    pub(crate) fn issuer(&self) -> Result<Issuer<'static, &KeyPair>, CaError> {
        Ok(
            Issuer::from_ca_cert_der(&CertificateDer::from(self.der.as_slice()), &self.key)
                .map_err(PkiError::from)?,
        )
    }
}

/// The keys of a CA home that sign: the current issuing CA and the earlier intermediates.
#[derive(Debug)]
pub struct Signer {
    current: IssuingCa,
    earlier: Vec<IssuingCa>,
}

impl Signer {
    /// Loads the signing keys of `home` (refusing loose permissions, decrypting with
    /// `passphrase` if needed) and checks that each belongs to its certificate.
    pub fn load(home: &Home, passphrase: Option<&[u8]>) -> Result<Signer, CaError> {
        if home.has_intermediate() {
            return Self::load_hierarchy(home, None, passphrase);
        }
        if !home.ca_key().exists() {
            return Err(CaError::NotInitialized(home.display()));
        }
        let key = keyfile::load(&home.ca_key(), passphrase)?;
        let pem = read_text(&home.ca_cert())?;
        let chain = inspect::pem_certificates(&pem)
            .map_err(|e| PkiError::Parse(format!("{}: {e}", home.ca_cert().display())))?;
        Ok(Signer {
            current: IssuingCa::new(None, key, &chain, &home.ca_cert().display().to_string())
                .map_err(|e| match e {
                    CaError::Pki(PkiError::Key(_)) => PkiError::Key(format!(
                        "{} does not belong to {}: the key or the certificate was replaced",
                        home.ca_key().display(),
                        home.ca_cert().display()
                    ))
                    .into(),
                    other => other,
                })?,
            earlier: Vec::new(),
        })
    }

    /// Loads the keys as they will be once intermediate `serial` is current: the check a
    /// rotation makes before it changes anything.
    pub fn load_with_current(
        home: &Home,
        serial: &str,
        passphrase: Option<&[u8]>,
    ) -> Result<Signer, CaError> {
        Self::load_hierarchy(home, Some(serial), passphrase)
    }

    fn load_hierarchy(
        home: &Home,
        current: Option<&str>,
        passphrase: Option<&[u8]>,
    ) -> Result<Signer, CaError> {
        let path = match current {
            Some(serial) => home.intermediate_cert_of(serial),
            None => home.intermediate_cert(),
        };
        let chain = inspect::pem_certificates(&read_text(&path)?)
            .map_err(|e| PkiError::Parse(format!("{}: {e}", path.display())))?;
        let current_serial = serial_of(&chain[0], &path.display().to_string())?;
        let key = keyfile::load(&home.intermediate_key_of(&current_serial), passphrase)?;
        let current = IssuingCa::new(
            Some(current_serial.clone()),
            key,
            &chain,
            &path.display().to_string(),
        )?;
        let now = pki::now().unix_timestamp();
        let mut earlier = Vec::new();
        let mut files: Vec<_> = std::fs::read_dir(home.intermediates())
            .map(|rd| rd.filter_map(Result::ok).map(|e| e.path()).collect())
            .unwrap_or_default();
        files.sort();
        for file in files {
            if file.extension().is_none_or(|e| e != "crt") {
                continue;
            }
            let Some(serial) = file
                .file_stem()
                .and_then(|s| s.to_str())
                .map(str::to_string)
            else {
                continue;
            };
            if serial == current_serial {
                continue;
            }
            let key_path = home.intermediate_key_of(&serial);
            let Ok(chain) = read_text(&file).and_then(|t| Ok(inspect::pem_certificates(&t)?))
            else {
                continue;
            };
            // An expired intermediate vouches for nothing any more: its certificates have
            // ended too. One without a key was retired by hand.
            let ended = chain
                .first()
                .and_then(|d| x509_parser::parse_x509_certificate(d).ok())
                .is_none_or(|(_, c)| c.validity().not_after.timestamp() <= now);
            if ended || !key_path.exists() {
                continue;
            }
            let key = keyfile::load(&key_path, passphrase)?;
            earlier.push(IssuingCa::new(
                Some(serial),
                key,
                &chain,
                &file.display().to_string(),
            )?);
        }
        Ok(Signer { current, earlier })
    }

    /// Whether intermediate `serial` is the one `intermediate.crt` names.
    pub fn is_current(home: &Home, serial: &str) -> bool {
        read_text(&home.intermediate_cert())
            .ok()
            .and_then(|t| inspect::pem_certificates(&t).ok())
            .and_then(|c| {
                c.first()
                    .and_then(|d| serial_of(d, "intermediate.crt").ok())
            })
            .is_some_and(|s| s == serial)
    }

    /// The CA that signs new certificates.
    pub fn current(&self) -> &IssuingCa {
        &self.current
    }

    /// Every CA whose certificates may still be in use: the current one first.
    pub fn all(&self) -> impl Iterator<Item = &IssuingCa> {
        std::iter::once(&self.current).chain(&self.earlier)
    }

    /// The CA that signed certificates recorded with `issuer` (a ledger record's field).
    pub fn find(&self, issuer: Option<&str>) -> Option<&IssuingCa> {
        self.all().find(|ca| ca.id() == issuer)
    }

    /// The certificates the server accepts client certificates from, DER: the issuing CAs
    /// themselves, not the root above them. A leaf must be signed directly by one of them,
    /// so a certificate another branch of an organization's PKI issued under the same root
    /// can never pass as one of ours, whatever extensions it carries.
    pub fn anchors(&self) -> Vec<Vec<u8>> {
        self.all().map(|ca| ca.der.clone()).collect()
    }
}

fn read_text(path: &std::path::Path) -> Result<String, CaError> {
    String::from_utf8(fsutil::read(path)?)
        .map_err(|_| PkiError::Parse(format!("{} is not text", path.display())).into())
}

/// A certificate's serial, lower-case hex.
pub(super) fn serial_of(der: &[u8], what: &str) -> Result<String, CaError> {
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(der)
        .map_err(|e| PkiError::Parse(format!("{what}: {e}")))?;
    Ok(hex::encode(cert.raw_serial()))
}
