//! The identity of a verified peer: who the client certificate says it is.
//!
//! Pure: maps certificate DER (already chain-verified by webpki) to an [`Identity`], or says why
//! it cannot. The role comes only from the CA's role extension; names come from the subject CN
//! and the SPIFFE URI, which must agree.

use std::fmt;

use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::FromDer;

use crate::pki::inspect::{role_of, RoleError};
use crate::pki::role_ext::Oid;
use crate::policy::trust::{Field, Subject, TrustConfig};

/// A verified client.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Identity {
    /// Holder name: the subject CN of mcp-zt's own certificates; `TRUST:` and the SPIFFE ID
    /// (else the CN) for a foreign one, so it can never pass for one of ours.
    pub name: String,
    /// RBAC role: from the role extension of mcp-zt's own certificates, from the trust's rules
    /// for a foreign one.
    pub role: String,
    /// The key sessions, connections and revocations are bound to: the certificate serial in
    /// lower-case hex for mcp-zt's own certificates (random and unique across its
    /// intermediates), `TRUST:ISSUER:SERIAL` for a foreign trust (ISSUER: 32 hex digits of the
    /// issuer name's SHA-256), since foreign CAs may reuse serials.
    pub serial: String,
    /// The SPIFFE ID from the URI SAN.
    pub spiffe_id: String,
    /// Certificate notAfter (Unix seconds).
    pub not_after: i64,
    /// The foreign trust (`[trust.NAME]`) that vouched for it; `None` for mcp-zt's own CA.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trust: Option<String>,
    /// Set when the request came with an OAuth access token instead of the certificate itself:
    /// the token carries the identity of the certificate its grant was approved with.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oauth: Option<OAuthVia>,
}

/// The OAuth grant a token-borne request came through.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct OAuthVia {
    /// The OAuth client the holder approved.
    pub client_id: String,
    /// The grant (token family) id.
    pub grant: String,
}

impl Identity {
    /// An identity that stands for nobody (no role, serial `00`): what the gateway uses to
    /// list upstreams at load and in `upstream check`.
    pub fn stand_in(name: &str) -> Identity {
        Identity {
            name: name.to_string(),
            role: String::new(),
            serial: "00".into(),
            spiffe_id: String::new(),
            not_after: 0,
            trust: None,
            oauth: None,
        }
    }
}

/// One verified connection: what every request on it carries (the HTTP layer puts it in the
/// request's extensions; the MCP handler reads it from there).
#[derive(Debug)]
pub struct ConnInfo {
    /// Process-unique connection number.
    pub id: u64,
    /// Peer address.
    pub peer: std::net::SocketAddr,
    /// Who the client certificate says the peer is.
    pub identity: Identity,
}

/// Why a certificate does not map to an identity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    /// Not parseable X.509.
    #[error("unparseable certificate")]
    Unparseable,
    /// No CN.
    #[error("certificate has no subject common name")]
    NoName,
    /// No or several SPIFFE IDs, or one that does not match the CN and trust domain.
    #[error("certificate SPIFFE ID missing or not spiffe://{trust_domain}/client/<CN>")]
    BadSpiffeId {
        /// The trust domain expected.
        trust_domain: String,
    },
    /// The role extension is missing or malformed.
    #[error(transparent)]
    Role(#[from] RoleError),
    /// The role extension was marked critical (mcp-zt never issues that).
    #[error("role extension is marked critical")]
    CriticalRole,
}

/// The serial of a certificate, hex, if it parses at all (for audit lines about rejects).
pub fn serial_and_name(der: &[u8]) -> (Option<String>, Option<String>) {
    match X509Certificate::from_der(der) {
        Ok((_, cert)) => (
            Some(hex::encode(cert.raw_serial())),
            cert.subject()
                .iter_common_name()
                .next()
                .and_then(|cn| cn.as_str().ok())
                .map(str::to_string),
        ),
        Err(_) => (None, None),
    }
}

/// Maps a verified client certificate to an identity.
pub fn from_der(der: &[u8], role_oid: &Oid, trust_domain: &str) -> Result<Identity, IdentityError> {
    let (_, cert) = X509Certificate::from_der(der).map_err(|_| IdentityError::Unparseable)?;
    let name = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(str::to_string)
        .ok_or(IdentityError::NoName)?;
    let (role, critical) = role_of(&cert, role_oid)?;
    if critical {
        return Err(IdentityError::CriticalRole);
    }
    let expected = format!("spiffe://{trust_domain}/client/{name}");
    let mut spiffe = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for gn in &san.value.general_names {
            if let GeneralName::URI(u) = gn {
                if u.starts_with("spiffe://") {
                    spiffe.push((*u).to_string());
                }
            }
        }
    }
    if spiffe.len() != 1 || spiffe[0] != expected {
        return Err(IdentityError::BadSpiffeId {
            trust_domain: trust_domain.to_string(),
        });
    }
    Ok(Identity {
        name,
        role,
        serial: hex::encode(cert.raw_serial()),
        spiffe_id: expected,
        not_after: cert.validity().not_after.timestamp(),
        trust: None,
        oauth: None,
    })
}

