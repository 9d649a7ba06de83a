//! The audit file and the thread that writes it.
//!
//! Callers hand events over a bounded channel and never wait for the disk: one dedicated thread
//! coalesces, writes in batches, rotates by size, reopens on request (SIGHUP, for logrotate) and
//! fsyncs so that an event is on disk at most about [`GATHER`] + [`SYNC_EVERY`] (90 ms) after
//! it was logged: a machine crash loses at most that much.
//!
//! After each batch the thread pauses for [`GATHER`] instead of waiting on the channel at once.
//! A thread blocked on the channel is woken (a futex call and a context switch) by every event;
//! under load that was about a tenth of the server's CPU for one tools/call. Pausing lets events
//! pile up without waking anyone, so a busy server pays one wake per pause, not one per event,
//! while an idle one still writes its first event at once. When the
//! channel is full the event is counted as dropped and a line saying how many were dropped is
//! written once the thread catches up.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::coalesce::Coalescer;
use super::{timestamp, to_json_line, Event};

/// Longest time written lines stay without fsync.
pub const SYNC_EVERY: Duration = Duration::from_millis(80);
/// Pause after each batch, during which events queue up without waking the thread.
pub const GATHER: Duration = Duration::from_millis(10);
/// Longest idle sleep of the writer thread (it also wakes for every message).
const IDLE: Duration = Duration::from_secs(1);
/// Most messages handled between two writes to the file.
const BATCH: usize = 4096;

/// What callers send to the writer thread.
pub enum Msg {
    /// One event to write (its time is set).
    Event(Box<Event>),
    /// Write everything queued before, close open coalescing windows, fsync, then answer.
    Sync(Sender<()>),
    /// Look at the flags now (reopen requested).
    Wake,
}

/// Flags callers set without waiting for the writer.
#[derive(Default)]
pub struct Shared {
    /// Events that did not fit into the channel since the last report.
    pub dropped: AtomicU64,
    /// Close and reopen the file before the next write.
    pub reopen: AtomicBool,
}

/// Rotation settings of the file.
#[derive(Debug, Clone, Copy)]
pub struct Rotation {
    /// Rotate before a write would make the file larger than this (0: never).
    pub max_size: u64,
    /// Rotated files kept: `audit.log.1` (newest) to `audit.log.KEEP` (at least 1).
    pub keep: usize,
}

/// `audit.log.N`.
pub fn rotated(path: &Path, n: usize) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

/// Opens `path` for appending, created 0600. An existing file that group or others can read is
/// set to 0600 (the log names holders, roles and peer addresses), and stderr says so.
pub fn open_private(path: &Path) -> std::io::Result<File> {
    let file = crate::fsutil::open_append(path, 0o600)?;
    if let Some(mode) = crate::fsutil::exposed_mode(&file.metadata()?) {
        let mode = mode & 0o777;
        crate::fsutil::set_file_mode(&file, 0o600)?;
        eprintln!(
            "mcp-zt: {} had mode {mode:03o}; set to 600 (the audit log is for the operator only)",
            path.display()
        );
    }
    Ok(file)
}

/// The open audit file, its size, and its rotation.
pub struct LogFile {
    path: PathBuf,
    out: BufWriter<File>,
    size: u64,
    rotation: Rotation,
}

impl LogFile {
    /// Opens (or creates) the file at `path`.
    pub fn open(path: &Path, rotation: Rotation) -> std::io::Result<LogFile> {
        let file = open_private(path)?;
        let size = file.metadata()?.len();
        Ok(LogFile {
            path: path.to_path_buf(),
            out: BufWriter::with_capacity(64 * 1024, file),
            size,
            rotation,
        })
    }

    /// Appends one line (with its newline), rotating first if it would pass the size limit. A
    /// rotation that fails is reported, and the line still goes to the current file: a bigger
    /// file is better than a lost line.
    pub fn write_line(&mut self, line: &[u8]) -> std::io::Result<()> {
        let len = line.len() as u64;
        let max = self.rotation.max_size;
        let rotated = if max > 0 && self.size > 0 && self.size.saturating_add(len) > max {
            self.rotate()
        } else {
            Ok(())
        };
        self.out.write_all(line)?;
        self.size = self.size.saturating_add(len);
        rotated
    }

