//! The pipes of a shared stdio child, shared by rmcp's client and the native transport's
//! relay: one pump reads the child's stdout line by line and hands each answer to a relayed
//! call to its waiter, everything else to rmcp; one pump writes rmcp's lines and the relayed
//! requests to the child's stdin, whole lines only, so the two never interleave.
//!
//! Relayed requests carry string ids of their own (`mcp-zt-direct-N`), which rmcp's numeric
//! ids can never equal, so an answer goes to exactly one side.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::value::RawValue;
use tokio::io::{
    AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader, DuplexStream,
};
use tokio::sync::oneshot;

use super::direct::{answer_of, request_body, Failed, Incoming, MAX_ANSWER_BYTES};
use crate::mcp::provider::RelayAnswer as Answer;

/// The prefix of relayed requests' ids.
const ID_PREFIX: &str = "mcp-zt-direct-";

/// Buffer between the pumps and rmcp.
const DUPLEX_BYTES: usize = 64 * 1024;

/// What a waiter is told when no answer comes.
enum PipeError {
    /// The answer could not be read.
    Call(String),
    /// The pipes ended.
    Ended(String),
}

type Waiter = oneshot::Sender<Result<Answer, PipeError>>;
type Waiters = Mutex<HashMap<String, Waiter>>;

/// The relay's side of one child's pipes.
pub struct PipeLink {
    /// Whole lines to the child's stdin.
    lines: tokio::sync::mpsc::Sender<Vec<u8>>,
    waiting: Arc<Waiters>,
    next_id: AtomicU64,
}

fn lock(w: &Waiters) -> std::sync::MutexGuard<'_, HashMap<String, Waiter>> {
    w.lock().unwrap_or_else(|e| e.into_inner())
}

/// Puts the pumps between the child's pipes and rmcp: returns the relay's link and the pair
/// rmcp takes instead of the pipes.
pub fn split<R, W>(stdout: R, stdin: W) -> (Arc<PipeLink>, (DuplexStream, DuplexStream))
where
    R: AsyncRead + Send + Unpin + 'static,
    W: AsyncWrite + Send + Unpin + 'static,
{
    let (rmcp_reads, to_rmcp) = tokio::io::duplex(DUPLEX_BYTES);
    let (from_rmcp, rmcp_writes) = tokio::io::duplex(DUPLEX_BYTES);
    let waiting: Arc<Waiters> = Arc::default();
    let (lines, rx) = tokio::sync::mpsc::channel(256);
    tokio::spawn(write_pump(stdin, rx));
    tokio::spawn(rmcp_lines(from_rmcp, lines.clone()));
    tokio::spawn(read_pump(stdout, to_rmcp, waiting.clone()));
    let link = Arc::new(PipeLink {
        lines,
        waiting,
        next_id: AtomicU64::new(1),
    });
    (link, (rmcp_reads, rmcp_writes))
}

/// Writes whole lines to the child's stdin until every sender is gone or the pipe fails.
async fn write_pump<W: AsyncWrite + Unpin>(
    mut stdin: W,
    mut rx: tokio::sync::mpsc::Receiver<Vec<u8>>,
) {
    while let Some(line) = rx.recv().await {
        if stdin.write_all(&line).await.is_err() || stdin.flush().await.is_err() {
            return;
        }
    }
}

/// Cuts what rmcp writes into lines for the write pump.
async fn rmcp_lines(from_rmcp: DuplexStream, lines: tokio::sync::mpsc::Sender<Vec<u8>>) {
    let mut from = BufReader::new(from_rmcp);
    loop {
        let mut line = Vec::new();
        match from.read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                if lines.send(line).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Reads the child's stdout: an answer to a relayed request goes to its waiter, every other
/// line to rmcp. At the end (or a line over [`MAX_ANSWER_BYTES`]) every waiter is told.
async fn read_pump<R: AsyncRead + Unpin>(
    stdout: R,
    mut to_rmcp: DuplexStream,
    waiting: Arc<Waiters>,
) {
    let mut from = BufReader::new(stdout);
    let end = loop {
        let mut line = Vec::new();
        let read = (&mut from)
            .take(MAX_ANSWER_BYTES as u64 + 1)
            .read_until(b'\n', &mut line)
            .await;
        match read {
            Ok(0) => break "the upstream's stdout closed".to_string(),
            Err(e) => break format!("reading the upstream's stdout: {e}"),
            Ok(n) if n > MAX_ANSWER_BYTES => {
                break format!("a line over {MAX_ANSWER_BYTES} bytes from the upstream")
            }
            Ok(_) => {}
        }
        if let Some((id, message)) = relayed_answer(&line) {
            let waiter = lock(&waiting).remove(&id);
            if let Some(w) = waiter {
                let _ = w.send(answer_of_line(message, &id).map_err(PipeError::Call));
            }
            continue;
        }
        if to_rmcp.write_all(&line).await.is_err() {
            break "rmcp's connection ended".to_string();
        }
    };
    // rmcp sees the end of the stream; relayed calls in flight fail.
    let _ = to_rmcp.shutdown().await;
    drop(to_rmcp);
    for (_, w) in lock(&waiting).drain() {
        let _ = w.send(Err(PipeError::Ended(end.clone())));
    }
}

/// The line as an answer to a relayed request: its id and message.
fn relayed_answer(line: &[u8]) -> Option<(String, Incoming)> {
    // Cheap test first: most lines are rmcp's.
    let needle = ID_PREFIX.as_bytes();
    if !line.windows(needle.len()).any(|w| w == needle) {
        return None;
    }
    let message: Incoming = serde_json::from_slice(line).ok()?;
    let id = message.id.as_ref()?.as_str()?.to_string();
    (id.starts_with(ID_PREFIX) && message.method.is_none()).then_some((id, message))
}

fn answer_of_line(message: Incoming, id: &str) -> Result<Answer, String> {
    let want = serde_json::Value::String(id.to_string());
    answer_of(message, &want)?.ok_or_else(|| "no answer to the request".to_string())
}

impl PipeLink {
    /// The id of the next relayed request.
    pub fn next_id(&self) -> String {
        format!(
            "{ID_PREFIX}{}",
            self.next_id.fetch_add(1, Ordering::Relaxed)
        )
    }

    /// Sends `method` for `name` as an older revision's request (no per-request `_meta`: the
    /// child's session holds what the handshake said) and waits for its answer. `Err` is a
    /// transport failure. Dropping the future forgets the waiter.
    pub async fn send(
        &self,
        id: &str,
        method: &str,
        name: &str,
        arguments: Option<&RawValue>,
    ) -> Result<Answer, Failed> {
        let id = id.to_string();
        let id_json = serde_json::to_string(&id).map_err(|e| Failed::Call(e.to_string()))?;
        let mut line =
            request_body(&id_json, method, name, arguments, None).map_err(Failed::Call)?;
        line.push(b'\n');
        let (tx, rx) = oneshot::channel();
        lock(&self.waiting).insert(id.clone(), tx);
        let _forget = Forget(&self.waiting, id);
        let broken = |what: &str| Failed::Broken(format!("the upstream's {what} closed"));
        self.lines.send(line).await.map_err(|_| broken("stdin"))?;
        match rx.await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(PipeError::Call(e))) => Err(Failed::Call(e)),
            Ok(Err(PipeError::Ended(e))) => Err(Failed::Broken(e)),
            Err(_) => Err(broken("stdout")),
        }
    }

    /// Tells the child to stop working on request `id` (a notification; nothing waits).
    pub fn cancel(&self, id: &str, reason: &str) {
        let note = serde_json::json!({
            "jsonrpc": "2.0",
            "method": "notifications/cancelled",
            "params": {"requestId": id, "reason": reason},
        });
        if let Ok(mut line) = serde_json::to_vec(&note) {
            line.push(b'\n');
            let _ = self.lines.try_send(line);
        }
    }
}

