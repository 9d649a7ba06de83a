//! `ca rotate --root`: a root rollover with a cross-signed period.
//!
//! 1. [`prepare`]: a new root key and self-signed root, a cross certificate (the new root's
//!    name and key, signed by the old root), and a new intermediate under the new root whose
//!    chain carries the cross certificate. `ca.crt` becomes the new root followed by the old
//!    one. The caller then makes the intermediate current ([`super::rotate::activate`], or the
//!    running server) and [`commit_root_key`] puts the new root key in place.
//!    During this period every client verifies the server: one that still trusts only the old
//!    root follows intermediate → cross certificate → old root; one with the new `ca.crt`
//!    stops at the new root.
//! 2. [`finish`], once every client has the new `ca.crt`: `ca.crt` is the new root alone and
//!    the intermediate's chain drops the cross certificate.
//!
//! Client certificates are not affected: the server trusts them by their intermediate.

use std::path::{Path, PathBuf};

use rcgen::Issuer;
use rustls::pki_types::CertificateDer;
use time::OffsetDateTime;

use super::intermediate::{self, Made};
use super::signer::serial_of;
use super::{CaError, Home, CA_LIFETIME_DAYS};
use crate::fsutil::{self, PUBLIC_MODE, SECRET_MODE};
use crate::ledger::{CaMeta, Layout};
use crate::pki::build::{self, CaRole};
use crate::pki::{self, inspect, keyfile, PkiError};

/// Where the new root key went and which intermediate to make current.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// The new intermediate's serial.
    pub intermediate: String,
    /// The new root's serial.
    pub root: String,
    /// The new root key: `DIR/root.key` (offline) or `HOME/root.key.next` until
    /// [`commit_root_key`].
    pub root_key: PathBuf,
}

/// The new root key's name in HOME until the rollover is in force.
pub fn pending_root_key(home: &Home) -> PathBuf {
    home.dir().join("root.key.next")
}

/// Makes the new root, the cross certificate and the new intermediate (see the module
/// documentation). `offline`: write the new root key to `DIR/root.key` instead of HOME.
pub fn prepare(
    home: &Home,
    meta: &CaMeta,
    old_root_key: &Path,
    root_passphrase: Option<&[u8]>,
    ca_passphrase: Option<&[u8]>,
    offline: Option<&Path>,
) -> Result<Prepared, CaError> {
    if meta.layout != Layout::Hierarchy {
        return Err(PkiError::Invalid(
            "a root rollover needs a home with its own root (`ca init` without --single or --import-cert)".into(),
        )
        .into());
    }
    let given_passphrase = ca_passphrase;
    let ca_passphrase = super::rotate::checked_passphrase(home, meta, ca_passphrase)?;
    match offline {
        None if meta.root_offline => {
            return Err(PkiError::Invalid(
                "this home keeps its root key offline: give --offline-root DIR for the new one"
                    .into(),
            )
            .into())
        }
        Some(_) if home.root_key().exists() => {
            return Err(PkiError::Invalid(
                "this home keeps its root key in HOME (root.key): roll over without --offline-root, or move the root key offline first by hand and remove it from HOME".into(),
            )
            .into())
        }
        Some(dir) => super::init::check_offline_dir(home, dir)?,
        None => {}
    }
    let anchors = inspect::pem_certificates(&read_text(&home.ca_cert())?)?;
    let old_der = anchors[0].clone();
    let old_key = keyfile::load(old_root_key, root_passphrase.or(given_passphrase))?;
    let (_, old) = x509_parser::parse_x509_certificate(&old_der)
        .map_err(|e| PkiError::Parse(format!("ca.crt: {e}")))?;
    if old.public_key().subject_public_key.data.as_ref() != old_key.public_key_raw() {
        return Err(PkiError::Key(format!(
            "{} is not the key of the current root (the first certificate of ca.crt)",
            old_root_key.display()
        ))
        .into());
    }
    let old_end = OffsetDateTime::from_unix_timestamp(old.validity().not_after.timestamp())
        .map_err(|_| PkiError::Parse("ca.crt: bad notAfter".into()))?;

    let now = pki::now();
    let mut tag = [0u8; 3];
    pki::fill_random(&mut tag)?;
    let name = format!("{} {}", meta.name, hex::encode(tag));
    let new_key = meta.key_algorithm.generate()?;
    let (new_pem, new_der) = build::root_certificate(
        &name,
        CaRole::Root,
        &new_key,
        now,
        time::Duration::days(CA_LIFETIME_DAYS),
    )?;
    let old_issuer = Issuer::from_ca_cert_der(&CertificateDer::from(old_der.as_slice()), &old_key)
        .map_err(PkiError::from)?;
    let (cross_pem, _) = build::cross_certificate(&name, &new_key, &old_issuer, now, old_end)?;
    let mut made: Made =
        intermediate::sign_new(&meta.name, meta.key_algorithm, &new_pem, &new_key, now)?;
    made.chain_pem.push_str(&cross_pem);

    // The new root key is protected like the old one: with its own passphrase if it had one.
    let key_pem = keyfile::to_pem(&new_key, root_passphrase.or(ca_passphrase))?;
    let root_key = match offline {
        Some(dir) => {
            fsutil::ensure_private_dir(dir)?;
            fsutil::write_new(&dir.join("root.key"), key_pem.as_bytes(), SECRET_MODE)?;
            fsutil::write_new(&dir.join("root.crt"), new_pem.as_bytes(), PUBLIC_MODE)?;
            dir.join("root.key")
        }
        None => {
            fsutil::write_atomic(&pending_root_key(home), key_pem.as_bytes(), SECRET_MODE)?;
            pending_root_key(home)
        }
    };
    fsutil::write_atomic(
        &home.dir().join("cross.crt"),
        cross_pem.as_bytes(),
        PUBLIC_MODE,
    )?;
    let mut written = Vec::new();
    intermediate::install(home, &made, ca_passphrase, &mut written)?;
    // Clients that fetch ca.crt now trust both roots for the changeover.
    let both = format!("{new_pem}{}", inspect::der_to_pem(&old_der));
    fsutil::write_atomic(&home.ca_cert(), both.as_bytes(), PUBLIC_MODE)?;
    Ok(Prepared {
        intermediate: made.serial,
        root: serial_of(&new_der, "new root")?,
        root_key,
    })
}

