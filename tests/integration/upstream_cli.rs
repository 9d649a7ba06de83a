//! `upstream add`, `list` and `remove` through the CLI, on HOME/upstreams.toml.

use std::fs;
use std::os::unix::fs::PermissionsExt;

use serde_json::{json, Value};

use crate::common::{mode, Env};

fn list_json(env: &Env) -> Vec<Value> {
    serde_json::from_str(env.run(&["upstream", "list", "--json"]).ok()).expect("JSON")
}

#[test]
fn added_http_and_stdio_upstreams_are_listed_without_secret_values() {
    let env = Env::with_ca();
    let out = env.run(&[
        "upstream",
        "add",
        "docs",
        "--url",
        "http://127.0.0.1:3000/mcp",
        "--header",
        "Authorization=Bearer hunter2",
        "--header-from-env",
        "X-Api-Key=DOCS_KEY",
        "--timeout",
        "2m",
    ]);
    out.ok();
    assert!(
        out.stderr
            .starts_with("added upstream docs (http://127.0.0.1:3000/mcp); ")
            && out.stderr.contains("SIGHUP"),
        "{out:?}"
    );
    let token = env.secret_file("gh-token", "ghp_x\n");
    let token = token.to_str().expect("utf8");
    let out = env.run(&[
        "upstream",
        "add",
        "github",
        "--share",
        "per-identity",
        "--env",
        "LOG=debug",
        "--env-from-file",
        &format!("GITHUB_TOKEN={token}"),
        "--",
        "npx",
        "-y",
        "@modelcontextprotocol/server-github",
    ]);
    out.ok();
    assert!(
        out.stderr
            .contains("(npx -y @modelcontextprotocol/server-github)"),
        "{out:?}"
    );

    let file = env.home.join("upstreams.toml");
    assert_eq!(mode(&file), 0o600);

    let table = env.run(&["upstream", "list"]);
    let text = table.ok();
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].starts_with("NAME") && lines[0].contains("TRANSPORT"),
        "{text}"
    );
    assert!(
        lines[1].starts_with("docs ") && lines[1].contains("http://127.0.0.1:3000/mcp"),
        "{text}"
    );
    assert!(
        lines[1].contains("docs__") && lines[1].ends_with("2m"),
        "{text}"
    );
    assert!(text.contains("headers: Authorization, X-Api-Key"), "{text}");
    assert!(
        text.contains("npx -y @modelcontextprotocol/server-github"),
        "{text}"
    );
    assert!(text.contains("per-identity"), "{text}");
    assert!(text.contains("env: GITHUB_TOKEN, LOG"), "{text}");
    assert!(
        !text.contains("hunter2") && !text.contains("debug"),
        "{text}"
    );

    let list = list_json(&env);
    assert_eq!(list.len(), 2);
    assert_eq!(list[0]["name"], "docs");
    assert_eq!(list[0]["transport"], "http");
    assert_eq!(list[0]["target"], "http://127.0.0.1:3000/mcp");
    assert_eq!(list[0]["prefix"], "docs__");
    assert_eq!(list[0]["timeout"], "2m");
    assert_eq!(
        list[0]["headers"],
        json!({"Authorization": "<literal>", "X-Api-Key": {"env": "DOCS_KEY"}})
    );
    assert_eq!(list[1]["name"], "github");
    assert_eq!(list[1]["transport"], "stdio");
    assert_eq!(list[1]["share"], "per-identity");
    assert_eq!(list[1]["timeout"], "30s");
    assert_eq!(
        list[1]["env"],
        json!({"GITHUB_TOKEN": {"file": token}, "LOG": "<literal>"})
    );
    let raw = serde_json::to_string(&list).expect("json");
    assert!(!raw.contains("hunter2") && !raw.contains("debug"), "{raw}");
}

#[test]
fn an_empty_prefix_is_kept_and_shown_quoted() {
    let env = Env::with_ca();
    env.run(&[
        "upstream",
        "add",
        "docs",
        "--prefix",
        "",
        "--url",
        "http://h/mcp",
    ])
    .ok();
    assert_eq!(list_json(&env)[0]["prefix"], "");
    let table = env.run(&["upstream", "list"]);
    assert!(
        table
            .ok()
            .lines()
            .nth(1)
            .is_some_and(|l| l.contains("\"\"")),
        "{table:?}"
    );
}

