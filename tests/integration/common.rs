//! Test helpers: a temporary HOME and a way to run the binary in it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_mcp-zt")
}

/// A temporary folder with a CA home inside it.
pub struct Env {
    pub dir: tempfile::TempDir,
    pub home: PathBuf,
}

/// A finished command: status, stdout and stderr as text.
#[derive(Debug)]
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    fn from(out: Output) -> Run {
        Run {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Asserts success and returns stdout.
    #[track_caller]
    pub fn ok(&self) -> &str {
        assert_eq!(self.code, Some(0), "command failed: {self:?}");
        &self.stdout
    }

    /// Asserts a clean failure: exit code 1, one error line naming `needle`, no panic.
    #[track_caller]
    pub fn fails_with(&self, needle: &str) {
        assert_eq!(self.code, Some(1), "expected exit 1: {self:?}");
        assert!(!self.stderr.contains("panicked"), "panic: {self:?}");
        let lines: Vec<&str> = self.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "expected one error line: {self:?}");
        assert!(lines[0].starts_with("mcp-zt: error: "), "{self:?}");
        assert!(
            self.stderr.contains(needle),
            "expected {needle:?} in {self:?}"
        );
    }
}

impl Env {
    /// A fresh folder; the CA is not created yet.
    pub fn new() -> Env {
        let dir = tempfile::tempdir().expect("tempdir");
        let home = dir.path().join("home");
        Env { dir, home }
    }

    /// A fresh folder with `ca init` done.
    pub fn with_ca() -> Env {
        let env = Env::new();
        env.run(&["ca", "init"]).ok();
        env
    }

    /// Runs `mcp-zt --home HOME args...`.
    pub fn run(&self, args: &[&str]) -> Run {
        self.run_in(&self.home, args)
    }

    /// Runs `mcp-zt --home home args...`.
    pub fn run_in(&self, home: &Path, args: &[&str]) -> Run {
        let out = Command::new(bin())
            .arg("--home")
            .arg(home)
            .args(args)
            .env_remove("MCP_ZT_HOME")
            .env_remove("MCP_ZT_CA_PASSPHRASE_FILE")
            .output()
            .expect("run mcp-zt");
        Run::from(out)
    }

    /// Path inside the temporary folder.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes a secret file (passphrase, password) with mode 0600, as mcp-zt requires.
    pub fn secret_file(&self, name: &str, contents: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let path = self.path(name);
        std::fs::write(&path, contents).expect("write secret file");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        path
    }

    /// `list --json`, parsed.
    pub fn list(&self) -> Vec<serde_json::Value> {
        serde_json::from_str(self.run(&["list", "--json"]).ok()).expect("list --json is JSON")
    }

    /// Issues a certificate and returns its serial.
    pub fn issue(&self, name: &str, role: &str) -> String {
        self.run(&["issue", "--name", name, "--role", role])
            .ok()
            .trim()
            .to_string()
    }
}

/// A certificate holder's machine: an empty folder with no CA home, where commands run with
/// that folder as their working directory and `MCP_ZT_HOME` pointing at a folder that does not
/// exist (and must still not exist afterwards).
pub struct Holder {
    pub dir: tempfile::TempDir,
}

impl Holder {
    pub fn new() -> Holder {
        Holder {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    /// Path inside the holder's folder.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Copies a file the operator handed over into the holder's folder (mode kept).
    pub fn receive(&self, from: &Path) -> PathBuf {
        let to = self.path(&from.file_name().expect("file name").to_string_lossy());
        std::fs::copy(from, &to).expect("copy to the holder");
        to
    }

    /// `program` set up to run on the holder's machine.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new(program);
        cmd.current_dir(self.dir.path())
            .env("MCP_ZT_HOME", self.path("no-home"))
            .env_remove("MCP_ZT_CA_PASSPHRASE_FILE")
            .env_remove("MCP_ZT_P12_PASSWORD_FILE");
        cmd
    }

    /// Runs `mcp-zt args...` on the holder's machine.
    pub fn run(&self, args: &[&str]) -> Run {
        Run::from(self.command(bin()).args(args).output().expect("run mcp-zt"))
    }

    /// Nothing made a CA home: neither `MCP_ZT_HOME` nor the default `./pki` exists.
    #[track_caller]
    pub fn assert_no_home(&self) {
        for home in ["no-home", "pki"] {
            assert!(!self.path(home).exists(), "{home} was created");
        }
    }
}

/// Runs openssl with `args`; returns (success, stdout + stderr).
pub fn openssl(args: &[&str]) -> (bool, String) {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl must be installed (scripts/test.sh installs it)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Runs openssl with `args` and `input` on stdin; returns (success, stdout + stderr).
pub fn openssl_stdin(args: &[&str], input: &str) -> (bool, String) {
    use std::io::Write;
    let mut child = Command::new("openssl")
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("openssl must be installed (scripts/test.sh installs it)");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write to openssl");
    let out = child.wait_with_output().expect("openssl");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// `openssl verify -CAfile HOME/ca.crt -purpose sslclient CERT`: (success, output).
pub fn verify_client_cert(home: &Path, cert: &Path) -> (bool, String) {
    let mut args = vec!["verify".to_string()];
    args.extend(chain_args(home));
    args.extend(["-purpose".into(), "sslclient".into(), utf8(cert)]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    openssl(&args)
}

fn utf8(p: &Path) -> String {
    p.to_str().expect("utf8").to_string()
}

/// `-CAfile HOME/ca.crt` (the root clients trust) and, in a hierarchy, `-untrusted
/// HOME/intermediate.crt`: what openssl needs to build a leaf's path.
pub fn chain_args(home: &Path) -> Vec<String> {
    let mut args = vec!["-CAfile".to_string(), utf8(&home.join("ca.crt"))];
    let inter = home.join("intermediate.crt");
    if inter.exists() {
        args.extend(["-untrusted".into(), utf8(&inter)]);
    }
    args
}

/// The CA that signs leaves and CRLs now: `intermediate.crt` in a hierarchy, `ca.crt` in a
/// single-CA home.
pub fn signing_cert(home: &Path) -> PathBuf {
    let inter = home.join("intermediate.crt");
    if inter.exists() {
        inter
    } else {
        home.join("ca.crt")
    }
}

/// The key of the CA that signs now (`ca.key`, or the current intermediate's).
pub fn signing_key(home: &Path) -> PathBuf {
    let single = home.join("ca.key");
    if single.exists() {
        return single;
    }
    let pem = std::fs::read_to_string(home.join("intermediate.crt")).expect("intermediate.crt");
    let (ok, serial) = openssl_stdin(&["x509", "-noout", "-serial"], &pem);
    assert!(ok, "{serial}");
    let serial = serial.trim().trim_start_matches("serial=").to_lowercase();
    home.join("intermediates").join(format!("{serial}.key"))
}

/// Permission bits of a path.
pub fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).expect("stat").permissions().mode() & 0o777
}

/// A child process killed (and reaped) on drop.
pub struct Killed(pub std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
