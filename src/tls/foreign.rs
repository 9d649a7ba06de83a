//! A foreign trust at run time: its CA bundle and CRL loaded into a webpki verifier.
//!
//! webpki checks the chain to the bundle and the end-entity certificate against the CRL
//! (including the CRL's signature: a CRL the issuing CA did not sign leaves the status unknown,
//! which is refused). mcp-zt adds what webpki leaves open: a CRL past its nextUpdate is
//! accepted for the trust's grace period and then refuses every handshake (fail closed), and
//! the role comes only from the trust's rules.
//!
//! Every CRL is checked when it is loaded ([`super::foreign_crl`]): its signature against the
//! bundle, its issuer's cRLSign, a thisUpdate not in the future; and exactly one CRL per issuer
//! (the newest that verifies, in the new body or in force) is handed to webpki. A forged CRL
//! is refused and the CRL in force stays; a genuine but older CRL served again loses to the
//! one in force. Serials a verified CRL lists are also remembered in the ledger by the server
//! ([`crate::server`]'s trust refresher), so a later CRL that leaves them out cannot bring them
//! back.

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, UnixTime};
use rustls::server::danger::ClientCertVerifier;
use rustls::server::WebPkiClientVerifier;

use super::foreign_crl::{self, CrlSkip, VerifiedCrl};
use crate::identity::{self, Identity};
use crate::policy::TrustConfig;

/// A trust that could not be loaded.
#[derive(Debug, thiserror::Error)]
#[error("trust {trust:?}: {message}")]
pub struct TrustLoadError {
    /// The trust.
    pub trust: String,
    /// What is wrong.
    pub message: String,
}

/// One loaded `[trust.NAME]`.
pub struct ForeignTrust {
    /// Its configuration.
    pub config: TrustConfig,
    verifier: Arc<dyn ClientCertVerifier>,
    /// The earliest nextUpdate of its CRLs (Unix seconds).
    pub crl_next_update: i64,
    /// The CRLs in force: one per issuer, each verified against the bundle. webpki checks
    /// exactly these.
    pub crls: Vec<VerifiedCrl>,
    /// The identity keys ([`identity::foreign_key`]) its CRLs list as revoked.
    pub revoked: Vec<String>,
    /// The CRL bytes last read, to notice a change.
    pub crl_bytes: Vec<u8>,
    /// The CA bundle as loaded, to notice a change.
    pub ca_bytes: Vec<u8>,
}

/// A trust built from a new CRL body, and what was refused on the way.
#[derive(Debug)]
pub struct Loaded {
    /// The trust, with the CRLs it put in force.
    pub trust: ForeignTrust,
    /// CRLs of the body that were refused, each with its reason (for the audit log).
    pub refused: Vec<String>,
}

impl std::fmt::Debug for ForeignTrust {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ForeignTrust")
            .field("name", &self.config.name)
            .field("crl_next_update", &self.crl_next_update)
            .field("revoked", &self.revoked.len())
            .finish()
    }
}

/// Why a foreign trust refused a certificate it recognized.
#[derive(Debug)]
pub struct ForeignRefusal {
    /// For the audit log.
    pub reason: String,
    /// For rustls (the alert).
    pub error: rustls::Error,
}

