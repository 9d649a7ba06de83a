//! The signing operations: issue, revoke, publish the CRL.

use std::path::PathBuf;

use rcgen::PublicKeyData;
use time::Duration;
use zeroize::Zeroizing;

use super::{CaError, Home, IssuingCa, Signer, CRL_LIFETIME_DAYS};
use crate::fsutil::{self, PUBLIC_MODE, SECRET_MODE};
use crate::ledger::{CaMeta, CertKind, CertRecord, Ledger, LedgerError, RECORD_VERSION};
use crate::pki::build::{self, LeafKind, LeafRequest, Reason, RevokedEntry};
use crate::pki::{self, PkiError};
use crate::policy::Policy;

/// The holder name of the server's own certificate; no client certificate may carry it.
pub const SERVER_NAME: &str = "server";

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
    /// Held from reading the revocations to the last CRL file written: a CRL signed with an
    /// older snapshot never replaces a newer one on disk.
    crl_lock: std::sync::Mutex<()>,
}

impl Authority {
    pub(super) fn from_parts(home: Home, ledger: Ledger, meta: CaMeta) -> Result<Self, CaError> {
        Ok(Authority {
            home,
            ledger,
            meta,
            crl_lock: std::sync::Mutex::new(()),
        })
    }

    /// Opens the CA in `home`, waiting briefly if another process holds the ledger.
    pub fn open(home: &Home) -> Result<Authority, CaError> {
        if !home.dir().is_dir() || !home.ca_cert().exists() {
            return Err(CaError::NotInitialized(home.display()));
        }
        let ledger = Ledger::open(&home.ledger(), home.ledger_spec())?;
        let meta = ledger
            .ca_meta()?
            .ok_or_else(|| CaError::NotInitialized(home.display()))?;
        Ok(Authority {
            home: home.clone(),
            ledger,
            meta,
            crl_lock: std::sync::Mutex::new(()),
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
        if req.name == SERVER_NAME {
            return Err(CaError::ReservedName(req.name.clone()));
        }
        if req.ttl_secs <= 0 {
            return Err(PkiError::Invalid(format!(
                "invalid TTL of {} seconds: it must be positive",
                req.ttl_secs
            ))
            .into());
        }
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
            crl_url: self.crl_url_of(signer.current()),
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
            name: SERVER_NAME.into(),
            spiffe_id: format!("spiffe://{}/server/mcp-zt", self.meta.trust_domain),
            extra_sans: sans.to_vec(),
            kind: LeafKind::Server,
            lifetime,
            crl_url: self.crl_url_of(signer.current()),
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
        let ca = signer.current();
        // Checked: a TTL of billions of days passes the date range of `time` (year 9999).
        let wanted_end = now.checked_add(leaf.lifetime).map(|t| t.unix_timestamp());
        let ca_end = ca.not_after().min(self.meta.not_after);
        if wanted_end.is_none_or(|end| end > ca_end) {
            return Err(CaError::TtlBeyondCa {
                wanted: wanted_end.map_or_else(|| "after the year 9999".into(), pki::rfc3339),
                ca_end: pki::rfc3339(ca_end),
            });
        }
        let built = build::leaf_certificate(leaf, &ca.issuer()?, now)?;
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
            chain_root: None,
            chain_started: None,
            issuer: ca.id().map(str::to_string),
        };
        // Durable first: the ledger must know every certificate that leaves the CA.
        self.ledger.insert_new(&record)?;
        fsutil::ensure_private_dir(out_dir)?;
        let key_path = out_dir.join(format!("{}.key", leaf.name));
        let cert_path = out_dir.join(format!("{}.crt", leaf.name));
        fsutil::write_atomic(&key_path, built.key_pem.as_bytes(), SECRET_MODE)?;
        // The leaf, then the intermediate: what TLS peers and `openssl verify -untrusted`
        // need to reach the root clients trust.
        let file = format!("{}{}", built.cert_pem, ca.chain_pem());
        fsutil::write_atomic(&cert_path, file.as_bytes(), PUBLIC_MODE)?;
        Ok(Issued {
            record,
            cert_path,
            key_path,
        })
    }

    /// Renews a client certificate for a key the client proved it holds (the CSR's signature):
    /// same name and role, a new serial, linked to the old record in one ledger transaction.
    /// The old certificate stays valid until the server sees the new one in use (or a grace
    /// period ends) and is then revoked as superseded.
    ///
    /// Refused for unknown, server, revoked or expired certificates, before the last part of
    /// the lifetime ([`RenewalPolicy::window_percent`]), and once the chain is older than
    /// [`RenewalPolicy::max_chain_age_secs`] counted from the operator's `issue`: a stolen key
    /// cannot renew itself forever. A certificate renewed before answers again with the same
    /// successor when the CSR is for the successor's key (the answer was lost in transit).
    pub fn renew(
        &self,
        signer: &Signer,
        old_serial: &str,
        csr_pem: &str,
        policy: &RenewalPolicy,
        last_renewal_of_holder: Option<i64>,
    ) -> Result<Renewal, CaError> {
        let refused = |m: String| CaError::NotRenewable(m);
        let old = self
            .ledger
            .get(old_serial)?
            .ok_or_else(|| CaError::NotFound(old_serial.to_string()))?;
        if old.kind != CertKind::Client {
            return Err(refused("only client certificates are renewed".into()));
        }
        let csr = rcgen::CertificateSigningRequestParams::from_pem(csr_pem)
            .map_err(|e| refused(format!("invalid certificate signing request: {e}")))?;
        let now = pki::now();
        let t = now.unix_timestamp();
        if let Some(next) = &old.superseded_by {
            // The same key asking again: the answer was lost, hand out the same certificate.
            if let Some(successor) = self.ledger.get(next)? {
                if successor.revocation.is_none()
                    && t <= successor.not_after
                    && certificate_key_is(&successor.cert_pem, csr.public_key.der_bytes())
                {
                    return Ok(Renewal {
                        record: successor,
                        replayed: true,
                    });
                }
            }
            return Err(refused(format!(
                "certificate {} was already renewed as {next}",
                old.serial
            )));
        }
        if let Some(wait) = last_renewal_of_holder
            .map(|l| l.saturating_add(policy.min_interval_secs).saturating_sub(t))
            .filter(|w| *w > 0)
        {
            return Err(CaError::RenewalRateLimited {
                name: old.name,
                interval: policy.min_interval_secs,
                retry_after: wait,
            });
        }
        match old.status(t) {
            crate::ledger::Status::Active => {}
            other => {
                return Err(refused(format!(
                    "certificate {} is {}",
                    old.serial,
                    other.as_str()
                )))
            }
        }
        let role = old
            .role
            .clone()
            .ok_or_else(|| refused("the certificate has no role".into()))?;
        let lifetime = old.not_after.saturating_sub(old.not_before);
        let window = i64::from(policy.window_percent.min(100));
        let left = old.not_after.saturating_sub(t);
        if left.saturating_mul(100) > lifetime.saturating_mul(window) {
            let opens = old
                .not_after
                .saturating_sub(lifetime.saturating_mul(window) / 100);
            return Err(refused(format!(
                "too early: certificate {} can be renewed once {window}% of its lifetime is left, from {}",
                old.serial,
                pki::rfc3339(opens)
            )));
        }
        let (chain_root, chain_started) = self.ledger.chain_origin(&old)?;
        let chain_end = chain_started.saturating_add(policy.max_chain_age_secs);
        let wanted = lifetime
            .saturating_sub(build::BACKDATE.whole_seconds())
            .max(60);
        let ca = signer.current();
        let end = t
            .saturating_add(wanted)
            .min(chain_end)
            .min(self.meta.not_after)
            .min(ca.not_after());
        if end.saturating_sub(t) < 60 {
            return Err(refused(format!(
                "the renewal chain of {:?} began with `mcp-zt issue` at {} and renewals end {} days after that: an operator must issue a new certificate (mcp-zt issue --name {} --role {role})",
                old.name,
                pki::rfc3339(chain_started),
                policy.max_chain_age_secs / 86_400,
                old.name
            )));
        }
        let leaf = LeafRequest {
            name: old.name.clone(),
            spiffe_id: old.spiffe_id.clone(),
            extra_sans: old.sans.clone(),
            kind: LeafKind::Client {
                role: role.clone(),
                role_oid: self.meta.role_oid.clone(),
            },
            lifetime: Duration::seconds(end - t),
            crl_url: self.crl_url_of(ca),
        };
        let built = build::leaf_for_key(&leaf, &csr.public_key, &ca.issuer()?, now)?;
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
            issued_at: t,
            cert_pem: built.cert_pem,
            revocation: None,
            renewed_from: Some(old.serial.clone()),
            superseded_by: None,
            chain_root: Some(chain_root),
            chain_started: Some(chain_started),
            issuer: ca.id().map(str::to_string),
        };
        // One transaction: the successor and the link, or nothing; it re-checks that the old
        // certificate is still unrevoked and unrenewed, so a racing revoke or renew wins cleanly.
        self.ledger
            .record_renewal(&old.serial, &record, t)
            .map_err(|e| match e {
                LedgerError::NotRenewable { .. } | LedgerError::AlreadyRenewed(_) => {
                    refused(e.to_string())
                }
                e => e.into(),
            })?;
        Ok(Renewal {
            record,
            replayed: false,
        })
    }

