//! The signing operations: issue, revoke, publish the CRL.

use std::path::PathBuf;

use rcgen::{Issuer, KeyPair};
use time::Duration;
use x509_parser::prelude::FromDer;
use zeroize::Zeroizing;

use super::{CaError, Home, CRL_LIFETIME_DAYS};
use crate::fsutil::{self, PUBLIC_MODE, SECRET_MODE};
use crate::ledger::{CaMeta, CertKind, CertRecord, Ledger, LOCK_WAIT, RECORD_VERSION};
use crate::pki::build::{self, LeafKind, LeafRequest, Reason, RevokedEntry};
use crate::pki::{self, keyfile, PkiError};
use crate::policy::Policy;

/// The CA's private key and certificate, loaded only by commands that sign.
pub struct Signer {
    key: KeyPair,
    cert_pem: String,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Signer { key: <redacted> }")
    }
}

impl Signer {
    pub(super) fn from_parts(key: KeyPair, cert_pem: String) -> Signer {
        Signer { key, cert_pem }
    }

    /// Loads `ca.key` (refusing loose permissions, decrypting if needed) and checks that it
    /// belongs to `ca.crt`.
    pub fn load(home: &Home, passphrase: Option<&[u8]>) -> Result<Signer, CaError> {
        if !home.ca_key().exists() {
            return Err(CaError::NotInitialized(home.display()));
        }
        let key = keyfile::load(&home.ca_key(), passphrase)?;
        let cert_pem = String::from_utf8(fsutil::read(&home.ca_cert())?)
            .map_err(|_| PkiError::Parse("ca.crt is not text".into()))?;
        let der = pki::inspect::pem_to_der(&cert_pem)?;
        let (_, cert) = x509_parser::certificate::X509Certificate::from_der(&der)
            .map_err(|e| PkiError::Parse(format!("ca.crt: {e}")))?;
        if cert.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
            return Err(PkiError::Key(format!(
                "{} does not belong to {}: the key or the certificate was replaced",
                home.ca_key().display(),
                home.ca_cert().display()
            ))
            .into());
        }
        Ok(Signer { key, cert_pem })
    }

    fn issuer(&self) -> Result<Issuer<'static, &KeyPair>, CaError> {
        Ok(Issuer::from_ca_cert_pem(&self.cert_pem, &self.key).map_err(PkiError::from)?)
    }
}

/// What `issue` is asked for.
#[derive(Debug, Clone)]
pub struct IssueRequest {
    /// Holder name.
    pub name: String,
    /// Role (must be in the policy).
    pub role: String,
    /// Lifetime in seconds.
    pub ttl_secs: i64,
    /// Where to write NAME.crt and NAME.key (default HOME/clients).
    pub out_dir: Option<PathBuf>,
    /// Extra DNS/IP SANs.
    pub sans: Vec<String>,
}

/// A certificate that was issued and written.
#[derive(Debug, Clone)]
pub struct Issued {
    /// The ledger record.
    pub record: CertRecord,
    /// Path of the certificate.
    pub cert_path: PathBuf,
    /// Path of the private key.
    pub key_path: PathBuf,
}

/// An opened CA: ledger, metadata and policy. Signing needs a [`Signer`] as well.
pub struct Authority {
    home: Home,
    ledger: Ledger,
    meta: CaMeta,
}

impl Authority {
    pub(super) fn from_parts(home: Home, ledger: Ledger, meta: CaMeta) -> Result<Self, CaError> {
        Ok(Authority { home, ledger, meta })
    }

    /// Opens the CA in `home`, waiting briefly if another process holds the ledger.
    pub fn open(home: &Home) -> Result<Authority, CaError> {
        if !home.dir().is_dir() || !home.ca_cert().exists() {
            return Err(CaError::NotInitialized(home.display()));
        }
        let ledger = Ledger::open(&home.ledger(), LOCK_WAIT)?;
        let meta = ledger
            .ca_meta()?
            .ok_or_else(|| CaError::NotInitialized(home.display()))?;
        Ok(Authority {
            home: home.clone(),
            ledger,
            meta,
        })
    }

