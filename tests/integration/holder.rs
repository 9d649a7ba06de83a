//! A certificate holder's machine has no CA home: only the files the operator handed over.
//! `client-config` prints a command naming those files, and that command (the real `connect`)
//! reaches a real server with them, without reading or creating a HOME.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};

use crate::common::{bin, openssl, Env, Holder, Run};
use crate::connect::{initialize, Bridge, Listener};
use crate::server_env::{Server, INIT};

const PASSWORD: &str = "correct horse battery\n";

fn utf8(p: &Path) -> &str {
    p.to_str().expect("utf8 path")
}

/// `issue --role ROLE --name NAME --bundle FILE [--p12-password-file pw] [extra...]` on the
/// operator's side; returns the serial and the bundle.
fn issue_bundle(env: &Env, name: &str, file: &str, extra: &[&str]) -> (String, PathBuf) {
    let bundle = env.path(file);
    let pw = env.secret_file("pw", PASSWORD);
    let mut args = vec![
        "issue",
        "--role",
        "viewer",
        "--name",
        name,
        "--bundle",
        utf8(&bundle),
        "--p12-password-file",
        utf8(&pw),
    ];
    args.extend_from_slice(extra);
    let serial = env.run(&args).ok().trim().to_string();
    assert_eq!(crate::common::mode(&bundle), 0o600, "{file}");
    (serial, bundle)
}

/// The `command` and `args` of the server entry `mcp-zt` under `top` in a JSON snippet.
fn json_entry(text: &str, top: &str) -> (String, Vec<String>) {
    let v: Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"));
    let entry = &v[top]["mcp-zt"];
    let keys: Vec<&String> = entry.as_object().expect("entry object").keys().collect();
    assert_eq!(keys, ["args", "command"], "{text}");
    let args = entry["args"]
        .as_array()
        .expect("args")
        .iter()
        .map(|a| a.as_str().expect("string arg").to_string())
        .collect();
    (
        entry["command"].as_str().expect("command").to_string(),
        args,
    )
}

/// `client-config ... --for claude-desktop` on the holder's machine: its command and args.
fn claude_desktop_config(holder: &Holder, files: &[&str], url: &str) -> (String, Vec<String>) {
    let mut args = vec!["client-config"];
    args.extend_from_slice(files);
    args.extend_from_slice(&["--url", url, "--for", "claude-desktop"]);
    let out = holder.run(&args);
    json_entry(out.ok(), "mcpServers")
}

