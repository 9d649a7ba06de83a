//! Foreign trusts in the running server: loaded before the server says it listens, rebuilt
//! when the policy is reloaded, their CRLs re-read (files, every few seconds) or re-fetched
//! (`crl_url`, every `crl_refresh`); a certificate newly listed is shut out at once, live
//! connections and sessions included, as for a revocation of mcp-zt's own.
//!
//! A trust that cannot be loaded is left out (its certificates are refused as unknown) and
//! retried; one whose CRL cannot be refreshed keeps the CRL it has, which fails closed once it
//! is stale beyond the grace.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::state::AppState;
use crate::audit::Event;
use crate::fsutil;
use crate::identity;
use crate::ledger::ForeignRevocation;
use crate::policy::trust::CrlSource;
use crate::policy::TrustConfig;
use crate::tls::foreign::ForeignTrust;
use crate::tls::foreign_crl::VerifiedCrl;
use crate::tls::verifier::current_policy;

/// How often CRL files are checked for changes.
const FILE_CHECK: Duration = Duration::from_secs(2);
/// Longest time a CRL download may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// How often foreign revocations are read from the ledger when no CRL changed (what other
/// replicas saw).
const LEDGER_SYNC: Duration = Duration::from_secs(10);
/// Largest CRL accepted.
const MAX_CRL_BYTES: usize = 32 * 1024 * 1024;

/// What the refresher remembers between passes.
pub struct Tracker {
    http: Option<reqwest::Client>,
    fetched: HashMap<String, Instant>,
    last_error: HashMap<String, String>,
    stale: std::collections::HashSet<String>,
    /// Whether the last pass could not read or record foreign revocations (audited once).
    unsynced: bool,
    /// Serials seen revoked while the ledger could not record them: recorded when it can.
    pending: HashMap<String, ForeignRevocation>,
    /// When the revocation set was last synced with the ledger.
    last_sync: Option<Instant>,
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
            fetched: HashMap::new(),
            last_error: HashMap::new(),
            stale: Default::default(),
            unsynced: false,
            pending: HashMap::new(),
            last_sync: None,
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
            let path = state.authority.home().dir().join(path);
            if std::fs::metadata(&path).is_ok_and(|m| m.len() > MAX_CRL_BYTES as u64) {
                return Err(format!("{} is over {MAX_CRL_BYTES} bytes", path.display()));
            }
            fsutil::read(&path).map_err(|e| e.to_string())
        }
        CrlSource::Url(url) => {
            let http = t
                .http
                .as_ref()
                .ok_or_else(|| "no HTTP client for crl_url".to_string())?;
            let mut resp = http
                .get(url)
                .send()
                .await
                .map_err(|e| format!("fetch {url}: {e}"))?;
            if !resp.status().is_success() {
                return Err(format!("fetch {url}: HTTP {}", resp.status()));
            }
            // Read with a cap: a CRL server cannot make mcp-zt buffer without limit.
            let mut body = Vec::new();
            while let Some(chunk) = resp
                .chunk()
                .await
                .map_err(|e| format!("fetch {url}: {e}"))?
            {
                if body.len() + chunk.len() > MAX_CRL_BYTES {
                    return Err(format!("fetch {url}: over {MAX_CRL_BYTES} bytes"));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(body)
        }
    }
}

/// The CA bundle of `cfg`.
fn read_bundle(state: &AppState, cfg: &TrustConfig) -> Result<Vec<u8>, String> {
    let path = state.authority.home().dir().join(&cfg.ca);
    match std::fs::metadata(&path) {
        Ok(m) if m.len() > MAX_CRL_BYTES as u64 => {
            return Err(format!(
                "trust {:?}: {} is over {MAX_CRL_BYTES} bytes",
                cfg.name,
                path.display()
            ))
        }
        _ => {}
    }
    fsutil::read(&path).map_err(|e| format!("trust {:?}: {e}", cfg.name))
}