    /// The CA's metadata.
    pub fn meta(&self) -> &CaMeta {
        &self.meta
    }

    /// The ledger.
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// HOME.
    pub fn home(&self) -> &Home {
        &self.home
    }

    /// Loads and validates `HOME/policy.toml`.
    pub fn policy(&self) -> Result<Policy, CaError> {
        load_policy(&self.home)
    }

    /// Issues a client certificate. The ledger record is durable before any file is written,
    /// so no certificate exists that the ledger does not know.
    pub fn issue(&self, signer: &Signer, req: &IssueRequest) -> Result<Issued, CaError> {
        pki::validate_name(&req.name)?;
        let policy = self.policy()?;
        if !policy.has_role(&req.role) {
            return Err(CaError::UnknownRole {
                role: req.role.clone(),
                valid: policy.roles().collect::<Vec<_>>().join(", "),
            });
        }
        let spiffe_id = format!("spiffe://{}/client/{}", self.meta.trust_domain, req.name);
        let leaf = LeafRequest {
            name: req.name.clone(),
            spiffe_id,
            extra_sans: req.sans.clone(),
            kind: LeafKind::Client {
                role: req.role.clone(),
                role_oid: self.meta.role_oid.clone(),
            },
            lifetime: Duration::seconds(req.ttl_secs),
        };
        let out_dir = req.out_dir.clone().unwrap_or_else(|| self.home.clients());
        self.sign_and_record(
            signer,
            &leaf,
            CertKind::Client,
            Some(req.role.clone()),
            &out_dir,
        )
    }

    /// Issues the server's own certificate into HOME/server as `server.crt` / `server.key`.
    pub fn issue_server(
        &self,
        signer: &Signer,
        sans: &[String],
        lifetime: Duration,
    ) -> Result<Issued, CaError> {
        let leaf = LeafRequest {
            name: "server".into(),
            spiffe_id: format!("spiffe://{}/server/mcp-zt", self.meta.trust_domain),
            extra_sans: sans.to_vec(),
            kind: LeafKind::Server,
            lifetime,
        };
        self.sign_and_record(signer, &leaf, CertKind::Server, None, &self.home.server())
    }

    fn sign_and_record(
        &self,
        signer: &Signer,
        leaf: &LeafRequest,
        kind: CertKind,
        role: Option<String>,
        out_dir: &std::path::Path,
    ) -> Result<Issued, CaError> {
        let now = pki::now();
        // Checked: a TTL of billions of days passes the date range of `time` (year 9999).
        let wanted_end = now.checked_add(leaf.lifetime).map(|t| t.unix_timestamp());
        if wanted_end.is_none_or(|end| end > self.meta.not_after) {
            return Err(CaError::TtlBeyondCa {
                wanted: wanted_end.map_or_else(|| "after the year 9999".into(), pki::rfc3339),
                ca_end: pki::rfc3339(self.meta.not_after),
            });
        }
        let built = build::leaf_certificate(leaf, &signer.issuer()?, now)?;
        let record = CertRecord {
            v: RECORD_VERSION,
            serial: hex::encode(built.serial),
            name: leaf.name.clone(),
            role,
            kind,
            spiffe_id: leaf.spiffe_id.clone(),
            sans: leaf.extra_sans.clone(),
            not_before: built.not_before,
            not_after: built.not_after,
            issued_at: now.unix_timestamp(),
            cert_pem: built.cert_pem.clone(),
            revocation: None,
            renewed_from: None,
            superseded_by: None,
        };
        // Durable first: the ledger must know every certificate that leaves the CA.
        self.ledger.insert_new(&record)?;
        fsutil::ensure_private_dir(out_dir)?;
        let key_path = out_dir.join(format!("{}.key", leaf.name));
        let cert_path = out_dir.join(format!("{}.crt", leaf.name));
        fsutil::write_atomic(&key_path, built.key_pem.as_bytes(), SECRET_MODE)?;
        fsutil::write_atomic(&cert_path, built.cert_pem.as_bytes(), PUBLIC_MODE)?;
        Ok(Issued {
            record,
            cert_path,
            key_path,
        })
    }

