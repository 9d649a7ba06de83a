//! A stdio upstream's child process: started with piped stdin, stdout and stderr, and stopped
//! the way the MCP specification describes for stdio: close its stdin, wait; SIGTERM, wait;
//! SIGKILL.
//!
//! rmcp's `TokioChildProcess` runs a similar sequence, but from inside its transport: whoever
//! closes the connection cannot wait for the child to be gone, its waits are fixed at 3 s, and
//! a runtime that ends first (`upstream check` exiting, the server stopping) drops the child
//! half-stopped. Its stdout was then closed while it still wrote its last answers, and a Node
//! server ended the run with a stack trace (`Error: write EPIPE`) on our stderr. So mcp-zt owns
//! the [`Child`] here and hands rmcp only the two pipes ([`ChildReader`], [`ChildWriter`]):
//!
//! - while the child is being stopped its stdout is still read (and thrown away), so it never
//!   writes into a closed pipe;
//! - what it writes on stderr is passed on to ours until mcp-zt decides to stop it, and dropped
//!   after: a child complaining about being stopped is not an error of the gateway;
//! - on unix it runs in a process group of its own and the signals go to the group, so a
//!   launcher (`npx`, `uvx`, a shell script) and the server it started stop together.
//!
//! On other systems (the holder's side is built for Windows) there are no signals: stdin is
//! closed, and after the grace the child is killed.

use std::io;
use std::pin::Pin;
use std::process::ExitStatus;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

/// How long a stdio child gets to exit after its stdin is closed, and again after SIGTERM.
/// The MCP specification asks for "a reasonable time"; 2 s lets a server finish writing and
/// flush its own state, and bounds a stop at about 4 s (a reload or shutdown waits that long
/// at most for a child that ignores both).
pub const STOP_GRACE: Duration = Duration::from_secs(2);

/// How a child ended when it was stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// It exited by itself: after its stdin was closed, or before the stop began.
    Exited(ExitStatus),
    /// It exited after SIGTERM (unix only).
    Terminated(ExitStatus),
    /// It was killed (SIGKILL on unix) after ignoring the rest.
    Killed(ExitStatus),
}

type Slot<T> = Arc<Mutex<Option<T>>>;

fn lock<T>(slot: &Slot<T>) -> MutexGuard<'_, Option<T>> {
    slot.lock().unwrap_or_else(|e| e.into_inner())
}

/// The child's stdout as rmcp reads it. Once the stop has begun it reads as the end of the
/// stream; the pipe itself stays with the stop, which keeps reading it.
pub struct ChildReader(Slot<ChildStdout>);

impl AsyncRead for ChildReader {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        // The lock is held only for one non-blocking poll.
        match lock(&self.0).as_mut() {
            Some(out) => Pin::new(out).poll_read(cx, buf),
            None => Poll::Ready(Ok(())),
        }
    }
}

/// The child's stdin as rmcp writes it. Closing is the stop's first step, not rmcp's: when
/// rmcp drops this the pipe stays open until the stop closes it.
pub struct ChildWriter(Slot<ChildStdin>);

fn closed() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "the upstream's stdin is closed")
}

impl AsyncWrite for ChildWriter {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match lock(&self.0).as_mut() {
            Some(stdin) => Pin::new(stdin).poll_write(cx, buf),
            None => Poll::Ready(Err(closed())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match lock(&self.0).as_mut() {
            Some(stdin) => Pin::new(stdin).poll_flush(cx),
            None => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Shutting down stdin is the stop's decision (see [`StdioChild::stop`]).
        Poll::Ready(Ok(()))
    }
}

/// A running stdio child. Dropped without [`StdioChild::stop`] (a runtime torn down), the
/// process is killed as a last resort (`kill_on_drop`).
pub struct StdioChild {
    child: Child,
    stdin: Slot<ChildStdin>,
    stdout: Slot<ChildStdout>,
    /// Set when the stop begins: stderr is dropped from then on.
    stopping: Arc<AtomicBool>,
}

/// Starts `cmd` with piped stdio (its environment and folder are the caller's). The child's
/// stderr goes to `stderr` until it is being stopped. Returns the child and the pair rmcp takes
/// as its transport.
pub fn spawn<W>(mut cmd: Command, stderr: W) -> io::Result<(StdioChild, (ChildReader, ChildWriter))>
where
    W: AsyncWrite + Send + Unpin + 'static,
{
    cmd.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    // Its own process group, so the signals reach whatever it started too.
    #[cfg(unix)]
    cmd.process_group(0);
    let mut child = cmd.spawn()?;
    let missing = || io::Error::other("the child's pipes were not set up");
    let stdin = Arc::new(Mutex::new(Some(child.stdin.take().ok_or_else(missing)?)));
    let stdout = Arc::new(Mutex::new(Some(child.stdout.take().ok_or_else(missing)?)));
    let err = child.stderr.take().ok_or_else(missing)?;
    let stopping = Arc::new(AtomicBool::new(false));
    tokio::spawn(forward_stderr(err, stderr, stopping.clone()));
    let transport = (ChildReader(stdout.clone()), ChildWriter(stdin.clone()));
    Ok((
        StdioChild {
            child,
            stdin,
            stdout,
            stopping,
        },
        transport,
    ))
}

/// Passes the child's stderr on until the stop begins, then reads and drops the rest (so the
/// child never writes into a closed pipe either). Ends when the child's stderr closes.
async fn forward_stderr<R, W>(mut from: R, mut to: W, stopping: Arc<AtomicBool>)
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; 8192];
    let mut forward = true;
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if forward && !stopping.load(Ordering::SeqCst) {
            // Our stderr gone is no reason to stop reading the child's.
            forward = to.write_all(&buf[..n]).await.is_ok() && to.flush().await.is_ok();
        }
    }
}