    /// Hands buffered lines to the kernel (visible to readers, survives a crash of the process).
    pub fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }

    /// Flushes and fsyncs (survives a crash of the machine).
    pub fn sync(&mut self) -> std::io::Result<()> {
        self.out.flush()?;
        self.out.get_ref().sync_data()
    }

    /// Closes the file and opens `path` again: after logrotate moved it, a new file is created.
    pub fn reopen(&mut self) -> std::io::Result<()> {
        self.sync()?;
        let file = open_private(&self.path)?;
        self.size = file.metadata()?.len();
        self.out = BufWriter::with_capacity(64 * 1024, file);
        Ok(())
    }

    /// `audit.log` → `audit.log.1` → … → `audit.log.KEEP` (the oldest is overwritten), then a new
    /// empty `audit.log`.
    fn rotate(&mut self) -> std::io::Result<()> {
        self.sync()?;
        let keep = self.rotation.keep.max(1);
        for n in (1..keep).rev() {
            match std::fs::rename(rotated(&self.path, n), rotated(&self.path, n + 1)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        std::fs::rename(&self.path, rotated(&self.path, 1))?;
        self.reopen()?;
        if let Some(dir) = self.path.parent().and_then(|d| File::open(d).ok()) {
            let _ = dir.sync_all();
        }
        Ok(())
    }
}

/// What the writer thread needs.
pub struct Writer {
    /// Where events arrive.
    pub rx: Receiver<Msg>,
    /// Flags from callers.
    pub shared: Arc<Shared>,
    /// The file.
    pub file: LogFile,
    /// Echo every line on stderr too.
    pub to_stderr: bool,
    /// Window for coalescing repeated refusals.
    pub window: Duration,
}

impl Writer {
    /// Runs until every sender is gone, then writes what is left and fsyncs.
    pub fn run(mut self) {
        let mut coalescer = Coalescer::new(self.window);
        let mut failing = false;
        let mut unsynced: Option<Instant> = None;
        let mut out = Vec::new();
        let mut acks = Vec::new();
        loop {
            let now = Instant::now();
            let mut wake = now + IDLE;
            if let Some(at) = coalescer.next_deadline() {
                wake = wake.min(at);
            }
            if let Some(at) = unsynced.and_then(|t| t.checked_add(SYNC_EVERY)) {
                wake = wake.min(at);
            }
            let first = match self.rx.recv_timeout(wake.saturating_duration_since(now)) {
                Ok(m) => Some(m),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => break,
            };
            let batch = first
                .into_iter()
                .chain(std::iter::from_fn(|| self.rx.try_recv().ok()))
                .take(BATCH);
            let now = Instant::now();
            let mut received = 0usize;
            for msg in batch {
                match msg {
                    Msg::Event(ev) => {
                        received += 1;
                        coalescer.offer(*ev, now, &mut out);
                    }
                    Msg::Sync(ack) => {
                        coalescer.drain(&mut out);
                        acks.push(ack);
                    }
                    Msg::Wake => {}
                }
            }
            // Checked after the batch was received: an event logged after the reopen request
            // goes to the new file.
            if self.shared.reopen.swap(false, Ordering::SeqCst) {
                let r = self.file.reopen();
                self.report(r, "reopen", &mut failing);
            }
            self.note_dropped(&mut out);
            coalescer.expire(now, &mut out);
            let wrote = !out.is_empty();
            self.write_all(&mut out, &mut failing);
            if wrote && unsynced.is_none() {
                unsynced = Some(now);
            }
            let due = unsynced.is_some_and(|t| now.saturating_duration_since(t) >= SYNC_EVERY);
            if !acks.is_empty() || due {
                let r = self.file.sync();
                self.report(r, "fsync", &mut failing);
                unsynced = None;
            }
            let answered = !acks.is_empty();
            for ack in acks.drain(..) {
                let _ = ack.send(());
            }
            // Only after work, not right after a sync request was answered (shutdown and tests
            // wait on those one after the other), not while a backlog is left (a full batch),
            // and never past the next fsync that is due.
            if received > 0 && received < BATCH && !answered {
                let mut pause = GATHER;
                if let Some(due) = unsynced.and_then(|t| t.checked_add(SYNC_EVERY)) {
                    pause = pause.min(due.saturating_duration_since(Instant::now()));
                }
                std::thread::sleep(pause);
            }
        }
        self.note_dropped(&mut out);
        coalescer.drain(&mut out);
        self.write_all(&mut out, &mut failing);
        let r = self.file.sync();
        self.report(r, "fsync", &mut failing);
    }

    fn note_dropped(&self, out: &mut Vec<Event>) {
        let n = self.shared.dropped.swap(0, Ordering::SeqCst);
        if n > 0 {
            let mut ev = Event::new("audit_dropped")
                .reason(format!("{n} event(s) not logged: the audit queue was full"));
            ev.count = Some(n);
            ev.time = timestamp(time::OffsetDateTime::now_utc());
            out.push(ev);
        }
    }

    fn write_all(&mut self, out: &mut Vec<Event>, failing: &mut bool) {
        if out.is_empty() {
            return;
        }
        let mut result = Ok(());
        let mut echo = String::new();
        for ev in out.drain(..) {
            let Ok(mut line) = to_json_line(&ev) else {
                continue;
            };
            line.push('\n');
            if self.to_stderr {
                echo.push_str(&line);
            }
            // Every line is tried, so one failure (a rotation, say) loses no other line.
            let written = self.file.write_line(line.as_bytes());
            result = result.and(written);
        }
        result = result.and(self.file.flush());
        if !echo.is_empty() {
            eprint!("{echo}");
        }
        self.report(result, "write", failing);
    }

    /// Reports a failing audit file once (not once per line), and its recovery.
    fn report(&self, result: std::io::Result<()>, what: &str, failing: &mut bool) {
        match result {
            Err(e) if !*failing => {
                *failing = true;
                eprintln!(
                    "mcp-zt: audit log {what} failed ({}): {e}",
                    self.file.path.display()
                );
            }
            Ok(()) if *failing => {
                *failing = false;
                eprintln!("mcp-zt: audit log writable again");
            }
            _ => {}
        }
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::fs::Permissions;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn rotation_keeps_n_files_below_the_size_limit() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("audit.log");
        let mut f = LogFile::open(
            &path,
            Rotation {
                max_size: 100,
                keep: 2,
            },
        )
        .expect("open");
        let line = [b'x'; 39];
        let mut line = line.to_vec();
        line.push(b'\n');
        for _ in 0..20 {
            f.write_line(&line).expect("write");
        }
        f.sync().expect("sync");
        for p in [path.clone(), rotated(&path, 1), rotated(&path, 2)] {
            let len = std::fs::metadata(&p).expect("exists").len();
            assert!(len <= 100 && len > 0, "{}: {len}", p.display());
            assert_eq!(crate::fsutil::mode_of(&p).expect("mode"), 0o600);
        }
        assert!(!rotated(&path, 3).exists(), "only KEEP rotated files");
        // 20 lines, two per file: the current file holds the last two.
        assert_eq!(std::fs::metadata(&path).expect("len").len(), 80);
    }

    #[test]
    fn size_zero_never_rotates() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("audit.log");
        let mut f = LogFile::open(
            &path,
            Rotation {
                max_size: 0,
                keep: 5,
            },
        )
        .expect("open");
        for _ in 0..100 {
            f.write_line(b"0123456789\n").expect("write");
        }
        f.sync().expect("sync");
        assert_eq!(std::fs::metadata(&path).expect("len").len(), 1100);
        assert!(!rotated(&path, 1).exists());
    }

    #[test]
    fn a_world_readable_log_is_made_private() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("audit.log");
        std::fs::write(&path, b"").expect("create");
        std::fs::set_permissions(&path, Permissions::from_mode(0o644)).expect("chmod");
        drop(open_private(&path).expect("open"));
        assert_eq!(crate::fsutil::mode_of(&path).expect("mode"), 0o600);
    }

    #[test]
    fn reopen_creates_a_new_file_after_the_old_one_was_moved() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("audit.log");
        let rot = Rotation {
            max_size: 0,
            keep: 1,
        };
        let mut f = LogFile::open(&path, rot).expect("open");
        f.write_line(b"old\n").expect("write");
        std::fs::rename(&path, dir.path().join("moved")).expect("move");
        f.write_line(b"still old\n").expect("write");
        f.reopen().expect("reopen");
        f.write_line(b"new\n").expect("write");
        f.sync().expect("sync");
        assert_eq!(std::fs::read(&path).expect("new"), b"new\n");
        assert_eq!(
            std::fs::read(dir.path().join("moved")).expect("moved"),
            b"old\nstill old\n"
        );
    }
}
