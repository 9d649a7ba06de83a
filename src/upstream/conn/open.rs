//! Opening a connection to an upstream: spawning a stdio child (its environment withheld but
//! for a few variables) or opening the HTTP client, initializing MCP in each revision the
//! upstream speaks, and watching a modern upstream's lists.

use super::*;

/// Environment variables a stdio child keeps from the server's environment; everything else
/// (the server's own settings and secrets) is withheld.
const INHERITED_ENV: &[&str] = &["PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR", "USER"];

fn identity_values(who: &Identity) -> [&str; 4] {
    [&who.name, &who.role, &who.serial, &who.spiffe_id]
}

/// Connects (spawns the child or opens the HTTP session) and initializes. `who` is set for
/// per-identity connections: its identity goes into the child's environment or the headers,
/// with `extras`. The receiver fires when the connection ends.
pub async fn connect(
    cfg: &Upstream,
    who: Option<&Identity>,
    events: HubSender,
    audit: Option<Arc<crate::audit::Audit>>,
    extras: HolderExtras,
) -> Result<(Arc<Instance>, oneshot::Receiver<()>), String> {
    let stale = Arc::new(AtomicBool::new(true));
    let close = CancellationToken::new();
    let relay = |routes: &Arc<Routes>| Relay {
        upstream: cfg.name.clone(),
        routes: routes.clone(),
        events: events.clone(),
        stale: stale.clone(),
        serial: who.map(|w| w.serial.clone()),
        timeout: cfg.timeout,
        audit: audit.clone(),
    };
    let mut running = Vec::new();
    let mut stdio_child: Option<StdioChild> = None;
    let mut direct_http = None;
    let mut pipe_link = None;
    let pid = match &cfg.transport {
        Transport::Stdio {
            command,
            args,
            env,
            cwd,
        } => {
            let mut cmd = tokio::process::Command::new(command);
            cmd.args(args).env_clear();
            for k in INHERITED_ENV {
                if let Ok(v) = std::env::var(k) {
                    cmd.env(k, v);
                }
            }
            for (k, secret) in env {
                cmd.env(k, secret.resolve().map_err(|e| e.to_string())?);
            }
            for (k, v) in &extras.env {
                cmd.env(k, v.as_str());
            }
            if let Some(who) = who {
                for (k, v) in IDENTITY_ENV.iter().zip(identity_values(who)) {
                    cmd.env(k, v);
                }
            }
            if let Some(dir) = cwd {
                cmd.current_dir(dir);
            }
            // mcp-zt keeps the child and gives rmcp only its pipes, to stop it as the MCP
            // specification says (see [`child`]).
            let (child, (stdout, stdin)) = child::spawn(cmd, tokio::io::stderr())
                .map_err(|e| format!("cannot start {command:?}: {e}"))?;
            let pid = child.id();
            // rmcp reads and writes through the pipe pumps; a shared child's pipes also carry
            // the native transport's relayed calls.
            let (pipe, transport) = crate::upstream::pipe::split(stdout, stdin);
            if who.is_none() {
                pipe_link = Some(pipe);
            }
            let routes = Arc::new(Routes::default());
            let client = tokio::time::timeout(
                cfg.timeout,
                serve_client_with_ct(relay(&routes), transport, close.clone()),
            )
            .await
            .map_err(|_| format!("no answer to initialize within {:?}", cfg.timeout))
            .and_then(|r| r.map_err(|e| format!("initialize failed: {e}")));
            let client = match client {
                Ok(client) => client,
                Err(e) => {
                    // Waited for, so a failed start leaves no child behind.
                    report_stop(&cfg.name, pid, child.stop(STOP_GRACE).await);
                    return Err(e);
                }
            };
            running.push((client, routes));
            stdio_child = Some(child);
            pid
        }
        Transport::Http {
            url,
            headers,
            ca,
            client_cert,
        } => {
            let client = http_client(ca.as_deref(), client_cert.as_ref())?;
            let mut map = std::collections::HashMap::new();
            for (k, secret) in headers {
                let v = secret.resolve().map_err(|e| e.to_string())?;
                map.insert(header_name(k)?, header_value(&v, k)?);
            }
            for (k, v) in &extras.headers {
                map.insert(header_name(k)?, header_value(v, k)?);
            }
            if let (Some(who), true) = (who, cfg.forward_identity) {
                for (k, v) in IDENTITY_HEADERS.iter().zip(identity_values(who)) {
                    map.insert(header_name(k)?, header_value(v, k)?);
                }
            }
            // Only a connection every caller shares, without a holder's token, is relayed
            // directly (its headers are the file's alone).
            if who.is_none() && extras.bearer.is_none() {
                direct_http = Some((client.clone(), url.clone(), map.clone()));
            }
            let client = BearerClient {
                inner: client,
                slot: extras.bearer.clone(),
            };
            let transport = || {
                let config = rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig::with_uri(url.as_str())
                    .custom_headers(map.clone());
                StreamableHttpClientTransport::with_client(client.clone(), config)
            };
            // The newest revision if the server speaks it (server/discover), else the
            // initialize handshake of 2025-11-25 and older.
            let lifecycle = ClientLifecycleMode::Auto {
                preferred_versions: vec![ProtocolVersion::V_2026_07_28],
                legacy_version: Some(ProtocolVersion::V_2025_11_25),
            };
            let routes = Arc::new(Routes::default());
            let first = tokio::time::timeout(
                cfg.timeout,
                serve_client_with_lifecycle_and_ct(
                    relay(&routes),
                    transport(),
                    lifecycle,
                    close.clone(),
                ),
            )
            .await
            .map_err(|_| {
                format!(
                    "no answer to discover or initialize within {:?}",
                    cfg.timeout
                )
            })?
            .map_err(|e| format!("discover and initialize failed: {e}"))?;
            let modern = is_modern(first.peer());
            running.push((first, routes));
            if modern {
                // A session of the older revision too, for older clients, if it still
                // speaks it.
                let routes = Arc::new(Routes::default());
                let legacy = tokio::time::timeout(
                    cfg.timeout,
                    serve_client_with_lifecycle_and_ct(
                        relay(&routes),
                        transport(),
                        ClientLifecycleMode::Initialize,
                        close.clone(),
                    ),
                )
                .await;
                if let Ok(Ok(legacy)) = legacy {
                    running.push((legacy, routes));
                }
            }
            None
        }
    };
    let closed = Arc::new(AtomicBool::new(false));
    let mut links = Vec::new();
    for (client, routes) in &running {
        let modern = is_modern(client.peer());
        if modern {
            let caps = client
                .peer()
                .peer_info()
                .map(|i| i.capabilities.clone())
                .unwrap_or_default();
            tokio::spawn(watch_lists(
                client.peer().clone(),
                caps,
                stale.clone(),
                events.clone(),
                close.clone(),
            ));
        }
        links.push(Link {
            peer: client.peer().clone(),
            routes: routes.clone(),
            modern,
        });
    }
    let done = CancellationToken::new();
    let direct = direct_http
        .filter(|_| links.first().is_some_and(|l| l.modern))
        .map(|(client, url, headers)| Arc::new(DirectLink::new(client, &url, &headers)));
    let instance = Arc::new(Instance {
        links,
        close: close.clone(),
        done: done.clone(),
        stale,
        closed: closed.clone(),
        catalog: std::sync::RwLock::new(None),
        fetching: tokio::sync::Mutex::new(()),
        timeout: cfg.timeout,
        pid,
        last_used: std::sync::Mutex::new(std::time::Instant::now()),
        started_as: who.map(|w| (w.name.clone(), w.role.clone())),
        bearer: extras.bearer,
        direct,
        pipe: pipe_link,
        direct_inflight: AtomicUsize::new(0),
    });
    let (tx, rx) = oneshot::channel();
    // The connection ends when any of its links ends; a child is stopped before the end is
    // reported (the supervisor then connects anew: never two children at once).
    let name = cfg.name.clone();
    tokio::spawn(async move {
        let waits = running
            .into_iter()
            .map(|(client, _)| Box::pin(async move { client.waiting().await }));
        let mut links_ended = futures_util::future::select_all(waits);
        tokio::select! {
            _ = &mut links_ended => {}
            // Asked to close: rmcp gets a bounded time to finish what is in flight, then the
            // child is stopped whatever rmcp is doing (a child that stopped reading its stdin
            // can leave rmcp's writer waiting for ever; the stop ends that too).
            () = close.cancelled() => {
                let _ = tokio::time::timeout(DRAIN, &mut links_ended).await;
            }
        }
        drop(links_ended);
        closed.store(true, Ordering::SeqCst);
        close.cancel();
        if let Some(child) = stdio_child {
            report_stop(&name, pid, child.stop(STOP_GRACE).await);
        }
        done.cancel();
        let _ = tx.send(());
    });
    Ok((instance, rx))
}

