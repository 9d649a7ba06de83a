//! The client-certificate verifier: webpki checks the chain, mcp-zt checks the rest.
//!
//! Chain, signature, validity period and the clientAuth EKU stay with webpki (no hand-written
//! path validation). mcp-zt's own certificates must be signed directly by one of its issuing
//! CAs; after webpki accepts, the certificate must map to an [`Identity`] whose role the current
//! policy knows, and its serial must not be in the in-memory revocation set. That set is fed
//! from the ledger (and from foreign trusts' CRLs) and updated on every revocation, so the check
//! costs one hash lookup however many certificates were revoked (rustls' own CRL check
//! re-verifies the CRL signature on every handshake). A certificate none of mcp-zt's CAs issued
//! goes to the foreign trusts ([`super::foreign`]), whose rules alone give it a role.

use std::collections::HashSet;
use std::fmt;
use std::sync::{Arc, RwLock};

use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, OtherError};

use super::foreign::ForeignTrust;
use crate::identity::{self, Identity};
use crate::pki::role_ext::Oid;
use crate::policy::Policy;

/// Identity keys that must be refused: serials (lower-case hex) of mcp-zt's own certificates
/// and `TRUST:ISSUER:SERIAL` keys from foreign trusts' CRLs. Shared by the verifier, the
/// per-request check and the revocation paths.
#[derive(Debug, Clone, Default)]
pub struct RevocationSet(Arc<RwLock<HashSet<String>>>);

impl RevocationSet {
    /// A set holding `serials`.
    pub fn new(serials: impl IntoIterator<Item = String>) -> Self {
        RevocationSet(Arc::new(RwLock::new(serials.into_iter().collect())))
    }
    /// Whether `serial` is revoked.
    pub fn contains(&self, serial: &str) -> bool {
        match self.0.read() {
            Ok(s) => s.contains(serial),
            Err(p) => p.into_inner().contains(serial),
        }
    }
    /// Adds a serial.
    pub fn insert(&self, serial: String) {
        match self.0.write() {
            Ok(mut s) => s.insert(serial),
            Err(p) => p.into_inner().insert(serial),
        };
    }
    /// Makes the keys starting with `prefix` exactly `keys` (a foreign trust's CRL replaces
    /// its previous one) and returns those that were not in the set before.
    pub fn replace_prefix(&self, prefix: &str, keys: &[String]) -> Vec<String> {
        let wanted: HashSet<&String> = keys.iter().collect();
        let mut set = match self.0.write() {
            Ok(s) => s,
            Err(p) => p.into_inner(),
        };
        set.retain(|k| !k.starts_with(prefix) || wanted.contains(k));
        keys.iter()
            .filter(|k| set.insert((*k).clone()))
            .cloned()
            .collect()
    }
    /// Adds `keys`; returns those that were not in the set before.
    pub fn insert_all(&self, keys: &[String]) -> Vec<String> {
        let mut set = match self.0.write() {
            Ok(s) => s,
            Err(p) => p.into_inner(),
        };
        keys.iter()
            .filter(|k| set.insert((*k).clone()))
            .cloned()
            .collect()
    }
    /// How many serials are revoked.
    pub fn len(&self) -> usize {
        self.0.read().map(|s| s.len()).unwrap_or(0)
    }
    /// Whether no serial is revoked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The current policy, swapped atomically on reload.
pub type SharedPolicy = Arc<RwLock<Arc<Policy>>>;

/// Reads the current policy.
pub fn current_policy(p: &SharedPolicy) -> Arc<Policy> {
    match p.read() {
        Ok(g) => g.clone(),
        Err(poisoned) => poisoned.into_inner().clone(),
    }
}

/// Why a client certificate was refused; carried inside the rustls error so the accept loop can
/// audit it. The peer only sees a generic bad_certificate alert.
#[derive(Debug, Clone)]
pub struct Rejection {
    /// Why, for the audit log.
    pub reason: String,
    /// Serial, if the certificate parsed.
    pub serial: Option<String>,
    /// Subject CN, if the certificate parsed.
    pub name: Option<String>,
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reason)
    }
}

impl std::error::Error for Rejection {}

/// What the verifier decided about a connection's certificate.
pub type Verdict = Result<Identity, Rejection>;

tokio::task_local! {
    /// The accept loop's slot for the verifier's verdict: the verifier runs inside the handshake
    /// future of that connection's task and leaves the identity (so the certificate is parsed
    /// once per handshake) or the details of a refusal (for the audit line) here.
    pub static VERDICT: std::cell::RefCell<Option<Verdict>>;
}

