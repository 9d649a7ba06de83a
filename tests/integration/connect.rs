//! `mcp-zt connect`: the stdio and loopback-HTTP bridges, and client-config.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::{bin, Env};
use crate::server_env::{wait_audit, Server, INIT};

/// A running `connect` with line-based access to its stdio.
struct Bridge {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<Value>,
}

impl Drop for Bridge {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Bridge {
    fn start(env: &Env, args: &[&str]) -> Bridge {
        let mut child = Command::new(bin())
            .arg("--home")
            .arg(&env.home)
            .arg("connect")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start connect");
        let stdout = child.stdout.take().expect("stdout");
        let stdin = child.stdin.take().expect("stdin");
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    let _ = tx.send(v);
                }
            }
        });
        Bridge {
            child,
            stdin: Some(stdin),
            lines,
        }
    }

    fn send(&mut self, v: &Value) {
        self.send_raw(&v.to_string());
    }

    fn send_raw(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        writeln!(stdin, "{line}").expect("write to bridge");
        stdin.flush().expect("flush");
    }

    /// The next message that answers request `id` (notifications are skipped).
    fn answer(&self, id: i64, within: Duration) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let v = self
                .lines
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no answer to request {id} within {within:?}"));
            if v["id"] == id {
                return v;
            }
        }
    }

    fn request(&mut self, id: i64, method: &str, params: Value) -> Value {
        self.send(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}));
        self.answer(id, Duration::from_secs(10))
    }
}

