//! One configured upstream as a provider: a shared connection kept up by a supervisor
//! (reconnect and restart with backoff), or one connection per certificate for per-identity
//! children and identity-forwarding HTTP upstreams.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use rmcp::model::{ClientRequest, ServerResult};
use rmcp::ErrorData;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

mod oauth_calls;

use super::bearer::BearerSlot;
use super::config::Upstream;
use super::conn::{self, HolderExtras, Instance};
use super::oauth::linker::{Access, Linker};
use super::oauth::secret;
use super::oauth::{refusal_text, REFUSED_MARK};
use crate::audit::{Audit, Event};
use crate::identity::Identity;
use crate::ledger::uplink::SecretKind;
use crate::mcp::provider::{Caller, HubEvent, HubSender, Items, Provider, RelayAnswer, Relayed};

/// Longest wait between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A per-identity connection unused this long is closed (the next request opens a new one).
const IDLE_CLOSE: Duration = Duration::from_secs(600);
/// How often idle per-identity connections are looked for.
const REAP_EVERY: Duration = Duration::from_secs(30);
/// How often an idle shared connection is pinged.
const PING_EVERY: Duration = Duration::from_secs(10);

type Slot = Arc<tokio::sync::Mutex<Option<Arc<Instance>>>>;

/// An upstream behind the gate.
pub struct UpstreamProvider {
    cfg: Upstream,
    events: HubSender,
    audit: Arc<Audit>,
    /// Per-holder credentials (upstream OAuth tokens, static secrets).
    linker: Option<Arc<Linker>>,
    /// A per-holder OAuth upstream's lists as a linked holder's connection last saw them:
    /// what an unlinked holder is shown, so calling a tool can ask them to link.
    catalog: RwLock<Option<Arc<Items>>>,
    shared: RwLock<Option<Arc<Instance>>>,
    per_identity: Mutex<HashMap<String, Slot>>,
    /// Certificates revoked while running: never given a connection again.
    revoked: Mutex<std::collections::HashSet<String>>,
    /// The last certificate refused for `max_children` (one audit line per refusal run).
    last_refused: Mutex<Option<String>>,
    stop: CancellationToken,
    /// One task per connection, ending when it has ended and its child has exited: the
    /// server waits for them before it exits (see `gateway::Upstreams::stop_all`).
    tasks: TaskTracker,
}

impl UpstreamProvider {
    /// The provider for `cfg`; shared connections are started (in the background) at once.
    /// Every connection it makes is tracked in `tasks` until its child has exited.
    pub fn start(
        cfg: Upstream,
        events: HubSender,
        audit: Arc<Audit>,
        linker: Option<Arc<Linker>>,
        stop: CancellationToken,
        tasks: TaskTracker,
    ) -> Arc<Self> {
        let me = Arc::new(UpstreamProvider {
            cfg,
            events,
            audit,
            linker,
            catalog: RwLock::new(None),
            shared: RwLock::new(None),
            per_identity: Mutex::new(HashMap::new()),
            revoked: Mutex::new(std::collections::HashSet::new()),
            last_refused: Mutex::new(None),
            stop,
            tasks,
        });
        if me.cfg.identity_bound() {
            tokio::spawn(me.clone().reap());
        } else {
            tokio::spawn(me.clone().supervise());
        }
        me
    }

    /// The configuration it runs.
    pub fn config(&self) -> &Upstream {
        &self.cfg
    }

    /// Stops everything it runs (configuration removed or server stopping).
    pub fn shutdown(&self) {
        self.stop.cancel();
        if let Some(i) = self
            .shared
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
        {
            i.close();
        }
        let slots: Vec<Slot> = self.lock_ids().drain().map(|(_, s)| s).collect();
        for s in slots {
            if let Ok(g) = s.try_lock() {
                if let Some(i) = g.as_ref() {
                    i.close();
                }
            }
        }
    }

    /// Tracks `inst` until it has ended and its child has exited.
    fn track(&self, inst: &Arc<Instance>) {
        let inst = inst.clone();
        self.tasks.spawn(async move { inst.stopped().await });
    }

    fn lock_ids(&self) -> std::sync::MutexGuard<'_, HashMap<String, Slot>> {
        self.per_identity.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn log(&self, kind: &str, reason: String) {
        self.audit.log(
            Event::new(kind)
                .item(format!("upstream:{}", self.cfg.name))
                .reason(reason),
        );
    }

