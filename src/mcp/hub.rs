//! The providers and the live client sessions: builds each identity's view (exposed names,
//! filtered by the policy), and tells a session about list changes only when its view changed.

use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock, Weak};
use std::time::Duration;

use futures_util::future::join_all;
use rmcp::model::{Prompt, Resource, ResourceTemplate, Tool};
use rmcp::service::SubscriptionSink;
use rmcp::{Peer, RoleServer};
use tokio::sync::mpsc::Receiver;
use tokio_util::sync::CancellationToken;

use super::gate::Gate;
use super::provider::{valid_exposed, HubEvent, HubSender, SharedProvider};
use super::state::Sealer;
use crate::identity::Identity;
use crate::policy::rules::Kind;

/// One item as the client sees it, with where it comes from.
#[derive(Debug, Clone)]
pub struct Entry<T> {
    /// The item with its exposed name.
    pub item: T,
    /// Index of the provider in [`View::providers`].
    pub provider: usize,
    /// The provider's own name for it (URIs: the same).
    pub inner: String,
    /// Whether the caller's role may see and use it.
    pub visible: bool,
}

/// What [`Hub::find_tool`] found.
pub enum Lookup {
    /// Exactly one provider offers the name.
    Found(Found),
    /// No provider offers it (to this identity).
    Missing,
    /// More than one does.
    Clash,
}

/// One tool as a call needs it ([`Hub::find_tool`]).
pub struct Found {
    /// The provider that serves it.
    pub provider: SharedProvider,
    /// The provider's own name for it.
    pub inner: String,
    /// Whether the caller's role may use it.
    pub visible: bool,
}

/// Everything the providers offer, named as exposed, each marked visible or not for one role.
pub struct View {
    /// The providers the entries index into.
    pub providers: Arc<Vec<SharedProvider>>,
    /// Tools.
    pub tools: Vec<Entry<Tool>>,
    /// Prompts.
    pub prompts: Vec<Entry<Prompt>>,
    /// Resources.
    pub resources: Vec<Entry<Resource>>,
    /// Resource templates.
    pub templates: Vec<Entry<ResourceTemplate>>,
}

impl View {
    /// The visible tools.
    pub fn tools(&self) -> Vec<Tool> {
        visible(&self.tools)
    }
    /// The visible prompts.
    pub fn prompts(&self) -> Vec<Prompt> {
        visible(&self.prompts)
    }
    /// The visible resources.
    pub fn resources(&self) -> Vec<Resource> {
        visible(&self.resources)
    }
    /// The visible resource templates.
    pub fn templates(&self) -> Vec<ResourceTemplate> {
        visible(&self.templates)
    }
    /// A digest of what one list kind shows, to tell whether it changed.
    pub fn digest(&self, kind: ListKind) -> u64 {
        let mut h = DefaultHasher::new();
        let json = match kind {
            ListKind::Tools => serde_json::to_string(&self.tools()),
            ListKind::Prompts => serde_json::to_string(&self.prompts()),
            ListKind::Resources => serde_json::to_string(&(self.resources(), self.templates())),
        };
        json.unwrap_or_default().hash(&mut h);
        h.finish()
    }
}

fn visible<T: Clone>(entries: &[Entry<T>]) -> Vec<T> {
    entries
        .iter()
        .filter(|e| e.visible)
        .map(|e| e.item.clone())
        .collect()
}

/// The three lists a client can be told changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListKind {
    /// tools/list.
    Tools,
    /// prompts/list.
    Prompts,
    /// resources/list and resources/templates/list.
    Resources,
}

const KINDS: [ListKind; 3] = [ListKind::Tools, ListKind::Prompts, ListKind::Resources];

/// Most resource subscriptions one session may hold.
pub const MAX_SUBSCRIPTIONS: usize = 1024;

/// Longest wait for one session to take a notification: a client that stops reading must
/// not hold up the others.
const NOTIFY_TIMEOUT: Duration = Duration::from_secs(2);

