//! The mTLS MCP server end to end: identity → RBAC → tools, rejections, revocation.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use rmcp::model::CallToolRequestParams;

use crate::common::Env;
use crate::server_env::{
    audit_len, client_of, http_client, mcp, post, post_with_header, wait_audit, wait_audit_after,
    Server, INIT,
};

fn tool_names(list: &rmcp::model::ListToolsResult) -> BTreeSet<String> {
    list.tools.iter().map(|t| t.name.to_string()).collect()
}

fn call(name: &str, args: serde_json::Value) -> CallToolRequestParams {
    let mut p = CallToolRequestParams::new(name.to_string());
    if let serde_json::Value::Object(map) = args {
        p.arguments = Some(map);
    }
    p
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn each_role_sees_and_calls_exactly_its_tools() {
    let env = Env::with_ca();
    env.issue("alice", "admin");
    env.issue("erin", "editor");
    env.issue("vic", "viewer");
    let server = Server::start(&env, &[]);

    let viewer = mcp(&env, &server, "vic").await.expect("viewer connects");
    let tools = viewer.list_tools(Default::default()).await.expect("list");
    assert_eq!(
        tool_names(&tools),
        set(&["whoami", "read_data", "list_keys"])
    );
    let editor = mcp(&env, &server, "erin").await.expect("editor connects");
    let tools = editor.list_tools(Default::default()).await.expect("list");
    assert_eq!(
        tool_names(&tools),
        set(&["whoami", "read_data", "list_keys", "write_data"])
    );
    let admin = mcp(&env, &server, "alice").await.expect("admin connects");
    let tools = admin.list_tools(Default::default()).await.expect("list");
    assert_eq!(
        tool_names(&tools),
        set(&[
            "whoami",
            "read_data",
            "list_keys",
            "write_data",
            "delete_data",
            "list_certs",
            "revoke_cert"
        ])
    );

    // whoami reflects the certificate.
    let me = viewer
        .call_tool(call("whoami", serde_json::json!({})))
        .await
        .expect("whoami");
    let me = me.structured_content.expect("structured");
    assert_eq!(me["name"], "vic");
    assert_eq!(me["role"], "viewer");

    // Editor writes, viewer reads it back.
    editor
        .call_tool(call(
            "write_data",
            serde_json::json!({"key": "k1", "value": "v1"}),
        ))
        .await
        .expect("editor writes");
    let read = viewer
        .call_tool(call("read_data", serde_json::json!({"key": "k1"})))
        .await
        .expect("viewer reads");
    assert_eq!(read.structured_content.expect("structured")["value"], "v1");

    // Forbidden looks exactly like unknown, and is audited with the real reason.
    let forbidden = viewer
        .call_tool(call("delete_data", serde_json::json!({"key": "k1"})))
        .await
        .expect_err("viewer may not delete");
    let unknown = viewer
        .call_tool(call("no_such_tool", serde_json::json!({})))
        .await
        .expect_err("unknown tool");
    assert_eq!(forbidden.to_string(), unknown.to_string());
    let line = wait_audit(&env, |v| {
        v["event"] == "tool_denied" && v["tool"] == "delete_data" && v["name"] == "vic"
    });
    assert!(
        line["reason"]
            .as_str()
            .is_some_and(|r| r.contains("viewer")),
        "{line}"
    );
    let editor_denied = editor
        .call_tool(call("delete_data", serde_json::json!({"key": "k1"})))
        .await
        .expect_err("editor may not delete");
    assert_eq!(editor_denied.to_string(), unknown.to_string());

    // Admin can.
    let deleted = admin
        .call_tool(call("delete_data", serde_json::json!({"key": "k1"})))
        .await
        .expect("admin deletes");
    assert_eq!(
        deleted.structured_content.expect("structured")["deleted"],
        true
    );
    wait_audit(&env, |v| {
        v["event"] == "tool_allowed" && v["tool"] == "delete_data" && v["name"] == "alice"
    });
}

#[tokio::test(flavor = "multi_thread")]
async fn rate_limit_trips_at_the_configured_count() {
    let env = Env::with_ca();
    let policy = std::fs::read_to_string(env.home.join("policy.toml")).expect("policy");
    let policy = policy.replace(
        "[tools.write_data]\nroles = [\"editor\"]\nrate_per_minute = 50",
        "[tools.write_data]\nroles = [\"editor\"]\nrate_per_minute = 3",
    );
    assert!(policy.contains("rate_per_minute = 3"));
    std::fs::write(env.home.join("policy.toml"), policy).expect("write policy");
    env.issue("erin", "editor");
    let server = Server::start(&env, &[]);
    let editor = mcp(&env, &server, "erin").await.expect("connect");
    for i in 0..3 {
        editor
            .call_tool(call(
                "write_data",
                serde_json::json!({"key": format!("k{i}"), "value": "v"}),
            ))
            .await
            .unwrap_or_else(|e| panic!("call {i} within the limit: {e}"));
    }
    let err = editor
        .call_tool(call(
            "write_data",
            serde_json::json!({"key": "k4", "value": "v"}),
        ))
        .await
        .expect_err("fourth call is limited");
    assert!(err.to_string().contains("retry after"), "{err}");
    wait_audit(&env, |v| {
        v["event"] == "rate_limited" && v["tool"] == "write_data"
    });
    // Other tools are not affected.
    editor
        .call_tool(call("whoami", serde_json::json!({})))
        .await
        .expect("whoami still works");
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_certificates_are_refused_and_audited_while_good_clients_keep_working() {
    let env = Env::with_ca();
    env.issue("alice", "admin");
    let viewer_serial = env.issue("vic", "viewer");
    // Same CA name, same client name, different CA.
    let rogue = Env::with_ca();
    rogue.issue("alice", "admin");
    // Expires one second after issuance.
    env.run(&["issue", "--role", "admin", "--name", "old", "--ttl", "1s"])
        .ok();
    let server = Server::start(&env, &["--lockout-threshold", "0"]);
    let good = client_of(&env, "alice");
    assert_eq!(
        post(&good, &server, INIT).await.expect("good").status(),
        200
    );

    let dir = env.dir.path();
    // A self-signed certificate carrying an admin role extension and the right SPIFFE ID.
    let self_signed = {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        p.distinguished_name
            .push(rcgen::DnType::CommonName, "alice");
        p.subject_alt_names = vec![rcgen::SanType::URI(
            "spiffe://mcp-zt.local/client/alice"
                .try_into()
                .expect("uri"),
        )];
        p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let mut ext = rcgen::CustomExtension::from_oid_content(
            mcp_zt::pki::role_ext::DEFAULT_ROLE_OID,
            mcp_zt::pki::role_ext::encode("admin").expect("encode"),
        );
        ext.set_criticality(false);
        p.custom_extensions.push(ext);
        let cert = p.self_signed(&key).expect("self-sign");
        std::fs::write(dir.join("self.crt"), cert.pem()).expect("write");
        std::fs::write(dir.join("self.key"), key.serialize_pem()).expect("write");
        (dir.join("self.crt"), dir.join("self.key"))
    };
    // A viewer certificate whose role bytes were changed to "editor" after signing.
    let tampered = {
        let pem = std::fs::read_to_string(env.home.join("clients/vic.crt")).expect("vic");
        let mut der = mcp_zt::pki::inspect::pem_to_der(&pem).expect("der");
        let needle = mcp_zt::pki::role_ext::encode("viewer").expect("enc");
        let pos = der
            .windows(needle.len())
            .position(|w| w == needle.as_slice())
            .expect("role bytes present");
        let patched = mcp_zt::pki::role_ext::encode("editor").expect("enc");
        der[pos..pos + patched.len()].copy_from_slice(&patched);
        let b64 = base64_encode(&der);
        let pem = format!("-----BEGIN CERTIFICATE-----\n{b64}\n-----END CERTIFICATE-----\n");
        std::fs::write(dir.join("tampered.crt"), pem).expect("write");
        (dir.join("tampered.crt"), env.home.join("clients/vic.key"))
    };
    // Wait until "old" has expired (notAfter = issuance + 1 s; webpki compares whole seconds).
    let old_list = env.list();
    let old_end = old_list
        .iter()
        .find(|c| c["name"] == "old")
        .and_then(|c| c["not_after"].as_str())
        .expect("old")
        .to_string();
    while now_rfc3339() <= old_end {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_millis(1100)).await;

    let home = &env.home;
    let cases: Vec<(&str, reqwest::Client, &str)> = vec![
        (
            "no certificate",
            http_client(&env, None),
            "no client certificate",
        ),
        (
            "other CA, same names",
            http_client(
                &env,
                Some((
                    &rogue.home.join("clients/alice.crt"),
                    &rogue.home.join("clients/alice.key"),
                )),
            ),
            // Its intermediate has another name (unknown issuer), or, made in the same second,
            // the same one (webpki tries our key and the signature fails): refused either way.
            "this CA",
        ),
        (
            "self-signed with admin role",
            http_client(&env, Some((&self_signed.0, &self_signed.1))),
            "unknown issuer",
        ),
        ("expired", client_of(&env, "old"), "expired"),
        (
            "serverAuth only",
            http_client(
                &env,
                Some((
                    &home.join("server/server.crt"),
                    &home.join("server/server.key"),
                )),
            ),
            "client authentication",
        ),
        (
            "role edited after signing",
            http_client(&env, Some((&tampered.0, &tampered.1))),
            "signature",
        ),
    ];
    for (what, client, reason) in cases {
        let before = audit_len(&env);
        let result = post(&client, &server, INIT).await;
        assert!(result.is_err(), "{what}: must be refused, got {result:?}");
        wait_audit_after(&env, before, |v| {
            v["event"] == "handshake_rejected"
                && v["reason"].as_str().is_some_and(|r| r.contains(reason))
        });
        // The server keeps serving good clients.
        assert_eq!(
            post(&good, &server, INIT)
                .await
                .expect("good after bad")
                .status(),
            200,
            "after {what}"
        );
    }
    assert!(!viewer_serial.is_empty());
}

/// Current UTC time in the same RFC 3339 form the CLI prints.
pub fn now_rfc3339() -> String {
    mcp_zt::pki::rfc3339(mcp_zt::pki::now().unix_timestamp())
}

fn base64_encode(bytes: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out.as_bytes()
        .chunks(64)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test(flavor = "multi_thread")]
async fn revocation_closes_the_open_session_and_refuses_the_reconnect_within_a_second() {
    let env = Env::with_ca();
    env.issue("alice", "admin");
    env.issue("bob", "viewer");
    let server = Server::start(&env, &["--lockout-threshold", "0"]);
    let bob = mcp(&env, &server, "bob").await.expect("bob connects");
    bob.call_tool(call("whoami", serde_json::json!({})))
        .await
        .expect("works before revocation");
    wait_audit(&env, |v| {
        v["event"] == "session_created" && v["name"] == "bob"
    });

    // Revoke from a second process while the server runs (goes through the control socket).
    let start = Instant::now();
    let out = env.run(&["revoke", "bob", "--reason", "key-compromise"]);
    out.ok();
    let cut = wait_audit(&env, |v| {
        v["event"] == "connection_cut" && v["name"] == "bob"
    });
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "cut after {:?}: {cut}",
        start.elapsed()
    );

    // The open session is dead: the next call fails.
    let next = tokio::time::timeout(
        Duration::from_secs(5),
        bob.call_tool(call("whoami", serde_json::json!({}))),
    )
    .await
    .expect("the call must not hang");
    assert!(next.is_err(), "call after revocation must fail: {next:?}");

    // A new handshake is refused, within the same second.
    let refused = post(&client_of(&env, "bob"), &server, INIT).await;
    assert!(refused.is_err(), "{refused:?}");
    assert!(start.elapsed() < Duration::from_secs(2));
    wait_audit(&env, |v| {
        v["event"] == "handshake_rejected" && v["reason"] == "certificate revoked"
    });
    // Other clients are untouched; the CRL on disk lists the serial.
    let alice = mcp(&env, &server, "alice")
        .await
        .expect("alice still connects");
    alice
        .call_tool(call("whoami", serde_json::json!({})))
        .await
        .expect("alice works");
    let list = env.list();
    assert!(list
        .iter()
        .any(|c| c["name"] == "bob" && c["status"] == "revoked"));
}

#[tokio::test(flavor = "multi_thread")]
async fn revoke_cert_tool_applies_at_once() {
    let env = Env::with_ca();
    env.issue("alice", "admin");
    env.issue("bob", "viewer");
    let server = Server::start(&env, &["--lockout-threshold", "0"]);
    let bob = mcp(&env, &server, "bob").await.expect("bob");
    let alice = mcp(&env, &server, "alice").await.expect("alice");
    let r = alice
        .call_tool(call(
            "revoke_cert",
            serde_json::json!({"target": "bob", "reason": "privilege-withdrawn"}),
        ))
        .await
        .expect("revoke_cert");
    assert_eq!(
        r.structured_content.expect("structured")["revoked"][0]["name"],
        "bob"
    );
    wait_audit(&env, |v| {
        v["event"] == "connection_cut" && v["name"] == "bob"
    });
    assert!(bob
        .call_tool(call("whoami", serde_json::json!({})))
        .await
        .is_err());
    let again = alice
        .call_tool(call("revoke_cert", serde_json::json!({"target": "bob"})))
        .await
        .expect("second revoke answers");
    assert_eq!(again.is_error, Some(true));
}

#[tokio::test(flavor = "multi_thread")]
async fn sessions_are_bound_to_the_certificate_that_created_them() {
    let env = Env::with_ca();
    env.issue("alice", "admin");
    env.issue("bob", "viewer");
    let server = Server::start(&env, &[]);
    let bob = client_of(&env, "bob");
    let resp = post(&bob, &server, INIT).await.expect("init");
    let sid = resp
        .headers()
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .expect("session id")
        .to_string();
    let alice = client_of(&env, "alice");
    for method in [
        reqwest::Method::POST,
        reqwest::Method::GET,
        reqwest::Method::DELETE,
    ] {
        let r = alice
            .request(method.clone(), server.url())
            .header("Accept", "application/json, text/event-stream")
            .header("Content-Type", "application/json")
            .header("Mcp-Session-Id", &sid)
            .body(if method == reqwest::Method::POST {
                r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#
            } else {
                ""
            })
            .send()
            .await
            .expect("answer");
        assert_eq!(r.status(), 404, "{method} with another's session");
    }
    wait_audit(&env, |v| {
        v["event"] == "session_rejected" && v["name"] == "alice"
    });
    // The owner can still use it.
    let r = bob
        .post(server.url())
        .header("Accept", "application/json, text/event-stream")
        .header("Content-Type", "application/json")
        .header("Mcp-Session-Id", &sid)
        .body(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#)
        .send()
        .await
        .expect("owner");
    assert_eq!(r.status(), 202);
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_http_gets_clear_4xx_answers() {
    let env = Env::with_ca();
    env.issue("alice", "admin");
    let server = Server::start(&env, &["--max-body-bytes", "1024"]);
    let c = client_of(&env, "alice");
    let r = post(&c, &server, "{\"jsonrpc\":").await.expect("answer");
    assert_eq!(r.status(), 400);
    let v: serde_json::Value = r.json().await.expect("json-rpc error body");
    assert_eq!(v["error"]["code"], -32700);
    let r = c
        .post(server.url())
        .header("Accept", "application/json, text/event-stream")
        .header("Content-Type", "application/json")
        .body(vec![b'"', 0xff, 0xfe, b'"'])
        .send()
        .await
        .expect("answer");
    assert_eq!(r.status(), 400, "invalid UTF-8");
    let r = post(&c, &server, r#"{"hello":"world"}"#)
        .await
        .expect("answer");
    assert_eq!(r.status(), 400);
    let v: serde_json::Value = r.json().await.expect("json");
    assert_eq!(v["error"]["code"], -32600);
    // Looks like a message until it is parsed in full (rmcp refuses it): the same answer.
    let r = post(&c, &server, r#"{"jsonrpc":"2.0","id":7,"method":5}"#)
        .await
        .expect("answer");
    assert_eq!(r.status(), 400);
    let v: serde_json::Value = r.json().await.expect("json");
    assert_eq!(
        (v["error"]["code"].clone(), v["id"].clone()),
        (serde_json::json!(-32600), serde_json::json!(7))
    );
    // The same without the Accept header rmcp checks before parsing: the body's error first.
    let r = c
        .post(server.url())
        .header("Content-Type", "application/json")
        .body(r#"{"jsonrpc":"2.0","id":8,"method":5}"#)
        .send()
        .await
        .expect("answer");
    assert_eq!(r.status(), 400);
    let v: serde_json::Value = r.json().await.expect("json");
    assert_eq!(v["error"]["code"], -32600);
    let big = format!(
        "{{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\",\"params\":{{\"pad\":\"{}\"}}}}",
        "a".repeat(4096)
    );
    let r = post(&c, &server, &big).await.expect("answer");
    assert_eq!(r.status(), 413);
    let r = post_with_header(&c, &server, ("Origin", "https://evil.example"), INIT)
        .await
        .expect("answer");
    assert_eq!(r.status(), 403);
    // And the server is fine afterwards.
    assert_eq!(post(&c, &server, INIT).await.expect("ok").status(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn cli_issue_and_list_work_while_the_server_runs() {
    let env = Env::with_ca();
    let server = Server::start(&env, &[]);
    let serial = env.issue("late", "editor");
    assert!(env.list().iter().any(|c| c["serial"] == serial.as_str()));
    // The new certificate works at once.
    let c = client_of(&env, "late");
    assert_eq!(post(&c, &server, INIT).await.expect("late").status(), 200);
    let crl = env.run(&["crl"]);
    assert!(crl.ok().contains("BEGIN X509 CRL"));
}

#[test]
fn sigterm_stops_the_server_cleanly() {
    let env = Env::with_ca();
    let mut server = Server::start(&env, &[]);
    let pid = server.child.id();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(s) = server.child.try_wait().expect("wait") {
            assert_eq!(s.code(), Some(0));
            break;
        }
        assert!(Instant::now() < deadline, "server did not stop");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!env.home.join("ctl.sock").exists());
    wait_audit(&env, |v| v["event"] == "server_stopped");
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_reloads_the_policy_without_dropping_connections() {
    let env = Env::with_ca();
    env.issue("vic", "viewer");
    let server = Server::start(&env, &[]);
    let viewer = mcp(&env, &server, "vic").await.expect("connect");
    let before = tool_names(&viewer.list_tools(Default::default()).await.expect("list"));
    assert!(before.contains("read_data"));
    let path = env.home.join("policy.toml");
    let original = std::fs::read_to_string(&path).expect("policy");
    let hup = |pid: u32| {
        std::process::Command::new("kill")
            .args(["-HUP", &pid.to_string()])
            .status()
            .expect("kill")
    };
    // An invalid policy is refused and the old one stays in force.
    std::fs::write(&path, "[roles.viewer]\ninherits = [\"ghost\"]\n").expect("write");
    let mark = audit_len(&env);
    assert!(hup(server.child.id()).success());
    wait_audit_after(&env, mark, |v| v["event"] == "policy_reload_failed");
    let still = tool_names(&viewer.list_tools(Default::default()).await.expect("list"));
    assert_eq!(still, before);
    // A valid change applies to the open session at once.
    let narrowed = original.replace(
        "[tools.read_data]\nroles = [\"viewer\"]",
        "[tools.read_data]\nroles = [\"editor\"]",
    );
    assert_ne!(narrowed, original);
    std::fs::write(&path, narrowed).expect("write");
    let mark = audit_len(&env);
    assert!(hup(server.child.id()).success());
    wait_audit_after(&env, mark, |v| v["event"] == "policy_reloaded");
    let after = tool_names(
        &viewer
            .list_tools(Default::default())
            .await
            .expect("same session"),
    );
    assert!(!after.contains("read_data"), "{after:?}");
    assert!(after.contains("whoami"));
    let denied = viewer
        .call_tool(call("read_data", serde_json::json!({"key": "k"})))
        .await
        .expect_err("no longer allowed");
    assert!(denied.to_string().contains("tool not found"), "{denied}");
}
