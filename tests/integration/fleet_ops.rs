//! What a fleet relies on that needs no database: the operations listener (metrics counted
//! from the audit decisions, health, the CRL), PROXY protocol v2 from listed balancers only,
//! and `--ledger` settings that are refused with a clear error and never show the password.
//! The PostgreSQL side is exercised by scripts/fleet-test.sh on a real cluster.

use rmcp::model::CallToolRequestParams;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::Env;
use crate::server_env::{
    audit_len, client_of, localhost, mcp, post, tls_connector, wait_audit, wait_audit_after,
    Server, INIT,
};

fn call(name: &str, args: serde_json::Value) -> CallToolRequestParams {
    let mut p = CallToolRequestParams::new(name.to_string());
    p.arguments = args.as_object().cloned();
    p
}

async fn get(ops: &str, path: &str) -> (u16, Vec<u8>) {
    let r = reqwest::Client::new()
        .get(format!("http://{ops}{path}"))
        .send()
        .await
        .expect("ops request");
    let status = r.status().as_u16();
    (status, r.bytes().await.expect("body").to_vec())
}

async fn metrics(ops: &str) -> String {
    let (status, body) = get(ops, "/metrics").await;
    assert_eq!(status, 200);
    String::from_utf8(body).expect("utf-8")
}

#[tokio::test(flavor = "multi_thread")]
async fn ops_endpoints_count_the_audited_decisions_and_serve_the_crl() {
    let env = Env::with_ca();
    env.issue("alice", "admin");
    env.issue("bob", "viewer");
    let server = Server::start(&env, &["--ops-listen", "127.0.0.1:0"]);
    let ops = server.ops.clone().expect("the ops address is printed");

    let alice = mcp(&env, &server, "alice").await.expect("alice");
    for _ in 0..3 {
        alice
            .call_tool(call("whoami", serde_json::json!({})))
            .await
            .expect("whoami");
    }
    let bob = mcp(&env, &server, "bob").await.expect("bob");
    let denied = bob
        .call_tool(call("delete_data", serde_json::json!({"key": "k"})))
        .await;
    assert!(denied.is_err(), "a viewer may not delete");

    let text = metrics(&ops).await;
    assert!(
        text.contains(
            "mcpzt_tool_calls_total{tool=\"whoami\",role=\"admin\",decision=\"allowed\"} 3"
        ),
        "{text}"
    );
    assert!(text.contains(
        "mcpzt_tool_calls_total{tool=\"delete_data\",role=\"viewer\",decision=\"denied\"} 1"
    ));
    let ok_handshakes: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("mcpzt_handshakes_total{result=\"ok\"} "))
        .and_then(|v| v.parse().ok())
        .expect("handshakes counted");
    assert!(ok_handshakes >= 2.0, "{text}");
    assert!(text.contains("mcpzt_ledger_up 1"));
    assert!(text.contains("mcpzt_http_request_duration_seconds_count"));
    assert!(text.ends_with("# EOF\n"));

    for (path, want) in [("/healthz", 200), ("/readyz", 200), ("/serving", 200)] {
        assert_eq!(get(&ops, path).await.0, want, "{path}");
    }
    let (status, der) = get(&ops, "/crl").await;
    assert_eq!(status, 200);
    let (_, crl) = x509_parser::parse_x509_crl(&der).expect("/crl is a DER CRL");
    assert_eq!(crl.iter_revoked_certificates().count(), 0);

    // A revocation shows in the gauges and in the CRL served.
    env.run(&["revoke", "bob"]).ok();
    wait_audit(&env, |v| {
        v["event"] == "revocation_applied" && v["name"] == "bob"
    });
    let text = metrics(&ops).await;
    assert!(text.contains("mcpzt_revoked_serials 1"), "{text}");
    assert!(text.contains("mcpzt_revocations_applied_total 1"), "{text}");
    let (_, der) = get(&ops, "/crl").await;
    let (_, crl) = x509_parser::parse_x509_crl(&der).expect("CRL");
    assert_eq!(crl.iter_revoked_certificates().count(), 1);
    assert_eq!(get(&ops, "/nothing").await.0, 404);
}

#[test]
fn the_ops_listener_stays_on_loopback_unless_asked() {
    let env = Env::with_ca();
    env.run(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--ops-listen",
        "0.0.0.0:0",
    ])
    .fails_with("--ops-public");
}

