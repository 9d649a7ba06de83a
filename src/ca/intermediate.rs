//! Intermediates: making one under the root, checking one an organization's PKI issued, and
//! installing it in HOME.
//!
//! Every intermediate lives in `HOME/intermediates/SERIAL.{crt,key}`. Which one signs is
//! named by `HOME/intermediate.crt` alone, so making an intermediate current is one atomic
//! file replacement ([`activate`]): a crash leaves either the old one or the new one in force.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{Issuer, KeyPair};
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::WebPkiClientVerifier;
use time::{Duration, OffsetDateTime};
use x509_parser::prelude::FromDer;

use super::signer::serial_of;
use super::{CaError, Home, INTERMEDIATE_LIFETIME_DAYS};
use crate::fsutil::{self, PUBLIC_MODE, SECRET_MODE};
use crate::pki::build::{self, KeyAlgorithm, LeafKind, LeafRequest};
use crate::pki::{self, inspect, keyfile, PkiError};

/// A new intermediate, not yet on disk.
pub struct Made {
    /// Its serial, lower-case hex: its file name.
    pub serial: String,
    /// The intermediate, then the rest of its chain below the root, PEM.
    pub chain_pem: String,
    /// Its key.
    pub key: KeyPair,
}

/// The common name of an intermediate made under the root named `root_name`: dated, with a
/// random tag, so that no two intermediates of one root share a subject (path building in
/// other tools goes by names first).
fn intermediate_name(root_name: &str, now: OffsetDateTime) -> Result<String, CaError> {
    let base = root_name
        .strip_suffix("Root CA")
        .map(|b| format!("{b}Intermediate CA"))
        .unwrap_or_else(|| format!("{root_name} Intermediate"));
    let mut tag = [0u8; 3];
    pki::fill_random(&mut tag)?;
    Ok(format!(
        "{base} {:04}-{:02}-{:02} {}",
        now.year(),
        u8::from(now.month()),
        now.day(),
        hex::encode(tag)
    ))
}

/// Makes a new intermediate signed by the root (`root_pem`, `root_key`), ending two years from
/// now or with the root, whichever is first.
pub fn sign_new(
    root_name: &str,
    algorithm: KeyAlgorithm,
    root_pem: &str,
    root_key: &KeyPair,
    now: OffsetDateTime,
) -> Result<Made, CaError> {
    let root_der = inspect::pem_to_der(root_pem)?;
    let (_, root) = x509_parser::certificate::X509Certificate::from_der(&root_der)
        .map_err(|e| PkiError::Parse(format!("root certificate: {e}")))?;
    let root_end = OffsetDateTime::from_unix_timestamp(root.validity().not_after.timestamp())
        .map_err(|_| PkiError::Parse("root certificate: bad notAfter".into()))?;
    let not_after = (now + Duration::days(INTERMEDIATE_LIFETIME_DAYS)).min(root_end);
    if not_after <= now + Duration::days(1) {
        return Err(PkiError::Invalid(
            "the root certificate ends within a day: a new intermediate would be useless; roll the root over first".into(),
        )
        .into());
    }
    let issuer = Issuer::from_ca_cert_der(&CertificateDer::from(root_der.as_slice()), root_key)
        .map_err(PkiError::from)?;
    let key = algorithm.generate()?;
    let (pem, der) = build::intermediate_certificate(
        &intermediate_name(root_name, now)?,
        &key,
        &issuer,
        now,
        not_after,
    )?;
    Ok(Made {
        serial: serial_of(&der, "new intermediate")?,
        chain_pem: pem,
        key,
    })
}

/// An intermediate an organization's PKI issued, checked and ready to install.
pub struct Imported {
    /// The intermediate.
    pub made: Made,
    /// The organization's root (the trust anchor for clients), PEM.
    pub anchor_pem: String,
    /// The root's notAfter (Unix seconds).
    pub anchor_not_after: i64,
    /// The key's algorithm.
    pub algorithm: KeyAlgorithm,
}

