//! RBAC policy: roles with inheritance, which roles may call each tool, and per-tool rate limits.
//!
//! Pure logic over plain data, loaded from `HOME/policy.toml`. Deny by default: a tool that is
//! not in the policy, or a role that is not in the policy, is allowed nothing.
//!
//! Two forms grant access and combine: `[tools.NAME] roles = [...]` (the tool's view) and a
//! role's `allow = ["KIND:GLOB", ...]` (the role's view, see [`rules`]). A role's `deny` rules
//! win over both. A role holds its own rules and those of every role it inherits.

pub mod rules;
pub mod trust;

pub use rules::{Kind, Rule};
pub use trust::TrustConfig;

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;
use toml::Spanned;

use crate::pki::role_ext::validate_role;

/// The policy file written by `ca init` when HOME has none.
pub const DEFAULT_POLICY: &str = include_str!("../pki/policy.toml");

/// Matches every role in a tool's `roles` list.
pub const ANY_ROLE: &str = "*";

/// A policy that failed to load; the message names the line where one is known.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// TOML syntax, unknown keys, wrong types.
    #[error("policy: {0}")]
    Parse(String),
    /// A role name that breaks the naming rule, an unknown role, or a cycle.
    #[error("policy line {line}: {message}")]
    Invalid {
        /// 1-based line number in the policy file.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// The policy defines no role at all.
    #[error("policy defines no roles")]
    Empty,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    #[serde(default)]
    roles: BTreeMap<Spanned<String>, RawRole>,
    #[serde(default)]
    tools: BTreeMap<Spanned<String>, RawTool>,
    #[serde(default)]
    trust: BTreeMap<Spanned<String>, trust::RawTrust>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRole {
    #[serde(default)]
    inherits: Vec<Spanned<String>>,
    #[serde(default)]
    console: Option<Spanned<String>>,
    #[serde(default)]
    allow: Vec<Spanned<String>>,
    #[serde(default)]
    deny: Vec<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTool {
    roles: Vec<Spanned<String>>,
    #[serde(default)]
    rate_per_minute: Option<u32>,
}

/// What the policy says about one tool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolRule {
    /// Roles (or [`ANY_ROLE`]) allowed to call the tool, inheritance applied at check time.
    pub roles: BTreeSet<String>,
    /// Calls per minute per identity; `None` means unlimited.
    pub rate_per_minute: Option<u32>,
}

/// A validated policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// role → the roles it directly inherits.
    inherits: BTreeMap<String, Vec<String>>,
    /// tool (or glob, for rate limits) → rule.
    tools: BTreeMap<String, ToolRule>,
    /// role → its own `allow` rules.
    allow: BTreeMap<String, Vec<Rule>>,
    /// role → its own `deny` rules.
    deny: BTreeMap<String, Vec<Rule>>,
    /// Foreign CAs and their role rules, by name.
    trusts: Vec<TrustConfig>,
    /// role → its own console access (`console = "read"` or `"admin"`).
    console: BTreeMap<String, ConsoleAccess>,
}

/// What a role may do in the browser console.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ConsoleAccess {
    /// See every page.
    Read,
    /// See every page and act: issue, revoke, cut sessions, revoke grants, apply policy.
    Admin,
}

impl ConsoleAccess {
    /// `read` or `admin`.
    pub fn as_str(self) -> &'static str {
        match self {
            ConsoleAccess::Read => "read",
            ConsoleAccess::Admin => "admin",
        }
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    text.get(..offset)
        .map_or(1, |t| t.matches('\n').count() + 1)
}

