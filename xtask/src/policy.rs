//! `dependency-policy.toml`: the reviewed exceptions and the license allow-list.
//!
//! Every exception carries a reason; an entry without one, an unknown key (a misspelt
//! `reason` would otherwise pass silently) or an allow-list entry that is not an SPDX
//! license identifier is refused before anything is checked.

use serde::Deserialize;
use std::path::Path;

/// The shortest reason accepted: long enough that "n/a" or "ok" is refused.
pub const MIN_REASON_CHARS: usize = 10;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    #[serde(default)]
    pub advisories: Advisories,
    #[serde(default)]
    pub licenses: Licenses,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Advisories {
    #[serde(default)]
    pub ignore: Vec<IgnoredAdvisory>,
}

/// An advisory that affects the tree but is accepted, and why.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IgnoredAdvisory {
    /// `RUSTSEC-YYYY-NNNN`, or one of the advisory's aliases (CVE-…, GHSA-…).
    pub id: String,
    pub reason: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Licenses {
    /// SPDX license identifiers (`MIT`), or one with an exception (`GPL-2.0-only WITH Classpath-exception-2.0`).
    #[serde(default)]
    pub allow: Vec<String>,
    #[serde(default)]
    pub exception: Vec<LicenseException>,
}

/// A package accepted whatever its `license` field says (or whether it has one), and why.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LicenseException {
    pub name: String,
    /// An exact version; absent: every version of the package.
    pub version: Option<String>,
    /// The license as a person read it in the package (its license file, for one without a
    /// `license` field).
    pub license: Option<String>,
    pub reason: Option<String>,
}

impl Policy {
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        let policy: Policy = toml::from_str(text).map_err(|e| e.to_string())?;
        policy.validate()?;
        Ok(policy)
    }

    fn validate(&self) -> Result<(), String> {
        let mut problems = Vec::new();
        let mut seen = std::collections::BTreeSet::new();
        for entry in &self.advisories.ignore {
            let id = entry.id.trim();
            if id.is_empty() || id.contains(char::is_whitespace) {
                problems.push(format!(
                    "[[advisories.ignore]] id {:?} is not an advisory ID",
                    entry.id
                ));
            }
            if !seen.insert(id.to_string()) {
                problems.push(format!("[[advisories.ignore]] {id} is listed twice"));
            }
            if let Err(e) = check_reason(entry.reason.as_deref()) {
                problems.push(format!("[[advisories.ignore]] {id}: {e}"));
            }
        }
        for name in &self.licenses.allow {
            if let Err(e) = spdx::Licensee::parse(name) {
                problems.push(format!(
                    "[licenses] allow: {name:?} is not an SPDX license identifier ({})",
                    e.reason
                ));
            }
        }
        for entry in &self.licenses.exception {
            let what = match &entry.version {
                Some(v) => format!("{} {v}", entry.name),
                None => entry.name.clone(),
            };
            if entry.name.trim().is_empty() {
                problems.push("[[licenses.exception]] without a name".to_string());
            }
            if let Some(v) = &entry.version {
                if rustsec::Version::parse(v).is_err() {
                    problems.push(format!(
                        "[[licenses.exception]] {what}: version {v:?} is not an exact version"
                    ));
                }
            }
            if let Err(e) = check_reason(entry.reason.as_deref()) {
                problems.push(format!("[[licenses.exception]] {what}: {e}"));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(format!("refused:\n  {}", problems.join("\n  ")))
        }
    }
}

fn check_reason(reason: Option<&str>) -> Result<(), String> {
    match reason.map(str::trim) {
        None => Err("a reason is required (reason = \"why it is acceptable\")".to_string()),
        Some(r) if r.chars().count() < MIN_REASON_CHARS => Err(format!(
            "reason {r:?} is too short to be reviewed (at least {MIN_REASON_CHARS} characters)"
        )),
        Some(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_policy_is_valid() {
        let p = Policy::parse("").unwrap();
        assert!(p.advisories.ignore.is_empty());
        assert!(p.licenses.allow.is_empty());
    }

    #[test]
    fn an_ignore_entry_needs_a_reason() {
        let e = Policy::parse("[[advisories.ignore]]\nid = \"RUSTSEC-2099-0001\"\n").unwrap_err();
        assert!(e.contains("RUSTSEC-2099-0001: a reason is required"), "{e}");
    }

    #[test]
    fn a_blank_or_token_reason_is_refused() {
        for reason in ["", "   ", "ok", "n/a"] {
            let text =
                format!("[[advisories.ignore]]\nid = \"RUSTSEC-2099-0001\"\nreason = {reason:?}\n");
            let e = Policy::parse(&text).unwrap_err();
            assert!(e.contains("too short"), "{reason:?}: {e}");
        }
    }

    #[test]
    fn a_misspelt_key_is_refused() {
        let e = Policy::parse(
            "[[advisories.ignore]]\nid = \"RUSTSEC-2099-0001\"\nreasn = \"the affected function is never called\"\n",
        )
        .unwrap_err();
        assert!(e.contains("unknown field `reasn`"), "{e}");
    }

    #[test]
    fn a_duplicate_ignore_is_refused() {
        let one = "[[advisories.ignore]]\nid = \"RUSTSEC-2099-0001\"\nreason = \"the affected function is never called\"\n";
        let e = Policy::parse(&format!("{one}{one}")).unwrap_err();
        assert!(e.contains("listed twice"), "{e}");
    }

    #[test]
    fn a_license_exception_needs_a_reason_and_an_exact_version() {
        let e = Policy::parse("[[licenses.exception]]\nname = \"foo\"\nversion = \"^1\"\n")
            .unwrap_err();
        assert!(
            e.contains("foo ^1: version \"^1\" is not an exact version"),
            "{e}"
        );
        assert!(e.contains("foo ^1: a reason is required"), "{e}");
    }

    #[test]
    fn allow_entries_must_be_spdx_identifiers() {
        let e = Policy::parse("[licenses]\nallow = [\"MIT\", \"Apache 2\", \"MIT OR ISC\"]\n")
            .unwrap_err();
        assert!(
            e.contains("\"Apache 2\" is not an SPDX license identifier"),
            "{e}"
        );
        assert!(
            e.contains("\"MIT OR ISC\" is not an SPDX license identifier"),
            "{e}"
        );
        assert!(!e.contains("\"MIT\" is not"), "{e}");
        Policy::parse("[licenses]\nallow = [\"MIT\", \"GPL-2.0-only WITH Classpath-exception-2.0\", \"LicenseRef-Foo\"]\n")
            .unwrap();
    }

    #[test]
    fn the_repository_policy_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../dependency-policy.toml");
        Policy::load(&path).unwrap();
    }
}
