//! `ca rotate`: a new intermediate, without downtime.
//!
//! Two steps. [`prepare`] makes the new intermediate (signed with the root key the operator
//! brings, or imported from the organization's PKI) and writes it into `intermediates/`;
//! nothing changes yet. [`activate`] then makes it current with one atomic file replacement.
//! The running server does the second step itself (over the control socket) so that it
//! swaps its signer, trusts the new intermediate and takes a new server chain at once.
//! Certificates of the earlier intermediate stay valid until they end or are revoked; that
//! intermediate keeps signing its own CRL.

use std::path::PathBuf;

use zeroize::Zeroizing;

use super::intermediate;
use super::{CaError, Home};
use crate::fsutil;
use crate::ledger::{CaMeta, Layout};
use crate::pki::{self, inspect, keyfile, PkiError};

pub use super::intermediate::activate;

/// Where the new intermediate comes from.
#[derive(Debug, Clone)]
pub enum RotateFrom {
    /// Sign it with the root key (`--root-key FILE`), decrypted with `passphrase` if given.
    RootKey {
        /// The root key file.
        path: PathBuf,
        /// Its passphrase.
        passphrase: Option<Zeroizing<Vec<u8>>>,
    },
    /// A new intermediate the organization's PKI issued (`--import-cert`/`--import-key`).
    Import {
        /// The chain file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
    },
}

/// The passphrase the new keys are encrypted with: none for a home whose keys are not
/// encrypted (whatever was given), else the one given, once it has opened the keys in force
/// (a mistyped one must not encrypt a new key the next start could not open).
pub fn checked_passphrase<'a>(
    home: &Home,
    meta: &CaMeta,
    given: Option<&'a [u8]>,
) -> Result<Option<&'a [u8]>, CaError> {
    if !meta.key_encrypted {
        return Ok(None);
    }
    let Some(pass) = given else {
        return Err(PkiError::Key(
            "the CA keys are encrypted: give their passphrase with --passphrase-file FILE (the new keys are encrypted with it)".into(),
        )
        .into());
    };
    super::Signer::load(home, Some(pass))?;
    Ok(Some(pass))
}

/// Removes an intermediate that was prepared but never made current.
pub fn discard(home: &Home, serial: &str) {
    if is_serial(serial) && !super::Signer::is_current(home, serial) {
        let _ = std::fs::remove_file(home.intermediate_cert_of(serial));
        let _ = std::fs::remove_file(home.intermediate_key_of(serial));
    }
}

/// Refuses a single-CA home: it has no root above its CA and nothing to rotate.
pub fn check_rotatable(meta: &CaMeta) -> Result<(), CaError> {
    if meta.layout == Layout::Single {
        return single_refused();
    }
    Ok(())
}

fn single_refused<T>() -> Result<T, CaError> {
    Err(PkiError::Invalid(
        "this home has a single CA (no root above it, no intermediate to rotate); create a new home with `mcp-zt ca init` to get a root and an intermediate".into(),
    )
    .into())
}

/// Makes a new intermediate and writes it into `HOME/intermediates/`, encrypted with
/// `ca_passphrase` when HOME's keys are. Returns its serial. Nothing is in force yet.
pub fn prepare(
    home: &Home,
    meta: &CaMeta,
    from: &RotateFrom,
    ca_passphrase: Option<&[u8]>,
) -> Result<String, CaError> {
    let given_passphrase = ca_passphrase;
    let ca_passphrase = checked_passphrase(home, meta, ca_passphrase)?;
    let anchor_pem = String::from_utf8(fsutil::read(&home.ca_cert())?)
        .map_err(|_| PkiError::Parse("ca.crt is not text".into()))?;
    check_rotatable(meta)?;
    let made = match (meta.layout, from) {
        (Layout::Single, _) => single_refused()?,
        (Layout::Hierarchy, RotateFrom::RootKey { path, passphrase }) => {
            let pass = passphrase.as_deref().map(|p| p.as_slice()).or(given_passphrase);
            let root_key = keyfile::load(path, pass)?;
            let root_der = inspect::pem_to_der(&anchor_pem)?;
            let (_, root) = x509_parser::parse_x509_certificate(&root_der)
                .map_err(|e| PkiError::Parse(format!("ca.crt: {e}")))?;
            if root.public_key().subject_public_key.data.as_ref() != root_key.public_key_raw() {
                return Err(PkiError::Key(format!(
                    "{} is not the root key of {} (its public key differs from ca.crt's)",
                    path.display(),
                    home.display()
                ))
                .into());
            }
            intermediate::sign_new(
                &meta.name,
                meta.key_algorithm,
                &anchor_pem,
                &root_key,
                pki::now(),
            )?
        }
        (Layout::Imported, RotateFrom::Import { cert, key }) => {
            let imported = intermediate::read_import(cert, key, ca_passphrase)?;
            if inspect::pem_to_der(&imported.anchor_pem)? != inspect::pem_to_der(&anchor_pem)? {
                return Err(PkiError::Invalid(format!(
                    "{} chains to a different root than {}: a rotation keeps the trust anchor clients have",
                    cert.display(),
                    home.ca_cert().display()
                ))
                .into());
            }
            imported.made
        }
        (Layout::Hierarchy, RotateFrom::Import { .. }) => {
            return Err(PkiError::Invalid(
                "this home has its own root: rotate with --root-key FILE".into(),
            )
            .into())
        }
        (Layout::Imported, RotateFrom::RootKey { .. }) => {
            return Err(PkiError::Invalid(
                "this home's intermediate comes from your organization's PKI: get a new one issued and rotate with --import-cert FILE --import-key FILE".into(),
            )
            .into())
        }
    };
    let mut written = Vec::new();
    if let Err(e) = intermediate::install(home, &made, ca_passphrase, &mut written) {
        for p in written {
            let _ = std::fs::remove_file(p);
        }
        return Err(e);
    }
    Ok(made.serial)
}

/// Whether `s` looks like an intermediate's serial (lower-case hex): what may name a file in
/// `intermediates/` when it arrives over the control socket.
pub fn is_serial(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}