/// Records why `der` was refused (for the audit log) and returns `err` for rustls, which turns
/// it into the matching TLS alert: certificate_revoked, certificate_expired, unknown_ca, or a
/// generic one for mcp-zt's own checks.
fn reject(der: &[u8], reason: String, err: rustls::Error) -> rustls::Error {
    let (serial, name) = identity::serial_and_name(der);
    let rejection = Rejection {
        reason,
        serial,
        name,
    };
    let stashed = VERDICT.try_with(|slot| *slot.borrow_mut() = Some(Err(rejection.clone())));
    if stashed.is_ok() {
        err
    } else {
        rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(rejection))))
    }
}

/// webpki plus identity, policy and revocation checks.
pub struct ZtVerifier {
    /// webpki over the CAs that sign mcp-zt's certificates; replaced when an intermediate
    /// rotates in.
    inner: RwLock<Arc<dyn ClientCertVerifier>>,
    /// Foreign trusts, tried in order when `inner` does not know the issuer.
    foreign: RwLock<Arc<Vec<Arc<ForeignTrust>>>>,
    role_oid: Oid,
    trust_domain: String,
    policy: SharedPolicy,
    revoked: RevocationSet,
    /// OAuth is on: a client that sends no certificate may finish the handshake (its requests
    /// then need an access token); a certificate that is sent must still verify.
    optional: bool,
}

impl fmt::Debug for ZtVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ZtVerifier")
            .field("role_oid", &self.role_oid)
            .field("revoked", &self.revoked.len())
            .finish()
    }
}

impl ZtVerifier {
    /// A verifier that trusts client certificates signed directly by one of `anchors` (DER:
    /// the issuing CAs, see [`crate::ca::Signer::anchors`]).
    pub fn new(
        anchors: &[Vec<u8>],
        role_oid: Oid,
        trust_domain: String,
        policy: SharedPolicy,
        revoked: RevocationSet,
    ) -> Result<Self, super::TlsError> {
        Ok(ZtVerifier {
            inner: RwLock::new(webpki_over(anchors)?),
            foreign: RwLock::new(Arc::new(Vec::new())),
            role_oid,
            trust_domain,
            policy,
            revoked,
            optional: false,
        })
    }

    /// Trusts `anchors` from now on (a rotation); on a bad anchor the old set stays.
    pub fn set_own_anchors(&self, anchors: &[Vec<u8>]) {
        match webpki_over(anchors) {
            Ok(v) => match self.inner.write() {
                Ok(mut g) => *g = v,
                Err(p) => *p.into_inner() = v,
            },
            Err(e) => eprintln!("mcp-zt: the new trust anchors were refused, keeping the old: {e}"),
        }
    }

    /// Replaces the foreign trusts (policy reload, CRL refresh).
    pub fn set_foreign(&self, trusts: Vec<Arc<ForeignTrust>>) {
        let trusts = Arc::new(trusts);
        match self.foreign.write() {
            Ok(mut g) => *g = trusts,
            Err(p) => *p.into_inner() = trusts,
        }
    }

    /// Lets clients without a certificate finish the handshake (`serve --oauth`).
    pub fn certificate_optional(mut self) -> Self {
        self.optional = true;
        self
    }

