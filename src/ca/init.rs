//! `ca init`: create a CA in HOME without ever replacing one.

use std::path::{Path, PathBuf};

use time::Duration;
use zeroize::Zeroizing;

use super::intermediate;
use super::{CaError, Home, CA_LIFETIME_DAYS};
use crate::fsutil::{self, PUBLIC_MODE, SECRET_MODE};
use crate::ledger::{CaMeta, Layout, Ledger, RECORD_VERSION};
use crate::pki::build::{self, KeyAlgorithm};
use crate::pki::role_ext::Oid;
use crate::pki::{self, keyfile};
use crate::policy::{Policy, DEFAULT_POLICY};

/// Shortest CA passphrase `ca init` accepts: the encrypted key may be copied off the host and
/// attacked offline, so the passphrase must not be guessable in reach of scrypt's cost.
pub const MIN_PASSPHRASE_BYTES: usize = 12;

/// Where the root key of a new hierarchy goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootKey {
    /// `HOME/root.key`: `ca rotate` finds it there.
    InHome,
    /// `DIR/root.key` only (`--offline-root DIR`): HOME never holds it, and `ca rotate`
    /// needs it brought back with `--root-key`.
    Offline(PathBuf),
}

/// What kind of CA `ca init` makes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InitLayout {
    /// One self-signed CA that signs leaves itself (the layout before hierarchies).
    Single,
    /// A root and an intermediate (pathlen 0) that signs everything.
    Hierarchy(RootKey),
    /// An intermediate an organization's PKI issued: its chain (PEM, the intermediate first,
    /// the organization's root last) and its key.
    Import {
        /// The certificate chain file.
        cert: PathBuf,
        /// The private key file (PKCS#8 PEM, encrypted with the CA passphrase or not at all).
        key: PathBuf,
    },
}

/// Options of `ca init`.
#[derive(Debug, Clone)]
pub struct InitOptions {
    /// The CA's common name (the root's in a hierarchy).
    pub name: String,
    /// SPIFFE trust domain.
    pub trust_domain: String,
    /// The role extension's OID.
    pub role_oid: Oid,
    /// Key algorithm.
    pub key_algorithm: KeyAlgorithm,
    /// Encrypt the CA keys with this passphrase.
    pub passphrase: Option<Zeroizing<Vec<u8>>>,
    /// Single CA, hierarchy, or imported intermediate.
    pub layout: InitLayout,
    /// An http(s) URL where relying parties fetch the CRL, put into every certificate issued.
    pub crl_url: Option<String>,
}

