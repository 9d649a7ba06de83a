//! State shared by the accept loop, the HTTP guard, the MCP handler and the control socket.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;

use crate::audit::{Audit, Event};
use crate::ca::{Authority, CaError, RenewalPolicy, Signer};
use crate::identity::Identity;
use crate::ledger::{CertKind, CertRecord};
use crate::mcp::ratelimit::RateLimiter;
use crate::pki::build::Reason;
use crate::tls::{RevocationSet, SharedPolicy, ZtVerifier};

/// One verified TLS connection; attached to every HTTP request that arrives on it.
#[derive(Debug)]
pub struct ConnInfo {
    /// Process-unique connection number.
    pub id: u64,
    /// Peer address.
    pub peer: SocketAddr,
    /// Who the client certificate says the peer is.
    pub identity: Identity,
}

/// Open connections by certificate serial, so a revocation can close them at once.
#[derive(Debug, Default)]
pub struct ConnRegistry {
    next: AtomicU64,
    by_serial: Mutex<HashMap<String, HashMap<u64, CancellationToken>>>,
}

impl ConnRegistry {
    /// A fresh connection id.
    pub fn next_id(&self) -> u64 {
        self.next.fetch_add(1, Ordering::Relaxed)
    }
    /// Registers a connection; the token fires when its certificate is revoked.
    pub fn register(&self, serial: &str, id: u64) -> CancellationToken {
        let token = CancellationToken::new();
        let mut map = self.by_serial.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(serial.to_string())
            .or_default()
            .insert(id, token.clone());
        token
    }
    /// Forgets a closed connection.
    pub fn unregister(&self, serial: &str, id: u64) {
        let mut map = self.by_serial.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(conns) = map.get_mut(serial) {
            conns.remove(&id);
            if conns.is_empty() {
                map.remove(serial);
            }
        }
    }
    /// Closes every connection of `serial`; returns how many.
    pub fn cut(&self, serial: &str) -> usize {
        let conns = {
            let mut map = self.by_serial.lock().unwrap_or_else(|p| p.into_inner());
            map.remove(serial).unwrap_or_default()
        };
        for token in conns.values() {
            token.cancel();
        }
        conns.len()
    }
    /// Whether `serial` has open connections.
    pub fn has(&self, serial: &str) -> bool {
        let map = self.by_serial.lock().unwrap_or_else(|p| p.into_inner());
        map.contains_key(serial)
    }
    /// Number of open connections.
    pub fn count(&self) -> usize {
        let map = self.by_serial.lock().unwrap_or_else(|p| p.into_inner());
        map.values().map(HashMap::len).sum()
    }
}

/// Which certificate created each MCP session: a session id is only valid with the
/// certificate that created it.
#[derive(Debug, Default)]
pub struct SessionBindings(Mutex<HashMap<String, String>>);

impl SessionBindings {
    /// Binds `session` to `serial`.
    pub fn bind(&self, session: &str, serial: &str) {
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        m.insert(session.to_string(), serial.to_string());
    }
    /// The serial that created `session`.
    pub fn owner(&self, session: &str) -> Option<String> {
        let m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        m.get(session).cloned()
    }
    /// Forgets `session`.
    pub fn unbind(&self, session: &str) {
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        m.remove(session);
    }
    /// Forgets every session of `serial`.
    pub fn unbind_serial(&self, serial: &str) {
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        m.retain(|_, s| s != serial);
    }
}

/// Everything the running server shares.
pub struct AppState {
    /// The CA (ledger, metadata, HOME); the server process owns the ledger.
    pub authority: Authority,
    /// The CA key, for revocation CRLs and server certificate renewal.
    pub signer: Signer,
    /// The live policy.
    pub policy: SharedPolicy,
    /// The live revocation set.
    pub revoked: RevocationSet,
    /// The audit log.
    pub audit: Audit,
    /// Open connections.
    pub conns: ConnRegistry,
    /// Session → certificate bindings.
    pub sessions: SessionBindings,
    /// Rate limits.
    pub limiter: RateLimiter,
    /// The data tools' storage.
    pub data: sled::Tree,
    /// The verifier (for re-checks outside the handshake).
    pub verifier: Arc<ZtVerifier>,
    /// Allowed `Origin` values (exact match); empty = no Origin header accepted.
    pub allowed_origins: Vec<String>,
    /// Largest accepted request body.
    pub max_body_bytes: usize,
    /// Renewed certificates not seen yet: new serial → (old serial, Unix deadline). The old
    /// one is revoked as superseded at the new one's first handshake or at the deadline.
    pub pending_renewals: Mutex<HashMap<String, (String, i64)>>,
    /// When renewal is allowed and how long chains may run.
    pub renewal_policy: RenewalPolicy,
    /// Last renewal per holder name (Unix seconds), for the rate limit.
    pub last_renewal: Mutex<HashMap<String, i64>>,
    /// Woken when the server's own certificate was revoked: a new one is issued at once.
    pub server_cert_revoked: tokio::sync::Notify,
    /// Whether `issue` over the control socket may skip the CA passphrase.
    pub allow_socket_issue: bool,
}

