//! TLS: the rustls server configuration (client certificates required, no resumption), the
//! client-certificate verifier and the handshake lockout.

pub mod foreign;
pub mod foreign_crl;
pub mod lockout;
pub mod verifier;

use std::sync::{Arc, RwLock};

use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, NoServerSessionStorage, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;

pub use verifier::{RevocationSet, SharedPolicy, ZtVerifier};

use crate::pki::role_ext::Oid;

/// TLS setup failures.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// rustls refused the configuration (its error is in the message, not also the source:
    /// `{:#}` would say it twice).
    #[error("TLS configuration: {0}")]
    Rustls(rustls::Error),
    /// The client verifier could not be built (its error is in the message).
    #[error("client verifier: {0}")]
    Verifier(rustls::server::VerifierBuilderError),
    /// PEM decoding.
    #[error("{0}")]
    Pem(String),
}

impl From<rustls::Error> for TlsError {
    fn from(e: rustls::Error) -> Self {
        TlsError::Rustls(e)
    }
}

impl From<rustls::server::VerifierBuilderError> for TlsError {
    fn from(e: rustls::server::VerifierBuilderError) -> Self {
        TlsError::Verifier(e)
    }
}

/// The one crypto provider of the process: aws-lc-rs.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// A certificate from outside (`serve --tls-cert`, e.g. from a public CA) and the names it is
/// served for.
#[derive(Debug)]
struct Public {
    names: Vec<String>,
    key: Arc<CertifiedKey>,
}

/// The server's certificate, replaceable at run time (renewal) without a restart; and,
/// optionally, a certificate from outside for the public names (chosen by SNI), which cloud
/// clients verify against the web PKI.
#[derive(Debug)]
pub struct ServerCert(RwLock<Arc<CertifiedKey>>, RwLock<Option<Public>>);

impl ServerCert {
    /// Builds from a PEM chain and PEM key.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self, TlsError> {
        Ok(ServerCert(
            RwLock::new(certified_key(cert_pem, key_pem)?),
            RwLock::new(None),
        ))
    }

    /// Serves `cert_pem` (a chain) with `key_pem` for SNI names in `names` (lower case); the
    /// key must match the certificate. Returns the leaf's notAfter (Unix seconds).
    pub fn set_public(
        &self,
        names: Vec<String>,
        cert_pem: &str,
        key_pem: &str,
    ) -> Result<i64, TlsError> {
        let ck = certified_key(cert_pem, key_pem)?;
        ck.keys_match()?;
        let leaf = ck.end_entity_cert()?;
        let (_, parsed) = x509_parser::parse_x509_certificate(leaf)
            .map_err(|e| TlsError::Pem(format!("certificate: {e}")))?;
        let not_after = parsed.validity().not_after.timestamp();
        if !parsed.validity().is_valid() {
            return Err(TlsError::Pem(
                "the certificate is expired or not valid yet".into(),
            ));
        }
        for n in &names {
            if !covers(&parsed, n) {
                return Err(TlsError::Pem(format!(
                    "the certificate does not name {n} (subjectAltName)"
                )));
            }
        }
        let public = Public { names, key: ck };
        match self.1.write() {
            Ok(mut g) => *g = Some(public),
            Err(p) => *p.into_inner() = Some(public),
        }
        Ok(not_after)
    }
    /// Swaps in a renewed certificate; new handshakes use it at once.
    pub fn replace(&self, cert_pem: &str, key_pem: &str) -> Result<(), TlsError> {
        let ck = certified_key(cert_pem, key_pem)?;
        match self.0.write() {
            Ok(mut g) => *g = ck,
            Err(p) => *p.into_inner() = ck,
        }
        Ok(())
    }
}

impl ResolvesServerCert for ServerCert {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        if let Some(sni) = hello.server_name() {
            let public = match self.1.read() {
                Ok(g) => g,
                Err(p) => p.into_inner(),
            };
            if let Some(p) = public.as_ref() {
                if p.names.iter().any(|n| n.eq_ignore_ascii_case(sni)) {
                    return Some(p.key.clone());
                }
            }
        }
        Some(match self.0.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        })
    }
}

/// Whether the certificate's subjectAltName DNS names cover `name` (one `*.` label allowed).
fn covers(cert: &x509_parser::certificate::X509Certificate<'_>, name: &str) -> bool {
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return false;
    };
    let name = name.to_ascii_lowercase();
    san.value.general_names.iter().any(|gn| match gn {
        x509_parser::extensions::GeneralName::DNSName(d) => {
            let d = d.to_ascii_lowercase();
            d == name
                || d.strip_prefix("*.").is_some_and(|rest| {
                    name.split_once('.')
                        .is_some_and(|(first, tail)| !first.is_empty() && tail == rest)
                })
        }
        x509_parser::extensions::GeneralName::IPAddress(ip) => {
            name.parse::<std::net::IpAddr>().is_ok_and(|a| match a {
                std::net::IpAddr::V4(v4) => *ip == v4.octets(),
                std::net::IpAddr::V6(v6) => *ip == v6.octets(),
            })
        }
        _ => false,
    })
}

fn certified_key(cert_pem: &str, key_pem: &str) -> Result<Arc<CertifiedKey>, TlsError> {
    // The server's certificate, then the intermediate(s): clients trust only the root.
    let chain = crate::pki::inspect::pem_certificates(cert_pem)
        .map_err(|e| TlsError::Pem(e.to_string()))?;
    let key = rustls::pki_types::pem::PemObject::from_pem_slice(key_pem.as_bytes())
        .map_err(|e| TlsError::Pem(format!("server key: {e}")))?;
    let key: PrivateKeyDer<'static> = key;
    let signing = provider().key_provider.load_private_key(key)?;
    Ok(Arc::new(CertifiedKey::new(
        chain.into_iter().map(CertificateDer::from).collect(),
        signing,
    )))
}

/// Everything the server TLS configuration is made of.
pub struct TlsSettings {
    /// The CAs that sign mcp-zt's client certificates, DER (see
    /// [`crate::ca::Signer::anchors`]).
    pub anchors: Vec<Vec<u8>>,
    /// The server's own certificate.
    pub server_cert: Arc<ServerCert>,
    /// Role extension OID.
    pub role_oid: Oid,
    /// Trust domain for SPIFFE IDs.
    pub trust_domain: String,
    /// The live policy.
    pub policy: SharedPolicy,
    /// The live revocation set.
    pub revoked: RevocationSet,
    /// Whether a client may connect without a certificate (OAuth on).
    pub certificate_optional: bool,
}

/// Builds the server configuration: TLS 1.3 and 1.2 (rustls offers only ECDHE + AEAD suites),
/// client certificate required and verified by [`ZtVerifier`], and no session resumption, because
/// a resumed session does not run the verifier and would let a revoked certificate back in.
pub fn server_config(s: &TlsSettings) -> Result<(Arc<ServerConfig>, Arc<ZtVerifier>), TlsError> {
    let provider = provider();
    let mut verifier = ZtVerifier::new(
        &s.anchors,
        s.role_oid.clone(),
        s.trust_domain.clone(),
        s.policy.clone(),
        s.revoked.clone(),
    )?;
    if s.certificate_optional {
        verifier = verifier.certificate_optional();
    }
    let verifier = Arc::new(verifier);
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_client_cert_verifier(verifier.clone())
        .with_cert_resolver(s.server_cert.clone());
    config.session_storage = Arc::new(NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok((Arc::new(config), verifier))
}
