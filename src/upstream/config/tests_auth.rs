//! Unit tests of `auth = "oauth"` and `holder_secrets` in the upstreams file.

use std::path::Path;

use super::*;

const FILE: &str = "/home/ca/upstreams.toml";

fn ok(text: &str) -> Upstreams {
    parse(text, Path::new(FILE)).unwrap_or_else(|e| panic!("should parse: {e}\n{text}"))
}

fn refused(text: &str) -> String {
    match parse(text, Path::new(FILE)) {
        Ok(u) => panic!("should be refused: {u:?}\n{text}"),
        Err(e) => e.to_string(),
    }
}

fn stdio(extra: &str) -> String {
    format!("[upstreams.s]\ncommand = \"server\"\n{extra}\n")
}

fn http(extra: &str) -> String {
    format!("[upstreams.h]\nurl = \"https://mcp.example.org/mcp\"\n{extra}\n")
}

#[test]
fn auth_oauth_is_per_holder_and_for_http_only() {
    let u = ok(&http(
        "auth = \"oauth\"\noauth_scopes = [\"repo\", \"read:org\"]\noauth_client_id = \"Ov23\"\noauth_client_secret = { env = \"GH_SECRET\" }\n",
    ));
    let up = &u.list[0];
    let o = up.oauth().expect("oauth");
    assert_eq!(o.scopes, vec!["repo", "read:org"]);
    assert_eq!(o.client_id.as_deref(), Some("Ov23"));
    assert!(o.client_secret.is_some() && !o.allow_private);
    assert!(up.identity_bound() && !up.forward_identity);
    assert!(ok(&http("")).list[0].oauth().is_none());
    assert!(refused(&stdio("auth = \"oauth\"\n")).contains("applies to url upstreams only"));
    assert!(refused(&http("auth = \"magic\"\n")).contains("use \"static\""));
    assert!(refused(&http("oauth_scopes = [\"x\"]\n")).contains("applies to auth = \"oauth\""));
    assert!(refused(&http(
        "auth = \"oauth\"\nheaders = { Authorization = \"Bearer shared\" }\n"
    ))
    .contains("remove it from headers"));
    assert!(
        refused(&http("auth = \"oauth\"\noauth_scopes = [\"a b\"]\n"))
            .contains("not a scope token")
    );
    assert!(
        refused(&http("auth = \"oauth\"\noauth_client_secret = \"s\"\n"))
            .contains("needs oauth_client_id")
    );
}

#[test]
fn holder_secrets_are_an_allowlist_on_per_holder_connections() {
    let u = ok(&stdio(
        "share = \"per-identity\"\nholder_secrets = [\"KV_TOKEN\"]\n",
    ));
    assert_eq!(u.list[0].holder_secrets, vec!["KV_TOKEN"]);
    assert!(refused(&stdio("holder_secrets = [\"KV_TOKEN\"]\n")).contains("per-identity"));
    assert!(refused(&stdio(
        "share = \"per-identity\"\nenv = { KV_TOKEN = \"x\" }\nholder_secrets = [\"KV_TOKEN\"]\n"
    ))
    .contains("set in env already"));
    assert!(refused(&stdio(
        "share = \"per-identity\"\nholder_secrets = [\"MCP_ZT_NAME\"]\n"
    ))
    .contains("reserved"));
    let h = ok(&http(
        "auth = \"oauth\"\nholder_secrets = [\"X-Api-Key\"]\n",
    ));
    assert_eq!(h.list[0].holder_secrets, vec!["X-Api-Key"]);
    assert!(refused(&http("holder_secrets = [\"X-Api-Key\"]\n")).contains("each holder's own"));
    for bad in ["Host", "Authorization", "x-mcp-zt-name", "Content-Length"] {
        let text = http(&format!("auth = \"oauth\"\nholder_secrets = [\"{bad}\"]\n"));
        assert!(parse(&text, Path::new(FILE)).is_err(), "{bad} accepted");
    }
}