impl ForeignTrust {
    /// Builds a trust from its CA bundle (PEM) and a CRL body (PEM, one or more blocks, or
    /// DER), with the CRLs of `in_force` (the trust as it was) as the floor: for each issuer
    /// the newest CRL that verifies wins, and a CRL of the body that is forged, malformed,
    /// from the future or older than the one in force is refused (listed in
    /// [`Loaded::refused`]). Bundle CAs that are not valid now are left out, with their CRLs.
    /// Refused as a whole: a bundle with no CA valid now, a body that is not PEM or DER, or
    /// no verified CRL at all.
    pub fn build(
        config: TrustConfig,
        ca_pem: &[u8],
        crl_bytes: Vec<u8>,
        in_force: &[VerifiedCrl],
    ) -> Result<Loaded, TrustLoadError> {
        let ca_bytes = ca_pem.to_vec();
        let err = |message: String| TrustLoadError {
            trust: config.name.clone(),
            message,
        };
        let cas: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(ca_pem)
            .collect::<Result<_, _>>()
            .map_err(|e| err(format!("CA bundle {}: {e}", config.ca)))?;
        if cas.is_empty() {
            return Err(err(format!("CA bundle {} holds no certificate", config.ca)));
        }
        let now = crate::pki::now().unix_timestamp();
        let bundle = foreign_crl::bundle_cas(&cas, now)
            .map_err(|e| err(format!("CA bundle {}: {e}", config.ca)))?;
        let mut roots = rustls::RootCertStore::empty();
        for (ca, info) in cas.iter().zip(&bundle) {
            // webpki does not check a trust anchor's own dates: an expired CA is left out.
            if !info.valid_now {
                continue;
            }
            let (_, c) = x509_parser::parse_x509_certificate(ca)
                .map_err(|e| err(format!("CA bundle {}: {e}", config.ca)))?;
            if !c.is_ca() {
                return Err(err(format!(
                    "CA bundle {}: {} is not a CA certificate",
                    config.ca,
                    c.subject()
                )));
            }
            roots
                .add(ca.clone())
                .map_err(|e| err(format!("CA bundle {}: {e}", config.ca)))?;
        }
        if roots.is_empty() {
            return Err(err(format!(
                "CA bundle {}: no CA certificate in it is valid now",
                config.ca
            )));
        }
        foreign_crl::distinct_issuers(&bundle)
            .map_err(|e| err(format!("CA bundle {}: {e}", config.ca)))?;
        let roots = Arc::new(roots);
        let grace = config.crl_grace_secs;
        let mut refused = Vec::new();
        let mut fresh = Vec::new();
        for der in parse_crls(&crl_bytes).map_err(&err)? {
            match foreign_crl::verify(&der, &bundle, now) {
                Ok(v) if v.next_update.saturating_add(grace) < now => refused.push(format!(
                    "{}: its CRL is stale (nextUpdate {} plus {grace} s of grace has passed)",
                    v.issuer_text,
                    crate::pki::rfc3339(v.next_update)
                )),
                // webpki must be able to use what mcp-zt chooses (reason codes, extensions).
                Ok(v) => match usable(&roots, &v) {
                    Ok(()) => fresh.push(v),
                    Err(why) => refused.push(why),
                },
                Err(CrlSkip::Refused(why)) => refused.push(why),
                Err(CrlSkip::ExpiredIssuer) => {}
            }
        }
        // The CRLs in force are checked again: the bundle may have changed under them, and
        // one that went stale is dropped (its issuer's certificates are then refused, the
        // other issuers' keep working), so it can never pin the trust.
        let floor: Vec<VerifiedCrl> = in_force
            .iter()
            .filter_map(|c| foreign_crl::verify(&c.der, &bundle, now).ok())
            .filter(|c| c.next_update.saturating_add(grace) >= now)
            .collect();
        let (crls, older) = foreign_crl::choose(&floor, fresh);
        refused.extend(older);
        if crls.is_empty() {
            let why = refused.first().cloned().unwrap_or_default();
            return Err(err(format!(
                "no CRL of a CA of the bundle that is valid now verifies{}{why}",
                if why.is_empty() { "" } else { ": " }
            )));
        }
        let mut revoked = Vec::new();
        let mut next_update = i64::MAX;
        for crl in &crls {
            next_update = next_update.min(crl.next_update);
            for e in crl.entries.iter().filter(|e| !e.remove_from_crl) {
                revoked.push(identity::foreign_key(&config.name, &crl.issuer, &e.serial));
            }
        }
        let verifier = WebPkiClientVerifier::builder_with_provider(roots, super::provider())
            .with_crls(crls.iter().map(|c| c.der.clone()))
            .only_check_end_entity_revocation()
            .build()
            .map_err(|e| err(format!("verifier: {e}")))?;
        Ok(Loaded {
            trust: ForeignTrust {
                config,
                verifier,
                crl_next_update: next_update,
                crls,
                revoked,
                crl_bytes,
                ca_bytes,
            },
            refused,
        })
    }

    /// Whether this trust's CRLs are the same as `other`'s (a body that changed nothing).
    pub fn same_crls(&self, other: &ForeignTrust) -> bool {
        self.crls.len() == other.crls.len()
            && self
                .crls
                .iter()
                .all(|c| other.crls.iter().any(|o| o.der == c.der))
    }

    /// Verifies a client certificate against this trust. `Ok(None)`: not issued by this
    /// trust's CAs (try the next). `Err`: recognized and refused.
    pub fn verify(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
        own_domain: &str,
    ) -> Result<Option<Identity>, ForeignRefusal> {
        let name = &self.config.name;
        match self
            .verifier
            .verify_client_cert(end_entity, intermediates, now)
        {
            Ok(_) => {}
            Err(rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer)) => {
                return Ok(None)
            }
            Err(e) => {
                return Err(ForeignRefusal {
                    reason: format!("trust {name:?}: {}", super::verifier::webpki_reason(&e)),
                    error: e,
                })
            }
        }
        let secs = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
        if secs
            > self
                .crl_next_update
                .saturating_add(self.config.crl_grace_secs)
        {
            return Err(ForeignRefusal {
                reason: format!(
                    "trust {name:?}: its CRL is stale (nextUpdate {} passed, grace {} s): refusing until a fresh CRL is loaded",
                    crate::pki::rfc3339(self.crl_next_update),
                    self.config.crl_grace_secs
                ),
                error: rustls::Error::InvalidCertificate(
                    rustls::CertificateError::ExpiredRevocationList,
                ),
            });
        }
        identity::from_foreign_der(end_entity, &self.config, own_domain)
            .map(Some)
            .map_err(|e| ForeignRefusal {
                reason: e.to_string(),
                error: rustls::Error::InvalidCertificate(
                    rustls::CertificateError::ApplicationVerificationFailure,
                ),
            })
    }
}

