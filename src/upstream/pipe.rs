//! The pipes of a stdio child, shared by rmcp's client and the native transport's relay: one
//! pump reads the child's stdout line by line and hands each answer to a relayed call to its
//! waiter, everything else to rmcp; one pump writes rmcp's lines and the relayed requests to
//! the child's stdin, whole lines only, so the two never interleave.
//!
//! Relayed requests carry string ids of their own (`mcp-zt-<random>-N`), which rmcp's numeric
//! ids never equal and nobody outside can guess, so an answer goes to exactly one side. A
//! relayed request is one line whatever its arguments hold (a raw line break in JSON can only
//! be whitespace, and is sent as a space), so no client can add a line of its own.
//!
//! While a relayed call is in flight, a message from the child that names no request cannot be
//! tied to one client request: its log lines are dropped and its questions (sampling,
//! elicitation, roots) refused here, in the order the child sent them, exactly as the rmcp
//! path refuses them with two requests in flight (see [`super::relay`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::Deserialize;
use serde_json::value::RawValue;
use tokio::io::{
    AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader, DuplexStream,
};
use tokio::sync::{mpsc, oneshot};

use super::direct::{answer_of, request_body, Failed, Incoming, MAX_ANSWER_BYTES};
use crate::mcp::provider::RelayAnswer as Answer;

/// Buffer between the pumps and rmcp.
const DUPLEX_BYTES: usize = 64 * 1024;

/// Questions a child asks its client, which only the request that caused them may answer.
const QUESTIONS: [&str; 3] = ["sampling/createMessage", "elicitation/create", "roots/list"];

/// What a waiter is told when no answer comes.
enum PipeError {
    /// The answer could not be read.
    Call(String),
    /// The pipes ended.
    Ended(String),
}

type Waiter = oneshot::Sender<Result<Answer, PipeError>>;

/// The relayed calls waiting, and why the pipes ended once they have.
#[derive(Default)]
struct Waiting {
    calls: HashMap<String, Waiter>,
    ended: Option<String>,
}

type Shared = Mutex<Waiting>;

fn lock(w: &Shared) -> std::sync::MutexGuard<'_, Waiting> {
    w.lock().unwrap_or_else(|e| e.into_inner())
}

/// The relay's side of one child's pipes.
pub struct PipeLink {
    /// Whole lines to the child's stdin.
    lines: mpsc::Sender<Vec<u8>>,
    waiting: Arc<Shared>,
    /// This link's id prefix: `mcp-zt-<16 random hex digits>-`.
    prefix: String,
    next_id: AtomicU64,
}

/// A fresh id prefix; a failing system RNG still gives a prefix no numeric id equals.
fn random_prefix() -> String {
    let mut b = [0u8; 8];
    let _ = aws_lc_rs::rand::fill(&mut b);
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!("mcp-zt-{hex}-")
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
    let waiting: Arc<Shared> = Arc::default();
    let (lines, rx) = mpsc::channel(256);
    let prefix = random_prefix();
    tokio::spawn(write_pump(stdin, rx));
    tokio::spawn(rmcp_lines(from_rmcp, lines.clone()));
    tokio::spawn(read_pump(
        stdout,
        to_rmcp,
        waiting.clone(),
        prefix.clone(),
        lines.clone(),
    ));
    let link = Arc::new(PipeLink {
        lines,
        waiting,
        prefix,
        next_id: AtomicU64::new(1),
    });
    (link, (rmcp_reads, rmcp_writes))
}

/// Writes whole lines to the child's stdin until every sender is gone or the pipe fails.
async fn write_pump<W: AsyncWrite + Unpin>(mut stdin: W, mut rx: mpsc::Receiver<Vec<u8>>) {
    while let Some(line) = rx.recv().await {
        if stdin.write_all(&line).await.is_err() || stdin.flush().await.is_err() {
            return;
        }
    }
}

