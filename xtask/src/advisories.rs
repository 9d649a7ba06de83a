//! Cargo.lock files against the RustSec advisory database, read from plain files.
//!
//! What fails: a vulnerability (an advisory with no `informational` kind) and an `unsound`
//! advisory, for any package version in a lockfile, on any platform (an advisory limited to
//! some OS or architecture counts too: mcp-zt builds for Linux and Windows). What warns:
//! `unmaintained` and `notice` advisories (and any informational kind added later); they
//! describe no defect in code we run, and leaving a working crate is a planned change, not a
//! CI failure, so they are printed on every run until replaced or listed. Withdrawn advisories
//! are skipped. An entry in `[[advisories.ignore]]` silences a match, with its reason printed.
//! Yanked versions are not checked: that needs the crates.io index, which is not offline.

use crate::policy::{Advisories, IgnoredAdvisory};
use rustsec::advisory::Informational;
use rustsec::database::Query;
use rustsec::{Collection, Database, Lockfile};
use std::fmt::Write as _;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Error,
    Warning,
    Ignored,
}

#[derive(Debug)]
pub struct Finding {
    pub level: Level,
    pub id: String,
    pub kind: String,
    pub package: String,
    pub version: String,
    pub lockfile: String,
    pub title: String,
    pub severity: Option<String>,
    pub patched: Vec<String>,
    pub ignore_reason: Option<String>,
}

#[derive(Debug, Default)]
pub struct Report {
    pub findings: Vec<Finding>,
    pub packages: usize,
    pub lockfiles: usize,
    /// Ignore entries that matched nothing: stale, or a typo.
    pub unused_ignores: Vec<String>,
}

impl Report {
    pub fn count(&self, level: Level) -> usize {
        self.findings.iter().filter(|f| f.level == level).count()
    }

    pub fn failed(&self) -> bool {
        self.count(Level::Error) > 0
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        for f in &self.findings {
            let label = match f.level {
                Level::Error => "error",
                Level::Warning => "warning",
                Level::Ignored => "ignored",
            };
            let severity = f
                .severity
                .as_deref()
                .map(|s| format!(", severity {s}"))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "{label}: {} {} {} ({}): {}{severity}: {}",
                f.id, f.package, f.version, f.lockfile, f.kind, f.title
            );
            let patched = if f.patched.is_empty() {
                "no patched version".to_string()
            } else {
                format!("patched: {}", f.patched.join("; "))
            };
            let _ = writeln!(
                out,
                "    {patched}; https://rustsec.org/advisories/{}",
                f.id
            );
            if let Some(reason) = &f.ignore_reason {
                let _ = writeln!(out, "    listed in dependency-policy.toml: {reason}");
            }
        }
        for id in &self.unused_ignores {
            let _ = writeln!(
                out,
                "warning: [[advisories.ignore]] {id} matches no advisory for these lockfiles: remove it"
            );
        }
        if self.failed() {
            let _ = writeln!(
                out,
                "  fix: `cargo update -p CRATE --precise VERSION` to a patched version; only if none \
                 fits, an [[advisories.ignore]] entry in dependency-policy.toml with its reason"
            );
        }
        let _ = writeln!(
            out,
            "advisories: {} failing, {} warnings, {} ignored ({} packages in {} lockfiles)",
            self.count(Level::Error),
            self.count(Level::Warning) + self.unused_ignores.len(),
            self.count(Level::Ignored),
            self.packages,
            self.lockfiles,
        );
        out
    }
}

/// Loads the database and refuses one with no advisories (a wrong folder, or an empty copy).
pub fn open_db(path: &std::path::Path) -> Result<Database, String> {
    let db = Database::open(path).map_err(|e| {
        format!(
            "cannot read the advisory database at {}: {e}\n  \
             it must be a copy of rustsec/advisory-db (folders crates/ and rust/)",
            path.display()
        )
    })?;
    if db.iter().next().is_none() {
        return Err(format!(
            "no advisories in {}: not a copy of rustsec/advisory-db?",
            path.display()
        ));
    }
    Ok(db)
}

