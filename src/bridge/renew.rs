//! Client-side renewal: prove possession of the current certificate over mTLS, send a CSR for
//! a fresh key, and replace the certificate and key files with the answer.

use super::{BridgeError, Credentials};
use crate::pki::build::KeyAlgorithm;
use crate::pki::holder::certificate_is_for;
use crate::pki::inspect;

/// Validity of the current certificate (notBefore, notAfter), Unix seconds.
pub fn validity(creds: &Credentials) -> Result<(i64, i64), BridgeError> {
    let f = creds
        .read_current()?
        .fields()
        .map_err(|e| BridgeError::Setup(e.to_string()))?;
    Ok((f.not_before, f.not_after))
}

/// Whether the current certificate has less than a third of its lifetime left.
pub fn due(creds: &Credentials) -> Result<bool, BridgeError> {
    let (nb, na) = validity(creds)?;
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

/// Finishes a renewal that a crash interrupted (see [`Credentials::finish_pending`]).
pub fn finish_pending(creds: &Credentials) -> Result<(), BridgeError> {
    creds.finish_pending()
}

/// Renews `creds` with the server at `mcp_url`; on success the files `creds` names hold the
/// new certificate and key. Returns the new serial.
///
/// Crash- and loss-safe: the new key is written to `KEY.next` (or `BUNDLE.next`) before the
/// request, so a renewal whose answer was lost is retried with the same key (the server then
/// answers with the same certificate); the certificate is written next, and the key moved into
/// place last ([`finish_pending`] completes that step if the process died in between).
pub async fn renew(creds: &Credentials, mcp_url: &str) -> Result<String, BridgeError> {
    creds.finish_pending()?;
    let key = match creds.read_pending_key()? {
        Some(key) => key,
        None => {
            let key = KeyAlgorithm::EcdsaP256
                .generate()
                .map_err(|e| BridgeError::Setup(e.to_string()))?;
            creds.write_pending_key(&key)?;
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
    if !certificate_is_for(&der, key.public_key_raw()) {
        return Err(BridgeError::Protocol(
            "the renewed certificate is not for the key we sent".into(),
        ));
    }
    creds.store_renewed(&body, &key)?;
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
        let pause = validity(&creds)
            .map(|(nb, na)| ((na - nb) / 20).clamp(1, 300))
            .unwrap_or(60);
        tokio::time::sleep(std::time::Duration::from_secs(pause.unsigned_abs())).await;
        match due(&creds) {
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
