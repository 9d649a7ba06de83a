//! Admission control for the TLS listener: who may start a handshake, how fast, and which
//! certificates are locked out after failing in a loop.
//!
//! Three separate mechanisms, because the three kinds of trouble are different:
//!
//! - **Handshakes that never present a certificate** (a load balancer's health check, a port
//!   scanner, a slow-loris, garbage bytes) are not authentication failures. They draw from a
//!   per-address-group token bucket (`--handshake-burst`, `--handshake-rate`): once the bucket is
//!   empty, new connections from that group wait for a token (at most [`MAX_DELAY`]) and beyond
//!   that are refused. A handshake that completes with a verified certificate gets its token
//!   back, so a flood only slows its own group down while it lasts; it never blocks anyone for
//!   long. (Every other handshake keeps its token spent: a flood of garbage certificates
//!   drains the bucket like any other flood.)
//! - **Certificates the verifier refused** (unknown CA, revoked, expired, role not in the
//!   policy, ...) are counted per (address group, SHA-256 of the leaf certificate): a client
//!   failing in a loop locks out itself, not the other clients behind the same address (every
//!   client of an L4 load balancer shares its address).
//! - **Concurrent handshakes per address group** are capped, so one address cannot hold every
//!   connection slot for the handshake timeout.
//!
//! Address groups: an IPv4 address, or the /64 of an IPv6 address (one host usually owns a whole
//! /64); IPv4-mapped IPv6 addresses count as IPv4.
//!
//! Memory is bounded: each table holds at most `max_entries` entries and evicts with a CLOCK
//! ring (a second chance for entries used since the last sweep, and for entries that are locked
//! out or have handshakes in flight) that visits at most [`EVICTION_SCAN`] entries per insert,
//! so every event costs O(1). Time is a parameter everywhere, so all of it is testable without
//! sleeping.

use std::cell::Cell;
use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::hash::Hash;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The longest a connection waits for a handshake token; a longer wait is a refusal.
pub const MAX_DELAY: Duration = Duration::from_secs(1);

/// Most entries a CLOCK sweep visits per insert before it evicts regardless.
pub const EVICTION_SCAN: usize = 8;

/// Default bound of each admission table.
pub const DEFAULT_MAX_ENTRIES: usize = 65_536;

/// Per-certificate lockout settings.
#[derive(Debug, Clone, Copy)]
pub struct LockoutPolicy {
    /// Failures of one certificate from one address group within `window` that lock that
    /// certificate out; 0 disables lockout.
    pub threshold: usize,
    /// Window for counting failures, from the first failure counted.
    pub window: Duration,
    /// How long a lockout lasts.
    pub block: Duration,
}

/// All admission settings.
#[derive(Debug, Clone, Copy)]
pub struct AdmissionPolicy {
    /// Per-certificate lockout.
    pub lockout: LockoutPolicy,
    /// Handshakes without a certificate an address group may make back to back.
    pub handshake_burst: u32,
    /// Handshakes without a certificate per second an address group may sustain; 0 disables the
    /// rate limit.
    pub handshake_rate: u32,
    /// Handshakes in progress at once per address group; 0 disables the cap.
    pub max_handshakes: usize,
    /// Bound of each table (address groups; address group and certificate pairs).
    pub max_entries: usize,
}

/// Where a connection comes from, for counting: an IPv4 address or an IPv6 /64.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AddrGroup {
    /// One IPv4 address (IPv4-mapped IPv6 included).
    V4(Ipv4Addr),
    /// The upper 64 bits of an IPv6 address.
    V6(u64),
}

impl From<IpAddr> for AddrGroup {
    fn from(ip: IpAddr) -> AddrGroup {
        match ip.to_canonical() {
            IpAddr::V4(v4) => AddrGroup::V4(v4),
            IpAddr::V6(v6) => AddrGroup::V6((u128::from(v6) >> 64) as u64),
        }
    }
}

