//! One replica of a fleet on a shared PostgreSQL ledger: revocations made anywhere (the CLI,
//! the admin tool, another replica) reach this server and cut its connections.
//!
//! A dedicated connection `LISTEN`s for the announcement every revocation commits with, and
//! fetches and applies the record at once. Every [`RESYNC_EVERY`] the replica also compares
//! the ledger's revocation count and newest revocation with what it knows, and on any
//! difference (or right after (re)connecting) reads every revoked serial: a notification lost
//! with a dropped connection is caught there. The periodic query doubles as the liveness
//! check of the ledger.
//!
//! Losing the database is survivable but not for ever: the replica keeps serving with the
//! revocations it knows, retries, and audits; after `--revocation-max-stale` without a sync it
//! refuses new handshakes ([`Health::fresh`]) until it is back in sync. That is the fail-closed
//! choice: a replica that cannot learn of revocations must not keep admitting certificates
//! that may have been revoked since.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::state::AppState;
use crate::audit::Event;
use crate::ledger::pg::{self, unix_ms};
use crate::ledger::target::PgTarget;

/// How often the replica checks the ledger for revocations it may have missed.
pub const RESYNC_EVERY: Duration = Duration::from_secs(2);

/// How long a connected replica counts as fresh without a completed resync.
const CONNECTED_GRACE: Duration = Duration::from_secs(10);

/// How long one resync query may take before the ledger counts as lost.
const QUERY_TIMEOUT: Duration = Duration::from_secs(2);

/// Whether this server's view of revocations is current.
///
/// Measured on the monotonic clock from the last successful sync (a resync every
/// [`RESYNC_EVERY`], or the load at start): a wall-clock step cannot stretch or shrink the
/// grace, and the grace runs from the last moment the replica was known in sync, not from when
/// the loss was noticed.
#[derive(Debug)]
pub struct Health {
    shared: bool,
    max_stale: Duration,
    base: Instant,
    connected: AtomicBool,
    /// Milliseconds after `base` of the last successful sync.
    synced_at: AtomicU64,
}

impl Health {
    /// For a server whose ledger is `shared` (PostgreSQL), which loaded every revocation just
    /// now; a sled server is always fresh. Not connected until the listener is up and synced.
    pub fn new(shared: bool, max_stale: Duration) -> Health {
        Health {
            shared,
            max_stale,
            base: Instant::now(),
            connected: AtomicBool::new(!shared),
            synced_at: AtomicU64::new(0),
        }
    }

    /// Whether new handshakes may be admitted: the ledger is local, or connected and in sync
    /// (a stalled connection is dropped within two [`QUERY_TIMEOUT`]s of a resync), or the
    /// last sync is no older than `--revocation-max-stale`.
    pub fn fresh(&self) -> bool {
        let since = self.since_sync();
        !self.shared
            || since <= self.max_stale
            // Connected: resyncs land every RESYNC_EVERY; should the sync task itself stop,
            // this path expires and the max-stale rule takes over.
            || (self.connected.load(Ordering::Acquire) && since <= CONNECTED_GRACE)
    }

    /// Whether the shared ledger is connected and in sync now (true for sled).
    pub fn ledger_up(&self) -> bool {
        !self.shared || self.connected.load(Ordering::Acquire)
    }

    /// Milliseconds since the last sync while the ledger is lost (0 while connected).
    pub fn stale_ms(&self) -> i64 {
        if self.ledger_up() {
            return 0;
        }
        i64::try_from(self.since_sync().as_millis()).unwrap_or(i64::MAX)
    }

    fn since_sync(&self) -> Duration {
        let at = Duration::from_millis(self.synced_at.load(Ordering::Acquire));
        self.base.elapsed().saturating_sub(at)
    }

    fn synced(&self) {
        let now = u64::try_from(self.base.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.synced_at.store(now, Ordering::Release);
        self.connected.store(true, Ordering::Release);
    }

    fn lost(&self) {
        self.connected.store(false, Ordering::Release);
    }
}

/// Keeps this replica's revocations in step with the shared ledger until `shutdown`.
pub async fn run(state: Arc<AppState>, target: PgTarget, shutdown: CancellationToken) {
    let mut known = (-1i64, -1i64);
    let mut down_since: Option<i64> = None;
    let mut pause = Duration::from_millis(100);
    loop {
        if shutdown.is_cancelled() {
            return;
        }
        match pg::listen(&target).await {
            Ok((client, mut notes)) => {
                pause = Duration::from_millis(100);
                match resync(&state, &client, &target.shown, &mut known, true).await {
                    Ok(n) => {
                        state.replica.synced();
                        if let Some(since) = down_since.take() {
                            state
                                .audit
                                .log(Event::new("ledger_reconnected").reason(format!(
                                    "{} back after {} ms; {n} revocation(s) caught up",
                                    target.shown,
                                    unix_ms() - since
                                )));
                        }
                    }
                    Err(e) => {
                        lost(&state, &mut down_since, &e);
                        sleep_or_stop(&shutdown, pause).await;
                        continue;
                    }
                }
                let mut tick = tokio::time::interval(RESYNC_EVERY);
                tick.tick().await;
                let why = loop {
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        note = notes.recv() => match note {
                            Some(n) => {
                                if let Err(e) = on_notification(&state, &client, &target.shown, n.payload()).await {
                                    break e;
                                }
                            }
                            None => break "the listening connection closed".to_string(),
                        },
                        _ = tick.tick() => {
                            match resync(&state, &client, &target.shown, &mut known, false).await {
                                Ok(_) => state.replica.synced(),
                                Err(e) => break e,
                            }
                        }
                    }
                };
                lost(&state, &mut down_since, &why);
            }
            Err(e) => lost(&state, &mut down_since, &e.to_string()),
        }
        sleep_or_stop(&shutdown, pause).await;
        pause = (pause * 2).min(Duration::from_millis(500));
    }
}

