//! The gate every MCP request passes: the live policy, the per-tool rate limits and the audit
//! log. The handler depends on this and nothing else of the server.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rmcp::ErrorData;

use super::hub::ListKind;
use super::ratelimit::RateLimiter;
use crate::audit::{Audit, Event};
use crate::identity::Identity;
use crate::policy::Policy;
use crate::tls::verifier::{current_policy, SharedPolicy};

/// Policy, limits, audit.
pub struct Gate {
    policy: SharedPolicy,
    limiter: RateLimiter,
    /// The audit log.
    pub audit: Arc<Audit>,
}

/// How a forwarded or built-in request ended, for the audit line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Answered.
    Ok,
    /// Answered with a tool error (`isError: true`).
    ToolError,
    /// Answered with a JSON-RPC error.
    Error,
    /// No answer within the timeout.
    Timeout,
    /// The provider is down or refused the connection.
    Unavailable,
    /// Cancelled by the client or by revocation.
    Cancelled,
}

impl Outcome {
    /// The word in the audit line.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::ToolError => "tool_error",
            Outcome::Error => "error",
            Outcome::Timeout => "timeout",
            Outcome::Unavailable => "unavailable",
            Outcome::Cancelled => "cancelled",
        }
    }
}

impl Gate {
    /// A gate over the shared policy and the audit log.
    pub fn new(policy: SharedPolicy, audit: Arc<Audit>) -> Self {
        Gate {
            policy,
            limiter: RateLimiter::default(),
            audit,
        }
    }

    /// The policy now (reloads swap it).
    pub fn policy(&self) -> Arc<Policy> {
        current_policy(&self.policy)
    }

    /// Checks `tool`'s rate limit for `who`; refusals are audited and answered with a
    /// retry hint.
    pub fn rate(&self, who: &Identity, tool: &str, peer: &str) -> Result<(), ErrorData> {
        let policy = self.policy();
        let Some(limit) = policy.tool(tool).and_then(|r| r.rate_per_minute) else {
            return Ok(());
        };
        let Err(wait) = self.limiter.check(&who.serial, tool, limit, Instant::now()) else {
            return Ok(());
        };
        let secs = wait.as_secs() + 1;
        self.audit.log(
            Event::new("rate_limited")
                .peer(peer)
                .who(who)
                .tool(tool)
                .reason(format!("{limit}/min exceeded, retry in {secs}s")),
        );
        Err(ErrorData::new(
            rmcp::model::ErrorCode(-32029),
            format!(
                "rate limit of {limit} calls per minute for {tool} exceeded: retry after {secs} s"
            ),
            Some(serde_json::json!({"retry_after_secs": secs})),
        ))
    }

    /// Audits a refused request: `item` is `KIND:NAME`; `reason` says whether it does not
    /// exist or the role may not use it (the client gets the same answer for both).
    pub fn denied(&self, who: &Identity, peer: &str, kind: &str, name: &str, reason: String) {
        let mut ev = Event::new(&format!("{kind}_denied"))
            .peer(peer)
            .who(who)
            .reason(reason);
        if kind == "tool" {
            ev = ev.tool(name);
        } else {
            ev = ev.item(format!("{kind}:{name}"));
        }
        self.audit.log(ev);
    }

    /// Audits an allowed tool call, before it runs.
    pub fn allowed(&self, who: &Identity, peer: &str, tool: &str) {
        self.audit
            .log(Event::new("tool_allowed").peer(peer).who(who).tool(tool));
    }

    /// Audits a request forwarded to an upstream: which one, the exposed name, how it ended
    /// and how long it took (never the arguments).
    #[allow(clippy::too_many_arguments)]
    pub fn forwarded(
        &self,
        who: &Identity,
        peer: &str,
        upstream: &str,
        item: &str,
        outcome: Outcome,
        latency: Duration,
        detail: Option<String>,
    ) {
        let ms = latency.as_millis();
        let mut line = format!("{upstream}: {} in {ms} ms", outcome.as_str());
        if let Some(d) = detail {
            line.push_str(": ");
            line.push_str(&d);
        }
        let mut ev = Event::new("upstream_call")
            .peer(peer)
            .who(who)
            .item(item)
            .upstream(upstream, outcome.as_str(), latency)
            .reason(line);
        if let Some(tool) = item.strip_prefix("tool:") {
            ev = ev.tool(tool);
        }
        self.audit.log(ev);
    }

    /// Audits a list_changed notification sent to a session.
    pub fn audit_list_changed(&self, who: &Identity, kind: ListKind) {
        let what = match kind {
            ListKind::Tools => "tools",
            ListKind::Prompts => "prompts",
            ListKind::Resources => "resources",
        };
        self.audit.log(
            Event::new("list_changed_sent")
                .who(who)
                .reason(format!("{what} view changed")),
        );
    }

    /// Audits a refused `requestState` (tampered, another certificate's, revoked, expired).
    pub fn request_state_refused(
        &self,
        who: &Identity,
        peer: &str,
        method: &str,
        name: &str,
        why: &super::state::StateError,
    ) {
        self.audit.log(
            Event::new("request_state_refused")
                .peer(peer)
                .who(who)
                .item(format!("{method} {name}"))
                .reason(why.to_string()),
        );
    }

    /// Audits an opened `subscriptions/listen` stream and what it listens to.
    pub fn listening(&self, who: &Identity, peer: &str, filter: &rmcp::model::SubscriptionFilter) {
        let mut what = Vec::new();
        if filter.tools_list_changed == Some(true) {
            what.push("tools".to_string());
        }
        if filter.prompts_list_changed == Some(true) {
            what.push("prompts".to_string());
        }
        if filter.resources_list_changed == Some(true) {
            what.push("resources".to_string());
        }
        if let Some(uris) = &filter.resource_subscriptions {
            what.push(format!("{} resource(s)", uris.len()));
        }
        self.audit.log(
            Event::new("subscription_opened")
                .peer(peer)
                .who(who)
                .reason(format!("listening to: {}", what.join(", "))),
        );
    }

    /// Audits the questions an upstream's `input_required` put to an older client as classic
    /// requests on its session.
    pub fn asked_classic(
        &self,
        who: &Identity,
        peer: &str,
        upstream: &str,
        item: &str,
        methods: &[String],
    ) {
        self.audit.log(
            Event::new("upstream_request_relayed")
                .peer(peer)
                .who(who)
                .item(item.to_string())
                .reason(format!(
                    "{upstream}: input_required ({}) asked of the client on its session",
                    methods.join(", ")
                )),
        );
    }
}
