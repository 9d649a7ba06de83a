//! The stdio side: newline-delimited JSON-RPC from the local client, forwarded upstream.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::{mpsc, Mutex};

use super::upstream::{Posted, Upstream};
use super::{BridgeError, EXIT_CERT_REFUSED};

/// Longest line accepted from the client.
const MAX_LINE: usize = 16 * 1024 * 1024;

/// Shared bridge state for the stdio loop.
struct Bridge {
    up: Arc<Upstream>,
    out: mpsc::Sender<Value>,
    /// The client's initialize request and whether it sent `initialized`, replayed when the
    /// server lost the session.
    init: Mutex<Option<Value>>,
    /// Set once the certificate was refused: every later request gets this error.
    fatal: std::sync::Mutex<Option<BridgeError>>,
    exit: mpsc::Sender<i32>,
    who: String,
}

fn error_reply(id: &Value, code: i64, message: String) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
}

impl Bridge {
    fn fatal(&self) -> Option<BridgeError> {
        self.fatal.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Records a fatal error once: stderr, an MCP log notification, and the exit timer.
    async fn set_fatal(&self, e: &BridgeError) {
        let first = {
            let mut f = self.fatal.lock().unwrap_or_else(|p| p.into_inner());
            let first = f.is_none();
            if first {
                *f = Some(e.clone());
            }
            first
        };
        if !first {
            return;
        }
        eprintln!("mcp-zt connect: {e} [{}]", self.who);
        let _ = self
            .out
            .send(json!({"jsonrpc": "2.0", "method": "notifications/message",
                "params": {"level": "error", "logger": "mcp-zt", "data": format!("mcp-zt: {e}")}}))
            .await;
        // Give the client a moment to make its next call and read the error, then stop.
        let exit = self.exit.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(10)).await;
            let _ = exit.send(EXIT_CERT_REFUSED).await;
        });
    }

    /// Re-runs the client's initialize handshake after the server lost the session.
    async fn reinitialize(&self) -> Result<(), BridgeError> {
        let Some(init) = self.init.lock().await.clone() else {
            return Err(BridgeError::SessionExpired);
        };
        self.up.reset_session();
        let (tx, mut rx) = mpsc::channel(8);
        self.up.post(&init, &tx).await?;
        while rx.try_recv().is_ok() {}
        let note = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
        self.up.post(&note, &tx).await?;
        eprintln!("mcp-zt connect: the server lost the session; re-initialized");
        Ok(())
    }

    /// Forwards one message, retrying across dropped connections and lost sessions.
    async fn forward(&self, msg: &Value) -> Result<Posted, BridgeError> {
        let mut attempts = 0;
        loop {
            attempts += 1;
            match self.up.post(msg, &self.out).await {
                Err(BridgeError::SessionExpired) if attempts < 3 => self.reinitialize().await?,
                Err(BridgeError::Unreachable(e)) if attempts < 6 => {
                    eprintln!("mcp-zt connect: {e}; retrying");
                    tokio::time::sleep(Duration::from_millis(200 * attempts)).await;
                }
                other => return other,
            }
        }
    }

    async fn handle(self: Arc<Self>, msg: Value) {
        let method = msg
            .get("method")
            .and_then(Value::as_str)
            .map(str::to_string);
        let id = msg.get("id").cloned().filter(|_| method.is_some());
        if let Some(e) = self.fatal() {
            if let Some(id) = id {
                let _ = self
                    .out
                    .send(error_reply(&id, -32001, format!("mcp-zt: {e}")))
                    .await;
                let _ = self.exit.send(EXIT_CERT_REFUSED).await;
            }
            return;
        }
        if method.as_deref() == Some("initialize") {
            *self.init.lock().await = Some(msg.clone());
        }
        match self.forward(&msg).await {
            Ok(_) => {
                if method.as_deref() == Some("notifications/initialized") {
                    let up = self.up.clone();
                    let me = self.clone();
                    tokio::spawn(async move {
                        if let Err(e) = up.listen(me.out.clone()).await {
                            me.set_fatal(&e).await;
                        }
                    });
                }
            }
            Err(e) => {
                if e.is_fatal() {
                    self.set_fatal(&e).await;
                } else {
                    eprintln!("mcp-zt connect: {e}");
                }
                if let Some(id) = id {
                    let code = if e.is_fatal() { -32001 } else { -32603 };
                    let _ = self
                        .out
                        .send(error_reply(&id, code, format!("mcp-zt: {e}")))
                        .await;
                    if e.is_fatal() {
                        let _ = self.exit.send(EXIT_CERT_REFUSED).await;
                    }
                }
            }
        }
    }
}

/// Runs the stdio bridge until stdin closes (exit 0) or the certificate is refused (exit 3).
pub async fn run(up: Arc<Upstream>, who: String) -> i32 {
    let (out_tx, mut out_rx) = mpsc::channel::<Value>(256);
    let (exit_tx, mut exit_rx) = mpsc::channel::<i32>(4);
    let writer = tokio::spawn(async move {
        let mut stdout = tokio::io::stdout();
        while let Some(v) = out_rx.recv().await {
            // Null is the end marker: everything queued before it has been written.
            if v.is_null() {
                break;
            }
            let mut line = v.to_string();
            line.push('\n');
            if stdout.write_all(line.as_bytes()).await.is_err() || stdout.flush().await.is_err() {
                break;
            }
        }
    });
    let bridge = Arc::new(Bridge {
        up: up.clone(),
        out: out_tx.clone(),
        init: Mutex::new(None),
        fatal: std::sync::Mutex::new(None),
        exit: exit_tx,
        who,
    });
    let mut stdin = BufReader::new(tokio::io::stdin());
    let mut line = Vec::new();
    let code = loop {
        line.clear();
        let mut limited = (&mut stdin).take(MAX_LINE as u64 + 1);
        let read = tokio::select! {
            code = exit_rx.recv() => break code.unwrap_or(EXIT_CERT_REFUSED),
            r = limited.read_until(b'\n', &mut line) => r,
        };
        match read {
            Ok(0) | Err(_) => break 0,
            Ok(_) => {}
        }
        if line.len() > MAX_LINE {
            let _ = out_tx
                .send(error_reply(
                    &Value::Null,
                    -32600,
                    "message too large".into(),
                ))
                .await;
            break 1;
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let msg: Value = match serde_json::from_slice(&line) {
            Ok(v) => v,
            Err(_) => {
                let _ = out_tx
                    .send(error_reply(&Value::Null, -32700, "Parse error".into()))
                    .await;
                continue;
            }
        };
        let is_init = msg.get("method").and_then(Value::as_str) == Some("initialize");
        let task = tokio::spawn(bridge.clone().handle(msg));
        // The handshake must finish (session id known) before anything else is sent.
        if is_init {
            let _ = task.await;
        }
    };
    if code == 0 {
        up.close().await;
    }
    drop(bridge);
    let _ = out_tx.send(Value::Null).await;
    let _ = tokio::time::timeout(Duration::from_secs(2), writer).await;
    code
}

use tokio::io::AsyncReadExt as _;
