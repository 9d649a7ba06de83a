//! Coalescing of repeated refusals, so a peer hammering the server cannot fill the disk.
//!
//! The first refusal of a kind is written at once, on its own line, so the operator (and anything
//! tailing the log) sees it without delay. Identical refusals that follow within the window (same
//! event, same peer IP, same reason and same claimed or verified names) are only counted; when the
//! window closes, one line stands for all of them, carrying `count` and the time of the last one.
//! Successes and allow decisions are never coalesced: every one of them keeps its own line.
//!
//! Time is a parameter, so the whole behaviour is unit-tested without sleeping.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::Event;

/// Events that are refusals: the ones an attacker can produce at will.
const REFUSALS: &[&str] = &[
    "handshake_rejected",
    "connection_refused",
    "lockout",
    "request_rejected",
    "session_rejected",
    "tool_denied",
    "rate_limited",
    "renewal_refused",
    "token_refused",
    "authorization_refused",
    "authorization_needs_certificate",
    "client_registration_refused",
    "cimd_refused",
];

/// Most open windows at once: beyond that, refusals are written as they come (the memory of the
/// coalescer stays bounded even against many source addresses).
const MAX_OPEN: usize = 4096;

/// Whether `kind` is a refusal that may be coalesced.
pub fn is_refusal(kind: &str) -> bool {
    REFUSALS.contains(&kind)
}

struct Window {
    opened: Instant,
    /// Refusals absorbed since the first one was written.
    repeats: u64,
    /// The latest absorbed refusal: the summary line is this one with `count` set.
    last: Option<Event>,
}

/// Open coalescing windows, keyed by the event without its time and peer port.
pub struct Coalescer {
    window: Duration,
    open: HashMap<Event, Window>,
}

/// The identity of a refusal for coalescing: everything but the time, and the peer's IP without
/// its port (each connection has a new source port).
fn key_of(ev: &Event) -> Event {
    let peer = ev.peer.as_deref().map(|p| {
        p.parse::<std::net::SocketAddr>()
            .map_or_else(|_| p.to_string(), |a| a.ip().to_string())
    });
    Event {
        time: String::new(),
        peer,
        count: None,
        ..ev.clone()
    }
}

impl Coalescer {
    /// Refusals identical to one written less than `window` ago are counted, not written.
    pub fn new(window: Duration) -> Coalescer {
        Coalescer {
            window,
            open: HashMap::new(),
        }
    }

    /// Offers one event at `now`; pushes onto `out` what must be written now, in order.
    pub fn offer(&mut self, ev: Event, now: Instant, out: &mut Vec<Event>) {
        if self.window.is_zero() || !is_refusal(&ev.event) || ev.count.is_some() {
            out.push(ev);
            return;
        }
        let key = key_of(&ev);
        if let Some(w) = self.open.get_mut(&key) {
            if now.saturating_duration_since(w.opened) < self.window {
                w.repeats += 1;
                w.last = Some(ev);
                return;
            }
            if let Some(summary) = self.open.remove(&key).and_then(summary_of) {
                out.push(summary);
            }
        }
        if self.open.len() >= MAX_OPEN {
            self.expire(now, out);
        }
        if self.open.len() < MAX_OPEN {
            self.open.insert(
                key,
                Window {
                    opened: now,
                    repeats: 0,
                    last: None,
                },
            );
        }
        out.push(ev);
    }

    /// Closes the windows older than the window length at `now`; pushes their summaries.
    pub fn expire(&mut self, now: Instant, out: &mut Vec<Event>) {
        let window = self.window;
        let mut closed = Vec::new();
        self.open.retain(|_, w| {
            if now.saturating_duration_since(w.opened) < window {
                return true;
            }
            closed.extend(w.last.take().map(|ev| (ev, w.repeats)));
            false
        });
        push_sorted(closed, out);
    }

    /// Closes every window (at shutdown, on sync); pushes their summaries.
    pub fn drain(&mut self, out: &mut Vec<Event>) {
        let closed = self
            .open
            .drain()
            .filter_map(|(_, mut w)| w.last.take().map(|ev| (ev, w.repeats)))
            .collect();
        push_sorted(closed, out);
    }

    /// When the next window with absorbed refusals closes, if any.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.open
            .values()
            .filter(|w| w.repeats > 0)
            .filter_map(|w| w.opened.checked_add(self.window))
            .min()
    }
}

fn summary_of(mut w: Window) -> Option<Event> {
    w.last.take().map(|mut ev| {
        ev.count = Some(w.repeats);
        ev
    })
}

