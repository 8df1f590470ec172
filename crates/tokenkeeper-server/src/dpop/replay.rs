//! The `jti` replay cache (RFC 9449 §11.1), bounded in memory without a replay hole.
//!
//! A proof is accepted only with an `iat` inside the window, so a `jti` needs remembering only
//! while a proof carrying it could still be accepted: entries are dropped once that time has
//! passed. Under a flood of proofs the cache may still fill up; then the oldest entry is
//! forgotten and the cache's *floor* rises to its `iat`: from then on a proof with an `iat` no
//! newer than the floor is refused as too old. Every proof above the floor that was ever
//! accepted is still in the cache, so forgetting never lets a replay through; the price of a
//! full cache is that proofs somewhat older than the window allows are refused.
//!
//! Entries are 128-bit SHA-256 prefixes of the `jti`, so an entry has a fixed size whatever
//! the client sends, and crafted `jti`s cannot collide.

use std::collections::{HashSet, VecDeque};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use sha2::{Digest as _, Sha256};

type JtiHash = [u8; 16];

/// What the cache says about a proof.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Seen {
    /// First time: remembered now.
    New,
    /// This `jti` was accepted before.
    Replay,
    /// The proof is no newer than the cache's floor: it may have been forgotten.
    BelowFloor,
}

#[derive(Debug)]
struct Entry {
    jti: JtiHash,
    iat: f64,
    /// When the entry may be dropped: no proof with this `iat` is accepted after it.
    drop_at: Instant,
}

#[derive(Debug, Default)]
struct Inner {
    seen: HashSet<JtiHash>,
    /// In arrival order, so `drop_at` is non-decreasing (every entry gets the same lifespan).
    order: VecDeque<Entry>,
    /// Proofs with `iat <= floor` are refused.
    floor: Option<f64>,
    evictions: u64,
}

/// Remembers the `jti` of accepted proofs.
#[derive(Debug)]
pub(crate) struct ReplayCache {
    inner: Mutex<Inner>,
    capacity: usize,
    /// How long a proof may still be accepted after it arrived (max age + future leeway).
    lifespan: Duration,
}

impl ReplayCache {
    pub(crate) fn new(capacity: usize, lifespan: Duration) -> Self {
        Self {
            inner: Mutex::new(Inner::default()),
            capacity: capacity.max(1),
            lifespan,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Checks `jti` (of a proof issued at `iat`) and remembers it when new.
    pub(crate) fn check(&self, jti: &str, iat: f64, now: Instant) -> Seen {
        let hash = hash(jti);
        let mut inner = self.lock();
        while inner
            .order
            .front()
            .is_some_and(|entry| entry.drop_at <= now)
        {
            if let Some(entry) = inner.order.pop_front() {
                inner.seen.remove(&entry.jti);
            }
        }
        if inner.seen.contains(&hash) {
            return Seen::Replay;
        }
        if inner.floor.is_some_and(|floor| iat <= floor) {
            return Seen::BelowFloor;
        }
        if inner.order.len() >= self.capacity
            && let Some(oldest) = inner.order.pop_front()
        {
            inner.seen.remove(&oldest.jti);
            inner.floor = Some(
                inner
                    .floor
                    .map_or(oldest.iat, |floor| floor.max(oldest.iat)),
            );
            inner.evictions += 1;
            if iat <= oldest.iat {
                // The new proof is no newer than what was just forgotten: refuse it too, the
                // same as every later proof that old.
                return Seen::BelowFloor;
            }
        }
        inner.seen.insert(hash);
        inner.order.push_back(Entry {
            jti: hash,
            iat,
            drop_at: now + self.lifespan,
        });
        Seen::New
    }

    /// `jti`s remembered now.
    pub(crate) fn len(&self) -> usize {
        self.lock().order.len()
    }

    /// Entries forgotten because the cache was full.
    pub(crate) fn evictions(&self) -> u64 {
        self.lock().evictions
    }

    /// Zeroes the eviction count (server reset). The remembered `jti`s and the floor stay:
    /// forgetting them would let proofs sent before the reset be replayed after it.
    pub(crate) fn reset_count(&self) {
        self.lock().evictions = 0;
    }
}

fn hash(jti: &str) -> JtiHash {
    let digest = Sha256::digest(jti.as_bytes());
    let mut out = [0u8; 16];
    out.copy_from_slice(&digest[..16]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_jti_is_accepted_once() {
        let cache = ReplayCache::new(10, Duration::from_secs(60));
        let now = Instant::now();
        assert_eq!(cache.check("a", 1.0, now), Seen::New);
        assert_eq!(cache.check("a", 1.0, now), Seen::Replay);
        assert_eq!(cache.check("b", 1.0, now), Seen::New);
        assert_eq!(cache.len(), 2);
    }

    #[test]
    fn entries_are_dropped_after_their_lifespan() {
        let cache = ReplayCache::new(10, Duration::from_secs(60));
        let now = Instant::now();
        cache.check("a", 1.0, now);
        cache.check("b", 2.0, now + Duration::from_secs(30));
        assert_eq!(
            cache.check("c", 3.0, now + Duration::from_secs(61)),
            Seen::New
        );
        assert_eq!(cache.len(), 2);
        assert_eq!(cache.evictions(), 0);
    }

    #[test]
    fn a_full_cache_forgets_the_oldest_and_refuses_proofs_that_old() {
        let cache = ReplayCache::new(3, Duration::from_secs(60));
        let now = Instant::now();
        for (i, jti) in ["a", "b", "c", "d", "e"].iter().enumerate() {
            assert_eq!(cache.check(jti, i as f64, now), Seen::New, "{jti}");
        }
        assert_eq!(cache.len(), 3);
        assert_eq!(cache.evictions(), 2);
        // "a" (iat 0) and "b" (iat 1) were forgotten; replaying them is still refused.
        assert_eq!(cache.check("a", 0.0, now), Seen::BelowFloor);
        assert_eq!(cache.check("b", 1.0, now), Seen::BelowFloor);
        assert_eq!(cache.check("e", 4.0, now), Seen::Replay);
        // A new proof as old as the floor is refused; a newer one is fine.
        assert_eq!(cache.check("f", 1.0, now), Seen::BelowFloor);
        assert_eq!(cache.check("g", 5.0, now), Seen::New);
        assert_eq!(cache.len(), 3);
    }
}
