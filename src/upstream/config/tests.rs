//! Unit tests of the upstreams file: every rule accepted and refused, secrets, editing.
//! (Compiled only for tests: see the `mod tests` declaration in `config.rs`.)
#[cfg(test)]
use std::os::unix::fs::PermissionsExt;

use super::*;

const FILE: &str = "/home/ca/upstreams.toml";

fn ok(text: &str) -> Upstreams {
    parse(text, Path::new(FILE)).unwrap_or_else(|e| panic!("should parse: {e}\n{text}"))
}

/// Parses text that must fail; returns the message.
fn refused(text: &str) -> String {
    match parse(text, Path::new(FILE)) {
        Ok(u) => panic!("should be refused: {u:?}\n{text}"),
        Err(e) => e.to_string(),
    }
}

/// Asserts a refusal at `line` whose message contains `needle`.
#[track_caller]
fn refused_at(text: &str, line: usize, needle: &str) {
    let msg = refused(text);
    assert!(msg.starts_with(&format!("{FILE} line {line}: ")), "{msg}");
    assert!(msg.contains(needle), "expected {needle:?} in {msg}");
}

fn stdio(extra: &str) -> String {
    format!("[upstreams.s]\ncommand = \"server\"\n{extra}\n")
}

fn http(extra: &str) -> String {
    format!("[upstreams.h]\nurl = \"https://mcp.example.org/mcp\"\n{extra}\n")
}