fn report(state: &AppState, t: &mut Tracker, name: &str, msg: String) {
    if t.last_error.get(name) != Some(&msg) {
        eprintln!("mcp-zt: {msg}");
        state
            .audit
            .log(Event::new("trust_load_failed").reason(msg.clone()));
        t.last_error.insert(name.to_string(), msg);
    }
}

/// One pass: loads what is new, changed or due, keeps the rest, swaps the verifier's trusts
/// and applies the CRLs to the revocation set (each trust's entries replace its previous
/// ones) and to live connections.
///
/// Fails closed: a trust whose configuration or CA bundle changed, or that was removed, has
/// its connections closed (they were admitted under what no longer holds), and if its new
/// bundle cannot be read or loaded it is left out altogether. Only a CRL that cannot be
/// fetched or read keeps the last good copy in force, which refuses everything once stale;
/// a CRL older than the one in force is refused. A trust whose CRL goes stale has its
/// connections closed too.
pub async fn refresh(state: &AppState, t: &mut Tracker) {
    let policy = current_policy(&state.policy);
    let current = state.verifier.foreign();
    let mut next: Vec<Arc<ForeignTrust>> = Vec::new();
    let mut changed = false;
    let mut closed = Vec::new();
    for cfg in policy.trusts() {
        let named = current.iter().find(|x| x.config.name == cfg.name).cloned();
        let existing = named.clone().filter(|x| x.config == *cfg);
        if named.is_some() && existing.is_none() {
            closed.push(cfg.name.clone());
            changed = true;
        }
        let ca = match read_bundle(state, cfg) {
            Ok(ca) => ca,
            Err(e) => {
                report(state, t, &cfg.name, e);
                if existing.is_some() {
                    closed.push(cfg.name.clone());
                    changed = true;
                }
                continue;
            }
        };
        let bundle_changed = existing.as_ref().is_some_and(|x| x.ca_bytes != ca);
        let due = bundle_changed
            || match (&existing, &cfg.crl) {
                (None, _) | (Some(_), CrlSource::File(_)) => true,
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
        let crl = match read_crl(state, t, cfg).await {
            Ok(crl) => crl,
            Err(e) => {
                report(state, t, &cfg.name, format!("trust {:?}: {e}", cfg.name));
                if bundle_changed {
                    closed.push(cfg.name.clone());
                    changed = true;
                } else {
                    next.extend(existing);
                }
                continue;
            }
        };
        if let Some(x) = existing
            .as_ref()
            .filter(|x| !bundle_changed && x.crl_bytes == crl)
        {
            next.push(x.clone());
            continue;
        }
        let config = cfg.clone();
        let in_force: Vec<VerifiedCrl> = named.as_ref().map(|x| x.crls.clone()).unwrap_or_default();
        let built =
            tokio::task::spawn_blocking(move || ForeignTrust::build(config, &ca, crl, &in_force))
                .await
                .map_err(|e| format!("trust {:?}: {e}", cfg.name))
                .and_then(|r| r.map_err(|e| e.to_string()));
        match built {
            Ok(loaded) => {
                t.last_error.remove(&cfg.name);
                for why in &loaded.refused {
                    eprintln!("mcp-zt: trust {:?}: {why}", cfg.name);
                    state.audit.log(
                        Event::new("crl_refused").reason(format!("trust {:?}: {why}", cfg.name)),
                    );
                }
                let trust = loaded.trust;
                let same = existing.as_ref().is_some_and(|x| x.same_crls(&trust));
                if !same {
                    state.audit.log(Event::new("trust_loaded").reason(format!(
                        "trust {:?}: {} CRL(s) in force ({}), {} entries, nextUpdate {}",
                        cfg.name,
                        trust.crls.len(),
                        trust
                            .crls
                            .iter()
                            .map(|c| format!("{} number {}", c.issuer_text, c.number))
                            .collect::<Vec<_>>()
                            .join("; "),
                        trust.revoked.len(),
                        crate::pki::rfc3339(trust.crl_next_update)
                    )));
                }
                if bundle_changed {
                    closed.push(cfg.name.clone());
                }
                next.push(Arc::new(trust));
                changed = true;
            }
            Err(e) => {
                report(state, t, &cfg.name, e);
                if bundle_changed {
                    closed.push(cfg.name.clone());
                    changed = true;
                } else {
                    next.extend(existing);
                }
            }
        }
    }
    for x in current.iter() {
        if !policy.trusts().iter().any(|c| c.name == x.config.name) {
            closed.push(x.config.name.clone());
            changed = true;
        }
    }
    // A CRL past nextUpdate plus grace: new handshakes are refused by the verifier, requests
    // by the guard; open streams are closed here, once.
    let now = crate::pki::now().unix_timestamp();
    for x in &next {
        let stale = now > x.crl_next_update.saturating_add(x.config.crl_grace_secs);
        if stale && t.stale.insert(x.config.name.clone()) {
            let cut = state.conns.cut_prefix(&format!("{}:", x.config.name));
            state.audit.log(Event::new("trust_stale").reason(format!(
                "the CRL of trust {:?} is stale: its certificates are refused; {cut} open connection(s) closed",
                x.config.name
            )));
        } else if !stale {
            t.stale.remove(&x.config.name);
        }
    }
    if changed {
        // The new trusts and CRLs take effect for handshakes first, then live connections.
        state.verifier.set_foreign(next.clone());
        closed.sort();
        closed.dedup();
        for name in closed {
            let cut = state.conns.cut_prefix(&format!("{name}:"));
            state.audit.log(Event::new("trust_changed").reason(format!(
                "trust {name:?}: its configuration or CA bundle changed, or it was removed; {cut} open connection(s) closed"
            )));
        }
    }
    // Other replicas record what they see: read the ledger now and then even when nothing
    // changed here.
    let due = changed || t.unsynced || t.last_sync.is_none_or(|at| at.elapsed() >= LEDGER_SYNC);
    if !next.is_empty() && due {
        apply_revocations(state, t, &next).await;
    }
}

/// Applies the trusts' CRLs and the remembered foreign revocations to the revocation set and
/// to live connections, and records in the ledger every serial a CRL in force lists that the
/// ledger does not hold yet (a write that fails is tried again on the next pass).
///
/// Each trust's keys in the set become: what its CRLs list as revoked, plus what the ledger
/// remembers (also what other replicas saw; an entry lifted by removeFromCRL is no longer
/// remembered). While the ledger cannot be read nothing is taken out of the set, only added.
async fn apply_revocations(state: &AppState, t: &mut Tracker, trusts: &[Arc<ForeignTrust>]) {
    let now = crate::pki::now().unix_timestamp();
    let mut to_record = Vec::new();
    let mut lifted = Vec::new();
    for trust in trusts {
        for crl in &trust.crls {
            for e in &crl.entries {
                let key = identity::foreign_key(&trust.config.name, &crl.issuer, &e.serial);
                if e.remove_from_crl {
                    lifted.push((key, crl.this_update));
                } else {
                    to_record.push(ForeignRevocation {
                        key,
                        trust: trust.config.name.clone(),
                        issuer: crl.issuer_text.clone(),
                        serial: hex::encode(&e.serial),
                        seen_at: now,
                        until: crl.issuer_not_after,
                    });
                }
            }
        }
    }
    // What was seen while the ledger could not take it is recorded with the rest.
    let seen: HashSet<String> = to_record.iter().map(|r| r.key.clone()).collect();
    to_record.extend(
        t.pending
            .values()
            .filter(|p| !seen.contains(&p.key))
            .cloned(),
    );
    let attempted = to_record.clone();
    let ledger = state.authority.ledger().clone();
    let synced = tokio::task::spawn_blocking(move || {
        let known = ledger.foreign_revocations(now)?;
        let known_keys: HashSet<&str> = known.iter().map(|r| r.key.as_str()).collect();
        let missing: Vec<ForeignRevocation> = to_record
            .into_iter()
            .filter(|r| !known_keys.contains(r.key.as_str()))
            .collect();
        ledger.remember_foreign_revocations(&missing)?;
        // removeFromCRL lifts a revocation only from a CRL made after mcp-zt first saw it: an
        // old CRL from before the final revocation, replayed, cannot take it back.
        let lifted: Vec<String> = lifted
            .into_iter()
            .filter(|(k, made)| known.iter().any(|r| &r.key == k && r.seen_at < *made))
            .map(|(k, _)| k)
            .collect();
        drop(known_keys);
        let forgotten = ledger.forget_foreign_revocations(&lifted)?;
        let mut remembered = known;
        let gone: HashSet<&str> = forgotten.iter().map(|f| f.key.as_str()).collect();
        remembered.retain(|r| !gone.contains(r.key.as_str()));
        drop(gone);
        remembered.extend(missing);
        Ok::<_, crate::ledger::LedgerError>((remembered, forgotten))
    })
    .await;
    let failure = match &synced {
        Ok(Ok(_)) => None,
        Ok(Err(e)) => Some(e.to_string()),
        Err(e) => Some(e.to_string()),
    };
    if failure.is_some() {
        for r in attempted {
            t.pending.entry(r.key.clone()).or_insert(r);
        }
    } else {
        t.pending.clear();
        t.last_sync = Some(Instant::now());
    }
    match failure {
        Some(e) if !t.unsynced => {
            t.unsynced = true;
            state.audit.log(Event::new("foreign_revocations_unsynced").reason(format!(
                "foreign revocations cannot be read or recorded in the ledger ({e}); the revocation set keeps what it holds and only grows until the ledger answers"
            )));
        }
        None if t.unsynced => {
            t.unsynced = false;
            state.audit.log(
                Event::new("foreign_revocations_synced")
                    .reason("foreign revocations are read and recorded in the ledger again"),
            );
        }
        _ => {}
    }
    let remembered = match synced {
        Ok(Ok((remembered, forgotten))) => {
            for f in forgotten {
                state.audit.log(
                    Event::new("foreign_revocation_lifted")
                        .cert(Some(f.key.clone()), None)
                        .reason(format!(
                            "trust {:?}: the CRL of {} lists serial {} as removeFromCRL; it is no longer remembered as revoked (seen revoked at {})",
                            f.trust,
                            f.issuer,
                            f.serial,
                            crate::pki::rfc3339(f.seen_at)
                        )),
                );
            }
            Some(remembered)
        }
        _ => None,
    };
    for trust in trusts {
        let name = &trust.config.name;
        let prefix = format!("{name}:");
        let newly = match &remembered {
            Some(all) => {
                let mut keys: Vec<String> = trust.revoked.to_vec();
                keys.extend(
                    all.iter()
                        .filter(|r| r.key.starts_with(&prefix))
                        .map(|r| r.key.clone()),
                );
                keys.sort();
                keys.dedup();
                state.revoked.replace_prefix(&prefix, &keys)
            }
            None => {
                let mut keys = trust.revoked.clone();
                keys.extend(t.pending.keys().filter(|k| k.starts_with(&prefix)).cloned());
                state.revoked.insert_all(&keys)
            }
        };
        let cut: usize = newly
            .iter()
            .map(|key| state.apply_foreign_revocation(key))
            .sum();
        if !newly.is_empty() {
            state.audit.log(Event::new("revocation_applied").reason(format!(
                "{} certificate(s) newly listed in the CRL of trust {name:?} or remembered as revoked in the ledger; {cut} open connection(s) closed",
                newly.len(),
            )));
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