/// Reads and checks an intermediate to import: `cert` holds the chain (the intermediate
/// first, the organization's self-signed root last), `key` its private key (0600). Checked:
/// the key belongs to the certificate; CA:TRUE, keyCertSign and cRLSign; valid now; and a
/// certificate it signs verifies up to the root (rustls' own path validation, on a throwaway
/// leaf).
pub fn read_import(
    cert: &Path,
    key: &Path,
    passphrase: Option<&[u8]>,
) -> Result<Imported, CaError> {
    let bad =
        |m: String| -> CaError { PkiError::Invalid(format!("{}: {m}", cert.display())).into() };
    let text = String::from_utf8(fsutil::read(cert)?).map_err(|_| bad("not a PEM file".into()))?;
    let chain = inspect::pem_certificates(&text).map_err(|e| bad(e.to_string()))?;
    let key = keyfile::load(key, passphrase)?;
    let algorithm = if key.algorithm() == &rcgen::PKCS_ECDSA_P256_SHA256 {
        KeyAlgorithm::EcdsaP256
    } else if key.algorithm() == &rcgen::PKCS_ED25519 {
        KeyAlgorithm::Ed25519
    } else {
        return Err(bad(
            "the key is neither ECDSA P-256 nor Ed25519, the algorithms mcp-zt signs with".into(),
        ));
    };
    let (_, first) = x509_parser::certificate::X509Certificate::from_der(&chain[0])
        .map_err(|e| bad(format!("first certificate: {e}")))?;
    if first.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
        return Err(bad(
            "the key does not belong to the first certificate of the file".into(),
        ));
    }
    if !first.is_ca() {
        return Err(bad(
            "the first certificate is not a CA (basicConstraints CA:TRUE missing)".into(),
        ));
    }
    match first.key_usage() {
        Ok(Some(ku)) if ku.value.key_cert_sign() && ku.value.crl_sign() => {}
        _ => {
            return Err(bad(
                "the first certificate's key usage must allow keyCertSign and cRLSign".into(),
            ))
        }
    }
    let now = pki::now().unix_timestamp();
    let validity = first.validity();
    if validity.not_before.timestamp() > now || validity.not_after.timestamp() <= now {
        return Err(bad(format!(
            "the first certificate is valid from {} to {}, not now",
            pki::rfc3339(validity.not_before.timestamp()),
            pki::rfc3339(validity.not_after.timestamp())
        )));
    }
    let last_der = chain.last().cloned().unwrap_or_default();
    let (_, last) = x509_parser::certificate::X509Certificate::from_der(&last_der)
        .map_err(|e| bad(format!("last certificate: {e}")))?;
    if last.subject().as_raw() != last.issuer().as_raw() {
        return Err(bad(
            "the file must end with the organization's self-signed root certificate (append it after the intermediate)".into(),
        ));
    }
    let anchor_not_after = last.validity().not_after.timestamp();
    let below_root: Vec<Vec<u8>> = if chain.len() > 1 {
        chain[..chain.len() - 1].to_vec()
    } else {
        chain.clone()
    };
    check_signs_for_root(
        &key,
        &chain[0],
        &below_root[1.min(below_root.len())..],
        &last_der,
    )
    .map_err(|e| {
        bad(format!(
            "a certificate this intermediate signs does not verify up to the root: {e}"
        ))
    })?;
    Ok(Imported {
        made: Made {
            serial: serial_of(&chain[0], "imported intermediate")?,
            chain_pem: below_root.iter().map(|d| inspect::der_to_pem(d)).collect(),
            key,
        },
        anchor_pem: inspect::der_to_pem(&last_der),
        anchor_not_after,
        algorithm,
    })
}

/// Signs a throwaway client certificate with `key` (the CA certificate `ca_der`) and has
/// rustls verify it against `root` with `middle` as the intermediates in between.
fn check_signs_for_root(
    key: &KeyPair,
    ca_der: &[u8],
    middle: &[Vec<u8>],
    root: &[u8],
) -> Result<(), String> {
    let issuer =
        Issuer::from_ca_cert_der(&CertificateDer::from(ca_der), key).map_err(|e| e.to_string())?;
    // A client certificate is what the CA will sign; checked as one.
    let client = build::leaf_certificate(
        &LeafRequest {
            name: "import-check".into(),
            spiffe_id: "spiffe://import.check/client/import-check".into(),
            extra_sans: vec![],
            kind: LeafKind::Client {
                role: "check".into(),
                role_oid: Default::default(),
            },
            lifetime: Duration::minutes(5),
            crl_url: None,
        },
        &issuer,
        pki::now(),
    )
    .map_err(|e| e.to_string())?;
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from(root.to_vec()))
        .map_err(|e| e.to_string())?;
    let mut chain: Vec<CertificateDer<'static>> = vec![CertificateDer::from(ca_der.to_vec())];
    chain.extend(middle.iter().map(|d| CertificateDer::from(d.clone())));
    let verifier =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots), crate::tls::provider())
            .build()
            .map_err(|e| e.to_string())?;
    verifier
        .verify_client_cert(
            &CertificateDer::from(client.cert_der),
            &chain,
            UnixTime::now(),
        )
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Writes a new intermediate into `HOME/intermediates/` (never replacing a file), its key
/// encrypted with `passphrase` when one is given. Each path written is pushed to `written`.
pub fn install(
    home: &Home,
    made: &Made,
    passphrase: Option<&[u8]>,
    written: &mut Vec<PathBuf>,
) -> Result<(), CaError> {
    fsutil::ensure_private_dir(&home.intermediates())?;
    let key_path = home.intermediate_key_of(&made.serial);
    fsutil::write_new(
        &key_path,
        keyfile::to_pem(&made.key, passphrase)?.as_bytes(),
        SECRET_MODE,
    )?;
    written.push(key_path);
    let cert_path = home.intermediate_cert_of(&made.serial);
    fsutil::write_new(&cert_path, made.chain_pem.as_bytes(), PUBLIC_MODE)?;
    written.push(cert_path);
    Ok(())
}

/// Makes intermediate `serial` the one that signs: one atomic replacement of
/// `HOME/intermediate.crt`.
pub fn activate(home: &Home, serial: &str) -> Result<(), CaError> {
    let chain = fsutil::read(&home.intermediate_cert_of(serial))?;
    fsutil::write_atomic(&home.intermediate_cert(), &chain, PUBLIC_MODE)?;
    Ok(())
}
