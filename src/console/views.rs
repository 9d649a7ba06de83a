//! What the console's pages read: upstream state, what each provider offers, audit search and
//! recent refusals. Nothing here runs on the MCP request path.

use std::time::Duration;

use crate::audit::Event;
use crate::identity::Identity;
use crate::policy::Kind;
use crate::server::state::AppState;

/// One provider as the console lists it.
pub struct UpstreamView {
    /// `builtin` or the upstream's name.
    pub name: String,
    /// What it is.
    pub kind: String,
    /// Its connection's state.
    pub state: String,
    /// Its exposed-name prefix.
    pub prefix: String,
    /// Its tools: (exposed name, description).
    pub tools: Vec<(String, String)>,
}

/// Longest wait for one provider's lists.
const LIST_WAIT: Duration = Duration::from_secs(3);

/// Every provider, with its state and tools (identity-bound ones are not listed: listing would
/// start a connection for nobody).
pub async fn upstreams(state: &AppState) -> Vec<UpstreamView> {
    let Some(hub) = state.hub.get() else {
        return Vec::new();
    };
    let who = Identity::stand_in("mcp-zt-console");
    let mut out = Vec::new();
    for p in hub.providers().iter() {
        let kind = if p.is_builtin() {
            "built-in"
        } else if p.identity_bound() {
            "upstream, one connection per holder"
        } else {
            "upstream, shared connection"
        };
        let (state_text, tools) = if p.identity_bound() {
            (
                "per holder: listed in each holder's own view".to_string(),
                Vec::new(),
            )
        } else {
            let items = tokio::time::timeout(LIST_WAIT, p.items(&who)).await;
            match items {
                Ok(Ok(items)) => (
                    format!(
                        "up: {} tools, {} prompts, {} resources",
                        items.tools.len(),
                        items.prompts.len(),
                        items.resources.len()
                    ),
                    items
                        .tools
                        .iter()
                        .map(|t| {
                            (
                                format!("{}{}", p.prefix(), t.name),
                                t.description.as_deref().unwrap_or("").to_string(),
                            )
                        })
                        .collect(),
                ),
                Ok(Err(e)) => (format!("down: {e}"), Vec::new()),
                Err(_) => ("no answer within 3 s".to_string(), Vec::new()),
            }
        };
        out.push(UpstreamView {
            name: p.name().to_string(),
            kind: kind.to_string(),
            state: state_text,
            prefix: p.prefix().to_string(),
            tools,
        });
    }
    out
}

/// Every item the shared providers offer: (kind, exposed name or URI, provider).
pub async fn catalog(state: &AppState) -> Vec<(Kind, String, String)> {
    let Some(hub) = state.hub.get() else {
        return Vec::new();
    };
    let who = Identity::stand_in("mcp-zt-console");
    let mut out = Vec::new();
    for p in hub.providers().iter().filter(|p| !p.identity_bound()) {
        let Ok(Ok(items)) = tokio::time::timeout(LIST_WAIT, p.items(&who)).await else {
            continue;
        };
        for t in &items.tools {
            out.push((
                Kind::Tool,
                format!("{}{}", p.prefix(), t.name),
                p.name().to_string(),
            ));
        }
        for pr in &items.prompts {
            out.push((
                Kind::Prompt,
                format!("{}{}", p.prefix(), pr.name),
                p.name().to_string(),
            ));
        }
        for r in &items.resources {
            out.push((Kind::Resource, r.uri.clone(), p.name().to_string()));
        }
    }
    out
}

/// One refusal line of the overview.
pub struct RefusalRow {
    /// When.
    pub time: String,
    /// Event kind.
    pub event: String,
    /// Who (name or peer).
    pub who: String,
    /// Why.
    pub reason: String,
}

fn is_refusal(kind: &str) -> bool {
    ["refused", "rejected", "denied", "failed"]
        .iter()
        .any(|k| kind.contains(k))
}

/// Most bytes of the audit log one page reads (the newest): a page must not cost the server
/// the whole log, however large it grew.
const READ_BUDGET: u64 = 8 * 1024 * 1024;

/// The newest events of the log and its rotated files, oldest first, within [`READ_BUDGET`].
fn recent_events(path: &std::path::Path) -> Vec<Event> {
    use std::io::{Read, Seek, SeekFrom};
    let mut budget = READ_BUDGET;
    let mut chunks: Vec<Vec<Event>> = Vec::new();
    for file in crate::audit::log_files(path).into_iter().rev() {
        if budget == 0 {
            break;
        }
        let Ok(mut f) = std::fs::File::open(&file) else {
            continue;
        };
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        let start = len.saturating_sub(budget);
        budget -= len - start;
        let mut bytes = Vec::new();
        if f.seek(SeekFrom::Start(start)).is_err() || f.read_to_end(&mut bytes).is_err() {
            continue;
        }
        let mut lines = bytes.split(|b| *b == b'\n');
        if start > 0 {
            // The first line was cut by the budget.
            lines.next();
        }
        chunks.push(lines.filter_map(crate::audit::parse_line).collect());
    }
    chunks.reverse();
    chunks.into_iter().flatten().collect()
}

async fn events(state: &AppState) -> Vec<Event> {
    let path = state.authority.home().audit_log();
    tokio::task::spawn_blocking(move || recent_events(&path))
        .await
        .unwrap_or_default()
}

/// The last `n` refusals, newest first.
pub async fn recent_refusals(state: &AppState, n: usize) -> Vec<RefusalRow> {
    events(state)
        .await
        .into_iter()
        .rev()
        .filter(|e| is_refusal(&e.event))
        .take(n)
        .map(|e| RefusalRow {
            time: e.time.clone(),
            event: e.event.clone(),
            who: e.name.clone().or(e.peer.clone()).unwrap_or_default(),
            reason: e.reason.clone().unwrap_or_default(),
        })
        .collect()
}

/// Audit lines (JSON, as written) containing `needle` of kind `event` (either may be empty),
/// newest first, at most `n`, among the newest 8 MiB of the log.
pub async fn search_audit(state: &AppState, needle: &str, event: &str, n: usize) -> Vec<String> {
    events(state)
        .await
        .into_iter()
        .rev()
        .filter(|e| event.is_empty() || e.event == event)
        .filter_map(|e| crate::audit::to_json_line(&e).ok())
        .filter(|l| needle.is_empty() || l.contains(needle))
        .take(n)
        .collect()
}
