//! Every package's license (from `cargo metadata`) against the allow-list.
//!
//! The `license` field is read as an SPDX expression (leniently: `MIT/Apache-2.0` is the old
//! spelling of `MIT OR Apache-2.0`): `OR` needs one allowed side, `AND` both. A term
//! `X WITH E` is allowed when `X` is (an SPDX exception only adds permissions) or when the whole
//! `X WITH E` is listed; `X+` is allowed when `X` is. A package without a `license` field (only
//! a `license-file`) or with a license the list does not cover fails unless a
//! `[[licenses.exception]]` names it, with the license a person read and the reason.

use crate::policy::Licenses;
use serde::Deserialize;
use std::fmt::Write as _;

#[derive(Debug, Deserialize)]
pub struct Metadata {
    pub packages: Vec<Package>,
}

#[derive(Debug, Deserialize)]
pub struct Package {
    pub name: String,
    pub version: String,
    pub license: Option<String>,
    pub license_file: Option<String>,
}

#[derive(Debug, Default)]
pub struct Report {
    pub packages: usize,
    /// `name version: what is wrong`
    pub refused: Vec<String>,
    /// `name version (license): reason`
    pub accepted: Vec<String>,
    pub unused_exceptions: Vec<String>,
}

impl Report {
    pub fn failed(&self) -> bool {
        !self.refused.is_empty()
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        for line in &self.refused {
            let _ = writeln!(out, "error: {line}");
        }
        for line in &self.accepted {
            let _ = writeln!(out, "exception: {line}");
        }
        for what in &self.unused_exceptions {
            let _ = writeln!(
                out,
                "warning: [[licenses.exception]] {what} matches no package: remove it"
            );
        }
        if self.failed() {
            let _ = writeln!(
                out,
                "  a license to allow goes in [licenses] allow of dependency-policy.toml; a single \
                 package, or one with only a license file, in a [[licenses.exception]] with its reason"
            );
        }
        let _ = writeln!(
            out,
            "licenses: {} packages, {} not allowed, {} accepted by exception",
            self.packages,
            self.refused.len(),
            self.accepted.len()
        );
        out
    }
}

pub fn parse_metadata(json: &str) -> Result<Metadata, String> {
    serde_json::from_str(json).map_err(|e| format!("cannot read cargo metadata's output: {e}"))
}

pub fn check(metadata: &Metadata, policy: &Licenses) -> Report {
    let mut packages: Vec<&Package> = metadata.packages.iter().collect();
    packages.sort_by(|a, b| (&a.name, &a.version).cmp(&(&b.name, &b.version)));
    let mut used = vec![false; policy.exception.len()];
    let mut report = Report {
        packages: packages.len(),
        ..Report::default()
    };
    for package in packages {
        let what = format!("{} {}", package.name, package.version);
        let exception = policy.exception.iter().position(|e| {
            e.name == package.name && e.version.as_ref().is_none_or(|v| *v == package.version)
        });
        if let Some(i) = exception {
            used[i] = true;
            let entry = &policy.exception[i];
            let license = entry
                .license
                .as_deref()
                .or(package.license.as_deref())
                .unwrap_or("no license field");
            report.accepted.push(format!(
                "{what} ({license}): {}",
                entry.reason.as_deref().unwrap_or_default()
            ));
            continue;
        }
        let Some(license) = &package.license else {
            let file = package.license_file.as_deref().unwrap_or("none either");
            report.refused.push(format!(
                "{what}: no license field (license file: {file}); read it and add a [[licenses.exception]]"
            ));
            continue;
        };
        let expr = match spdx::Expression::parse_mode(license, spdx::ParseMode::LAX) {
            Ok(expr) => expr,
            Err(e) => {
                report.refused.push(format!(
                    "{what}: license {license:?} is not an SPDX expression ({})",
                    e.reason
                ));
                continue;
            }
        };
        if let Err(failures) = expr.evaluate_with_failures(|req| allowed(req, &policy.allow)) {
            let terms: Vec<String> = failures.iter().map(|f| f.req.to_string()).collect();
            report.refused.push(format!(
                "{what}: license {license:?} is not allowed (not allowed: {})",
                terms.join(", ")
            ));
        }
    }
    report.unused_exceptions = policy
        .exception
        .iter()
        .zip(used)
        .filter(|(_, used)| !used)
        .map(|(e, _)| match &e.version {
            Some(v) => format!("{} {v}", e.name),
            None => e.name.clone(),
        })
        .collect();
    report
}

