//! The audit log under abuse: what a peer controls is escaped and marked as claimed, repeated
//! refusals are coalesced, the file rotates and reopens, and hostile CLI values fail cleanly.

use std::time::{Duration, Instant};

use crate::common::{mode, Env};
use crate::server_env::{client_of, http_client, post, wait_audit, Server, INIT};

/// A subject CN that would forge a second audit line, clear the screen and reverse the text
/// after it if printed raw.
const HOSTILE_CN: &str =
    "mallory\n2026-01-01T00:00:00.000Z  handshake_ok\u{1b}[2J\u{9b}1m\u{202e}gnp";

fn signal(server: &Server, sig: &str) {
    let status = std::process::Command::new("kill")
        .args([sig, &server.child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
}

/// Sends SIGTERM and waits for a clean exit (the audit writer drains and fsyncs on the way).
fn stop(mut server: Server) {
    signal(&server, "-TERM");
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.child.try_wait().expect("wait").is_none() {
        assert!(Instant::now() < deadline, "server did not stop");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A self-signed client certificate whose CN is `cn`, written into the test folder.
fn self_signed(env: &Env, cn: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
    let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    p.distinguished_name.push(rcgen::DnType::CommonName, cn);
    p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let cert = p.self_signed(&key).expect("self-sign");
    let (c, k) = (env.path("rogue.crt"), env.path("rogue.key"));
    std::fs::write(&c, cert.pem()).expect("write");
    std::fs::write(&k, key.serialize_pem()).expect("write");
    (c, k)
}

fn unsafe_chars(s: &str) -> Vec<char> {
    s.chars()
        .filter(|&c| c != '\n' && mcp_zt::audit::is_unsafe_char(c))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_certificate_name_is_logged_as_claimed_and_printed_escaped() {
    let env = Env::with_ca();
    let server = Server::start(&env, &["--lockout-threshold", "0"]);
    let (cert, key) = self_signed(&env, HOSTILE_CN);
    let rogue = http_client(&env, Some((&cert, &key)));
    assert!(post(&rogue, &server, INIT).await.is_err());
    let line = wait_audit(&env, |v| v["event"] == "handshake_rejected");
    assert_eq!(line["claimed_name"], HOSTILE_CN, "{line}");
    assert!(line["claimed_serial"].is_string(), "{line}");
    assert!(
        line.get("name").is_none() && line.get("serial").is_none(),
        "{line}"
    );

    // The file itself: every line is one JSON object, no raw control, C1 or bidi character.
    let raw = std::fs::read_to_string(env.home.join("audit.log")).expect("log");
    assert_eq!(unsafe_chars(&raw), Vec::<char>::new(), "{raw:?}");
    for l in raw.lines() {
        serde_json::from_str::<serde_json::Value>(l).expect("one JSON object per line");
    }

    let human = env.run(&["audit"]);
    let out = human.ok();
    assert_eq!(unsafe_chars(out), Vec::<char>::new(), "{out:?}");
    let rejected: Vec<&str> = out
        .lines()
        .filter(|l| l.contains("handshake_rejected"))
        .collect();
    assert_eq!(rejected.len(), 1, "the CN forged no extra line: {out}");
    assert!(
        rejected[0].contains("claimed:mallory\\u{a}2026-01-01T00:00:00.000Z  handshake_ok\\u{1b}[2J\\u{9b}1m\\u{202e}gnp"),
        "{out}"
    );
    assert!(!out
        .lines()
        .any(|l| l.contains("handshake_ok") && !l.contains("claimed:")));

    let json = env.run(&["audit", "--json"]);
    let out = json.ok();
    assert_eq!(unsafe_chars(out), Vec::<char>::new(), "{out:?}");
    let parsed: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    assert!(parsed.iter().any(|v| v["claimed_name"] == HOSTILE_CN));
}

#[tokio::test(flavor = "multi_thread")]
async fn repeated_refusals_from_one_address_are_one_line_and_a_count() {
    let env = Env::with_ca();
    env.issue("alice", "admin");
    let server = Server::start(&env, &["--lockout-threshold", "0"]);
    let anon = http_client(&env, None);
    for _ in 0..30 {
        assert!(post(&anon, &server, INIT).await.is_err());
    }
    for _ in 0..3 {
        // A new client each time: a new connection, a new handshake.
        let good = client_of(&env, "alice");
        assert_eq!(
            post(&good, &server, INIT).await.expect("good").status(),
            200
        );
    }
    stop(server);
    let raw = std::fs::read_to_string(env.home.join("audit.log")).expect("log");
    let lines: Vec<serde_json::Value> = raw
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON"))
        .collect();
    let refused: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|v| v["event"] == "handshake_rejected")
        .collect();
    assert_eq!(refused.len(), 2, "{raw}");
    assert!(refused[0].get("count").is_none());
    assert_eq!(refused[1]["count"], 29, "{raw}");
    assert_eq!(refused[1]["reason"], "no client certificate");
    // Successes are never coalesced.
    let ok = lines
        .iter()
        .filter(|v| v["event"] == "handshake_ok")
        .count();
    assert_eq!(ok, 3, "{raw}");
    // Counted refusals are written before the server says it stopped.
    assert_eq!(
        lines.last().map(|v| &v["event"]),
        Some(&"server_stopped".into())
    );
    let shown = env.run(&["audit", "--event", "handshake_rejected"]);
    assert!(
        shown.ok().contains("no client certificate (x29)"),
        "{shown:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_audit_log_rotates_by_size_and_audit_reads_the_rotated_files() {
    let env = Env::with_ca();
    env.issue("alice", "admin");
    let server = Server::start(&env, &["--audit-max-size", "2K", "--audit-keep", "2"]);
    let good = client_of(&env, "alice");
    for _ in 0..40 {
        assert_eq!(
            post(&good, &server, INIT).await.expect("good").status(),
            200
        );
    }
    stop(server);
    let log = env.home.join("audit.log");
    for p in [
        log.clone(),
        env.home.join("audit.log.1"),
        env.home.join("audit.log.2"),
    ] {
        let len = std::fs::metadata(&p).expect("rotated file").len();
        assert!(len > 0 && len <= 2048, "{}: {len}", p.display());
        assert_eq!(mode(&p), 0o600, "{}", p.display());
    }
    assert!(!env.home.join("audit.log.3").exists());
    let out = env.run(&["audit", "--json"]);
    let times: Vec<String> = out
        .ok()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("JSON");
            v["time"].as_str().expect("time").to_string()
        })
        .collect();
    let in_current = std::fs::read_to_string(&log).expect("log").lines().count();
    assert!(times.len() > in_current, "rotated files are read too");
    let mut sorted = times.clone();
    sorted.sort();
    assert_eq!(times, sorted, "oldest first");
    assert!(out
        .ok()
        .lines()
        .last()
        .is_some_and(|l| l.contains("server_stopped")));
}

#[test]
fn sighup_reopens_the_audit_log_after_logrotate_moved_it() {
    let env = Env::with_ca();
    let server = Server::start(&env, &[]);
    let log = env.home.join("audit.log");
    wait_audit(&env, |v| v["event"] == "server_started");
    std::fs::rename(&log, env.home.join("audit.log.moved")).expect("move");
    signal(&server, "-HUP");
    wait_audit(&env, |v| v["event"] == "policy_reloaded");
    assert_eq!(mode(&log), 0o600);
    let moved = std::fs::read_to_string(env.home.join("audit.log.moved")).expect("moved");
    assert!(moved.contains("server_started") && !moved.contains("policy_reloaded"));
}

#[test]
fn a_world_readable_audit_log_is_made_private_at_start() {
    let env = Env::with_ca();
    let log = env.home.join("audit.log");
    std::fs::write(&log, b"").expect("create");
    std::fs::set_permissions(&log, std::os::unix::fs::PermissionsExt::from_mode(0o644))
        .expect("chmod");
    let server = Server::start(&env, &[]);
    assert_eq!(mode(&log), 0o600);
    drop(server);
}

#[test]
fn huge_durations_fail_cleanly_instead_of_panicking() {
    let env = Env::with_ca();
    env.run(&["audit", "--since", "99999999999999d"])
        .fails_with("--since 99999999999999d: too far back");
    env.run(&[
        "issue",
        "--name",
        "bob",
        "--role",
        "viewer",
        "--ttl",
        "100000000000d",
    ])
    .fails_with("TTL too long");
    env.run(&["serve", "--audit-max-size", "99999999999G"])
        .fails_with("--audit-max-size");
    // Accepted before, and added to the clock at the first lockout: an overflow panic.
    env.run(&["serve", "--lockout-duration", "9223372036854775807s"])
        .fails_with("--lockout-duration 9223372036854775807s: too long");
    assert!(env.list().is_empty());
}