    /// Keeps the shared connection up: connect, wait for it to end (or fail a ping), tell the
    /// sessions, back off, again.
    async fn supervise(self: Arc<Self>) {
        let mut backoff = Duration::from_secs(1);
        let mut last_error = String::new();
        loop {
            match conn::connect(
                &self.cfg,
                None,
                self.events.clone(),
                Some(self.audit.clone()),
                HolderExtras::default(),
            )
            .await
            {
                Ok((inst, mut ended)) => {
                    self.track(&inst);
                    let pid = inst.pid.map(|p| format!(" (pid {p})")).unwrap_or_default();
                    self.log("upstream_up", format!("connected{pid}"));
                    last_error.clear();
                    *self.shared.write().unwrap_or_else(|e| e.into_inner()) = Some(inst.clone());
                    let _ = self.events.try_send(HubEvent::Changed);
                    let since = Instant::now();
                    let stopped = loop {
                        tokio::select! {
                            _ = &mut ended => break false,
                            _ = self.stop.cancelled() => break true,
                            _ = tokio::time::sleep(PING_EVERY) => {
                                if inst.inflight() == 0 && !inst.ping().await {
                                    inst.close();
                                }
                            }
                        }
                    };
                    *self.shared.write().unwrap_or_else(|e| e.into_inner()) = None;
                    inst.close();
                    if stopped {
                        return;
                    }
                    self.log("upstream_down", "connection ended; reconnecting".into());
                    let _ = self.events.try_send(HubEvent::Changed);
                    if since.elapsed() > MAX_BACKOFF {
                        backoff = Duration::from_secs(1);
                    }
                }
                Err(e) => {
                    if e != last_error {
                        self.log(
                            "upstream_unavailable",
                            format!(
                                "{e}; retrying with backoff up to {} s",
                                MAX_BACKOFF.as_secs()
                            ),
                        );
                        last_error = e;
                    }
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = self.stop.cancelled() => return,
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// Closes per-identity connections idle for [`IDLE_CLOSE`], so certificates seen once
    /// (or expired since) do not keep children and their slots under `max_children`.
    async fn reap(self: Arc<Self>) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(REAP_EVERY) => {}
                _ = self.stop.cancelled() => {
                    // The server is stopping: so do the children.
                    self.shutdown();
                    return;
                }
            }
            let idle: Vec<(String, Arc<Instance>)> = {
                let mut ids = self.lock_ids();
                let mut idle = Vec::new();
                ids.retain(|serial, slot| {
                    if Arc::strong_count(slot) > 1 {
                        return true;
                    }
                    let Ok(guard) = slot.try_lock() else {
                        return true;
                    };
                    match guard.as_ref() {
                        Some(i) if i.idle_for(IDLE_CLOSE) => {
                            idle.push((serial.clone(), i.clone()));
                            false
                        }
                        Some(i) => !i.is_closed(),
                        None => false,
                    }
                });
                idle
            };
            for (serial, inst) in idle {
                inst.close();
                let pid = inst.pid.map(|p| format!(" (pid {p})")).unwrap_or_default();
                self.audit.log(
                    Event::new("upstream_child_stopped")
                        .cert(Some(serial), None)
                        .item(format!("upstream:{}", self.cfg.name))
                        .reason(format!(
                            "idle for {} s; connection closed{pid}",
                            IDLE_CLOSE.as_secs()
                        )),
                );
            }
        }
    }

    /// What `who`'s own connection carries: their token (given) and static secrets.
    fn extras(&self, who: &Identity, access: Option<&Access>) -> HolderExtras {
        let mut extras = HolderExtras {
            bearer: access.map(|a| BearerSlot::new(a.token.clone())),
            ..HolderExtras::default()
        };
        if let Some(linker) = &self.linker {
            let chain = linker.chain_of(who);
            let kind = match &self.cfg.transport {
                crate::upstream::config::Transport::Stdio { .. } => SecretKind::Env,
                crate::upstream::config::Transport::Http { .. } => SecretKind::Header,
            };
            // Only names the file still lists: one the operator removed is no longer sent.
            let mut found = secret::for_connection(linker, &who.name, &chain, &self.cfg.name, kind);
            found.retain(|(n, _)| {
                self.cfg
                    .holder_secrets
                    .iter()
                    .any(|h| h.eq_ignore_ascii_case(n))
            });
            match kind {
                SecretKind::Env => extras.env = found,
                SecretKind::Header => extras.headers = found,
            }
        }
        extras
    }

    /// The connection serving `who` (with their token, for a per-holder OAuth upstream).
    async fn instance(
        &self,
        who: &Identity,
        access: Option<&Access>,
    ) -> Result<Arc<Instance>, String> {
        if !self.cfg.identity_bound() {
            return self
                .shared
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .clone()
                .ok_or_else(|| format!("upstream {} is unavailable", self.cfg.name));
        }
        let unusable = || {
            self.stop.is_cancelled()
                || self
                    .revoked
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .contains(&who.serial)
        };
        if unusable() {
            return Err(format!(
                "upstream {} is not available to this certificate",
                self.cfg.name
            ));
        }
        let slot = {
            let mut ids = self.lock_ids();
            // Dead connections and failed starts do not count against the cap (a slot being
            // connected right now is locked and kept).
            // (A slot another request holds is kept: it is about to be filled.)
            ids.retain(|_, slot| {
                Arc::strong_count(slot) > 1
                    || slot
                        .try_lock()
                        .map(|g| g.as_ref().is_some_and(|i| !i.is_closed()))
                        .unwrap_or(true)
            });
            if !ids.contains_key(&who.serial) && ids.len() >= self.cfg.max_children {
                drop(ids);
                let mut last = self.last_refused.lock().unwrap_or_else(|e| e.into_inner());
                if last.as_deref() != Some(who.serial.as_str()) {
                    *last = Some(who.serial.clone());
                    self.audit.log(
                        Event::new("upstream_child_refused")
                            .who(who)
                            .item(format!("upstream:{}", self.cfg.name))
                            .reason(format!("max_children ({}) reached", self.cfg.max_children)),
                    );
                }
                return Err(format!(
                    "upstream {} has reached its limit of {} per-identity connections",
                    self.cfg.name, self.cfg.max_children
                ));
            }
            ids.entry(who.serial.clone()).or_default().clone()
        };
        let mut guard = slot.lock().await;
        if let Some(inst) = guard.as_ref() {
            let same = inst
                .started_as
                .as_ref()
                .is_none_or(|(name, role)| *name == who.name && *role == who.role);
            if !inst.is_closed() && same {
                if let (Some(a), Some(slot)) = (access, &inst.bearer) {
                    slot.set(&a.token);
                }
                return Ok(inst.clone());
            }
            if !same {
                // Started for what this certificate no longer is: never reused.
                inst.close();
                self.log(
                    "upstream_child_replaced",
                    format!("for {}: its name or role changed", who.serial),
                );
            }
        }
        // Checked again under the slot's lock: a revocation or shutdown that came while this
        // request waited must not be undone by starting a child now.
        if unusable() {
            return Err(format!(
                "upstream {} is not available to this certificate",
                self.cfg.name
            ));
        }
        let extras = self.extras(who, access);
        let bearer = extras.bearer.clone();
        let (inst, _ended) = conn::connect(
            &self.cfg,
            Some(who),
            self.events.clone(),
            Some(self.audit.clone()),
            extras,
        )
        .await
        .map_err(|e| {
            if let Some(f) = bearer.as_ref().and_then(|b| b.take_failure()) {
                return format!("{REFUSED_MARK}{}", refusal_text(&f));
            }
            self.log("upstream_unavailable", format!("for {}: {e}", who.serial));
            e
        })?;
        self.track(&inst);
        if unusable() {
            inst.close();
            return Err(format!(
                "upstream {} is not available to this certificate",
                self.cfg.name
            ));
        }
        let pid = inst.pid.map(|p| format!(" pid {p}")).unwrap_or_default();
        self.audit.log(
            Event::new("upstream_child_started")
                .who(who)
                .item(format!("upstream:{}", self.cfg.name))
                .reason(format!("per-identity connection{pid}")),
        );
        *guard = Some(inst.clone());
        Ok(inst)
    }
}

impl Provider for UpstreamProvider {
    fn name(&self) -> &str {
        &self.cfg.name
    }

