//! The audit log: one JSON object per line in `HOME/audit.log` for every auth decision.
//!
//! Lines carry who (name, role, serial), from where (peer address), what (event, tool) and why
//! (reason). Never key material, never tool argument values. Names and serials read from a
//! certificate that was refused are the peer's claim, not an identity: they go into
//! `claimed_name` and `claimed_serial`.
//!
//! A peer controls much of what is logged, so the log is built to take abuse: string fields are
//! capped ([`NAME_CAP`], [`REASON_CAP`]), control, C1 and bidi characters are escaped in the file
//! (`\uXXXX`) and in `mcp-zt audit` output, repeated refusals are coalesced (see [`coalesce`]),
//! the file rotates by size, and writing happens on a dedicated thread (see [`writer`]) so an
//! async worker never waits for the disk.

pub mod coalesce;
mod read;
pub mod writer;

pub use read::{log_files, parse_line, read};

use std::borrow::Cow;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use writer::{LogFile, Msg, Rotation, Shared, Writer};

/// Cap of the name-like fields (name, role, serial, tool, claimed_*, peer, event), in bytes.
pub const NAME_CAP: usize = 256;
/// Cap of `reason`, in bytes.
pub const REASON_CAP: usize = 1024;
/// Events queued for the writer thread at most; more are counted as dropped, never waited for.
pub const QUEUE: usize = 16 * 1024;
/// Identical refusals within this window are written as one line with a count.
pub const COALESCE_WINDOW: Duration = Duration::from_secs(10);
/// Default `--audit-max-size`.
pub const DEFAULT_MAX_SIZE: u64 = 64 * 1024 * 1024;
/// Default `--audit-keep`.
pub const DEFAULT_KEEP: usize = 5;

/// One audit event.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
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
    /// Subject CN of a refused certificate: what the peer claimed, never verified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claimed_name: Option<String>,
    /// Serial of a refused certificate: what the peer claimed, never verified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claimed_serial: Option<String>,
    /// Tool name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool: Option<String>,
    /// A gated prompt or resource (or a forwarded item), as `KIND:NAME`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item: Option<String>,
    /// The upstream a request was forwarded to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream: Option<String>,
    /// `oauth` when the request came with an access token rather than the certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub via: Option<String>,
    /// The OAuth client (`client_id`) of an OAuth step or a token-borne request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// How a forwarded request ended: ok, tool_error, error, timeout, unavailable, cancelled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
    /// How long a forwarded request took, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<u64>,
    /// Why (for rejections and denials).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// On a coalesced line: how many identical refusals it stands for (the first one has its
    /// own line before it; `time` is that of the last one). On `audit_dropped`: how many events
    /// were lost.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
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
        if let Some(via) = &id.oauth {
            self.via = Some("oauth".into());
            self.client_id = Some(via.client_id.clone());
        }
        self
    }
    /// Sets name, role and serial of a grant's holder.
    pub fn holder(mut self, name: &str, role: &str, serial: &str) -> Self {
        self.name = Some(name.to_string());
        self.role = Some(role.to_string());
        self.serial = Some(serial.to_string());
        self
    }
    /// Sets the holder's name alone (an operation on a holder's records, not a connection).
    pub fn holder_name(mut self, name: &str) -> Self {
        self.name = Some(name.to_string());
        self
    }
    /// Sets the OAuth client.
    pub fn client(mut self, client_id: impl ToString) -> Self {
        self.client_id = Some(client_id.to_string());
        self
    }
    /// Sets the tool.
    pub fn tool(mut self, tool: impl ToString) -> Self {
        self.tool = Some(tool.to_string());
        self
    }
    /// Sets the gated item (`KIND:NAME`).
    pub fn item(mut self, item: impl ToString) -> Self {
        self.item = Some(item.to_string());
        self
    }
    /// Sets the upstream, the outcome and the latency of a forwarded request.
    pub fn upstream(mut self, upstream: &str, outcome: &str, latency: Duration) -> Self {
        self.upstream = Some(upstream.to_string());
        self.outcome = Some(outcome.to_string());
        self.latency_ms = Some(u64::try_from(latency.as_millis()).unwrap_or(u64::MAX));
        self
    }
    /// Sets the reason.
    pub fn reason(mut self, reason: impl ToString) -> Self {
        self.reason = Some(reason.to_string());
        self
    }
    /// Sets the serial and name of a certificate mcp-zt knows (from its ledger).
    pub fn cert(mut self, serial: Option<String>, name: Option<String>) -> Self {
        self.serial = serial;
        self.name = name;
        self
    }

    /// Sets the serial and name read from a certificate that was not accepted: the peer's
    /// claim, kept apart from `serial`/`name`, which only ever hold a verified identity.
    pub fn claimed(mut self, serial: Option<String>, name: Option<String>) -> Self {
        self.claimed_serial = serial;
        self.claimed_name = name;
        self
    }

    /// Cuts every string field to its cap, so one line stays small whatever the peer sent.
    pub fn capped(mut self) -> Self {
        for field in [
            Some(&mut self.event),
            self.peer.as_mut(),
            self.name.as_mut(),
            self.role.as_mut(),
            self.serial.as_mut(),
            self.claimed_name.as_mut(),
            self.claimed_serial.as_mut(),
            self.tool.as_mut(),
            self.upstream.as_mut(),
            self.outcome.as_mut(),
            self.via.as_mut(),
            self.client_id.as_mut(),
        ]
        .into_iter()
        .flatten()
        {
            cap(field, NAME_CAP);
        }
        if let Some(r) = self.reason.as_mut() {
            cap(r, REASON_CAP);
        }
        if let Some(i) = self.item.as_mut() {
            cap(i, REASON_CAP);
        }
        cap(&mut self.time, NAME_CAP);
        self
    }
}