/// One client session as the hub knows it.
pub struct SessionSlot {
    id: u64,
    hub: Weak<Hub>,
    peer: OnceLock<Peer<RoleServer>>,
    who: OnceLock<Identity>,
    /// Digest of each list as last sent to the client (None: never listed).
    seen: Mutex<[Option<u64>; 3]>,
    /// Resources this session subscribed to: (provider, URI).
    subscriptions: Mutex<HashSet<(String, String)>>,
    /// For a `subscriptions/listen` stream (MCP 2026-07-28): notifications go through this
    /// sink, which keeps to the client's filter and tags each with the subscription id.
    listener: Mutex<Option<SubscriptionSink>>,
    /// The level an older client set with `logging/setLevel`.
    #[allow(deprecated)]
    log_level: Mutex<Option<rmcp::model::LoggingLevel>>,
}

impl SessionSlot {
    /// Records the client's peer and identity at its first request.
    pub fn attach(&self, peer: &Peer<RoleServer>, who: &Identity) {
        // Set once per session; later requests clone nothing.
        self.peer.get_or_init(|| peer.clone());
        self.who.get_or_init(|| who.clone());
    }

    /// Remembers what the client was last shown of `kind`.
    pub fn shown(&self, kind: ListKind, digest: u64) {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen[kind as usize] = Some(digest);
    }

    /// Adds or removes a subscription to `uri` served by `provider`. Refused (false) past
    /// [`MAX_SUBSCRIPTIONS`].
    pub fn subscribe(&self, provider: &str, uri: &str, on: bool) -> bool {
        let mut subs = self.subscriptions.lock().unwrap_or_else(|e| e.into_inner());
        let key = (provider.to_string(), uri.to_string());
        if !on {
            subs.remove(&key);
            return true;
        }
        if subs.len() >= MAX_SUBSCRIPTIONS && !subs.contains(&key) {
            return false;
        }
        subs.insert(key);
        true
    }

    /// Makes this slot a `subscriptions/listen` stream: from now on it hears of changes to
    /// the lists as they are now (`digests`), through `sink`.
    pub fn listen(&self, sink: SubscriptionSink, digests: [u64; 3]) {
        *self.seen.lock().unwrap_or_else(|e| e.into_inner()) = digests.map(Some);
        *self.listener.lock().unwrap_or_else(|e| e.into_inner()) = Some(sink);
    }

    /// Records an older client's `logging/setLevel`.
    #[allow(deprecated)]
    pub fn set_log_level(&self, level: rmcp::model::LoggingLevel) {
        *self.log_level.lock().unwrap_or_else(|e| e.into_inner()) = Some(level);
    }

    /// The level an older client set, if any.
    #[allow(deprecated)]
    pub fn log_level(&self) -> Option<rmcp::model::LoggingLevel> {
        *self.log_level.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn sink(&self) -> Option<SubscriptionSink> {
        self.listener
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn subscribed(&self, provider: &str, uri: &str) -> bool {
        self.subscriptions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&(provider.to_string(), uri.to_string()))
    }
}

impl Drop for SessionSlot {
    fn drop(&mut self) {
        if let Some(hub) = self.hub.upgrade() {
            hub.sessions
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&self.id);
        }
    }
}

/// The providers, the gate and the live sessions.
pub struct Hub {
    /// Policy, limits, audit.
    pub gate: Arc<Gate>,
    providers: RwLock<Arc<Vec<SharedProvider>>>,
    sessions: Mutex<HashMap<u64, Weak<SessionSlot>>>,
    next_id: AtomicU64,
    /// Per-certificate tokens, cancelled at revocation: ends that certificate's requests.
    serial_tokens: Mutex<HashMap<String, CancellationToken>>,
    /// Certificates revoked while running: nothing is started or sent for them any more.
    revoked: Mutex<HashSet<String>>,
    /// Name clashes already reported in the audit log.
    clashes: Mutex<HashSet<String>>,
    events: HubSender,
    /// Seals the `requestState` of multi-round-trip requests.
    pub sealer: Sealer,
    /// Upstream calls waiting for a 2026-07-28 client's answers.
    pub pending: super::mrtr::PendingCalls,
}

impl Hub {
    /// A hub over `providers` (in the order lists show them); `events` is the sending side
    /// of the queue [`Hub::run`] consumes.
    pub fn new(
        gate: Arc<Gate>,
        providers: Vec<SharedProvider>,
        events: HubSender,
        sealer: Sealer,
    ) -> Arc<Hub> {
        Arc::new(Hub {
            gate,
            providers: RwLock::new(Arc::new(providers)),
            sessions: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            serial_tokens: Mutex::new(HashMap::new()),
            revoked: Mutex::new(HashSet::new()),
            clashes: Mutex::new(HashSet::new()),
            events,
            sealer,
            pending: Default::default(),
        })
    }

