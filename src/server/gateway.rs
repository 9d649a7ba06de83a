//! Wires the MCP side: the built-in provider and one provider per configured upstream behind
//! one hub; refuses to start on clashing names; reloads upstreams.toml on SIGHUP (an invalid
//! file is refused and the running upstreams stay).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::state::AppState;
use crate::audit::Event;
use crate::identity::Identity;
use crate::mcp::builtin::Builtin;
use crate::mcp::diagnostics::Diagnostics;
use crate::mcp::gate::Gate;
use crate::mcp::hub::Hub;
use crate::mcp::provider::{HubSender, Provider, SharedProvider};
use crate::mcp::state::Sealer;
use crate::upstream::check_names;
use crate::upstream::child::STOP_GRACE;
use crate::upstream::config::{self, Upstream};
use crate::upstream::provider::UpstreamProvider;

/// The running upstream providers, kept to reuse unchanged ones at reload.
pub struct Upstreams {
    running: std::sync::Mutex<Vec<Arc<UpstreamProvider>>>,
    stop: CancellationToken,
    /// Every upstream connection, running or being stopped (also those of upstreams removed
    /// at a reload), until its child has exited.
    tasks: TaskTracker,
}

/// Builds the hub, starts the upstreams, waits (up to each one's timeout) for the shared ones
/// to connect and refuses to start if two of them expose one name.
pub async fn start(
    state: &Arc<AppState>,
    stop: CancellationToken,
    diagnostics: bool,
    request_state_ttl: Duration,
) -> Result<(Arc<Hub>, Arc<Upstreams>)> {
    let cfg = config::load(state.authority.home().dir())?;
    let gate = Arc::new(Gate::new(state.policy.clone(), state.audit.clone()));
    let (tx, rx) = tokio::sync::mpsc::channel(crate::mcp::provider::HUB_QUEUE);
    let tasks = TaskTracker::new();
    let running: Vec<Arc<UpstreamProvider>> = cfg
        .list
        .iter()
        .map(|u| {
            UpstreamProvider::start(
                u.clone(),
                tx.clone(),
                state.audit.clone(),
                state.linker.clone(),
                stop.child_token(),
                tasks.clone(),
            )
        })
        .collect();
    let mut local: Vec<SharedProvider> = vec![Arc::new(Builtin::new(state.clone()))];
    if diagnostics {
        local.push(Arc::new(Diagnostics::new(tx.clone())));
    }
    let ups = Arc::new(Upstreams {
        running: std::sync::Mutex::new(running.clone()),
        stop: stop.clone(),
        tasks,
    });
    let providers = providers_of(&local, &running);
    if let Err(e) = check_at_load(&providers, &running).await {
        ups.stop_all().await;
        return Err(e);
    }
    for u in &cfg.list {
        state.audit.log(
            Event::new("upstream_configured")
                .item(format!("upstream:{}", u.name))
                .reason(describe(u)),
        );
    }
    let ttl = i64::try_from(request_state_ttl.as_secs()).unwrap_or(i64::MAX);
    let sealer = Sealer::new(ttl).map_err(|_| anyhow::anyhow!("no random key for requestState"))?;
    let hub = Hub::new(gate, providers, tx, sealer);
    tokio::spawn(hub.clone().run(rx, stop));
    let _ = state.hub.set(hub.clone());
    Ok((hub, ups))
}

fn providers_of(
    local: &[SharedProvider],
    running: &[Arc<UpstreamProvider>],
) -> Vec<SharedProvider> {
    let mut v = local.to_vec();
    v.extend(running.iter().map(|p| p.clone() as SharedProvider));
    v
}

/// One line about an upstream for the audit log (never a secret).
pub fn describe(u: &Upstream) -> String {
    let target = match &u.transport {
        config::Transport::Stdio { command, args, .. } => {
            format!("stdio {command} {}", args.join(" "))
        }
        config::Transport::Http { url, .. } => format!("http {url}"),
    };
    let auth = if u.oauth().is_some() {
        "; auth oauth (per holder)"
    } else {
        ""
    };
    format!(
        "{target}; prefix {:?}; share {}{auth}",
        u.prefix,
        u.share.as_str()
    )
}