/// Every package from crates.io in each lockfile, against every advisory that is not withdrawn.
pub fn scan(db: &Database, lockfiles: &[(String, Lockfile)], policy: &Advisories) -> Report {
    let query = Query::new().collection(Collection::Crates).withdrawn(false);
    let mut report = Report {
        lockfiles: lockfiles.len(),
        ..Report::default()
    };
    let mut used = vec![false; policy.ignore.len()];
    for (label, lockfile) in lockfiles {
        report.packages += lockfile.packages.len();
        for vuln in db.query_vulnerabilities(lockfile, &query) {
            let meta = &vuln.advisory;
            let (kind, mut level) = match &meta.informational {
                None => ("vulnerability".to_string(), Level::Error),
                Some(Informational::Unsound) => ("unsound".to_string(), Level::Error),
                Some(other) => (other.as_str().to_string(), Level::Warning),
            };
            let ignore = policy.ignore.iter().position(|entry| matches(entry, meta));
            let ignore_reason = ignore.map(|i| {
                used[i] = true;
                level = Level::Ignored;
                policy.ignore[i].reason.clone().unwrap_or_default()
            });
            report.findings.push(Finding {
                level,
                id: meta.id.to_string(),
                kind,
                package: vuln.package.name.to_string(),
                version: vuln.package.version.to_string(),
                lockfile: label.clone(),
                title: meta.title.clone(),
                severity: meta.cvss.as_ref().map(|c| c.severity().to_string()),
                patched: vuln
                    .versions
                    .patched()
                    .iter()
                    .map(|r| r.to_string())
                    .collect(),
                ignore_reason,
            });
        }
    }
    report.findings.sort_by(|a, b| {
        (a.level, &a.id, &a.package, &a.lockfile).cmp(&(b.level, &b.id, &b.package, &b.lockfile))
    });
    report.unused_ignores = policy
        .ignore
        .iter()
        .zip(used)
        .filter(|(_, used)| !used)
        .map(|(entry, _)| entry.id.trim().to_string())
        .collect();
    report
}

