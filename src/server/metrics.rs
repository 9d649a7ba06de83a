//! Prometheus metrics, served on the operations listener (`/metrics`).
//!
//! Decisions are counted from the audit events themselves ([`Metrics::observe`] is called for
//! every event the audit log takes), so the metrics and the audit log cannot disagree about
//! what was accepted or refused. Label values that a client can choose (a tool name it asks
//! for) are capped: past [`MAX_TOOL_LABELS`] distinct names, new ones count as `(other)`, so
//! nobody can grow the registry without bound.

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::audit::Event;

/// Distinct tool names kept as label values.
pub const MAX_TOOL_LABELS: usize = 256;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    tool: String,
    role: String,
    decision: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UpstreamName {
    upstream: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UpstreamLabels {
    upstream: String,
    outcome: String,
}

/// Gauges read from the live server at each scrape.
#[derive(Debug, Default, Clone, Copy)]
pub struct Snapshot {
    /// Open client connections.
    pub connections: i64,
    /// Bound MCP sessions.
    pub sessions: i64,
    /// Serials in the revocation set.
    pub revoked: i64,
    /// 1 when the ledger is reachable (always for sled).
    pub ledger_up: i64,
    /// Milliseconds since the replica was last in sync with a shared ledger (0: in sync).
    pub revocations_stale_ms: i64,
}

/// The server's metrics.
pub struct Metrics {
    registry: Registry,
    handshakes: Family<ResultLabel, Counter>,
    calls: Family<CallLabels, Counter>,
    upstream: Family<UpstreamLabels, Counter>,
    upstream_up: Family<UpstreamName, Gauge>,
    upstream_latency: Histogram,
    request_latency: Histogram,
    propagation: Histogram,
    revocations_applied: Counter,
    direct: Counter,
    connections: Gauge,
    sessions: Gauge,
    revoked: Gauge,
    ledger_up: Gauge,
    stale: Gauge<f64, std::sync::atomic::AtomicU64>,
    tools_seen: Mutex<HashSet<String>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A registry with every mcp-zt metric.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("mcpzt");
        let handshakes = Family::<ResultLabel, Counter>::default();
        registry.register(
            "handshakes",
            "TLS handshakes by result (ok, rejected; refused: turned away before the handshake)",
            handshakes.clone(),
        );
        let calls = Family::<CallLabels, Counter>::default();
        registry.register(
            "tool_calls",
            "Tool calls by tool, role and decision (allowed, denied)",
            calls.clone(),
        );
        let upstream = Family::<UpstreamLabels, Counter>::default();
        registry.register(
            "upstream_requests",
            "Requests forwarded to upstream MCP servers, by upstream and outcome",
            upstream.clone(),
        );
        let upstream_up = Family::<UpstreamName, Gauge>::default();
        registry.register(
            "upstream_up",
            "1 while the gateway's shared connection to an upstream is up, 0 while it is down",
            upstream_up.clone(),
        );
        let upstream_latency = Histogram::new(exponential_buckets(0.000_5, 2.0, 16));
        registry.register(
            "upstream_request_duration_seconds",
            "Latency of requests forwarded upstream",
            upstream_latency.clone(),
        );
        let request_latency = Histogram::new(exponential_buckets(0.000_1, 2.0, 18));
        registry.register(
            "http_request_duration_seconds",
            "Latency of HTTP requests on the MCP endpoint, from headers read to response head",
            request_latency.clone(),
        );
        let direct = Counter::default();
        registry.register(
            "direct_requests",
            "Requests answered by the native transport's direct path (serve --transport native)",
            direct.clone(),
        );
        let propagation = Histogram::new(exponential_buckets(0.001, 2.0, 14));
        registry.register(
            "revocation_propagation_seconds",
            "From a revocation's commit in the shared ledger to this replica applying it",
            propagation.clone(),
        );
        let revocations_applied = Counter::default();
        registry.register(
            "revocations_applied",
            "Revocations applied to the live server (set, sessions, connections)",
            revocations_applied.clone(),
        );
        let connections = Gauge::default();
        registry.register(
            "open_connections",
            "Open client connections",
            connections.clone(),
        );
        let sessions = Gauge::default();
        registry.register("sessions", "Bound MCP sessions", sessions.clone());
        let revoked = Gauge::default();
        registry.register(
            "revoked_serials",
            "Serials in the live revocation set",
            revoked.clone(),
        );
        let ledger_up = Gauge::default();
        registry.register(
            "ledger_up",
            "1 when the ledger is reachable",
            ledger_up.clone(),
        );
        let stale = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        registry.register(
            "revocations_stale_seconds",
            "Seconds since this replica was last in sync with the shared ledger (0: in sync)",
            stale.clone(),
        );
        Metrics {
            registry,
            handshakes,
            calls,
            upstream,
            upstream_up,
            upstream_latency,
            request_latency,
            propagation,
            revocations_applied,
            direct,
            connections,
            sessions,
            revoked,
            ledger_up,
            stale,
            tools_seen: Mutex::new(HashSet::new()),
        }
    }

    /// Counts what an audit event says was decided.
    pub fn observe(&self, e: &Event) {
        match e.event.as_str() {
            "handshake_ok" => self.handshake("ok"),
            "handshake_rejected" => self.handshake("rejected"),
            "connection_refused" => self.handshake("refused"),
            "tool_allowed" | "tool_denied" => {
                let decision = if e.event == "tool_allowed" {
                    "allowed"
                } else {
                    "denied"
                };
                // A name no provider offers is the caller's free text: never a label.
                let unknown = e.reason.as_deref() == Some("no such tool");
                let tool = if unknown {
                    "(unknown)".to_string()
                } else {
                    self.tool_label(e.tool.as_deref().unwrap_or("(none)"))
                };
                self.calls
                    .get_or_create(&CallLabels {
                        tool,
                        role: label(e.role.as_deref().unwrap_or("(none)")),
                        decision: decision.into(),
                    })
                    .inc();
            }
            "revocation_applied" => {
                self.revocations_applied.inc();
            }
            // The shared connection's own transitions only: `upstream_unavailable` is also
            // logged for one identity's child, which says nothing of the shared connection.
            "upstream_up" | "upstream_down" => {
                if let Some(name) = e.item.as_deref().and_then(|i| i.strip_prefix("upstream:")) {
                    self.upstream_up
                        .get_or_create(&UpstreamName {
                            upstream: label(name),
                        })
                        .set(i64::from(e.event == "upstream_up"));
                }
            }
            _ => {}
        }
        if let (Some(up), Some(outcome), Some(ms)) = (&e.upstream, &e.outcome, e.latency_ms) {
            self.upstream
                .get_or_create(&UpstreamLabels {
                    upstream: label(up),
                    outcome: label(outcome),
                })
                .inc();
            self.upstream_latency.observe(ms as f64 / 1000.0);
        }
    }

    fn handshake(&self, result: &str) {
        self.handshakes
            .get_or_create(&ResultLabel {
                result: result.into(),
            })
            .inc();
    }

    fn tool_label(&self, tool: &str) -> String {
        let tool = label(tool);
        let tool = tool.as_str();
        let mut seen = self.tools_seen.lock().unwrap_or_else(|e| e.into_inner());
        if seen.contains(tool) {
            return tool.to_string();
        }
        if seen.len() >= MAX_TOOL_LABELS {
            return "(other)".into();
        }
        seen.insert(tool.to_string());
        tool.to_string()
    }

    /// Records one HTTP request's latency.
    pub fn request(&self, d: Duration) {
        self.request_latency.observe(d.as_secs_f64());
    }

    /// Counts one request answered by the native transport's direct path.
    pub fn direct(&self) {
        self.direct.inc();
    }

    /// Records how long a revocation took to reach this replica.
    pub fn revocation_lag(&self, ms: i64) {
        self.propagation.observe(ms.max(0) as f64 / 1000.0);
    }

    /// The text exposition, with the gauges set from `now`.
    pub fn render(&self, now: Snapshot) -> String {
        self.connections.set(now.connections);
        self.sessions.set(now.sessions);
        self.revoked.set(now.revoked);
        self.ledger_up.set(now.ledger_up);
        self.stale.set(now.revocations_stale_ms as f64 / 1000.0);
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

/// A label value that cannot break the exposition: the encoder does not escape, and upstream
/// servers name their own tools. Other characters become `_`; at most 128 bytes.
fn label(v: &str) -> String {
    v.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_-.:/()@".contains(c) {
                c
            } else {
                '_'
            }
        })
        .take(128)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audit_events_become_counters_and_client_chosen_labels_are_capped() {
        let m = Metrics::new();
        m.observe(&Event::new("handshake_ok"));
        m.observe(&Event::new("tool_allowed").tool("whoami"));
        let mut denied = Event::new("tool_denied").tool("admin_only");
        denied.role = Some("viewer".into());
        m.observe(&denied);
        for i in 0..(MAX_TOOL_LABELS + 10) {
            m.observe(&Event::new("tool_allowed").tool(format!("tool{i}")));
        }
        // A name the caller made up is never a label, quotes and newlines least of all.
        m.observe(
            &Event::new("tool_denied")
                .tool("x\"} 1\nmcpzt_fake 1")
                .reason("no such tool"),
        );
        let mut odd = Event::new("tool_allowed").tool("we\"ird\nname");
        odd.role = Some("admin".into());
        m.observe(&odd);
        m.observe(&Event::new("upstream_up").item("upstream:files"));
        m.observe(&Event::new("upstream_up").item("upstream:gone"));
        m.observe(&Event::new("upstream_down").item("upstream:gone"));
        let text = m.render(Snapshot::default());
        assert!(
            text.contains("mcpzt_upstream_up{upstream=\"files\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("mcpzt_upstream_up{upstream=\"gone\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("mcpzt_handshakes_total{result=\"ok\"} 1"),
            "{text}"
        );
        assert!(text.contains(
            "mcpzt_tool_calls_total{tool=\"admin_only\",role=\"viewer\",decision=\"denied\"} 1"
        ));
        assert!(text.contains("tool=\"(other)\""));
        assert!(text.contains("tool=\"(unknown)\""));
        assert!(!text.contains("mcpzt_fake"), "{text}");
        assert!(
            text.lines()
                .all(|l| l.starts_with('#') || l.starts_with("mcpzt_")),
            "{text}"
        );
        // Bounded: the capped tool names plus `(other)` and `(unknown)`, per role and decision.
        let series = text
            .lines()
            .filter(|l| l.starts_with("mcpzt_tool_calls_total"))
            .count();
        assert!(series <= MAX_TOOL_LABELS + 4, "{series}");
        assert!(text.ends_with("# EOF\n"));
    }
}