fn push_sorted(mut closed: Vec<(Event, u64)>, out: &mut Vec<Event>) {
    closed.sort_by(|a, b| a.0.time.cmp(&b.0.time));
    out.extend(closed.into_iter().map(|(mut ev, n)| {
        ev.count = Some(n);
        ev
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(port: u16, reason: &str, time: &str) -> Event {
        let mut ev = Event::new("handshake_rejected")
            .peer(format!("192.0.2.7:{port}"))
            .reason(reason);
        ev.time = time.into();
        ev
    }

    #[test]
    fn identical_refusals_within_the_window_become_one_counted_line() {
        let t0 = Instant::now();
        let mut c = Coalescer::new(Duration::from_secs(10));
        let mut out = Vec::new();
        c.offer(refusal(1000, "unknown issuer", "t0"), t0, &mut out);
        assert_eq!(out.len(), 1, "the first refusal is written at once");
        assert_eq!(out[0].count, None);
        for i in 1..=999u16 {
            let at = t0 + Duration::from_millis(u64::from(i) * 5);
            c.offer(refusal(1000 + i, "unknown issuer", "t1"), at, &mut out);
        }
        assert_eq!(
            out.len(),
            1,
            "repeats from other ports of the same IP are absorbed"
        );
        assert_eq!(c.next_deadline(), Some(t0 + Duration::from_secs(10)));
        c.expire(t0 + Duration::from_secs(9), &mut out);
        assert_eq!(out.len(), 1, "the window is still open");
        c.expire(t0 + Duration::from_secs(10), &mut out);
        assert_eq!(out.len(), 2);
        assert_eq!(out[1].count, Some(999));
        assert_eq!(out[1].time, "t1");
        assert_eq!(out[1].reason.as_deref(), Some("unknown issuer"));
        assert_eq!(c.next_deadline(), None);
        // After the window, the next one is written on its own again.
        c.offer(
            refusal(5, "unknown issuer", "t2"),
            t0 + Duration::from_secs(11),
            &mut out,
        );
        assert_eq!(out.len(), 3);
        assert_eq!(out[2].count, None);
    }

    #[test]
    fn different_reasons_addresses_or_names_are_not_merged() {
        let t0 = Instant::now();
        let mut c = Coalescer::new(Duration::from_secs(10));
        let mut out = Vec::new();
        c.offer(refusal(1, "unknown issuer", "a"), t0, &mut out);
        c.offer(refusal(2, "expired", "b"), t0, &mut out);
        let mut other_ip = refusal(3, "unknown issuer", "c");
        other_ip.peer = Some("192.0.2.8:3".into());
        c.offer(other_ip, t0, &mut out);
        let named = refusal(4, "unknown issuer", "d").claimed(None, Some("mallory".into()));
        c.offer(named, t0, &mut out);
        assert_eq!(out.len(), 4);
        c.drain(&mut out);
        assert_eq!(out.len(), 4, "windows without repeats close silently");
    }

    #[test]
    fn successes_and_allowed_calls_are_never_coalesced() {
        let t0 = Instant::now();
        let mut c = Coalescer::new(Duration::from_secs(10));
        let mut out = Vec::new();
        for kind in ["handshake_ok", "tool_allowed", "session_created"] {
            for _ in 0..3 {
                c.offer(Event::new(kind).peer("192.0.2.7:1"), t0, &mut out);
            }
        }
        assert_eq!(out.len(), 9);
        assert!(out.iter().all(|e| e.count.is_none()));
    }

    #[test]
    fn a_repeat_after_the_window_flushes_the_summary_first() {
        let t0 = Instant::now();
        let mut c = Coalescer::new(Duration::from_secs(10));
        let mut out = Vec::new();
        c.offer(refusal(1, "r", "a"), t0, &mut out);
        c.offer(refusal(2, "r", "b"), t0 + Duration::from_secs(1), &mut out);
        c.offer(refusal(3, "r", "c"), t0 + Duration::from_secs(12), &mut out);
        let times: Vec<_> = out.iter().map(|e| (e.time.as_str(), e.count)).collect();
        assert_eq!(times, [("a", None), ("b", Some(1)), ("c", None)]);
    }

    #[test]
    fn drain_writes_every_pending_summary_and_zero_window_disables() {
        let t0 = Instant::now();
        let mut c = Coalescer::new(Duration::from_secs(10));
        let mut out = Vec::new();
        c.offer(refusal(1, "r", "a"), t0, &mut out);
        c.offer(refusal(2, "r", "b"), t0, &mut out);
        c.drain(&mut out);
        assert_eq!(out.len(), 2);
        assert_eq!(out[1].count, Some(1));

        let mut off = Coalescer::new(Duration::ZERO);
        let mut out = Vec::new();
        for i in 0..3 {
            off.offer(refusal(i, "r", "a"), t0, &mut out);
        }
        assert_eq!(out.len(), 3);
    }
}
