//! The control socket, the running server's unlocked CA key, revocation when the CRL cannot be
//! written, the reserved server name, and small input gaps.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::{bin, mode, openssl_stdin, Env};
use crate::server_env::{client_of, post, wait_audit, Server, INIT};

fn chmod(path: &std::path::Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

#[test]
fn serve_refuses_a_home_that_others_can_reach() {
    let env = Env::with_ca();
    chmod(&env.home, 0o755);
    let mut child = Command::new(bin())
        .arg("--home")
        .arg(&env.home)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("serve");
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("serve ran from a HOME with mode 0755");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut err)
        .expect("stderr");
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(err.contains("chmod 700"), "{err}");
    assert!(!env.home.join("ctl.sock").exists());
}

#[test]
fn the_control_socket_is_private_and_answers_only_the_owner_of_home() {
    let env = Env::with_ca();
    let _server = Server::start(&env, &[]);
    let sock = env.home.join("ctl.sock");
    assert_eq!(mode(&sock), 0o600, "no moment with the umask's mode");
    if !is_root() {
        eprintln!("not root: the other-user half of this test needs setpriv as root");
        return;
    }
    // Suppose an operator loosened everything: the peer check still refuses another user.
    chmod(env.dir.path(), 0o711);
    chmod(&env.home, 0o711);
    chmod(&sock, 0o666);
    let script = "import socket,sys\n\
        s=socket.socket(socket.AF_UNIX)\n\
        s.connect(sys.argv[1])\n\
        try:\n    s.sendall(b'{\"op\":\"records\"}\\n'); print(repr(s.recv(65536)))\n\
        except OSError as e:\n    print('closed', e)\n";
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "/usr/bin/python3",
            "-c",
            script,
        ])
        .arg(&sock)
        .output()
        .expect("setpriv");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(
        stdout.trim() == "b''" || stdout.starts_with("closed"),
        "another user got an answer: {stdout}"
    );
    wait_audit(&env, |v| {
        v["event"] == "control_refused"
            && v["reason"]
                .as_str()
                .is_some_and(|r| r.contains("uid 65534"))
    });
    // The owner still gets answers.
    assert_eq!(env.list().len(), 1);
}

#[test]
fn issuing_through_the_server_needs_the_passphrase_of_an_encrypted_key() {
    let env = Env::new();
    let pass = env.secret_file("pass", "correct horse battery staple\n");
    let wrong = env.secret_file("wrong", "incorrect horse battery\n");
    let p = pass.to_str().expect("utf8");
    env.run(&["--passphrase-file", p, "ca", "init"]).ok();
    let _server = Server::start(&env, &["--passphrase-file", p]);
    let issue = |extra: &[&str], name: &str| {
        let mut args: Vec<&str> = extra.to_vec();
        args.extend(["issue", "--role", "admin", "--name", name]);
        env.run(&args)
    };
    issue(&[], "mallory").fails_with("needs its passphrase too");
    issue(
        &["--passphrase-file", wrong.to_str().expect("utf8")],
        "mallory",
    )
    .fails_with("wrong passphrase");
    issue(&["--passphrase-file", p], "alice").ok();
    let names: Vec<String> = env
        .list()
        .iter()
        .map(|c| c["name"].as_str().unwrap_or("?").to_string())
        .collect();
    assert!(!names.contains(&"mallory".to_string()), "{names:?}");
    assert!(names.contains(&"alice".to_string()), "{names:?}");
}