    /// Finds certificates by serial or by holder name (see [`find_in`]).
    pub fn find(&self, target: &str) -> Result<Vec<CertRecord>, CaError> {
        find_in(self.ledger.all()?, target)
    }

    /// Revokes in the ledger only (the CRL is the caller's next step): a serial, or every
    /// certificate of a holder name, each with its whole renewal chain (see
    /// [`Ledger::revoke_chain`]).
    pub fn revoke_in_ledger(&self, target: &str, reason: Reason) -> Result<RevokeOutcome, CaError> {
        let matches = self.find(target)?;
        let now = pki::now().unix_timestamp();
        let mut out = RevokeOutcome::default();
        let mut seen = std::collections::HashSet::new();
        for rec in &matches {
            if seen.contains(&rec.serial) {
                continue;
            }
            let chain = self.ledger.revoke_chain(&rec.serial, reason, now)?;
            for r in chain.newly.iter().chain(&chain.already) {
                seen.insert(r.serial.clone());
            }
            out.newly.extend(chain.newly);
            out.already.extend(chain.already);
        }
        if out.newly.is_empty() {
            let what = match matches.as_slice() {
                [one] => format!("certificate {} ({})", one.serial, one.name),
                _ => format!("every certificate of {target:?}"),
            };
            out.nothing_new = Some(what);
        }
        Ok(out)
    }

