//! Foreign trust: CAs mcp-zt did not make (SPIRE, step-ca, a corporate CA) whose certificates
//! map to roles by rules on their subject and SANs, in `[trust.NAME]` of the policy file.
//!
//! Pure: the configuration and the first-match rule evaluation. Loading the CA bundle and
//! CRL, and the chain and revocation checks, live in [`crate::tls::foreign`]. A foreign
//! certificate never grants itself a role: mcp-zt's role extension in it is ignored, and a
//! certificate no rule matches is refused.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::rules::glob_match;

/// Default time a foreign CRL may stay past its nextUpdate before handshakes fail: 1 hour.
pub const DEFAULT_CRL_GRACE_SECS: i64 = 3600;
/// Default interval between fetches of a `crl_url` (and checks of a `crl` file): 5 minutes.
pub const DEFAULT_CRL_REFRESH_SECS: i64 = 300;

/// The fields a rule can match.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Field {
    /// Subject common name.
    Cn,
    /// Subject organization.
    O,
    /// Subject organizational unit.
    Ou,
    /// URI SAN (a SPIFFE ID, for instance).
    SanUri,
    /// DNS SAN.
    SanDns,
    /// Email SAN (rfc822Name).
    SanEmail,
}

impl Field {
    /// The key in the policy file.
    pub fn as_str(self) -> &'static str {
        match self {
            Field::Cn => "cn",
            Field::O => "o",
            Field::Ou => "ou",
            Field::SanUri => "san_uri",
            Field::SanDns => "san_dns",
            Field::SanEmail => "san_email",
        }
    }
}

/// The values of a certificate's subject and SANs that rules look at. A field can hold
/// several values (two OUs, three DNS names); a rule's glob must match one of them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Subject {
    /// Values by field.
    pub values: BTreeMap<Field, Vec<String>>,
}

impl Subject {
    /// Adds one value of `field`.
    pub fn push(&mut self, field: Field, value: impl Into<String>) {
        self.values.entry(field).or_default().push(value.into());
    }

    /// The values of `field`.
    pub fn get(&self, field: Field) -> &[String] {
        self.values.get(&field).map_or(&[], Vec::as_slice)
    }

    /// A short description for audit lines: `cn=..., ou=..., san_uri=...`.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        for (field, values) in &self.values {
            for v in values {
                parts.push(format!("{}={v}", field.as_str()));
            }
        }
        if parts.is_empty() {
            "no subject fields".into()
        } else {
            parts.join(", ")
        }
    }
}

/// One `[[trust.NAME.roles]]` entry: every field in `match` must match (globs with `*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleRule {
    /// The role granted.
    pub role: String,
    /// Field → glob; all must match.
    pub matchers: BTreeMap<Field, String>,
}

impl RoleRule {
    /// Whether `subject` satisfies every matcher.
    pub fn matches(&self, subject: &Subject) -> bool {
        self.matchers.iter().all(|(field, glob)| {
            subject
                .get(*field)
                .iter()
                .any(|value| glob_match(glob, value))
        })
    }
}

/// Where a foreign CA's revocations come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CrlSource {
    /// A file (path relative to HOME), re-read when it changes.
    File(String),
    /// An http(s) URL, fetched every `crl_refresh`.
    Url(String),
}

/// One `[trust.NAME]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustConfig {
    /// The section name: shown in audit lines and part of each identity's key.
    pub name: String,
    /// The CA bundle (PEM), relative to HOME.
    pub ca: String,
    /// The CRL.
    pub crl: CrlSource,
    /// How long past its nextUpdate the CRL is still accepted.
    pub crl_grace_secs: i64,
    /// How often the CRL is fetched or checked for changes.
    pub crl_refresh_secs: i64,
    /// First match wins.
    pub roles: Vec<RoleRule>,
}

impl TrustConfig {
    /// The first rule `subject` matches, with its position (1-based, for audit lines).
    pub fn role_for(&self, subject: &Subject) -> Option<(usize, &str)> {
        self.roles
            .iter()
            .enumerate()
            .find(|(_, r)| r.matches(subject))
            .map(|(i, r)| (i + 1, r.role.as_str()))
    }
}

/// `[trust.NAME]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTrust {
    pub ca: String,
    #[serde(default)]
    pub crl: Option<String>,
    #[serde(default)]
    pub crl_url: Option<String>,
    #[serde(default)]
    pub crl_grace: Option<String>,
    #[serde(default)]
    pub crl_refresh: Option<String>,
    #[serde(default)]
    pub roles: Vec<RawRoleRule>,
}

/// `[[trust.NAME.roles]]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRoleRule {
    pub role: toml::Spanned<String>,
    #[serde(rename = "match")]
    pub matchers: BTreeMap<Field, String>,
}