#[test]
fn adding_an_existing_name_is_refused_and_says_to_remove_it_first() {
    let env = Env::with_ca();
    env.run(&["upstream", "add", "docs", "--url", "http://h/mcp"])
        .ok();
    let before = fs::read(env.home.join("upstreams.toml")).expect("read");
    env.run(&["upstream", "add", "docs", "--", "server"])
        .fails_with("upstream remove docs");
    assert_eq!(
        fs::read(env.home.join("upstreams.toml")).expect("read"),
        before
    );
}

#[test]
fn invalid_values_are_refused_and_the_file_is_unchanged() {
    let env = Env::with_ca();
    env.run(&["upstream", "add", "docs", "--url", "http://h/mcp"])
        .ok();
    let file = env.home.join("upstreams.toml");
    let before = fs::read(&file).expect("read");
    for (args, needle) in [
        (vec!["--url", "ftp://h/mcp"], "http or https"),
        (vec!["--url", "not a url"], "invalid url"),
        (
            vec!["--url", "http://h/mcp", "--header", "x-mcp-zt-role=admin"],
            "set by the gateway",
        ),
        (
            vec!["--url", "http://h/mcp", "--timeout", "2h"],
            "from 1s to 1h",
        ),
        (vec!["--url", "http://h/mcp", "--prefix", "a b"], "prefix"),
        (
            vec!["--env", "MCP_ZT_ROLE=admin", "--", "server"],
            "reserved",
        ),
        (
            vec!["--url", "http://h/mcp", "--share", "per-identity"],
            "command upstreams only",
        ),
    ] {
        let mut full = vec!["upstream", "add", "other"];
        full.extend(args);
        env.run(&full).fails_with(needle);
        assert_eq!(fs::read(&file).expect("read"), before, "{full:?}");
    }
    env.run(&["upstream", "add", "Bad.Name", "--url", "http://h/mcp"])
        .fails_with("invalid upstream name");
    assert_eq!(fs::read(&file).expect("read"), before);
}

#[test]
fn url_and_command_are_exclusive_and_one_is_required() {
    let env = Env::with_ca();
    let both = env.run(&[
        "upstream",
        "add",
        "x",
        "--url",
        "http://h/mcp",
        "--",
        "server",
    ]);
    assert_eq!(both.code, Some(2), "{both:?}");
    let neither = env.run(&["upstream", "add", "x"]);
    assert_eq!(neither.code, Some(2), "{neither:?}");
    assert!(!env.home.join("upstreams.toml").exists());
}

#[test]
fn remove_drops_one_upstream_and_unknown_names_list_the_known_ones() {
    let env = Env::with_ca();
    env.run(&["upstream", "add", "a", "--url", "http://h/mcp"])
        .ok();
    env.run(&["upstream", "add", "b", "--", "server", "--flag"])
        .ok();
    env.run(&["upstream", "remove", "zz"])
        .fails_with("the upstreams are: a, b");
    let out = env.run(&["upstream", "remove", "a"]);
    out.ok();
    assert!(out.stderr.starts_with("removed upstream a;"), "{out:?}");
    let list = list_json(&env);
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["name"], "b");
    assert_eq!(list[0]["target"], "server --flag");
    env.run(&["upstream", "remove", "b"]).ok();
    let empty = env.run(&["upstream", "list"]);
    assert_eq!(empty.ok(), "");
    assert!(
        empty
            .stderr
            .contains("no upstreams: add one with mcp-zt upstream add"),
        "{empty:?}"
    );
    env.run(&["upstream", "remove", "b"])
        .fails_with("the upstreams are: none");
}

#[test]
fn a_file_others_can_read_is_refused_with_the_fix() {
    let env = Env::with_ca();
    env.run(&["upstream", "add", "a", "--url", "http://h/mcp"])
        .ok();
    let file = env.home.join("upstreams.toml");
    fs::set_permissions(&file, fs::Permissions::from_mode(0o644)).expect("chmod");
    env.run(&["upstream", "list"]).fails_with("chmod 600");
    env.run(&["upstream", "add", "b", "--url", "http://h/mcp"])
        .fails_with("chmod 600");
}