    /// Revokes (see [`Authority::revoke_in_ledger`]) and republishes the CRL. Returns the
    /// records revoked by this call. Revoking what is already revoked is an error, but first
    /// the CRL is republished if it lacks any of those serials (a revoke that died before
    /// publishing).
    pub fn revoke(
        &self,
        signer: &Signer,
        target: &str,
        reason: Reason,
    ) -> Result<Vec<CertRecord>, CaError> {
        let out = self.revoke_in_ledger(target, reason)?;
        self.publish_crl_after_revoke(signer, &out)?;
        out.into_result()
    }

    /// The CRL step of a revocation: always after new revocations; after a repeated one only
    /// when a CRL on disk lacks one of its serials.
    pub fn publish_crl_after_revoke(
        &self,
        signer: &Signer,
        out: &RevokeOutcome,
    ) -> Result<(), CaError> {
        if out.newly.is_empty() && self.crls_missing(signer, &out.already).is_empty() {
            return Ok(());
        }
        self.publish_crl(signer).map(|_| ())
    }

    /// The CRL distribution point a certificate signed by `ca` names: `ca init --crl-url`
    /// for a single CA; for an intermediate, that URL plus `/ID` (the ops listener's
    /// `/crl/ID`), so a certificate keeps pointing at its own issuer's CRL after `ca rotate`.
    pub fn crl_url_of(&self, ca: &IssuingCa) -> Option<String> {
        let url = self.meta.crl_url.as_deref()?;
        Some(match ca.id() {
            Some(id) => format!("{}/{id}", url.trim_end_matches('/')),
            None => url.to_string(),
        })
    }