/// A PROXY v2 header for a TCP/IPv4 client.
fn proxy_v2(src: [u8; 4], port: u16) -> Vec<u8> {
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    h.extend_from_slice(&[0x21, 0x11, 0, 12]);
    h.extend_from_slice(&src);
    h.extend_from_slice(&[127, 0, 0, 1]);
    h.extend_from_slice(&port.to_be_bytes());
    h.extend_from_slice(&8443u16.to_be_bytes());
    h
}

/// Sends `prefix` on a fresh connection, then an MCP initialize over TLS as `name`; returns
/// the HTTP status line, or the error.
async fn initialize_after(
    env: &Env,
    server: &Server,
    name: &str,
    prefix: &[u8],
) -> Result<String, String> {
    let mut tcp = TcpStream::connect(("127.0.0.1", server.port))
        .await
        .map_err(|e| e.to_string())?;
    tcp.write_all(prefix).await.map_err(|e| e.to_string())?;
    let mut tls = tls_connector(env, name)
        .connect(localhost(), tcp)
        .await
        .map_err(|e| e.to_string())?;
    let req = format!(
        "POST /mcp HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
         Accept: application/json, text/event-stream\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{INIT}",
        INIT.len()
    );
    tls.write_all(req.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    let _ = tls.read_to_end(&mut out).await;
    let text = String::from_utf8_lossy(&out).into_owned();
    text.lines()
        .next()
        .map(str::to_string)
        .filter(|l| l.starts_with("HTTP/"))
        .ok_or_else(|| format!("no HTTP answer: {text:?}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_listed_balancer_must_send_proxy_v2_and_the_client_address_is_what_counts() {
    let env = Env::with_ca();
    env.issue("alice", "admin");
    let server = Server::start(&env, &["--proxy-protocol-from", "127.0.0.0/8"]);

    let status = initialize_after(&env, &server, "alice", &proxy_v2([203, 0, 113, 9], 4242))
        .await
        .expect("TLS after the header");
    assert!(status.contains(" 200"), "{status}");
    wait_audit(&env, |v| {
        v["event"] == "handshake_ok" && v["peer"] == "203.0.113.9:4242" && v["name"] == "alice"
    });

    // From a listed address, no header is refused (and audited), not guessed.
    let from = audit_len(&env);
    assert!(post(&client_of(&env, "alice"), &server, INIT)
        .await
        .is_err());
    wait_audit_after(&env, from, |v| {
        v["event"] == "connection_refused"
            && v["reason"]
                .as_str()
                .is_some_and(|r| r.contains("did not start with a PROXY v2 header"))
    });
    // A header announcing more than the limit is refused before anything is read.
    let mut huge = proxy_v2([203, 0, 113, 9], 1);
    huge[14] = 0xff;
    assert!(initialize_after(&env, &server, "alice", &huge)
        .await
        .is_err());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_proxy_header_from_an_unlisted_address_is_never_believed() {
    let env = Env::with_ca();
    env.issue("alice", "admin");
    let server = Server::start(&env, &["--proxy-protocol-from", "10.9.9.9"]);
    // The header is not TLS: the handshake fails, and no audit line carries the claimed address.
    assert!(
        initialize_after(&env, &server, "alice", &proxy_v2([203, 0, 113, 9], 4242))
            .await
            .is_err()
    );
    let status = initialize_after(&env, &server, "alice", &[])
        .await
        .expect("a plain client still connects");
    assert!(status.contains(" 200"), "{status}");
    wait_audit(&env, |v| v["event"] == "handshake_ok");
    let log = std::fs::read_to_string(env.home.join("audit.log")).expect("audit");
    assert!(!log.contains("203.0.113.9"), "{log}");
}

#[test]
fn ledger_urls_are_checked_and_the_password_never_shows() {
    let env = Env::with_ca();
    env.run(&["--ledger", "mysql://u@h/d", "list"])
        .fails_with("postgres://");
    let r = env.run(&[
        "--ledger",
        "postgres://u:hunter2hunter2@127.0.0.1:1/d",
        "list",
    ]);
    r.fails_with("unreachable");
    assert!(!r.stderr.contains("hunter2"), "{r:?}");
    assert!(r.stderr.contains("u@127.0.0.1:1/d"), "{r:?}");
    env.run(&[
        "--ledger",
        "postgres://u@127.0.0.1:1/d?sslmode=require",
        "list",
    ])
    .fails_with("--ledger-ca");
    let help = std::process::Command::new(crate::common::bin())
        .arg("--help")
        .env("MCP_ZT_LEDGER", "postgres://u:hunter2hunter2@db/x")
        .output()
        .expect("help");
    assert!(!String::from_utf8_lossy(&help.stdout).contains("hunter2"));
}
