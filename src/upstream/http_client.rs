//! The HTTP client of an upstream: its own CA roots and client certificate when the file
//! names them, no redirects (an upstream must not send the gateway's requests elsewhere).

use std::time::Duration;

/// A client for the upstream's URL: `ca` replaces the system roots, `client_cert` is presented.
pub(crate) fn http_client(
    ca: Option<&std::path::Path>,
    client_cert: Option<&(std::path::PathBuf, std::path::PathBuf)>,
) -> Result<reqwest::Client, String> {
    let read =
        |p: &std::path::Path| std::fs::read(p).map_err(|e| format!("read {}: {e}", p.display()));
    let mut b = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(10));
    if let Some(ca) = ca {
        let certs = reqwest::Certificate::from_pem_bundle(&read(ca)?)
            .map_err(|e| format!("{}: {e}", ca.display()))?;
        b = b.tls_certs_only(certs);
    }
    if let Some((cert, key)) = client_cert {
        crate::pki::keyfile::check_permissions(key).map_err(|e| e.to_string())?;
        let mut pem = read(cert)?;
        pem.push(b'\n');
        pem.extend(read(key)?);
        let id = reqwest::Identity::from_pem(&pem)
            .map_err(|e| format!("{}: not a PEM certificate and key: {e}", cert.display()))?;
        b = b.identity(id);
    }
    b.build().map_err(|e| format!("HTTP client: {e}"))
}