/// Whether webpki accepts `crl` (it refuses some reason codes and extensions mcp-zt's own
/// checks let through): a CRL it would refuse must not be chosen, or the whole trust fails.
fn usable(roots: &Arc<rustls::RootCertStore>, crl: &VerifiedCrl) -> Result<(), String> {
    WebPkiClientVerifier::builder_with_provider(roots.clone(), super::provider())
        .with_crls([crl.der.clone()])
        .build()
        .map(|_| ())
        .map_err(|e| format!("the CRL of {} cannot be used: {e}", crl.issuer_text))
}

/// The most CRLs one body may hold: each costs a signature check.
const MAX_CRLS: usize = 256;

/// CRLs from PEM (every `X509 CRL` block) or a single DER CRL.
fn parse_crls(bytes: &[u8]) -> Result<Vec<CertificateRevocationListDer<'static>>, String> {
    let crls: Vec<CertificateRevocationListDer<'static>> =
        if bytes.trim_ascii_start().starts_with(b"-----") {
            CertificateRevocationListDer::pem_slice_iter(bytes)
                .collect::<Result<_, _>>()
                .map_err(|e| format!("CRL: not valid PEM: {e}"))?
        } else {
            vec![CertificateRevocationListDer::from(bytes.to_vec())]
        };
    if crls.is_empty() {
        return Err("the CRL file holds no X509 CRL block".into());
    }
    if crls.len() > MAX_CRLS {
        return Err(format!(
            "the CRL body holds {} CRLs; at most {MAX_CRLS} are read",
            crls.len()
        ));
    }
    Ok(crls)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::trust::CrlSource;

    fn config(grace: i64) -> TrustConfig {
        TrustConfig {
            name: "corp".into(),
            ca: "corp.pem".into(),
            crl: CrlSource::File("corp.crl".into()),
            crl_grace_secs: grace,
            crl_refresh_secs: 60,
            roles: Vec::new(),
        }
    }

    fn root(cn: &str) -> (rcgen::Issuer<'static, rcgen::KeyPair>, String) {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        p.distinguished_name.push(rcgen::DnType::CommonName, cn);
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        p.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        let pem = p.self_signed(&key).expect("root").pem();
        (rcgen::Issuer::new(p, key), pem)
    }

    /// A PEM CRL made `age` seconds ago, valid for `life` seconds from then.
    fn crl(
        issuer: &rcgen::Issuer<'static, rcgen::KeyPair>,
        number: u8,
        age: i64,
        life: i64,
    ) -> String {
        let at = time::OffsetDateTime::now_utc() - time::Duration::seconds(age);
        rcgen::CertificateRevocationListParams {
            this_update: at,
            next_update: at + time::Duration::seconds(life),
            crl_number: rcgen::SerialNumber::from_slice(&[number]),
            issuing_distribution_point: None,
            revoked_certs: Vec::new(),
            key_identifier_method: rcgen::KeyIdMethod::Sha256,
        }
        .signed_by(issuer)
        .expect("crl")
        .pem()
        .expect("pem")
    }

    #[test]
    fn a_stale_crl_is_refused_at_load_and_a_stale_one_in_force_is_dropped() {
        let (a, a_pem) = root("Corp A");
        let (b, b_pem) = root("Corp B");
        let bundle = format!("{a_pem}{b_pem}");
        // Past nextUpdate plus the grace: refused, saying so.
        let e = ForeignTrust::build(
            config(60),
            bundle.as_bytes(),
            crl(&a, 1, 7200, 3600).into_bytes(),
            &[],
        )
        .expect_err("stale");
        assert!(e.to_string().contains("its CRL is stale"), "{e}");
        // Within the grace: taken.
        assert!(ForeignTrust::build(
            config(3600),
            bundle.as_bytes(),
            crl(&a, 1, 5400, 3600).into_bytes(),
            &[]
        )
        .is_ok());
        // A CRL of B in force that has gone stale does not stay: A's fresh body alone is in
        // force, and the trust is not stale because of B.
        let now = crate::pki::now().unix_timestamp();
        let cas: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(bundle.as_bytes())
            .collect::<Result<_, _>>()
            .expect("bundle");
        let info = foreign_crl::bundle_cas(&cas, now).expect("cas");
        let stale_b =
            CertificateRevocationListDer::from_pem_slice(crl(&b, 1, 7200, 3600).as_bytes())
                .expect("pem");
        let stale_b = foreign_crl::verify(&stale_b, &info, now).expect("verifies");
        let loaded = ForeignTrust::build(
            config(60),
            bundle.as_bytes(),
            crl(&a, 2, 10, 3600).into_bytes(),
            &[stale_b],
        )
        .expect("loads");
        assert_eq!(loaded.trust.crls.len(), 1);
        assert!(loaded.trust.crl_next_update > now);
    }

    #[test]
    fn a_bundle_with_two_cas_of_one_name_is_refused() {
        let (_, a) = root("Corp Root");
        let (b, b2) = root("Corp Root");
        let e = ForeignTrust::build(
            config(60),
            format!("{a}{b2}").as_bytes(),
            crl(&b, 1, 10, 3600).into_bytes(),
            &[],
        )
        .expect_err("refused");
        assert!(e.to_string().contains("keep one"), "{e}");
    }
}