/// Waits for the shared upstreams to answer their lists (each up to its timeout), then checks
/// the exposed names. An upstream still down is not checked here: if it comes up with a name
/// another provider exposes, the hub hides that name on both sides and audits `name_clash`.
async fn check_at_load(
    providers: &[SharedProvider],
    running: &[Arc<UpstreamProvider>],
) -> Result<()> {
    let who = Identity::stand_in("mcp-zt-load-check");
    let mut offers = Vec::new();
    for p in providers {
        if let Some(up) = running.iter().find(|u| u.name() == p.name()) {
            if up.config().identity_bound() {
                continue;
            }
            let deadline = Instant::now() + up.config().timeout;
            loop {
                match p.items(&who).await {
                    Ok(items) => {
                        offers.push((p.name().to_string(), p.prefix().to_string(), items));
                        break;
                    }
                    Err(e) if Instant::now() >= deadline => {
                        eprintln!("mcp-zt: upstream {} is not answering yet ({e}); serving without it until it does", p.name());
                        break;
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        } else if let Ok(items) = p.items(&who).await {
            offers.push((p.name().to_string(), p.prefix().to_string(), items));
        }
    }
    let view: Vec<_> = offers
        .iter()
        .map(|(n, p, i)| (n.clone(), p.clone(), &**i))
        .collect();
    let report = check_names(&view);
    for w in &report.warnings {
        eprintln!("mcp-zt: warning: {w}");
    }
    if !report.clashes.is_empty() {
        bail!(
            "upstreams.toml: {} (refusing to serve)",
            report.clashes.join("; ")
        );
    }
    Ok(())
}

impl Upstreams {
    /// Re-reads upstreams.toml: unchanged upstreams keep running, removed ones stop, new and
    /// changed ones start. An invalid file is refused and nothing changes.
    pub fn reload(&self, state: &AppState, hub: &Hub) {
        let cfg = match config::load(state.authority.home().dir()) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("mcp-zt: upstreams reload refused, keeping the running upstreams: {e}");
                state
                    .audit
                    .log(Event::new("upstreams_reload_failed").reason(e.to_string()));
                return;
            }
        };
        if let Some(l) = &state.linker {
            l.set_upstreams(cfg.clone());
        }
        let events: HubSender = hub.sender();
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        let mut next = Vec::new();
        for u in &cfg.list {
            match running.iter().position(|p| p.config() == u) {
                Some(i) => next.push(running.remove(i)),
                None => next.push(UpstreamProvider::start(
                    u.clone(),
                    events.clone(),
                    state.audit.clone(),
                    state.linker.clone(),
                    self.stop.child_token(),
                    self.tasks.clone(),
                )),
            }
        }
        for gone in running.drain(..) {
            gone.shutdown();
        }
        *running = next.clone();
        let local: Vec<SharedProvider> = hub
            .providers()
            .iter()
            .filter(|p| p.is_builtin())
            .cloned()
            .collect();
        hub.set_providers(providers_of(&local, &next));
        state
            .audit
            .log(Event::new("upstreams_reloaded").reason(format!("{} upstream(s)", next.len())));
    }

    /// Stops every upstream and waits for their children to exit (each gets its stdin closed,
    /// then SIGTERM, then SIGKILL: see [`crate::upstream::child`]), so none is left running
    /// or writing into closed pipes when the server exits. Bounded: a connection still being
    /// made when this is called is left to `kill_on_drop`.
    pub async fn stop_all(&self) {
        let running: Vec<_> = self
            .running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        for p in &running {
            p.shutdown();
        }
        self.tasks.close();
        let most = crate::upstream::conn::DRAIN + STOP_GRACE * 2 + Duration::from_secs(2);
        if tokio::time::timeout(most, self.tasks.wait()).await.is_err() {
            eprintln!("mcp-zt: some upstream children did not stop within {most:?}");
        }
    }
}
