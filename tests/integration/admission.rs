//! Admission at the TLS listener: health checks and scans never lock good clients out, a
//! certificate failing in a loop locks out itself only, and per-address and per-certificate caps
//! and HTTP timeouts bound what one peer can hold.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::Env;
use crate::server_env::{
    audit_len, client_of, http_client, localhost, post, tls_connector, wait_audit,
    wait_audit_after, Server, INIT,
};

/// The first bytes of a TLS ClientHello record: a handshake that is started and never finished.
const HALF_HELLO: &[u8] = &[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00];

fn audit_events(env: &Env) -> Vec<serde_json::Value> {
    std::fs::read_to_string(env.home.join("audit.log"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

async fn served(env: &Env, server: &Server, name: &str, when: &str) {
    // A fresh client, so every check is a fresh TLS handshake.
    let r = post(&client_of(env, name), server, INIT).await;
    let status = r.map(|r| r.status().as_u16());
    assert_eq!(status.ok(), Some(200), "{name} {when}");
}

/// Waits until the server closed `tcp` (EOF or reset); returns how long that took.
async fn closed_within(tcp: &mut (impl AsyncReadExt + Unpin), limit: Duration) -> Duration {
    let start = Instant::now();
    let mut buf = [0u8; 256];
    loop {
        match tokio::time::timeout(limit, tcp.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return start.elapsed(),
            Ok(Ok(_)) => {}
            Err(_) => panic!("still open after {limit:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn health_checks_and_half_open_hellos_never_lock_out_a_good_client() {
    let env = Env::with_ca();
    env.issue("alice", "admin");
    let mallory = env.issue("mallory", "viewer");
    // A threshold the old per-address lockout reached after five plain connects.
    let server = Server::start(
        &env,
        &[
            "--lockout-threshold",
            "5",
            "--lockout-window",
            "60s",
            "--lockout-duration",
            "60s",
            "--handshake-timeout",
            "3s",
        ],
    );
    served(&env, &server, "alice", "at start").await;

    // A load balancer's health check (or a port scan), faster than real time: 40 plain TCP
    // connects closed at once, the valid client checked along the way.
    for i in 0..40 {
        let tcp = TcpStream::connect(("127.0.0.1", server.port))
            .await
            .expect("connect");
        drop(tcp);
        if i % 10 == 9 {
            served(
                &env,
                &server,
                "alice",
                &format!("after {} health checks", i + 1),
            )
            .await;
        }
    }

    // 16 ClientHellos half sent and left open: served while they hang and after they close.
    let mut held = Vec::new();
    for _ in 0..16 {
        let mut tcp = TcpStream::connect(("127.0.0.1", server.port))
            .await
            .expect("connect");
        tcp.write_all(HALF_HELLO).await.expect("write");
        held.push(tcp);
    }
    served(&env, &server, "alice", "while 16 handshakes hang").await;
    drop(held);
    served(
        &env,
        &server,
        "alice",
        "after the hanging handshakes closed",
    )
    .await;

    // A revoked certificate retried 50 times from the same address: it locks out itself.
    env.run(&["revoke", &mallory]).ok();
    for _ in 0..50 {
        let r = post(&client_of(&env, "mallory"), &server, INIT).await;
        assert!(r.is_err(), "a revoked certificate must be refused");
    }
    let lockout = wait_audit(&env, |v| v["event"] == "lockout");
    assert_eq!(lockout["claimed_serial"], mallory.as_str());
    wait_audit(&env, |v| {
        v["event"] == "handshake_rejected"
            && v["claimed_serial"] == mallory.as_str()
            && v["reason"]
                .as_str()
                .is_some_and(|r| r.starts_with("locked out: 5 failed handshakes"))
    });
    served(&env, &server, "alice", "while mallory is locked out").await;

    // Nothing was held against the address: no connection refused, exactly one lockout (of
    // mallory's certificate), and the connections without a certificate were audited as
    // incomplete handshakes, not rejections.
    let events = audit_events(&env);
    assert!(
        !events.iter().any(|v| v["event"] == "connection_refused"),
        "{events:#?}"
    );
    assert_eq!(events.iter().filter(|v| v["event"] == "lockout").count(), 1);
    let incomplete = events
        .iter()
        .filter(|v| v["event"] == "handshake_incomplete")
        .count();
    assert!(incomplete >= 40, "{incomplete} handshake_incomplete events");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_certificate_lockout_ends_after_its_duration() {
    let env = Env::with_ca();
    env.issue("alice", "admin");
    let mallory = env.issue("mallory", "viewer");
    let server = Server::start(
        &env,
        &["--lockout-threshold", "3", "--lockout-duration", "2s"],
    );
    env.run(&["revoke", &mallory]).ok();
    for _ in 0..3 {
        assert!(post(&client_of(&env, "mallory"), &server, INIT)
            .await
            .is_err());
    }
    wait_audit(&env, |v| {
        v["event"] == "lockout" && v["claimed_serial"] == mallory.as_str()
    });
    let before = audit_len(&env);
    assert!(post(&client_of(&env, "mallory"), &server, INIT)
        .await
        .is_err());
    wait_audit_after(&env, before, |v| {
        v["reason"]
            .as_str()
            .is_some_and(|r| r.starts_with("locked out: 3 failed handshakes"))
    });
    // Clients without a certificate from the same address are not failures and change nothing.
    for _ in 0..10 {
        assert!(post(&http_client(&env, None), &server, INIT).await.is_err());
    }
    served(&env, &server, "alice", "during the lockout").await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    // Over: the certificate is checked again (and refused again, for being revoked).
    let before = audit_len(&env);
    assert!(post(&client_of(&env, "mallory"), &server, INIT)
        .await
        .is_err());
    wait_audit_after(&env, before, |v| {
        v["event"] == "handshake_rejected" && v["reason"] == "certificate revoked"
    });
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_handshakes_from_one_address_are_capped() {
    let env = Env::with_ca();
    env.issue("alice", "admin");
    let server = Server::start(
        &env,
        &[
            "--max-handshakes-per-address",
            "4",
            "--handshake-timeout",
            "10s",
        ],
    );
    let mut held = Vec::new();
    for _ in 0..4 {
        let mut tcp = TcpStream::connect(("127.0.0.1", server.port))
            .await
            .expect("connect");
        tcp.write_all(HALF_HELLO).await.expect("write");
        held.push(tcp);
    }
    // The fifth is closed at once, long before the handshake timeout.
    let mut fifth = TcpStream::connect(("127.0.0.1", server.port))
        .await
        .expect("connect");
    let took = closed_within(&mut fifth, Duration::from_secs(5)).await;
    assert!(took < Duration::from_secs(2), "{took:?}");
    wait_audit(&env, |v| {
        v["event"] == "connection_refused"
            && v["reason"] == "4 handshakes already in progress from this address"
    });
    drop(held);
    // The slots free up as the server sees the hanging handshakes close.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let r = post(&client_of(&env, "alice"), &server, INIT).await;
        if r.as_ref().is_ok_and(|r| r.status() == 200) {
            break;
        }
        assert!(Instant::now() < deadline, "never served again: {r:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn connections_of_one_certificate_are_capped() {
    let env = Env::with_ca();
    env.issue("vic", "viewer");
    env.issue("alice", "admin");
    let server = Server::start(&env, &["--max-connections-per-cert", "2"]);
    // Two clients of vic each keep their connection open (HTTP keep-alive).
    let a = client_of(&env, "vic");
    let b = client_of(&env, "vic");
    for c in [&a, &b] {
        assert_eq!(post(c, &server, INIT).await.expect("vic").status(), 200);
    }
    let third = post(&client_of(&env, "vic"), &server, INIT).await;
    assert!(third.is_err(), "third connection of vic: {third:?}");
    wait_audit(&env, |v| {
        v["event"] == "connection_refused"
            && v["name"] == "vic"
            && v["reason"]
                .as_str()
                .is_some_and(|r| r.contains("--max-connections-per-cert 2"))
    });
    // Another certificate is not affected, and vic's open connections still work.
    served(&env, &server, "alice", "while vic is at its cap").await;
    assert_eq!(post(&a, &server, INIT).await.expect("vic a").status(), 200);
}

/// A TLS connection presenting `name`'s certificate, driven by hand.
async fn tls_of(
    env: &Env,
    server: &Server,
    name: &str,
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let tcp = TcpStream::connect(("127.0.0.1", server.port))
        .await
        .expect("connect");
    tls_connector(env, name)
        .connect(localhost(), tcp)
        .await
        .expect("handshake")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_head_that_never_ends_is_cut_by_the_header_read_timeout() {
    let env = Env::with_ca();
    env.issue("alice", "admin");
    let server = Server::start(&env, &["--header-read-timeout", "1s"]);
    let mut tls = tls_of(&env, &server, "alice").await;
    tls.write_all(b"POST /mcp HTTP/1.1\r\nHost: localhost\r\nX-Slow: ")
        .await
        .expect("write");
    let took = closed_within(&mut tls, Duration::from_secs(10)).await;
    assert!(
        took >= Duration::from_millis(800) && took < Duration::from_secs(5),
        "{took:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_idle_connection_is_closed_after_the_idle_timeout() {
    let env = Env::with_ca();
    env.issue("alice", "admin");
    let server = Server::start(
        &env,
        &["--idle-timeout", "1s", "--header-read-timeout", "0"],
    );
    // Authenticated, then silent: before the fix it held its slot forever.
    let mut tls = tls_of(&env, &server, "alice").await;
    let took = closed_within(&mut tls, Duration::from_secs(10)).await;
    assert!(
        took >= Duration::from_millis(800) && took < Duration::from_secs(5),
        "{took:?}"
    );
    // A connection that keeps sending requests stays open past the timeout.
    let c = client_of(&env, "alice");
    for _ in 0..6 {
        assert_eq!(post(&c, &server, INIT).await.expect("busy").status(), 200);
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    let opened = audit_events(&env)
        .iter()
        .filter(|v| v["event"] == "handshake_ok")
        .count();
    assert_eq!(opened, 2, "the busy client kept one connection");
}