/// Cuts what rmcp writes into lines for the write pump.
async fn rmcp_lines(from_rmcp: DuplexStream, lines: mpsc::Sender<Vec<u8>>) {
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

/// Skips the rest of a line over the limit (rmcp's reader drops such a line and goes on).
async fn skip_line<R: AsyncRead + Unpin>(from: &mut BufReader<R>) -> std::io::Result<()> {
    loop {
        let buf = from.fill_buf().await?;
        if buf.is_empty() {
            return Ok(());
        }
        match buf.iter().position(|b| *b == b'\n') {
            Some(i) => {
                from.consume(i + 1);
                return Ok(());
            }
            None => {
                let n = buf.len();
                from.consume(n);
            }
        }
    }
}

/// The id and method of a message, read before anything else.
#[derive(Deserialize)]
struct Head {
    #[serde(default)]
    id: Option<serde_json::Value>,
    #[serde(default)]
    method: Option<String>,
}

/// What the read pump does with one line.
enum Route {
    /// The answer to relayed call `id` (or, `Err`, one that could not be read).
    Relayed(String, Result<Answer, String>),
    /// rmcp's.
    Rmcp,
    /// A log line while a relayed call is in flight: dropped.
    Drop,
    /// A question while a relayed call is in flight: refused with this answer line.
    Refuse(Vec<u8>),
}

/// Where `line` goes; `relaying`: a relayed call is in flight.
fn route(line: &[u8], prefix: &str, relaying: bool) -> Route {
    let ours = line.windows(prefix.len()).any(|w| w == prefix.as_bytes());
    if !ours && !relaying {
        return Route::Rmcp;
    }
    let Ok(head) = serde_json::from_slice::<Head>(line) else {
        return Route::Rmcp;
    };
    match (&head.id, head.method.as_deref()) {
        (Some(serde_json::Value::String(id)), None) if id.starts_with(prefix) => {
            let answer = serde_json::from_slice::<Incoming>(line)
                .map_err(|e| format!("an answer that is not a JSON-RPC message: {e}"))
                .and_then(|m| {
                    answer_of(m, &serde_json::Value::String(id.clone()))?
                        .ok_or_else(|| "no answer to the request".to_string())
                });
            Route::Relayed(id.clone(), answer)
        }
        (None, Some("notifications/message")) if relaying => Route::Drop,
        (Some(id), Some(m)) if relaying && QUESTIONS.contains(&m) => {
            let refusal = serde_json::json!({
                "jsonrpc": "2.0",
                "id": id,
                "error": {
                    "code": -32600,
                    "message": format!("mcp-zt: {m} refused: it cannot be tied to one client request"),
                },
            });
            let mut out = serde_json::to_vec(&refusal).unwrap_or_default();
            out.push(b'\n');
            Route::Refuse(out)
        }
        _ => Route::Rmcp,
    }
}

/// Reads the child's stdout: an answer to a relayed request goes to its waiter, every other
/// line to rmcp (or, while a relayed call is in flight, is dropped or refused when it names
/// no request). A line over [`MAX_ANSWER_BYTES`] is skipped. At the end every waiter is told.
async fn read_pump<R: AsyncRead + Unpin>(
    stdout: R,
    mut to_rmcp: DuplexStream,
    waiting: Arc<Shared>,
    prefix: String,
    lines: mpsc::Sender<Vec<u8>>,
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
            Ok(n) if n > MAX_ANSWER_BYTES && line.last() != Some(&b'\n') => {
                if let Err(e) = skip_line(&mut from).await {
                    break format!("reading the upstream's stdout: {e}");
                }
                continue;
            }
            Ok(_) => {}
        }
        let relaying = !lock(&waiting).calls.is_empty();
        match route(&line, &prefix, relaying) {
            Route::Relayed(id, answer) => {
                let waiter = lock(&waiting).calls.remove(&id);
                if let Some(w) = waiter {
                    let _ = w.send(answer.map_err(PipeError::Call));
                }
            }
            Route::Drop => {}
            Route::Refuse(answer) => {
                let _ = lines.try_send(answer);
            }
            Route::Rmcp => {
                if to_rmcp.write_all(&line).await.is_err() {
                    break "rmcp's connection ended".to_string();
                }
            }
        }
    };
    // rmcp sees the end of the stream; relayed calls in flight fail, and later ones at once.
    let _ = to_rmcp.shutdown().await;
    drop(to_rmcp);
    let mut w = lock(&waiting);
    w.ended = Some(end.clone());
    for (_, waiter) in w.calls.drain() {
        let _ = waiter.send(Err(PipeError::Ended(end.clone())));
    }
}