impl Policy {
    /// Parses and validates policy text.
    pub fn parse(text: &str) -> Result<Policy, PolicyError> {
        let raw: RawPolicy = toml::from_str(text).map_err(|e| {
            let line = e.span().map(|s| line_of(text, s.start));
            let msg = e.message().trim().to_string();
            match line {
                Some(line) => PolicyError::Invalid { line, message: msg },
                None => PolicyError::Parse(msg),
            }
        })?;
        let invalid = |span: std::ops::Range<usize>, message: String| PolicyError::Invalid {
            line: line_of(text, span.start),
            message,
        };
        if raw.roles.is_empty() {
            return Err(PolicyError::Empty);
        }
        let known: BTreeSet<&str> = raw.roles.keys().map(|k| k.get_ref().as_str()).collect();
        let mut inherits = BTreeMap::new();
        let mut allow = BTreeMap::new();
        let mut deny = BTreeMap::new();
        let mut console = BTreeMap::new();
        for (name, role) in &raw.roles {
            validate_role(name.get_ref()).map_err(|e| invalid(name.span(), e.to_string()))?;
            let parse_rules = |list: &[Spanned<String>]| -> Result<Vec<Rule>, PolicyError> {
                list.iter()
                    .map(|r| {
                        r.get_ref().parse::<Rule>().map_err(|e| {
                            invalid(r.span(), format!("role {:?}: {e}", name.get_ref()))
                        })
                    })
                    .collect()
            };
            allow.insert(name.get_ref().clone(), parse_rules(&role.allow)?);
            deny.insert(name.get_ref().clone(), parse_rules(&role.deny)?);
            let mut parents = Vec::new();
            for parent in &role.inherits {
                if !known.contains(parent.get_ref().as_str()) {
                    return Err(invalid(
                        parent.span(),
                        format!(
                            "role {:?} inherits unknown role {:?}",
                            name.get_ref(),
                            parent.get_ref()
                        ),
                    ));
                }
                parents.push(parent.get_ref().clone());
            }
            inherits.insert(name.get_ref().clone(), parents);
            if let Some(c) = &role.console {
                let access = match c.get_ref().as_str() {
                    "read" => ConsoleAccess::Read,
                    "admin" => ConsoleAccess::Admin,
                    other => {
                        return Err(invalid(
                            c.span(),
                            format!(
                                "role {:?}: console = {other:?}: use \"read\" or \"admin\" (or leave it out: no console)",
                                name.get_ref()
                            ),
                        ))
                    }
                };
                console.insert(name.get_ref().clone(), access);
            }
        }
        let mut tools = BTreeMap::new();
        for (name, tool) in &raw.tools {
            let mut roles = BTreeSet::new();
            for role in &tool.roles {
                let r = role.get_ref();
                if r != ANY_ROLE && !known.contains(r.as_str()) {
                    return Err(invalid(
                        role.span(),
                        format!("tool {:?} names unknown role {r:?}", name.get_ref()),
                    ));
                }
                roles.insert(r.clone());
            }
            if tool.rate_per_minute == Some(0) {
                return Err(invalid(
                    name.span(),
                    format!(
                        "tool {:?}: rate_per_minute must be at least 1 (remove the tool to forbid it)",
                        name.get_ref()
                    ),
                ));
            }
            tools.insert(
                name.get_ref().clone(),
                ToolRule {
                    roles,
                    rate_per_minute: tool.rate_per_minute,
                },
            );
        }
        let mut trusts = Vec::new();
        for (name, raw_trust) in raw.trust {
            let span = name.span();
            let config = trust::validate(name.get_ref(), raw_trust, |r| known.contains(r))
                .map_err(|(at, message)| invalid(at.unwrap_or(span), message))?;
            trusts.push(config);
        }
        let policy = Policy {
            inherits,
            tools,
            allow,
            deny,
            trusts,
            console,
        };
        for name in raw.roles.keys() {
            if policy.has_cycle_from(name.get_ref()) {
                return Err(invalid(
                    name.span(),
                    format!("role {:?} inherits itself (cycle)", name.get_ref()),
                ));
            }
        }
        Ok(policy)
    }

    /// The foreign trusts (`[trust.NAME]`), in name order.
    pub fn trusts(&self) -> &[TrustConfig] {
        &self.trusts
    }