#[test]
fn the_documented_example_parses_with_its_defaults() {
    let u = ok(r#"
[upstreams.github]
command = "npx"
args = ["-y", "@modelcontextprotocol/server-github"]
env = { GITHUB_TOKEN = { file = "/etc/mcp-zt/github-token" } }
share = "per-identity"

[upstreams.docs]
url = "http://127.0.0.1:3000/mcp"
headers = { Authorization = { env = "DOCS_TOKEN" } }
forward_identity = true
prefix = ""
timeout = "2m"
"#);
    let names: Vec<&str> = u.list.iter().map(|u| u.name.as_str()).collect();
    assert_eq!(names, ["docs", "github"], "sorted by name");
    let gh = u.get("github").expect("github");
    assert_eq!(
        gh.transport,
        Transport::Stdio {
            command: "npx".into(),
            args: vec!["-y".into(), "@modelcontextprotocol/server-github".into()],
            env: vec![(
                "GITHUB_TOKEN".into(),
                Secret::File("/etc/mcp-zt/github-token".into())
            )],
            cwd: None,
        }
    );
    assert_eq!(gh.prefix, "github__");
    assert_eq!(gh.timeout, DEFAULT_TIMEOUT);
    assert_eq!(gh.share, Share::PerIdentity);
    assert_eq!(gh.max_children, DEFAULT_MAX_CHILDREN);
    assert!(!gh.forward_identity);
    let docs = u.get("docs").expect("docs");
    assert_eq!(
        docs.transport,
        Transport::Http {
            url: "http://127.0.0.1:3000/mcp".into(),
            headers: vec![("Authorization".into(), Secret::Env("DOCS_TOKEN".into()))],
            ca: None,
            client_cert: None,
        }
    );
    assert_eq!(docs.prefix, "");
    assert_eq!(docs.timeout, Duration::from_secs(120));
    assert_eq!(docs.share, Share::Global);
    assert!(docs.forward_identity);
    assert!(u.get("nope").is_none());
}

#[test]
fn an_empty_file_means_no_upstreams() {
    assert!(ok("").is_empty());
    assert!(ok("[upstreams]\n").is_empty());
}

#[test]
fn syntax_errors_and_unknown_keys_name_the_file_and_line() {
    refused_at("[upstreams.a]\ncommand = \"x\"\nurl = \n", 3, "");
    refused_at(&stdio("colour = \"red\""), 3, "colour");
    refused_at("[servers.a]\ncommand = \"x\"\n", 1, "servers");
    refused_at(&stdio("args = \"-v\""), 3, "");
    refused_at(
        &stdio("client_cert = { cert = \"a\", key = \"b\", pass = \"c\" }"),
        3,
        "",
    );
}

#[test]
fn names_follow_the_naming_rule() {
    assert!(valid_name("github"));
    assert!(valid_name("a-b_c9"));
    assert!(valid_name(&"a".repeat(32)));
    for bad in ["", "GitHub", "a.b", "a b", "é", &"a".repeat(33)] {
        assert!(!valid_name(bad), "{bad:?}");
    }
    refused_at(
        "\n[upstreams.GitHub]\ncommand = \"x\"\n",
        2,
        "invalid upstream name",
    );
    refused_at(
        "upstreams.\"a.b\" = { command = \"x\" }\n",
        1,
        "invalid upstream name",
    );
}

#[test]
fn exactly_one_of_command_and_url() {
    refused_at("[upstreams.a]\nprefix = \"p\"\n", 1, "needs command");
    refused_at(
        "[upstreams.a]\ncommand = \"x\"\nurl = \"http://h/mcp\"\n",
        3,
        "not both",
    );
    refused_at(&stdio("command = \"\""), 3, "");
    refused_at("[upstreams.a]\ncommand = \"  \"\n", 2, "command is empty");
    refused_at("[upstreams.a]\ncommand = \"a\\u0000b\"\n", 2, "NUL");
}

#[test]
fn stdio_keys_are_refused_on_http_upstreams() {
    for (key, value) in [
        ("args", "[\"a\"]"),
        ("env", "{ A = \"b\" }"),
        ("cwd", "\"/tmp\""),
        ("share", "\"global\""),
        ("max_children", "4"),
    ] {
        refused_at(
            &http(&format!("{key} = {value}")),
            3,
            &format!("{key} applies to command upstreams only"),
        );
    }
}

#[test]
fn http_keys_are_refused_on_stdio_upstreams() {
    for (key, value) in [
        ("headers", "{ A = \"b\" }"),
        ("ca", "\"/ca.pem\""),
        ("client_cert", "{ cert = \"/c\", key = \"/k\" }"),
        ("forward_identity", "true"),
    ] {
        refused_at(
            &stdio(&format!("{key} = {value}")),
            3,
            &format!("{key} applies to url upstreams only"),
        );
    }
}

#[test]
fn share_and_max_children() {
    let u = ok(&stdio("share = \"per-identity\"\nmax_children = 5"));
    assert_eq!(u.list[0].share, Share::PerIdentity);
    assert_eq!(u.list[0].max_children, 5);
    assert_eq!(
        ok(&stdio("share = \"global\"")).list[0].share,
        Share::Global
    );
    refused_at(&stdio("share = \"per-user\""), 3, "per-identity");
    refused_at(&stdio("max_children = 5"), 3, "per-identity");
    for bad in ["0", "-1", "1025"] {
        refused_at(
            &stdio(&format!("share = \"per-identity\"\nmax_children = {bad}")),
            4,
            "from 1 to 1024",
        );
    }
}

#[test]
fn urls_must_be_http_or_https_with_a_host_and_no_credentials() {
    let u = ok("[upstreams.a]\nurl = \"HTTPS://Example.org:8443/mcp\"\n");
    match &u.list[0].transport {
        Transport::Http { url, .. } => assert_eq!(url, "https://example.org:8443/mcp"),
        other => panic!("{other:?}"),
    }
    for (url, needle) in [
        ("ftp://h/mcp", "http or https"),
        ("unix:/run/mcp.sock", "http or https"),
        ("not a url", "invalid url"),
        ("http://", "invalid url"),
        ("https://user:pw@h/mcp", "credentials"),
        ("https://token@h/mcp", "credentials"),
    ] {
        refused_at(&format!("[upstreams.a]\nurl = \"{url}\"\n"), 2, needle);
    }
}

#[test]
fn ca_and_client_cert_need_https_and_resolve_against_home() {
    let u = ok(&http(
        "ca = \"roots.pem\"\nclient_cert = { cert = \"/etc/gw.crt\", key = \"gw.key\" }",
    ));
    match &u.list[0].transport {
        Transport::Http {
            ca, client_cert, ..
        } => {
            assert_eq!(ca.as_deref(), Some(Path::new("/home/ca/roots.pem")));
            assert_eq!(
                client_cert.clone(),
                Some(("/etc/gw.crt".into(), "/home/ca/gw.key".into()))
            );
        }
        other => panic!("{other:?}"),
    }
    refused_at(
        "[upstreams.a]\nurl = \"http://h/mcp\"\nca = \"/ca.pem\"\n",
        3,
        "needs an https url",
    );
    refused_at(
        "[upstreams.a]\nurl = \"http://h/mcp\"\nclient_cert = { cert = \"/c\", key = \"/k\" }\n",
        3,
        "needs an https url",
    );
    refused_at(&http("ca = \"\""), 3, "empty path");
}

#[test]
fn header_names_are_valid_and_not_owned_by_the_gateway() {
    let u = ok(&http(
        "headers = { Authorization = \"Bearer x\", X-Api-Key = { file = \"k\" } }",
    ));
    match &u.list[0].transport {
        Transport::Http { headers, .. } => assert_eq!(
            headers,
            &vec![
                ("Authorization".into(), Secret::Literal("Bearer x".into())),
                ("X-Api-Key".into(), Secret::File("/home/ca/k".into())),
            ]
        ),
        other => panic!("{other:?}"),
    }
    for name in [
        "X-MCP-ZT-Name",
        "x-mcp-zt-role",
        "x-mcp-zt-serial",
        "x-mcp-zt-spiffe-id",
        "x-mcp-zt-future",
    ] {
        refused_at(
            &http(&format!("headers = {{ {name} = \"v\" }}")),
            3,
            "set by the gateway",
        );
    }
    for name in [
        "Host",
        "Content-Length",
        "connection",
        "Transfer-Encoding",
        "upgrade",
        "te",
        "Mcp-Session-Id",
        "MCP-Protocol-Version",
    ] {
        refused_at(
            &http(&format!("headers = {{ {name} = \"v\" }}")),
            3,
            "managed by the gateway",
        );
    }
    refused_at(
        &http("headers = { \"bad name\" = \"v\" }"),
        3,
        "not a valid HTTP header name",
    );
    refused_at(
        &http("headers = { A = \"x\", a = \"y\" }"),
        3,
        "given twice",
    );
    refused_at(
        &http("headers = { A = \"line\\nbreak\" }"),
        3,
        "not a valid HTTP header value",
    );
}

#[test]
fn env_names_are_valid_and_outside_the_identity_namespace() {
    let u = ok(&stdio(
        "env = { _A1 = \"x\", path_extra = { env = \"HOME\" } }\ncwd = \"work\"",
    ));
    match &u.list[0].transport {
        Transport::Stdio { env, cwd, .. } => {
            assert_eq!(
                env,
                &vec![
                    ("_A1".into(), Secret::Literal("x".into())),
                    ("path_extra".into(), Secret::Env("HOME".into())),
                ]
            );
            assert_eq!(cwd.as_deref(), Some(Path::new("/home/ca/work")));
        }
        other => panic!("{other:?}"),
    }
    for name in ["1A", "A-B", "\"A B\"", "\"\""] {
        refused_at(
            &stdio(&format!("env = {{ {name} = \"v\" }}")),
            3,
            "not a valid name",
        );
    }
    for name in IDENTITY_ENV.iter().chain(&["MCP_ZT_OTHER", "mcp_zt_x"]) {
        refused_at(
            &stdio(&format!("env = {{ {name} = \"v\" }}")),
            3,
            "reserved",
        );
    }
}

#[test]
fn secret_values_are_a_string_a_file_or_a_variable() {
    for bad in [
        "42",
        "{ file = \"a\", env = \"B\" }",
        "{ path = \"a\" }",
        "{ file = 1 }",
        "[\"a\"]",
        "{}",
    ] {
        refused_at(
            &stdio(&format!("env = {{ A = {bad} }}")),
            3,
            "must be a string",
        );
    }
    refused_at(
        &stdio("env = { A = { env = \"1X\" } }"),
        3,
        "not an environment variable name",
    );
    refused_at(&stdio("env = { A = { file = \"\" } }"), 3, "empty path");
    // The table form of the file works too, and the line is the value's.
    refused_at(
        "[upstreams.s]\ncommand = \"x\"\n\n[upstreams.s.env]\nA = 3\n",
        5,
        "must be",
    );
}

#[test]
fn prefixes() {
    assert_eq!(ok(&stdio("prefix = \"gh.v1-\"")).list[0].prefix, "gh.v1-");
    assert_eq!(ok(&stdio("prefix = \"\"")).list[0].prefix, "");
    assert_eq!(
        ok(&stdio(&format!("prefix = \"{}\"", "p".repeat(64)))).list[0]
            .prefix
            .len(),
        64
    );
    refused_at(
        &stdio(&format!("prefix = \"{}\"", "p".repeat(65))),
        3,
        "longer than 64",
    );
    for bad in ["a b", "a/b", "a:b", "é"] {
        refused_at(&stdio(&format!("prefix = \"{bad}\"")), 3, "use only");
    }
}

#[test]
fn timeouts_are_one_second_to_one_hour() {
    for (t, secs) in [("1s", 1), ("30s", 30), ("5m", 300), ("1h", 3600)] {
        assert_eq!(
            ok(&stdio(&format!("timeout = \"{t}\""))).list[0].timeout,
            Duration::from_secs(secs)
        );
    }
    for bad in ["0s", "61m", "2h", "1d", "30", "soon", "-1s", ""] {
        refused_at(&stdio(&format!("timeout = \"{bad}\"")), 3, "from 1s to 1h");
    }
}

#[test]
fn debug_never_prints_a_literal_secret() {
    let u = ok(&http("headers = { Authorization = \"Bearer hunter2\" }"));
    let text = format!("{u:?} {:#?}", u.list[0]);
    assert!(!text.contains("hunter2"), "{text}");
    assert!(text.contains("<literal>"), "{text}");
    assert_eq!(format!("{:?}", Secret::Env("T".into())), "Env(\"T\")");
    assert_eq!(format!("{:?}", Secret::File("/t".into())), "File(\"/t\")");
}

#[test]
fn secrets_resolve_from_files_without_the_trailing_newline() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("token");
    std::fs::write(&file, "s3cret\r\n\n").expect("write");
    assert_eq!(
        Secret::File(file.clone()).resolve().expect("resolve"),
        "s3cret"
    );
    assert_eq!(Secret::Literal("x".into()).resolve().expect("literal"), "x");

    std::fs::write(&file, "\n").expect("write");
    let err = Secret::File(file.clone()).resolve().expect_err("empty");
    assert!(err.to_string().contains("is empty"), "{err}");
    assert!(
        err.to_string().contains(&file.display().to_string()),
        "{err}"
    );

    let missing = dir.path().join("missing");
    let err = Secret::File(missing.clone())
        .resolve()
        .expect_err("missing");
    assert!(
        err.to_string().contains(&missing.display().to_string()),
        "{err}"
    );
}