impl PipeLink {
    /// The id of the next relayed request.
    pub fn next_id(&self) -> String {
        format!(
            "{}{}",
            self.prefix,
            self.next_id.fetch_add(1, Ordering::Relaxed)
        )
    }

    /// Sends `method` for `name` as an older revision's request (no per-request `_meta`: the
    /// child's session holds what the handshake said) and waits for its answer. Dropped
    /// before its answer, it forgets the waiter and tells the child to cancel.
    pub async fn send(
        &self,
        id: &str,
        method: &str,
        name: &str,
        arguments: Option<&RawValue>,
    ) -> Result<Answer, Failed> {
        let id_json = serde_json::to_string(id).map_err(|e| Failed::Call(e.to_string()))?;
        let mut line =
            request_body(&id_json, method, name, arguments, None).map_err(Failed::Call)?;
        // One line, whatever the arguments hold: outside strings a line break is whitespace
        // (inside them JSON has none), so a space means the same.
        for b in line.iter_mut() {
            if *b == b'\n' || *b == b'\r' {
                *b = b' ';
            }
        }
        line.push(b'\n');
        let (tx, rx) = oneshot::channel();
        {
            let mut w = lock(&self.waiting);
            if let Some(end) = &w.ended {
                return Err(Failed::Broken(end.clone()));
            }
            w.calls.insert(id.to_string(), tx);
        }
        let mut pending = Pending {
            link: self,
            id,
            answered: false,
        };
        let broken = |what: &str| Failed::Broken(format!("the upstream's {what} closed"));
        self.lines.send(line).await.map_err(|_| broken("stdin"))?;
        let r = match rx.await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(PipeError::Call(e))) => Err(Failed::Call(e)),
            Ok(Err(PipeError::Ended(e))) => Err(Failed::Broken(e)),
            Err(_) => Err(broken("stdout")),
        };
        pending.answered = true;
        r
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

