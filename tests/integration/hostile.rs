//! Hostile input at the edges: TLS bytes, idle and slow connections, headers, CLI usage, and a
//! CA home damaged behind mcp-zt's back. Each test is a row of docs/bad-input.md.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::common::{mode, Env};
use crate::server_env::{
    audit_len, client_of, post, post_with_header, wait_audit, wait_audit_after, Server, INIT,
};

#[test]
fn slow_loris_handshake_is_dropped_after_the_timeout() {
    let env = Env::with_ca();
    let server = Server::start(
        &env,
        &["--handshake-timeout", "1s", "--lockout-threshold", "0"],
    );
    let mut tcp = TcpStream::connect(("127.0.0.1", server.port)).expect("connect");
    // Half a ClientHello record header, then nothing.
    tcp.write_all(&[0x16, 0x03]).expect("write");
    tcp.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let start = Instant::now();
    let mut buf = [0u8; 64];
    let n = tcp.read(&mut buf).unwrap_or(0);
    assert_eq!(n, 0, "the server must close, not answer");
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_millis(800) && waited < Duration::from_secs(4),
        "{waited:?}"
    );
    wait_audit(&env, |v| {
        v["event"] == "handshake_incomplete" && v["reason"] == "handshake timeout"
    });
}

#[test]
fn garbage_instead_of_a_client_hello_is_refused_and_audited() {
    let env = Env::with_ca();
    env.issue("alice", "admin");
    let server = Server::start(&env, &["--lockout-threshold", "0"]);
    for junk in [
        &b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..],
        &[0xff; 512],
        &[0x16, 0x03, 0x01, 0xff, 0xff, 0x01],
    ] {
        let mut tcp = TcpStream::connect(("127.0.0.1", server.port)).expect("connect");
        tcp.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let _ = tcp.write_all(junk);
        let mut buf = Vec::new();
        let _ = tcp.read_to_end(&mut buf);
        // At most a TLS alert record comes back, never an HTTP answer.
        assert!(buf.is_empty() || buf[0] == 0x15, "{buf:02x?}");
    }
    wait_audit(&env, |v| {
        v["event"] == "handshake_incomplete"
            && v["reason"].as_str().is_some_and(|r| r.starts_with("TLS"))
    });
    let rt = tokio::runtime::Runtime::new().expect("rt");
    let ok = rt
        .block_on(post(&client_of(&env, "alice"), &server, INIT))
        .expect("good client");
    assert_eq!(ok.status(), 200);
}

#[test]
fn connections_beyond_the_cap_are_closed_and_audited() {
    let env = Env::with_ca();
    env.issue("alice", "admin");
    let server = Server::start(
        &env,
        &["--max-connections", "2", "--handshake-timeout", "5s"],
    );
    // Two idle TCP connections hold both slots.
    let _a = TcpStream::connect(("127.0.0.1", server.port)).expect("a");
    let _b = TcpStream::connect(("127.0.0.1", server.port)).expect("b");
    let before = audit_len(&env);
    let mut c = TcpStream::connect(("127.0.0.1", server.port)).expect("c");
    c.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut buf = [0u8; 8];
    assert_eq!(
        c.read(&mut buf).unwrap_or(0),
        0,
        "the third connection is closed at once"
    );
    wait_audit_after(&env, before, |v| {
        v["event"] == "connection_refused" && v["reason"] == "connection limit reached"
    });
}

#[tokio::test(flavor = "multi_thread")]
async fn oversized_headers_and_wrong_host_get_4xx() {
    let env = Env::with_ca();
    env.issue("alice", "admin");
    let server = Server::start(&env, &[]);
    let c = client_of(&env, "alice");
    let r = c
        .post(server.url())
        .header("Accept", "application/json, text/event-stream")
        .header("Content-Type", "application/json")
        .header("X-Padding", "a".repeat(512 * 1024))
        .body(INIT)
        .send()
        .await;
    match r {
        Ok(resp) => assert!(resp.status().is_client_error(), "{}", resp.status()),
        // HTTP/2 refuses an oversized header block at the protocol level.
        Err(e) => assert!(e.is_request() || e.is_body(), "{e:?}"),
    }
    let r = post_with_header(&c, &server, ("Host", "evil.example"), INIT)
        .await
        .expect("answer");
    assert_eq!(r.status(), 403, "DNS-rebinding Host");
    assert_eq!(post(&c, &server, INIT).await.expect("ok").status(), 200);
}

#[test]
fn usage_errors_exit_2_with_help() {
    let env = Env::with_ca();
    for args in [
        &["issue", "--name", "x"][..],
        &["frobnicate"],
        &["revoke"],
        &["issue", "--role", "viewer", "--name", "x", "--p12"],
    ] {
        let r = env.run(args);
        assert_eq!(r.code, Some(2), "{args:?}: {r:?}");
        assert!(!r.stderr.contains("panicked"));
        assert!(
            r.stderr.contains("Usage") || r.stderr.contains("error:"),
            "{r:?}"
        );
    }
    env.run_in(
        &env.path("h2"),
        &["ca", "init", "--trust-domain", "Not A Domain"],
    )
    .fails_with("invalid trust domain");
}

