//! Connections to the ledger database: connecting (TLS or not) and driving the connection,
//! the `LISTEN`ing connection replicas keep, and the queries a replica resyncs with.

use tokio_postgres::{AsyncMessage, Client, Notification};

use super::schema::REVOCATION_CHANNEL;
use crate::ledger::target::{PgTarget, CONNECT_TIMEOUT};
use crate::ledger::{decode, CertRecord, LedgerError};

/// A tokio-postgres error as a ledger error: an answer from the server is `Database`,
/// anything else (refused, reset, closed, timed out) is `Unreachable`.
pub fn pg_error(target: &str, e: &tokio_postgres::Error) -> LedgerError {
    match e.as_db_error() {
        Some(db) => LedgerError::Database {
            target: target.to_string(),
            message: format!("{} (SQLSTATE {})", db.message(), db.code().code()),
        },
        None => {
            let mut message = e.to_string();
            let mut src = std::error::Error::source(e);
            while let Some(s) = src {
                message.push_str(&format!(": {s}"));
                src = s.source();
            }
            LedgerError::Unreachable {
                target: target.to_string(),
                message,
            }
        }
    }
}

/// Connects, and drives the connection on the current runtime. Notifications go to `notify`
/// when given (a `LISTEN`ing connection); the channel closes when the connection does.
pub async fn connect(
    t: &PgTarget,
    notify: Option<tokio::sync::mpsc::UnboundedSender<Notification>>,
) -> Result<Client, LedgerError> {
    let err = |e: tokio_postgres::Error| pg_error(&t.shown, &e);
    match &t.tls {
        Some(tls) => {
            let (client, conn) = t.config.connect(tls.clone()).await.map_err(err)?;
            drive(conn, notify);
            Ok(client)
        }
        None => {
            let (client, conn) = t.config.connect(tokio_postgres::NoTls).await.map_err(err)?;
            drive(conn, notify);
            Ok(client)
        }
    }
}

fn drive<S, T>(
    mut conn: tokio_postgres::Connection<S, T>,
    notify: Option<tokio::sync::mpsc::UnboundedSender<Notification>>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        while let Some(Ok(msg)) = futures_util::future::poll_fn(|cx| conn.poll_message(cx)).await {
            if let (AsyncMessage::Notification(n), Some(tx)) = (msg, &notify) {
                if tx.send(n).is_err() {
                    break;
                }
            }
        }
    });
}

/// A connection that listens for revocations. The receiver ends when the connection drops.
pub async fn listen(
    t: &PgTarget,
) -> Result<(Client, tokio::sync::mpsc::UnboundedReceiver<Notification>), LedgerError> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let client = match tokio::time::timeout(CONNECT_TIMEOUT, connect(t, Some(tx))).await {
        Ok(c) => c?,
        Err(_) => {
            return Err(LedgerError::Unreachable {
                target: t.shown.clone(),
                message: format!("no connection within {CONNECT_TIMEOUT:?}"),
            })
        }
    };
    client
        .batch_execute(&format!("LISTEN {REVOCATION_CHANNEL}"))
        .await
        .map_err(|e| pg_error(&t.shown, &e))?;
    Ok((client, rx))
}

/// Reads a notification's payload: `(serial, unix_ms of the revoke)`.
pub fn parse_notification(payload: &str) -> Option<(String, i64)> {
    let (serial, ms) = payload.split_once(' ')?;
    if serial.is_empty() || !serial.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    Some((serial.to_string(), ms.parse().ok()?))
}

/// Every revoked serial (replica resync).
pub async fn revoked_serials(c: &Client, target: &str) -> Result<Vec<String>, LedgerError> {
    let rows = c
        .query("SELECT serial FROM mcpzt_certs WHERE revoked", &[])
        .await
        .map_err(|e| pg_error(target, &e))?;
    Ok(rows.iter().map(|r| r.get::<_, String>(0)).collect())
}

/// The records of these serials (replica resync).
pub async fn records_of(
    c: &Client,
    target: &str,
    serials: &[String],
) -> Result<Vec<CertRecord>, LedgerError> {
    let rows = c
        .query(
            "SELECT serial, record FROM mcpzt_certs WHERE serial = ANY($1)",
            &[&serials],
        )
        .await
        .map_err(|e| pg_error(target, &e))?;
    rows.iter()
        .map(|r| decode(r.get::<_, &str>(0), r.get::<_, &str>(1).as_bytes()))
        .collect()
}
