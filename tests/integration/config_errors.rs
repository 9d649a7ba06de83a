//! Mistakes in the files mcp-zt reads (policy.toml, upstreams.toml) are reported once: the
//! error names the file and the line and says what is wrong a single time, however many
//! layers of errors carry it to `main`.

use std::fs;
use std::os::unix::fs::PermissionsExt;

use crate::common::{Env, Run};

/// Asserts a one-line failure that names `file` and says `fact` exactly once.
#[track_caller]
fn says_once(run: &Run, file: &str, fact: &str) {
    run.fails_with(file);
    assert_eq!(
        run.stderr.matches(fact).count(),
        1,
        "{fact:?} should appear exactly once: {run:?}"
    );
}

/// A policy with `deny` misspelt on line 6.
const TYPO_POLICY: &str = "[roles.viewer]\n\n[roles.editor]\ninherits = [\"viewer\"]\nallow = [\"tool:*\"]\ndenyy = [\"tool:delete_*\"]\n";

#[test]
fn an_unknown_policy_field_is_named_once_with_its_file_and_line() {
    let env = Env::with_ca();
    fs::write(env.home.join("policy.toml"), TYPO_POLICY).expect("policy");
    for args in [
        &["roles"][..],
        &["issue", "--name", "alice", "--role", "viewer"][..],
    ] {
        let run = env.run(args);
        says_once(&run, "policy.toml: policy line 6:", "denyy");
        assert_eq!(
            run.stderr.matches("policy line").count(),
            1,
            "the line is named once: {run:?}"
        );
    }
    // `ca init` on a HOME whose policy is broken checks it the same way.
    let other = Env::new();
    fs::create_dir_all(&other.home).expect("home");
    fs::set_permissions(&other.home, fs::Permissions::from_mode(0o700)).expect("chmod");
    fs::write(other.home.join("policy.toml"), TYPO_POLICY).expect("policy");
    says_once(
        &other.run(&["ca", "init"]),
        "policy.toml: policy line 6:",
        "denyy",
    );
}

#[test]
fn an_unreadable_policy_says_the_os_error_once() {
    let env = Env::with_ca();
    let policy = env.home.join("policy.toml");
    fs::remove_file(&policy).expect("remove policy");
    fs::create_dir(&policy).expect("a folder where the policy should be");
    says_once(
        &env.run(&["roles"]),
        "read ",
        "Is a directory (os error 21)",
    );
}

#[test]
fn an_unknown_upstreams_field_is_named_once_with_its_file_and_line() {
    let env = Env::with_ca();
    let file = env.home.join("upstreams.toml");
    fs::write(
        &file,
        "[upstreams.a]\ncommand = \"server\"\nargz = [\"-v\"]\n",
    )
    .expect("write");
    fs::set_permissions(&file, fs::Permissions::from_mode(0o600)).expect("chmod");
    for args in [&["upstream", "list"][..], &["upstream", "check"][..]] {
        let run = env.run(args);
        says_once(&run, "upstreams.toml line 3:", "argz");
        assert_eq!(run.stderr.matches("line 3").count(), 1, "{run:?}");
    }
    // The same file as a folder: the read error is said once too.
    fs::remove_file(&file).expect("remove");
    fs::create_dir(&file).expect("folder");
    fs::set_permissions(&file, fs::Permissions::from_mode(0o700)).expect("chmod");
    says_once(
        &env.run(&["upstream", "list"]),
        "upstreams.toml",
        "Is a directory (os error 21)",
    );
}