    fn has_cycle_from(&self, start: &str) -> bool {
        let mut stack: Vec<&str> = self
            .inherits
            .get(start)
            .map(|p| p.iter().map(String::as_str).collect())
            .unwrap_or_default();
        let mut seen = BTreeSet::new();
        while let Some(r) = stack.pop() {
            if r == start {
                return true;
            }
            if seen.insert(r) {
                if let Some(p) = self.inherits.get(r) {
                    stack.extend(p.iter().map(String::as_str));
                }
            }
        }
        false
    }

    /// The console access of `role`: the highest of its own and of every role it inherits;
    /// `None` (no console) unless the policy grants it.
    pub fn console_access(&self, role: &str) -> Option<ConsoleAccess> {
        self.effective_roles(role)
            .iter()
            .filter_map(|r| self.console.get(r).copied())
            .max()
    }

    /// All role names, sorted.
    pub fn roles(&self) -> impl Iterator<Item = &str> {
        self.inherits.keys().map(String::as_str)
    }

    /// Whether `role` is defined.
    pub fn has_role(&self, role: &str) -> bool {
        self.inherits.contains_key(role)
    }

    /// The roles `role` directly inherits.
    pub fn direct_parents(&self, role: &str) -> &[String] {
        self.inherits.get(role).map_or(&[], Vec::as_slice)
    }

