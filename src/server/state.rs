//! State shared by the accept loop, the HTTP guard, the MCP handler and the control socket.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use tokio_util::sync::CancellationToken;

use crate::audit::{Audit, Event};
use crate::ca::{Authority, CaError, RenewalPolicy, Signer};
use crate::ledger::{CertKind, CertRecord};
use crate::pki::build::Reason;
use crate::tls::{RevocationSet, SharedPolicy, ZtVerifier};

/// One verified TLS connection; attached to every HTTP request that arrives on it.
pub use crate::identity::ConnInfo;

/// Every TLS connection, with or without a client certificate: attached to every request.
#[derive(Debug)]
pub struct Peer {
    /// Process-unique connection number.
    pub id: u64,
    /// The client's address.
    pub addr: std::net::SocketAddr,
    /// `x5t#S256` (SHA-256 of the DER, base64url) of the verified client certificate, if any.
    pub x5t: Option<String>,
    /// The last access token checked on this connection and who it stood for (OAuth): the
    /// next request with the same token skips the lookup (see `server::oauth::bearer`).
    pub token: Mutex<Option<TokenSlot>>,
}

/// An access token checked on a connection.
pub struct TokenSlot {
    /// The token (in memory only, for this connection's life: compared in constant time with
    /// the next request's, so a repeat costs no hashing).
    pub token: String,
    /// Who it stands for.
    pub info: Arc<ConnInfo>,
    /// Its grant.
    pub grant: String,
    /// The token's end (or its certificate's), Unix seconds.
    pub until: i64,
    /// When it was checked against the ledger.
    pub checked: std::time::Instant,
    /// The OAuth state's revocation generation then.
    pub generation: u64,
}

impl std::fmt::Debug for TokenSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the token itself.
        f.debug_struct("TokenSlot")
            .field("grant", &self.grant)
            .field("until", &self.until)
            .finish_non_exhaustive()
    }
}

/// Open connections by certificate serial, so a revocation can close them at once.
#[derive(Debug, Default)]
pub struct ConnRegistry {
    next: AtomicU64,
    by_serial: Mutex<HashMap<String, HashMap<u64, CancellationToken>>>,
    /// What the console shows of each certificate connection (set at its start, never on the
    /// request path).
    details: Mutex<HashMap<u64, ConnView>>,
}

/// One open certificate connection, as the console lists it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ConnView {
    /// Connection id.
    pub id: u64,
    /// Certificate serial.
    pub serial: String,
    /// Holder name.
    pub name: String,
    /// Role.
    pub role: String,
    /// Peer address.
    pub addr: String,
    /// When it opened (Unix seconds).
    pub since: i64,
}

