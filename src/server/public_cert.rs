//! `serve --tls-cert FILE --tls-key FILE`: a certificate chain from outside (certbot's
//! `fullchain.pem` and `privkey.pem`, say) served for the public names, which hosted clients
//! verify against the web PKI. The files are read again when they change (checked every few
//! seconds) and on SIGHUP; a bad pair is refused, audited, and the one in force stays.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio_util::sync::CancellationToken;

use super::state::AppState;
use crate::audit::Event;
use crate::tls::ServerCert;

/// How often the files' modification times are looked at.
const POLL: Duration = Duration::from_secs(2);

/// The files and the names they are served for.
#[derive(Debug, Clone)]
pub struct PublicCert {
    /// PEM chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
    /// SNI names (the public and login names).
    pub names: Vec<String>,
}

impl PublicCert {
    /// Reads both files and puts them in force; says why not.
    pub fn load(&self, into: &ServerCert) -> Result<i64, String> {
        let read =
            |p: &PathBuf| std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()));
        let cert = read(&self.cert)?;
        let key = read(&self.key)?;
        into.set_public(self.names.clone(), &cert, &key)
            .map_err(|e| format!("{} / {}: {e}", self.cert.display(), self.key.display()))
    }

    fn stamp(&self) -> (Option<SystemTime>, Option<SystemTime>) {
        let m = |p: &PathBuf| std::fs::metadata(p).and_then(|m| m.modified()).ok();
        (m(&self.cert), m(&self.key))
    }
}

/// Reloads on change and on SIGHUP until shutdown.
pub async fn watch(
    state: Arc<AppState>,
    server_cert: Arc<ServerCert>,
    files: PublicCert,
    shutdown: CancellationToken,
) {
    let mut seen = files.stamp();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(POLL) => {
                if files.stamp() == seen {
                    continue;
                }
                // A renewal writes two files: give the second a moment.
                tokio::time::sleep(Duration::from_millis(300)).await;
                seen = files.stamp();
            }
            _ = state.tls_reload.notified() => seen = files.stamp(),
        }
        match files.load(&server_cert) {
            Ok(not_after) => state
                .audit
                .log(Event::new("tls_certificate_loaded").reason(format!(
                    "{} for {}; valid until {}",
                    files.cert.display(),
                    files.names.join(", "),
                    crate::pki::rfc3339(not_after)
                ))),
            Err(why) => {
                eprintln!(
                    "mcp-zt: --tls-cert reload refused, keeping the certificate in force: {why}"
                );
                state
                    .audit
                    .log(Event::new("tls_certificate_refused").reason(why));
            }
        }
    }
}