    /// Where the CRL of `ca` is written: `intermediates/SERIAL.crl` for an intermediate
    /// (the current one is copied to `crl.pem` too), `crl.pem` for a single CA.
    pub fn crl_path(&self, ca: &IssuingCa) -> PathBuf {
        match ca.id() {
            Some(id) => self.home.intermediate_crl_of(id),
            None => self.home.crl(),
        }
    }

    /// The revoked serials among `records` that the CRL of their issuer on disk does not
    /// list (records of an issuer whose key is not loaded are skipped: that CA has expired).
    pub fn crls_missing(&self, signer: &Signer, records: &[CertRecord]) -> Vec<String> {
        let mut missing = Vec::new();
        for ca in signer.all() {
            let mine: Vec<CertRecord> = records
                .iter()
                .filter(|r| r.issuer.as_deref() == ca.id())
                .cloned()
                .collect();
            if mine.iter().all(|r| r.revocation.is_none()) {
                continue;
            }
            // The current intermediate's CRL is also crl.pem: both must be complete.
            let mut paths = vec![self.crl_path(ca)];
            if ca.id().is_some() && std::ptr::eq(ca, signer.current()) {
                paths.push(self.home.crl());
            }
            for path in paths {
                let on_disk = std::fs::read_to_string(path)
                    .ok()
                    .as_deref()
                    .and_then(super::doctor::read_crl);
                match on_disk {
                    Some(crl) => missing.extend(super::doctor::missing_from_crl(&mine, &crl)),
                    None => missing.extend(
                        mine.iter()
                            .filter(|r| r.revocation.is_some())
                            .map(|r| r.serial.clone()),
                    ),
                }
            }
        }
        missing
    }

    /// Revokes exactly one certificate as superseded by its renewal (no chain: its successor
    /// is the certificate in use). Ledger only: the caller applies it and publishes the CRL.
    pub fn retire(&self, serial: &str) -> Result<CertRecord, CaError> {
        let now = pki::now().unix_timestamp();
        Ok(self.ledger.revoke(serial, Reason::Superseded, now)?)
    }

    /// Republishes the CRLs unless every one on disk is present and fresh; returns whether
    /// it did.
    pub fn refresh_crl(&self, signer: &Signer) -> Result<bool, CaError> {
        let fresh = signer.all().all(|ca| {
            fsutil::read(&self.crl_path(ca))
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .is_some_and(|pem| crl_is_fresh(&pem))
        }) && (signer.current().id().is_none() || self.home.crl().is_file());
        if fresh {
            return Ok(false);
        }
        self.publish_crl(signer)?;
        Ok(true)
    }

    /// Signs a new CRL for every CA of `signer` (each lists the revoked certificates it
    /// signed, with the next CRL number) and replaces the files atomically. Returns the CRL
    /// of the current CA, which is also `HOME/crl.pem`.
    pub fn publish_crl(&self, signer: &Signer) -> Result<String, CaError> {
        // The revocations and the CRL numbers are read together: with replicas publishing at
        // once, a higher number must never carry an older set of revocations; and within this
        // process, publications are written in the order they were numbered.
        let _one_at_a_time = self.crl_lock.lock().unwrap_or_else(|e| e.into_inner());
        let cas: Vec<_> = signer.all().collect();
        let (all, first) = self.ledger.crl_snapshot(cas.len() as u64)?;
        let mut current = String::new();
        for (this, ca) in (first..).zip(cas) {
            let entries: Vec<RevokedEntry> = all
                .iter()
                .filter(|r| r.issuer.as_deref() == ca.id())
                .filter_map(|r| {
                    let rev = r.revocation?;
                    Some(RevokedEntry {
                        serial: hex::decode(&r.serial).ok()?,
                        revoked_at: rev.at,
                        reason: rev.reason,
                    })
                })
                .collect();
            let pem = build::crl(
                &ca.issuer()?,
                this,
                pki::now(),
                Duration::days(CRL_LIFETIME_DAYS),
                &entries,
            )?;
            fsutil::write_atomic(&self.crl_path(ca), pem.as_bytes(), PUBLIC_MODE)?;
            if std::ptr::eq(ca, signer.current()) {
                if ca.id().is_some() {
                    fsutil::write_atomic(&self.home.crl(), pem.as_bytes(), PUBLIC_MODE)?;
                }
                current = pem;
            }
        }
        Ok(current)
    }
}

