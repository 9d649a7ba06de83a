//! Building certificates and CRLs. Everything here returns bytes; nothing touches the disk.

use std::net::IpAddr;

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, CustomExtension,
    DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair,
    KeyUsagePurpose, RevocationReason, RevokedCertParams, SanType, SerialNumber,
    SignatureAlgorithm,
};
use time::{Duration, OffsetDateTime};
use zeroize::Zeroizing;

use super::role_ext::{self, Oid};
use super::{random_serial, PkiError};

/// Clock skew allowance: certificates are valid from one minute before issuance.
pub const BACKDATE: Duration = Duration::minutes(1);

/// The CA's key algorithm.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum KeyAlgorithm {
    /// ECDSA with P-256 and SHA-256: accepted by every TLS stack.
    EcdsaP256,
    /// Ed25519: small and fast, but some older clients do not accept it.
    Ed25519,
}

impl KeyAlgorithm {
    fn rcgen(self) -> &'static SignatureAlgorithm {
        match self {
            KeyAlgorithm::EcdsaP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            KeyAlgorithm::Ed25519 => &rcgen::PKCS_ED25519,
        }
    }

    /// Generates a fresh key pair in memory.
    pub fn generate(self) -> Result<KeyPair, PkiError> {
        Ok(KeyPair::generate_for(self.rcgen())?)
    }
}

/// A newly built certificate with its key.
pub struct Built {
    /// PEM certificate.
    pub cert_pem: String,
    /// DER certificate.
    pub cert_der: Vec<u8>,
    /// The serial, 16 bytes.
    pub serial: [u8; 16],
    /// PEM PKCS#8 private key; zeroized on drop.
    pub key_pem: Zeroizing<String>,
    /// Validity start (Unix seconds).
    pub not_before: i64,
    /// Validity end (Unix seconds).
    pub not_after: i64,
}

impl std::fmt::Debug for Built {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Built")
            .field("serial", &hex::encode(self.serial))
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

/// Which CA certificate to build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaRole {
    /// A single self-signed CA that signs leaves itself (homes made before the hierarchy).
    Single,
    /// A self-signed root: signs intermediates and cross certificates (path length 2).
    Root,
    /// An intermediate signed by a root: signs leaves and CRLs (path length 0).
    Intermediate,
}

fn ca_params(
    common_name: &str,
    role: CaRole,
    now: OffsetDateTime,
    not_after: OffsetDateTime,
) -> Result<CertificateParams, PkiError> {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn.push(DnType::OrganizationName, "mcp-zt");
    params.distinguished_name = dn;
    // A root allows two CAs below it: the intermediate, and during a root rollover the
    // cross certificate above it (server ← intermediate ← new root (cross) ← old root).
    let pathlen = if role == CaRole::Root { 2 } else { 0 };
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(pathlen));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = now - BACKDATE;
    params.not_after = not_after;
    params.serial_number = Some(SerialNumber::from_slice(&random_serial()?));
    params.key_identifier_method = KeyIdMethod::Sha256;
    params.use_authority_key_identifier_extension = role == CaRole::Intermediate;
    Ok(params)
}

/// Builds a self-signed CA certificate: a root ([`CaRole::Root`]) or a single CA.
pub fn ca_certificate(
    common_name: &str,
    key: &KeyPair,
    now: OffsetDateTime,
    lifetime: Duration,
) -> Result<(String, Vec<u8>), PkiError> {
    root_certificate(common_name, CaRole::Single, key, now, lifetime)
}

/// Builds a self-signed root or single CA certificate.
pub fn root_certificate(
    common_name: &str,
    role: CaRole,
    key: &KeyPair,
    now: OffsetDateTime,
    lifetime: Duration,
) -> Result<(String, Vec<u8>), PkiError> {
    let cert = ca_params(common_name, role, now, now + lifetime)?.self_signed(key)?;
    Ok((cert.pem(), cert.der().to_vec()))
}

