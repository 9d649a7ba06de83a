//! Roles' `allow` / `deny` rules (`KIND:GLOB`) gate the tools end to end, deny winning, and
//! `roles` shows the rules in force.

use std::collections::BTreeSet;

use rmcp::model::CallToolRequestParams;

use crate::common::Env;
use crate::server_env::{mcp, wait_audit, Server};

const POLICY: &str = r#"
[roles.viewer]
allow = ["tool:read_*", "tool:whoami"]

[roles.editor]
inherits = ["viewer"]
allow = ["tool:write_data", "tool:list_*"]

[roles.admin]
inherits = ["editor"]
allow = ["tool:*"]
deny = ["tool:delete_*", "tool:revoke_*"]

[tools.write_data]
roles = ["editor"]
rate_per_minute = 50
"#;

fn names(list: &rmcp::model::ListToolsResult) -> BTreeSet<String> {
    list.tools.iter().map(|t| t.name.to_string()).collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn allow_and_deny_globs_decide_what_each_role_sees_and_calls() {
    let env = Env::with_ca();
    std::fs::write(env.home.join("policy.toml"), POLICY).expect("policy");
    env.issue("vic", "viewer");
    env.issue("erin", "editor");
    env.issue("alice", "admin");
    let server = Server::start(&env, &[]);

    let viewer = mcp(&env, &server, "vic").await.expect("viewer");
    let tools = viewer.list_tools(Default::default()).await.expect("list");
    assert_eq!(names(&tools), set(&["read_data", "whoami"]));
    let editor = mcp(&env, &server, "erin").await.expect("editor");
    let tools = editor.list_tools(Default::default()).await.expect("list");
    assert_eq!(
        names(&tools),
        set(&[
            "list_certs",
            "list_keys",
            "read_data",
            "whoami",
            "write_data"
        ])
    );
    // tool:* for the admin, but the inherited-down deny rules win: no delete, no revoke.
    let admin = mcp(&env, &server, "alice").await.expect("admin");
    let tools = admin.list_tools(Default::default()).await.expect("list");
    assert_eq!(
        names(&tools),
        set(&[
            "list_certs",
            "list_keys",
            "read_data",
            "whoami",
            "write_data"
        ])
    );
    let denied = admin
        .call_tool(CallToolRequestParams::new("delete_data".to_string()))
        .await
        .expect_err("denied");
    let unknown = admin
        .call_tool(CallToolRequestParams::new("no_such_tool".to_string()))
        .await
        .expect_err("unknown");
    assert_eq!(
        denied.to_string(),
        unknown.to_string(),
        "denied looks like missing"
    );
    wait_audit(&env, |v| {
        v["event"] == "tool_denied" && v["tool"] == "delete_data" && v["name"] == "alice"
    });

    // `roles` shows each role's rules in force, inherited ones included.
    let out = env.run(&["roles", "--json"]);
    let roles: serde_json::Value = serde_json::from_str(out.ok()).expect("json");
    let admin_view = roles
        .as_array()
        .expect("array")
        .iter()
        .find(|r| r["role"] == "admin")
        .expect("admin");
    assert_eq!(
        admin_view["deny"],
        serde_json::json!(["tool:delete_*", "tool:revoke_*"])
    );
    assert_eq!(
        admin_view["allow"],
        serde_json::json!([
            "tool:*",
            "tool:list_*",
            "tool:read_*",
            "tool:whoami",
            "tool:write_data"
        ])
    );
    let table = env.run(&["roles"]);
    assert!(table.ok().contains("deny:  tool:delete_*"), "{table:?}");
}

#[test]
fn a_malformed_rule_is_refused_with_its_line() {
    let env = Env::with_ca();
    std::fs::write(
        env.home.join("policy.toml"),
        "[roles.viewer]\nallow = [\n  \"tool:whoami\",\n  \"tools:read_data\",\n]\n",
    )
    .expect("policy");
    env.run(&["roles"]).fails_with("line 4");
}