/// Whether a connection speaks MCP 2026-07-28 or later.
fn is_modern(peer: &Peer<RoleClient>) -> bool {
    peer.peer_info()
        .is_some_and(|i| !i.protocol_version.has_initialize())
}

/// A modern upstream has no session to send list_changed on: a `subscriptions/listen` stream
/// for its lists takes its place, and each change marks the cached lists stale. If the
/// stream ends, the lists are fetched again on every use until the connection is replaced.
async fn watch_lists(
    peer: Peer<RoleClient>,
    caps: rmcp::model::ServerCapabilities,
    stale: Arc<AtomicBool>,
    events: HubSender,
    close: CancellationToken,
) {
    let mut filter = SubscriptionFilter::new();
    if caps
        .tools
        .as_ref()
        .is_some_and(|t| t.list_changed == Some(true))
    {
        filter.tools_list_changed = Some(true);
    }
    if caps
        .prompts
        .as_ref()
        .is_some_and(|t| t.list_changed == Some(true))
    {
        filter.prompts_list_changed = Some(true);
    }
    if caps
        .resources
        .as_ref()
        .is_some_and(|t| t.list_changed == Some(true))
    {
        filter.resources_list_changed = Some(true);
    }
    if filter == SubscriptionFilter::new() {
        return;
    }
    let changed = || {
        stale.store(true, Ordering::SeqCst);
        let _ = events.try_send(crate::mcp::provider::HubEvent::Changed);
    };
    let Ok(mut sub) = peer.listen(filter).await else {
        return;
    };
    loop {
        let next = tokio::select! {
            n = sub.next() => n,
            _ = close.cancelled() => return,
        };
        match next {
            Ok(Some(
                ServerNotification::ToolListChangedNotification(_)
                | ServerNotification::PromptListChangedNotification(_)
                | ServerNotification::ResourceListChangedNotification(_),
            )) => changed(),
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => {
                changed();
                return;
            }
        }
    }
}

fn header_name(k: &str) -> Result<http::HeaderName, String> {
    http::HeaderName::from_bytes(k.as_bytes()).map_err(|_| format!("invalid header name {k:?}"))
}

fn header_value(v: &str, k: &str) -> Result<http::HeaderValue, String> {
    http::HeaderValue::from_str(v).map_err(|_| format!("invalid value for header {k:?}"))
}