/// Builds the cross certificate of a root rollover: the new root's name and key (`new_key`),
/// signed by the old root, so that clients that trust only the old root still reach the new
/// one during the changeover.
pub fn cross_certificate(
    common_name: &str,
    new_key: &impl rcgen::PublicKeyData,
    old_root: &Issuer<'_, &KeyPair>,
    now: OffsetDateTime,
    not_after: OffsetDateTime,
) -> Result<(String, Vec<u8>), PkiError> {
    let mut params = ca_params(common_name, CaRole::Root, now, not_after)?;
    params.use_authority_key_identifier_extension = true;
    let cert = params.signed_by(new_key, old_root)?;
    Ok((cert.pem(), cert.der().to_vec()))
}

/// Builds an intermediate CA certificate (path length 0) for `key`, signed by `root`. It ends
/// at `not_after`, which the caller keeps inside the root's lifetime.
pub fn intermediate_certificate(
    common_name: &str,
    key: &impl rcgen::PublicKeyData,
    root: &Issuer<'_, &KeyPair>,
    now: OffsetDateTime,
    not_after: OffsetDateTime,
) -> Result<(String, Vec<u8>), PkiError> {
    let cert =
        ca_params(common_name, CaRole::Intermediate, now, not_after)?.signed_by(key, root)?;
    Ok((cert.pem(), cert.der().to_vec()))
}

/// What kind of leaf certificate to build.
#[derive(Debug, Clone)]
pub enum LeafKind {
    /// A client certificate carrying a role.
    Client {
        /// The RBAC role (must exist in the policy; checked by the caller).
        role: String,
        /// The role extension's OID.
        role_oid: Oid,
    },
    /// The server's own TLS certificate.
    Server,
}

/// What goes into a leaf certificate.
#[derive(Debug, Clone)]
pub struct LeafRequest {
    /// Subject CN and SPIFFE path segment.
    pub name: String,
    /// The SPIFFE ID, e.g. `spiffe://example.org/client/alice`.
    pub spiffe_id: String,
    /// Additional subject alternative names (DNS names or IP addresses).
    pub extra_sans: Vec<String>,
    /// Client or server.
    pub kind: LeafKind,
    /// Validity from `now - BACKDATE` to `now + lifetime`.
    pub lifetime: Duration,
    /// Where relying parties fetch the CRL (a CRL distribution point), if the CA publishes
    /// one over HTTP (`ca init --crl-url`).
    pub crl_url: Option<String>,
}

fn san_of(s: &str) -> Result<SanType, PkiError> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Ok(SanType::IpAddress(ip));
    }
    let valid_dns = !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'*')
        });
    if !valid_dns {
        return Err(PkiError::Invalid(format!(
            "invalid SAN {s:?}: expected a DNS name or an IP address"
        )));
    }
    Ok(SanType::DnsName(s.to_string().try_into()?))
}

/// Builds and signs a leaf certificate with a fresh P-256 key.
pub fn leaf_certificate(
    req: &LeafRequest,
    issuer: &Issuer<'_, &KeyPair>,
    now: OffsetDateTime,
) -> Result<Built, PkiError> {
    let key = KeyAlgorithm::EcdsaP256.generate()?;
    let mut built = leaf_for_key(req, &key, issuer, now)?;
    built.key_pem = Zeroizing::new(key.serialize_pem());
    Ok(built)
}