#[test]
fn doctor_finds_damage_and_repairs_the_crl() {
    let env = Env::with_ca();
    let serial = env.issue("alice", "viewer");
    env.issue("bob", "viewer");
    env.run(&["doctor"]).ok();
    // A revocation that reached the ledger but not the CRL (as after a crash): put back an
    // older CRL.
    let old_crl = std::fs::read(env.home.join("crl.pem")).expect("crl");
    env.run(&["revoke", &serial]).ok();
    std::fs::write(env.home.join("crl.pem"), &old_crl).expect("restore old crl");
    let r = env.run(&["doctor"]);
    assert_eq!(r.code, Some(1), "{r:?}");
    assert!(r.stdout.contains("missing from crl.pem"), "{r:?}");
    // A certificate file the ledger never saw.
    let other = Env::with_ca();
    other.issue("mallory", "admin");
    std::fs::copy(
        other.home.join("clients/mallory.crt"),
        env.home.join("clients/mallory.crt"),
    )
    .expect("copy");
    let r = env.run(&["doctor", "--json"]);
    let findings: Vec<serde_json::Value> = serde_json::from_str(&r.stdout).expect("json");
    assert!(
        findings
            .iter()
            .any(|f| f["check"] == "files" && f["severity"] == "error"),
        "{findings:?}"
    );
    std::fs::remove_file(env.home.join("clients/mallory.crt")).expect("rm");
    // A loose intermediate key.
    {
        use std::os::unix::fs::PermissionsExt;
        let key = crate::common::signing_key(&env.home);
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let shown = key
            .strip_prefix(&env.home)
            .expect("in HOME")
            .display()
            .to_string();
        assert!(env
            .run(&["doctor"])
            .stdout
            .contains(&format!("{shown} has mode 0644")));
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        assert_eq!(mode(&key), 0o600);
    }
    // --repair republishes the CRL; then everything is clean.
    env.run(&["doctor", "--repair"]).ok();
    let r = env.run(&["doctor"]);
    assert!(r.ok().contains("0 error(s)"), "{r:?}");
}

/// Runs `mcp-zt --home HOME ARGS` inside a private mount namespace after `setup` (shell) ran
/// there: the mounts vanish with the process. Needs root, as the CI machine is.
fn in_mount_namespace(env: &Env, setup: &str, args: &str) -> crate::common::Run {
    let script = format!(
        "set -e; {setup}; exec {} --home {} {args}",
        crate::common::bin(),
        env.home.display()
    );
    let out = std::process::Command::new("unshare")
        .args(["-m", "sh", "-c", &script])
        .output()
        .expect("unshare (util-linux) must be installed");
    crate::common::Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[test]
fn a_full_disk_during_issuance_gives_a_clear_error_and_no_partial_files() {
    let env = Env::with_ca();
    let out = env.path("out");
    std::fs::create_dir(&out).expect("mkdir");
    let o = out.display();
    // A 16 KiB tmpfs, filled up: the key and certificate cannot be written.
    let r = in_mount_namespace(
        &env,
        &format!("mount -t tmpfs -o size=16k tmpfs {o}; dd if=/dev/zero of={o}/fill bs=1k count=64 2>/dev/null || true"),
        &format!("issue --role viewer --name full --out {o}"),
    );
    assert_eq!(r.code, Some(1), "{r:?}");
    assert!(!r.stderr.contains("panicked"), "{r:?}");
    assert!(r.stderr.contains("No space left on device"), "{r:?}");
    assert_eq!(r.stderr.lines().count(), 1, "{r:?}");
    // The tmpfs is gone with the namespace; nothing was left in the real folder either.
    assert_eq!(std::fs::read_dir(&out).expect("ls").count(), 0);
    // The ledger knows the certificate it signed (durable before the files), and says so.
    assert!(env.list().iter().any(|c| c["name"] == "full"));
    env.issue("afterwards", "viewer");
}

#[test]
fn a_read_only_home_gives_a_clear_error() {
    let env = Env::with_ca();
    env.issue("alice", "viewer");
    let h = env.home.display();
    let ro = format!("mount --bind {h} {h}; mount -o remount,ro,bind {h}");
    for args in ["issue --role viewer --name x", "revoke alice", "list"] {
        let r = in_mount_namespace(&env, &ro, args);
        assert_eq!(r.code, Some(1), "{args}: {r:?}");
        assert!(!r.stderr.contains("panicked"), "{r:?}");
        assert!(r.stderr.starts_with("mcp-zt: error: "), "{r:?}");
        assert!(r.stderr.contains("Read-only file system"), "{args}: {r:?}");
    }
    // Nothing changed.
    assert_eq!(env.list().len(), 1);
    assert_eq!(env.list()[0]["status"], "active");
}