    /// Renews a client certificate for a key the client proved it holds (the CSR's signature):
    /// same name, role and lifetime, a new serial. The old record is linked to the new one; it
    /// stays valid until the server sees the new one in use (or a grace period ends) and then
    /// is revoked as superseded. Refused for unknown, revoked, expired or already renewed
    /// certificates.
    pub fn renew(
        &self,
        signer: &Signer,
        old_serial: &str,
        csr_pem: &str,
    ) -> Result<CertRecord, CaError> {
        let old = self
            .ledger
            .get(old_serial)?
            .ok_or_else(|| CaError::NotFound(old_serial.to_string()))?;
        let now = pki::now();
        match old.status(now.unix_timestamp()) {
            crate::ledger::Status::Active => {}
            other => {
                return Err(CaError::NotRenewable(format!(
                    "certificate {} is {}",
                    old.serial,
                    other.as_str()
                )))
            }
        }
        if old.kind != CertKind::Client {
            return Err(CaError::NotRenewable(
                "only client certificates are renewed".into(),
            ));
        }
        if let Some(next) = &old.superseded_by {
            return Err(CaError::NotRenewable(format!(
                "certificate {} was already renewed as {next}",
                old.serial
            )));
        }
        let role = old
            .role
            .clone()
            .ok_or_else(|| CaError::NotRenewable("the certificate has no role".into()))?;
        let csr = rcgen::CertificateSigningRequestParams::from_pem(csr_pem).map_err(|e| {
            CaError::NotRenewable(format!("invalid certificate signing request: {e}"))
        })?;
        let lifetime = (old.not_after - old.not_before - build::BACKDATE.whole_seconds()).max(60);
        let leaf = LeafRequest {
            name: old.name.clone(),
            spiffe_id: old.spiffe_id.clone(),
            extra_sans: old.sans.clone(),
            kind: LeafKind::Client {
                role: role.clone(),
                role_oid: self.meta.role_oid.clone(),
            },
            lifetime: Duration::seconds(lifetime),
        };
        // Checked: a TTL of billions of days passes the date range of `time` (year 9999).
        let wanted_end = now.checked_add(leaf.lifetime).map(|t| t.unix_timestamp());
        if wanted_end.is_none_or(|end| end > self.meta.not_after) {
            return Err(CaError::TtlBeyondCa {
                wanted: wanted_end.map_or_else(|| "after the year 9999".into(), pki::rfc3339),
                ca_end: pki::rfc3339(self.meta.not_after),
            });
        }
        let built = build::leaf_for_key(&leaf, &csr.public_key, &signer.issuer()?, now)?;
        let record = CertRecord {
            v: RECORD_VERSION,
            serial: hex::encode(built.serial),
            name: old.name.clone(),
            role: Some(role),
            kind: CertKind::Client,
            spiffe_id: old.spiffe_id.clone(),
            sans: old.sans.clone(),
            not_before: built.not_before,
            not_after: built.not_after,
            issued_at: now.unix_timestamp(),
            cert_pem: built.cert_pem,
            revocation: None,
            renewed_from: Some(old.serial.clone()),
            superseded_by: None,
        };
        // Claim the renewal first: of two racing renewals only one gets a certificate.
        self.ledger.set_superseded_by(&old.serial, &record.serial)?;
        self.ledger.insert_new(&record)?;
        Ok(record)
    }

    /// Finds certificates by serial or by holder name (see [`find_in`]).
    pub fn find(&self, target: &str) -> Result<Vec<CertRecord>, CaError> {
        find_in(self.ledger.all()?, target)
    }