/// Removes a waiter however its call ends.
struct Forget<'a>(&'a Waiters, String);

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        lock(self.0).remove(&self.1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn answers_to_relayed_ids_go_to_their_waiter_and_the_rest_to_rmcp() {
        let (child_in, mut child_in_far) = tokio::io::duplex(1 << 16);
        let (mut child_out_far, child_out) = tokio::io::duplex(1 << 16);
        let (link, (mut rmcp_reads, mut rmcp_writes)) = split(child_out, child_in);
        // rmcp writes a request; it reaches the child whole.
        rmcp_writes
            .write_all(b"{\"jsonrpc\":\"2.0\",\"id\":0,\"method\":\"ping\"}\n")
            .await
            .expect("rmcp write");
        let call = {
            let link = link.clone();
            tokio::spawn(async move { link.send(&link.next_id(), "tools/call", "t", None).await })
        };
        let mut seen = String::new();
        let mut buf = [0u8; 4096];
        while seen.matches('\n').count() < 2 {
            let n = child_in_far.read(&mut buf).await.expect("child reads");
            seen.push_str(std::str::from_utf8(&buf[..n]).expect("utf-8"));
        }
        assert!(seen.contains("\"method\":\"ping\""), "{seen}");
        assert!(seen.contains("\"id\":\"mcp-zt-direct-1\""), "{seen}");
        for line in seen.lines() {
            serde_json::from_str::<serde_json::Value>(line).expect("whole lines");
        }
        // The child answers both; each answer goes to its side.
        child_out_far
            .write_all(b"{\"jsonrpc\":\"2.0\",\"id\":\"mcp-zt-direct-1\",\"result\":{\"x\":1}}\n{\"jsonrpc\":\"2.0\",\"id\":0,\"result\":{}}\n")
            .await
            .expect("child writes");
        let got = call.await.expect("task").expect("answer");
        assert!(matches!(got, Answer::Result(r) if r.get() == r#"{"x":1}"#));
        let mut to_rmcp = vec![0u8; 64];
        let n = rmcp_reads.read(&mut to_rmcp).await.expect("rmcp reads");
        assert_eq!(
            &to_rmcp[..n],
            b"{\"jsonrpc\":\"2.0\",\"id\":0,\"result\":{}}\n"
        );
        // The child goes away: a call in flight fails, rmcp sees the end.
        let pending = {
            let link = link.clone();
            tokio::spawn(async move { link.send(&link.next_id(), "tools/call", "t", None).await })
        };
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        drop(child_out_far);
        let err = pending.await.expect("task").expect_err("no answer");
        assert!(
            matches!(&err, Failed::Broken(e) if e.contains("stdout closed")),
            "{err:?}"
        );
        assert_eq!(rmcp_reads.read(&mut to_rmcp).await.expect("eof"), 0);
    }

    #[test]
    fn only_string_ids_of_the_relay_are_taken() {
        assert!(relayed_answer(b"{\"jsonrpc\":\"2.0\",\"id\":3,\"result\":{}}").is_none());
        assert!(relayed_answer(
            b"{\"jsonrpc\":\"2.0\",\"id\":\"x-mcp-zt-direct-1\",\"result\":{}}"
        )
        .is_none());
        let ask = b"{\"jsonrpc\":\"2.0\",\"id\":\"mcp-zt-direct-1\",\"method\":\"roots/list\"}";
        assert!(relayed_answer(ask).is_none());
        assert!(
            relayed_answer(b"{\"jsonrpc\":\"2.0\",\"id\":\"mcp-zt-direct-2\",\"result\":{}}")
                .is_some()
        );
    }
}