fn allowed(req: &spdx::LicenseReq, allow: &[String]) -> bool {
    let base = match &req.license {
        spdx::LicenseItem::Spdx { id, .. } => id.name.to_string(),
        other => other.to_string(),
    };
    let whole = match &req.addition {
        Some(addition) => format!("{base} WITH {addition}"),
        None => base.clone(),
    };
    allow.iter().any(|a| *a == base || *a == whole)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Policy;

    const ALLOW: &str = "[licenses]\nallow = [\"Apache-2.0\", \"MIT\", \"ISC\", \"GPL-2.0-only WITH Classpath-exception-2.0\"]\n";

    fn package(name: &str, license: Option<&str>, license_file: Option<&str>) -> Package {
        Package {
            name: name.to_string(),
            version: "1.0.0".to_string(),
            license: license.map(str::to_string),
            license_file: license_file.map(str::to_string),
        }
    }

    fn run(packages: Vec<Package>, policy: &str) -> Report {
        let policy = Policy::parse(policy).unwrap();
        check(&Metadata { packages }, &policy.licenses)
    }

    fn refused(license: &str) -> bool {
        run(vec![package("p", Some(license), None)], ALLOW).failed()
    }

    #[test]
    fn or_needs_one_allowed_side() {
        assert!(!refused("MIT OR Apache-2.0"));
        assert!(!refused("GPL-3.0-only OR MIT"));
        assert!(!refused("MIT/Apache-2.0"));
        assert!(refused("GPL-3.0-only OR LGPL-2.1-or-later"));
    }

    #[test]
    fn and_needs_every_side_allowed() {
        assert!(!refused("ISC AND (Apache-2.0 OR ISC) AND MIT"));
        assert!(!refused("(MIT OR Apache-2.0) AND ISC"));
        assert!(refused("MIT AND GPL-3.0-only"));
        assert!(refused("(MIT OR Apache-2.0) AND Unicode-3.0"));
    }

    #[test]
    fn with_an_exception() {
        // An exception only adds permissions: Apache-2.0 allowed means with LLVM's too.
        assert!(!refused("Apache-2.0 WITH LLVM-exception"));
        // A license allowed only together with a named exception.
        assert!(!refused("GPL-2.0-only WITH Classpath-exception-2.0"));
        assert!(refused("GPL-2.0-only"));
        assert!(refused("GPL-2.0-only WITH Autoconf-exception-2.0"));
    }

    #[test]
    fn nonsense_is_refused() {
        assert!(refused("see LICENSE"));
        assert!(refused(""));
    }

    #[test]
    fn offenders_are_listed_with_the_failing_terms() {
        let report = run(
            vec![
                package("fine", Some("MIT"), None),
                package("copyleft", Some("MIT AND GPL-3.0-only"), None),
                package("notice", None, Some("LICENSE.txt")),
            ],
            ALLOW,
        );
        assert!(report.failed());
        let text = report.render();
        assert!(
            text.contains("error: copyleft 1.0.0: license \"MIT AND GPL-3.0-only\" is not allowed (not allowed: GPL-3.0-only)"),
            "{text}"
        );
        assert!(
            text.contains("error: notice 1.0.0: no license field (license file: LICENSE.txt); read it and add a [[licenses.exception]]"),
            "{text}"
        );
        assert!(
            text.contains("licenses: 3 packages, 2 not allowed, 0 accepted by exception"),
            "{text}"
        );
    }

    #[test]
    fn a_license_file_only_package_passes_with_an_exception() {
        let policy = format!(
            "{ALLOW}[[licenses.exception]]\nname = \"notice\"\nversion = \"1.0.0\"\nlicense = \"ISC (LICENSE.txt)\"\n\
             reason = \"the file is the ISC text, read on review\"\n\
             [[licenses.exception]]\nname = \"gone\"\nreason = \"left over from an older tree\"\n"
        );
        let report = run(vec![package("notice", None, Some("LICENSE.txt"))], &policy);
        assert!(!report.failed(), "{}", report.render());
        let text = report.render();
        assert!(
            text.contains("exception: notice 1.0.0 (ISC (LICENSE.txt)): the file is the ISC text"),
            "{text}"
        );
        assert!(
            text.contains("warning: [[licenses.exception]] gone matches no package"),
            "{text}"
        );
    }

    #[test]
    fn an_exception_for_another_version_does_not_apply() {
        let policy = format!(
            "{ALLOW}[[licenses.exception]]\nname = \"notice\"\nversion = \"0.9.0\"\nreason = \"the file is the ISC text, read on review\"\n"
        );
        assert!(run(vec![package("notice", None, Some("LICENSE"))], &policy).failed());
    }

    #[test]
    fn reads_cargo_metadata_output() {
        let json = r#"{"packages":[{"name":"a","version":"1.2.3","license":"MIT","license_file":null,"id":"x","source":null}],"version":1}"#;
        let metadata = parse_metadata(json).unwrap();
        assert_eq!(metadata.packages[0].license.as_deref(), Some("MIT"));
        assert!(!check(&metadata, &Policy::parse(ALLOW).unwrap().licenses).failed());
    }
}