/// Builds and signs a leaf certificate for a public key the caller holds the private half of
/// (renewal: the key never leaves the client). `key_pem` of the result is empty.
pub fn leaf_for_key(
    req: &LeafRequest,
    key: &impl rcgen::PublicKeyData,
    issuer: &Issuer<'_, &KeyPair>,
    now: OffsetDateTime,
) -> Result<Built, PkiError> {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, req.name.as_str());
    params.distinguished_name = dn;
    params.subject_alt_names = vec![SanType::URI(req.spiffe_id.clone().try_into()?)];
    for san in &req.extra_sans {
        params.subject_alt_names.push(san_of(san)?);
    }
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.use_authority_key_identifier_extension = true;
    params.key_identifier_method = KeyIdMethod::Sha256;
    match &req.kind {
        LeafKind::Client { role, role_oid } => {
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
            let mut ext =
                CustomExtension::from_oid_content(role_oid.arcs(), role_ext::encode(role)?);
            ext.set_criticality(false);
            params.custom_extensions.push(ext);
        }
        LeafKind::Server => {
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        }
    }
    if let Some(url) = &req.crl_url {
        params.crl_distribution_points = vec![rcgen::CrlDistributionPoint {
            uris: vec![url.clone()],
        }];
    }
    let serial = random_serial()?;
    params.serial_number = Some(SerialNumber::from_slice(&serial));
    let not_before = now - BACKDATE;
    let not_after = now + req.lifetime;
    params.not_before = not_before;
    params.not_after = not_after;
    let cert = params.signed_by(key, issuer)?;
    Ok(Built {
        cert_pem: cert.pem(),
        cert_der: cert.der().to_vec(),
        serial,
        key_pem: Zeroizing::new(String::new()),
        not_before: not_before.unix_timestamp(),
        not_after: not_after.unix_timestamp(),
    })
}

/// Why a certificate was revoked (RFC 5280 §5.3.1 reason codes that apply to leaf certificates).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum Reason {
    /// No reason given.
    Unspecified,
    /// The private key is known or suspected to be compromised.
    KeyCompromise,
    /// The holder's affiliation changed.
    AffiliationChanged,
    /// Replaced by a newer certificate.
    Superseded,
    /// No longer needed.
    CessationOfOperation,
    /// The holder's privileges were withdrawn.
    PrivilegeWithdrawn,
}

impl Reason {
    fn rcgen(self) -> RevocationReason {
        match self {
            Reason::Unspecified => RevocationReason::Unspecified,
            Reason::KeyCompromise => RevocationReason::KeyCompromise,
            Reason::AffiliationChanged => RevocationReason::AffiliationChanged,
            Reason::Superseded => RevocationReason::Superseded,
            Reason::CessationOfOperation => RevocationReason::CessationOfOperation,
            Reason::PrivilegeWithdrawn => RevocationReason::PrivilegeWithdrawn,
        }
    }

    /// The kebab-case name used on the command line and in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Unspecified => "unspecified",
            Reason::KeyCompromise => "key-compromise",
            Reason::AffiliationChanged => "affiliation-changed",
            Reason::Superseded => "superseded",
            Reason::CessationOfOperation => "cessation-of-operation",
            Reason::PrivilegeWithdrawn => "privilege-withdrawn",
        }
    }
}

/// One entry of a CRL.
#[derive(Debug, Clone)]
pub struct RevokedEntry {
    /// The certificate's serial.
    pub serial: Vec<u8>,
    /// When it was revoked (Unix seconds).
    pub revoked_at: i64,
    /// Why.
    pub reason: Reason,
}

/// Builds and signs a CRL.
pub fn crl(
    issuer: &Issuer<'_, &KeyPair>,
    number: u64,
    now: OffsetDateTime,
    lifetime: Duration,
    revoked: &[RevokedEntry],
) -> Result<String, PkiError> {
    let revoked_certs = revoked
        .iter()
        .map(|r| RevokedCertParams {
            serial_number: SerialNumber::from_slice(&r.serial),
            revocation_time: OffsetDateTime::from_unix_timestamp(r.revoked_at).unwrap_or(now),
            reason_code: Some(r.reason.rcgen()),
            invalidity_date: None,
        })
        .collect();
    let params = CertificateRevocationListParams {
        this_update: now,
        next_update: now + lifetime,
        crl_number: SerialNumber::from_slice(&number.to_be_bytes()),
        issuing_distribution_point: None,
        revoked_certs,
        key_identifier_method: KeyIdMethod::Sha256,
    };
    Ok(params.signed_by(issuer)?.pem()?)
}