/// Undoes a [`prepare`] whose intermediate never became current: `ca.crt` is the old root
/// again and the new root's files are removed.
pub fn abandon(home: &Home, prepared: &Prepared, old_ca_crt: &[u8]) {
    let _ = fsutil::write_atomic(&home.ca_cert(), old_ca_crt, PUBLIC_MODE);
    let _ = std::fs::remove_file(home.dir().join("cross.crt"));
    let _ = std::fs::remove_file(&prepared.root_key);
    if let Some(dir) = prepared.root_key.parent() {
        if prepared.root_key != pending_root_key(home) {
            let _ = std::fs::remove_file(dir.join("root.crt"));
        }
    }
    super::rotate::discard(home, &prepared.intermediate);
}

/// Puts the new root key in place once the new intermediate is current: `root.key.next`
/// replaces `root.key` (the old root key is gone from HOME; keep an offline copy if you want
/// one). Nothing to do for a root key written offline.
pub fn commit_root_key(home: &Home, prepared: &mut Prepared) -> Result<(), CaError> {
    if prepared.root_key == pending_root_key(home) {
        fsutil::rename_durable(&prepared.root_key, &home.root_key())?;
        prepared.root_key = home.root_key();
    }
    Ok(())
}

/// Ends the cross-signed period: `ca.crt` keeps the new root only and the current
/// intermediate's chain drops the cross certificate. Returns the current intermediate's
/// serial, which the caller makes current again (so a running server reloads its chain).
pub fn finish(home: &Home, meta: &CaMeta) -> Result<String, CaError> {
    if meta.layout != Layout::Hierarchy {
        return Err(PkiError::Invalid("no root rollover in this home".into()).into());
    }
    let anchors = inspect::pem_certificates(&read_text(&home.ca_cert())?)?;
    if anchors.len() < 2 {
        return Err(
            PkiError::Invalid("ca.crt holds one root: no rollover is in progress".into()).into(),
        );
    }
    let chain = inspect::pem_certificates(&read_text(&home.intermediate_cert())?)?;
    let serial = serial_of(&chain[0], "intermediate.crt")?;
    let (_, new_root) = x509_parser::parse_x509_certificate(&anchors[0])
        .map_err(|e| PkiError::Parse(format!("ca.crt: {e}")))?;
    let (_, inter) = x509_parser::parse_x509_certificate(&chain[0])
        .map_err(|e| PkiError::Parse(format!("intermediate.crt: {e}")))?;
    if inter.issuer().as_raw() != new_root.subject().as_raw() {
        return Err(PkiError::Invalid(
            "the intermediate that signs was not issued by the new root: run `ca rotate --root` first".into(),
        )
        .into());
    }
    let kept: String = chain
        .iter()
        .take(1)
        .map(|d| inspect::der_to_pem(d))
        .collect();
    fsutil::write_atomic(
        &home.intermediate_cert_of(&serial),
        kept.as_bytes(),
        PUBLIC_MODE,
    )?;
    fsutil::write_atomic(
        &home.ca_cert(),
        inspect::der_to_pem(&anchors[0]).as_bytes(),
        PUBLIC_MODE,
    )?;
    let _ = std::fs::remove_file(home.dir().join("cross.crt"));
    Ok(serial)
}

fn read_text(path: &Path) -> Result<String, CaError> {
    String::from_utf8(fsutil::read(path)?)
        .map_err(|_| PkiError::Parse(format!("{} is not text", path.display())).into())
}
