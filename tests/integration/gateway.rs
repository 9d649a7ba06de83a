//! The gateway end to end with mcp-zt itself as the upstream: a second mcp-zt server fronted
//! over streamable HTTP (https with a client certificate), or through `mcp-zt connect` run as a
//! stdio child (one per certificate). No third-party runtime is needed; the interop scripts do
//! the same with the official SDKs' servers and clients.

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use rmcp::model::CallToolRequestParams;

use crate::common::{bin, Env};
use crate::server_env::{audit_len, mcp, wait_audit, wait_audit_after, Server};

fn write_upstreams(env: &Env, text: &str) {
    let path = env.home.join("upstreams.toml");
    std::fs::write(&path, text).expect("upstreams.toml");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
}

fn allow(env: &Env, role: &str, rules: &str) {
    let path = env.home.join("policy.toml");
    let text = std::fs::read_to_string(&path).expect("policy");
    let head = format!("[roles.{role}]\n");
    assert!(text.contains(&head), "no {head} in the default policy");
    let text = text.replacen(&head, &format!("{head}allow = [{rules}]\n"), 1);
    std::fs::write(&path, text).expect("policy");
}

/// The holder name in a `whoami` answer (its structured content).
fn text_of(r: &rmcp::model::CallToolResult) -> String {
    let name = r
        .structured_content
        .as_ref()
        .and_then(|v| v.get("name"))
        .and_then(|v| v.as_str())
        .unwrap_or("");
    format!("\"name\":\"{name}\"")
}

async fn call(
    client: &rmcp::service::RunningService<rmcp::RoleClient, ()>,
    name: &str,
) -> Result<rmcp::model::CallToolResult, rmcp::ServiceError> {
    client
        .call_tool(CallToolRequestParams::new(name.to_string()))
        .await
}

/// An upstream mcp-zt (its own CA) with a certificate `gw` for the gateway.
fn upstream_server() -> (Env, Server) {
    let up = Env::with_ca();
    up.issue("gw", "admin");
    let server = Server::start(&up, &[]);
    (up, server)
}