    /// The foreign trusts in force.
    pub fn foreign(&self) -> Arc<Vec<Arc<ForeignTrust>>> {
        match self.foreign.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Whether foreign trust `name` is still configured, loaded and within its CRL's grace:
    /// the per-request check of connections it vouched for.
    pub fn foreign_in_force(&self, name: &str, now: i64) -> Result<(), String> {
        let trusts = self.foreign();
        let Some(t) = trusts.iter().find(|t| t.config.name == name) else {
            return Err(format!("trust {name:?} is no longer configured or loaded"));
        };
        if now > t.crl_next_update.saturating_add(t.config.crl_grace_secs) {
            return Err(format!("the CRL of trust {name:?} is stale"));
        }
        Ok(())
    }

    /// A certificate mcp-zt's CAs do not know: the first foreign trust whose CAs issued it
    /// decides. `None` when none did.
    fn verify_foreign(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Option<Result<Identity, rustls::Error>> {
        for trust in self.foreign().iter() {
            let id = match trust.verify(end_entity, intermediates, now, &self.trust_domain) {
                Ok(None) => continue,
                Ok(Some(id)) => id,
                Err(refusal) => {
                    return Some(Err(reject(end_entity, refusal.reason, refusal.error)))
                }
            };
            if self.revoked.contains(&id.serial) {
                return Some(Err(reject(
                    end_entity,
                    format!("certificate revoked (CRL of trust {:?})", trust.config.name),
                    rustls::Error::InvalidCertificate(CertificateError::Revoked),
                )));
            }
            if !current_policy(&self.policy).has_role(&id.role) {
                return Some(Err(reject(
                    end_entity,
                    format!("role {:?} is not in the policy", id.role),
                    rustls::Error::InvalidCertificate(
                        CertificateError::ApplicationVerificationFailure,
                    ),
                )));
            }
            return Some(Ok(id));
        }
        None
    }

    fn own(&self) -> Arc<dyn ClientCertVerifier> {
        match self.inner.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// The identity checks after webpki, shared with the per-request re-check.
    pub fn check_identity(&self, der: &[u8]) -> Result<Identity, String> {
        self.check(der).map_err(|(reason, _)| reason)
    }

    fn check(&self, der: &[u8]) -> Result<Identity, (String, CertificateError)> {
        let generic = || CertificateError::ApplicationVerificationFailure;
        let id = identity::from_der(der, &self.role_oid, &self.trust_domain)
            .map_err(|e| (e.to_string(), generic()))?;
        if self.revoked.contains(&id.serial) {
            return Err(("certificate revoked".into(), CertificateError::Revoked));
        }
        if !current_policy(&self.policy).has_role(&id.role) {
            return Err((
                format!("role {:?} is not in the policy", id.role),
                generic(),
            ));
        }
        Ok(id)
    }
}

impl ClientCertVerifier for ZtVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        !self.optional
    }

    /// No hints: the trusted CAs change at run time (rotation, foreign trusts), and every
    /// client mcp-zt serves presents its one certificate without them.
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        // A certificate locked out after failing in a loop is refused before any other work.
        if let Some(locked) = super::lockout::check_presented(end_entity) {
            return Err(reject(
                end_entity,
                locked.to_string(),
                rustls::Error::InvalidCertificate(CertificateError::ApplicationVerificationFailure),
            ));
        }
        // mcp-zt's own certificates are signed directly by one of its issuing CAs: no
        // intermediate the client sends is considered (webpki does not enforce an anchor's
        // path length, so a sub-CA under an imported CA could otherwise pass as ours).
        if let Err(e) = self.own().verify_client_cert(end_entity, &[], now) {
            let unknown = matches!(
                e,
                rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer)
            );
            let foreign = if unknown {
                self.verify_foreign(end_entity, intermediates, now)
            } else {
                None
            };
            return match foreign {
                Some(Ok(identity)) => {
                    let _ = VERDICT.try_with(|slot| *slot.borrow_mut() = Some(Ok(identity)));
                    Ok(ClientCertVerified::assertion())
                }
                Some(Err(e)) => Err(e),
                None => Err(reject(end_entity, webpki_reason(&e), e)),
            };
        }
        let identity = self.check(end_entity).map_err(|(reason, err)| {
            reject(end_entity, reason, rustls::Error::InvalidCertificate(err))
        })?;
        let _ = VERDICT.try_with(|slot| *slot.borrow_mut() = Some(Ok(identity)));
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.own().verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.own().verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.own().supported_verify_schemes()
    }
}

/// webpki over `anchors`, client certificates required.
fn webpki_over(anchors: &[Vec<u8>]) -> Result<Arc<dyn ClientCertVerifier>, super::TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    for der in anchors {
        roots.add(CertificateDer::from(der.clone()))?;
    }
    Ok(rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        super::provider(),
    )
    .build()?)
}

/// A webpki error in words for the audit log.
pub(super) fn webpki_reason(e: &rustls::Error) -> String {
    match e {
        rustls::Error::InvalidCertificate(CertificateError::Revoked) => {
            "certificate revoked".into()
        }
        rustls::Error::InvalidCertificate(CertificateError::UnknownRevocationStatus) => {
            "revocation status unknown (no CRL of this certificate's issuer was loaded)".into()
        }
        rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer) => {
            "certificate not issued by this CA (unknown issuer)".into()
        }
        rustls::Error::InvalidCertificate(CertificateError::BadSignature) => {
            "bad certificate signature (not signed by this CA, or altered after signing)".into()
        }
        rustls::Error::InvalidCertificate(
            CertificateError::Expired | CertificateError::ExpiredContext { .. },
        ) => "certificate expired".into(),
        rustls::Error::InvalidCertificate(
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. },
        ) => "certificate not valid yet".into(),
        rustls::Error::InvalidCertificate(
            CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. },
        ) => "certificate not valid for client authentication (EKU)".into(),
        other => format!("certificate rejected: {other}"),
    }
}

/// Extracts the audit details from a failed handshake's error.
pub fn rejection_of(err: &std::io::Error) -> Option<Rejection> {
    let inner = err.get_ref()?.downcast_ref::<rustls::Error>()?;
    match inner {
        rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(e))) => {
            e.downcast_ref::<Rejection>().cloned()
        }
        _ => None,
    }
}
