//! Existing MCP servers ("upstreams") that mcp-zt fronts as a gateway: their configuration
//! (`HOME/upstreams.toml`), the connections to them, and the provider that puts them behind
//! the gate.

pub mod bearer;
pub mod child;
pub mod config;
pub mod conn;
pub mod direct;
mod http_client;
pub mod oauth;
pub mod pipe;
pub mod provider;
pub mod relay;

use std::collections::BTreeMap;

use crate::mcp::provider::Items;

use crate::mcp::provider::{valid_exposed, MAX_EXPOSED};

/// Exposed names longer than this work but are warned about (some clients cut them).
pub const WARN_EXPOSED: usize = 64;

/// What is wrong with the names a set of providers would expose: clashes (naming both
/// providers) are errors; names that are invalid or long are warnings.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct NameReport {
    /// Two providers exposing one name.
    pub clashes: Vec<String>,
    /// Names left out or worth a look.
    pub warnings: Vec<String>,
}

/// Checks the exposed names of `(provider, prefix, items)` in order.
pub fn check_names(offers: &[(String, String, &Items)]) -> NameReport {
    let mut report = NameReport::default();
    let mut tools: BTreeMap<String, &str> = BTreeMap::new();
    let mut prompts: BTreeMap<String, &str> = BTreeMap::new();
    let mut uris: BTreeMap<String, &str> = BTreeMap::new();
    for (name, prefix, items) in offers {
        let names = items
            .tools
            .iter()
            .map(|t| ("tool", t.name.to_string()))
            .chain(items.prompts.iter().map(|p| ("prompt", p.name.clone())));
        for (kind, inner) in names {
            let exposed = format!("{prefix}{inner}");
            let seen = if kind == "tool" {
                &mut tools
            } else {
                &mut prompts
            };
            if let Some(first) = seen.get(&exposed) {
                report.clashes.push(format!(
                    "{kind} {exposed:?} is offered by both {first} and {name}: give one of them a prefix"
                ));
                continue;
            }
            seen.insert(exposed.clone(), name);
            if !valid_exposed(&exposed) {
                report.warnings.push(format!(
                    "{kind} {exposed:?} of {name} is left out: exposed names keep to [A-Za-z0-9_.-], 1 to {MAX_EXPOSED} characters"
                ));
            } else if exposed.len() > WARN_EXPOSED {
                report.warnings.push(format!(
                    "{kind} {exposed:?} of {name} is over {WARN_EXPOSED} characters: some clients cut such names"
                ));
            }
        }
        for r in &items.resources {
            if let Some(first) = uris.get(&r.uri) {
                report.warnings.push(format!(
                    "resource {:?} is listed by both {first} and {name}: {first} serves it",
                    r.uri
                ));
            } else {
                uris.insert(r.uri.clone(), name);
            }
        }
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;
    use rmcp::model::{JsonObject, Tool};
    use std::sync::Arc;

    fn items(tools: &[&str]) -> Items {
        Items {
            tools: tools
                .iter()
                .map(|n| Tool::new(n.to_string(), "", Arc::new(JsonObject::new())))
                .collect(),
            ..Items::default()
        }
    }

    #[test]
    fn prefixes_keep_equal_names_apart_and_empty_prefixes_clash() {
        let (a, b) = (items(&["search", "x"]), items(&["search"]));
        let ok = check_names(&[
            ("a".into(), "a__".into(), &a),
            ("b".into(), "b__".into(), &b),
        ]);
        assert!(ok.clashes.is_empty());
        let bad = check_names(&[("a".into(), "".into(), &a), ("b".into(), "".into(), &b)]);
        assert_eq!(bad.clashes.len(), 1);
        assert!(bad.clashes[0].contains("\"search\"") && bad.clashes[0].contains("both a and b"));
    }

    #[test]
    fn exposed_names_are_checked() {
        assert!(valid_exposed("docs__search.v2-x"));
        assert!(!valid_exposed("has space"));
        assert!(!valid_exposed(""));
        assert!(!valid_exposed(&"x".repeat(129)));
        let long = items(&[&"y".repeat(70), "bad name"]);
        let r = check_names(&[("a".into(), "".into(), &long)]);
        assert_eq!(r.warnings.len(), 2);
    }
}
