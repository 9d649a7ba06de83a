//! The control socket: how the CLI reaches the CA while `serve` owns the ledger.
//!
//! sled allows one process per database, so while the server runs, `issue`, `revoke`, `list`,
//! `show` and `crl` send their request over `HOME/ctl.sock` (mode 0600 in a 0700 HOME: only the
//! CA's owner, who could read `ca.key` anyway, can connect). One JSON line in, one JSON line out.
//! A revocation made this way is applied to the live server at once.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixListener;
use tokio_util::sync::CancellationToken;

use super::state::AppState;
use crate::ca::{CaError, IssueRequest};
use crate::ledger::CertRecord;
use crate::pki::build::Reason;

/// Longest request line accepted.
const MAX_LINE: usize = 64 * 1024;

/// A request from the CLI.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum CtlRequest {
    /// Issue a client certificate.
    Issue {
        /// Holder.
        name: String,
        /// Role.
        role: String,
        /// Lifetime.
        ttl_secs: i64,
        /// Absolute output folder.
        out_dir: Option<PathBuf>,
        /// Extra SANs.
        sans: Vec<String>,
    },
    /// Revoke by name or serial.
    Revoke {
        /// Name or serial.
        target: String,
        /// Why.
        reason: Reason,
    },
    /// Every ledger record.
    Records,
    /// The current CRL.
    Crl,
}

/// The answer.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct CtlResponse {
    /// The error message, if the request failed.
    pub error: Option<String>,
    /// Records (issue: the new one; revoke: those revoked; records: all).
    pub records: Vec<CertRecord>,
    /// For issue: where the certificate and key were written.
    pub paths: Option<(PathBuf, PathBuf)>,
    /// For crl: the PEM.
    pub crl: Option<String>,
    /// For records: the CA's metadata.
    pub meta: Option<crate::ledger::CaMeta>,
}

fn handle(state: &AppState, req: CtlRequest) -> Result<CtlResponse, CaError> {
    let mut out = CtlResponse::default();
    match req {
        CtlRequest::Issue {
            name,
            role,
            ttl_secs,
            out_dir,
            sans,
        } => {
            let issued = state.authority.issue(
                &state.signer,
                &IssueRequest {
                    name,
                    role,
                    ttl_secs,
                    out_dir,
                    sans,
                },
            )?;
            out.paths = Some((issued.cert_path, issued.key_path));
            out.records = vec![issued.record];
        }
        CtlRequest::Revoke { target, reason } => {
            out.records = state.revoke(&target, reason, "mcp-zt revoke (control socket)")?;
        }
        CtlRequest::Records => {
            out.records = state.authority.ledger().all()?;
            out.meta = Some(state.authority.meta().clone());
        }
        CtlRequest::Crl => out.crl = Some(state.authority.publish_crl(&state.signer)?),
    }
    Ok(out)
}

/// Binds the socket, refusing if another server already answers on it.
pub fn bind(path: &Path) -> std::io::Result<UnixListener> {
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                format!("another mcp-zt server answers on {}", path.display()),
            ));
        }
        // A stale socket from a server that died: nobody listens on it.
        std::fs::remove_file(path)?;
    }
    let listener = UnixListener::bind(path)?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// Serves control requests until `shutdown`.
pub async fn serve(listener: UnixListener, state: Arc<AppState>, shutdown: CancellationToken) {
    loop {
        let stream = tokio::select! {
            _ = shutdown.cancelled() => break,
            s = listener.accept() => match s { Ok((s, _)) => s, Err(_) => continue },
        };
        let state = state.clone();
        tokio::spawn(async move {
            let (read, mut write) = stream.into_split();
            let mut reader = BufReader::new(read).take(MAX_LINE as u64);
            let mut line = Vec::new();
            if reader.read_until(b'\n', &mut line).await.is_err() {
                return;
            }
            let response = match serde_json::from_slice::<CtlRequest>(&line) {
                Ok(req) => tokio::task::spawn_blocking(move || handle(&state, req))
                    .await
                    .map_err(|e| e.to_string())
                    .and_then(|r| r.map_err(|e| e.to_string())),
                Err(e) => Err(format!("bad control request: {e}")),
            };
            let response = response.unwrap_or_else(|error| CtlResponse {
                error: Some(error),
                ..CtlResponse::default()
            });
            if let Ok(mut bytes) = serde_json::to_vec(&response) {
                bytes.push(b'\n');
                let _ = write.write_all(&bytes).await;
            }
        });
    }
}

use tokio::io::AsyncReadExt as _;

/// Client side: sends one request, waits for the answer (blocking; used by the CLI).
pub fn call(path: &Path, req: &CtlRequest) -> Result<CtlResponse, String> {
    use std::io::{BufRead, Write};
    let mut stream = std::os::unix::net::UnixStream::connect(path)
        .map_err(|e| format!("cannot reach the server at {}: {e}", path.display()))?;
    let _ = stream.set_read_timeout(Some(std::time::Duration::from_secs(60)));
    let mut bytes = serde_json::to_vec(req).map_err(|e| e.to_string())?;
    bytes.push(b'\n');
    stream
        .write_all(&bytes)
        .map_err(|e| format!("control socket: {e}"))?;
    let mut line = String::new();
    std::io::BufReader::new(&stream)
        .read_line(&mut line)
        .map_err(|e| format!("control socket: {e}"))?;
    let resp: CtlResponse =
        serde_json::from_str(&line).map_err(|e| format!("control socket answer: {e}"))?;
    match resp.error {
        Some(e) => Err(e),
        None => Ok(resp),
    }
}

/// Whether a server answers on HOME's control socket.
pub fn server_running(path: &Path) -> bool {
    path.exists() && std::os::unix::net::UnixStream::connect(path).is_ok()
}
