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

/// Where a renewal keeps its new key until the new certificate is in place: `KEY.next`.
pub fn pending_key_path(key: &Path) -> std::path::PathBuf {
    let mut name = key.file_name().unwrap_or_default().to_os_string();
    name.push(".next");
    key.with_file_name(name)
}

/// Finishes a renewal that stopped between writing the new certificate and moving its key into
/// place: when `KEY.next` holds the key of the certificate on disk, it becomes `KEY`. Anything
/// else (no pending key, or one whose certificate never arrived) is left as it is.
pub fn finish_pending(creds: &Credentials) -> Result<(), BridgeError> {
    let next = pending_key_path(&creds.key);
    let Ok(key_pem) = std::fs::read_to_string(&next) else {
        return Ok(());
    };
    let setup = |e: String| BridgeError::Setup(e);
    let key = crate::pki::keyfile::parse_pem(&key_pem, None).map_err(|e| setup(e.to_string()))?;
    let cert_pem = std::fs::read_to_string(&creds.cert)
        .map_err(|e| setup(format!("read {}: {e}", creds.cert.display())))?;
    if certificate_is_for(&cert_pem, key.public_key_raw()) {
        fsutil::rename_durable(&next, &creds.key).map_err(|e| setup(e.to_string()))?;
    }
    Ok(())
}

fn certificate_is_for(cert_pem: &str, raw_public_key: &[u8]) -> bool {
    let Ok(der) = inspect::pem_to_der(cert_pem) else {
        return false;
    };
    x509_parser::parse_x509_certificate(&der)
        .is_ok_and(|(_, c)| c.public_key().subject_public_key.data.as_ref() == raw_public_key)
}

/// Renews `creds` with the server at `mcp_url`; on success the files at `creds.cert` and
/// `creds.key` hold the new certificate and key. Returns the new serial.
///
/// Crash- and loss-safe: the new key is written to `KEY.next` before the request, so a renewal
/// whose answer was lost is retried with the same key (the server then answers with the same
/// certificate); the certificate is written next, and the key moved into place last
/// ([`finish_pending`] completes that step if the process died in between).
pub async fn renew(creds: &Credentials, mcp_url: &str) -> Result<String, BridgeError> {
    let setup = |e: String| BridgeError::Setup(e);
    finish_pending(creds)?;
    let next = pending_key_path(&creds.key);
    let key = match std::fs::read_to_string(&next) {
        Ok(pem) => crate::pki::keyfile::parse_pem(&pem, None).map_err(|e| setup(e.to_string()))?,
        Err(_) => {
            let key = KeyAlgorithm::EcdsaP256
                .generate()
                .map_err(|e| setup(e.to_string()))?;
            let pem = zeroize::Zeroizing::new(key.serialize_pem());
            fsutil::write_atomic(&next, pem.as_bytes(), fsutil::SECRET_MODE)
                .map_err(|e| setup(e.to_string()))?;
            key
        }
    };
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
    if !certificate_is_for(&body, key.public_key_raw()) {
        return Err(BridgeError::Protocol(
            "the renewed certificate is not for the key we sent".into(),
        ));
    }
    let io = |e: fsutil::FsError| BridgeError::Setup(e.to_string());
    fsutil::write_atomic(&creds.cert, body.as_bytes(), fsutil::PUBLIC_MODE).map_err(io)?;
    fsutil::rename_durable(&next, &creds.key).map_err(io)?;
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