/// Checks one raw section; `has_role` says whether the policy defines a role. Errors are
/// plain messages; the caller adds the line.
pub(super) fn validate(
    name: &str,
    raw: RawTrust,
    has_role: impl Fn(&str) -> bool,
) -> Result<TrustConfig, (Option<std::ops::Range<usize>>, String)> {
    let plain = |m: String| (None, format!("trust {name:?}: {m}"));
    crate::pki::role_ext::validate_role(name)
        .map_err(|e| plain(format!("invalid trust name: {e}")))?;
    if raw.ca.trim().is_empty() {
        return Err(plain("`ca` must name the CA bundle file".into()));
    }
    let crl = match (raw.crl, raw.crl_url) {
        (Some(f), None) if !f.trim().is_empty() => CrlSource::File(f),
        (None, Some(u)) if u.starts_with("https://") || u.starts_with("http://") => {
            CrlSource::Url(u)
        }
        (None, Some(u)) => return Err(plain(format!("crl_url {u:?} is not an http(s) URL"))),
        (Some(_), Some(_)) => return Err(plain("give `crl` or `crl_url`, not both".into())),
        _ => {
            return Err(plain(
                "a CRL is required (`crl = \"FILE\"` or `crl_url = \"https://...\"`): without one a revoked certificate could never be shut out".into(),
            ))
        }
    };
    let secs = |v: Option<String>, default: i64, key: &str| -> Result<i64, _> {
        match v {
            None => Ok(default),
            Some(s) if s == "0s" || s == "0" => Ok(0),
            Some(s) => crate::pki::parse_ttl(&s).map_err(|_| {
                plain(format!(
                    "{key} {s:?}: use a number with a unit s, m, h or d"
                ))
            }),
        }
    };
    let crl_grace_secs = secs(raw.crl_grace, DEFAULT_CRL_GRACE_SECS, "crl_grace")?;
    let crl_refresh_secs = secs(raw.crl_refresh, DEFAULT_CRL_REFRESH_SECS, "crl_refresh")?.max(1);
    if raw.roles.is_empty() {
        return Err(plain(
            "no [[trust.NAME.roles]] rules: every certificate of this CA would be refused".into(),
        ));
    }
    let mut roles = Vec::new();
    for rule in raw.roles {
        let role = rule.role.get_ref();
        if !has_role(role) {
            return Err((
                Some(rule.role.span()),
                format!("trust {name:?}: rule grants unknown role {role:?}"),
            ));
        }
        if rule.matchers.is_empty() {
            return Err((
                Some(rule.role.span()),
                format!(
                    "trust {name:?}: the rule for {role:?} has an empty `match`; name at least one of cn, o, ou, san_uri, san_dns, san_email"
                ),
            ));
        }
        roles.push(RoleRule {
            role: role.clone(),
            matchers: rule.matchers,
        });
    }
    Ok(TrustConfig {
        name: name.to_string(),
        ca: raw.ca,
        crl,
        crl_grace_secs,
        crl_refresh_secs,
        roles,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subject(pairs: &[(Field, &str)]) -> Subject {
        let mut s = Subject::default();
        for (f, v) in pairs {
            s.push(*f, *v);
        }
        s
    }

    fn rule(role: &str, m: &[(Field, &str)]) -> RoleRule {
        RoleRule {
            role: role.into(),
            matchers: m.iter().map(|(f, g)| (*f, g.to_string())).collect(),
        }
    }

    #[test]
    fn first_matching_rule_wins_and_every_matcher_must_hold() {
        let t = TrustConfig {
            name: "corp".into(),
            ca: "corp.pem".into(),
            crl: CrlSource::File("corp.crl".into()),
            crl_grace_secs: 0,
            crl_refresh_secs: 1,
            roles: vec![
                rule("admin", &[(Field::Ou, "sre"), (Field::O, "Example Corp")]),
                rule("viewer", &[(Field::SanUri, "spiffe://corp.example/*")]),
            ],
        };
        let sre = subject(&[(Field::Ou, "sre"), (Field::O, "Example Corp")]);
        assert_eq!(t.role_for(&sre), Some((1, "admin")));
        // Right OU, wrong organization: the admin rule needs both.
        let other_org = subject(&[(Field::Ou, "sre"), (Field::O, "Evil Corp")]);
        assert_eq!(t.role_for(&other_org), None);
        let workload = subject(&[(Field::SanUri, "spiffe://corp.example/ns/prod/sa/api")]);
        assert_eq!(t.role_for(&workload), Some((2, "viewer")));
        // One of several values is enough.
        let two_ous = subject(&[
            (Field::Ou, "dev"),
            (Field::Ou, "sre"),
            (Field::O, "Example Corp"),
        ]);
        assert_eq!(t.role_for(&two_ous), Some((1, "admin")));
        assert_eq!(t.role_for(&subject(&[(Field::Cn, "sre")])), None);
        let other_domain = subject(&[(Field::SanUri, "spiffe://evil.example/x")]);
        assert_eq!(t.role_for(&other_domain), None);
    }
}
