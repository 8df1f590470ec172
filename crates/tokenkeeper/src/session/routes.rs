//! Refusals are judged per route (DESIGN.md §3.8): the seeds' per-URL invalid-token counter.
//!
//! A route (method + path) whose retry with a freshly refreshed token was refused too has given
//! its answer: it refuses for a reason that is not the token's age (a permission the user lacks,
//! a broken endpoint). Later refusals from that route with a token at least that fresh go back
//! to the caller without another refresh and do not count toward ending the session.
//!
//! The session ends on refusals only when they span routes and refreshes: `limit` refreshed
//! tokens in a row (no accepted response in between) each refused on a route that had not
//! refused before means the token is refused everywhere. Concurrent refusals count once: of one
//! route, and of one refreshed token (a stall longer than the token's lifetime makes every
//! request that waited for the refresh retry with an already expired token; that is one
//! observation, not one per request).
//!
//! Memory is bounded: at most [`MAX_ROUTES`] broken routes are remembered; past that the one
//! marked broken under the oldest generation is forgotten (it gets one more refresh-and-retry).

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Mutex, MutexGuard, PoisonError};

/// At most this many broken routes are remembered per session.
pub(crate) const MAX_ROUTES: usize = 1024;

/// A route: the request's method and path (no query), hashed. Collisions only merge the
/// accounting of two routes; they never attach a token anywhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct RouteKey(u64);

impl RouteKey {
    pub(crate) fn new(method: &http::Method, path: &str) -> Self {
        // A fixed-key hasher: keys only need to be stable within this process.
        let mut hasher =
            std::hash::BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default()
                .build_hasher();
        hasher.write(method.as_str().as_bytes());
        hasher.write_u8(b' ');
        hasher.write(path.as_bytes());
        Self(hasher.finish())
    }
}

#[derive(Default)]
struct Ledger {
    /// Route → the generation whose retry it refused.
    broken: HashMap<RouteKey, u64>,
    /// Refreshed tokens (generations) refused since the last accepted response.
    refused_since_accept: Vec<u64>,
}

/// The per-route accounting of one session.
#[derive(Default)]
pub(crate) struct Routes {
    ledger: Mutex<Ledger>,
    /// Whether the ledger holds anything: accepted responses skip the lock when it does not.
    tracking: AtomicBool,
}

impl Routes {
    fn ledger(&self) -> MutexGuard<'_, Ledger> {
        // Plain maps: a panic elsewhere cannot leave them inconsistent.
        self.ledger.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether accepted responses need to be reported (see [`accepted`](Self::accepted)).
    pub(crate) fn is_tracking(&self) -> bool {
        self.tracking.load(Relaxed)
    }

    /// Whether `route` already refused a token at least as fresh as `generation` after a refresh.
    pub(crate) fn is_broken(&self, route: RouteKey, generation: u64) -> bool {
        if !self.is_tracking() {
            return false;
        }
        self.ledger()
            .broken
            .get(&route)
            .is_some_and(|&broken_at| generation >= broken_at)
    }

    /// `route` refused `generation`, a token fresh from a refresh. Returns how many refreshed
    /// tokens were refused since the last accepted response.
    pub(crate) fn refused_after_refresh(&self, route: RouteKey, generation: u64) -> usize {
        let mut ledger = self.ledger();
        if ledger.broken.len() >= MAX_ROUTES && !ledger.broken.contains_key(&route) {
            let oldest = ledger
                .broken
                .iter()
                .min_by_key(|(_, generation)| **generation)
                .map(|(route, _)| *route);
            if let Some(oldest) = oldest {
                ledger.broken.remove(&oldest);
            }
        }
        let entry = ledger.broken.entry(route).or_insert(generation);
        *entry = (*entry).min(generation);
        if !ledger.refused_since_accept.contains(&generation)
            && ledger.refused_since_accept.len() < MAX_ROUTES
        {
            ledger.refused_since_accept.push(generation);
        }
        self.tracking.store(true, Relaxed);
        ledger.refused_since_accept.len()
    }

    /// A response on `route` was accepted: the route works again, and the refusals do not span
    /// every route.
    pub(crate) fn accepted(&self, route: RouteKey) {
        let mut ledger = self.ledger();
        ledger.broken.remove(&route);
        ledger.refused_since_accept.clear();
        if ledger.broken.is_empty() {
            self.tracking.store(false, Relaxed);
        }
    }

    /// A new login: nothing learnt about the previous one applies.
    pub(crate) fn forget(&self) {
        let mut ledger = self.ledger();
        ledger.broken.clear();
        ledger.refused_since_accept.clear();
        self.tracking.store(false, Relaxed);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.ledger().broken.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Method;

    fn route(path: &str) -> RouteKey {
        RouteKey::new(&Method::GET, path)
    }

    #[test]
    fn a_broken_route_refuses_as_fresh_tokens_only() {
        let routes = Routes::default();
        assert!(!routes.is_broken(route("/a"), 5));
        assert_eq!(routes.refused_after_refresh(route("/a"), 5), 1);
        assert!(routes.is_broken(route("/a"), 5));
        assert!(routes.is_broken(route("/a"), 9));
        assert!(
            !routes.is_broken(route("/a"), 4),
            "an older token may still be retried"
        );
        assert!(!routes.is_broken(route("/b"), 5));
        assert!(!routes.is_broken(RouteKey::new(&Method::POST, "/a"), 5));
    }

    #[test]
    fn concurrent_refusals_count_once() {
        let routes = Routes::default();
        for _ in 0..10 {
            assert_eq!(routes.refused_after_refresh(route("/a"), 5), 1);
        }
        // Requests that waited for one refresh and were all refused: one observation.
        for path in ["/b", "/c", "/d"] {
            assert_eq!(routes.refused_after_refresh(route(path), 5), 1);
        }
        assert_eq!(routes.refused_after_refresh(route("/e"), 6), 2);
    }

    #[test]
    fn an_accepted_response_resets_the_span_and_heals_its_route() {
        let routes = Routes::default();
        routes.refused_after_refresh(route("/a"), 5);
        routes.refused_after_refresh(route("/b"), 6);
        routes.accepted(route("/c"));
        assert_eq!(routes.refused_after_refresh(route("/d"), 6), 1);
        assert!(routes.is_broken(route("/a"), 6));
        routes.accepted(route("/a"));
        assert!(!routes.is_broken(route("/a"), 6));
        routes.forget();
        assert!(!routes.is_tracking());
    }

    #[test]
    fn memory_is_bounded() {
        let routes = Routes::default();
        for i in 0..(MAX_ROUTES as u64 + 100) {
            routes.refused_after_refresh(route(&format!("/items/{i}")), i + 1);
        }
        assert_eq!(routes.len(), MAX_ROUTES);
        // The oldest were forgotten first.
        assert!(!routes.is_broken(route("/items/0"), 1_000_000));
        assert!(routes.is_broken(route(&format!("/items/{}", MAX_ROUTES + 99)), 1_000_000));
    }
}
