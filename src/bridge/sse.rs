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
    data: Vec<String>,
    id: Option<String>,
    has_data: bool,
}

/// Longest line accepted; a longer one means a broken or hostile stream.
pub const MAX_LINE: usize = 16 * 1024 * 1024;

/// Stream errors.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SseError {
    /// A line without an end in sight.
    #[error("event stream line longer than {MAX_LINE} bytes")]
    LineTooLong,
    /// Not UTF-8.
    #[error("event stream is not UTF-8")]
    NotUtf8,
}

impl SseParser {
    /// Feeds bytes; returns the events completed by them.
    pub fn push(&mut self, bytes: &[u8]) -> Result<Vec<SseEvent>, SseError> {
        self.buf.extend_from_slice(bytes);
        let mut events = Vec::new();
        while let Some(pos) = self.buf.iter().position(|b| *b == b'\n') {
            let mut line: Vec<u8> = self.buf.drain(..=pos).collect();
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            let line = String::from_utf8(line).map_err(|_| SseError::NotUtf8)?;
            if let Some(ev) = self.line(&line) {
                events.push(ev);
            }
        }
        if self.buf.len() > MAX_LINE {
            return Err(SseError::LineTooLong);
        }
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
    fn invalid_utf8_is_an_error() {
        let mut p = SseParser::default();
        assert_eq!(p.push(b"data: \xff\n"), Err(SseError::NotUtf8));
    }
}