    /// A sender providers use to report changes.
    pub fn sender(&self) -> HubSender {
        self.events.clone()
    }

    /// Replaces the providers (upstreams.toml reloaded) and tells sessions what changed.
    pub fn set_providers(&self, providers: Vec<SharedProvider>) {
        *self.providers.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(providers);
        let _ = self.events.try_send(HubEvent::Changed);
    }

    /// The current providers.
    pub fn providers(&self) -> Arc<Vec<SharedProvider>> {
        self.providers
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// A new session slot, registered until the session's handler is dropped.
    pub fn session(self: &Arc<Self>) -> Arc<SessionSlot> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let slot = Arc::new(SessionSlot {
            id,
            hub: Arc::downgrade(self),
            peer: OnceLock::new(),
            who: OnceLock::new(),
            seen: Mutex::new([None; 3]),
            subscriptions: Mutex::new(HashSet::new()),
            listener: Mutex::new(None),
            log_level: Mutex::new(None),
        });
        self.sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, Arc::downgrade(&slot));
        slot
    }

    /// A token for one request of `serial`: cancelled if that certificate is revoked.
    /// (Born cancelled if the certificate already is revoked.)
    pub fn request_token(&self, serial: &str) -> CancellationToken {
        if self.is_revoked(serial) {
            let t = CancellationToken::new();
            t.cancel();
            return t;
        }
        let mut map = self.serial_tokens.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(parent) = map.get(serial) {
            return parent.child_token();
        }
        // Checked again under this lock: `revoked` marks the serial before it takes the lock to
        // remove the parent, so a parent made here is never one it already missed.
        if self.is_revoked(serial) {
            let t = CancellationToken::new();
            t.cancel();
            return t;
        }
        map.entry(serial.to_string()).or_default().child_token()
    }

    /// Whether `serial` was revoked while the server ran.
    pub fn is_revoked(&self, serial: &str) -> bool {
        self.revoked
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(serial)
    }

    /// The certificate `serial` was revoked: its requests in flight are cancelled upstream and
    /// every provider drops what it holds for it.
    pub fn revoked(&self, serial: &str) {
        self.revoked
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(serial.to_string());
        let token = self
            .serial_tokens
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(serial);
        if let Some(t) = token {
            t.cancel();
        }
        self.pending.revoked(serial);
        for p in self.providers().iter() {
            p.revoked(serial);
        }
    }

    /// A holder's own credentials for upstream `upstream` changed (a static secret set or
    /// deleted): their connections to it end, so the next request starts one with the new
    /// values.
    pub fn holder_changed(&self, upstream: &str, holder: &str) {
        for p in self.providers().iter().filter(|p| p.name() == upstream) {
            p.holder_changed(holder);
        }
    }

    /// What the providers offer, for `who`: exposed names, visibility by the current policy.
    /// A name two providers expose is left out of both (and audited once as `name_clash`).
    pub async fn view(&self, who: &Identity) -> View {
        let providers = self.providers();
        let policy = self.gate.policy();
        let role = who.role.as_str();
        // A per-identity upstream is not started for a certificate that could use nothing
        // behind it, nor for a revoked one.
        let wanted = |p: &SharedProvider| {
            !p.identity_bound()
                || (!self.is_revoked(&who.serial) && policy.may_use_under(role, p.prefix()))
        };
        let all = join_all(providers.iter().map(|p| async move {
            if wanted(p) {
                p.items(who).await
            } else {
                Err(String::new())
            }
        }))
        .await;
        let mut view = View {
            providers: providers.clone(),
            tools: Vec::new(),
            prompts: Vec::new(),
            resources: Vec::new(),
            templates: Vec::new(),
        };
        for (idx, items) in all.iter().enumerate() {
            let Ok(items) = items else { continue };
            let prefix = providers[idx].prefix();
            for t in &items.tools {
                let exposed = format!("{prefix}{}", t.name);
                if !valid_exposed(&exposed) {
                    continue;
                }
                let mut item = t.clone();
                item.name = exposed.clone().into();
                view.tools.push(Entry {
                    visible: policy.permits(role, Kind::Tool, &exposed),
                    item,
                    provider: idx,
                    inner: t.name.to_string(),
                });
            }
            for p in &items.prompts {
                let exposed = format!("{prefix}{}", p.name);
                if !valid_exposed(&exposed) {
                    continue;
                }
                let mut item = p.clone();
                item.name = exposed.clone();
                view.prompts.push(Entry {
                    visible: policy.permits(role, Kind::Prompt, &exposed),
                    item,
                    provider: idx,
                    inner: p.name.clone(),
                });
            }
            for r in &items.resources {
                view.resources.push(Entry {
                    visible: policy.permits(role, Kind::Resource, &r.uri),
                    item: r.clone(),
                    provider: idx,
                    inner: r.uri.clone(),
                });
            }
            for t in &items.templates {
                view.templates.push(Entry {
                    visible: policy.permits(role, Kind::Resource, &t.uri_template),
                    item: t.clone(),
                    provider: idx,
                    inner: t.uri_template.clone(),
                });
            }
        }
        // A name two providers expose (an upstream that changed its lists since the load
        // check) is served by neither: no provider can take over another's calls.
        let names = |v: &Vec<Entry<Tool>>| {
            v.iter()
                .map(|e| e.item.name.to_string())
                .collect::<Vec<_>>()
        };
        let tools = names(&view.tools);
        let prompts: Vec<String> = view.prompts.iter().map(|e| e.item.name.clone()).collect();
        let uris: Vec<String> = view.resources.iter().map(|e| e.item.uri.clone()).collect();
        let templates: Vec<String> = view
            .templates
            .iter()
            .map(|e| e.item.uri_template.clone())
            .collect();
        let (dt, dp, du, dtp) = (
            dupes(&tools),
            dupes(&prompts),
            dupes(&uris),
            dupes(&templates),
        );
        view.tools.retain(|e| !dt.contains(e.item.name.as_ref()));
        view.prompts.retain(|e| !dp.contains(&e.item.name));
        view.resources.retain(|e| !du.contains(&e.item.uri));
        view.templates
            .retain(|e| !dtp.contains(&e.item.uri_template));
        for (kind, set) in [
            ("tool", &dt),
            ("prompt", &dp),
            ("resource", &du),
            ("resource template", &dtp),
        ] {
            for name in set.iter() {
                self.report_clash(kind, name, &providers);
            }
        }
        view
    }

    /// The tool exposed to `who` as `name`, found without building the whole view: a call
    /// clones no list and asks the policy once. Only providers whose prefix starts `name` are
    /// asked (at the same time, like the view). A name more than one provider offers is a
    /// [`Lookup::Clash`]: [`Hub::view`], which audits it, then gives the answer.
    pub async fn find_tool(&self, who: &Identity, name: &str) -> Lookup {
        if !valid_exposed(name) {
            return Lookup::Missing;
        }
        let providers = self.providers();
        let policy = self.gate.policy();
        let role = who.role.as_str();
        let candidates = providers.iter().filter_map(|p| {
            let inner = name.strip_prefix(p.prefix())?;
            let barred = p.identity_bound()
                && (self.is_revoked(&who.serial) || !policy.may_use_under(role, p.prefix()));
            (!barred).then_some((p, inner))
        });
        let answers = join_all(candidates.map(|(p, inner)| async move {
            let count = match p.items(who).await {
                Ok(items) => items.tools.iter().filter(|t| t.name == inner).count(),
                Err(_) => 0,
            };
            (p, inner, count)
        }))
        .await;
        let mut offered = answers.into_iter().filter(|(_, _, count)| *count > 0);
        match (offered.next(), offered.next()) {
            (None, _) => Lookup::Missing,
            (Some((p, inner, 1)), None) => Lookup::Found(Found {
                provider: p.clone(),
                inner: inner.to_string(),
                visible: policy.permits(role, Kind::Tool, name),
            }),
            _ => Lookup::Clash,
        }
    }

    fn report_clash(&self, kind: &str, name: &str, providers: &[SharedProvider]) {
        let key = format!("{kind}:{name}");
        if !self
            .clashes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key.clone())
        {
            return;
        }
        let names: Vec<&str> = providers.iter().map(|p| p.name()).collect();
        self.gate.audit.log(
            crate::audit::Event::new("name_clash")
                .item(key)
                .reason(format!(
                    "offered by more than one of {}: hidden until one of them is given a prefix",
                    names.join(", ")
                )),
        );
    }

    /// Consumes provider events: list changes are debounced, then each session with a view
    /// that changed gets the matching list_changed notification; resource updates go to the
    /// sessions subscribed to the URI that may still read it.
    pub async fn run(self: Arc<Self>, mut rx: Receiver<HubEvent>, stop: CancellationToken) {
        loop {
            let ev = tokio::select! {
                ev = rx.recv() => ev,
                _ = stop.cancelled() => return,
            };
            let Some(ev) = ev else { return };
            match ev {
                HubEvent::ResourceUpdated {
                    upstream,
                    serial,
                    uri,
                } => {
                    self.resource_updated(&upstream, serial.as_deref(), &uri)
                        .await
                }
                HubEvent::Changed => {
                    // Upstreams often send several changes at once: wait for the burst to end.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    let mut more = Vec::new();
                    while let Ok(ev) = rx.try_recv() {
                        if ev != HubEvent::Changed {
                            more.push(ev);
                        }
                    }
                    self.lists_changed().await;
                    for ev in more {
                        if let HubEvent::ResourceUpdated {
                            upstream,
                            serial,
                            uri,
                        } = ev
                        {
                            self.resource_updated(&upstream, serial.as_deref(), &uri)
                                .await;
                        }
                    }
                }
            }
        }
    }

    fn live_sessions(&self) -> Vec<Arc<SessionSlot>> {
        let mut map = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, w| w.strong_count() > 0);
        map.values().filter_map(Weak::upgrade).collect()
    }

    async fn lists_changed(&self) {
        for slot in self.live_sessions() {
            let (Some(peer), Some(who)) = (slot.peer.get(), slot.who.get()) else {
                continue;
            };
            if peer.is_transport_closed() || self.is_revoked(&who.serial) {
                continue;
            }
            let view = self.view(who).await;
            for kind in KINDS {
                let now = view.digest(kind);
                let before = {
                    let mut seen = slot.seen.lock().unwrap_or_else(|e| e.into_inner());
                    let before = seen[kind as usize];
                    if before.is_some() {
                        seen[kind as usize] = Some(now);
                    }
                    before
                };
                if before.is_none() || before == Some(now) {
                    continue;
                }
                let sink = slot.sink();
                let send = async {
                    match (kind, &sink) {
                        // A listen stream gets only what its filter asked for, tagged.
                        (ListKind::Tools, Some(s)) => s.notify_tool_list_changed().await.is_ok(),
                        (ListKind::Prompts, Some(s)) => {
                            s.notify_prompt_list_changed().await.is_ok()
                        }
                        (ListKind::Resources, Some(s)) => {
                            s.notify_resource_list_changed().await.is_ok()
                        }
                        (ListKind::Tools, None) => peer.notify_tool_list_changed().await.is_ok(),
                        (ListKind::Prompts, None) => {
                            peer.notify_prompt_list_changed().await.is_ok()
                        }
                        (ListKind::Resources, None) => {
                            peer.notify_resource_list_changed().await.is_ok()
                        }
                    }
                };
                if matches!(tokio::time::timeout(NOTIFY_TIMEOUT, send).await, Ok(true)) {
                    self.gate.audit_list_changed(who, kind);
                }
            }
        }
    }

    async fn resource_updated(&self, upstream: &str, serial: Option<&str>, uri: &str) {
        let policy = self.gate.policy();
        for slot in self.live_sessions() {
            let (Some(peer), Some(who)) = (slot.peer.get(), slot.who.get()) else {
                continue;
            };
            if !slot.subscribed(upstream, uri)
                || serial.is_some_and(|s| s != who.serial)
                || self.is_revoked(&who.serial)
                || !policy.permits(&who.role, Kind::Resource, uri)
            {
                continue;
            }
            if let Some(sink) = slot.sink() {
                let _ =
                    tokio::time::timeout(NOTIFY_TIMEOUT, sink.notify_resource_updated(uri)).await;
                continue;
            }
            let note = rmcp::model::ResourceUpdatedNotificationParam::new(uri.to_string());
            let _ = tokio::time::timeout(NOTIFY_TIMEOUT, peer.notify_resource_updated(note)).await;
        }
    }
}

/// The values that occur more than once.
fn dupes(names: &[String]) -> HashSet<String> {
    let mut seen = HashSet::new();
    names
        .iter()
        .filter(|n| !seen.insert(n.as_str()))
        .cloned()
        .collect()
}