/// The subject and SAN values foreign-trust rules look at.
pub fn subject_of(cert: &X509Certificate<'_>) -> Subject {
    let mut s = Subject::default();
    let subject = cert.subject();
    for cn in subject.iter_common_name() {
        if let Ok(v) = cn.as_str() {
            s.push(Field::Cn, v);
        }
    }
    for o in subject.iter_organization() {
        if let Ok(v) = o.as_str() {
            s.push(Field::O, v);
        }
    }
    for ou in subject.iter_organizational_unit() {
        if let Ok(v) = ou.as_str() {
            s.push(Field::Ou, v);
        }
    }
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for gn in &san.value.general_names {
            match gn {
                GeneralName::URI(u) => s.push(Field::SanUri, *u),
                GeneralName::DNSName(d) => s.push(Field::SanDns, *d),
                GeneralName::RFC822Name(e) => s.push(Field::SanEmail, *e),
                _ => {}
            }
        }
    }
    s
}

/// The identity key of a foreign certificate: see [`Identity::serial`]. The issuer is named
/// by 128 bits of the SHA-256 of its DER name, out of reach of a search for a colliding name.
/// Two CAs of one bundle with the same name and overlapping serials would still share keys:
/// give each issuing CA its own name.
pub fn foreign_key(trust: &str, issuer_der: &[u8], serial: &[u8]) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, issuer_der);
    format!(
        "{trust}:{}:{}",
        hex::encode(&digest.as_ref()[..16]),
        hex::encode(serial)
    )
}

/// The trust domain of a `spiffe://` URI as a peer would read it: the authority, without
/// userinfo, port or a trailing dot, lower-cased. `None` for other URIs.
fn spiffe_domain(uri: &str) -> Option<String> {
    let scheme = uri.get(..9)?;
    if !scheme.eq_ignore_ascii_case("spiffe://") {
        return None;
    }
    let rest = &uri[9..];
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = authority.rsplit('@').next().unwrap_or("");
    let host = host.split(':').next().unwrap_or("");
    Some(host.trim_end_matches('.').to_ascii_lowercase())
}

/// Why a foreign certificate has no identity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ForeignError {
    /// Not parseable X.509.
    #[error("unparseable certificate")]
    Unparseable,
    /// A foreign certificate claiming an identity in mcp-zt's own trust domain.
    #[error("a certificate of trust {trust:?} claims {spiffe_id}, in mcp-zt's own trust domain")]
    OwnDomain {
        /// The trust.
        trust: String,
        /// The SPIFFE ID claimed.
        spiffe_id: String,
    },
    /// No rule of the trust matches.
    #[error("no role rule of trust {trust:?} matches the certificate ({subject})")]
    NoRule {
        /// The trust.
        trust: String,
        /// What the certificate holds.
        subject: String,
    },
}

/// Maps a certificate a foreign trust's CA verified to an identity by that trust's rules. The
/// role extension, if the certificate carries one, plays no part.
/// A SPIFFE ID in mcp-zt's own trust domain (`own_domain`) is refused: only mcp-zt's CA speaks
/// for it.
pub fn from_foreign_der(
    der: &[u8],
    trust: &TrustConfig,
    own_domain: &str,
) -> Result<Identity, ForeignError> {
    let (_, cert) = X509Certificate::from_der(der).map_err(|_| ForeignError::Unparseable)?;
    let subject = subject_of(&cert);
    if let Some(uri) = subject
        .get(Field::SanUri)
        .iter()
        .find(|u| spiffe_domain(u).is_some_and(|d| d == own_domain.to_ascii_lowercase()))
    {
        return Err(ForeignError::OwnDomain {
            trust: trust.name.clone(),
            spiffe_id: uri.clone(),
        });
    }
    let Some((_, role)) = trust.role_for(&subject) else {
        return Err(ForeignError::NoRule {
            trust: trust.name.clone(),
            subject: subject.describe(),
        });
    };
    let spiffe_id = subject
        .get(Field::SanUri)
        .iter()
        .find(|u| u.starts_with("spiffe://"))
        .cloned()
        .unwrap_or_default();
    // The SPIFFE ID when there is one, else the CN, else the whole subject; prefixed with
    // the trust, so that no foreign name reads as one of mcp-zt's own.
    let shown = if !spiffe_id.is_empty() {
        spiffe_id.clone()
    } else if let Some(cn) = subject.get(Field::Cn).first() {
        cn.clone()
    } else {
        cert.subject().to_string()
    };
    let name = format!("{}:{shown}", trust.name);
    Ok(Identity {
        name,
        role: role.to_string(),
        serial: foreign_key(&trust.name, cert.issuer().as_raw(), cert.raw_serial()),
        spiffe_id,
        not_after: cert.validity().not_after.timestamp(),
        trust: Some(trust.name.clone()),
        oauth: None,
    })
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}, serial {})", self.name, self.role, self.serial)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spiffe_domains_are_read_as_a_peer_would() {
        for (uri, want) in [
            ("spiffe://mcp-zt.local/client/a", Some("mcp-zt.local")),
            ("SPIFFE://MCP-ZT.LOCAL", Some("mcp-zt.local")),
            ("spiffe://x@mcp-zt.local:443/a", Some("mcp-zt.local")),
            ("spiffe://mcp-zt.local./a", Some("mcp-zt.local")),
            ("spiffe://corp.example/ns", Some("corp.example")),
            ("https://mcp-zt.local/", None),
            ("spiffe:/", None),
        ] {
            assert_eq!(spiffe_domain(uri).as_deref(), want, "{uri}");
        }
    }

    #[test]
    fn garbage_der_is_an_error_not_a_panic() {
        let oid = Oid::default();
        for bytes in [&b""[..], b"\x30", b"\x30\x03\x02\x01\x01", &[0xff; 64]] {
            assert_eq!(
                from_der(bytes, &oid, "example.org"),
                Err(IdentityError::Unparseable)
            );
            assert_eq!(serial_and_name(bytes), (None, None));
        }
    }
}
