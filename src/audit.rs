//! The audit log: one JSON object per line in `HOME/audit.log` for every auth decision.
//!
//! Lines carry who (name, role, serial), from where (peer address), what (event, tool) and why
//! (reason). Never key material, never tool argument values.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// One audit event.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// RFC 3339 UTC with milliseconds.
    #[serde(default)]
    pub time: String,
    /// handshake_ok, handshake_rejected, tool_allowed, tool_denied, rate_limited,
    /// session_created, session_rejected, revocation_applied, connection_cut, lockout, ...
    pub event: String,
    /// Peer socket address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<String>,
    /// Holder name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Role.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// Certificate serial.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
    /// Tool name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool: Option<String>,
    /// Why (for rejections and denials).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl Event {
    /// A new event of `kind`.
    pub fn new(kind: &str) -> Event {
        Event {
            event: kind.to_string(),
            ..Event::default()
        }
    }
    /// Sets the peer address.
    pub fn peer(mut self, peer: impl ToString) -> Self {
        self.peer = Some(peer.to_string());
        self
    }
    /// Sets name, role and serial from an identity.
    pub fn who(mut self, id: &crate::identity::Identity) -> Self {
        self.name = Some(id.name.clone());
        self.role = Some(id.role.clone());
        self.serial = Some(id.serial.clone());
        self
    }
    /// Sets the tool.
    pub fn tool(mut self, tool: impl ToString) -> Self {
        self.tool = Some(tool.to_string());
        self
    }
    /// Sets the reason.
    pub fn reason(mut self, reason: impl ToString) -> Self {
        self.reason = Some(reason.to_string());
        self
    }
    /// Sets the serial (and name) without a full identity.
    pub fn cert(mut self, serial: Option<String>, name: Option<String>) -> Self {
        self.serial = serial;
        self.name = name;
        self
    }
}

/// Where audit events go.
pub struct Audit {
    file: Mutex<File>,
    to_stderr: bool,
}

/// Formats the current time for audit lines.
pub fn timestamp(t: OffsetDateTime) -> String {
    let fmt = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    t.format(&fmt).unwrap_or_default()
}

impl Audit {
    /// Opens `path` for appending (created 0600).
    pub fn open(path: &Path, to_stderr: bool) -> std::io::Result<Audit> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)?;
        Ok(Audit {
            file: Mutex::new(file),
            to_stderr,
        })
    }

    /// Writes one event. An audit write that fails is reported on stderr; it never takes the
    /// server down.
    pub fn log(&self, mut event: Event) {
        event.time = timestamp(OffsetDateTime::now_utc());
        let Ok(mut line) = serde_json::to_string(&event) else {
            return;
        };
        line.push('\n');
        if self.to_stderr {
            eprint!("{line}");
        }
        let mut file = match self.file.lock() {
            Ok(f) => f,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Err(e) = file.write_all(line.as_bytes()) {
            eprintln!("mcp-zt: audit log write failed: {e}");
        }
    }

    /// Flushes the log to disk.
    pub fn sync(&self) {
        if let Ok(f) = self.file.lock() {
            let _ = f.sync_all();
        }
    }
}

/// Parses one audit line; `None` for anything that is not an event.
pub fn parse_line(line: &[u8]) -> Option<Event> {
    serde_json::from_slice::<Event>(line).ok()
}

/// Reads events from `path`, keeping those at or after `since` (RFC 3339 compare) and of one
/// of `kinds` (all when empty). Lines that do not parse are counted, not fatal.
pub fn read(
    path: &Path,
    since: Option<OffsetDateTime>,
    kinds: &[String],
) -> std::io::Result<(Vec<Event>, usize)> {
    let reader = BufReader::new(File::open(path)?);
    let since = since.map(timestamp);
    let mut events = Vec::new();
    let mut bad = 0;
    for line in reader.split(b'\n') {
        let line = line?;
        if line.is_empty() {
            continue;
        }
        match parse_line(&line) {
            Some(ev) => {
                let recent = since.as_deref().is_none_or(|s| ev.time.as_str() >= s);
                let kind_ok = kinds.is_empty() || kinds.contains(&ev.event);
                if recent && kind_ok {
                    events.push(ev);
                }
            }
            None => bad += 1,
        }
    }
    Ok((events, bad))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip_and_filter() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("audit.log");
        let audit = Audit::open(&path, false).expect("open");
        audit.log(
            Event::new("tool_denied")
                .tool("delete_data")
                .reason("role viewer"),
        );
        audit.log(Event::new("handshake_ok").peer("127.0.0.1:1"));
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .and_then(|mut f| f.write_all(b"{not json\n\xff\xfe\n"))
            .expect("append garbage");
        let (all, bad) = read(&path, None, &[]).expect("read");
        assert_eq!(all.len(), 2);
        assert_eq!(bad, 2);
        let (denied, _) = read(&path, None, &["tool_denied".into()]).expect("read");
        assert_eq!(denied.len(), 1);
        assert_eq!(denied[0].tool.as_deref(), Some("delete_data"));
        let future = OffsetDateTime::now_utc() + time::Duration::hours(1);
        assert!(read(&path, Some(future), &[]).expect("read").0.is_empty());
        assert_eq!(crate::fsutil::mode_of(&path).expect("mode"), 0o600);
    }
}