    /// `role` and every role it inherits, transitively. Empty for an unknown role.
    pub fn effective_roles(&self, role: &str) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        if !self.has_role(role) {
            return out;
        }
        let mut stack = vec![role.to_string()];
        while let Some(r) = stack.pop() {
            if out.insert(r.clone()) {
                stack.extend(self.direct_parents(&r).iter().cloned());
            }
        }
        out
    }

    /// The `[tools.NAME]` entry for `tool`: the one named exactly, else the first (in name
    /// order) whose NAME is a glob matching it.
    pub fn tool(&self, tool: &str) -> Option<&ToolRule> {
        self.tools.get(tool).or_else(|| {
            self.tools
                .iter()
                .find(|(name, _)| name.contains('*') && rules::glob_match(name, tool))
                .map(|(_, rule)| rule)
        })
    }

    /// Every tool the policy names.
    pub fn tools(&self) -> impl Iterator<Item = (&str, &ToolRule)> {
        self.tools.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Whether `role` may see and use the item `name` of `kind`: a `deny` rule of the role (or
    /// of a role it inherits) refuses it; otherwise an `allow` rule, or for tools the
    /// `[tools.NAME] roles` list, grants it; nothing matching means denied. Unknown roles are
    /// denied everything.
    pub fn permits(&self, role: &str, kind: Kind, name: &str) -> bool {
        let roles = self.effective_roles(role);
        if roles.is_empty() {
            return false;
        }
        let any = |rules: &BTreeMap<String, Vec<Rule>>| {
            roles.iter().any(|r| {
                rules
                    .get(r)
                    .is_some_and(|list| list.iter().any(|rule| rule.matches(kind, name)))
            })
        };
        if any(&self.deny) {
            return false;
        }
        let by_table = kind == Kind::Tool
            && self.tool(name).is_some_and(|rule| {
                rule.roles.contains(ANY_ROLE) || roles.iter().any(|r| rule.roles.contains(r))
            });
        by_table || any(&self.allow)
    }

    /// Why `role` may or may not use an item: (allowed, the rule that decided), for the
    /// console's access view. Same order as [`Policy::permits`]: a deny rule wins, then the
    /// tools table, then an allow rule; nothing matching is denied.
    pub fn decide(&self, role: &str, kind: Kind, name: &str) -> (bool, String) {
        let roles = self.effective_roles(role);
        let find = |rules: &BTreeMap<String, Vec<Rule>>| {
            roles.iter().find_map(|r| {
                rules
                    .get(r)
                    .and_then(|list| list.iter().find(|rule| rule.matches(kind, name)))
                    .map(|rule| format!("[roles.{r}] {rule}"))
            })
        };
        if let Some(d) = find(&self.deny) {
            return (false, format!("deny {d}"));
        }
        if kind == Kind::Tool {
            if let Some(rule) = self.tool(name) {
                if rule.roles.contains(ANY_ROLE) || roles.iter().any(|r| rule.roles.contains(r)) {
                    return (true, format!("[tools.{name}] roles"));
                }
            }
        }
        match find(&self.allow) {
            Some(a) => (true, format!("allow {a}")),
            None => (false, "no rule grants it".into()),
        }
    }

    /// Whether anything exposed under `prefix` could be granted to `role`: a tool or prompt
    /// rule (or tool table) whose glob can match a name starting with `prefix`, or any
    /// resource rule (URIs carry no prefix). Lets the gateway avoid starting a per-identity
    /// child for a certificate whose role could use nothing behind it.
    pub fn may_use_under(&self, role: &str, prefix: &str) -> bool {
        let roles = self.effective_roles(role);
        let compatible = |glob: &str| {
            let literal = glob.split('*').next().unwrap_or("");
            literal.starts_with(prefix) || prefix.starts_with(literal)
        };
        let by_rules = roles.iter().any(|r| {
            self.allow.get(r).is_some_and(|rules| {
                rules.iter().any(|rule| match rule.kind {
                    Kind::Resource => true,
                    Kind::Tool | Kind::Prompt => compatible(&rule.glob),
                })
            })
        });
        let by_table = self.tools.iter().any(|(name, rule)| {
            compatible(name)
                && (rule.roles.contains(ANY_ROLE) || roles.iter().any(|r| rule.roles.contains(r)))
        });
        by_rules || by_table
    }

    /// The roles a holder of `role` may hand an OAuth client instead of its own: `role` first,
    /// then each role it inherits whose rights are a subset of its own. Inherited roles lose
    /// the deny rules of the roles below them, so only those with exactly the same deny rules
    /// qualify (their allow rules are a subset by inheritance).
    pub fn narrower_roles(&self, role: &str) -> Vec<String> {
        if !self.has_role(role) {
            return Vec::new();
        }
        let denies = self.effective_rules(role).1;
        let mut out = vec![role.to_string()];
        for r in self.effective_roles(role) {
            if r != role && self.effective_rules(&r).1 == denies {
                out.push(r);
            }
        }
        out
    }

    /// Whether `role` may call `tool`. Unknown roles and unknown tools are denied.
    pub fn allows(&self, role: &str, tool: &str) -> bool {
        self.permits(role, Kind::Tool, tool)
    }

    /// The tools of `candidates` that `role` may call, in the given order.
    pub fn allowed_of<'a>(&self, role: &str, candidates: &[&'a str]) -> Vec<&'a str> {
        candidates
            .iter()
            .copied()
            .filter(|t| self.allows(role, t))
            .collect()
    }

    /// The tools named in `[tools.NAME]` tables (globs excluded) that `role` may call, sorted.
    pub fn allowed_tools(&self, role: &str) -> Vec<&str> {
        self.tools
            .keys()
            .map(String::as_str)
            .filter(|t| !t.contains('*') && self.allows(role, t))
            .collect()
    }

    /// The `allow` and `deny` rules in force for `role`: its own and every inherited role's,
    /// as written (`KIND:GLOB`), sorted and without repeats.
    pub fn effective_rules(&self, role: &str) -> (Vec<String>, Vec<String>) {
        let roles = self.effective_roles(role);
        let collect = |rules: &BTreeMap<String, Vec<Rule>>| {
            let set: BTreeSet<String> = roles
                .iter()
                .filter_map(|r| rules.get(r))
                .flatten()
                .map(Rule::to_string)
                .collect();
            set.into_iter().collect::<Vec<_>>()
        };
        (collect(&self.allow), collect(&self.deny))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn narrowing_never_sheds_a_deny_rule() {
        let p = Policy::parse(
            "[roles.engineer]\nallow = [\"tool:*\"]\n\
             [roles.contractor]\ninherits = [\"engineer\"]\ndeny = [\"tool:prod__*\"]\n\
             [roles.lead]\ninherits = [\"engineer\"]\n",
        )
        .expect("policy");
        assert_eq!(p.narrower_roles("contractor"), ["contractor"]);
        assert_eq!(p.narrower_roles("lead"), ["lead", "engineer"]);
        assert!(p.narrower_roles("nobody").is_empty());
        let d = default_policy();
        assert_eq!(d.narrower_roles("admin"), ["admin", "editor", "viewer"]);
    }

    fn default_policy() -> Policy {
        Policy::parse(DEFAULT_POLICY).expect("default policy parses")
    }

    #[test]
    fn default_hierarchy_is_viewer_editor_admin() {
        let p = default_policy();
        assert_eq!(p.roles().collect::<Vec<_>>(), ["admin", "editor", "viewer"]);
        let names = |r: &str| p.effective_roles(r).into_iter().collect::<Vec<_>>();
        assert_eq!(names("viewer"), ["viewer"]);
        assert_eq!(names("editor"), ["editor", "viewer"]);
        assert_eq!(names("admin"), ["admin", "editor", "viewer"]);
        assert!(p.effective_roles("root").is_empty());
    }

    #[test]
    fn default_tool_permissions_follow_the_hierarchy() {
        let p = default_policy();
        assert_eq!(
            p.allowed_tools("viewer"),
            ["list_keys", "read_data", "whoami"]
        );
        assert_eq!(
            p.allowed_tools("editor"),
            ["list_keys", "read_data", "whoami", "write_data"]
        );
        assert_eq!(
            p.allowed_tools("admin"),
            [
                "delete_data",
                "list_certs",
                "list_keys",
                "read_data",
                "revoke_cert",
                "whoami",
                "write_data"
            ]
        );
        assert!(p.allowed_tools("nosuchrole").is_empty());
        assert!(!p.allows("admin", "nosuchtool"));
    }

    #[test]
    fn any_role_matches_custom_roles_too() {
        let p = Policy::parse(
            "[roles.auditor]\n[roles.viewer]\n[tools.whoami]\nroles = [\"*\"]\n[tools.read_data]\nroles = [\"viewer\"]\n",
        )
        .expect("parse");
        assert!(p.allows("auditor", "whoami"));
        assert!(!p.allows("auditor", "read_data"));
        assert!(!p.allows("ghost", "whoami"));
    }

    #[test]
    fn unknown_inherited_role_names_its_line() {
        let err = Policy::parse("[roles.viewer]\n[roles.editor]\ninherits = [\"vewer\"]\n")
            .expect_err("must fail");
        let msg = err.to_string();
        assert!(msg.contains("line 3"), "{msg}");
        assert!(msg.contains("vewer"), "{msg}");
    }

    #[test]
    fn cycles_are_refused() {
        let err = Policy::parse(
            "[roles.a]\ninherits = [\"b\"]\n[roles.b]\ninherits = [\"c\"]\n[roles.c]\ninherits = [\"a\"]\n",
        )
        .expect_err("cycle");
        assert!(err.to_string().contains("cycle"), "{err}");
        let err = Policy::parse("[roles.a]\ninherits = [\"a\"]\n").expect_err("self");
        assert!(err.to_string().contains("cycle"), "{err}");
    }

    #[test]
    fn unknown_keys_and_bad_names_are_refused_with_a_line() {
        let err = Policy::parse("[roles.viewer]\ninherit = []\n").expect_err("typo");
        assert!(err.to_string().contains("line 2"), "{err}");
        let err = Policy::parse("[roles.Viewer]\n").expect_err("case");
        assert!(err.to_string().contains("line 1"), "{err}");
        let err = Policy::parse("[roles.viewer]\n[tools.x]\nroles = [\"admin\"]\n")
            .expect_err("unknown role in tool");
        assert!(err.to_string().contains("line 3"), "{err}");
        assert!(matches!(Policy::parse(""), Err(PolicyError::Empty)));
        assert!(
            Policy::parse("[roles.v]\n[tools.t]\nroles=[\"v\"]\nrate_per_minute = 0\n").is_err()
        );
    }

    const RULES: &str = r#"
[roles.viewer]
allow = ["tool:read_*", "tool:whoami", "resource:docs://public/*", "prompt:*"]
[roles.editor]
inherits = ["viewer"]
allow = ["tool:write_data"]
deny = ["tool:read_secret*"]
[roles.admin]
inherits = ["editor"]
allow = ["tool:*", "resource:*"]
deny = ["tool:github__delete_*"]
[tools.delete_data]
roles = ["viewer"]
[tools."github__*"]
roles = ["admin"]
rate_per_minute = 7
"#;

    #[test]
    fn allow_and_deny_rules_combine_with_the_tool_tables_and_deny_wins() {
        let p = Policy::parse(RULES).expect("parse");
        assert!(p.allows("viewer", "read_data"));
        assert!(p.allows("viewer", "read_secret_keys"));
        assert!(!p.allows("viewer", "write_data"));
        // The table grants, the rules do not deny: allowed.
        assert!(p.allows("viewer", "delete_data"));
        // The editor inherits read_* but its own deny wins.
        assert!(p.allows("editor", "read_data"));
        assert!(!p.allows("editor", "read_secret_keys"));
        assert!(p.allows("editor", "write_data"));
        // Deny is inherited too, and wins over the admin's tool:* and the table.
        assert!(!p.allows("admin", "read_secret_keys"));
        assert!(!p.allows("admin", "github__delete_repo"));
        assert!(p.allows("admin", "github__list_repos"));
        assert!(p.allows("admin", "anything_else"));
        // Kinds are kept apart.
        assert!(p.permits("viewer", Kind::Resource, "docs://public/readme"));
        assert!(!p.permits("viewer", Kind::Resource, "docs://private/plan"));
        assert!(p.permits("viewer", Kind::Prompt, "summarize"));
        assert!(!p.permits("viewer", Kind::Tool, "summarize"));
        assert!(!p.permits("ghost", Kind::Prompt, "summarize"));
        // Rate limits may be set for a glob of tools.
        assert_eq!(
            p.tool("github__list_repos").and_then(|r| r.rate_per_minute),
            Some(7)
        );
        assert_eq!(p.tool("delete_data").and_then(|r| r.rate_per_minute), None);
        let (allow, deny) = p.effective_rules("editor");
        assert_eq!(
            allow,
            [
                "prompt:*",
                "resource:docs://public/*",
                "tool:read_*",
                "tool:whoami",
                "tool:write_data"
            ]
        );
        assert_eq!(deny, ["tool:read_secret*"]);
    }

    #[test]
    fn a_bad_rule_names_its_line() {
        let err =
            Policy::parse("[roles.viewer]\nallow = [\n  \"tool:ok\",\n  \"tools:nope\",\n]\n")
                .expect_err("bad kind");
        let msg = err.to_string();
        assert!(msg.contains("line 4"), "{msg}");
        assert!(msg.contains("unknown kind"), "{msg}");
    }

    #[test]
    fn default_rate_limits_match_the_documented_values() {
        let p = default_policy();
        let rate = |t: &str| p.tool(t).and_then(|r| r.rate_per_minute);
        assert_eq!(rate("read_data"), Some(100));
        assert_eq!(rate("write_data"), Some(50));
        assert_eq!(rate("delete_data"), Some(10));
        assert_eq!(rate("revoke_cert"), Some(20));
    }
}
