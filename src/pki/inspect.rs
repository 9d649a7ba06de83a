//! Reading certificates back: the fields mcp-zt cares about, from DER or PEM.
//!
//! This does no chain validation (webpki does that in the TLS handshake). It is used on
//! certificates that are already verified, or to display what the CA wrote.

use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::FromDer;

use super::role_ext::{self, Oid, RoleExtError};
use super::PkiError;

/// The fields of a certificate that matter to mcp-zt.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CertFields {
    /// Serial, lower-case hex without leading zero bytes removed.
    pub serial: String,
    /// Subject common name.
    pub common_name: Option<String>,
    /// The role from the role extension, if present and valid.
    pub role: Option<String>,
    /// Whether the role extension is marked critical (it never should be).
    pub role_critical: bool,
    /// URI subject alternative names (the SPIFFE ID among them).
    pub uris: Vec<String>,
    /// DNS and IP subject alternative names.
    pub names: Vec<String>,
    /// Validity start (Unix seconds).
    pub not_before: i64,
    /// Validity end (Unix seconds).
    pub not_after: i64,
    /// The EKU includes clientAuth.
    pub client_auth: bool,
    /// The EKU includes serverAuth.
    pub server_auth: bool,
    /// The certificate is a CA.
    pub is_ca: bool,
}

/// Why the role could not be read from a certificate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RoleError {
    /// No role extension with the CA's OID.
    #[error("certificate has no role extension")]
    Missing,
    /// More than one role extension.
    #[error("certificate has more than one role extension")]
    Duplicate,
    /// The extension's value is malformed.
    #[error(transparent)]
    Malformed(#[from] RoleExtError),
}

fn oid_matches(oid: &x509_parser::der_parser::oid::Oid<'_>, want: &Oid) -> bool {
    oid.iter()
        .map(|arcs| arcs.eq(want.arcs().iter().copied()))
        .unwrap_or(false)
}

/// Reads the role extension (OID `role_oid`) of a parsed certificate.
pub fn role_of(cert: &X509Certificate<'_>, role_oid: &Oid) -> Result<(String, bool), RoleError> {
    let mut found = None;
    for ext in cert.extensions() {
        if oid_matches(&ext.oid, role_oid) {
            if found.is_some() {
                return Err(RoleError::Duplicate);
            }
            found = Some((role_ext::decode(ext.value)?, ext.critical));
        }
    }
    found.ok_or(RoleError::Missing)
}

/// Parses DER and extracts the fields.
pub fn fields_from_der(der: &[u8], role_oid: &Oid) -> Result<CertFields, PkiError> {
    let (rest, cert) =
        X509Certificate::from_der(der).map_err(|e| PkiError::Parse(e.to_string()))?;
    if !rest.is_empty() {
        return Err(PkiError::Parse("trailing bytes after certificate".into()));
    }
    let role = role_of(&cert, role_oid).ok();
    let mut uris = Vec::new();
    let mut names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for gn in &san.value.general_names {
            match gn {
                GeneralName::URI(u) => uris.push((*u).to_string()),
                GeneralName::DNSName(d) => names.push((*d).to_string()),
                GeneralName::IPAddress(ip) => names.push(ip_to_string(ip)),
                _ => {}
            }
        }
    }
    let (client_auth, server_auth) = match cert.extended_key_usage() {
        Ok(Some(eku)) => (eku.value.client_auth, eku.value.server_auth),
        _ => (false, false),
    };
    let common_name = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(str::to_string);
    Ok(CertFields {
        serial: hex::encode(cert.raw_serial()),
        common_name,
        role_critical: role.as_ref().is_some_and(|r| r.1),
        role: role.map(|r| r.0),
        uris,
        names,
        not_before: cert.validity().not_before.timestamp(),
        not_after: cert.validity().not_after.timestamp(),
        client_auth,
        server_auth,
        is_ca: cert.is_ca(),
    })
}

fn ip_to_string(bytes: &[u8]) -> String {
    match bytes.len() {
        4 => {
            let mut a = [0u8; 4];
            a.copy_from_slice(bytes);
            std::net::Ipv4Addr::from(a).to_string()
        }
        16 => {
            let mut a = [0u8; 16];
            a.copy_from_slice(bytes);
            std::net::Ipv6Addr::from(a).to_string()
        }
        _ => hex::encode(bytes),
    }
}

/// Every CERTIFICATE block of a PEM text, in order (other blocks are skipped); an error if
/// the text is not PEM or holds no certificate.
pub fn pem_certificates(pem: &str) -> Result<Vec<Vec<u8>>, PkiError> {
    use rustls::pki_types::pem::{PemObject, SectionKind};
    let mut out = Vec::new();
    for section in <(SectionKind, Vec<u8>)>::pem_slice_iter(pem.as_bytes()) {
        let (kind, der) = section.map_err(|e| PkiError::Parse(format!("not valid PEM: {e}")))?;
        if kind == SectionKind::Certificate {
            out.push(der);
        }
    }
    if out.is_empty() {
        return Err(PkiError::Parse("no CERTIFICATE block".into()));
    }
    Ok(out)
}

/// DER to one PEM CERTIFICATE block.
pub fn der_to_pem(der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

/// Decodes the first CERTIFICATE block of PEM text to DER.
pub fn pem_to_der(pem: &str) -> Result<Vec<u8>, PkiError> {
    let (_, block) = x509_parser::pem::parse_x509_pem(pem.as_bytes())
        .map_err(|e| PkiError::Parse(format!("not a PEM certificate: {e}")))?;
    if block.label != "CERTIFICATE" {
        return Err(PkiError::Parse(format!(
            "expected a CERTIFICATE PEM block, found {:?}",
            block.label
        )));
    }
    Ok(block.contents)
}
