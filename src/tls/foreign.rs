//! A foreign trust at run time: its CA bundle and CRL loaded into a webpki verifier.
//!
//! webpki checks the chain to the bundle and the end-entity certificate against the CRL
//! (including the CRL's signature: a CRL the issuing CA did not sign leaves the status unknown,
//! which is refused). mcp-zt adds what webpki leaves open: a CRL past its nextUpdate is
//! accepted for the trust's grace period and then refuses every handshake (fail closed), and
//! the role comes only from the trust's rules.
//!
//! The CRL's own signature is checked by webpki at each handshake, not when it is loaded: a
//! forged CRL (from a `crl_url` over plain HTTP, say) can make mcp-zt refuse and cut
//! certificates it lists, never accept one; and a genuine but older CRL served again is
//! refused by the refresher ([`ForeignTrust::older_than`]), so it cannot un-revoke. Serve CRLs
//! over https, or as files.

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, UnixTime};
use rustls::server::danger::ClientCertVerifier;
use rustls::server::WebPkiClientVerifier;

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
    /// thisUpdate and CRL number of each CRL, by issuer name (DER): a later CRL from the same
    /// issuer must not be older (an old CRL served again would un-revoke what was revoked
    /// since).
    pub crl_this_update: std::collections::BTreeMap<Vec<u8>, (i64, u64)>,
    /// The identity keys ([`identity::foreign_key`]) its CRLs list.
    pub revoked: Vec<String>,
    /// The CRL bytes as loaded, to notice a change.
    pub crl_bytes: Vec<u8>,
    /// The CA bundle as loaded, to notice a change.
    pub ca_bytes: Vec<u8>,
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
    /// Builds a trust from its CA bundle (PEM) and CRL bytes (PEM, one or more blocks, or
    /// DER). Bundle CAs that are not valid now are left out, with their CRLs. Refused: no CA
    /// valid now, a CRL that does not parse, lacks nextUpdate, or comes from no CA of the
    /// bundle, or no CRL of a valid CA.
    pub fn build(
        config: TrustConfig,
        ca_pem: &[u8],
        crl_bytes: Vec<u8>,
    ) -> Result<ForeignTrust, TrustLoadError> {
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
        let mut subjects = Vec::new();
        let mut all_subjects = Vec::new();
        let mut roots = rustls::RootCertStore::empty();
        let now = crate::pki::now().unix_timestamp();
        for ca in &cas {
            let (_, c) = x509_parser::parse_x509_certificate(ca)
                .map_err(|e| err(format!("CA bundle {}: {e}", config.ca)))?;
            all_subjects.push(c.subject().as_raw().to_vec());
            // webpki does not check a trust anchor's own dates: an expired CA is left out.
            let v = c.validity();
            if v.not_before.timestamp() > now || v.not_after.timestamp() <= now {
                continue;
            }
            if !c.is_ca() {
                return Err(err(format!(
                    "CA bundle {}: {} is not a CA certificate",
                    config.ca,
                    c.subject()
                )));
            }
            subjects.push(c.subject().as_raw().to_vec());
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
        let crls = parse_crls(&crl_bytes).map_err(&err)?;
        let mut next_update = i64::MAX;
        let mut this_update = std::collections::BTreeMap::new();
        let mut revoked = Vec::new();
        let mut kept = Vec::new();
        for der in crls {
            let (_, crl) =
                x509_parser::parse_x509_crl(&der).map_err(|e| err(format!("CRL: {e}")))?;
            let issuer = crl.issuer().as_raw();
            if !all_subjects.iter().any(|s| s == issuer) {
                return Err(err(format!(
                    "the CRL is issued by {}, which is not a CA of the bundle {}",
                    crl.issuer(),
                    config.ca
                )));
            }
            // The CRL of a CA left out (expired) counts for nothing.
            if !subjects.iter().any(|s| s == issuer) {
                continue;
            }
            let Some(next) = crl.next_update() else {
                return Err(err(
                    "the CRL has no nextUpdate: its freshness cannot be judged".into(),
                ));
            };
            next_update = next_update.min(next.timestamp());
            let number = crl
                .crl_number()
                .and_then(|n| u64::try_from(n.clone()).ok())
                .unwrap_or(0);
            this_update.insert(issuer.to_vec(), (crl.last_update().timestamp(), number));
            for r in crl.iter_revoked_certificates() {
                revoked.push(identity::foreign_key(&config.name, issuer, r.raw_serial()));
            }
            kept.push(der);
        }
        if kept.is_empty() {
            return Err(err("no CRL of a CA of the bundle that is valid now".into()));
        }
        let crls = kept;
        let verifier =
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots), super::provider())
                .with_crls(crls)
                .only_check_end_entity_revocation()
                .build()
                .map_err(|e| err(format!("verifier: {e}")))?;
        Ok(ForeignTrust {
            config,
            verifier,
            crl_next_update: next_update,
            crl_this_update: this_update,
            revoked,
            crl_bytes,
            ca_bytes,
        })
    }

    /// Whether a CRL of this trust is older (thisUpdate, then CRL number) than the one from the
    /// same issuer in `current`: such a CRL is refused.
    pub fn older_than(&self, current: &ForeignTrust) -> bool {
        self.crl_this_update
            .iter()
            .any(|(issuer, t)| current.crl_this_update.get(issuer).is_some_and(|c| t < c))
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
    Ok(crls)
}