impl ConnRegistry {
    /// A fresh connection id.
    pub fn next_id(&self) -> u64 {
        self.next.fetch_add(1, Ordering::Relaxed)
    }
    /// Registers a connection; the token fires when its certificate is revoked. A certificate
    /// that already has `cap` connections open (0: no cap) gets `Err` with that number, so one
    /// certificate cannot take every connection slot.
    pub fn register(&self, serial: &str, id: u64, cap: usize) -> Result<CancellationToken, usize> {
        let token = CancellationToken::new();
        let mut map = self.by_serial.lock().unwrap_or_else(|p| p.into_inner());
        let conns = map.entry(serial.to_string()).or_default();
        if cap > 0 && conns.len() >= cap {
            return Err(conns.len());
        }
        conns.insert(id, token.clone());
        Ok(token)
    }
    /// Records what the console shows of connection `id`.
    pub fn describe(&self, view: ConnView) {
        let mut d = self.details.lock().unwrap_or_else(|p| p.into_inner());
        d.insert(view.id, view);
    }
    /// The open certificate connections (cut ones leave at once), oldest first.
    pub fn views(&self) -> Vec<ConnView> {
        let open: std::collections::HashSet<u64> = {
            let map = self.by_serial.lock().unwrap_or_else(|p| p.into_inner());
            map.values().flat_map(|c| c.keys().copied()).collect()
        };
        let d = self.details.lock().unwrap_or_else(|p| p.into_inner());
        let mut v: Vec<ConnView> = d
            .values()
            .filter(|c| open.contains(&c.id))
            .cloned()
            .collect();
        v.sort_by_key(|c| (c.since, c.id));
        v
    }
    /// Forgets a closed connection.
    pub fn unregister(&self, serial: &str, id: u64) {
        self.details
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id);
        let mut map = self.by_serial.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(conns) = map.get_mut(serial) {
            conns.remove(&id);
            if conns.is_empty() {
                map.remove(serial);
            }
        }
    }
    /// Registers `token` (made by the caller) under `key`: a token-borne response stream, cut
    /// with the certificate (`key` = serial) or its grant (`key` = `oauth:GRANT`).
    pub fn attach(&self, key: &str, id: u64, token: CancellationToken) {
        let mut map = self.by_serial.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(key.to_string()).or_default().insert(id, token);
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
    /// Closes every connection whose key starts with `prefix` (all of a foreign trust's, when
    /// its configuration changed or it was removed); returns how many.
    pub fn cut_prefix(&self, prefix: &str) -> usize {
        let conns: Vec<_> = {
            let mut map = self.by_serial.lock().unwrap_or_else(|p| p.into_inner());
            let keys: Vec<String> = map
                .keys()
                .filter(|k| k.starts_with(prefix))
                .cloned()
                .collect();
            keys.iter().filter_map(|k| map.remove(k)).collect()
        };
        let mut n = 0;
        for group in &conns {
            for token in group.values() {
                token.cancel();
                n += 1;
            }
        }
        n
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

/// Most session bindings held at once; [`SessionBindings::bind`] refuses more.
pub const MAX_SESSIONS: usize = 65_536;
/// Most sessions one certificate may hold: one client must not use up [`MAX_SESSIONS`] and
/// leave everybody else without sessions until rmcp expires them.
pub const MAX_SESSIONS_PER_CERT: usize = 256;

#[derive(Debug, Default)]
struct Bindings {
    owner: HashMap<String, String>,
    by_serial: HashMap<String, HashSet<String>>,
    /// Sessions whose client sent `notifications/initialized` (seen by the native transport).
    ready: HashSet<String>,
    /// When each session last had a request: with the native transport, mcp-zt (not rmcp)
    /// ends sessions idle for too long, since rmcp does not see the calls answered directly.
    seen: HashMap<String, std::time::Instant>,
    /// Answers of each session still being sent (a long call, an open event stream): a
    /// session with one is never idle.
    active: HashMap<String, u32>,
}

/// Which certificate created each MCP session: a session id is only valid with the
/// certificate that created it. Bounded by the live sessions: a binding goes when the session is
/// deleted, when its certificate is revoked, and when rmcp expires the session (a periodic sweep
/// in `server`); at most `cap` are held.
#[derive(Debug)]
pub struct SessionBindings {
    inner: Mutex<Bindings>,
    cap: usize,
    per_serial: usize,
    /// Whether mcp-zt keeps the sessions' idle time (the native transport).
    tracking: std::sync::atomic::AtomicBool,
}

impl Default for SessionBindings {
    fn default() -> Self {
        SessionBindings::with_caps(MAX_SESSIONS, MAX_SESSIONS_PER_CERT)
    }
}

impl SessionBindings {
    /// Bindings holding at most `cap` sessions, at most `per_serial` of one certificate.
    pub fn with_caps(cap: usize, per_serial: usize) -> Self {
        SessionBindings {
            inner: Mutex::new(Bindings::default()),
            cap,
            per_serial,
            tracking: std::sync::atomic::AtomicBool::new(false),
        }
    }
    fn lock(&self) -> std::sync::MutexGuard<'_, Bindings> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
    /// Binds `session` to `serial`; false (nothing bound) when `cap` sessions, or `per_serial`
    /// of this certificate, are bound already.
    pub fn bind(&self, session: &str, serial: &str) -> bool {
        let mut m = self.lock();
        if !m.owner.contains_key(session) {
            let of_serial = m.by_serial.get(serial).map_or(0, HashSet::len);
            if m.owner.len() >= self.cap || of_serial >= self.per_serial {
                return false;
            }
        }
        if let Some(old) = m.owner.insert(session.to_string(), serial.to_string()) {
            Self::unindex(&mut m, session, &old);
        }
        m.by_serial
            .entry(serial.to_string())
            .or_default()
            .insert(session.to_string());
        m.seen
            .insert(session.to_string(), std::time::Instant::now());
        true
    }
    fn unindex(m: &mut Bindings, session: &str, serial: &str) {
        if let Some(set) = m.by_serial.get_mut(serial) {
            set.remove(session);
            if set.is_empty() {
                m.by_serial.remove(serial);
            }
        }
    }
    /// The serial that created `session`.
    pub fn owner(&self, session: &str) -> Option<String> {
        self.lock().owner.get(session).cloned()
    }
    /// Whether `session` was created by the certificate `serial` (checked on every request:
    /// nothing is copied).
    pub fn owned_by(&self, session: &str, serial: &str) -> bool {
        self.lock()
            .owner
            .get(session)
            .is_some_and(|owner| owner == serial)
    }
    /// Makes mcp-zt keep the sessions' idle time (the native transport: rmcp's timer is off).
    pub fn track_activity(&self) {
        self.tracking
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }
    /// Whether mcp-zt keeps the sessions' idle time.
    pub fn tracking(&self) -> bool {
        self.tracking.load(std::sync::atomic::Ordering::Relaxed)
    }
    /// Records a request of `session` (its idle time starts again).
    pub fn touch(&self, session: &str) {
        let mut m = self.lock();
        if m.owner.contains_key(session) {
            m.seen
                .insert(session.to_string(), std::time::Instant::now());
        }
    }
    /// An answer of `session` starts being sent: the session is not idle until it ends.
    pub fn begin(&self, session: &str) {
        let mut m = self.lock();
        if m.owner.contains_key(session) {
            *m.active.entry(session.to_string()).or_default() += 1;
        }
    }
    /// An answer of `session` ended (sent or dropped): its idle time starts now.
    pub fn end(&self, session: &str) {
        let mut m = self.lock();
        if let Some(n) = m.active.get_mut(session) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                m.active.remove(session);
            }
        }
        if m.owner.contains_key(session) {
            m.seen
                .insert(session.to_string(), std::time::Instant::now());
        }
    }
    /// Unbinds and returns the sessions with no answer being sent and no request for longer
    /// than `idle`, in one step, so a request cannot slip in between.
    pub fn take_idle(&self, idle: std::time::Duration) -> Vec<String> {
        let mut m = self.lock();
        let gone: Vec<String> = m
            .owner
            .keys()
            .filter(|s| !m.active.contains_key(*s))
            .filter(|s| m.seen.get(*s).is_none_or(|t| t.elapsed() > idle))
            .cloned()
            .collect();
        for session in &gone {
            Self::forget(&mut m, session);
        }
        gone
    }
    /// Records that `session`'s client finished the handshake (`notifications/initialized`
    /// accepted): only then may the native transport answer its requests directly.
    pub fn mark_ready(&self, session: &str) {
        let mut m = self.lock();
        if m.owner.contains_key(session) {
            m.ready.insert(session.to_string());
        }
    }
    /// Whether `session` was created by `serial` and finished its handshake.
    pub fn ready_for(&self, session: &str, serial: &str) -> bool {
        let m = self.lock();
        m.ready.contains(session) && m.owner.get(session).is_some_and(|o| o == serial)
    }
    /// Forgets `session`.
    pub fn unbind(&self, session: &str) {
        Self::forget(&mut self.lock(), session);
    }
    fn forget(m: &mut Bindings, session: &str) {
        m.ready.remove(session);
        m.seen.remove(session);
        m.active.remove(session);
        if let Some(serial) = m.owner.remove(session) {
            Self::unindex(m, session, &serial);
        }
    }
    /// Forgets every session of `serial`: O(sessions of that serial).
    pub fn unbind_serial(&self, serial: &str) {
        let mut m = self.lock();
        for session in m.by_serial.remove(serial).unwrap_or_default() {
            m.owner.remove(&session);
            m.ready.remove(&session);
            m.seen.remove(&session);
            m.active.remove(&session);
        }
    }
    /// Every bound session id: the expiry sweep takes this before it asks rmcp which sessions
    /// live, so a session bound in between is never taken for dead.
    pub fn sessions(&self) -> Vec<String> {
        self.lock().owner.keys().cloned().collect()
    }
    /// Number of bound sessions.
    pub fn len(&self) -> usize {
        self.lock().owner.len()
    }
    /// Whether no session is bound.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Everything the running server shares.
pub struct AppState {
    /// The CA (ledger, metadata, HOME); the server process owns the ledger.
    pub authority: Authority,
    /// The CA keys, for revocation CRLs and certificates; replaced whole by a rotation.
    pub signer: RwLock<Arc<Signer>>,
    /// The live policy.
    pub policy: SharedPolicy,
    /// The live revocation set.
    pub revoked: RevocationSet,
    /// The audit log.
    pub audit: Arc<Audit>,
    /// Open connections.
    pub conns: ConnRegistry,
    /// Session → certificate bindings.
    pub sessions: SessionBindings,
    /// The MCP side (providers, sessions): told of revocations so upstream connections and
    /// per-identity children of a revoked certificate end at once.
    pub hub: std::sync::OnceLock<Arc<crate::mcp::hub::Hub>>,
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
    /// Whether revocations are in sync with a shared ledger (always, for sled).
    pub replica: super::replica::Health,
    /// Woken when revocations learnt from the shared ledger need a new CRL in HOME.
    pub crl_stale: tokio::sync::Notify,
    /// Prometheus metrics.
    pub metrics: Arc<super::metrics::Metrics>,
    /// Whether `issue` over the control socket may skip the CA passphrase.
    pub allow_socket_issue: bool,
    /// SIGHUP: read the `--tls-cert` files again.
    pub tls_reload: tokio::sync::Notify,
    /// OAuth (`serve --oauth`): the authorization server and its limits.
    pub oauth: Option<Arc<crate::server::oauth::OAuthState>>,
    /// Per-holder upstream credentials (upstream OAuth links, static secrets).
    pub linker: Option<Arc<crate::upstream::oauth::linker::Linker>>,
    /// The browser console (`serve --console`).
    pub console: Option<Arc<crate::console::Console>>,
}

impl AppState {
    /// The policy in force now.
    pub fn policy_now(&self) -> Arc<crate::policy::Policy> {
        match self.policy.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

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
        // The holder's upstream tokens and secrets go with the certificate: revoked at each
        // upstream that can, and deleted (in the background: upstreams may be slow).
        if let (Some(linker), Ok(rt)) = (&self.linker, tokio::runtime::Handle::try_current()) {
            // A repeated revoke runs it again: whatever the first one could not finish.
            let all = outcome.newly.iter().chain(&outcome.already);
            for rec in all.filter(|r| r.kind == CertKind::Client) {
                let (linker, name, serial) = (linker.clone(), rec.name.clone(), rec.serial.clone());
                rt.spawn(async move { linker.holder_revoked(&name, &serial).await });
            }
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
            .publish_crl_after_revoke(&self.signer(), &outcome)
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
    /// Applied live before the CRL is published, as every revocation. Off the async workers:
    /// it signs a CRL.
    pub fn retire(self: &Arc<Self>, old: String, why: &'static str) {
        let me = self.clone();
        tokio::task::spawn_blocking(move || {
            match me.authority.retire(&old) {
                Ok(rec) => me.apply_revocation(&rec, why),
                Err(CaError::Ledger(crate::ledger::LedgerError::AlreadyRevoked { .. })) => {
                    // Revoked before (perhaps by a retire whose CRL failed): make sure it is live.
                    if !me.revoked.contains(&old) {
                        if let Ok(Some(rec)) = me.authority.ledger().get(&old) {
                            me.apply_revocation(&rec, why);
                        }
                    }
                    return;
                }
                Err(e) => {
                    eprintln!("mcp-zt: could not retire renewed certificate {old}: {e}");
                    return;
                }
            }
            if let Err(e) = me.authority.publish_crl(&me.signer()) {
                me.audit
                    .log(Event::new("crl_publish_failed").reason(format!(
                        "retirement of {old} applied live; CRL not written: {e}"
                    )));
            }
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

    /// The CA keys in force.
    pub fn signer(&self) -> Arc<Signer> {
        match self.signer.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// A rotation reaching the live server: makes intermediate `serial` (already written into
    /// `intermediates/` by `ca rotate`) the signing CA. Its key is loaded and checked first;
    /// only then does `intermediate.crt` change. New certificates, the server's own included,
    /// come from it at once; certificates of the earlier intermediates stay trusted.
    pub fn activate_intermediate(
        &self,
        serial: &str,
        passphrase: Option<&[u8]>,
    ) -> Result<(), CaError> {
        if !self.authority.home().has_intermediate() {
            return Err(crate::pki::PkiError::Invalid(
                "this home has a single CA: there is no intermediate to rotate".into(),
            )
            .into());
        }
        let signer = Arc::new(Signer::load_with_current(
            self.authority.home(),
            serial,
            passphrase,
        )?);
        crate::ca::rotate::activate(self.authority.home(), serial)?;
        match self.signer.write() {
            Ok(mut g) => *g = signer.clone(),
            Err(p) => *p.into_inner() = signer.clone(),
        }
        self.verifier.set_own_anchors(&signer.anchors());
        self.audit.log(
            Event::new("intermediate_rotated").reason(format!("intermediate {serial} signs now")),
        );
        // The server chain follows: a new server certificate from the new intermediate.
        self.server_cert_revoked.notify_one();
        self.authority.publish_crl(&signer)?;
        Ok(())
    }

    /// Shuts out a foreign certificate its CA's CRL now lists (`key`: its identity key, already
    /// in the revocation set); returns how many open connections were closed.
    pub fn apply_foreign_revocation(&self, key: &str) -> usize {
        self.sessions.unbind_serial(key);
        let cut = self.conns.cut(key);
        if let Some(hub) = self.hub.get() {
            hub.revoked(key);
        }
        cut
    }

    /// Applies one ledger revocation to the live server.
    pub fn apply_revocation(&self, rec: &CertRecord, actor: &str) {
        self.revoked.insert(rec.serial.clone());
        self.sessions.unbind_serial(&rec.serial);
        let cut = self.conns.cut(&rec.serial);
        if let Some(hub) = self.hub.get() {
            hub.revoked(&rec.serial);
        }
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

impl crate::mcp::tools::DemoStore for AppState {
    fn data(&self) -> &sled::Tree {
        &self.data
    }
    fn certificates(&self) -> Result<Vec<CertRecord>, CaError> {
        Ok(self.authority.ledger().all()?)
    }
    fn revoke(
        &self,
        target: &str,
        reason: Reason,
        actor: &str,
    ) -> Result<Vec<CertRecord>, CaError> {
        AppState::revoke(self, target, reason, actor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bindings_index_by_serial_and_stay_bounded() {
        let b = SessionBindings::with_caps(3, 3);
        assert!(b.bind("s1", "a"));
        assert!(b.bind("s2", "a"));
        assert!(b.bind("s3", "b"));
        assert!(!b.bind("s4", "b"), "over the cap");
        assert_eq!(b.owner("s4"), None);
        // Re-binding an existing session is not a new one.
        assert!(b.bind("s3", "b"));
        b.unbind_serial("a");
        assert_eq!((b.owner("s1"), b.owner("s2")), (None, None));
        assert_eq!(b.owner("s3").as_deref(), Some("b"));
        assert!(b.bind("s4", "b"));
        assert_eq!(b.sessions().len(), 2);
        b.unbind("s3");
        b.unbind("s4");
        assert!(b.is_empty());
        assert!(b.lock().by_serial.is_empty());
    }

    #[test]
    fn idle_sessions_are_taken_once_and_busy_ones_stay() {
        let b = SessionBindings::with_caps(10, 10);
        assert!(b.bind("quiet", "a") && b.bind("busy", "a") && b.bind("ready", "b"));
        b.mark_ready("ready");
        assert!(b.ready_for("ready", "b") && !b.ready_for("ready", "a"));
        assert!(
            !b.ready_for("quiet", "a"),
            "no initialized notification yet"
        );
        b.begin("busy");
        let zero = std::time::Duration::ZERO;
        std::thread::sleep(std::time::Duration::from_millis(2));
        let mut taken = b.take_idle(zero);
        taken.sort();
        assert_eq!(
            taken,
            ["quiet", "ready"],
            "an answer still being sent keeps its session"
        );
        assert!(b.take_idle(zero).is_empty(), "taken sessions are unbound");
        assert!(!b.ready_for("ready", "b"));
        assert_eq!(
            b.take_idle(std::time::Duration::from_secs(60)),
            Vec::<String>::new()
        );
        b.end("busy");
        assert!(
            b.take_idle(std::time::Duration::from_secs(60)).is_empty(),
            "just ended"
        );
        std::thread::sleep(std::time::Duration::from_millis(2));
        assert_eq!(b.take_idle(zero), ["busy"]);
        b.end("gone");
        b.mark_ready("gone");
        assert!(b.is_empty(), "an unknown session leaves nothing behind");
    }

    #[test]
    fn one_certificate_cannot_take_every_session() {
        let b = SessionBindings::with_caps(10, 2);
        assert!(b.bind("s1", "a"));
        assert!(b.bind("s2", "a"));
        assert!(!b.bind("s3", "a"), "over the per-certificate cap");
        assert!(b.bind("s3", "b"), "others still get sessions");
        b.unbind("s1");
        assert!(b.bind("s4", "a"));
    }

    #[test]
    fn connections_per_certificate_are_capped() {
        let r = ConnRegistry::default();
        assert!(r.register("a", 1, 2).is_ok());
        assert!(r.register("a", 2, 2).is_ok());
        assert_eq!(r.register("a", 3, 2).err(), Some(2));
        assert!(r.register("b", 4, 2).is_ok());
        r.unregister("a", 1);
        assert!(r.register("a", 5, 2).is_ok());
        assert!(r.register("a", 6, 0).is_ok(), "0: no cap");
        assert_eq!(r.count(), 4);
    }
}