impl StdioChild {
    /// The process id, while it runs.
    pub fn id(&self) -> Option<u32> {
        self.child.id()
    }

    /// Stops the child: see [`stop`]. A child that already exited is only reaped, and what it
    /// wrote on stderr before is still passed on (it was not asked to stop).
    pub async fn stop(mut self, grace: Duration) -> io::Result<Stopped> {
        if let Some(status) = self.child.try_wait()? {
            return Ok(Stopped::Exited(status));
        }
        self.stopping.store(true, Ordering::SeqCst);
        let stdin = lock(&self.stdin).take();
        let stdout = lock(&self.stdout).take();
        stop(&mut self.child, stdin, stdout, grace).await
    }
}

/// The MCP stdio shutdown: closes `stdin` and waits up to `grace` for the child to exit; then
/// (unix) sends SIGTERM to its process group and waits `grace` again; then kills it. `stdout`
/// is read and dropped meanwhile, so a child still writing does not fail with EPIPE.
pub async fn stop(
    child: &mut Child,
    stdin: Option<ChildStdin>,
    stdout: Option<ChildStdout>,
    grace: Duration,
) -> io::Result<Stopped> {
    drop(stdin);
    let drain = async move {
        if let Some(mut out) = stdout {
            let _ = tokio::io::copy(&mut out, &mut tokio::io::sink()).await;
        }
        std::future::pending::<()>().await
    };
    let sequence = async {
        if let Ok(status) = tokio::time::timeout(grace, child.wait()).await {
            return Ok(Stopped::Exited(status?));
        }
        #[cfg(unix)]
        {
            signal_group(child, nix::sys::signal::Signal::SIGTERM);
            if let Ok(status) = tokio::time::timeout(grace, child.wait()).await {
                return Ok(Stopped::Terminated(status?));
            }
            signal_group(child, nix::sys::signal::Signal::SIGKILL);
        }
        // Kills the child itself (on unix, the group got SIGKILL just above) and reaps it.
        child.kill().await?;
        Ok(Stopped::Killed(child.wait().await?))
    };
    tokio::select! {
        r = sequence => r,
        () = drain => Err(io::Error::other("the stdout drain ended")),
    }
}

/// Says so on stderr when a child had to be killed or could not be stopped; a child that
/// exited after its stdin closed or after SIGTERM stopped as it should.
pub fn report_stop(name: &str, pid: Option<u32>, how: std::io::Result<Stopped>) {
    let pid = pid.map(|p| format!(" (pid {p})")).unwrap_or_default();
    match how {
        Ok(Stopped::Exited(_) | Stopped::Terminated(_)) => {}
        Ok(Stopped::Killed(_)) => eprintln!(
            "mcp-zt: upstream {name}{pid} did not exit within {} s of its stdin closing nor of SIGTERM: killed",
            STOP_GRACE.as_secs()
        ),
        Err(e) => eprintln!("mcp-zt: upstream {name}{pid}: stopping the child failed: {e}"),
    }
}

/// Sends `sig` to the child's process group (its id: see [`spawn`]), if it was not reaped yet
/// (an id reaped could name another process by now).
#[cfg(unix)]
fn signal_group(child: &Child, sig: nix::sys::signal::Signal) {
    // Never 0 or 1: killpg(0) would signal mcp-zt's own group, and 1 is init's.
    let Some(pid) = child
        .id()
        .and_then(|p| i32::try_from(p).ok())
        .filter(|p| *p > 1)
    else {
        return;
    };
    // Fails only if the group is gone already, which is what was asked for.
    let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid), sig);
}

#[cfg(all(test, unix))]
mod tests;
