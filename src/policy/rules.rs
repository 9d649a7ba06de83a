//! `KIND:GLOB` access rules: the `allow` and `deny` lists of a role.
//!
//! A rule names a kind of MCP item (`tool`, `prompt` or `resource`) and a glob over the item's
//! exposed name (tools, prompts) or its URI (resources). `*` matches any run of characters,
//! including none; every other character matches itself. There is no escaping and no other
//! wildcard: a rule is read the same way by the operator who wrote it and by the server.

use std::fmt;
use std::str::FromStr;

/// The kind of MCP item a rule is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// A tool (tools/list, tools/call).
    Tool,
    /// A prompt (prompts/list, prompts/get).
    Prompt,
    /// A resource, by URI (resources/list, resources/read, subscribe).
    Resource,
}

impl Kind {
    /// The rule prefix: `tool`, `prompt` or `resource`.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Tool => "tool",
            Kind::Prompt => "prompt",
            Kind::Resource => "resource",
        }
    }
}

/// Longest glob accepted (a rule is configuration, not data).
const MAX_GLOB: usize = 1024;

/// One `KIND:GLOB` rule.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Rule {
    /// What it is about.
    pub kind: Kind,
    /// The glob.
    pub glob: String,
}

impl Rule {
    /// Whether the rule covers the item `name` of `kind`.
    pub fn matches(&self, kind: Kind, name: &str) -> bool {
        self.kind == kind && glob_match(&self.glob, name)
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind.as_str(), self.glob)
    }
}

impl FromStr for Rule {
    type Err = String;

    fn from_str(s: &str) -> Result<Rule, String> {
        let Some((kind, glob)) = s.split_once(':') else {
            return Err(format!(
                "rule {s:?} has no kind: write tool:GLOB, prompt:GLOB or resource:GLOB"
            ));
        };
        let kind = match kind {
            "tool" => Kind::Tool,
            "prompt" => Kind::Prompt,
            "resource" => Kind::Resource,
            other => {
                return Err(format!(
                    "rule {s:?}: unknown kind {other:?} (tool, prompt or resource)"
                ))
            }
        };
        if glob.is_empty() || glob.len() > MAX_GLOB {
            return Err(format!(
                "rule {s:?}: the pattern must have 1 to {MAX_GLOB} characters"
            ));
        }
        if glob.chars().any(char::is_control) {
            return Err(format!("rule {s:?}: control characters are not allowed"));
        }
        let name_like = matches!(kind, Kind::Tool | Kind::Prompt);
        if name_like
            && !glob
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-' | '*'))
        {
            return Err(format!(
                "rule {s:?}: {} names are made of A-Z a-z 0-9 _ . - (and * in a pattern)",
                kind.as_str()
            ));
        }
        Ok(Rule {
            kind,
            glob: glob.to_string(),
        })
    }
}

/// Whether `text` matches `pattern`, where `*` matches any run of characters (none included).
/// Linear in practice: the classic two-pointer match with one backtrack point, never recursive.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0usize, 0usize);
    // The last `*` seen and the text position it was tried at.
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        match p.get(pi) {
            Some('*') => {
                star = Some((pi, ti));
                pi += 1;
            }
            Some(c) if *c == t[ti] => {
                pi += 1;
                ti += 1;
            }
            _ => match star {
                // Let the last `*` take one more character and try again from there.
                Some((sp, st)) => {
                    pi = sp + 1;
                    ti = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn star_matches_any_run_and_everything_else_matches_itself() {
        for (p, t) in [
            ("*", ""),
            ("*", "anything"),
            ("docs__search*", "docs__search"),
            ("docs__search*", "docs__search_all"),
            ("*__delete_*", "github__delete_repo"),
            ("a*b*c", "aXXbYYc"),
            ("a*b*c", "abc"),
            ("docs://public/*", "docs://public/a/b.md"),
            ("exact", "exact"),
        ] {
            assert!(glob_match(p, t), "{p} ~ {t}");
        }
        for (p, t) in [
            ("", "x"),
            ("docs__search*", "docs__sear"),
            ("*__delete_*", "github__remove_repo"),
            ("a*b*c", "acb"),
            ("docs://public/*", "docs://private/a"),
            ("exact", "exactly"),
            ("exact", "exac"),
            ("?", "x"),
        ] {
            assert!(!glob_match(p, t), "{p} !~ {t}");
        }
    }

    #[test]
    fn a_hostile_pattern_does_not_explode() {
        let pattern = "*a".repeat(100);
        let text = "a".repeat(5_000) + "b";
        assert!(!glob_match(&pattern, &text));
    }

    #[test]
    fn rules_parse_their_kind_and_refuse_what_they_cannot_mean() {
        let r: Rule = "tool:github__delete_*".parse().expect("tool rule");
        assert_eq!((r.kind, r.glob.as_str()), (Kind::Tool, "github__delete_*"));
        assert_eq!(r.to_string(), "tool:github__delete_*");
        assert!(r.matches(Kind::Tool, "github__delete_repo"));
        assert!(!r.matches(Kind::Prompt, "github__delete_repo"));
        let r: Rule = "resource:docs://public/*".parse().expect("resource rule");
        assert!(r.matches(Kind::Resource, "docs://public/readme"));
        for bad in [
            "whoami",
            "tools:whoami",
            "tool:",
            "tool:who ami",
            "prompt:a/b",
            "resource:\u{1b}[2J",
        ] {
            assert!(bad.parse::<Rule>().is_err(), "{bad}");
        }
    }
}