fn initialize(b: &mut Bridge) {
    let init: Value = serde_json::from_str(INIT).expect("init json");
    b.send(&init);
    let r = b.answer(1, Duration::from_secs(10));
    assert_eq!(r["result"]["serverInfo"]["name"], "mcp-zt", "{r}");
    b.send(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
}

#[test]
fn stdio_bridge_forwards_and_reports_revocation_then_exits_non_zero() {
    let env = Env::with_ca();
    env.issue("erin", "editor");
    let server = Server::start(&env, &["--lockout-threshold", "0"]);
    let mut b = Bridge::start(&env, &["--name", "erin", &server.url()]);
    initialize(&mut b);
    let tools = b.request(2, "tools/list", json!({}));
    let names: Vec<&str> = tools["result"]["tools"]
        .as_array()
        .expect("tools")
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert_eq!(names, ["whoami", "read_data", "list_keys", "write_data"]);
    let who = b.request(3, "tools/call", json!({"name": "whoami", "arguments": {}}));
    assert_eq!(who["result"]["structuredContent"]["name"], "erin", "{who}");
    // A forbidden tool comes back as the server's error, unchanged.
    let denied = b.request(
        4,
        "tools/call",
        json!({"name": "delete_data", "arguments": {"key": "k"}}),
    );
    assert_eq!(denied["error"]["message"], "tool not found", "{denied}");
    wait_audit(&env, |v| {
        v["event"] == "session_created" && v["name"] == "erin"
    });

    env.run(&["revoke", "erin"]).ok();
    let start = Instant::now();
    b.send(&json!({"jsonrpc": "2.0", "id": 5, "method": "tools/call",
        "params": {"name": "whoami", "arguments": {}}}));
    let err = b.answer(5, Duration::from_secs(2));
    let msg = err["error"]["message"].as_str().unwrap_or_default();
    assert!(msg.contains("revoked"), "{err}");
    assert!(start.elapsed() < Duration::from_secs(2));
    let deadline = Instant::now() + Duration::from_secs(5);
    let status = loop {
        if let Some(s) = b.child.try_wait().expect("wait") {
            break s;
        }
        assert!(Instant::now() < deadline, "bridge did not exit");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(3));
}

#[test]
fn stdio_bridge_exits_zero_when_the_client_closes() {
    let env = Env::with_ca();
    env.issue("vic", "viewer");
    let server = Server::start(&env, &[]);
    let mut b = Bridge::start(&env, &["--name", "vic", &server.url()]);
    initialize(&mut b);
    let r = b.request(2, "tools/call", json!({"name": "whoami", "arguments": {}}));
    assert_eq!(r["result"]["structuredContent"]["role"], "viewer");
    // Malformed input gets a JSON-RPC parse error, and the bridge keeps going.
    b.send_raw("{not json");
    let parse = b
        .lines
        .recv_timeout(Duration::from_secs(5))
        .expect("parse error");
    assert_eq!(parse["error"]["code"], -32700);
    let r = b.request(3, "tools/call", json!({"name": "whoami", "arguments": {}}));
    assert!(r["result"].is_object(), "{r}");
    drop(b.stdin.take());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(s) = b.child.try_wait().expect("wait") {
            assert_eq!(s.code(), Some(0));
            break;
        }
        assert!(Instant::now() < deadline, "bridge did not exit");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_refused_certificate_is_reported_at_the_first_call() {
    let env = Env::with_ca();
    env.issue("vic", "viewer");
    let other = Env::with_ca();
    let server = Server::start(&other, &["--lockout-threshold", "0"]);
    // vic's certificate is from another CA: the server refuses it; vic's CA does not trust the
    // server's certificate either.
    let mut b = Bridge::start(&env, &["--name", "vic", &server.url()]);
    let init: Value = serde_json::from_str(INIT).expect("json");
    b.send(&init);
    let r = b.answer(1, Duration::from_secs(10));
    let msg = r["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        msg.contains("not trusted") || msg.contains("refused"),
        "{r}"
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(s) = b.child.try_wait().expect("wait") {
            assert_eq!(s.code(), Some(3));
            break;
        }
        assert!(Instant::now() < deadline, "bridge did not exit");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn listen_bridge_serves_loopback_http_with_host_and_origin_checks() {
    let env = Env::with_ca();
    env.issue("erin", "editor");
    let server = Server::start(&env, &[]);
    let mut child = Command::new(bin())
        .arg("--home")
        .arg(&env.home)
        .args([
            "connect",
            "--name",
            "erin",
            "--listen",
            "127.0.0.1:0",
            &server.url(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start");
    let stdout = child.stdout.take().expect("stdout");
    let mut first = String::new();
    BufReader::new(stdout).read_line(&mut first).expect("read");
    let addr = first
        .trim()
        .strip_prefix("listening ")
        .expect("listening line")
        .to_string();
    let url = format!("http://{addr}/mcp");
    let http = reqwest::Client::new();
    let post = |body: &'static str| {
        http.post(&url)
            .header("Accept", "application/json, text/event-stream")
            .header("Content-Type", "application/json")
            .body(body)
    };
    let r = post(INIT).send().await.expect("init");
    assert_eq!(r.status(), 200);
    let sid = r
        .headers()
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .expect("session id")
        .to_string();
    let text = r.text().await.expect("body");
    assert!(text.contains("\"serverInfo\""), "{text}");
    let r = post(r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#)
        .header("Mcp-Session-Id", &sid)
        .send()
        .await
        .expect("list");
    let text = r.text().await.expect("body");
    assert!(
        text.contains("write_data") && !text.contains("delete_data"),
        "{text}"
    );
    let r = post(INIT)
        .header("Origin", "https://evil.example")
        .send()
        .await
        .expect("origin");
    assert_eq!(r.status(), 403);
    let r = post(INIT)
        .header("Host", "evil.example")
        .send()
        .await
        .expect("host");
    assert_eq!(r.status(), 403);
    let _ = child.kill();
    let _ = child.wait();

    // Non-loopback addresses are refused.
    let out = env.run(&[
        "connect",
        "--name",
        "erin",
        "--listen",
        "0.0.0.0:0",
        &server.url(),
    ]);
    out.fails_with("only loopback");
}

#[test]
fn client_config_prints_ready_to_paste_json_with_absolute_paths() {
    let env = Env::with_ca();
    env.issue("alice", "admin");
    for (kind, top) in [
        ("claude-desktop", "mcpServers"),
        ("claude-code", "mcpServers"),
        ("vscode", "servers"),
        ("cursor", "mcpServers"),
    ] {
        let out = env.run(&[
            "client-config",
            "alice",
            "--url",
            "https://mcp.example.org:8443/mcp",
            "--for",
            kind,
        ]);
        let v: Value = serde_json::from_str(out.ok()).expect("json");
        let server = &v[top]["mcp-zt"];
        let command = server["command"].as_str().expect("command");
        assert!(std::path::Path::new(command).is_absolute(), "{v}");
        let args: Vec<&str> = server["args"]
            .as_array()
            .expect("args")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert_eq!(args[0], "--home");
        assert!(std::path::Path::new(args[1]).is_absolute());
        assert_eq!(
            &args[2..],
            [
                "connect",
                "--name",
                "alice",
                "https://mcp.example.org:8443/mcp"
            ]
        );
    }
    env.run(&[
        "client-config",
        "nobody",
        "--url",
        "https://x/mcp",
        "--for",
        "json",
    ])
    .fails_with("does not exist");
}

#[test]
fn stdio_bridge_reinitializes_after_the_server_restarts() {
    let env = Env::with_ca();
    env.issue("vic", "viewer");
    let first = Server::start(&env, &[]);
    let port = first.port;
    let url = first.url();
    let mut b = Bridge::start(&env, &["--name", "vic", &url]);
    initialize(&mut b);
    let r = b.request(2, "tools/call", json!({"name": "whoami", "arguments": {}}));
    assert!(r["result"].is_object(), "{r}");
    // The server goes away and comes back on the same port: the session is gone.
    drop(first);
    let _second = Server::start_on(&env, port, &[]);
    let r = b.request(3, "tools/call", json!({"name": "whoami", "arguments": {}}));
    assert_eq!(r["result"]["structuredContent"]["name"], "vic", "{r}");
    wait_audit(&env, |v| {
        v["event"] == "session_created" && v["name"] == "vic"
    });
}
