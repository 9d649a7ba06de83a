//! Foreign trusts in the running server: loaded before the server says it listens, rebuilt
//! when the policy is reloaded, their CRLs re-read (files, every few seconds) or re-fetched
//! (`crl_url`, every `crl_refresh`); a certificate newly listed is shut out at once, live
//! connections and sessions included, as for a revocation of mcp-zt's own.
//!
//! A trust that cannot be loaded is left out (its certificates are refused as unknown) and
//! retried; one whose CRL cannot be refreshed keeps the CRL it has, which fails closed once it
//! is stale beyond the grace.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::state::AppState;
use crate::audit::Event;
use crate::fsutil;
use crate::policy::trust::CrlSource;
use crate::policy::{Policy, TrustConfig};
use crate::tls::foreign::{ForeignTrust, TrustLoadError};
use crate::tls::verifier::current_policy;

/// How often CRL files are checked for changes.
const FILE_CHECK: Duration = Duration::from_secs(2);
/// Longest time a CRL download may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest CRL accepted.
const MAX_CRL_BYTES: usize = 32 * 1024 * 1024;

/// What the refresher remembers between passes.
pub struct Tracker {
    http: Option<reqwest::Client>,
    policy: Option<Arc<Policy>>,
    fetched: HashMap<String, Instant>,
    last_error: HashMap<String, String>,
}

impl Tracker {
    /// A tracker that has loaded nothing yet.
    pub fn new() -> Tracker {
        let http = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .redirect(reqwest::redirect::Policy::limited(3))
            .build()
            .ok();
        Tracker {
            http,
            policy: None,
            fetched: HashMap::new(),
            last_error: HashMap::new(),
        }
    }
}

impl Default for Tracker {
    fn default() -> Self {
        Tracker::new()
    }
}

async fn read_crl(state: &AppState, t: &Tracker, cfg: &TrustConfig) -> Result<Vec<u8>, String> {
    match &cfg.crl {
        CrlSource::File(path) => {
            fsutil::read(&state.authority.home().dir().join(path)).map_err(|e| e.to_string())
        }
        CrlSource::Url(url) => {
            let http = t
                .http
                .as_ref()
                .ok_or_else(|| "no HTTP client for crl_url".to_string())?;
            let resp = http
                .get(url)
                .send()
                .await
                .map_err(|e| format!("fetch {url}: {e}"))?;
            if !resp.status().is_success() {
                return Err(format!("fetch {url}: HTTP {}", resp.status()));
            }
            let body = resp
                .bytes()
                .await
                .map_err(|e| format!("fetch {url}: {e}"))?;
            if body.len() > MAX_CRL_BYTES {
                return Err(format!("fetch {url}: over {MAX_CRL_BYTES} bytes"));
            }
            Ok(body.to_vec())
        }
    }
}

async fn load(
    state: &AppState,
    t: &Tracker,
    cfg: &TrustConfig,
) -> Result<ForeignTrust, TrustLoadError> {
    let err = |message: String| TrustLoadError {
        trust: cfg.name.clone(),
        message,
    };
    let ca = fsutil::read(&state.authority.home().dir().join(&cfg.ca))
        .map_err(|e| err(e.to_string()))?;
    let crl = read_crl(state, t, cfg).await.map_err(err)?;
    ForeignTrust::build(cfg.clone(), &ca, crl)
}

/// One pass: loads what is new or due, keeps the rest, swaps the verifier's trusts and
/// applies new revocations.
pub async fn refresh(state: &AppState, t: &mut Tracker) {
    let policy = current_policy(&state.policy);
    let policy_changed = !t.policy.as_ref().is_some_and(|p| Arc::ptr_eq(p, &policy));
    let current = state.verifier.foreign();
    let mut next: Vec<Arc<ForeignTrust>> = Vec::new();
    let mut changed = policy_changed && (!current.is_empty() || !policy.trusts().is_empty());
    for cfg in policy.trusts() {
        let existing = current.iter().find(|x| x.config == *cfg).cloned();
        let due = match (&existing, &cfg.crl) {
            (None, _) => true,
            (Some(_), CrlSource::File(_)) => true,
            (Some(_), CrlSource::Url(_)) => t.fetched.get(&cfg.name).is_none_or(|at| {
                at.elapsed() >= Duration::from_secs(cfg.crl_refresh_secs.unsigned_abs())
            }),
        };
        if !due {
            next.extend(existing);
            continue;
        }
        if matches!(cfg.crl, CrlSource::Url(_)) {
            t.fetched.insert(cfg.name.clone(), Instant::now());
        }
        // A CRL file that did not change is not rebuilt.
        if let (Some(x), CrlSource::File(_)) = (&existing, &cfg.crl) {
            if read_crl(state, t, cfg).await.ok().as_deref() == Some(x.crl_bytes.as_slice()) {
                next.push(x.clone());
                continue;
            }
        }
        match load(state, t, cfg).await {
            Ok(loaded) => {
                t.last_error.remove(&cfg.name);
                state.audit.log(Event::new("trust_loaded").reason(format!(
                    "trust {:?}: CRL with {} entries, nextUpdate {}",
                    cfg.name,
                    loaded.revoked.len(),
                    crate::pki::rfc3339(loaded.crl_next_update)
                )));
                next.push(Arc::new(loaded));
                changed = true;
            }
            Err(e) => {
                let msg = e.to_string();
                if t.last_error.get(&cfg.name) != Some(&msg) {
                    eprintln!("mcp-zt: {msg}");
                    state
                        .audit
                        .log(Event::new("trust_load_failed").reason(msg.clone()));
                    t.last_error.insert(cfg.name.clone(), msg);
                }
                // The old CRL stays in force (and fails closed once stale); a trust whose
                // configuration changed is left out until it loads.
                next.extend(existing);
            }
        }
    }
    t.policy = Some(policy);
    if changed {
        // The new CRLs take effect for handshakes first, then live connections are cut.
        state.verifier.set_foreign(next.clone());
        for trust in &next {
            let (mut newly, mut cut) = (0usize, 0usize);
            for key in &trust.revoked {
                if !state.revoked.contains(key) {
                    newly += 1;
                    cut += state.apply_foreign_revocation(key);
                }
            }
            if newly > 0 {
                state.audit.log(Event::new("revocation_applied").reason(format!(
                    "{newly} certificate(s) newly listed in the CRL of trust {:?}; {cut} open connection(s) closed",
                    trust.config.name
                )));
            }
        }
    }
}

/// Refreshes until shutdown.
pub async fn run(state: Arc<AppState>, mut t: Tracker, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(FILE_CHECK) => {}
        }
        refresh(&state, &mut t).await;
    }
}