/// Runs the printed command on the holder's machine as a client app would (stdio), lists the
/// tools and calls `whoami` through it; returns what `whoami` answered.
fn whoami_through(holder: &Holder, command: &str, args: &[String]) -> Value {
    assert!(Path::new(command).is_absolute(), "{command}");
    let mut cmd = holder.command(command);
    cmd.args(args);
    let mut b = Bridge::spawn(cmd);
    initialize(&mut b);
    let tools = b.request(2, "tools/list", json!({}));
    let names: Vec<&str> = tools["result"]["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("no tools: {tools}"))
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert!(names.contains(&"whoami"), "{tools}");
    let who = b.request(3, "tools/call", json!({"name": "whoami", "arguments": {}}));
    who["result"]["structuredContent"].clone()
}

/// Every argument after `connect` up to the URL is an absolute path or a flag.
fn assert_absolute_paths(args: &[String]) {
    for a in args.iter().skip(1).take(args.len() - 2) {
        assert!(
            a.starts_with("--") || Path::new(a).is_absolute(),
            "{a} in {args:?}"
        );
    }
}

#[test]
fn a_holder_with_cert_key_and_ca_files_runs_the_printed_client_command() {
    let env = Env::with_ca();
    let serial = env.issue("bob", "viewer");
    let server = Server::start(&env, &[]);
    let holder = Holder::new();
    let cert = holder.receive(&env.home.join("clients/bob.crt"));
    let key = holder.receive(&env.home.join("clients/bob.key"));
    let ca = holder.receive(&env.home.join("ca.crt"));
    // Relative paths on the command line; absolute ones in the printed command.
    let (command, args) = claude_desktop_config(
        &holder,
        &["--cert", "bob.crt", "--key", "bob.key", "--ca", "ca.crt"],
        &server.url(),
    );
    assert_eq!(
        args,
        [
            "connect",
            "--cert",
            utf8(&cert),
            "--key",
            utf8(&key),
            "--ca",
            utf8(&ca),
            &server.url()
        ]
    );
    let who = whoami_through(&holder, &command, &args);
    assert_eq!(who["name"], "bob", "{who}");
    assert_eq!(who["role"], "viewer", "{who}");
    assert_eq!(who["serial"], serial.as_str(), "{who}");
    holder.assert_no_home();
}

#[test]
fn a_holder_with_the_p12_from_issue_bundle_runs_the_printed_client_command() {
    let env = Env::with_ca();
    let (serial, bundle) = issue_bundle(&env, "bob", "bob.p12", &[]);
    // OpenSSL reads what `issue --bundle` wrote.
    let (ok, text) = openssl(&[
        "pkcs12",
        "-in",
        utf8(&bundle),
        "-info",
        "-noout",
        "-passin",
        &format!("file:{}", utf8(&env.path("pw"))),
    ]);
    assert!(ok, "{text}");
    let server = Server::start(&env, &[]);
    let holder = Holder::new();
    let p12 = holder.receive(&bundle);
    let pw = holder.receive(&env.path("pw"));
    let (command, args) = claude_desktop_config(
        &holder,
        &["--p12", "bob.p12", "--p12-password-file", "pw"],
        &server.url(),
    );
    assert_eq!(
        args,
        [
            "connect",
            "--p12",
            utf8(&p12),
            "--p12-password-file",
            utf8(&pw),
            &server.url()
        ]
    );
    let who = whoami_through(&holder, &command, &args);
    assert_eq!(who["name"], "bob", "{who}");
    assert_eq!(who["serial"], serial.as_str(), "{who}");
    holder.assert_no_home();
    // The decrypted key was never written next to the bundle.
    let mut files: Vec<String> = std::fs::read_dir(holder.dir.path())
        .expect("ls")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(files, ["bob.p12", "pw"]);
}

#[test]
fn a_holder_with_the_pem_bundle_from_issue_bundle_runs_the_printed_client_command() {
    let env = Env::with_ca();
    let (serial, bundle) = issue_bundle(&env, "carol", "carol.pem", &[]);
    // One PEM file: the key first, then the client certificate, then the CA.
    let text = std::fs::read_to_string(&bundle).expect("bundle");
    let labels: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("-----BEGIN"))
        .collect();
    assert_eq!(
        labels,
        [
            "-----BEGIN PRIVATE KEY-----",
            "-----BEGIN CERTIFICATE-----",
            "-----BEGIN CERTIFICATE-----"
        ]
    );
    let (ok, out) = openssl(&["pkey", "-in", utf8(&bundle), "-noout"]);
    assert!(ok, "{out}");
    let server = Server::start(&env, &[]);
    let holder = Holder::new();
    let pem = holder.receive(&bundle);
    let (command, args) = claude_desktop_config(&holder, &["--bundle", "carol.pem"], &server.url());
    assert_eq!(args, ["connect", "--bundle", utf8(&pem), &server.url()]);
    let who = whoami_through(&holder, &command, &args);
    assert_eq!(who["name"], "carol", "{who}");
    assert_eq!(who["serial"], serial.as_str(), "{who}");
    holder.assert_no_home();
}