#[test]
fn allow_socket_issue_lets_the_owner_issue_without_the_passphrase() {
    let env = Env::new();
    let pass = env.secret_file("pass", "correct horse battery staple\n");
    let p = pass.to_str().expect("utf8");
    env.run(&["--passphrase-file", p, "ca", "init"]).ok();
    let _server = Server::start(&env, &["--passphrase-file", p, "--allow-socket-issue"]);
    env.issue("bob", "viewer");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_revocation_is_applied_live_even_when_the_crl_cannot_be_written() {
    let env = Env::with_ca();
    let serial = env.issue("alice", "admin");
    let server = Server::start(&env, &["--lockout-threshold", "0"]);
    let alice = client_of(&env, "alice");
    assert_eq!(
        post(&alice, &server, INIT).await.expect("alice").status(),
        200
    );
    // The CRL cannot be replaced (as on a full disk): a folder stands where it goes.
    let crl = env.home.join("crl.pem");
    std::fs::remove_file(&crl).expect("rm crl");
    std::fs::create_dir(&crl).expect("mkdir");
    std::fs::write(crl.join("keep"), "x").expect("write");
    let out = env.run(&["revoke", "alice", "--reason", "key-compromise"]);
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(out.stderr.contains("crl.pem"), "{out:?}");
    // Revoked anyway, live: the open connection is cut and a new handshake refused.
    wait_audit(&env, |v| {
        v["event"] == "revocation_applied" && v["serial"] == serial.as_str()
    });
    wait_audit(&env, |v| v["event"] == "crl_publish_failed");
    assert!(post(&alice, &server, INIT).await.is_err());
    assert!(post(&client_of(&env, "alice"), &server, INIT)
        .await
        .is_err());
    // Once the disk is fixed, a second revoke says so and publishes the CRL it lacked.
    std::fs::remove_dir_all(&crl).expect("rm dir");
    env.run(&["revoke", "alice"]).fails_with("already revoked");
    let pem = std::fs::read_to_string(&crl).expect("the CRL was republished");
    let (ok, text) = openssl_stdin(&["crl", "-noout", "-text"], &pem);
    assert!(ok, "{text}");
    assert!(
        text.to_lowercase().contains(&serial.to_lowercase()),
        "{serial} not in {text}"
    );
}

/// The serial of the certificate the server presents, read by openssl s_client.
fn server_serial(env: &Env, server: &Server) -> String {
    let dir = env.home.join("clients");
    let (_, text) = openssl_stdin(
        &[
            "s_client",
            "-connect",
            &format!("127.0.0.1:{}", server.port),
            "-cert",
            dir.join("alice.crt").to_str().expect("utf8"),
            "-key",
            dir.join("alice.key").to_str().expect("utf8"),
            "-CAfile",
            env.home.join("ca.crt").to_str().expect("utf8"),
        ],
        "",
    );
    let start = text
        .find("-----BEGIN CERTIFICATE-----")
        .expect("server cert");
    let end = text.find("-----END CERTIFICATE-----").expect("end") + 25;
    let (ok, serial) = openssl_stdin(&["x509", "-noout", "-serial"], &text[start..end]);
    assert!(ok, "{serial}");
    serial.trim().trim_start_matches("serial=").to_lowercase()
}

#[test]
fn the_server_name_is_reserved_and_a_revoked_server_certificate_is_replaced_at_once() {
    let env = Env::with_ca();
    env.run(&["issue", "--role", "admin", "--name", "server"])
        .fails_with("reserved for the server");
    env.issue("alice", "admin");
    let server = Server::start(&env, &[]);
    let before = server_serial(&env, &server);
    let listed = env
        .list()
        .into_iter()
        .find(|c| c["kind"] == "server")
        .expect("server cert listed");
    assert_eq!(listed["serial"], before.as_str());
    env.run(&["revoke", "server", "--reason", "key-compromise"])
        .ok();
    let deadline = Instant::now() + Duration::from_secs(10);
    let after = loop {
        let now = server_serial(&env, &server);
        if now != before {
            break now;
        }
        assert!(
            Instant::now() < deadline,
            "still serving the revoked certificate"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let active: Vec<_> = env
        .list()
        .into_iter()
        .filter(|c| c["kind"] == "server" && c["status"] == "active")
        .collect();
    assert_eq!(active.len(), 1, "{active:?}");
    assert_eq!(active[0]["serial"], after.as_str());
}

#[test]
fn issue_out_keeps_the_mode_of_an_existing_folder() {
    let env = Env::with_ca();
    let shared = env.path("shared");
    std::fs::create_dir(&shared).expect("mkdir");
    chmod(&shared, 0o755);
    let s = shared.to_str().expect("utf8");
    env.run(&["issue", "--role", "viewer", "--name", "v", "--out", s])
        .ok();
    assert_eq!(mode(&shared), 0o755, "an existing folder keeps its mode");
    assert_eq!(mode(&shared.join("v.key")), 0o600);
    let fresh = shared.join("new/deeper");
    env.run(&[
        "issue",
        "--role",
        "viewer",
        "--name",
        "w",
        "--out",
        fresh.to_str().expect("utf8"),
    ])
    .ok();
    assert_eq!(mode(&shared.join("new")), 0o700);
    assert_eq!(mode(&fresh), 0o700);
}

#[test]
fn absurd_lifetimes_are_clear_errors_on_the_command_line_and_the_control_socket() {
    let env = Env::with_ca();
    env.run(&[
        "issue",
        "--role",
        "viewer",
        "--name",
        "v",
        "--ttl",
        "100000000000d",
    ])
    .fails_with("TTL too long");
    let _server = Server::start(&env, &[]);
    use std::io::{BufRead, Write};
    let mut sock =
        std::os::unix::net::UnixStream::connect(env.home.join("ctl.sock")).expect("connect");
    sock.write_all(
        b"{\"op\":\"issue\",\"name\":\"v\",\"role\":\"viewer\",\"ttl_secs\":-5,\"out_dir\":null,\"sans\":[]}\n",
    )
    .expect("write");
    let mut line = String::new();
    std::io::BufReader::new(&sock)
        .read_line(&mut line)
        .expect("read");
    assert!(line.contains("must be positive"), "{line}");
    assert!(env.list().iter().all(|c| c["name"] != "v"));
    // The server is still there.
    let out = Command::new(bin())
        .arg("--home")
        .arg(&env.home)
        .args(["list", "--json"])
        .output()
        .expect("list");
    assert!(out.status.success());
}
