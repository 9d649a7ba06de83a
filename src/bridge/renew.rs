//! Client-side renewal: prove possession of the current certificate over mTLS, send a CSR for
//! a fresh key, and replace the certificate and key files with the answer.

use std::path::Path;

use super::{BridgeError, Credentials};
use crate::fsutil;
use crate::pki::build::KeyAlgorithm;
use crate::pki::inspect;

/// Validity of the certificate in `path` (notBefore, notAfter), Unix seconds.
pub fn validity(path: &Path) -> Result<(i64, i64), BridgeError> {
    let pem = std::fs::read_to_string(path)
        .map_err(|e| BridgeError::Setup(format!("read {}: {e}", path.display())))?;
    let der = inspect::pem_to_der(&pem).map_err(|e| BridgeError::Setup(e.to_string()))?;
    let f = inspect::fields_from_der(&der, &Default::default())
        .map_err(|e| BridgeError::Setup(e.to_string()))?;
    Ok((f.not_before, f.not_after))
}

/// Whether the certificate in `path` has less than a third of its lifetime left.
pub fn due(path: &Path) -> Result<bool, BridgeError> {
    let (nb, na) = validity(path)?;
    Ok(crate::server::certs::needs_renewal(
        nb,
        na,
        crate::pki::now().unix_timestamp(),
    ))
}

/// The renewal endpoint next to an MCP URL: `https://host:port/renew`.
pub fn renew_url(mcp_url: &str) -> Result<reqwest::Url, BridgeError> {
    let mut u = reqwest::Url::parse(mcp_url)
        .map_err(|e| BridgeError::Setup(format!("URL {mcp_url:?}: {e}")))?;
    u.set_path("/renew");
    u.set_query(None);
    Ok(u)
}

/// Renews `creds` with the server at `mcp_url`; on success the files at `creds.cert` and
/// `creds.key` hold the new certificate and key. Returns the new serial.
pub async fn renew(creds: &Credentials, mcp_url: &str) -> Result<String, BridgeError> {
    let key = KeyAlgorithm::EcdsaP256
        .generate()
        .map_err(|e| BridgeError::Setup(e.to_string()))?;
    let mut params = rcgen::CertificateParams::default();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "mcp-zt renewal");
    let csr = params
        .serialize_request(&key)
        .and_then(|c| c.pem())
        .map_err(|e| BridgeError::Setup(format!("CSR: {e}")))?;
    let resp = creds
        .client()?
        .post(renew_url(mcp_url)?)
        .header("Content-Type", "application/pkcs10")
        .body(csr)
        .send()
        .await
        .map_err(|e| BridgeError::from_reqwest(&e))?;
    let status = resp.status();
    if status.is_redirection() {
        return Err(super::redirect_error(&resp));
    }
    // A certificate chain is a few kilobytes; anything near this is not an answer.
    let body = super::read_body(resp, 1024 * 1024).await?;
    if !status.is_success() {
        let text = String::from_utf8_lossy(&body).into_owned();
        return Err(BridgeError::Http(status.as_u16(), text));
    }
    let body = String::from_utf8(body)
        .map_err(|_| BridgeError::Protocol("renewal answer is not UTF-8 PEM".into()))?;
    let der = inspect::pem_to_der(&body)
        .map_err(|e| BridgeError::Protocol(format!("renewal answer: {e}")))?;
    let (serial, _) = crate::identity::serial_and_name(&der);
    let (_, cert) = x509_parser::parse_x509_certificate(&der)
        .map_err(|e| BridgeError::Protocol(format!("renewal answer: {e}")))?;
    if cert.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
        return Err(BridgeError::Protocol(
            "the renewed certificate is not for the key we sent".into(),
        ));
    }
    let key_pem = zeroize::Zeroizing::new(key.serialize_pem());
    let io = |e: fsutil::FsError| BridgeError::Setup(e.to_string());
    // Key first: a crash between the two leaves a new key with the old certificate, which
    // fails loudly at the next handshake instead of silently using a mismatched pair.
    fsutil::write_atomic(&creds.key, key_pem.as_bytes(), fsutil::SECRET_MODE).map_err(io)?;
    fsutil::write_atomic(&creds.cert, body.as_bytes(), fsutil::PUBLIC_MODE).map_err(io)?;
    serial.ok_or_else(|| BridgeError::Protocol("renewed certificate has no serial".into()))
}

/// Renews `creds` whenever less than a third of the lifetime is left, then hands the renewed
/// credentials to `apply` (the bridge swaps its TLS client). Runs until the process ends.
pub async fn renew_loop(
    creds: Credentials,
    mcp_url: String,
    apply: impl Fn(&Credentials) -> Result<(), BridgeError>,
) {
    loop {
        // Check often enough for short lifetimes, at most every five minutes.
        let pause = validity(&creds.cert)
            .map(|(nb, na)| ((na - nb) / 20).clamp(1, 300))
            .unwrap_or(60);
        tokio::time::sleep(std::time::Duration::from_secs(pause.unsigned_abs())).await;
        match due(&creds.cert) {
            Ok(true) => {}
            Ok(false) => continue,
            Err(e) => {
                eprintln!("mcp-zt connect: {e}");
                continue;
            }
        }
        match renew(&creds, &mcp_url).await {
            Ok(serial) => match apply(&creds) {
                Ok(()) => eprintln!("mcp-zt connect: certificate renewed, new serial {serial}"),
                Err(e) => eprintln!("mcp-zt connect: renewed but could not load it: {e}"),
            },
            Err(e) => eprintln!("mcp-zt connect: renewal failed, will retry: {e}"),
        }
    }
}