#[test]
fn codex_gets_valid_toml_and_gemini_cli_valid_json_that_both_run() {
    let env = Env::with_ca();
    let (_, bundle) = issue_bundle(&env, "dave", "dave.p12", &[]);
    let server = Server::start(&env, &[]);
    let holder = Holder::new();
    let p12 = holder.receive(&bundle);
    let pw = holder.receive(&env.path("pw"));
    let url = server.url();
    let expected = [
        "connect",
        "--p12",
        utf8(&p12),
        "--p12-password-file",
        utf8(&pw),
        &url,
    ];
    let config = |kind: &str| {
        let out = holder.run(&[
            "client-config",
            "--p12",
            "dave.p12",
            "--p12-password-file",
            "pw",
            "--url",
            &url,
            "--for",
            kind,
        ]);
        out.ok().to_string()
    };

    // Codex CLI: [mcp_servers.NAME] with command and args.
    let text = config("codex");
    let doc: toml::Table = toml::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    assert_eq!(doc.keys().collect::<Vec<_>>(), ["mcp_servers"], "{text}");
    let entry = doc["mcp_servers"]["mcp-zt"]
        .as_table()
        .unwrap_or_else(|| panic!("no [mcp_servers.mcp-zt]: {text}"));
    assert_eq!(
        entry.keys().collect::<Vec<_>>(),
        ["args", "command"],
        "{text}"
    );
    let command = entry["command"].as_str().expect("command").to_string();
    let args: Vec<String> = entry["args"]
        .as_array()
        .expect("args array")
        .iter()
        .map(|a| a.as_str().expect("string arg").to_string())
        .collect();
    assert_eq!(args, expected);
    assert_absolute_paths(&args);
    assert_eq!(whoami_through(&holder, &command, &args)["name"], "dave");

    // Gemini CLI: {"mcpServers": {NAME: {command, args}}}.
    let text = config("gemini-cli");
    let (command, args) = json_entry(&text, "mcpServers");
    assert_eq!(args, expected);
    assert_eq!(whoami_through(&holder, &command, &args)["name"], "dave");
    holder.assert_no_home();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_holder_with_a_p12_serves_the_loopback_http_bridge() {
    let env = Env::with_ca();
    issue_bundle(&env, "erin", "erin.p12", &[]);
    let server = Server::start(&env, &[]);
    let holder = Holder::new();
    holder.receive(&env.path("erin.p12"));
    holder.receive(&env.path("pw"));
    let mut cmd = holder.command(bin());
    cmd.args(["connect", "--p12", "erin.p12", "--p12-password-file", "pw"]);
    let l = Listener::spawn(cmd, holder.path("erin.url"), &server.url());
    let http = reqwest::Client::new();
    let post = |body: String, sid: Option<&str>| {
        let mut req = http
            .post(&l.url)
            .header("Accept", "application/json, text/event-stream")
            .header("Content-Type", "application/json")
            .timeout(Duration::from_secs(10))
            .body(body);
        if let Some(sid) = sid {
            req = req.header("Mcp-Session-Id", sid);
        }
        req.send()
    };
    let r = post(INIT.to_string(), None).await.expect("initialize");
    assert_eq!(r.status(), 200);
    let sid = r
        .headers()
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .expect("session id")
        .to_string();
    let call = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
        "params": {"name": "whoami", "arguments": {}}});
    let r = post(call.to_string(), Some(&sid)).await.expect("whoami");
    let text = r.text().await.expect("body");
    // A JSON body or an event stream whose data lines carry the answer.
    let answer = text
        .lines()
        .map(|l| l.strip_prefix("data:").unwrap_or(l).trim())
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["id"] == 2)
        .unwrap_or_else(|| panic!("no answer to whoami in {text}"));
    assert_eq!(
        answer["result"]["structuredContent"]["name"], "erin",
        "{answer}"
    );
    drop(l);
    holder.assert_no_home();
}

/// The serial of the client certificate inside a bundle, as openssl reads it.
fn serial_in(bundle: &Path, pw: &Path) -> String {
    let pem = if bundle.extension().is_some_and(|e| e == "p12") {
        let (ok, pem) = openssl(&[
            "pkcs12",
            "-in",
            utf8(bundle),
            "-clcerts",
            "-nokeys",
            "-passin",
            &format!("file:{}", utf8(pw)),
        ]);
        assert!(ok, "{pem}");
        pem
    } else {
        std::fs::read_to_string(bundle).expect("bundle")
    };
    // The client certificate is the one without CA:TRUE; it comes first in both forms.
    let start = pem
        .find("-----BEGIN CERTIFICATE-----")
        .expect("a certificate");
    let (ok, text) = crate::common::openssl_stdin(&["x509", "-noout", "-serial"], &pem[start..]);
    assert!(ok, "{text}");
    text.trim().trim_start_matches("serial=").to_lowercase()
}

#[test]
fn renewal_rewrites_the_holders_bundle_in_place() {
    let env = Env::with_ca();
    let server = Server::start(&env, &[]);
    for (name, file, flags) in [
        (
            "frank",
            "frank.p12",
            &["--p12", "frank.p12", "--p12-password-file", "pw"][..],
        ),
        ("gina", "gina.pem", &["--bundle", "gina.pem"][..]),
    ] {
        // Short-lived, so that renewal is open at once.
        let (old, bundle) = issue_bundle(&env, name, file, &["--ttl", "20s"]);
        let holder = Holder::new();
        let bundle = holder.receive(&bundle);
        let pw = holder.receive(&env.path("pw"));
        assert_eq!(serial_in(&bundle, &pw), old);
        let url = server.url();
        let mut args = vec!["renew", url.as_str()];
        args.extend_from_slice(flags);
        let new = holder.run(&args).ok().trim().to_string();
        assert_ne!(new, old, "{name}");
        assert_eq!(serial_in(&bundle, &pw), new, "{name}");
        assert_eq!(crate::common::mode(&bundle), 0o600, "{name}");
        assert!(!holder.path(&format!("{file}.next")).exists(), "{name}");
        // The renewed bundle works.
        let mut connect = vec!["connect".to_string()];
        connect.extend(flags.iter().map(|s| s.to_string()));
        connect.push(server.url());
        let who = whoami_through(&holder, bin(), &connect);
        assert_eq!(who["serial"], new.as_str(), "{name}: {who}");
        holder.assert_no_home();
    }
}

