//! A small Server-Sent Events parser (the part of the format MCP uses: `data:`, `id:`, blank
//! line ends an event; comments and `retry:`/`event:` fields are read and ignored).

/// One event: its data lines joined with `\n`, and its id if it had one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The event's data.
    pub data: String,
    /// The `id:` field, for `Last-Event-Id` on reconnect.
    pub id: Option<String>,
}

/// Incremental parser: feed bytes as they arrive, take complete events out.
#[derive(Debug, Default)]
pub struct SseParser {
    buf: Vec<u8>,
    /// How much of `buf` is known to hold no line end.
    scanned: usize,
    data: Vec<String>,
    id: Option<String>,
    has_data: bool,
    limit: EventLimit,
}

/// Largest event accepted from the server (its lines as sent). MCP messages are far smaller;
/// a bigger event means a broken or hostile server, and buffering it would let the server
/// grow the bridge's memory without bound.
pub const MAX_EVENT: usize = 4 * 1024 * 1024;

/// Stream errors.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SseError {
    /// An event without an end in sight.
    #[error("the server sent an event stream event larger than {MAX_EVENT} bytes")]
    EventTooLarge,
    /// Not UTF-8.
    #[error("event stream is not UTF-8")]
    NotUtf8,
}

/// Counts the bytes of the event in progress (a blank line ends an event), for streams the
/// bridge passes through without parsing as well as for [`SseParser`].
#[derive(Debug, Default)]
pub struct EventLimit {
    event: usize,
    line_has_bytes: bool,
}

impl EventLimit {
    /// Accounts for `bytes`; fails once the current event passes [`MAX_EVENT`].
    pub fn feed(&mut self, bytes: &[u8]) -> Result<(), SseError> {
        for &b in bytes {
            match b {
                b'\n' if !self.line_has_bytes => self.event = 0,
                b'\n' => {
                    self.line_has_bytes = false;
                    self.event += 1;
                }
                // Only in CRLF line ends (the parser does not treat a lone CR as a line end).
                b'\r' => {}
                _ => {
                    self.line_has_bytes = true;
                    self.event += 1;
                }
            }
            if self.event > MAX_EVENT {
                return Err(SseError::EventTooLarge);
            }
        }
        Ok(())
    }
}

impl SseParser {
    /// Feeds bytes; returns the events completed by them.
    pub fn push(&mut self, bytes: &[u8]) -> Result<Vec<SseEvent>, SseError> {
        // Checked before buffering: the parser never holds more than one event's worth.
        self.limit.feed(bytes)?;
        self.buf.extend_from_slice(bytes);
        let mut events = Vec::new();
        while let Some(pos) = self.buf[self.scanned..].iter().position(|b| *b == b'\n') {
            let mut line: Vec<u8> = self.buf.drain(..=self.scanned + pos).collect();
            self.scanned = 0;
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            let line = String::from_utf8(line).map_err(|_| SseError::NotUtf8)?;
            if let Some(ev) = self.line(&line) {
                events.push(ev);
            }
        }
        self.scanned = self.buf.len();
        Ok(events)
    }

    fn line(&mut self, line: &str) -> Option<SseEvent> {
        if line.is_empty() {
            if !self.has_data {
                return None;
            }
            self.has_data = false;
            return Some(SseEvent {
                data: std::mem::take(&mut self.data).join("\n"),
                id: self.id.clone(),
            });
        }
        if line.starts_with(':') {
            return None;
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match field {
            "data" => {
                self.data.push(value.to_string());
                self.has_data = true;
            }
            "id" if !value.contains('\0') => self.id = Some(value.to_string()),
            _ => {}
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_events_split_across_chunks() {
        let mut p = SseParser::default();
        assert!(p.push(b"id: 0\nretry: 3000\ndata: \n\n").expect("ok").len() == 1);
        let mut evs = p.push(b"data: {\"a\":").expect("ok");
        assert!(evs.is_empty());
        evs = p.push(b"1}\nid: 7\r\n\r\n: comment\n").expect("ok");
        assert_eq!(
            evs,
            vec![SseEvent {
                data: "{\"a\":1}".into(),
                id: Some("7".into())
            }]
        );
    }

    #[test]
    fn multi_line_data_is_joined() {
        let mut p = SseParser::default();
        let evs = p.push(b"data: a\ndata: b\n\n").expect("ok");
        assert_eq!(evs[0].data, "a\nb");
    }

    #[test]
    fn an_event_larger_than_the_cap_is_an_error_not_a_buffer() {
        let mut p = SseParser::default();
        // Many data lines, none of them long: the event as a whole is what counts.
        let line = format!("data: {}\n", "x".repeat(1000));
        let mut fed = 0;
        let err = loop {
            match p.push(line.as_bytes()) {
                Ok(evs) => assert!(evs.is_empty()),
                Err(e) => break e,
            }
            fed += line.len();
            assert!(fed <= MAX_EVENT, "accepted {fed} bytes of one event");
        };
        assert_eq!(err, SseError::EventTooLarge);
        assert!(fed > MAX_EVENT - line.len());
        // One endless line is refused the same way.
        let mut p = SseParser::default();
        let chunk = vec![b'a'; 64 * 1024];
        let mut fed = 0;
        while p.push(&chunk).is_ok() {
            fed += chunk.len();
            assert!(fed <= MAX_EVENT, "accepted {fed} bytes of one line");
        }
    }

    #[test]
    fn many_events_within_the_cap_add_up_to_more_than_it() {
        let mut p = SseParser::default();
        let ev = format!("id: 1\r\ndata: {}\r\n\r\n", "y".repeat(1024 * 1024));
        for _ in 0..8 {
            let evs = p.push(ev.as_bytes()).expect("an event under the cap");
            assert_eq!(evs.len(), 1);
        }
    }

    #[test]
    fn event_limit_resets_at_each_blank_line() {
        let mut l = EventLimit::default();
        let half = vec![b'z'; MAX_EVENT / 2];
        l.feed(&half).expect("half");
        l.feed(b"\n\n").expect("end of event");
        l.feed(&half).expect("half of the next");
        l.feed(b"\r\n").expect("line end");
        l.feed(&half[1..]).expect("exactly at the cap");
        assert_eq!(l.feed(b"zz"), Err(SseError::EventTooLarge));
    }

    #[test]
    fn invalid_utf8_is_an_error() {
        let mut p = SseParser::default();
        assert_eq!(p.push(b"data: \xff\n"), Err(SseError::NotUtf8));
    }
}
