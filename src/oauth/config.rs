//! `HOME/oauth.toml`: token lifetimes, which registration kinds are open, and extra redirect
//! URIs. Missing file: the defaults. Unknown keys are refused (a typo must not silently leave a
//! default in force).

use std::path::Path;

use serde::Deserialize;

use super::OAuthError;

/// How clients may come to be known.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Registration {
    /// Client ID metadata documents (a URL `client_id`).
    Cimd,
    /// Dynamic client registration (RFC 7591).
    Dcr,
    /// `oauth client add`.
    Preregistered,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    access_ttl: Option<String>,
    refresh_ttl: Option<String>,
    refresh_reuse_grace: Option<String>,
    registration: Option<Vec<Registration>>,
    #[serde(default)]
    redirect_uris_extra: Vec<String>,
}

/// The OAuth settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthConfig {
    /// Access token lifetime (seconds).
    pub access_ttl: i64,
    /// Refresh token (grant) lifetime (seconds), capped by the certificate's notAfter.
    pub refresh_ttl: i64,
    /// How long (seconds) a rotated refresh token still gets the same new pair (hosted clients
    /// refresh from several nodes at once); a use after it revokes the grant.
    pub refresh_reuse_grace: i64,
    /// Open registration kinds.
    pub registration: Vec<Registration>,
    /// Exact redirect URIs allowed beyond the built-in rules.
    pub redirect_uris_extra: Vec<String>,
}

impl Default for OAuthConfig {
    fn default() -> Self {
        OAuthConfig {
            access_ttl: 600,
            refresh_ttl: 30 * 86_400,
            refresh_reuse_grace: 60,
            registration: vec![
                Registration::Cimd,
                Registration::Dcr,
                Registration::Preregistered,
            ],
            redirect_uris_extra: Vec::new(),
        }
    }
}

impl OAuthConfig {
    /// Reads `path`; a missing file gives the defaults.
    pub fn load(path: &Path) -> Result<OAuthConfig, OAuthError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(e) => return Err(OAuthError::Config(format!("{}: {e}", path.display()))),
        };
        Self::parse(&text).map_err(|e| OAuthError::Config(format!("{}: {e}", path.display())))
    }

    /// Parses the file's text.
    pub fn parse(text: &str) -> Result<OAuthConfig, String> {
        let raw: Raw = toml::from_str(text).map_err(|e| e.to_string())?;
        let d = Self::default();
        let ttl = |key: &str, v: Option<String>, default: i64, max: i64| -> Result<i64, String> {
            let Some(v) = v else { return Ok(default) };
            let secs = crate::pki::parse_ttl(&v).map_err(|e| format!("{key}: {e}"))?;
            if secs > max {
                return Err(format!("{key} = {v:?}: at most {}d", max / 86_400));
            }
            Ok(secs)
        };
        let access_ttl = ttl("access_ttl", raw.access_ttl, d.access_ttl, 86_400)?;
        let refresh_ttl = ttl("refresh_ttl", raw.refresh_ttl, d.refresh_ttl, 365 * 86_400)?;
        let refresh_reuse_grace = ttl(
            "refresh_reuse_grace",
            raw.refresh_reuse_grace,
            d.refresh_reuse_grace,
            600,
        )?;
        if refresh_ttl < access_ttl {
            return Err("refresh_ttl must not be shorter than access_ttl".into());
        }
        for uri in &raw.redirect_uris_extra {
            if let Err(e) = super::redirect::classify(uri) {
                return Err(format!("redirect_uris_extra: {uri:?}: {e}"));
            }
        }
        Ok(OAuthConfig {
            access_ttl,
            refresh_ttl,
            refresh_reuse_grace,
            registration: raw.registration.unwrap_or(d.registration),
            redirect_uris_extra: raw.redirect_uris_extra,
        })
    }

    /// Whether registration kind `r` is open.
    pub fn allows(&self, r: Registration) -> bool {
        self.registration.contains(&r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_refusals() {
        assert_eq!(OAuthConfig::parse("").unwrap(), OAuthConfig::default());
        let c = OAuthConfig::parse(
            "access_ttl = \"5m\"\nrefresh_ttl = \"7d\"\nregistration = [\"dcr\"]\n",
        )
        .unwrap();
        assert_eq!((c.access_ttl, c.refresh_ttl), (300, 7 * 86_400));
        assert!(c.allows(Registration::Dcr) && !c.allows(Registration::Cimd));
        for bad in [
            "acces_ttl = \"5m\"",
            "access_ttl = \"5 minutes\"",
            "access_ttl = \"2d\"",
            "registration = [\"magic\"]",
            "refresh_ttl = \"1m\"",
            "refresh_reuse_grace = \"1h\"",
            "redirect_uris_extra = [\"http://evil.example/cb\"]",
        ] {
            assert!(OAuthConfig::parse(bad).is_err(), "{bad}");
        }
    }
}