#[test]
fn holder_file_problems_are_clear_errors() {
    let env = Env::with_ca();
    let (_, bundle) = issue_bundle(&env, "bob", "bob.p12", &[]);
    let holder = Holder::new();
    holder.receive(&bundle);
    holder.receive(&env.home.join("clients/bob.crt"));
    holder.receive(&env.home.join("clients/bob.key"));
    holder.receive(&env.home.join("ca.crt"));
    holder.receive(&env.path("pw"));
    mcp_zt::fsutil::write_atomic(&holder.path("wrong"), b"not the password\n", 0o600)
        .expect("password file");
    let config = |files: &[&str]| -> Run {
        let mut args = vec!["client-config"];
        args.extend_from_slice(files);
        args.extend_from_slice(&["--url", "https://localhost:1/mcp", "--for", "json"]);
        holder.run(&args)
    };

    // A wrong PKCS#12 password, in client-config and in connect.
    config(&["--p12", "bob.p12", "--p12-password-file", "wrong"])
        .fails_with("wrong PKCS#12 password");
    let out = holder.run(&[
        "connect",
        "--p12",
        "bob.p12",
        "--p12-password-file",
        "wrong",
        "https://localhost:1/mcp",
    ]);
    assert_ne!(out.code, Some(0), "{out:?}");
    out.fails_with("wrong PKCS#12 password");

    // Missing files and missing options name what is missing.
    config(&["--p12", "nope.p12", "--p12-password-file", "pw"]).fails_with("nope.p12");
    config(&["--p12", "bob.p12"]).fails_with("--p12-password-file");
    config(&["--bundle", "nope.pem"]).fails_with("nope.pem");
    config(&["--cert", "bob.crt", "--key", "bob.key"]).fails_with("--ca FILE");
    config(&["--cert", "bob.crt", "--key", "nope.key", "--ca", "ca.crt"]).fails_with("nope.key");
    config(&[]).fails_with("say which certificate");

    // PKCS#12 files made by openssl: without the key, and without the CA.
    let pass = format!("file:{}", utf8(&holder.path("pw")));
    let (ok, text) = openssl(&[
        "pkcs12",
        "-export",
        "-nokeys",
        "-in",
        utf8(&holder.path("bob.crt")),
        "-out",
        utf8(&holder.path("nokey.p12")),
        "-passout",
        &pass,
    ]);
    assert!(ok, "{text}");
    config(&["--p12", "nokey.p12", "--p12-password-file", "pw"]).fails_with("no private key");
    // The certificate alone, without the intermediate that follows it in bob.crt.
    let leaf_only = {
        let pem = std::fs::read_to_string(holder.path("bob.crt")).expect("bob.crt");
        let end = pem.find("-----END CERTIFICATE-----").expect("pem") + 26;
        std::fs::write(holder.path("bob-leaf.crt"), &pem[..end]).expect("write");
        holder.path("bob-leaf.crt")
    };
    let (ok, text) = openssl(&[
        "pkcs12",
        "-export",
        "-in",
        utf8(&leaf_only),
        "-inkey",
        utf8(&holder.path("bob.key")),
        "-out",
        utf8(&holder.path("noca.p12")),
        "-passout",
        &pass,
    ]);
    assert!(ok, "{text}");
    config(&["--p12", "noca.p12", "--p12-password-file", "pw"]).fails_with("no CA certificate");
    // ...which --ca supplies; the printed command carries it.
    let out = config(&[
        "--p12",
        "noca.p12",
        "--p12-password-file",
        "pw",
        "--ca",
        "ca.crt",
    ]);
    let v: Value = serde_json::from_str(out.ok()).expect("json");
    assert!(v["args"]
        .as_array()
        .expect("args")
        .iter()
        .any(|a| a == utf8(&holder.path("ca.crt"))));

    // A PEM bundle that other users can read is refused, like a key file.
    let (_, pem_bundle) = issue_bundle(&env, "open", "open.pem", &[]);
    mcp_zt::fsutil::write_atomic(
        &holder.path("open.pem"),
        &std::fs::read(&pem_bundle).expect("read"),
        mcp_zt::fsutil::PUBLIC_MODE,
    )
    .expect("0644");
    config(&["--bundle", "open.pem"]).fails_with("chmod 600");
    holder.assert_no_home();
}

#[test]
fn issue_bundle_needs_a_password_for_p12_and_issues_nothing_without_it() {
    let env = Env::with_ca();
    let out = env.run(&[
        "issue",
        "--role",
        "viewer",
        "--name",
        "bob",
        "--bundle",
        utf8(&env.path("bob.pfx")),
    ]);
    out.fails_with("--p12-password-file");
    assert!(env.list().is_empty(), "nothing was issued");
    let out = env.run(&[
        "issue",
        "--role",
        "viewer",
        "--name",
        "bob",
        "--bundle",
        utf8(&env.path("missing/bob.pem")),
    ]);
    out.fails_with("does not exist");
    assert!(env.list().is_empty(), "nothing was issued");
}
