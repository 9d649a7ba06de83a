//! Reading the audit log back: its files (rotated ones included) and their events.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use time::OffsetDateTime;

use super::{timestamp, writer, Event};

/// Parses one audit line; `None` for anything that is not an event.
pub fn parse_line(line: &[u8]) -> Option<Event> {
    serde_json::from_slice::<Event>(line).ok()
}

/// The files of the log at `path`, oldest first: the rotated `path.N` … `path.1` that exist,
/// then `path`.
pub fn log_files(path: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = (1..)
        .map(|n| writer::rotated(path, n))
        .take_while(|p| p.exists())
        .collect();
    files.reverse();
    files.push(path.to_path_buf());
    files
}

/// Reads events from `path` and its rotated files (oldest first), keeping those at or after
/// `since` (RFC 3339 compare) and of one of `kinds` (all when empty). Lines that do not parse
/// are counted, not fatal.
pub fn read(
    path: &Path,
    since: Option<OffsetDateTime>,
    kinds: &[String],
) -> std::io::Result<(Vec<Event>, usize)> {
    let since = since.map(timestamp);
    let mut events = Vec::new();
    let mut bad = 0;
    let files = log_files(path);
    let rotated = files.len() > 1;
    for file in files {
        let reader = match File::open(&file) {
            Ok(f) => BufReader::new(f),
            // Between a rotation's rename and the new file: the rotated files are the log.
            Err(e) if rotated && e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
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
    }
    Ok((events, bad))
}