/// What the renewal policy allows; set by `serve`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RenewalPolicy {
    /// Renewal opens when at most this share of the lifetime (percent) is left.
    pub window_percent: u8,
    /// How long a chain of renewals may go on after the operator's `issue` (seconds).
    pub max_chain_age_secs: i64,
    /// Fewest seconds between two renewals of one holder name.
    pub min_interval_secs: i64,
}

impl Default for RenewalPolicy {
    fn default() -> Self {
        RenewalPolicy {
            window_percent: 33,
            max_chain_age_secs: 30 * 86_400,
            min_interval_secs: 300,
        }
    }
}

/// A renewal's answer.
#[derive(Debug, Clone)]
pub struct Renewal {
    /// The new certificate's record.
    pub record: CertRecord,
    /// True when this is a repeated request answered with the certificate issued before.
    pub replayed: bool,
}

/// What a revocation did in the ledger.
#[derive(Debug, Clone, Default)]
pub struct RevokeOutcome {
    /// Revoked by this call.
    pub newly: Vec<CertRecord>,
    /// Matched, or in a matched chain, and revoked before.
    pub already: Vec<CertRecord>,
    /// Set when nothing new was revoked: what the operator asked for.
    pub nothing_new: Option<String>,
}

impl RevokeOutcome {
    /// The newly revoked records, or [`CaError::AlreadyRevoked`] when there are none.
    pub fn into_result(self) -> Result<Vec<CertRecord>, CaError> {
        match self.nothing_new {
            Some(what) => Err(CaError::AlreadyRevoked(what)),
            None => Ok(self.newly),
        }
    }
}

/// Whether the PEM certificate `cert_pem` is for the public key `raw` (subjectPublicKey bits).
fn certificate_key_is(cert_pem: &str, raw: &[u8]) -> bool {
    let Ok(der) = pki::inspect::pem_to_der(cert_pem) else {
        return false;
    };
    x509_parser::parse_x509_certificate(&der)
        .is_ok_and(|(_, c)| c.public_key().subject_public_key.data.as_ref() == raw)
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
        error: crate::policy::PolicyError::Parse("not UTF-8 text".into()),
    })?;
    Policy::parse(&text).map_err(|error| CaError::Policy {
        path: path.display().to_string(),
        error,
    })
}

/// Reads a passphrase file: the first line, without its line ending. A file that group or
/// others may read is refused (on unix; see [`fsutil`] for Windows): the passphrase is what
/// protects the key at rest.
pub fn read_passphrase(path: &std::path::Path) -> Result<Zeroizing<Vec<u8>>, CaError> {
    let meta = std::fs::metadata(path).map_err(|error| crate::fsutil::FsError::Io {
        action: "read",
        path: path.to_path_buf(),
        error,
    })?;
    if let Some(mode) = fsutil::exposed_mode(&meta) {
        return Err(PkiError::Key(format!(
            "passphrase file {} has mode {:04o}: other users may read it; run chmod 600 {}",
            path.display(),
            mode,
            path.display()
        ))
        .into());
    }
    let bytes = Zeroizing::new(fsutil::read(path)?);
    let line = bytes.split(|b| *b == b'\n').next().unwrap_or(&[]);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.is_empty() {
        return Err(PkiError::Key(format!("passphrase file {} is empty", path.display())).into());
    }
    Ok(Zeroizing::new(line.to_vec()))
}
