//! `ca init`: create a CA in HOME without ever replacing one.

use time::Duration;
use zeroize::Zeroizing;

use super::{CaError, Home, CA_LIFETIME_DAYS};
use crate::fsutil::{self, PUBLIC_MODE, SECRET_MODE};
use crate::ledger::{CaMeta, Ledger, LOCK_WAIT, RECORD_VERSION};
use crate::pki::build::{self, KeyAlgorithm};
use crate::pki::role_ext::Oid;
use crate::pki::{self, keyfile};
use crate::policy::{Policy, DEFAULT_POLICY};

/// Shortest CA passphrase `ca init` accepts: the encrypted key may be copied off the host and
/// attacked offline, so the passphrase must not be guessable in reach of scrypt's cost.
pub const MIN_PASSPHRASE_BYTES: usize = 12;

/// Options of `ca init`.
#[derive(Debug, Clone)]
pub struct InitOptions {
    /// The CA's common name.
    pub name: String,
    /// SPIFFE trust domain.
    pub trust_domain: String,
    /// The role extension's OID.
    pub role_oid: Oid,
    /// Key algorithm.
    pub key_algorithm: KeyAlgorithm,
    /// Encrypt `ca.key` with this passphrase.
    pub passphrase: Option<Zeroizing<Vec<u8>>>,
}

/// Creates the CA. Refuses, changing nothing, if HOME already holds a CA.
pub fn init(home: &Home, opts: &InitOptions) -> Result<CaMeta, CaError> {
    pki::validate_trust_domain(&opts.trust_domain)?;
    if opts.name.trim().is_empty()
        || opts.name.len() > 64
        || opts.name.chars().any(char::is_control)
    {
        return Err(pki::PkiError::Invalid(format!(
            "invalid CA name {:?}: 1-64 printable characters",
            opts.name
        ))
        .into());
    }
    if let Some(pass) = &opts.passphrase {
        if pass.len() < MIN_PASSPHRASE_BYTES {
            return Err(pki::PkiError::Key(format!(
                "the CA passphrase must have at least {MIN_PASSPHRASE_BYTES} characters (it has {})",
                pass.len()
            ))
            .into());
        }
    }
    if home.ca_key().exists() || home.ca_cert().exists() {
        return Err(CaError::AlreadyInitialized(home.display()));
    }
    fsutil::make_private_dir(home.dir())?;

    // Keep an existing policy (pki/ ships one), but only if it is valid.
    let policy_path = home.policy();
    if policy_path.exists() {
        let text = fsutil::read(&policy_path)?;
        Policy::parse(&String::from_utf8_lossy(&text)).map_err(|source| CaError::Policy {
            path: policy_path.display().to_string(),
            source,
        })?;
    } else {
        fsutil::write_new(&policy_path, DEFAULT_POLICY.as_bytes(), PUBLIC_MODE)?;
    }

    let now = pki::now();
    let key = opts.key_algorithm.generate()?;
    let (cert_pem, _) =
        build::ca_certificate(&opts.name, &key, now, Duration::days(CA_LIFETIME_DAYS))?;
    let key_pem = keyfile::to_pem(&key, opts.passphrase.as_ref().map(|p| p.as_slice()))?;

    let meta = CaMeta {
        v: RECORD_VERSION,
        name: opts.name.clone(),
        trust_domain: opts.trust_domain.clone(),
        role_oid: opts.role_oid.clone(),
        key_algorithm: opts.key_algorithm,
        key_encrypted: opts.passphrase.is_some(),
        created_at: now.unix_timestamp(),
        not_after: (now + Duration::days(CA_LIFETIME_DAYS)).unix_timestamp(),
    };

    // The key is written with a no-replace link: of two racing inits exactly one wins, and an
    // existing key is never touched.
    fsutil::write_new(&home.ca_key(), key_pem.as_bytes(), SECRET_MODE).map_err(|e| match e {
        fsutil::FsError::Exists(_) => CaError::AlreadyInitialized(home.display()),
        other => other.into(),
    })?;
    let rest = (|| -> Result<(), CaError> {
        fsutil::ensure_private_dir(&home.ledger())?;
        let ledger = Ledger::open(&home.ledger(), LOCK_WAIT)?;
        ledger.set_ca_meta(&meta)?;
        fsutil::write_new(&home.ca_cert(), cert_pem.as_bytes(), PUBLIC_MODE)?;
        let authority = super::Authority::from_parts(home.clone(), ledger, meta.clone())?;
        let signer = super::Signer::from_parts(key, cert_pem.clone());
        authority.publish_crl(&signer)?;
        Ok(())
    })();
    if let Err(e) = rest {
        // Undo our own half-made CA so that a retry can succeed; the key we wrote is ours.
        let _ = std::fs::remove_file(home.ca_key());
        let _ = std::fs::remove_file(home.ca_cert());
        return Err(e);
    }
    Ok(meta)
}