/// Creates the CA. Refuses, changing nothing, if HOME already holds a CA.
pub fn init(home: &Home, opts: &InitOptions) -> Result<CaMeta, CaError> {
    pki::validate_trust_domain(&opts.trust_domain)?;
    if opts.name.trim().is_empty()
        || opts.name.len() > 48
        || opts.name.chars().any(char::is_control)
    {
        return Err(pki::PkiError::Invalid(format!(
            "invalid CA name {:?}: 1-48 printable characters",
            opts.name
        ))
        .into());
    }
    if let Some(url) = &opts.crl_url {
        let ok = (url.starts_with("http://") || url.starts_with("https://"))
            && url.len() <= 512
            && !url.chars().any(|c| c.is_control() || c.is_whitespace());
        if !ok {
            return Err(pki::PkiError::Invalid(format!(
                "--crl-url {url:?}: expected an http:// or https:// URL (no spaces, at most 512 \
                 characters)"
            ))
            .into());
        }
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
    if home.ca_key().exists() || home.ca_cert().exists() || home.has_intermediate() {
        return Err(CaError::AlreadyInitialized(home.display()));
    }
    // Everything that can be refused is checked before HOME is touched.
    let imported = match &opts.layout {
        InitLayout::Import { cert, key } => Some(intermediate::read_import(
            cert,
            key,
            opts.passphrase.as_ref().map(|p| p.as_slice()),
        )?),
        _ => None,
    };
    if let InitLayout::Hierarchy(RootKey::Offline(dir)) = &opts.layout {
        check_offline_dir(home, dir)?;
    }
    fsutil::make_private_dir(home.dir())?;

    // Keep an existing policy (pki/ ships one), but only if it is valid.
    let policy_path = home.policy();
    if policy_path.exists() {
        let text = fsutil::read(&policy_path)?;
        Policy::parse(&String::from_utf8_lossy(&text)).map_err(|error| CaError::Policy {
            path: policy_path.display().to_string(),
            error,
        })?;
    } else {
        fsutil::write_new(&policy_path, DEFAULT_POLICY.as_bytes(), PUBLIC_MODE)?;
    }

    let mut written: Vec<PathBuf> = Vec::new();
    let result = make(home, opts, imported, &mut written);
    if result.is_err() {
        // Undo our own half-made CA so that a retry can succeed; every file listed is ours
        // (written with no-replace).
        for path in written.iter().rev() {
            let _ = std::fs::remove_file(path);
        }
    }
    result
}

fn make(
    home: &Home,
    opts: &InitOptions,
    imported: Option<intermediate::Imported>,
    written: &mut Vec<PathBuf>,
) -> Result<CaMeta, CaError> {
    let now = pki::now();
    let pass = opts.passphrase.as_ref().map(|p| p.as_slice());
    let new_file = |written: &mut Vec<PathBuf>,
                    path: PathBuf,
                    bytes: &[u8],
                    mode: u32|
     -> Result<(), CaError> {
        fsutil::write_new(&path, bytes, mode).map_err(|e| match e {
            // Of two racing inits exactly one wins, and an existing file is never touched.
            fsutil::FsError::Exists(_) => CaError::AlreadyInitialized(home.display()),
            other => other.into(),
        })?;
        written.push(path);
        Ok(())
    };
    let mut intermediate_serial = None;
    let mut meta = CaMeta {
        v: RECORD_VERSION,
        name: opts.name.clone(),
        trust_domain: opts.trust_domain.clone(),
        role_oid: opts.role_oid.clone(),
        key_algorithm: opts.key_algorithm,
        key_encrypted: opts.passphrase.is_some(),
        created_at: now.unix_timestamp(),
        not_after: (now + Duration::days(CA_LIFETIME_DAYS)).unix_timestamp(),
        layout: Layout::Single,
        root_offline: false,
        crl_url: opts.crl_url.clone(),
    };
    // The anchor (ca.crt) is written last but one and the intermediate.crt last: a home with
    // both is complete.
    let anchor_pem = match &opts.layout {
        InitLayout::Single => {
            let key = opts.key_algorithm.generate()?;
            let (cert_pem, _) =
                build::ca_certificate(&opts.name, &key, now, Duration::days(CA_LIFETIME_DAYS))?;
            new_file(
                written,
                home.ca_key(),
                keyfile::to_pem(&key, pass)?.as_bytes(),
                SECRET_MODE,
            )?;
            cert_pem
        }
        InitLayout::Hierarchy(root) => {
            meta.layout = Layout::Hierarchy;
            let root_key = opts.key_algorithm.generate()?;
            let (root_pem, _) = build::root_certificate(
                &opts.name,
                build::CaRole::Root,
                &root_key,
                now,
                Duration::days(CA_LIFETIME_DAYS),
            )?;
            let root_key_pem = keyfile::to_pem(&root_key, pass)?;
            match root {
                RootKey::InHome => new_file(
                    written,
                    home.root_key(),
                    root_key_pem.as_bytes(),
                    SECRET_MODE,
                )?,
                RootKey::Offline(dir) => {
                    meta.root_offline = true;
                    fsutil::ensure_private_dir(dir)?;
                    new_file(
                        written,
                        dir.join("root.key"),
                        root_key_pem.as_bytes(),
                        SECRET_MODE,
                    )?;
                    new_file(
                        written,
                        dir.join("root.crt"),
                        root_pem.as_bytes(),
                        PUBLIC_MODE,
                    )?;
                }
            }
            let made =
                intermediate::sign_new(&opts.name, opts.key_algorithm, &root_pem, &root_key, now)?;
            intermediate::install(home, &made, pass, written)?;
            intermediate_serial = Some(made.serial.clone());
            root_pem
        }
        InitLayout::Import { .. } => {
            meta.layout = Layout::Imported;
            let imported =
                imported.ok_or_else(|| pki::PkiError::Invalid("nothing to import".into()))?;
            meta.key_algorithm = imported.algorithm;
            meta.not_after = imported.anchor_not_after;
            intermediate::install(home, &imported.made, pass, written)?;
            intermediate_serial = Some(imported.made.serial.clone());
            imported.anchor_pem
        }
    };
    if home.ledger_spec().is_none() {
        fsutil::ensure_private_dir(&home.ledger())?;
    }
    let ledger = Ledger::open(&home.ledger(), home.ledger_spec())?;
    let taken = |ledger: &Ledger| {
        CaError::AlreadyInitialized(format!(
            "{} (the ledger {} already holds a CA: copy that CA's HOME to run another replica)",
            home.display(),
            ledger.describe()
        ))
    };
    if ledger.ca_meta()?.is_some() {
        return Err(taken(&ledger));
    }
    new_file(written, home.ca_cert(), anchor_pem.as_bytes(), PUBLIC_MODE)?;
    if let Some(serial) = intermediate_serial {
        let chain = fsutil::read(&home.intermediate_cert_of(&serial))?;
        new_file(written, home.intermediate_cert(), &chain, PUBLIC_MODE)?;
    }
    let authority = super::Authority::from_parts(home.clone(), ledger, meta.clone())?;
    let signer = super::Signer::load(home, pass)?;
    authority.publish_crl(&signer)?;
    // Last: a ledger naming this CA exists only once everything above did. Of two racing
    // inits on one shared ledger, the loser's files are removed by the caller's rollback.
    match authority.ledger().init_ca_meta(&meta) {
        Err(crate::ledger::LedgerError::AlreadyInitialized) => {
            return Err(taken(authority.ledger()))
        }
        r => r?,
    }
    Ok(meta)
}

/// The offline folder must not be HOME or inside it: the point is that HOME never holds the
/// root key. Both paths are resolved through symbolic links and `..` (folders that do not
/// exist yet are resolved from their nearest existing parent), so no spelling of a path
/// inside HOME slips through.
pub(super) fn check_offline_dir(home: &Home, dir: &Path) -> Result<(), CaError> {
    let (home_real, dir_real) = (resolve(home.dir())?, resolve(dir)?);
    if dir_real.starts_with(&home_real) {
        return Err(pki::PkiError::Invalid(format!(
            "--offline-root {} is inside HOME {}: give a folder on removable or offline storage",
            dir.display(),
            home.display()
        ))
        .into());
    }
    if dir.join("root.key").exists() {
        return Err(pki::PkiError::Invalid(format!(
            "{} already holds a root.key; nothing was changed (use an empty folder)",
            dir.display()
        ))
        .into());
    }
    Ok(())
}

/// `path` made absolute with symbolic links resolved: the nearest existing ancestor is
/// canonicalized and the rest appended; a `..` in the part that does not exist is refused.
fn resolve(path: &Path) -> Result<PathBuf, CaError> {
    let abs = std::path::absolute(path).map_err(|error| fsutil::FsError::Io {
        action: "resolve",
        path: path.to_path_buf(),
        error,
    })?;
    let mut existing = abs.as_path();
    let mut rest = Vec::new();
    loop {
        if let Ok(real) = std::fs::canonicalize(existing) {
            let mut out = real;
            for part in rest.iter().rev() {
                out.push(part);
            }
            return Ok(out);
        }
        let (Some(parent), Some(name)) = (existing.parent(), existing.file_name()) else {
            return Err(
                pki::PkiError::Invalid(format!("cannot resolve {}", path.display())).into(),
            );
        };
        if name == ".." {
            return Err(pki::PkiError::Invalid(format!(
                "{}: a `..` below a folder that does not exist yet; give the path without it",
                path.display()
            ))
            .into());
        }
        rest.push(name.to_os_string());
        existing = parent;
    }
}