#[test]
fn a_hand_written_mistake_is_reported_with_its_line() {
    let env = Env::with_ca();
    let file = env.home.join("upstreams.toml");
    fs::write(
        &file,
        "[upstreams.a]\ncommand = \"server\"\ncolour = \"red\"\n",
    )
    .expect("write");
    fs::set_permissions(&file, fs::Permissions::from_mode(0o600)).expect("chmod");
    env.run(&["upstream", "list"])
        .fails_with("upstreams.toml line 3: unknown field `colour`");
}

#[test]
fn upstream_commands_need_a_ca_home() {
    let env = Env::new();
    env.run(&["upstream", "add", "a", "--url", "http://h/mcp"])
        .fails_with("no CA in");
    assert!(!env.home.exists());
    env.run(&["upstream", "list"]).fails_with("no CA in");
}

/// A stdio MCP server in `sh` that answers `initialize` and `tools/list`, and once its stdin
/// closes goes on writing to stdout, as a Node server flushing its last messages does. A write
/// into a closed pipe is reported the way Node reports it; SIGTERM makes it say so and exit.
/// It writes its pid to `SCRIPT.pid` and appends `term` or `EPIPE` to `SCRIPT.log`.
pub const CHATTY_SERVER: &str = r#"
trap '' PIPE
trap 'echo term >> "$0.log"; echo "chatty: stopped by SIGTERM" >&2; exit 0' TERM
echo $$ > "$0.pid"
while IFS= read -r line; do
  id=$(printf '%s\n' "$line" | sed -n 's/.*"id":\([0-9][0-9]*\).*/\1/p')
  [ -n "$id" ] || continue
  case "$line" in
    *'"method":"initialize"'*)
      v=$(printf '%s\n' "$line" | sed -n 's/.*"protocolVersion":"\([^"]*\)".*/\1/p')
      printf '{"jsonrpc":"2.0","id":%s,"result":{"protocolVersion":"%s","capabilities":{"tools":{}},"serverInfo":{"name":"chatty","version":"1"}}}\n' "$id" "$v" ;;
    *'"method":"tools/list"'*)
      printf '{"jsonrpc":"2.0","id":%s,"result":{"tools":[{"name":"chat","inputSchema":{"type":"object"}}]}}\n' "$id" ;;
    *)
      printf '{"jsonrpc":"2.0","id":%s,"result":{}}\n' "$id" ;;
  esac
done
while :; do
  printf '{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":"still here"}}\n' \
    || { echo EPIPE >> "$0.log"; echo "Error: write EPIPE" >&2; exit 1; }
  sleep 0.01
done
"#;

#[test]
fn check_stops_a_stdio_child_that_keeps_writing_without_an_epipe_or_its_last_words() {
    let env = Env::with_ca();
    let script = env.path("chatty.sh");
    fs::write(&script, CHATTY_SERVER).expect("script");
    let file = env.home.join("upstreams.toml");
    fs::write(
        &file,
        format!(
            "[upstreams.chatty]\ncommand = \"/bin/sh\"\nargs = [\"{}\"]\n",
            script.display()
        ),
    )
    .expect("upstreams");
    fs::set_permissions(&file, fs::Permissions::from_mode(0o600)).expect("chmod");
    let started = std::time::Instant::now();
    let run = env.run(&["upstream", "check"]);
    assert!(
        run.ok().contains("chatty: ok"),
        "the upstream answered: {run:?}"
    );
    // Its stdin closed, it kept writing; after the 2 s grace SIGTERM stopped it. Neither a
    // failed write nor what it said on its way out reaches the operator.
    assert!(!run.stderr.contains("EPIPE"), "{run:?}");
    assert!(!run.stderr.contains("chatty:"), "{run:?}");
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    let pid = fs::read_to_string(env.path("chatty.sh.pid")).expect("pid file");
    let gone = std::process::Command::new("kill")
        .args(["-0", pid.trim()])
        .stderr(std::process::Stdio::null())
        .status()
        .expect("kill -0");
    assert!(!gone.success(), "the child is gone once check returns");
    let log = fs::read_to_string(env.path("chatty.sh.log")).expect("log");
    assert_eq!(log, "term\n", "SIGTERM after the grace, no write failed");
}