impl fmt::Display for AddrGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AddrGroup::V4(v4) => write!(f, "{v4}"),
            AddrGroup::V6(prefix) => {
                let ip = std::net::Ipv6Addr::from(u128::from(*prefix) << 64);
                write!(f, "{ip}/64")
            }
        }
    }
}

/// SHA-256 of a leaf certificate's DER.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint([u8; 32]);

impl Fingerprint {
    /// The fingerprint of `der`.
    pub fn of(der: &[u8]) -> Fingerprint {
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der);
        let mut out = [0u8; 32];
        out.copy_from_slice(digest.as_ref());
        Fingerprint(out)
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({})", hex::encode(&self.0[..8]))
    }
}

/// Why a connection was refused before its handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The group already has this many handshakes in progress.
    TooManyHandshakes(usize),
    /// The group's handshake bucket is empty and the wait would exceed [`MAX_DELAY`].
    RateExceeded,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::TooManyHandshakes(n) => {
                write!(f, "{n} handshakes already in progress from this address")
            }
            Refusal::RateExceeded => {
                f.write_str("handshake rate exceeded (connections without a certificate)")
            }
        }
    }
}

/// A locked-out certificate: how many failures locked it and how long is left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Locked {
    /// Failures counted when the lockout started.
    pub failures: usize,
    /// Time left.
    pub left: Duration,
}

impl fmt::Display for Locked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "locked out: {} failed handshakes with this certificate ({}s left)",
            self.failures,
            self.left.as_secs() + 1
        )
    }
}

#[derive(Debug)]
struct GroupState {
    /// Handshake tokens; below zero while connections wait for theirs.
    tokens: f64,
    refilled: Instant,
    in_flight: usize,
}

#[derive(Debug, Default)]
struct CertState {
    failures: usize,
    first: Option<Instant>,
    locked: Option<(Instant, usize)>,
}

/// A map of at most `cap` entries with CLOCK eviction: O(1) per insert.
#[derive(Debug)]
struct Clock<K, V> {
    map: HashMap<K, (V, bool)>,
    ring: VecDeque<K>,
    cap: usize,
}

impl<K: Copy + Eq + Hash, V> Clock<K, V> {
    fn new(cap: usize) -> Self {
        Clock {
            map: HashMap::new(),
            ring: VecDeque::new(),
            cap: cap.max(1),
        }
    }

    fn get_mut(&mut self, k: &K) -> Option<&mut V> {
        self.map.get_mut(k).map(|(v, used)| {
            *used = true;
            v
        })
    }

    /// The entry of `k`, made with `new` if absent; `keep` marks entries worth a second chance.
    fn entry(&mut self, k: K, new: impl FnOnce() -> V, keep: impl Fn(&V) -> bool) -> &mut V {
        if !self.map.contains_key(&k) && self.map.len() >= self.cap {
            self.evict(keep);
        }
        match self.map.entry(k) {
            Entry::Occupied(o) => {
                let (v, used) = o.into_mut();
                *used = true;
                v
            }
            Entry::Vacant(slot) => {
                self.ring.push_back(k);
                &mut slot.insert((new(), true)).0
            }
        }
    }

    fn evict(&mut self, keep: impl Fn(&V) -> bool) {
        for _ in 0..EVICTION_SCAN {
            let Some(k) = self.ring.pop_front() else {
                return;
            };
            match self.map.get_mut(&k) {
                Some((v, used)) if *used || keep(v) => {
                    *used = false;
                    self.ring.push_back(k);
                }
                _ => {
                    self.map.remove(&k);
                    return;
                }
            }
        }
        // Everything visited deserved a second chance: evict the oldest anyway.
        if let Some(k) = self.ring.pop_front() {
            self.map.remove(&k);
        }
    }

    fn len(&self) -> usize {
        self.map.len()
    }
}

#[derive(Debug)]
struct Tables {
    groups: Clock<AddrGroup, GroupState>,
    certs: Clock<(AddrGroup, Fingerprint), CertState>,
}

