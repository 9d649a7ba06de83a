//! `mcp-zt connect`: a local bridge for MCP clients that cannot present a client certificate.
//!
//! The client talks to the bridge over stdio (or plain HTTP on loopback with `--listen`); the
//! bridge talks to the remote mcp-zt over mTLS streamable HTTP with the user's certificate,
//! pinning the CA. Messages are forwarded as they are (requests, responses, notifications and
//! server-to-client requests), so every MCP feature passes through. When the server refuses the
//! certificate (revoked, expired, not trusted) the client gets an MCP error that says so and the
//! bridge exits non-zero, instead of hanging or vanishing.

pub mod creds;
pub mod listen;
pub mod renew;
pub mod sse;
pub mod stdio;
pub mod upstream;

pub use creds::Credentials;

/// Exit code when the server refused the certificate.
pub const EXIT_CERT_REFUSED: i32 = 3;
/// Exit code when the server could not be reached at all.
pub const EXIT_UNREACHABLE: i32 = 4;
/// Largest response body (other than an event stream) read from the server. MCP answers are
/// far smaller; the cap keeps a broken or hostile server from growing the bridge's memory.
pub const MAX_BODY: usize = 16 * 1024 * 1024;

/// Why forwarding failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BridgeError {
    /// The server refused our certificate: fatal until the user gets a new one.
    #[error("the server refused this client certificate: {0}")]
    CertificateRefused(String),
    /// The server's certificate is not signed by the pinned CA (or the names do not match).
    #[error("the server's certificate is not trusted: {0}")]
    ServerUntrusted(String),
    /// Network trouble; worth retrying.
    #[error("cannot reach the server: {0}")]
    Unreachable(String),
    /// The server no longer knows our session (it restarted).
    #[error("the server lost the session")]
    SessionExpired,
    /// An HTTP error status.
    #[error("the server answered HTTP {0}: {1}")]
    Http(u16, String),
    /// The server's answer did not make sense.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The server answered with a redirect. The bridge never follows one: the certificate
    /// would go wherever the server points, and the pinned URL is what the user chose.
    #[error("the server answered HTTP {0} (a redirect to {1}); mcp-zt does not follow redirects: use the final URL")]
    Redirect(u16, String),
    /// Local setup (files, TLS configuration).
    #[error("{0}")]
    Setup(String),
}

impl BridgeError {
    /// Errors after which retrying cannot help.
    pub fn is_fatal(&self) -> bool {
        matches!(
            self,
            BridgeError::CertificateRefused(_)
                | BridgeError::ServerUntrusted(_)
                | BridgeError::Setup(_)
        )
    }

    /// Classifies a reqwest error by the TLS alert or error found in its source chain.
    pub fn from_reqwest(e: &reqwest::Error) -> BridgeError {
        let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
        while let Some(err) = cur {
            let tls = err
                .downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
                .and_then(|i| i.downcast_ref::<rustls::Error>())
                .or_else(|| err.downcast_ref::<rustls::Error>());
            if let Some(t) = tls {
                return classify_tls(t);
            }
            // tokio-rustls hands the alert over as text inside an io::Error.
            if let Some(inner) = err
                .downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
            {
                if let Some(found) = classify_alert_text(&inner.to_string()) {
                    return found;
                }
            }
            cur = err.source();
        }
        let text = format!("{e:#}");

        if e.is_connect() || e.is_timeout() || e.is_request() {
            BridgeError::Unreachable(text)
        } else {
            BridgeError::Protocol(text)
        }
    }
}

fn classify_alert_text(text: &str) -> Option<BridgeError> {
    use rustls::AlertDescription as A;
    if text.contains("invalid peer certificate") {
        return Some(BridgeError::ServerUntrusted(text.to_string()));
    }
    let name = text.split("fatal alert: ").nth(1)?.trim();
    let alert = [
        A::CertificateRevoked,
        A::CertificateExpired,
        A::CertificateRequired,
        A::UnknownCA,
        A::BadCertificate,
        A::CertificateUnknown,
        A::UnsupportedCertificate,
        A::AccessDenied,
        A::HandshakeFailure,
    ]
    .into_iter()
    .find(|a| format!("{a:?}") == name)?;
    Some(classify_tls(&rustls::Error::AlertReceived(alert)))
}

fn classify_tls(t: &rustls::Error) -> BridgeError {
    use rustls::AlertDescription as A;
    match t {
        rustls::Error::AlertReceived(a) => {
            let why = match a {
                A::CertificateRevoked => "certificate revoked",
                A::CertificateExpired => "certificate expired",
                A::CertificateRequired => "no certificate was presented",
                A::UnknownCA => "certificate not issued by the server's CA",
                A::BadCertificate | A::CertificateUnknown | A::UnsupportedCertificate => {
                    "certificate not accepted (unknown role, not valid for client use, or altered)"
                }
                A::AccessDenied => "access denied",
                _ => return BridgeError::Unreachable(format!("TLS alert {a:?}")),
            };
            BridgeError::CertificateRefused(why.into())
        }
        rustls::Error::InvalidCertificate(c) => BridgeError::ServerUntrusted(format!("{c:?}")),
        other => BridgeError::Unreachable(format!("TLS: {other}")),
    }
}

/// The error for a redirect answer, naming where it pointed (as printable text, shortened).
pub fn redirect_error(resp: &reqwest::Response) -> BridgeError {
    let location = resp
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(|l| l.chars().filter(|c| !c.is_control()).take(200).collect())
        .unwrap_or_else(|| "nowhere".to_string());
    BridgeError::Redirect(resp.status().as_u16(), location)
}

/// Reads a whole response body, refusing one larger than `limit` bytes instead of buffering it.
pub async fn read_body(resp: reqwest::Response, limit: usize) -> Result<Vec<u8>, BridgeError> {
    use futures_util::StreamExt;
    let too_large =
        || BridgeError::Protocol(format!("the server's answer is larger than {limit} bytes"));
    if resp.content_length().is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    let mut body = Vec::new();
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| BridgeError::from_reqwest(&e))?;
        if body.len() + chunk.len() > limit {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(body: Vec<u8>, content_length: bool) -> reqwest::Response {
        let mut b = http::Response::builder().status(200);
        if content_length {
            b = b.header("content-length", body.len());
        }
        reqwest::Response::from(b.body(body).expect("response"))
    }

    #[tokio::test]
    async fn bodies_over_the_cap_are_refused_whether_announced_or_not() {
        let at_cap = read_body(response(vec![b'x'; 1024], false), 1024).await;
        assert_eq!(at_cap.expect("at the cap").len(), 1024);
        for announced in [true, false] {
            let err = read_body(response(vec![b'x'; 1025], announced), 1024)
                .await
                .expect_err("over the cap");
            assert!(err.to_string().contains("larger than 1024 bytes"), "{err}");
        }
    }

    #[test]
    fn a_redirect_answer_names_where_it_pointed_in_printable_text() {
        // That the clients do not follow redirects is checked end to end in the integration
        // test `connect::the_bridge_does_not_follow_redirects`.
        let resp = reqwest::Response::from(
            http::Response::builder()
                .status(307)
                .header("location", "https://elsewhere.example/\tmcp")
                .body(Vec::new())
                .expect("response"),
        );
        let err = redirect_error(&resp);
        assert!(
            matches!(err, BridgeError::Redirect(307, ref l) if l == "https://elsewhere.example/mcp"),
            "{err:?}"
        );
    }
}
