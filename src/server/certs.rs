//! The server's own certificate: issued by the same CA, recorded in the ledger as a server
//! certificate, reused while valid and covering the requested names, renewed before it ends.

use std::collections::BTreeSet;

use time::Duration;

use crate::ca::{Authority, CaError, Signer};
use crate::fsutil;
use crate::ledger::CertKind;
use crate::pki::inspect;

/// Lifetime of a server certificate.
pub const SERVER_CERT_DAYS: i64 = 30;

/// The names every server certificate covers.
pub fn default_names() -> Vec<String> {
    vec!["localhost".into(), "127.0.0.1".into(), "::1".into()]
}

/// The server certificate and key PEM, and its notAfter.
pub struct ServerPem {
    /// Certificate.
    pub cert: String,
    /// Key (0600 on disk).
    pub key: zeroize::Zeroizing<String>,
    /// notAfter, Unix seconds.
    pub not_after: i64,
    /// notBefore, Unix seconds.
    pub not_before: i64,
}

/// Whether a certificate valid from `nb` to `na` should be renewed at `now`: less than a third
/// of its lifetime left.
pub fn needs_renewal(nb: i64, na: i64, now: i64) -> bool {
    na - now < (na - nb) / 3
}

/// Returns a usable server certificate: the one in HOME/server if it is in the ledger, not
/// revoked, signed by the CA that signs now (a rotation gives the server a new chain), covers
/// `names` and is not due for renewal; otherwise a newly issued one. The PEM is the server's
/// certificate followed by its intermediate.
pub fn ensure(
    authority: &Authority,
    signer: &Signer,
    names: &[String],
) -> Result<(ServerPem, bool), CaError> {
    let dir = authority.home().server();
    let cert_path = dir.join("server.crt");
    let key_path = dir.join("server.key");
    let now = crate::pki::now().unix_timestamp();
    let wanted: BTreeSet<&str> = names.iter().map(String::as_str).collect();
    let reusable = (|| {
        let cert = String::from_utf8(fsutil::read(&cert_path).ok()?).ok()?;
        crate::pki::keyfile::check_permissions(&key_path).ok()?;
        let key = zeroize::Zeroizing::new(String::from_utf8(fsutil::read(&key_path).ok()?).ok()?);
        let der = inspect::pem_to_der(&cert).ok()?;
        let fields = inspect::fields_from_der(&der, &authority.meta().role_oid).ok()?;
        let rec = authority.ledger().get(&fields.serial).ok()??;
        let have: BTreeSet<&str> = fields.names.iter().map(String::as_str).collect();
        let ok = rec.kind == CertKind::Server
            && rec.revocation.is_none()
            && cert.starts_with(&rec.cert_pem)
            && cert.len() == rec.cert_pem.len() + signer.current().chain_pem().len()
            && rec.issuer.as_deref() == signer.current().id()
            && fields.server_auth
            && wanted.is_subset(&have)
            && !needs_renewal(fields.not_before, fields.not_after, now);
        ok.then_some(ServerPem {
            cert,
            key,
            not_after: fields.not_after,
            not_before: fields.not_before,
        })
    })();
    if let Some(pem) = reusable {
        return Ok((pem, false));
    }
    // Thirty days, or until the signing CA ends if that is sooner (an imported intermediate
    // may be short-lived); needs_renewal then renews it as the end approaches.
    let ca_end = signer.current().not_after().min(authority.meta().not_after);
    let left = ca_end.saturating_sub(now + 60);
    if left < 3600 {
        return Err(crate::pki::PkiError::Invalid(format!(
            "the signing CA ends {}: too soon to issue the server a certificate; run `mcp-zt ca rotate`",
            crate::pki::rfc3339(ca_end)
        ))
        .into());
    }
    let lifetime = Duration::days(SERVER_CERT_DAYS).min(Duration::seconds(left));
    let issued = authority.issue_server(signer, names, lifetime)?;
    let cert = String::from_utf8(fsutil::read(&issued.cert_path)?)
        .map_err(|_| crate::pki::PkiError::Parse("server.crt is not text".into()))?;
    let key = zeroize::Zeroizing::new(
        String::from_utf8(fsutil::read(&issued.key_path)?).unwrap_or_default(),
    );
    Ok((
        ServerPem {
            cert,
            key,
            not_after: issued.record.not_after,
            not_before: issued.record.not_before,
        },
        true,
    ))
}