/// Cuts `s` to at most `max` bytes on a char boundary and says how much was cut:
/// `abc…(+12 bytes)`.
pub fn cap(s: &mut String, max: usize) {
    if s.len() <= max {
        return;
    }
    let mut cut = max;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    let dropped = s.len() - cut;
    s.truncate(cut);
    let _ = write!(s, "…(+{dropped} bytes)");
}

/// Characters that must never reach a terminal raw: C0 controls (newline, ESC …), DEL, C1
/// controls (U+0080–U+009F, some terminals act on them), bidi controls that reorder what is
/// shown (U+061C, U+200E, U+200F, U+202A–U+202E, U+2066–U+2069) and the Unicode line and
/// paragraph separators.
pub fn is_unsafe_char(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061C}'
                | '\u{200E}'
                | '\u{200F}'
                | '\u{202A}'..='\u{202E}'
                | '\u{2066}'..='\u{2069}'
                | '\u{2028}'
                | '\u{2029}'
        )
}

/// Makes `s` safe to print on a terminal: unsafe characters become `\u{..}` and a backslash
/// becomes `\\`, so a forged escape cannot pass for a real one.
pub fn escape_for_terminal(s: &str) -> Cow<'_, str> {
    if !s.chars().any(|c| c == '\\' || is_unsafe_char(c)) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        if c == '\\' {
            out.push_str("\\\\");
        } else if is_unsafe_char(c) {
            let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// One event as a JSON line (no newline). serde_json escapes C0 controls but leaves DEL, C1 and
/// bidi controls raw; they are escaped here too (`\u0085`), so `cat audit.log` is safe. They can
/// only occur inside JSON strings, where a `\uXXXX` escape means the same character.
pub fn to_json_line(ev: &Event) -> serde_json::Result<String> {
    let raw = serde_json::to_string(ev)?;
    if !raw.chars().any(is_unsafe_char) {
        return Ok(raw);
    }
    let mut out = String::with_capacity(raw.len() + 16);
    for c in raw.chars() {
        if is_unsafe_char(c) {
            let _ = write!(out, "\\u{:04x}", u32::from(c));
        } else {
            out.push(c);
        }
    }
    Ok(out)
}

/// How the audit file is written.
#[derive(Debug, Clone, Copy)]
pub struct AuditSettings {
    /// Also print every line (JSON) on stderr.
    pub to_stderr: bool,
    /// Rotate before the file would pass this many bytes (0: never; use SIGHUP and logrotate).
    pub max_size: u64,
    /// Rotated files kept (`audit.log.1` … `audit.log.KEEP`).
    pub keep: usize,
}

impl Default for AuditSettings {
    fn default() -> Self {
        AuditSettings {
            to_stderr: false,
            max_size: DEFAULT_MAX_SIZE,
            keep: DEFAULT_KEEP,
        }
    }
}

/// Where audit events go: a handle to the writer thread.
pub struct Audit {
    tx: Option<SyncSender<Msg>>,
    shared: Arc<Shared>,
    worker: Mutex<Option<std::thread::JoinHandle<()>>>,
    observer: std::sync::OnceLock<Observer>,
    /// Every event as its JSON line, for the console's live tail; formatted only while
    /// someone listens.
    feed: tokio::sync::broadcast::Sender<Arc<str>>,
}

/// Lines a live listener may fall behind before it misses some.
const FEED: usize = 512;

/// Called with every event the log takes (the server's metrics count decisions from it).
pub type Observer = Box<dyn Fn(&Event) + Send + Sync>;

/// Formats the current time for audit lines.
pub fn timestamp(t: OffsetDateTime) -> String {
    let fmt = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    t.format(&fmt).unwrap_or_default()
}

impl Audit {
    /// Opens `path` for appending (created 0600) with the default rotation.
    pub fn open(path: &Path, to_stderr: bool) -> std::io::Result<Audit> {
        Audit::open_with(
            path,
            AuditSettings {
                to_stderr,
                ..AuditSettings::default()
            },
        )
    }

    /// Opens `path` for appending (created 0600; an existing file readable by others is set
    /// to 0600) and starts the writer thread.
    pub fn open_with(path: &Path, settings: AuditSettings) -> std::io::Result<Audit> {
        let file = LogFile::open(
            path,
            Rotation {
                max_size: settings.max_size,
                keep: settings.keep.max(1),
            },
        )?;
        let (tx, rx) = mpsc::sync_channel(QUEUE);
        let shared = Arc::new(Shared::default());
        let writer = Writer {
            rx,
            shared: shared.clone(),
            file,
            to_stderr: settings.to_stderr,
            window: COALESCE_WINDOW,
        };
        let worker = std::thread::Builder::new()
            .name("mcp-zt-audit".into())
            .spawn(move || writer.run())?;
        Ok(Audit {
            tx: Some(tx),
            shared,
            worker: Mutex::new(Some(worker)),
            observer: std::sync::OnceLock::new(),
            feed: tokio::sync::broadcast::channel(FEED).0,
        })
    }

    /// Queues one event; never blocks. When the queue is full the event is counted, and a line
    /// saying how many were dropped is written once the writer catches up. A failing audit file
    /// is reported on stderr; it never takes the server down.
    pub fn log(&self, mut event: Event) {
        if let Some(observe) = self.observer.get() {
            observe(&event);
        }
        event.time = timestamp(OffsetDateTime::now_utc());
        let event = event.capped();
        if self.feed.receiver_count() > 0 {
            if let Ok(line) = to_json_line(&event) {
                let _ = self.feed.send(Arc::from(line));
            }
        }
        let sent = self
            .tx
            .as_ref()
            .map(|tx| tx.try_send(Msg::Event(Box::new(event))));
        if !matches!(sent, Some(Ok(()))) {
            self.shared.dropped.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// Every later event as its JSON line (what the file gets), for a live view; a listener
    /// that falls more than a few hundred lines behind misses some and is told so.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Arc<str>> {
        self.feed.subscribe()
    }

    /// Sets the observer every later event is shown to (once; later calls are ignored).
    pub fn set_observer(&self, observer: Observer) {
        let _ = self.observer.set(observer);
    }

    /// Waits until everything logged before is written and fsynced (refusals being coalesced
    /// are written now with their count). Blocks: for shutdown and tests.
    pub fn sync(&self) {
        let Some(tx) = &self.tx else { return };
        let (ack, done) = mpsc::channel();
        if tx.send(Msg::Sync(ack)).is_ok() {
            let _ = done.recv();
        }
    }

    /// Asks the writer to close and reopen the file before its next write (SIGHUP, after
    /// logrotate moved it away). Never blocks.
    pub fn reopen(&self) {
        self.shared.reopen.store(true, Ordering::SeqCst);
        if let Some(tx) = &self.tx {
            let _ = tx.try_send(Msg::Wake);
        }
    }
}

impl Drop for Audit {
    /// Lets the writer finish what is queued.
    fn drop(&mut self) {
        drop(self.tx.take());
        let worker = match self.worker.get_mut() {
            Ok(w) => w.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        };
        if let Some(w) = worker {
            let _ = w.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

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
        audit.sync();
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

    const HOSTILE: &str = "evil\n{\"event\":\"handshake_ok\"}\x1b[2J\x07\u{7f}\u{85}\u{9b}31m\u{202e}gnp.exe\u{2066}\u{200f}\u{2028}";

    #[test]
    fn json_lines_escape_controls_c1_and_bidi_and_read_back_the_same() {
        let ev = Event::new("handshake_rejected")
            .claimed(Some(HOSTILE.into()), Some(HOSTILE.into()))
            .reason(HOSTILE);
        let line = to_json_line(&ev).expect("json");
        assert!(
            !line.chars().any(is_unsafe_char),
            "raw control, C1 or bidi character in {line:?}"
        );
        assert!(line.contains("\\u0085") && line.contains("\\u202e") && line.contains("\\u007f"));
        assert_eq!(parse_line(line.as_bytes()), Some(ev));
    }

    #[test]
    fn terminal_output_escapes_everything_that_could_forge_lines_or_move_the_cursor() {
        let shown = escape_for_terminal(HOSTILE);
        assert!(!shown.chars().any(is_unsafe_char), "{shown:?}");
        assert!(shown.starts_with("evil\\u{a}{\"event\""), "{shown}");
        assert!(shown.contains("\\u{1b}[2J") && shown.contains("\\u{202e}gnp.exe"));
        // A backslash is doubled, so a literal "\u{1b}" in a name is not mistaken for ESC.
        assert_eq!(escape_for_terminal("a\\u{1b}"), "a\\\\u{1b}");
        assert!(matches!(
            escape_for_terminal("alice(admin) é 名"),
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn string_fields_are_capped_on_a_char_boundary_with_a_marker() {
        let huge_tool = "t".repeat(1 << 20);
        let ev = Event::new("tool_denied")
            .tool(&huge_tool)
            .reason("é".repeat(2000))
            .claimed(Some("名".repeat(200)), None)
            .capped();
        let tool = ev.tool.as_deref().expect("tool");
        assert!(
            tool.starts_with(&"t".repeat(NAME_CAP)),
            "kept the first {NAME_CAP} bytes"
        );
        assert!(
            tool.ends_with(&format!("…(+{} bytes)", (1 << 20) - NAME_CAP)),
            "{tool}"
        );
        let reason = ev.reason.as_deref().expect("reason");
        assert!(reason.ends_with("…(+2976 bytes)"), "{reason}");
        let serial = ev.claimed_serial.as_deref().expect("serial");
        // 256 is inside a 3-byte char: cut at 255.
        assert!(serial.starts_with(&"名".repeat(85)) && serial.ends_with("…(+345 bytes)"));
        assert!(to_json_line(&ev).expect("json").len() < 2 * 1024);
        let small = Event::new("tool_allowed").tool("whoami");
        assert_eq!(small.clone().capped(), small);
    }

    #[test]
    fn a_megabyte_tool_name_is_not_logged_whole() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("audit.log");
        let audit = Audit::open(&path, false).expect("open");
        audit.log(Event::new("tool_denied").tool("x".repeat(1 << 20)));
        audit.sync();
        let len = std::fs::metadata(&path).expect("log").len();
        assert!(len < 1024, "{len} bytes written for one event");
    }

    #[test]
    fn a_flood_of_one_refusal_is_one_line_plus_a_count_and_successes_all_stay() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("audit.log");
        let audit = Audit::open(&path, false).expect("open");
        for i in 0..500u32 {
            audit.log(
                Event::new("handshake_rejected")
                    .peer(format!("192.0.2.1:{}", 1000 + i))
                    .reason("unknown issuer"),
            );
            if i % 100 == 0 {
                audit.log(Event::new("tool_allowed").tool("whoami"));
            }
        }
        audit.sync();
        let (events, bad) = read(&path, None, &[]).expect("read");
        assert_eq!(bad, 0);
        let rejected: Vec<_> = events
            .iter()
            .filter(|e| e.event == "handshake_rejected")
            .collect();
        assert_eq!(rejected.len(), 2, "{rejected:?}");
        assert_eq!(rejected[0].count, None);
        assert_eq!(rejected[1].count, Some(499));
        assert_eq!(
            events.iter().filter(|e| e.event == "tool_allowed").count(),
            5
        );
    }

    #[test]
    fn rotated_files_are_read_oldest_first() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("audit.log");
        let audit = Audit::open_with(
            &path,
            AuditSettings {
                to_stderr: false,
                max_size: 400,
                keep: 3,
            },
        )
        .expect("open");
        for i in 0..30 {
            audit.log(Event::new("tool_allowed").tool(format!("tool{i:02}")));
            audit.sync();
        }
        for p in log_files(&path) {
            assert!(std::fs::metadata(&p).expect("file").len() <= 400);
        }
        assert_eq!(log_files(&path).len(), 4, "audit.log and 3 rotated files");
        let (events, _) = read(&path, None, &[]).expect("read");
        let tools: Vec<_> = events.iter().filter_map(|e| e.tool.clone()).collect();
        assert!(tools.len() < 30, "the oldest rotated file was dropped");
        let mut sorted = tools.clone();
        sorted.sort();
        assert_eq!(tools, sorted, "oldest first");
        assert_eq!(tools.last().map(String::as_str), Some("tool29"));
    }

    #[test]
    fn dropped_events_are_reported_with_their_number() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("audit.log");
        let (tx, rx) = mpsc::sync_channel(1);
        let shared = Arc::new(Shared::default());
        shared.dropped.store(7, Ordering::SeqCst);
        drop(tx);
        Writer {
            rx,
            shared,
            file: LogFile::open(
                &path,
                Rotation {
                    max_size: 0,
                    keep: 1,
                },
            )
            .expect("open"),
            to_stderr: false,
            window: COALESCE_WINDOW,
        }
        .run();
        let (events, _) = read(&path, None, &[]).expect("read");
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].event, "audit_dropped");
        assert_eq!(events[0].count, Some(7));
    }

    #[test]
    fn log_returns_at_once_even_when_the_queue_is_full() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("audit.log");
        let audit = Audit::open(&path, false).expect("open");
        let start = std::time::Instant::now();
        for _ in 0..(QUEUE * 3) {
            audit.log(Event::new("tool_allowed").tool("whoami"));
        }
        assert!(start.elapsed() < Duration::from_secs(5));
        audit.sync();
        let (events, _) = read(&path, None, &[]).expect("read");
        let written = events.iter().filter(|e| e.event == "tool_allowed").count();
        let dropped: u64 = events
            .iter()
            .filter(|e| e.event == "audit_dropped")
            .filter_map(|e| e.count)
            .sum();
        assert_eq!(written as u64 + dropped, (QUEUE * 3) as u64);
    }
}