#[test]
fn secrets_resolve_from_the_environment() {
    // PATH is set for any test process; the other name is never set.
    let path = std::env::var("PATH").expect("PATH");
    assert_eq!(Secret::Env("PATH".into()).resolve().expect("PATH"), path);
    let err = Secret::Env("MCP_ZT_TEST_SURELY_UNSET_9F3".into())
        .resolve()
        .expect_err("unset");
    let msg = err.to_string();
    assert!(
        msg.contains("MCP_ZT_TEST_SURELY_UNSET_9F3") && msg.contains("not set"),
        "{msg}"
    );
}

fn home() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

fn write_file(home: &Path, text: &str, mode: u32) {
    let path = home.join(FILE_NAME);
    std::fs::write(&path, text).expect("write");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

#[test]
fn load_reads_home_and_a_missing_file_is_no_upstreams() {
    let dir = home();
    assert!(load(dir.path()).expect("missing file").is_empty());
    write_file(dir.path(), &stdio(""), 0o600);
    assert_eq!(load(dir.path()).expect("load").list[0].name, "s");
    write_file(dir.path(), "[upstreams.s]\n", 0o600);
    let err = load(dir.path()).expect_err("invalid");
    assert!(err
        .to_string()
        .contains(&dir.path().join(FILE_NAME).display().to_string()));
}

#[test]
fn load_refuses_a_file_group_or_others_can_read() {
    let dir = home();
    for mode in [0o640, 0o604, 0o660, 0o644] {
        write_file(dir.path(), &stdio(""), mode);
        let msg = load(dir.path()).expect_err("readable").to_string();
        assert!(msg.contains("chmod 600"), "{msg}");
        assert!(msg.contains(&format!("{mode:04o}")), "{msg}");
        assert!(Document::open(dir.path()).is_err());
    }
}

fn http_entry(url: &str) -> NewUpstream {
    NewUpstream {
        url: Some(url.into()),
        ..NewUpstream::default()
    }
}

#[test]
fn add_and_remove_round_trip_and_keep_other_upstreams() {
    let dir = home();
    write_file(
        dir.path(),
        "# hand-written\n[upstreams.keep]\ncommand = \"x\"\nenv = { T = \"lit\" }\n",
        0o600,
    );
    let mut doc = Document::open(dir.path()).expect("open");
    assert!(doc.had_comments());
    let new = NewUpstream {
        url: Some("https://h/mcp".into()),
        prefix: Some(String::new()),
        timeout: Some("10s".into()),
        forward_identity: true,
        headers: vec![
            ("Authorization".into(), Secret::Env("TOKEN".into())),
            ("X-Key".into(), Secret::File("/run/key".into())),
        ],
        ca: Some("/etc/ca.pem".into()),
        client_cert: Some(("/c.crt".into(), "/c.key".into())),
        ..NewUpstream::default()
    };
    let added = doc.add("docs", &new).expect("add");
    let saved = doc.save().expect("save");
    assert_eq!(saved.get("docs"), Some(&added));
    assert_eq!(load(dir.path()).expect("reload"), saved);
    assert_eq!(added.prefix, "");
    assert!(added.forward_identity);
    assert_eq!(added.timeout, Duration::from_secs(10));
    let keep = saved.get("keep").expect("kept").clone();
    assert!(
        matches!(&keep.transport, Transport::Stdio { env, .. } if env[0].1 == Secret::Literal("lit".into()))
    );
    assert_eq!(
        fsutil::mode_of(&dir.path().join(FILE_NAME)).expect("mode"),
        0o600
    );

    let stdio_new = NewUpstream {
        command: vec!["npx".into(), "-y".into(), "pkg".into()],
        share: Some(Share::PerIdentity),
        max_children: Some(4),
        env: vec![("A".into(), Secret::Literal("b".into()))],
        cwd: Some("/srv".into()),
        ..NewUpstream::default()
    };
    let mut doc = Document::open(dir.path()).expect("open");
    assert!(!doc.had_comments());
    doc.add("gh", &stdio_new).expect("add stdio");
    let saved = doc.save().expect("save");
    assert_eq!(
        saved.get("gh").map(|u| u.transport.clone()),
        Some(Transport::Stdio {
            command: "npx".into(),
            args: vec!["-y".into(), "pkg".into()],
            env: vec![("A".into(), Secret::Literal("b".into()))],
            cwd: Some("/srv".into()),
        })
    );

    let mut doc = Document::open(dir.path()).expect("open");
    assert_eq!(doc.names(), ["docs", "gh", "keep"]);
    doc.remove("docs").expect("remove");
    doc.remove("gh").expect("remove");
    doc.save().expect("save");
    assert_eq!(load(dir.path()).expect("reload").list, vec![keep]);
}

#[test]
fn add_refuses_duplicates_bad_names_and_invalid_entries_without_touching_the_document() {
    let dir = home();
    let mut doc = Document::open(dir.path()).expect("open empty");
    doc.add("a", &http_entry("http://h/mcp")).expect("add");
    let before = doc.to_text().expect("text");
    let err = doc.add("a", &http_entry("http://h/mcp")).expect_err("dup");
    assert!(err.to_string().contains("upstream remove a"), "{err}");
    assert!(matches!(
        doc.add("A", &http_entry("http://h/mcp")),
        Err(UpstreamConfigError::BadName(_))
    ));
    let err = doc.add("b", &http_entry("ftp://h")).expect_err("bad url");
    assert_eq!(
        err.to_string(),
        "upstream b: url \"ftp://h\": the scheme must be http or https"
    );
    let err = doc.add("b", &NewUpstream::default()).expect_err("neither");
    assert!(err.to_string().contains("needs command"), "{err}");
    let twice = NewUpstream {
        headers: vec![
            ("A".into(), Secret::Literal("1".into())),
            ("a".into(), Secret::Literal("2".into())),
        ],
        ..http_entry("http://h/mcp")
    };
    assert!(doc
        .add("b", &twice)
        .expect_err("twice")
        .to_string()
        .contains("given twice"));
    assert_eq!(doc.to_text().expect("text"), before);
    // Nothing was written yet, and the first save creates the file 0600.
    assert!(!dir.path().join(FILE_NAME).exists());
    doc.save().expect("save");
    assert_eq!(
        fsutil::mode_of(&dir.path().join(FILE_NAME)).expect("mode"),
        0o600
    );
}

#[test]
fn remove_of_an_unknown_name_lists_the_known_ones() {
    let dir = home();
    write_file(dir.path(), &format!("{}{}", stdio(""), http("")), 0o600);
    let mut doc = Document::open(dir.path()).expect("open");
    let err = doc.remove("zz").expect_err("unknown");
    assert_eq!(
        err.to_string(),
        "no upstream \"zz\"; the upstreams are: h, s"
    );
    let mut empty = Document::open(home().path()).expect("open");
    assert!(empty
        .remove("zz")
        .expect_err("unknown")
        .to_string()
        .ends_with("none"));
}

#[test]
fn remove_can_drop_a_broken_upstream_but_save_refuses_other_broken_ones() {
    let dir = home();
    write_file(
        dir.path(),
        "[upstreams.ok]\ncommand = \"x\"\n\n[upstreams.bad]\nprefix = \"p\"\n",
        0o600,
    );
    let mut doc = Document::open(dir.path()).expect("open");
    doc.add("new", &http_entry("http://h/mcp")).expect("add");
    // The error points at the line of the file on disk.
    refused_line(doc.save(), 4);
    doc.remove("bad").expect("remove");
    doc.save().expect("save");
    assert_eq!(load(dir.path()).expect("load").list.len(), 2);
}

#[track_caller]
fn refused_line(r: Result<Upstreams, UpstreamConfigError>, line: usize) {
    match r {
        Err(UpstreamConfigError::Invalid { line: l, .. }) => assert_eq!(l, line),
        other => panic!("expected an error at line {line}: {other:?}"),
    }
}

#[test]
fn save_refuses_when_the_file_changed_since_open() {
    let dir = home();
    let mut doc = Document::open(dir.path()).expect("open");
    doc.add("a", &http_entry("http://h/mcp")).expect("add");
    write_file(dir.path(), &stdio(""), 0o600);
    assert!(matches!(doc.save(), Err(UpstreamConfigError::Changed(_))));
    assert_eq!(
        std::fs::read_to_string(dir.path().join(FILE_NAME)).expect("read"),
        stdio("")
    );
}

#[test]
fn the_written_file_reads_like_the_documented_example() {
    let dir = home();
    let mut doc = Document::open(dir.path()).expect("open");
    let new = NewUpstream {
        command: vec!["npx".into(), "-y".into(), "srv".into()],
        env: vec![("TOKEN".into(), Secret::File("/etc/token".into()))],
        share: Some(Share::PerIdentity),
        ..NewUpstream::default()
    };
    doc.add("gh", &new).expect("add");
    doc.add(
        "docs",
        &NewUpstream {
            prefix: Some(String::new()),
            ..http_entry("http://h/mcp")
        },
    )
    .expect("add");
    assert_eq!(
        doc.to_text().expect("text"),
        "[upstreams.docs]\nurl = \"http://h/mcp\"\nprefix = \"\"\n\n\
         [upstreams.gh]\ncommand = \"npx\"\nargs = [\"-y\", \"srv\"]\n\
         env = { TOKEN = { file = \"/etc/token\" } }\nshare = \"per-identity\"\n"
    );
    doc.remove("gh").expect("remove");
    doc.remove("docs").expect("remove");
    assert_eq!(doc.to_text().expect("text"), "");
}