async fn sleep_or_stop(shutdown: &CancellationToken, d: Duration) {
    tokio::select! {
        _ = shutdown.cancelled() => {}
        _ = tokio::time::sleep(d) => {}
    }
}

fn lost(state: &AppState, down_since: &mut Option<i64>, why: &str) {
    state.replica.lost();
    if down_since.is_none() {
        *down_since = Some(unix_ms());
        state
            .audit
            .log(Event::new("ledger_unreachable").reason(format!(
                "{why}; serving with the {} revocation(s) known, retrying; new handshakes are \
             refused after {:?} without a sync",
                state.revoked.len(),
                state.replica.max_stale
            )));
    }
}

/// Applies one announced revocation (fetched from the ledger: the announcement itself is not
/// trusted for anything but the serial).
async fn on_notification(
    state: &Arc<AppState>,
    client: &tokio_postgres::Client,
    target: &str,
    payload: &str,
) -> Result<(), String> {
    let Some((serial, at_ms)) = pg::parse_notification(payload) else {
        return Ok(());
    };
    let lag = (unix_ms() - at_ms).max(0);
    state.metrics.revocation_lag(lag);
    if state.revoked.contains(&serial) && !state.conns.has(&serial) {
        return Ok(());
    }
    let recs = query(pg::records_of(
        client,
        target,
        std::slice::from_ref(&serial),
    ))
    .await?;
    let applied = apply(state, recs);
    if applied > 0 {
        state.crl_stale.notify_one();
    }
    Ok(())
}

/// Compares the ledger's revocations with the live set; reads them all when they differ (or
/// when `full`). Returns how many were newly applied.
async fn resync(
    state: &Arc<AppState>,
    client: &tokio_postgres::Client,
    target: &str,
    known: &mut (i64, i64),
    full: bool,
) -> Result<usize, String> {
    let row = query(async {
        client
            .query_one(
                "SELECT count(*), COALESCE(max(revocation_seq), 0) FROM mcpzt_certs WHERE revoked",
                &[],
            )
            .await
            .map_err(|e| pg::pg_error(target, &e))
    })
    .await?;
    let now = (row.get::<_, i64>(0), row.get::<_, i64>(1));
    if !full && now == *known {
        return Ok(0);
    }
    let serials = query(pg::revoked_serials(client, target)).await?;
    let missing: Vec<String> = serials
        .into_iter()
        .filter(|s| !state.revoked.contains(s))
        .collect();
    let mut applied = 0;
    for chunk in missing.chunks(1_000) {
        let recs = query(pg::records_of(client, target, chunk)).await?;
        applied += apply(state, recs);
    }
    *known = now;
    if applied > 0 {
        state.crl_stale.notify_one();
    }
    Ok(applied)
}

async fn query<T>(
    f: impl std::future::Future<Output = Result<T, crate::ledger::LedgerError>>,
) -> Result<T, String> {
    match tokio::time::timeout(QUERY_TIMEOUT, f).await {
        Ok(r) => r.map_err(|e| e.to_string()),
        Err(_) => Err(format!("no answer within {QUERY_TIMEOUT:?}")),
    }
}

fn apply(state: &Arc<AppState>, recs: Vec<crate::ledger::CertRecord>) -> usize {
    let mut n = 0;
    for rec in recs {
        if rec.revocation.is_none() {
            continue;
        }
        if !state.revoked.contains(&rec.serial) || state.conns.has(&rec.serial) {
            state.apply_revocation(&rec, "the shared ledger");
            if rec.kind == crate::ledger::CertKind::Server {
                state.server_cert_revoked.notify_one();
            }
            n += 1;
        }
    }
    n
}

/// Republishes HOME's CRL after revocations learnt from the ledger, at most every 250 ms.
pub async fn crl_publisher(state: Arc<AppState>, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = state.crl_stale.notified() => {}
        }
        sleep_or_stop(&shutdown, Duration::from_millis(250)).await;
        let st = state.clone();
        let done =
            tokio::task::spawn_blocking(move || st.authority.publish_crl(&st.signer()).map(|_| ()))
                .await;
        if let Ok(Err(e)) = done {
            state
                .audit
                .log(Event::new("crl_publish_failed").reason(format!(
                    "revocations from the shared ledger are live; CRL not written: {e}"
                )));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lost_ledger_refuses_only_after_the_grace() {
        let h = Health::new(true, Duration::from_millis(50));
        assert!(
            h.fresh() && !h.ledger_up(),
            "loaded at start, not yet listening"
        );
        h.synced();
        assert!(h.fresh() && h.ledger_up());
        h.lost();
        assert!(h.fresh(), "within the grace");
        assert!(!h.ledger_up());
        std::thread::sleep(Duration::from_millis(80));
        assert!(!h.fresh(), "stale after the grace");
        h.synced();
        assert!(h.fresh() && h.stale_ms() == 0);
        let local = Health::new(false, Duration::ZERO);
        local.lost();
        assert!(local.fresh(), "a sled ledger is never stale");
    }
}
