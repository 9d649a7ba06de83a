//! The stop sequence against real children (`sh` scripts), with a short grace.

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use super::*;

const GRACE: Duration = Duration::from_millis(300);

/// Collects what the child's stderr is passed on as.
#[derive(Clone, Default)]
struct Collect(Slot<Vec<u8>>);

impl Collect {
    fn text(&self) -> String {
        String::from_utf8_lossy(&lock(&self.0).clone().unwrap_or_default()).into_owned()
    }
}

impl AsyncWrite for Collect {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        lock(&self.0)
            .get_or_insert_with(Vec::new)
            .extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// Runs `script` with `sh -c`; `$M` names a marker file in `dir` the script may append to.
fn start(dir: &Path, script: &str) -> (StdioChild, (ChildReader, ChildWriter), Collect, PathBuf) {
    let marker = dir.join("marker");
    let mut cmd = Command::new("sh");
    cmd.arg("-c").arg(script).env("M", &marker);
    let sink = Collect::default();
    let (child, transport) = spawn(cmd, sink.clone()).expect("spawn sh");
    (child, transport, sink, marker)
}

fn marker(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

async fn wait_for(what: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !what() {
        assert!(Instant::now() < deadline, "timed out");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Processes of process group `pgid` that are not zombies, from /proc.
#[cfg(target_os = "linux")]
fn live_in_group(pgid: u32) -> usize {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0;
    };
    dir.filter_map(|e| std::fs::read_to_string(e.ok()?.path().join("stat")).ok())
        .filter(|stat| {
            // pid (comm) state ppid pgrp ...: comm may hold spaces, so split after its ')'.
            let rest: Vec<&str> = stat
                .rsplit_once(')')
                .map(|(_, r)| r.split_whitespace().collect())
                .unwrap_or_default();
            rest.first() != Some(&"Z") && rest.get(2) == Some(&pgid.to_string().as_str())
        })
        .count()
}

#[tokio::test]
async fn a_child_that_exits_on_stdin_eof_gets_no_sigterm() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (child, _t, _, m) = start(
        dir.path(),
        "trap 'echo term >> \"$M\"' TERM; cat >/dev/null; echo eof >> \"$M\"",
    );
    let how = child.stop(GRACE).await.expect("stop");
    assert!(matches!(how, Stopped::Exited(s) if s.success()), "{how:?}");
    assert_eq!(marker(&m), "eof\n");
}

#[tokio::test]
async fn a_child_that_stays_after_eof_gets_sigterm_after_the_grace() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (child, _t, _, m) = start(
        dir.path(),
        "trap 'echo term >> \"$M\"; exit 0' TERM; while :; do sleep 0.05; done",
    );
    let started = Instant::now();
    let how = child.stop(GRACE).await.expect("stop");
    assert!(
        matches!(how, Stopped::Terminated(s) if s.success()),
        "{how:?}"
    );
    assert!(started.elapsed() >= GRACE, "SIGTERM only after the grace");
    assert_eq!(marker(&m), "term\n");
}

#[tokio::test]
async fn a_child_that_ignores_sigterm_is_killed_after_a_second_grace() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (child, _t, _, _) = start(dir.path(), "trap '' TERM; while :; do sleep 0.05; done");
    let pid = child.id().expect("pid");
    let started = Instant::now();
    let how = child.stop(GRACE).await.expect("stop");
    assert!(
        matches!(how, Stopped::Killed(s) if s.signal() == Some(9)),
        "{how:?}"
    );
    assert!(
        started.elapsed() >= GRACE * 2,
        "SIGKILL only after two graces"
    );
    // Its group (the `sleep` it runs) is dead too (a zombie until something reaps it).
    #[cfg(target_os = "linux")]
    wait_for(|| live_in_group(pid) == 0).await;
    #[cfg(not(target_os = "linux"))]
    let _ = pid;
}

#[tokio::test]
async fn a_child_still_writing_while_it_is_stopped_never_meets_a_closed_stdout() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Like a Node server answering after its stdin closed: EPIPE is recorded, not fatal.
    let (child, transport, sink, m) = start(
        dir.path(),
        "trap '' PIPE; trap 'echo term >> \"$M\"; exit 0' TERM; cat >/dev/null; \
         while :; do echo answer || { echo EPIPE >> \"$M\"; exit 1; }; done",
    );
    // rmcp has gone: nothing reads the transport any more.
    drop(transport);
    let how = child.stop(GRACE).await.expect("stop");
    assert!(matches!(how, Stopped::Terminated(_)), "{how:?}");
    assert_eq!(marker(&m), "term\n", "no write failed");
    assert_eq!(sink.text(), "");
}

#[tokio::test]
async fn stderr_written_after_the_stop_began_is_not_passed_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (child, _t, sink, m) = start(
        dir.path(),
        "echo starting >&2; cat >/dev/null; echo 'Error: write EPIPE' >&2; echo wrote >> \"$M\"",
    );
    wait_for(|| sink.text() == "starting\n").await;
    let how = child.stop(GRACE).await.expect("stop");
    assert!(matches!(how, Stopped::Exited(_)), "{how:?}");
    assert_eq!(marker(&m), "wrote\n", "the child did write it");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(sink.text(), "starting\n");
}

#[tokio::test]
async fn a_child_that_exited_by_itself_keeps_its_last_words() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (child, _t, sink, _) = start(dir.path(), "echo 'crashed: out of memory' >&2; exit 3");
    // It exits before anyone decides to stop it.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let how = child.stop(GRACE).await.expect("stop");
    assert!(
        matches!(how, Stopped::Exited(s) if s.code() == Some(3)),
        "{how:?}"
    );
    wait_for(|| sink.text() == "crashed: out of memory\n").await;
}

#[tokio::test]
async fn the_transport_reads_and_writes_the_child_until_the_stop() {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let dir = tempfile::tempdir().expect("tempdir");
    let (child, (reader, mut writer), _, _) = start(dir.path(), "cat");
    writer.write_all(b"hello\n").await.expect("write");
    let mut line = String::new();
    BufReader::new(reader)
        .read_line(&mut line)
        .await
        .expect("read");
    assert_eq!(line, "hello\n");
    let how = child.stop(GRACE).await.expect("stop");
    assert!(matches!(how, Stopped::Exited(_)), "{how:?}");
    assert!(
        writer.write_all(b"late\n").await.is_err(),
        "stdin is closed"
    );
}