/// A relayed call in flight: forgotten however it ends, and cancelled at the child when it
/// ends without its answer (the client went away).
struct Pending<'a> {
    link: &'a PipeLink,
    id: &'a str,
    answered: bool,
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        let waiting = lock(&self.link.waiting).calls.remove(self.id).is_some();
        if waiting && !self.answered {
            self.link.cancel(self.id, "cancelled by the client");
        }
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
        let first = format!("{}1", link.prefix);
        assert!(seen.contains(&format!("\"id\":\"{first}\"")), "{seen}");
        for line in seen.lines() {
            serde_json::from_str::<serde_json::Value>(line).expect("whole lines");
        }
        // The child answers both; each answer goes to its side.
        child_out_far
            .write_all(
                format!("{{\"jsonrpc\":\"2.0\",\"id\":\"{first}\",\"result\":{{\"x\":1}}}}\n{{\"jsonrpc\":\"2.0\",\"id\":0,\"result\":{{}}}}\n")
                    .as_bytes(),
            )
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
    fn lines_are_routed_by_id_and_unowned_messages_refused_while_relaying() {
        let p = "mcp-zt-0011223344556677-";
        let r = |line: &str, relaying| route(line.as_bytes(), p, relaying);
        assert!(matches!(
            r(r#"{"jsonrpc":"2.0","id":3,"result":{}}"#, true),
            Route::Rmcp
        ));
        let other = r#"{"jsonrpc":"2.0","id":"mcp-zt-ffff-1","result":{}}"#;
        assert!(matches!(r(other, true), Route::Rmcp));
        let ours = format!(r#"{{"jsonrpc":"2.0","id":"{p}2","result":{{"a":1}}}}"#);
        assert!(matches!(r(&ours, false), Route::Relayed(id, Ok(_)) if id == format!("{p}2")));
        // An answer of ours that cannot be read fails its call instead of waiting.
        let bad = format!(r#"{{"jsonrpc":"2.0","id":"{p}3","error":{{"code":"x"}}}}"#);
        assert!(matches!(r(&bad, false), Route::Relayed(_, Err(_))));
        // A question naming our id is still a question, not an answer.
        let ask = format!(r#"{{"jsonrpc":"2.0","id":"{p}4","method":"roots/list"}}"#);
        assert!(matches!(r(&ask, false), Route::Rmcp));
        let log = r#"{"jsonrpc":"2.0","method":"notifications/message","params":{}}"#;
        assert!(matches!(r(log, false), Route::Rmcp));
        assert!(matches!(r(log, true), Route::Drop));
        let progress = r#"{"jsonrpc":"2.0","method":"notifications/progress","params":{}}"#;
        assert!(matches!(r(progress, true), Route::Rmcp));
        let sampling = r#"{"jsonrpc":"2.0","id":7,"method":"sampling/createMessage"}"#;
        assert!(matches!(r(sampling, false), Route::Rmcp));
        let Route::Refuse(answer) = r(sampling, true) else {
            panic!("a question while relaying is refused")
        };
        let v: serde_json::Value = serde_json::from_slice(&answer).expect("JSON");
        assert_eq!(v["id"], 7);
        assert!(v["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("refused")));
        assert!(matches!(
            r(r#"{"jsonrpc":"2.0","id":8,"method":"ping"}"#, true),
            Route::Rmcp
        ));
    }

    #[tokio::test]
    async fn a_relayed_request_is_one_line_whatever_its_arguments_hold() {
        let (child_in, mut child_in_far) = tokio::io::duplex(1 << 16);
        let (_child_out_far, child_out) = tokio::io::duplex(1 << 16);
        let (link, _rmcp) = split(child_out, child_in);
        let args = RawValue::from_string(
            "{\"a\":\n{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\"}\r\n}".into(),
        )
        .expect("raw");
        let call = {
            let link = link.clone();
            tokio::spawn(async move {
                let id = link.next_id();
                let _ = tokio::time::timeout(
                    std::time::Duration::from_millis(200),
                    link.send(&id, "tools/call", "t", Some(&args)),
                )
                .await;
            })
        };
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        while !seen.contains(&b'\n') {
            let n = child_in_far.read(&mut buf).await.expect("child reads");
            seen.extend_from_slice(&buf[..n]);
        }
        let first = seen.split(|b| *b == b'\n').next().expect("a line");
        let v: serde_json::Value = serde_json::from_slice(first).expect("one whole request");
        assert_eq!(v["params"]["arguments"]["a"]["id"], 1);
        // Dropped at its timeout, the call is cancelled at the child.
        call.await.expect("task");
        let mut rest = seen[first.len() + 1..].to_vec();
        while !rest.contains(&b'\n') {
            let n = child_in_far.read(&mut buf).await.expect("child reads");
            rest.extend_from_slice(&buf[..n]);
        }
        assert!(String::from_utf8_lossy(&rest).contains("notifications/cancelled"));
    }

    #[tokio::test]
    async fn a_line_over_the_limit_is_skipped_and_the_pipes_go_on() {
        let (child_in, _child_in_far) = tokio::io::duplex(1 << 16);
        let (mut child_out_far, child_out) = tokio::io::duplex(1 << 20);
        let (_link, (mut rmcp_reads, _w)) = split(child_out, child_in);
        let writer = tokio::spawn(async move {
            let big = vec![b'x'; MAX_ANSWER_BYTES + 100];
            child_out_far.write_all(&big).await.expect("big");
            child_out_far
                .write_all(b"\n{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}\n")
                .await
                .expect("next");
            child_out_far
        });
        let mut got = vec![0u8; 128];
        let n = rmcp_reads.read(&mut got).await.expect("rmcp reads");
        assert_eq!(&got[..n], b"{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}\n");
        drop(writer.await);
    }
}
