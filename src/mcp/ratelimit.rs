//! Per-identity, per-tool rate limits: a token bucket per (serial, tool), refilled continuously.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

/// Token buckets keyed by (certificate serial, tool).
#[derive(Debug, Default)]
pub struct RateLimiter {
    buckets: Mutex<HashMap<(String, String), Bucket>>,
}

impl RateLimiter {
    /// Takes one token for `serial` calling `tool` with a limit of `per_minute`; when the bucket
    /// is empty, returns how long until a token is available.
    pub fn check(
        &self,
        serial: &str,
        tool: &str,
        per_minute: u32,
        now: Instant,
    ) -> Result<(), Duration> {
        let capacity = f64::from(per_minute.max(1));
        let per_sec = capacity / 60.0;
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let bucket = buckets
            .entry((serial.to_string(), tool.to_string()))
            .or_insert(Bucket {
                tokens: capacity,
                last: now,
            });
        let elapsed = now.saturating_duration_since(bucket.last).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * per_sec).min(capacity);
        bucket.last = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - bucket.tokens) / per_sec))
        }
    }
}

impl RateLimiter {
    /// Forgets buckets untouched for `idle` (with limits per minute, a bucket idle for a minute
    /// is full: forgetting it changes nothing); past `hard_cap` buckets it forgets them all.
    /// Keeps the map bounded when its keys come from unauthenticated requests.
    pub fn forget_idle(&self, now: Instant, idle: Duration, hard_cap: usize) {
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        buckets.retain(|_, b| now.saturating_duration_since(b.last) < idle);
        if buckets.len() > hard_cap {
            buckets.clear();
        }
    }

    /// Number of buckets held.
    pub fn len(&self) -> usize {
        self.buckets.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Whether no bucket is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allows_exactly_the_limit_then_refills() {
        let l = RateLimiter::default();
        let t0 = Instant::now();
        for _ in 0..10 {
            assert!(l.check("s", "delete_data", 10, t0).is_ok());
        }
        let wait = l.check("s", "delete_data", 10, t0).expect_err("limited");
        assert!(
            wait > Duration::from_secs(5) && wait <= Duration::from_secs(6),
            "{wait:?}"
        );
        // Other identities and tools have their own buckets.
        assert!(l.check("other", "delete_data", 10, t0).is_ok());
        assert!(l.check("s", "read_data", 10, t0).is_ok());
        assert!(l
            .check("s", "delete_data", 10, t0 + Duration::from_secs(7))
            .is_ok());
    }
}
