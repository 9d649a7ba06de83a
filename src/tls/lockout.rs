//! Temporary blocking of peer addresses after repeated failed handshakes: the account-lockout
//! practice applied to TLS, so a peer cannot grind through certificates or burn CPU for free.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Lockout settings.
#[derive(Debug, Clone, Copy)]
pub struct LockoutPolicy {
    /// Failures within `window` that trigger a block; 0 disables lockout.
    pub threshold: usize,
    /// Sliding window for counting failures.
    pub window: Duration,
    /// How long a block lasts.
    pub block: Duration,
}

#[derive(Debug, Default)]
struct PeerState {
    failures: VecDeque<Instant>,
    blocked_until: Option<Instant>,
}

/// Per-address failure counters.
#[derive(Debug)]
pub struct Lockout {
    policy: LockoutPolicy,
    peers: Mutex<HashMap<IpAddr, PeerState>>,
}

impl Lockout {
    /// A tracker with `policy`.
    pub fn new(policy: LockoutPolicy) -> Lockout {
        Lockout {
            policy,
            peers: Mutex::new(HashMap::new()),
        }
    }

    /// If `ip` is blocked at `now`, how long is left.
    pub fn blocked(&self, ip: IpAddr, now: Instant) -> Option<Duration> {
        let peers = self.peers.lock().unwrap_or_else(|p| p.into_inner());
        let until = peers.get(&ip)?.blocked_until?;
        (until > now).then(|| until - now)
    }

    /// Records a failed handshake; returns true when this failure starts a block.
    pub fn failure(&self, ip: IpAddr, now: Instant) -> bool {
        if self.policy.threshold == 0 {
            return false;
        }
        let mut peers = self.peers.lock().unwrap_or_else(|p| p.into_inner());
        // Bound memory under a flood of distinct addresses: forget idle peers.
        if peers.len() > 100_000 {
            peers.retain(|_, s| s.blocked_until.is_some_and(|u| u > now));
        }
        let state = peers.entry(ip).or_default();
        while state
            .failures
            .front()
            .is_some_and(|t| now.duration_since(*t) > self.policy.window)
        {
            state.failures.pop_front();
        }
        state.failures.push_back(now);
        if state.failures.len() >= self.policy.threshold {
            state.failures.clear();
            state.blocked_until = Some(now + self.policy.block);
            return true;
        }
        false
    }

    /// Records a successful handshake: past failures of that address are forgiven.
    pub fn success(&self, ip: IpAddr) {
        let mut peers = self.peers.lock().unwrap_or_else(|p| p.into_inner());
        peers.remove(&ip);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_after_threshold_within_window_and_expires() {
        let l = Lockout::new(LockoutPolicy {
            threshold: 3,
            window: Duration::from_secs(10),
            block: Duration::from_secs(30),
        });
        let ip: IpAddr = "192.0.2.1".parse().expect("ip");
        let t0 = Instant::now();
        assert!(!l.failure(ip, t0));
        assert!(!l.failure(ip, t0 + Duration::from_secs(1)));
        assert!(l.blocked(ip, t0).is_none());
        assert!(l.failure(ip, t0 + Duration::from_secs(2)));
        assert!(l.blocked(ip, t0 + Duration::from_secs(3)).is_some());
        assert!(l.blocked(ip, t0 + Duration::from_secs(40)).is_none());
    }

    #[test]
    fn failures_outside_the_window_do_not_count() {
        let l = Lockout::new(LockoutPolicy {
            threshold: 2,
            window: Duration::from_secs(5),
            block: Duration::from_secs(30),
        });
        let ip: IpAddr = "192.0.2.2".parse().expect("ip");
        let t0 = Instant::now();
        assert!(!l.failure(ip, t0));
        assert!(!l.failure(ip, t0 + Duration::from_secs(6)));
        l.success(ip);
        assert!(!l.failure(ip, t0 + Duration::from_secs(7)));
    }
}
