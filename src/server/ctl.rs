//! The control socket: how the CLI reaches the CA while `serve` owns the ledger.
//!
//! sled allows one process per database, so while the server runs, `issue`, `revoke`, `list`,
//! `show` and `crl` send their request over `HOME/ctl.sock`. One JSON line in, one JSON line
//! out. A revocation made this way is applied to the live server at once.
//!
//! The socket can mint certificates with the unlocked CA key, so it is guarded three ways: it
//! is bound inside a fresh 0700 folder and chmodded 0600 before it is moved into HOME (no moment
//! where the umask's mode applies), `serve` refuses a HOME that group or others can enter, and
//! each connection's peer uid (SO_PEERCRED) must be HOME's owner or root. When the CA keys are
//! encrypted, `issue` must carry the passphrase as well, unless `serve --allow-socket-issue`.
//!
//! The socket exists on unix only, like `serve`. Elsewhere no server can own the ledger, so
//! [`server_running`] is false and the CLI works on the ledger itself.

use std::path::{Path, PathBuf};
#[cfg(unix)]
use std::sync::Arc;

use serde::{Deserialize, Serialize};
#[cfg(unix)]
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
#[cfg(unix)]
use tokio::net::UnixListener;
#[cfg(unix)]
use tokio_util::sync::CancellationToken;

#[cfg(unix)]
use super::state::AppState;
#[cfg(unix)]
use crate::ca::{CaError, IssueRequest, Signer};
use crate::ledger::CertRecord;
use crate::pki::build::Reason;

/// Longest request line accepted.
#[cfg(unix)]
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
        /// The CA passphrase, when `ca.key` is encrypted (checked against the key).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        passphrase: Option<Vec<u8>>,
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
    /// `mcp-zt oauth ...` (clients and grants).
    OAuth {
        /// What to do.
        action: crate::oauth::admin::AdminOp,
    },
    /// `mcp-zt links`, `unlink`, `secret ...`, `secrets rotate-key`.
    Uplink {
        /// What to do.
        action: crate::upstream::oauth::admin::UplinkOp,
    },
    /// Make an intermediate that `ca rotate` wrote the signing CA.
    ActivateIntermediate {
        /// Its serial (its file name in `intermediates/`).
        serial: String,
        /// The CA passphrase, when the keys are encrypted.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        passphrase: Option<Vec<u8>>,
    },
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
    /// For oauth: the answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oauth: Option<crate::oauth::admin::AdminAnswer>,
    /// For uplink: the answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uplink: Option<crate::upstream::oauth::admin::UplinkAnswer>,
}