impl AppState {
    /// Revokes in the ledger, applies it live at once (the serials join the revocation set, so
    /// the next handshakes and requests fail, and their open connections are closed), and only
    /// then republishes the CRL: a CRL that cannot be written (full disk) must not leave a
    /// revoked certificate working. A repeated revoke re-applies the revocation live and
    /// republishes a CRL that lacks it. Each revocation takes the whole renewal chain.
    /// The one revocation path for the CLI (via the control socket) and the `revoke_cert` tool.
    pub fn revoke(
        &self,
        target: &str,
        reason: Reason,
        actor: &str,
    ) -> Result<Vec<CertRecord>, CaError> {
        let outcome = self.authority.revoke_in_ledger(target, reason)?;
        for rec in &outcome.newly {
            self.apply_revocation(rec, actor);
        }
        for rec in &outcome.already {
            if !self.revoked.contains(&rec.serial) || self.conns.has(&rec.serial) {
                self.apply_revocation(rec, actor);
            }
        }
        if outcome
            .newly
            .iter()
            .chain(&outcome.already)
            .any(|r| r.kind == CertKind::Server)
        {
            self.server_cert_revoked.notify_one();
        }
        self.authority
            .publish_crl_after_revoke(&self.signer, &outcome)
            .map_err(|e| {
                self.audit.log(
                    Event::new("crl_publish_failed")
                        .reason(format!("revocation applied live; CRL not written: {e}")),
                );
                e
            })?;
        outcome.into_result()
    }

    /// Called at every successful handshake: the first use of a renewed certificate retires
    /// its predecessor.
    pub fn certificate_seen(self: &Arc<Self>, serial: &str) {
        let old = {
            let mut p = self
                .pending_renewals
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            p.remove(serial)
        };
        if let Some((old, _)) = old {
            self.retire(old, "its renewed successor was used");
        }
    }

    /// Revokes a renewed certificate as superseded, alone: its successor is the one in use.
    /// Off the async workers: it signs a CRL.
    pub fn retire(self: &Arc<Self>, old: String, why: &'static str) {
        let me = self.clone();
        tokio::task::spawn_blocking(move || match me.authority.retire(&me.signer, &old) {
            Ok(rec) => me.apply_revocation(&rec, why),
            Err(CaError::Ledger(crate::ledger::LedgerError::AlreadyRevoked { .. })) => {}
            Err(e) => eprintln!("mcp-zt: could not retire renewed certificate {old}: {e}"),
        });
    }

    /// Retires the predecessors whose grace period is over.
    pub fn retire_expired_renewals(self: &Arc<Self>, now: i64) {
        let due: Vec<String> = {
            let mut p = self
                .pending_renewals
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            let due: Vec<String> = p
                .iter()
                .filter(|(_, (_, deadline))| *deadline <= now)
                .map(|(new, _)| new.clone())
                .collect();
            due.iter()
                .filter_map(|n| p.remove(n))
                .map(|(old, _)| old)
                .collect()
        };
        for old in due {
            self.retire(old, "renewal grace period over");
        }
    }

    /// Applies one ledger revocation to the live server.
    pub fn apply_revocation(&self, rec: &CertRecord, actor: &str) {
        self.revoked.insert(rec.serial.clone());
        self.sessions.unbind_serial(&rec.serial);
        let cut = self.conns.cut(&rec.serial);
        let reason = rec.revocation.map_or("unspecified", |r| r.reason.as_str());
        self.audit.log(
            Event::new("revocation_applied")
                .cert(Some(rec.serial.clone()), Some(rec.name.clone()))
                .reason(format!(
                    "{reason}; by {actor}; {cut} open connection(s) closed"
                )),
        );
    }
}