fn matches(entry: &IgnoredAdvisory, meta: &rustsec::advisory::Metadata) -> bool {
    let id = entry.id.trim();
    meta.id.as_str() == id || meta.aliases.iter().any(|alias| alias.as_str() == id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Policy;
    use std::path::{Path, PathBuf};

    fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name)
    }

    fn scan_fixture(policy: &str) -> Report {
        let db = open_db(&fixture("advisory-db")).unwrap();
        let lock = Lockfile::load(fixture("vulnerable.lock")).unwrap();
        let policy = Policy::parse(policy).unwrap();
        scan(
            &db,
            &[("vulnerable.lock".to_string(), lock)],
            &policy.advisories,
        )
    }

    fn ids(report: &Report, level: Level) -> Vec<&str> {
        report
            .findings
            .iter()
            .filter(|f| f.level == level)
            .map(|f| f.id.as_str())
            .collect()
    }

    #[test]
    fn a_vulnerable_lockfile_fails() {
        let report = scan_fixture("");
        assert!(report.failed());
        // zt-fixture-overflow 1.4.0: a vulnerability; zt-fixture-unsound: unsound.
        assert_eq!(
            ids(&report, Level::Error),
            ["RUSTSEC-2099-0001", "RUSTSEC-2099-0002"]
        );
        // zt-fixture-unmaintained: unmaintained, a warning.
        assert_eq!(ids(&report, Level::Warning), ["RUSTSEC-2099-0003"]);
        let text = report.render();
        assert!(
            text.contains("error: RUSTSEC-2099-0001 zt-fixture-overflow 1.4.0 (vulnerable.lock): vulnerability, severity critical: Ring::push_all writes past its buffer"),
            "{text}"
        );
        assert!(text.contains("patched: >=0.9.3, <1.0.0; >=1.4.1"), "{text}");
        assert!(
            text.contains("error: RUSTSEC-2099-0002 zt-fixture-unsound 0.3.2 (vulnerable.lock): unsound: Cell::borrow_twice hands out two mutable references"),
            "{text}"
        );
        assert!(
            text.contains("warning: RUSTSEC-2099-0003 zt-fixture-unmaintained 2.0.0 (vulnerable.lock): unmaintained"),
            "{text}"
        );
        assert!(
            text.contains(
                "advisories: 2 failing, 1 warnings, 0 ignored (7 packages in 1 lockfiles)"
            ),
            "{text}"
        );
    }

    #[test]
    fn patched_unaffected_and_withdrawn_do_not_match() {
        let report = scan_fixture("");
        let packages: Vec<&str> = report.findings.iter().map(|f| f.package.as_str()).collect();
        // zt-fixture-patched 0.5.0 is patched; zt-fixture-clean has no advisory; the withdrawn
        // zt-fixture-withdrawn advisory is skipped; the local package is not from crates.io.
        for clean in [
            "zt-fixture-patched",
            "zt-fixture-clean",
            "zt-fixture-withdrawn",
            "zt-fixture-app",
        ] {
            assert!(!packages.contains(&clean), "{clean}: {packages:?}");
        }
        // Both advisories are in the database: they are skipped, not missing.
        let db = open_db(&fixture("advisory-db")).unwrap();
        for id in ["RUSTSEC-2099-0004", "RUSTSEC-2099-0005"] {
            assert!(db.get(&id.parse().unwrap()).is_some(), "{id}");
        }
    }

    #[test]
    fn an_ignore_entry_with_a_reason_silences_its_advisory_only() {
        let report = scan_fixture(
            "[[advisories.ignore]]\nid = \"RUSTSEC-2099-0001\"\nreason = \"push_all is never called (fixture)\"\n",
        );
        assert_eq!(ids(&report, Level::Error), ["RUSTSEC-2099-0002"]);
        assert_eq!(ids(&report, Level::Ignored), ["RUSTSEC-2099-0001"]);
        assert!(report
            .render()
            .contains("listed in dependency-policy.toml: push_all is never called (fixture)"));
    }

    #[test]
    fn an_alias_can_be_ignored() {
        let report = scan_fixture(
            "[[advisories.ignore]]\nid = \"CVE-2099-0001\"\nreason = \"push_all is never called (fixture)\"\n",
        );
        assert_eq!(ids(&report, Level::Ignored), ["RUSTSEC-2099-0001"]);
    }

    #[test]
    fn a_stale_ignore_entry_is_reported() {
        let report = scan_fixture(
            "[[advisories.ignore]]\nid = \"RUSTSEC-2099-0099\"\nreason = \"zt-fixture-gone is not in the tree any more\"\n",
        );
        assert_eq!(report.unused_ignores, ["RUSTSEC-2099-0099"]);
        assert!(report
            .render()
            .contains("RUSTSEC-2099-0099 matches no advisory"));
    }

    #[test]
    fn ignoring_everything_that_fails_passes() {
        let report = scan_fixture(
            "[[advisories.ignore]]\nid = \"RUSTSEC-2099-0001\"\nreason = \"push_all is never called (fixture)\"\n\
             [[advisories.ignore]]\nid = \"RUSTSEC-2099-0002\"\nreason = \"borrow_twice is never called (fixture)\"\n",
        );
        assert!(!report.failed());
        assert_eq!(report.count(Level::Warning), 1);
    }

    #[test]
    fn an_empty_or_missing_database_is_an_error() {
        let e = open_db(&fixture("no-such-db")).unwrap_err();
        assert!(e.contains("cannot read the advisory database"), "{e}");
        let empty = fixture("empty-advisory-db");
        let e = open_db(&empty).unwrap_err();
        assert!(e.contains("no advisories in"), "{e}");
    }
}