#[tokio::test(flavor = "multi_thread")]
async fn an_https_upstream_is_gated_per_role_and_its_outage_is_a_tool_error_then_it_returns() {
    let (up, up_server) = upstream_server();
    let front = Env::with_ca();
    let clients = up.home.join("clients");
    write_upstreams(
        &front,
        &format!(
            "[upstreams.a]\nurl = \"{}\"\nca = \"{}\"\nclient_cert = {{ cert = \"{}\", key = \"{}\" }}\ntimeout = \"5s\"\n",
            up_server.url(),
            up.home.join("ca.crt").display(),
            clients.join("gw.crt").display(),
            clients.join("gw.key").display(),
        ),
    );
    allow(&front, "viewer", r#""tool:a__whoami""#);
    front.issue("vic", "viewer");
    let server = Server::start(&front, &[]);
    let vic = mcp(&front, &server, "vic").await.expect("viewer session");

    let names: BTreeSet<String> = vic
        .list_tools(Default::default())
        .await
        .expect("list")
        .tools
        .iter()
        .map(|t| t.name.to_string())
        .collect();
    let want: BTreeSet<String> = ["a__whoami", "list_keys", "read_data", "whoami"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(names, want);

    // The upstream sees the gateway's certificate, not the caller's.
    let r = call(&vic, "a__whoami").await.expect("a__whoami");
    assert!(text_of(&r).contains("\"name\":\"gw\""), "{r:?}");
    wait_audit(&front, |v| {
        v["event"] == "upstream_call"
            && v["upstream"] == "a"
            && v["outcome"] == "ok"
            && v["name"] == "vic"
    });

    // Hidden and missing answer alike.
    let hidden = call(&vic, "a__list_certs").await.expect_err("hidden");
    let missing = call(&vic, "a__no_such_tool").await.expect_err("missing");
    assert_eq!(hidden.to_string(), missing.to_string());
    wait_audit(&front, |v| {
        v["event"] == "tool_denied"
            && v["tool"] == "a__list_certs"
            && v["reason"]
                .as_str()
                .is_some_and(|r| r.contains("may not call"))
    });

    // The upstream goes away: its tools leave the list, a call is a readable tool error.
    let port = up_server.port;
    let offset = audit_len(&front);
    drop(up_server);
    let r = call(&vic, "a__whoami").await;
    match r {
        Ok(r) => assert_eq!(r.is_error, Some(true), "{r:?}"),
        Err(e) => assert!(e.to_string().contains("tool not found"), "{e}"),
    }
    wait_audit_after(&front, offset, |v| v["event"] == "upstream_down");

    // It comes back on the same port: the gateway reconnects and the tool works again.
    let _up_again = Server::start_on(&up, port, &[]);
    wait_audit_after(&front, offset, |v| v["event"] == "upstream_up");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(r) = call(&vic, "a__whoami").await {
            if r.is_error != Some(true) {
                break;
            }
        }
        assert!(Instant::now() < deadline, "a__whoami did not come back");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn per_identity_children_are_one_per_certificate_and_revocation_stops_one_at_once() {
    let (up, up_server) = upstream_server();
    let front = Env::with_ca();
    write_upstreams(
        &front,
        &format!(
            "[upstreams.a]\ncommand = \"{}\"\nargs = [\"--home\", \"{}\", \"connect\", \"--name\", \"gw\", \"{}\"]\nshare = \"per-identity\"\n",
            bin(),
            up.home.display(),
            up_server.url()
        ),
    );
    allow(&front, "admin", r#""tool:*""#);
    front.issue("alice", "admin");
    front.issue("bob", "admin");
    let server = Server::start(&front, &[]);
    let alice = mcp(&front, &server, "alice").await.expect("alice");
    let bob = mcp(&front, &server, "bob").await.expect("bob");
    for c in [&alice, &bob] {
        let r = call(c, "a__whoami").await.expect("a__whoami");
        assert!(text_of(&r).contains("\"name\":\"gw\""), "{r:?}");
    }
    let pid_of = |name: &str| -> u32 {
        let v = wait_audit(&front, |v| {
            v["event"] == "upstream_child_started" && v["name"] == name
        });
        v["reason"]
            .as_str()
            .and_then(|r| r.rsplit("pid ").next())
            .and_then(|p| p.trim().parse().ok())
            .expect("pid in the audit line")
    };
    let (pa, pb) = (pid_of("alice"), pid_of("bob"));
    assert_ne!(pa, pb, "one child per certificate");
    let alive = |pid: u32| {
        std::path::Path::new(&format!("/proc/{pid}")).exists()
            && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .unwrap_or_default()
                .contains(") Z ")
    };

    let revoked_at = Instant::now();
    front.run(&["revoke", "bob"]).ok();
    while alive(pb) {
        assert!(
            revoked_at.elapsed() < Duration::from_secs(1),
            "bob's child {pb} still runs 1 s after the revocation"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    wait_audit(&front, |v| v["event"] == "upstream_child_stopped");
    assert!(alive(pa), "alice's child must keep running");
    let r = call(&alice, "a__whoami").await.expect("alice still works");
    assert!(text_of(&r).contains("\"name\":\"gw\""));
    assert_eq!(pid_of("alice"), pa);
}

#[test]
fn a_name_offered_twice_refuses_to_serve_and_check_names_both() {
    let (up, up_server) = upstream_server();
    let front = Env::with_ca();
    // `whoami` is a built-in tool: an upstream exposing it without a prefix clashes.
    write_upstreams(
        &front,
        &format!(
            "[upstreams.a]\ncommand = \"{}\"\nargs = [\"--home\", \"{}\", \"connect\", \"--name\", \"gw\", \"{}\"]\nprefix = \"\"\n",
            bin(),
            up.home.display(),
            up_server.url()
        ),
    );
    let check = front.run(&["upstream", "check"]);
    assert_eq!(check.code, Some(1), "{check:?}");
    assert!(
        check
            .stderr
            .contains("\"whoami\" is offered by both builtin and a"),
        "{check:?}"
    );
    let serve = front.run(&["serve", "--listen", "127.0.0.1:0"]);
    assert_eq!(serve.code, Some(1), "{serve:?}");
    assert!(
        serve
            .stderr
            .contains("\"whoami\" is offered by both builtin and a")
            && serve.stderr.contains("refusing to serve"),
        "{serve:?}"
    );
    // With the default prefix both load.
    write_upstreams(
        &front,
        &format!(
            "[upstreams.a]\ncommand = \"{}\"\nargs = [\"--home\", \"{}\", \"connect\", \"--name\", \"gw\", \"{}\"]\n",
            bin(),
            up.home.display(),
            up_server.url()
        ),
    );
    let check = front.run(&["upstream", "check", "--json"]);
    let v: serde_json::Value = serde_json::from_str(check.ok()).expect("json");
    assert_eq!(v["clashes"], serde_json::json!([]));
    assert!(v["upstreams"][0]["tools"]
        .as_array()
        .is_some_and(|t| t.iter().any(|n| n == "whoami")));
}

/// Whether process `pid` still exists.
fn alive(pid: &str) -> bool {
    std::process::Command::new("kill")
        .args(["-0", pid])
        .stderr(std::process::Stdio::null())
        .status()
        .expect("kill -0")
        .success()
}

fn signal(server: &Server, sig: &str) {
    let status = std::process::Command::new("kill")
        .args([sig, &server.child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
}

#[test]
fn stdio_children_are_stopped_gracefully_at_reload_and_at_shutdown() {
    use crate::upstream_cli::CHATTY_SERVER;
    let env = Env::with_ca();
    let entry = |name: &str| {
        let script = env.path(&format!("{name}.sh"));
        std::fs::write(&script, CHATTY_SERVER).expect("script");
        format!(
            "[upstreams.{name}]\ncommand = \"/bin/sh\"\nargs = [\"{}\"]\n",
            script.display()
        )
    };
    let (a, b) = (entry("a"), entry("b"));
    write_upstreams(&env, &format!("{a}{b}"));
    let errors = env.path("serve.err");
    let mut server = Server::start_logging(&env, &[], &errors);
    for name in ["a", "b"] {
        wait_audit(&env, |v| {
            v["event"] == "upstream_up" && v["item"] == format!("upstream:{name}").as_str()
        });
    }
    let pid = |name: &str| {
        std::fs::read_to_string(env.path(&format!("{name}.sh.pid")))
            .expect("pid")
            .trim()
            .to_string()
    };
    let log = |name: &str| std::fs::read_to_string(env.path(&format!("{name}.sh.log")));
    let (pid_a, pid_b) = (pid("a"), pid("b"));

    // A reload without `a`: its stdin is closed; it keeps writing (drained), so after the 2 s
    // grace it gets SIGTERM. `b` is untouched.
    write_upstreams(&env, &b);
    signal(&server, "-HUP");
    let deadline = Instant::now() + Duration::from_secs(10);
    while alive(&pid_a) {
        assert!(Instant::now() < deadline, "a was not stopped");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(log("a").expect("a's log"), "term\n");
    assert!(alive(&pid_b), "b keeps running");

    // Shutdown: the server exits only once `b` has been stopped the same way.
    signal(&server, "-TERM");
    let deadline = Instant::now() + Duration::from_secs(15);
    while server.child.try_wait().expect("wait").is_none() {
        assert!(Instant::now() < deadline, "server did not stop");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!alive(&pid_b), "b is gone when the server has exited");
    assert_eq!(log("b").expect("b's log"), "term\n");
    let stderr = std::fs::read_to_string(&errors).expect("stderr");
    assert!(!stderr.contains("EPIPE"), "{stderr}");
    assert!(
        !stderr.contains("chatty:"),
        "what children say once stopping is dropped: {stderr}"
    );
}