    /// Revokes a serial, or every unrevoked certificate of a name, then republishes the CRL.
    /// Returns the records revoked by this call.
    pub fn revoke(
        &self,
        signer: &Signer,
        target: &str,
        reason: Reason,
    ) -> Result<Vec<CertRecord>, CaError> {
        let matches = self.find(target)?;
        let now = pki::now().unix_timestamp();
        let mut revoked = Vec::new();
        for rec in matches.iter().filter(|r| r.revocation.is_none()) {
            match self.ledger.revoke(&rec.serial, reason, now) {
                Ok(r) => revoked.push(r),
                // Lost a race with another revoke: that one counts, not ours.
                Err(crate::ledger::LedgerError::AlreadyRevoked { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        if revoked.is_empty() {
            let what = match matches.as_slice() {
                [one] => format!("certificate {} ({})", one.serial, one.name),
                _ => format!("every certificate of {target:?}"),
            };
            return Err(CaError::AlreadyRevoked(what));
        }
        self.publish_crl(signer)?;
        Ok(revoked)
    }

    /// Republishes the CRL unless HOME/crl.pem is present and fresh; returns whether it did.
    pub fn refresh_crl(&self, signer: &Signer) -> Result<bool, CaError> {
        let fresh = fsutil::read(&self.home.crl())
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .is_some_and(|pem| crl_is_fresh(&pem));
        if fresh {
            return Ok(false);
        }
        self.publish_crl(signer)?;
        Ok(true)
    }

    /// Signs a new CRL with the next CRL number and replaces HOME/crl.pem atomically.
    pub fn publish_crl(&self, signer: &Signer) -> Result<String, CaError> {
        let entries: Vec<RevokedEntry> = self
            .ledger
            .all()?
            .into_iter()
            .filter_map(|r| {
                let rev = r.revocation?;
                Some(RevokedEntry {
                    serial: hex::decode(&r.serial).ok()?,
                    revoked_at: rev.at,
                    reason: rev.reason,
                })
            })
            .collect();
        let number = self.ledger.next_crl_number()?;
        let pem = build::crl(
            &signer.issuer()?,
            number,
            pki::now(),
            Duration::days(CRL_LIFETIME_DAYS),
            &entries,
        )?;
        fsutil::write_atomic(&self.home.crl(), pem.as_bytes(), PUBLIC_MODE)?;
        Ok(pem)
    }
}

/// Picks the records matching `target`: a serial (hex, any case, optional `0x` or colons) or,
/// failing that, every certificate of that holder name.
pub fn find_in(records: Vec<CertRecord>, target: &str) -> Result<Vec<CertRecord>, CaError> {
    let serial = target
        .trim_start_matches("0x")
        .replace(':', "")
        .to_ascii_lowercase();
    let (by_serial, rest): (Vec<_>, Vec<_>) = records.into_iter().partition(|r| r.serial == serial);
    if !by_serial.is_empty() {
        return Ok(by_serial);
    }
    let by_name: Vec<CertRecord> = rest.into_iter().filter(|r| r.name == target).collect();
    if by_name.is_empty() {
        return Err(CaError::NotFound(target.to_string()));
    }
    Ok(by_name)
}

/// Whether a PEM CRL parses and is less than half-way from thisUpdate to nextUpdate.
pub fn crl_is_fresh(pem: &str) -> bool {
    let Ok((_, block)) = x509_parser::pem::parse_x509_pem(pem.as_bytes()) else {
        return false;
    };
    let Ok((_, crl)) = x509_parser::parse_x509_crl(&block.contents) else {
        return false;
    };
    let this = crl.last_update().timestamp();
    let Some(next) = crl.next_update().map(|t| t.timestamp()) else {
        return false;
    };
    pki::now().unix_timestamp() < this + (next - this) / 2
}

/// Loads and validates the policy of `home`.
pub fn load_policy(home: &Home) -> Result<Policy, CaError> {
    let path = home.policy();
    let text = fsutil::read(&path)?;
    let text = String::from_utf8(text).map_err(|_| CaError::Policy {
        path: path.display().to_string(),
        source: crate::policy::PolicyError::Parse("not UTF-8 text".into()),
    })?;
    Policy::parse(&text).map_err(|source| CaError::Policy {
        path: path.display().to_string(),
        source,
    })
}

/// Reads a passphrase file: the first line, without its line ending.
pub fn read_passphrase(path: &std::path::Path) -> Result<Zeroizing<Vec<u8>>, CaError> {
    let bytes = Zeroizing::new(fsutil::read(path)?);
    let line = bytes.split(|b| *b == b'\n').next().unwrap_or(&[]);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.is_empty() {
        return Err(PkiError::Key(format!("passphrase file {} is empty", path.display())).into());
    }
    Ok(Zeroizing::new(line.to_vec()))
}