/// The admission state of the listener. Every method takes `now`.
#[derive(Debug)]
pub struct Admission {
    policy: AdmissionPolicy,
    tables: Mutex<Tables>,
}

impl Admission {
    /// Empty tables with `policy`.
    pub fn new(policy: AdmissionPolicy) -> Admission {
        Admission {
            policy,
            tables: Mutex::new(Tables {
                groups: Clock::new(policy.max_entries),
                certs: Clock::new(policy.max_entries),
            }),
        }
    }

    /// The settings.
    pub fn policy(&self) -> &AdmissionPolicy {
        &self.policy
    }

    fn tables(&self) -> std::sync::MutexGuard<'_, Tables> {
        self.tables.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new connection from `group`: admitted after the returned delay (zero when a token is
    /// free), or refused. An admitted connection counts as a handshake in progress until
    /// [`Admission::finished`].
    pub fn arrive(&self, group: AddrGroup, now: Instant) -> Result<Duration, Refusal> {
        let p = self.policy;
        let burst = f64::from(p.handshake_burst.max(1));
        let mut t = self.tables();
        let g = t.groups.entry(
            group,
            || GroupState {
                tokens: burst,
                refilled: now,
                in_flight: 0,
            },
            |g| g.in_flight > 0 || g.tokens < burst,
        );
        if p.max_handshakes > 0 && g.in_flight >= p.max_handshakes {
            return Err(Refusal::TooManyHandshakes(g.in_flight));
        }
        let mut delay = Duration::ZERO;
        if p.handshake_rate > 0 {
            let rate = f64::from(p.handshake_rate);
            let elapsed = now.saturating_duration_since(g.refilled).as_secs_f64();
            g.tokens = (g.tokens + elapsed * rate).min(burst);
            g.refilled = now;
            let after = g.tokens - 1.0;
            if after < 0.0 {
                let wait = Duration::from_secs_f64(-after / rate);
                if wait > MAX_DELAY {
                    return Err(Refusal::RateExceeded);
                }
                delay = wait;
            }
            g.tokens = after;
        }
        g.in_flight += 1;
        Ok(delay)
    }

    /// A handshake of `group` is over; a `completed` one (a verified certificate) gives its
    /// token back, so valid clients never drain their address's bucket.
    pub fn finished(&self, group: AddrGroup, completed: bool) {
        let burst = f64::from(self.policy.handshake_burst.max(1));
        let mut t = self.tables();
        if let Some(g) = t.groups.get_mut(&group) {
            g.in_flight = g.in_flight.saturating_sub(1);
            if completed {
                g.tokens = (g.tokens + 1.0).min(burst);
            }
        }
    }

    /// Whether certificate `fp` is locked out for `group` at `now`.
    pub fn locked(&self, group: AddrGroup, fp: Fingerprint, now: Instant) -> Option<Locked> {
        let mut t = self.tables();
        let (until, failures) = t.certs.get_mut(&(group, fp))?.locked?;
        (until > now).then(|| Locked {
            failures,
            left: until - now,
        })
    }

    /// Records a failed handshake that presented certificate `fp`; returns the lockout when this
    /// failure starts one. Failures while locked out are not counted (the lockout does not grow).
    pub fn failure(&self, group: AddrGroup, fp: Fingerprint, now: Instant) -> Option<Locked> {
        let p = self.policy.lockout;
        if p.threshold == 0 {
            return None;
        }
        let mut t = self.tables();
        let c = t.certs.entry((group, fp), CertState::default, |c| {
            c.locked.is_some_and(|(until, _)| until > now)
        });
        if c.locked.is_some_and(|(until, _)| until > now) {
            return None;
        }
        if c.first
            .is_none_or(|first| now.saturating_duration_since(first) > p.window)
        {
            c.first = Some(now);
            c.failures = 0;
        }
        c.failures += 1;
        if c.failures < p.threshold {
            return None;
        }
        let failures = c.failures;
        *c = CertState {
            locked: Some((now + p.block, failures)),
            ..CertState::default()
        };
        Some(Locked {
            failures,
            left: p.block,
        })
    }

    /// A successful handshake with `fp`: its past failures are forgiven.
    pub fn success(&self, group: AddrGroup, fp: Fingerprint) {
        let mut t = self.tables();
        if let Some(c) = t.certs.get_mut(&(group, fp)) {
            *c = CertState::default();
        }
    }

    /// Entries held (address groups, certificate entries).
    pub fn len(&self) -> (usize, usize) {
        let t = self.tables();
        (t.groups.len(), t.certs.len())
    }

    /// Whether both tables are empty.
    pub fn is_empty(&self) -> bool {
        self.len() == (0, 0)
    }
}

/// What the accept loop lends the certificate verifier for one handshake: the verifier refuses
/// a locked-out certificate before any other check and leaves its fingerprint, so the accept
/// loop knows the peer presented a certificate and which.
#[derive(Debug)]
pub struct HandshakeGate {
    admission: Arc<Admission>,
    group: AddrGroup,
    seen: Cell<Option<Fingerprint>>,
}

tokio::task_local! {
    /// The gate of the handshake running in this task (set by the accept loop).
    pub static GATE: HandshakeGate;
}

impl HandshakeGate {
    /// A gate for one handshake from `group`.
    pub fn new(admission: Arc<Admission>, group: AddrGroup) -> HandshakeGate {
        HandshakeGate {
            admission,
            group,
            seen: Cell::new(None),
        }
    }

