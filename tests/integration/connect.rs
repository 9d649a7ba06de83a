//! `mcp-zt connect`: the stdio and loopback-HTTP bridges, and client-config.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::{bin, Env};
use crate::server_env::{wait_audit, Server, INIT};

/// A running `connect` with line-based access to its stdio.
pub(crate) struct Bridge {
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
        let mut cmd = Command::new(bin());
        cmd.arg("--home").arg(&env.home).arg("connect").args(args);
        Bridge::spawn(cmd)
    }

    /// Starts `cmd` (a `connect` on stdio) with its stdin and stdout piped to the test.
    pub(crate) fn spawn(mut cmd: Command) -> Bridge {
        let mut child = cmd
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

    pub(crate) fn request(&mut self, id: i64, method: &str, params: Value) -> Value {
        self.send(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}));
        self.answer(id, Duration::from_secs(10))
    }
}

pub(crate) fn initialize(b: &mut Bridge) {
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

/// A running `connect --listen`, killed on drop.
pub(crate) struct Listener {
    child: Child,
    /// The URL from the url file, secret path included.
    pub(crate) url: String,
    url_file: std::path::PathBuf,
    /// Everything the bridge wrote on stderr so far arrives here, line by line.
    stderr: Receiver<String>,
}

impl Drop for Listener {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Listener {
    /// Starts `connect --listen 127.0.0.1:0 --url-file FILE` and reads the URL from FILE once
    /// the bridge says it listens.
    fn start(env: &Env, name: &str, server_url: &str, file: &str) -> Listener {
        let url_file = env.dir.path().join(file);
        let mut cmd = Command::new(bin());
        cmd.arg("--home")
            .arg(&env.home)
            .args(["connect", "--name", name]);
        Listener::spawn(cmd, url_file, server_url)
    }

    /// Starts `cmd` (a `connect` with its certificate options) with `--listen 127.0.0.1:0
    /// --url-file URL_FILE SERVER_URL` added.
    pub(crate) fn spawn(
        mut cmd: Command,
        url_file: std::path::PathBuf,
        server_url: &str,
    ) -> Listener {
        let mut child = cmd
            .args(["--listen", "127.0.0.1:0"])
            .arg("--url-file")
            .arg(&url_file)
            .arg(server_url)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let stdout = child.stdout.take().expect("stdout");
        let mut first = String::new();
        BufReader::new(stdout).read_line(&mut first).expect("read");
        assert!(first.starts_with("listening 127.0.0.1:"), "{first:?}");
        let url = std::fs::read_to_string(&url_file).expect("url file written before listening");
        Listener {
            child,
            url: url.trim_end().to_string(),
            url_file,
            stderr: rx,
        }
    }

    /// The URL's origin, `http://127.0.0.1:PORT`.
    fn origin(&self) -> String {
        let rest = self.url.strip_prefix("http://").expect("http URL");
        let host = rest.split('/').next().expect("host");
        format!("http://{host}")
    }
}

async fn post_to(url: &str, body: &'static str) -> reqwest::Response {
    reqwest::Client::new()
        .post(url)
        .header("Accept", "application/json, text/event-stream")
        .header("Content-Type", "application/json")
        .body(body)
        .send()
        .await
        .expect("post")
}

#[tokio::test(flavor = "multi_thread")]
async fn listen_bridge_serves_loopback_http_with_host_and_origin_checks() {
    let env = Env::with_ca();
    env.issue("erin", "editor");
    let server = Server::start(&env, &[]);
    let l = Listener::start(&env, "erin", &server.url(), "erin.url");
    let url = l.url.clone();
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
    drop(l);

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

#[tokio::test(flavor = "multi_thread")]
async fn listen_bridge_answers_404_without_the_secret_path() {
    let env = Env::with_ca();
    env.issue("erin", "editor");
    let server = Server::start(&env, &[]);
    let l = Listener::start(&env, "erin", &server.url(), "erin.url");
    let origin = l.origin();
    let secret = l
        .url
        .strip_prefix(&format!("{origin}/"))
        .and_then(|s| s.strip_suffix("/mcp"))
        .expect("URL shape http://127.0.0.1:PORT/<secret>/mcp")
        .to_string();
    // 256 bits, base64url without padding.
    assert_eq!(secret.len(), 43, "{secret}");

    // What any unknown path gets: the bar every guess is held to.
    let unknown = post_to(&format!("{origin}/nothing-here"), INIT).await;
    assert_eq!(unknown.status(), 404);
    let unknown_body = unknown.bytes().await.expect("body");

    // No secret at all: the old endpoint is gone.
    let r = post_to(&format!("{origin}/mcp"), INIT).await;
    assert_eq!(r.status(), 404);
    assert_eq!(r.bytes().await.expect("body"), unknown_body);
    // A wrong secret of the same length, differing in one character only.
    let mut wrong = secret.clone().into_bytes();
    wrong[42] = if wrong[42] == b'A' { b'B' } else { b'A' };
    let wrong = String::from_utf8(wrong).expect("ascii");
    let r = post_to(&format!("{origin}/{wrong}/mcp"), INIT).await;
    assert_eq!(r.status(), 404);
    assert_eq!(r.bytes().await.expect("body"), unknown_body);
    // The secret without /mcp, or in another place, is not the endpoint either.
    for path in [
        format!("/{secret}"),
        format!("/mcp/{secret}"),
        format!("/{secret}/mcp/"),
    ] {
        let r = post_to(&format!("{origin}{path}"), INIT).await;
        assert_eq!(r.status(), 404, "{path}");
    }
    // A request without the secret gets 404 even with a hostile Host: no hint either way.
    let r = reqwest::Client::new()
        .post(format!("{origin}/mcp"))
        .header("Host", "evil.example")
        .body(INIT)
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 404);

    // The secret URL works.
    let r = post_to(&l.url, INIT).await;
    assert_eq!(r.status(), 200);
    assert!(r.text().await.expect("body").contains("\"serverInfo\""));

    // The URL file is private and holds exactly the URL printed on stderr.
    assert_eq!(mcp_zt::fsutil::mode_of(&l.url_file).expect("mode"), 0o600);
    let printed = loop {
        let line = l
            .stderr
            .recv_timeout(Duration::from_secs(5))
            .expect("stderr line with the URL");
        if let Some(u) = line.strip_prefix("mcp-zt connect: MCP clients connect to ") {
            break u.to_string();
        }
    };
    assert_eq!(printed, l.url);
    assert_eq!(
        std::fs::read_to_string(&l.url_file).expect("url file"),
        format!("{printed}\n")
    );

    // A second launch gets another secret; the first one's URL does not open the second.
    let second = Listener::start(&env, "erin", &server.url(), "second.url");
    assert_ne!(second.url, l.url);
    let second_with_first_secret = format!("{}/{secret}/mcp", second.origin());
    assert_eq!(post_to(&second_with_first_secret, INIT).await.status(), 404);
    drop(second);

    // SIGTERM ends the bridge cleanly and takes the URL file with it.
    let mut l = l;
    let pid = l.child.id().to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(5);
    let status = loop {
        if let Some(s) = l.child.try_wait().expect("wait") {
            break s;
        }
        assert!(Instant::now() < deadline, "bridge did not exit on SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(0));
    assert!(!l.url_file.exists(), "the URL file outlived the bridge");

    // --url-file without --listen is refused.
    let out = env.run(&[
        "connect",
        "--name",
        "erin",
        "--url-file",
        "x",
        &server.url(),
    ]);
    assert_ne!(out.code, Some(0), "{out:?}");
    assert!(out.stderr.contains("--listen"), "{out:?}");
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
fn client_config_for_json_explains_the_per_launch_listen_url() {
    let env = Env::with_ca();
    env.issue("alice", "admin");
    let out = env.run(&[
        "client-config",
        "alice",
        "--url",
        "https://mcp.example.org:8443/mcp",
        "--for",
        "json",
    ]);
    let v: Value = serde_json::from_str(out.ok()).expect("json");
    assert!(v["command"].is_string(), "{v}");
    let hint = out
        .stderr
        .lines()
        .find(|l| l.contains("--listen"))
        .unwrap_or_else(|| panic!("no --listen hint in {out:?}"));
    assert!(
        hint.contains("--listen 127.0.0.1:0 --url-file FILE https://mcp.example.org:8443/mcp"),
        "{hint}"
    );
    assert!(hint.contains("every launch"), "{hint}");
    // Clients launched over stdio need none of that.
    let out = env.run(&[
        "client-config",
        "alice",
        "--url",
        "https://mcp.example.org:8443/mcp",
        "--for",
        "claude-desktop",
    ]);
    out.ok();
    assert!(!out.stderr.contains("--url-file"), "{out:?}");
}

/// A TLS server with the mcp-zt server's own certificate that answers every request with a
/// redirect to another path on itself, and counts the requests.
fn redirecting_server(env: &Env) -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    use std::io::Read;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    let dir = env.home.join("server");
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(dir.join("server.crt"))
        .expect("server.crt")
        .collect::<Result<_, _>>()
        .expect("certs");
    let key = PrivateKeyDer::from_pem_file(dir.join("server.key")).expect("server.key");
    let config = Arc::new(
        rustls::ServerConfig::builder_with_provider(mcp_zt::tls::provider())
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .expect("config"),
    );
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    std::thread::spawn(move || {
        for tcp in listener.incoming().map_while(Result::ok) {
            let Ok(conn) = rustls::ServerConnection::new(config.clone()) else {
                continue;
            };
            let mut tls = rustls::StreamOwned::new(conn, tcp);
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && tls.read(&mut byte).is_ok_and(|n| n == 1) {
                head.push(byte[0]);
            }
            let text = String::from_utf8_lossy(&head).to_ascii_lowercase();
            let len = text
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|n| n.trim().parse::<usize>().ok())
                .unwrap_or(0);
            let mut body = vec![0u8; len];
            let _ = tls.read_exact(&mut body);
            seen.fetch_add(1, Ordering::SeqCst);
            let answer = format!(
                "HTTP/1.1 307 Temporary Redirect\r\nLocation: https://localhost:{port}/elsewhere\r\n\
                 Content-Length: 0\r\nConnection: close\r\n\r\n"
            );
            let _ = tls.write_all(answer.as_bytes());
            let _ = tls.flush();
            tls.conn.send_close_notify();
            let _ = tls.flush();
        }
    });
    (port, count)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_bridge_does_not_follow_redirects() {
    use std::sync::atomic::Ordering;
    let env = Env::with_ca();
    env.issue("vic", "viewer");
    // `serve` leaves its certificate in HOME/server; the redirecting server borrows it, so the
    // bridge trusts it as it would the real one.
    drop(Server::start(&env, &[]));
    let (port, count) = redirecting_server(&env);
    let url = format!("https://localhost:{port}/mcp");

    // stdio: the client gets an error naming the redirect; the bridge asked once.
    let mut b = Bridge::start(&env, &["--name", "vic", &url]);
    let init: Value = serde_json::from_str(INIT).expect("json");
    b.send(&init);
    let r = b.answer(1, Duration::from_secs(10));
    let msg = r["error"]["message"].as_str().unwrap_or_default();
    assert!(
        msg.contains("redirect") && msg.contains("/elsewhere"),
        "{r}"
    );
    assert_eq!(count.load(Ordering::SeqCst), 1);
    drop(b);

    // --listen: a 502 with the same error, and again one request upstream.
    let l = Listener::start(&env, "vic", &url, "vic.url");
    let r = post_to(&l.url, INIT).await;
    assert_eq!(r.status(), 502);
    let text = r.text().await.expect("body");
    assert!(text.contains("does not follow redirects"), "{text}");
    assert_eq!(count.load(Ordering::SeqCst), 2);
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