    fn prefix(&self) -> &str {
        &self.cfg.prefix
    }

    fn items<'a>(&'a self, who: &'a Identity) -> BoxFuture<'a, Result<Arc<Items>, String>> {
        async move {
            if let (Some(linker), true) = (&self.linker, self.cfg.oauth().is_some()) {
                return self.oauth_items(linker, who).await;
            }
            self.instance(who, None).await?.items().await
        }
        .boxed()
    }

    fn request<'a>(
        &'a self,
        caller: &'a Caller,
        request: ClientRequest,
    ) -> BoxFuture<'a, Result<ServerResult, ErrorData>> {
        async move {
            if let (Some(linker), true) = (&self.linker, self.cfg.oauth().is_some()) {
                return self.oauth_request(linker, caller, request).await;
            }
            match self.instance(&caller.identity, None).await {
                Ok(inst) => inst.request(&self.cfg.name, caller, request).await,
                Err(e) => Err(conn::failure(
                    "unavailable",
                    format!("upstream {} is unavailable", self.cfg.name),
                    Some(e),
                )),
            }
        }
        .boxed()
    }

    fn identity_bound(&self) -> bool {
        self.cfg.identity_bound()
    }

    fn answers_directly(&self) -> bool {
        // A shared connection without per-holder logins: a lookup reads its cached lists.
        !self.cfg.identity_bound() && self.cfg.oauth().is_none()
    }

    fn relay_direct<'a>(
        &'a self,
        call: Relayed<'a>,
    ) -> Option<BoxFuture<'a, Result<RelayAnswer, ErrorData>>> {
        if !self.answers_directly()
            || call.method != "tools/call"
            || !crate::mcp::envelope::plain_name(call.inner)
        {
            return None;
        }
        let inst = self
            .shared
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()?;
        if !inst.relays_directly() {
            return None;
        }
        // A tool whose schema moves arguments into headers (`x-mcp-header`) is rmcp's client's
        // to send.
        let items = inst.current_items()?;
        let tool = items.tools.iter().find(|t| t.name == call.inner)?;
        if names_headers(&tool.input_schema) {
            return None;
        }
        Some(async move { inst.relay(&self.cfg.name, call).await }.boxed())
    }

    fn holder_changed(&self, holder: &str) {
        let slots: Vec<Slot> = self.lock_ids().values().cloned().collect();
        let holder = holder.to_string();
        tokio::spawn(async move {
            for slot in slots {
                let mut guard = slot.lock().await;
                let mine = guard
                    .as_ref()
                    .is_some_and(|i| i.started_as.as_ref().is_some_and(|(n, _)| *n == holder));
                if mine {
                    if let Some(inst) = guard.take() {
                        inst.close();
                    }
                }
            }
        });
    }

    fn revoked(&self, serial: &str) {
        self.revoked
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(serial.to_string());
        let slot = self.lock_ids().remove(serial);
        let Some(slot) = slot else { return };
        let audit = self.audit.clone();
        let name = self.cfg.name.clone();
        let serial = serial.to_string();
        tokio::spawn(async move {
            let inst = slot.lock().await.take();
            if let Some(inst) = inst {
                inst.close();
                let pid = inst.pid.map(|p| format!(" (pid {p})")).unwrap_or_default();
                audit.log(
                    Event::new("upstream_child_stopped")
                        .cert(Some(serial), None)
                        .item(format!("upstream:{name}"))
                        .reason(format!("certificate revoked; connection closed{pid}")),
                );
            }
        });
    }
}

/// Whether a tool's input schema annotates any property with `x-mcp-header`.
fn names_headers(schema: &serde_json::Map<String, serde_json::Value>) -> bool {
    fn walk(v: &serde_json::Value) -> bool {
        match v {
            serde_json::Value::Object(o) => names_headers(o),
            serde_json::Value::Array(a) => a.iter().any(walk),
            _ => false,
        }
    }
    schema.iter().any(|(k, v)| k == "x-mcp-header" || walk(v))
}

#[cfg(test)]
mod direct_tests {
    use super::names_headers;

    #[test]
    fn header_annotations_are_found_at_any_depth() {
        let schema = |v: serde_json::Value| v.as_object().cloned().expect("object");
        let plain = serde_json::json!({"type": "object", "properties": {"a": {"type": "string"}}});
        assert!(!names_headers(&schema(plain)));
        let nested = serde_json::json!({"type": "object", "properties": {"a": {"anyOf": [
            {"type": "string", "x-mcp-header": "Region"}]}}});
        assert!(names_headers(&schema(nested)));
    }
}