    /// The fingerprint of the certificate the peer presented, if it did.
    pub fn seen(&self) -> Option<Fingerprint> {
        self.seen.get()
    }
}

/// Called by the verifier with the presented leaf: records it and says whether it is locked out.
/// Outside an accept-loop handshake (no gate), nothing is locked.
pub fn check_presented(der: &[u8]) -> Option<Locked> {
    GATE.try_with(|gate| {
        let fp = Fingerprint::of(der);
        gate.seen.set(Some(fp));
        gate.admission.locked(gate.group, fp, Instant::now())
    })
    .ok()
    .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> AdmissionPolicy {
        AdmissionPolicy {
            lockout: LockoutPolicy {
                threshold: 3,
                window: Duration::from_secs(10),
                block: Duration::from_secs(30),
            },
            handshake_burst: 4,
            handshake_rate: 2,
            max_handshakes: 3,
            max_entries: 1000,
        }
    }

    fn g(s: &str) -> AddrGroup {
        AddrGroup::from(s.parse::<IpAddr>().expect("ip"))
    }

    fn fp(n: u8) -> Fingerprint {
        Fingerprint([n; 32])
    }

    const S: fn(u64) -> Duration = Duration::from_secs;
    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn ipv6_groups_by_64_and_mapped_ipv4_is_ipv4() {
        assert_eq!(g("2001:db8:1:2:aaaa::1"), g("2001:db8:1:2:ffff::9"));
        assert_ne!(g("2001:db8:1:2::1"), g("2001:db8:1:3::1"));
        assert_eq!(g("::ffff:192.0.2.7"), g("192.0.2.7"));
        assert_ne!(g("192.0.2.7"), g("192.0.2.8"));
        assert_eq!(g("2001:db8:1:2:aaaa::1").to_string(), "2001:db8:1:2::/64");
        assert_eq!(g("::ffff:192.0.2.7").to_string(), "192.0.2.7");
    }

    #[test]
    fn fingerprint_is_sha256_of_the_der() {
        // SHA-256("abc"), FIPS 180-2 appendix B.1.
        assert_eq!(
            hex::encode(Fingerprint::of(b"abc").0),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn certless_handshakes_drain_the_bucket_then_wait_then_are_refused() {
        let a = Admission::new(AdmissionPolicy {
            max_handshakes: 0,
            ..policy()
        });
        let ip = g("192.0.2.1");
        let t0 = Instant::now();
        // Burst of 4: no delay.
        for _ in 0..4 {
            assert_eq!(a.arrive(ip, t0), Ok(Duration::ZERO));
            a.finished(ip, false);
        }
        // Empty: at 2/s the next waits 0.5 s, the one after 1 s, then refusal.
        assert_eq!(a.arrive(ip, t0), Ok(MS(500)));
        a.finished(ip, false);
        assert_eq!(a.arrive(ip, t0), Ok(S(1)));
        a.finished(ip, false);
        assert_eq!(a.arrive(ip, t0), Err(Refusal::RateExceeded));
        // A refusal takes no token: 1 s later the debt is paid and the bucket holds nothing.
        assert_eq!(a.arrive(ip, t0 + S(1)), Ok(MS(500)));
        a.finished(ip, false);
        // Refilled after a pause, capped at the burst.
        let later = t0 + S(60);
        for _ in 0..4 {
            assert_eq!(a.arrive(ip, later), Ok(Duration::ZERO));
            a.finished(ip, false);
        }
        assert!(a.arrive(ip, later).expect("delayed") > Duration::ZERO);
        // Another address is not affected.
        assert_eq!(a.arrive(g("192.0.2.2"), t0), Ok(Duration::ZERO));
    }

    #[test]
    fn handshakes_that_present_a_certificate_give_their_token_back() {
        let a = Admission::new(AdmissionPolicy {
            max_handshakes: 0,
            ..policy()
        });
        let ip = g("192.0.2.1");
        let t0 = Instant::now();
        for _ in 0..100 {
            assert_eq!(a.arrive(ip, t0), Ok(Duration::ZERO));
            a.finished(ip, true);
        }
    }

    #[test]
    fn rate_zero_disables_the_bucket() {
        let a = Admission::new(AdmissionPolicy {
            handshake_rate: 0,
            max_handshakes: 0,
            ..policy()
        });
        let t0 = Instant::now();
        for _ in 0..1000 {
            assert_eq!(a.arrive(g("192.0.2.1"), t0), Ok(Duration::ZERO));
            a.finished(g("192.0.2.1"), false);
        }
    }

    #[test]
    fn concurrent_handshakes_are_capped_per_group() {
        let a = Admission::new(AdmissionPolicy {
            handshake_rate: 0,
            ..policy()
        });
        let ip = g("2001:db8::1");
        let same64 = g("2001:db8::2");
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(a.arrive(ip, t0).is_ok());
        }
        assert_eq!(a.arrive(same64, t0), Err(Refusal::TooManyHandshakes(3)));
        assert!(a.arrive(g("2001:db8:0:1::1"), t0).is_ok());
        a.finished(ip, false);
        assert!(a.arrive(same64, t0).is_ok());
        // Unlimited with 0.
        let u = Admission::new(AdmissionPolicy {
            handshake_rate: 0,
            max_handshakes: 0,
            ..policy()
        });
        for _ in 0..100 {
            assert!(u.arrive(ip, t0).is_ok());
        }
    }

    #[test]
    fn failures_lock_out_the_certificate_not_the_address() {
        let a = Admission::new(policy());
        let ip = g("192.0.2.1");
        let t0 = Instant::now();
        assert_eq!(a.failure(ip, fp(1), t0), None);
        assert_eq!(a.failure(ip, fp(1), t0 + S(1)), None);
        assert_eq!(a.locked(ip, fp(1), t0 + S(1)), None);
        assert_eq!(
            a.failure(ip, fp(1), t0 + S(2)),
            Some(Locked {
                failures: 3,
                left: S(30)
            })
        );
        let l = a.locked(ip, fp(1), t0 + S(3)).expect("locked");
        assert_eq!(l.failures, 3);
        assert_eq!(l.left, S(29));
        assert_eq!(
            l.to_string(),
            "locked out: 3 failed handshakes with this certificate (30s left)"
        );
        // Another certificate from the same address, the same certificate from elsewhere: free.
        assert_eq!(a.locked(ip, fp(2), t0 + S(3)), None);
        assert_eq!(a.locked(g("192.0.2.9"), fp(1), t0 + S(3)), None);
        // Failures during the lockout do not extend it.
        for i in 0..10 {
            assert_eq!(a.failure(ip, fp(1), t0 + S(4 + i)), None);
        }
        assert!(a.locked(ip, fp(1), t0 + S(31)).is_some());
        assert_eq!(a.locked(ip, fp(1), t0 + S(32)), None);
        // After it, counting starts over.
        assert_eq!(a.failure(ip, fp(1), t0 + S(33)), None);
        assert_eq!(a.failure(ip, fp(1), t0 + S(34)), None);
        assert!(a.failure(ip, fp(1), t0 + S(35)).is_some());
    }

    #[test]
    fn failures_outside_the_window_and_after_a_success_start_over() {
        let a = Admission::new(policy());
        let ip = g("192.0.2.1");
        let t0 = Instant::now();
        assert_eq!(a.failure(ip, fp(1), t0), None);
        assert_eq!(a.failure(ip, fp(1), t0 + S(1)), None);
        // Window (10 s from the first failure) over: this is the first of a new window.
        assert_eq!(a.failure(ip, fp(1), t0 + S(11)), None);
        assert_eq!(a.failure(ip, fp(1), t0 + S(12)), None);
        a.success(ip, fp(1));
        assert_eq!(a.failure(ip, fp(1), t0 + S(13)), None);
        assert_eq!(a.failure(ip, fp(1), t0 + S(14)), None);
        assert!(a.failure(ip, fp(1), t0 + S(15)).is_some());
    }

    #[test]
    fn threshold_zero_disables_lockout() {
        let a = Admission::new(AdmissionPolicy {
            lockout: LockoutPolicy {
                threshold: 0,
                ..policy().lockout
            },
            ..policy()
        });
        let t0 = Instant::now();
        for _ in 0..100 {
            assert_eq!(a.failure(g("192.0.2.1"), fp(1), t0), None);
        }
        assert_eq!(a.locked(g("192.0.2.1"), fp(1), t0), None);
    }

    #[test]
    fn tables_stay_bounded_and_keep_lockouts_over_idle_entries() {
        let a = Admission::new(AdmissionPolicy {
            max_entries: 16,
            handshake_rate: 0,
            max_handshakes: 0,
            ..policy()
        });
        let t0 = Instant::now();
        let ip = g("192.0.2.1");
        for _ in 0..3 {
            a.failure(ip, fp(0), t0);
        }
        assert!(a.locked(ip, fp(0), t0).is_some());
        // A flood of distinct addresses and certificates.
        for i in 0..10_000u32 {
            let other = AddrGroup::V4(Ipv4Addr::from(0x0a00_0000 + i));
            let _ = a.arrive(other, t0);
            a.finished(other, false);
            a.failure(other, fp((i % 200) as u8), t0);
            let (groups, certs) = a.len();
            assert!(groups <= 16 && certs <= 16, "{groups} {certs}");
        }
        // Idle one-failure entries went first: the lockout survived.
        assert!(a.locked(ip, fp(0), t0).is_some());
    }

    #[test]
    fn clock_evicts_unused_entries_first_in_constant_steps() {
        let mut c: Clock<u32, ()> = Clock::new(4);
        for k in 0..4 {
            c.entry(k, || (), |_| false);
        }
        // First sweep clears every "used" bit, then evicts key 0.
        c.entry(4, || (), |_| false);
        assert_eq!(c.len(), 4);
        assert!(!c.map.contains_key(&0));
        // Key 1 used again: key 2 goes next.
        c.get_mut(&1);
        c.entry(5, || (), |_| false);
        assert!(c.map.contains_key(&1) && !c.map.contains_key(&2));
        // Everything kept: the oldest goes anyway, after at most EVICTION_SCAN visits.
        c.entry(6, || (), |_| true);
        assert_eq!(c.len(), 4);
    }
}