#[cfg(unix)]
fn handle(state: &AppState, req: CtlRequest) -> Result<CtlResponse, CaError> {
    let mut out = CtlResponse::default();
    match req {
        CtlRequest::Issue {
            name,
            role,
            ttl_secs,
            out_dir,
            sans,
            passphrase,
        } => {
            let passphrase = passphrase.map(zeroize::Zeroizing::new);
            if state.authority.meta().key_encrypted && !state.allow_socket_issue {
                let Some(pass) = passphrase.as_deref() else {
                    return Err(crate::pki::PkiError::Key(
                        "ca.key is encrypted: issuing through the running server needs its passphrase too (--passphrase-file FILE), unless the server runs with --allow-socket-issue".into(),
                    )
                    .into());
                };
                // Decrypting ca.key with it is the check: same key, same certificate.
                Signer::load(state.authority.home(), Some(pass))?;
            }
            let issued = state.authority.issue(
                &state.signer(),
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
        CtlRequest::Crl => out.crl = Some(state.authority.publish_crl(&state.signer())?),
        CtlRequest::Uplink { action } => {
            let Some(linker) = state.linker.clone() else {
                return Err(crate::pki::PkiError::Invalid(
                    "this server keeps no per-holder credentials".into(),
                )
                .into());
            };
            // On a blocking thread of the runtime: the upstream revocations are awaited here.
            let changed = match &action {
                crate::upstream::oauth::admin::UplinkOp::SecretSet { upstream, name, .. }
                | crate::upstream::oauth::admin::UplinkOp::SecretDelete { upstream, name }
                | crate::upstream::oauth::admin::UplinkOp::Unlink { upstream, name } => {
                    Some((upstream.clone(), name.clone()))
                }
                _ => None,
            };
            let answer = tokio::runtime::Handle::current()
                .block_on(crate::upstream::oauth::admin::run(&linker, action))
                .map_err(|e| crate::pki::PkiError::Invalid(e.to_string()))?;
            if let (Some((upstream, name)), Some(hub)) = (changed, state.hub.get()) {
                hub.holder_changed(&upstream, &name);
            }
            out.uplink = Some(answer);
        }
        CtlRequest::OAuth { action: op } => {
            let now = crate::pki::now().unix_timestamp();
            let answer = crate::oauth::admin::run(state.authority.ledger(), &op, now)
                .map_err(|e| crate::pki::PkiError::Invalid(e.to_string()))?;
            for g in &answer.grants {
                if matches!(op, crate::oauth::admin::AdminOp::Revoke { .. }) {
                    // Its open streams end now; its tokens are refused from the next request.
                    state.conns.cut(&format!("oauth:{}", g.id));
                    if let Some(o) = state.oauth.as_deref() {
                        o.forget_cached();
                    }
                    state.audit.log(
                        crate::audit::Event::new("grant_revoked")
                            .holder(&g.holder.name, &g.holder.role, &g.holder.serial)
                            .client(&g.client_id)
                            .reason(format!(
                                "grant {}: by mcp-zt oauth revoke (control socket)",
                                g.id
                            )),
                    );
                }
            }
            if let crate::oauth::admin::AdminOp::AddClient { name, .. } = &op {
                state.audit.log(
                    crate::audit::Event::new("client_registered")
                        .client(name)
                        .reason("pre-registered by mcp-zt oauth client add (control socket)"),
                );
            }
            out.oauth = Some(answer);
        }
        CtlRequest::ActivateIntermediate { serial, passphrase } => {
            let passphrase = passphrase.map(zeroize::Zeroizing::new);
            if !crate::ca::rotate::is_serial(&serial) {
                return Err(crate::pki::PkiError::Invalid(format!(
                    "invalid intermediate serial {serial:?}"
                ))
                .into());
            }
            state.activate_intermediate(&serial, passphrase.as_deref().map(|p| p.as_slice()))?;
        }
    }
    Ok(out)
}

/// Binds the socket, refusing if another server already answers on it. The socket is created
/// in a fresh private folder, made 0600 there, and only then renamed to `path`.
#[cfg(unix)]
pub fn bind(path: &Path) -> std::io::Result<UnixListener> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
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
    let parent = path.parent().unwrap_or(Path::new("."));
    let mut random = [0u8; 8];
    crate::pki::fill_random(&mut random).map_err(std::io::Error::other)?;
    let private = parent.join(format!(".ctl-{}", hex::encode(random)));
    std::fs::DirBuilder::new().mode(0o700).create(&private)?;
    let staged = private.join("ctl.sock");
    let result = (|| {
        let listener = UnixListener::bind(&staged)?;
        std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(0o600))?;
        std::fs::rename(&staged, path)?;
        Ok(listener)
    })();
    let _ = std::fs::remove_file(&staged);
    let _ = std::fs::remove_dir(&private);
    result
}

/// Whether a peer with `uid` may use the control socket of a HOME owned by `owner`.
#[cfg(unix)]
pub fn peer_allowed(uid: u32, owner: u32) -> bool {
    uid == owner || uid == 0
}

/// Serves control requests until `shutdown`.
#[cfg(unix)]
pub async fn serve(listener: UnixListener, state: Arc<AppState>, shutdown: CancellationToken) {
    loop {
        let stream = tokio::select! {
            _ = shutdown.cancelled() => break,
            s = listener.accept() => match s { Ok((s, _)) => s, Err(_) => continue },
        };
        let owner = {
            use std::os::unix::fs::MetadataExt;
            std::fs::metadata(state.authority.home().dir()).map(|m| m.uid())
        };
        let peer = stream.peer_cred().map(|c| c.uid());
        match (peer, owner) {
            (Ok(uid), Ok(owner)) if peer_allowed(uid, owner) => {}
            (peer, _) => {
                let who =
                    peer.map_or_else(|e| format!("unknown uid ({e})"), |u| format!("uid {u}"));
                state
                    .audit
                    .log(crate::audit::Event::new("control_refused").reason(format!(
                        "control socket peer {who} is neither HOME's owner nor root"
                    )));
                continue;
            }
        }
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

#[cfg(unix)]
use tokio::io::AsyncReadExt as _;

/// Client side: sends one request, waits for the answer (blocking; used by the CLI).
#[cfg(unix)]
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
#[cfg(unix)]
pub fn server_running(path: &Path) -> bool {
    path.exists() && std::os::unix::net::UnixStream::connect(path).is_ok()
}

/// Without unix sockets there is no control socket to call (and no server to answer it).
#[cfg(not(unix))]
pub fn call(path: &Path, _req: &CtlRequest) -> Result<CtlResponse, String> {
    Err(format!(
        "cannot reach the server at {}: control sockets are unix-only",
        path.display()
    ))
}

/// No server runs on this system (`serve` is unix-only): the CLI uses the ledger directly.
#[cfg(not(unix))]
pub fn server_running(_path: &Path) -> bool {
    false
}
