//! Refresh-token families: the rotation / reuse-detection state machine, with bounded memory.
//!
//! A login creates a family (a session) at generation 0. Each refresh with the family's current
//! token rotates it: a new pair is issued at the next generation. Refresh tokens are signed
//! (family, generation) pairs ([`crate::refresh_tokens`]), so a presented token tells which
//! family it belongs to and how old it is without any per-token record: presenting a token older
//! than the family's current one is reuse (RFC 9700 §4.14.2) and revokes the whole family, so
//! neither its refresh tokens nor its access tokens are accepted any more. With a grace period,
//! the immediately previous token is accepted once more within the grace window and answers
//! with the very pair its rotation produced (the only pair a family keeps, and only while the
//! window lasts).
//!
//! Every decision takes the table's write lock, so concurrent refreshes of one family are
//! decided one after the other: exactly one rotates. The protected API only takes the read lock
//! to ask whether a family is still active.
//!
//! Decision order for a presented refresh token:
//! 1. not ours (bad signature) or its family is not in the table → `unknown`;
//! 2. the family is bound to a DPoP key (it logged in with a proof) and the request's proof is
//!    by another key, or there is none → `wrong_key`, and nothing else happens: such a request
//!    could not use what it would get, so it neither rotates nor counts as reuse;
//! 3. the family's current token: family revoked → `revoked`; past its refresh TTL →
//!    `expired`; otherwise rotate;
//! 4. an older token: the immediately previous one, within the grace period, not yet replayed,
//!    family not revoked → grace (same pair); otherwise `reuse`, which revokes the family if it
//!    was not already revoked.
//!
//! # Memory
//!
//! A family is *dead* once it is revoked, or once its newest refresh token and its newest
//! access token have both expired: nothing it issued can be used any more. A dead family is
//! kept for [`Limits::retention`] so that its tokens are still answered as expired, revoked or
//! reused, then pruned: its tokens become unknown (still refused, and an access token of a
//! pruned family is invalid). Pruning runs during logins and refreshes (the only requests that
//! add or grow state), at most once per [`sweep_interval`], so an idle server does no work.
//!
//! The table holds at most [`Limits::max_families`] families. A login that finds it full first
//! prunes, then forgets every dead family at once (retention or not); if every family is still
//! live the login is refused ([`LoginOutcome::Full`], answered 503 with `Retry-After`). Live
//! families are never evicted: that would log a user out behind their back. Refreshes never add
//! a family, so they are never refused for space.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use crate::refresh_tokens::{FamilyId, RefreshTokens};
use crate::tokens::{Contract, IssuedPair, TokenMinter};

/// Why a refresh was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum RejectReason {
    /// An already-rotated token was presented.
    Reuse,
    /// The token was never issued here (or its family was pruned or reset).
    Unknown,
    /// The token outlived the refresh TTL.
    Expired,
    /// The token's family was revoked.
    Revoked,
    /// The request carried no usable token.
    Malformed,
    /// The token is DPoP-bound and the request's proof (if any) is by another key.
    WrongKey,
}

impl RejectReason {
    /// Human text for error descriptions.
    pub(crate) fn description(self) -> &'static str {
        match self {
            RejectReason::Reuse => {
                "The refresh token was already used; the session has been revoked"
            }
            RejectReason::Unknown => "The refresh token is not known",
            RejectReason::Expired => "The refresh token expired",
            RejectReason::Revoked => "The session of this refresh token was revoked",
            RejectReason::Malformed => "The request carries no usable refresh token",
            RejectReason::WrongKey => {
                "The refresh token is bound to another DPoP key than the proof's"
            }
        }
    }
}

/// The result of presenting a refresh token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum RefreshOutcome {
    /// The current token was rotated; here is the new pair.
    Rotated(Arc<IssuedPair>),
    /// The previous token was replayed within the grace period; here is the
    /// pair its rotation produced.
    Grace(Arc<IssuedPair>),
    /// Refused.
    Rejected {
        /// Why.
        reason: RejectReason,
        /// True when this very request revoked the family (first reuse).
        revoked_family: bool,
    },
}

/// The result of a login.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum LoginOutcome {
    /// A new family and its first pair.
    Issued(IssuedPair),
    /// The table is full of live families.
    Full {
        /// When the earliest live family dies, which frees a place; `None` when pruning is
        /// off and no place will ever free up until a reset.
        retry_after: Option<Duration>,
    },
}

/// How much the table may hold and for how long.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Limits {
    /// Lifetime of each refresh token, from its issue.
    pub(crate) refresh_ttl: Duration,
    /// Grace window for replaying the previous token.
    pub(crate) grace: Duration,
    /// How long a dead family is kept before it is pruned.
    pub(crate) retention: Duration,
    /// Most families held at once.
    pub(crate) max_families: usize,
    /// Whether dead families are pruned at all (off: kept until a reset).
    pub(crate) prune: bool,
}

/// A duration so long that a deadline this far ahead never comes (about 100 years).
const FOREVER: Duration = Duration::from_secs(100 * 365 * 24 * 60 * 60);

/// `at + duration`, or a deadline that never comes when that does not fit in an `Instant`.
fn after(at: Instant, duration: Duration) -> Instant {
    at.checked_add(duration)
        .or_else(|| at.checked_add(FOREVER))
        .unwrap_or(at)
}

/// How often pruning may run: the retention, within 10 ms..=1 s. A dead family outlives its
/// retention by at most this much (given traffic).
pub(crate) fn sweep_interval(retention: Duration) -> Duration {
    retention.clamp(Duration::from_millis(10), Duration::from_secs(1))
}

/// The pair a rotation produced, kept for a grace replay while the window lasts.
#[derive(Debug)]
struct LastRotation {
    at: Instant,
    pair: Arc<IssuedPair>,
    replayed: bool,
}

/// A session.
#[derive(Debug)]
struct Family {
    sub: Arc<str>,
    /// Generation of the current refresh token; every older one is reuse.
    generation: u64,
    /// When the current refresh token expires.
    refresh_expires_at: Instant,
    /// When the newest access token of the family expires.
    access_expires_at: Instant,
    revoked_at: Option<Instant>,
    /// Only with a grace period, and only until the window passed.
    last_rotation: Option<LastRotation>,
    /// Thumbprint of the DPoP key the family's refresh tokens are bound to.
    jkt: Option<Box<str>>,
}

impl Family {
    /// When nothing the family issued is usable any more: its revocation, or the later of its
    /// newest tokens' expiries (in the future while it lives).
    fn dies_at(&self) -> Instant {
        self.revoked_at
            .unwrap_or_else(|| self.refresh_expires_at.max(self.access_expires_at))
    }
}

#[derive(Debug)]
struct Inner {
    families: HashMap<FamilyId, Family>,
    /// No pruning before this.
    next_sweep: Instant,
    /// While full of live families: when the first of them dies. Logins before that are
    /// refused without scanning the table again.
    full_until: Option<Instant>,
}

impl Inner {
    fn new(now: Instant) -> Self {
        Self {
            families: HashMap::new(),
            next_sweep: now,
            full_until: None,
        }
    }
}

/// The family table.
#[derive(Debug)]
pub(crate) struct Families {
    inner: RwLock<Inner>,
    limits: Limits,
    refresh_tokens: RefreshTokens,
    /// Families pruned since start or the last reset.
    pruned: AtomicU64,
}

impl Families {
    /// An empty table.
    pub(crate) fn new(limits: Limits) -> Self {
        Self {
            inner: RwLock::new(Inner::new(Instant::now())),
            limits,
            refresh_tokens: RefreshTokens::random(),
            pruned: AtomicU64::new(0),
        }
    }

    fn read(&self) -> RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// Families in the table now, live and dead.
    pub(crate) fn len(&self) -> usize {
        self.read().families.len()
    }

    /// Families pruned since start or the last [`Families::clear`].
    pub(crate) fn pruned(&self) -> u64 {
        self.pruned.load(Ordering::Relaxed)
    }

    /// Drops every family dead for longer than the retention (every dead one when `all_dead`);
    /// gives memory back when the table became mostly empty.
    fn prune(&self, inner: &mut Inner, now: Instant, all_dead: bool) {
        if !self.limits.prune {
            return;
        }
        inner.next_sweep = after(now, sweep_interval(self.limits.retention));
        let retention = if all_dead {
            Duration::ZERO
        } else {
            self.limits.retention
        };
        let grace = self.limits.grace;
        let before = inner.families.len();
        inner.families.retain(|_, family| {
            if family
                .last_rotation
                .as_ref()
                .is_some_and(|last| now.saturating_duration_since(last.at) >= grace)
            {
                family.last_rotation = None;
            }
            now < after(family.dies_at(), retention)
        });
        let removed = before - inner.families.len();
        if removed > 0 {
            self.pruned.fetch_add(removed as u64, Ordering::Relaxed);
            inner.full_until = None;
            tracing::debug!(removed, left = inner.families.len(), "families pruned");
        }
        // A HashMap never shrinks by itself: without this, a burst of logins would keep its
        // peak table allocated after every family of the burst is gone.
        let (len, capacity) = (inner.families.len(), inner.families.capacity());
        if capacity > 64 && len < capacity / 4 {
            inner.families.shrink_to(len * 2);
        }
    }

    fn maybe_prune(&self, inner: &mut Inner, now: Instant) {
        if now >= inner.next_sweep {
            self.prune(inner, now, false);
        }
    }

    /// Makes room for one more family, or says when there will be some.
    fn room(&self, inner: &mut Inner, now: Instant) -> Result<(), Option<Duration>> {
        let max = self.limits.max_families;
        if inner.families.len() < max {
            return Ok(());
        }
        let until = |at: Instant| Some(at.saturating_duration_since(now));
        if let Some(full_until) = inner.full_until
            && now < full_until
        {
            return Err(until(full_until));
        }
        self.prune(inner, now, true);
        if inner.families.len() < max {
            return Ok(());
        }
        if !self.limits.prune {
            return Err(None);
        }
        // Every family is live: the first to die frees a place.
        let first_death = inner.families.values().map(Family::dies_at).min();
        inner.full_until = first_death;
        Err(first_death.and_then(until))
    }

    /// Starts a family for `sub` and issues its first pair in `style`, if there is room.
    /// A proof's key thumbprint `jkt` binds the family: its refresh tokens are redeemed only
    /// with proofs by that key, and its access tokens carry `cnf.jkt`.
    pub(crate) fn login(
        &self,
        sub: &str,
        style: Contract,
        minter: &TokenMinter,
        now: Instant,
        jkt: Option<&str>,
    ) -> Result<LoginOutcome, jsonwebtoken::errors::Error> {
        self.start(sub, style, minter, now, jkt, self.limits.refresh_ttl)
    }

    /// Like [`Families::login`] for a grant that gets no refresh token (client credentials):
    /// the family's refresh token is expired from the start and never handed out, so the
    /// family dies with its access token and is pruned like any other.
    pub(crate) fn login_without_refresh(
        &self,
        sub: &str,
        style: Contract,
        minter: &TokenMinter,
        now: Instant,
        jkt: Option<&str>,
    ) -> Result<LoginOutcome, jsonwebtoken::errors::Error> {
        self.start(sub, style, minter, now, jkt, Duration::ZERO)
    }

    fn start(
        &self,
        sub: &str,
        style: Contract,
        minter: &TokenMinter,
        now: Instant,
        jkt: Option<&str>,
        refresh_ttl: Duration,
    ) -> Result<LoginOutcome, jsonwebtoken::errors::Error> {
        let mut inner = self.write();
        self.maybe_prune(&mut inner, now);
        if let Err(retry_after) = self.room(&mut inner, now) {
            return Ok(LoginOutcome::Full { retry_after });
        }
        let mut id = FamilyId::random();
        while inner.families.contains_key(&id) {
            // 96 random bits: a collision is all but impossible, but never merge two sessions.
            id = FamilyId::random();
        }
        let access_token = minter.mint_access(sub, &id.encode(), style, jkt)?;
        let refresh_token = self.refresh_tokens.issue(&id, 0);
        inner.families.insert(
            id,
            Family {
                sub: sub.into(),
                generation: 0,
                refresh_expires_at: after(now, refresh_ttl),
                access_expires_at: after(now, minter.access_ttl()),
                revoked_at: None,
                last_rotation: None,
                jkt: jkt.map(Box::from),
            },
        );
        Ok(LoginOutcome::Issued(IssuedPair {
            access_token,
            refresh_token,
            dpop_bound: jkt.is_some(),
        }))
    }

    /// Decides a refresh with `token`, sent with a DPoP proof by the key with thumbprint `jkt`
    /// (if any); a rotation issues tokens in `style`, the access token bound to `jkt`, and
    /// binds a family that was not bound yet to `jkt` (its refresh tokens from then on).
    ///
    /// The key is checked before anything else: a family bound to a key is never touched by
    /// a request without a proof by that key (no rotation, no reuse detection), since such a
    /// request could not use what it would get.
    pub(crate) fn refresh(
        &self,
        token: &str,
        style: Contract,
        minter: &TokenMinter,
        now: Instant,
        jkt: Option<&str>,
    ) -> Result<RefreshOutcome, jsonwebtoken::errors::Error> {
        let reject = |reason| RefreshOutcome::Rejected {
            reason,
            revoked_family: false,
        };
        // The signature is checked before taking the lock: garbage costs no contention.
        let Some((id, generation)) = self.refresh_tokens.open(token) else {
            return Ok(reject(RejectReason::Unknown));
        };
        let mut inner = self.write();
        self.maybe_prune(&mut inner, now);
        let Some(family) = inner.families.get_mut(&id) else {
            return Ok(reject(RejectReason::Unknown));
        };
        if generation > family.generation {
            // Signed by us but never issued: only possible across a reset that reused the id.
            return Ok(reject(RejectReason::Unknown));
        }
        if let Some(bound) = &family.jkt
            && jkt != Some(&**bound)
        {
            return Ok(reject(RejectReason::WrongKey));
        }
        if generation == family.generation {
            if family.revoked_at.is_some() {
                return Ok(reject(RejectReason::Revoked));
            }
            if now >= family.refresh_expires_at {
                return Ok(reject(RejectReason::Expired));
            }
            let Some(next) = generation.checked_add(1) else {
                // 2^64 rotations: the family has outlived any TTL. Never wrap around.
                return Ok(reject(RejectReason::Expired));
            };
            let access_token = minter.mint_access(&family.sub, &id.encode(), style, jkt)?;
            let pair = Arc::new(IssuedPair {
                access_token,
                refresh_token: self.refresh_tokens.issue(&id, next),
                dpop_bound: jkt.is_some(),
            });
            family.generation = next;
            if family.jkt.is_none() {
                // RFC 9449 §5: a public client's refresh token is bound to the key of the
                // proof it was issued with (every client of this server is public).
                family.jkt = jkt.map(Box::from);
            }
            family.refresh_expires_at = after(now, self.limits.refresh_ttl);
            family.access_expires_at = family
                .access_expires_at
                .max(after(now, minter.access_ttl()));
            family.last_rotation = (!self.limits.grace.is_zero()).then(|| LastRotation {
                at: now,
                pair: pair.clone(),
                replayed: false,
            });
            return Ok(RefreshOutcome::Rotated(pair));
        }
        let immediately_previous = generation.checked_add(1) == Some(family.generation);
        if family.revoked_at.is_none()
            && immediately_previous
            && let Some(last) = &mut family.last_rotation
            && now.saturating_duration_since(last.at) < self.limits.grace
            && !last.replayed
        {
            last.replayed = true;
            return Ok(RefreshOutcome::Grace(last.pair.clone()));
        }
        let revoked_family = family.revoked_at.is_none();
        family.revoked_at.get_or_insert(now);
        family.last_rotation = None;
        if revoked_family {
            inner.full_until = None;
        }
        Ok(RefreshOutcome::Rejected {
            reason: RejectReason::Reuse,
            revoked_family,
        })
    }

    /// True when the family with claim `fam` exists and is not revoked. Read lock only.
    pub(crate) fn is_active(&self, fam: &str) -> bool {
        let Some(id) = FamilyId::decode(fam) else {
            return false;
        };
        self.read()
            .families
            .get(&id)
            .is_some_and(|family| family.revoked_at.is_none())
    }

    /// Revokes the family of `token` (logout). `None` when the token is not known;
    /// `Some(true)` when this call revoked the family.
    pub(crate) fn revoke(&self, token: &str, now: Instant) -> Option<bool> {
        let (id, generation) = self.refresh_tokens.open(token)?;
        let mut inner = self.write();
        let family = inner.families.get_mut(&id)?;
        if generation > family.generation {
            return None;
        }
        let newly = family.revoked_at.is_none();
        family.revoked_at.get_or_insert(now);
        family.last_rotation = None;
        if newly {
            // A place may free up now: the next login at the cap looks again.
            inner.full_until = None;
        }
        Some(newly)
    }

    /// Forgets every family and zeroes the pruned count.
    pub(crate) fn clear(&self) {
        *self.write() = Inner::new(Instant::now());
        self.pruned.store(0, Ordering::Relaxed);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;

    const MINUTE: Duration = Duration::from_secs(60);

    fn limits() -> Limits {
        Limits {
            refresh_ttl: MINUTE,
            grace: Duration::ZERO,
            retention: Duration::from_secs(10),
            max_families: 1000,
            prune: true,
        }
    }

    /// A table of families and the minter of its tokens, with the calls the tests make: user
    /// "demo", the JSON contract and no DPoP key unless a test names them.
    struct Table {
        families: Families,
        minter: TokenMinter,
    }

    impl Table {
        fn new(limits: Limits) -> Self {
            Self {
                families: Families::new(limits),
                minter: TokenMinter::new(b"secret", Duration::from_secs(5)),
            }
        }

        fn login_as(&self, contract: Contract, now: Instant, jkt: Option<&str>) -> LoginOutcome {
            self.families
                .login("demo", contract, &self.minter, now, jkt)
                .unwrap()
        }

        /// A login that must be issued.
        fn login(&self, now: Instant) -> IssuedPair {
            issued(self.login_as(Contract::Json, now, None))
        }

        fn refresh_as(
            &self,
            token: &str,
            contract: Contract,
            now: Instant,
            jkt: Option<&str>,
        ) -> RefreshOutcome {
            self.families
                .refresh(token, contract, &self.minter, now, jkt)
                .unwrap()
        }

        fn refresh(&self, token: &str, now: Instant) -> RefreshOutcome {
            self.refresh_as(token, Contract::Json, now, None)
        }

        /// A refresh that must rotate.
        fn rotate(&self, token: &str, now: Instant) -> Arc<IssuedPair> {
            rotated(self.refresh(token, now))
        }

        fn family_of(&self, access: &str) -> String {
            match self.minter.check(access, crate::tokens::unix_now()) {
                crate::tokens::AccessCheck::Valid(claims) => claims.fam,
                other => panic!("expected a valid token, got {other:?}"),
            }
        }
    }

    fn issued(outcome: LoginOutcome) -> IssuedPair {
        match outcome {
            LoginOutcome::Issued(pair) => pair,
            other => panic!("expected a login, got {other:?}"),
        }
    }

    fn rotated(outcome: RefreshOutcome) -> Arc<IssuedPair> {
        match outcome {
            RefreshOutcome::Rotated(pair) => pair,
            other => panic!("expected a rotation, got {other:?}"),
        }
    }

    fn rejected(reason: RejectReason, revoked_family: bool) -> RefreshOutcome {
        RefreshOutcome::Rejected {
            reason,
            revoked_family,
        }
    }

    #[test]
    fn rotation_then_reuse_revokes_the_family() {
        let table = Table::new(limits());
        let now = Instant::now();
        let first = table.login(now);
        let fam = table.family_of(&first.access_token);
        assert!(table.families.is_active(&fam));

        let second = table.rotate(&first.refresh_token, now);
        assert_eq!(table.family_of(&second.access_token), fam);

        let reuse = table.refresh(&first.refresh_token, now);
        assert_eq!(reuse, rejected(RejectReason::Reuse, true));
        assert!(!table.families.is_active(&fam));
        // Reusing again is still reuse, but the family is revoked only once.
        assert_eq!(
            table.refresh(&first.refresh_token, now),
            rejected(RejectReason::Reuse, false)
        );
        // The current token of the revoked family is refused as revoked.
        assert_eq!(
            table.refresh(&second.refresh_token, now),
            rejected(RejectReason::Revoked, false)
        );
    }

    #[test]
    fn any_older_token_is_reuse_however_many_rotations_ago() {
        let table = Table::new(limits());
        let now = Instant::now();
        let first = table.login(now);
        let mut current = first.refresh_token.clone();
        for _ in 0..1000 {
            current = table.rotate(&current, now).refresh_token.clone();
        }
        assert_eq!(
            table.refresh(&first.refresh_token, now),
            rejected(RejectReason::Reuse, true)
        );
        assert!(
            !table
                .families
                .is_active(&table.family_of(&first.access_token))
        );
    }

    #[test]
    fn grace_returns_the_same_pair_once() {
        let table = Table::new(Limits {
            grace: Duration::from_secs(10),
            ..limits()
        });
        let now = Instant::now();
        let first = issued(table.login_as(Contract::OAuth2, now, None));
        let second = rotated(table.refresh_as(&first.refresh_token, Contract::OAuth2, now, None));
        let replay = table.refresh_as(
            &first.refresh_token,
            Contract::OAuth2,
            now + Duration::from_secs(1),
            None,
        );
        assert_eq!(replay, RefreshOutcome::Grace(second.clone()));
        let again = table.refresh_as(
            &first.refresh_token,
            Contract::OAuth2,
            now + Duration::from_secs(2),
            None,
        );
        assert_eq!(again, rejected(RejectReason::Reuse, true));
    }

    #[test]
    fn grace_ends_after_the_window_and_after_the_next_rotation() {
        let table = Table::new(Limits {
            grace: Duration::from_secs(10),
            ..limits()
        });
        let now = Instant::now();
        let first = table.login(now);
        table.refresh(&first.refresh_token, now);
        let late = table.refresh(&first.refresh_token, now + Duration::from_secs(10));
        assert_eq!(late, rejected(RejectReason::Reuse, true));

        let a = table.login(now);
        let b = table.rotate(&a.refresh_token, now);
        table.rotate(&b.refresh_token, now);
        // `a` is two rotations back: not the immediately previous token.
        assert_eq!(
            table.refresh(&a.refresh_token, now),
            rejected(RejectReason::Reuse, true)
        );
    }

    #[test]
    fn expired_unknown_and_cleared() {
        let table = Table::new(Limits {
            refresh_ttl: Duration::from_secs(1),
            ..limits()
        });
        let now = Instant::now();
        let pair = table.login(now);
        assert_eq!(
            table.refresh(&pair.refresh_token, now + Duration::from_secs(1)),
            rejected(RejectReason::Expired, false)
        );
        assert_eq!(
            table.refresh("nope", now),
            rejected(RejectReason::Unknown, false)
        );
        let fam = table.family_of(&pair.access_token);
        table.families.clear();
        assert!(!table.families.is_active(&fam));
        assert_eq!(
            table.refresh(&pair.refresh_token, now),
            rejected(RejectReason::Unknown, false)
        );
    }

    #[test]
    fn logout_revokes() {
        let table = Table::new(limits());
        let now = Instant::now();
        let pair = table.login(now);
        let families = &table.families;
        assert_eq!(families.revoke(&pair.refresh_token, now), Some(true));
        assert_eq!(families.revoke(&pair.refresh_token, now), Some(false));
        assert_eq!(families.revoke("nope", now), None);
        assert!(!families.is_active(&table.family_of(&pair.access_token)));
    }

    #[test]
    fn expired_families_are_kept_for_the_retention_then_pruned() {
        let table = Table::new(limits());
        let families = &table.families;
        let start = Instant::now();
        let pairs: Vec<_> = (0..100).map(|_| table.login(start)).collect();
        assert_eq!(families.len(), 100);
        // Expired (refresh TTL 60 s, access TTL 5 s) but within the 10 s retention: still
        // answered as expired, not pruned.
        let expired = start + MINUTE;
        assert_eq!(
            table.refresh(&pairs[0].refresh_token, expired),
            rejected(RejectReason::Expired, false)
        );
        assert_eq!(families.len(), 100);
        assert_eq!(families.pruned(), 0);
        // Past the retention, the next login prunes them all.
        let later = expired + Duration::from_secs(10);
        table.login(later);
        assert_eq!(families.len(), 1);
        assert_eq!(families.pruned(), 100);
        assert_eq!(
            table.refresh(&pairs[1].refresh_token, later),
            rejected(RejectReason::Unknown, false)
        );
    }

    #[test]
    fn a_refreshed_family_lives_on_and_its_old_tokens_stay_reuse() {
        let table = Table::new(limits());
        let start = Instant::now();
        let first = table.login(start);
        let mut current = first.refresh_token.clone();
        // Refreshed every 50 s for 10 minutes: each rotation extends the family's life.
        let mut now = start;
        for _ in 0..12 {
            now += Duration::from_secs(50);
            current = table.rotate(&current, now).refresh_token.clone();
        }
        assert_eq!(table.families.len(), 1);
        assert_eq!(table.families.pruned(), 0);
        assert_eq!(
            table.refresh(&first.refresh_token, now),
            rejected(RejectReason::Reuse, true)
        );
    }

    #[test]
    fn revoked_families_are_pruned_after_the_retention_and_stay_invalid() {
        let table = Table::new(limits());
        let families = &table.families;
        let start = Instant::now();
        let pair = table.login(start);
        let fam = table.family_of(&pair.access_token);
        families.revoke(&pair.refresh_token, start);
        let later = start + Duration::from_secs(10);
        table.login(later);
        assert_eq!(families.pruned(), 1);
        assert!(!families.is_active(&fam));
        assert_eq!(families.revoke(&pair.refresh_token, later), None);
    }

    #[test]
    fn pruning_off_keeps_everything() {
        let table = Table::new(Limits {
            prune: false,
            ..limits()
        });
        let start = Instant::now();
        for _ in 0..10 {
            table.login(start);
        }
        table.login(start + 10 * MINUTE);
        assert_eq!(table.families.len(), 11);
        assert_eq!(table.families.pruned(), 0);
    }

    #[test]
    fn a_table_full_of_live_families_refuses_logins_until_one_dies() {
        let table = Table::new(Limits {
            max_families: 3,
            ..limits()
        });
        let families = &table.families;
        let start = Instant::now();
        let pairs: Vec<_> = (0..3)
            .map(|i| table.login(start + Duration::from_secs(i)))
            .collect();
        // Full of live families: refused, with the time until the first one dies (its refresh
        // token expires 60 s after its login).
        let at = start + Duration::from_secs(30);
        assert_eq!(
            table.login_as(Contract::Json, at, None),
            LoginOutcome::Full {
                retry_after: Some(Duration::from_secs(30))
            }
        );
        // The live families are untouched and keep working.
        let next = table.rotate(&pairs[2].refresh_token, at);
        // A logout frees a place at once, whatever the retention.
        families.revoke(&pairs[0].refresh_token, at);
        table.login(at);
        assert_eq!(families.len(), 3);
        assert_eq!(families.pruned(), 1);
        // Full again; once the second family's refresh token expired (and its access token),
        // the next login evicts it, within its retention.
        assert!(matches!(
            table.login_as(Contract::Json, at, None),
            LoginOutcome::Full { .. }
        ));
        let dead = start + Duration::from_secs(61);
        table.login(dead);
        assert_eq!(families.len(), 3);
        assert_eq!(
            table.refresh(&pairs[1].refresh_token, dead),
            rejected(RejectReason::Unknown, false)
        );
        // The refreshed family was never evicted, and reuse is still detected in it.
        table.rotate(&next.refresh_token, dead);
        assert_eq!(
            table.refresh(&pairs[2].refresh_token, dead),
            rejected(RejectReason::Reuse, true)
        );
    }

    #[test]
    fn with_pruning_off_a_full_table_has_no_retry_after() {
        let table = Table::new(Limits {
            max_families: 1,
            prune: false,
            ..limits()
        });
        let start = Instant::now();
        let pair = table.login(start);
        table.families.revoke(&pair.refresh_token, start);
        assert_eq!(
            table.login_as(Contract::Json, start + MINUTE, None),
            LoginOutcome::Full { retry_after: None }
        );
    }

    #[test]
    fn the_grace_pair_is_dropped_once_its_window_passed() {
        let table = Table::new(Limits {
            grace: Duration::from_secs(1),
            ..limits()
        });
        let families = &table.families;
        let start = Instant::now();
        let first = table.login(start);
        table.rotate(&first.refresh_token, start);
        assert!(
            families
                .read()
                .families
                .values()
                .all(|f| f.last_rotation.is_some())
        );
        // The next sweep (any login after the window) drops it.
        table.login(start + Duration::from_secs(11));
        assert!(
            families
                .read()
                .families
                .values()
                .all(|f| f.last_rotation.is_none())
        );
    }

    #[test]
    fn deadlines_never_overflow() {
        let table = Table::new(Limits {
            refresh_ttl: Duration::MAX,
            retention: Duration::MAX,
            ..limits()
        });
        let now = Instant::now();
        let pair = table.login(now);
        table.rotate(&pair.refresh_token, now);
        table.families.revoke(&pair.refresh_token, now);
        table.login(now + Duration::from_secs(3600));
        assert_eq!(table.families.len(), 2);
    }

    /// Refuses `token` with every key but the family's (no proof, or another key's).
    fn assert_refused_without_its_key(table: &Table, token: &str, now: Instant) {
        for wrong in [None, Some("key-b")] {
            assert_eq!(
                table.refresh_as(token, Contract::OAuth2, now, wrong),
                rejected(RejectReason::WrongKey, false)
            );
        }
    }

    #[test]
    fn a_bound_family_answers_only_its_key_and_other_keys_touch_nothing() {
        let table = Table::new(limits());
        let now = Instant::now();
        let first = issued(table.login_as(Contract::OAuth2, now, Some("key-a")));
        assert!(first.dpop_bound);
        assert_refused_without_its_key(&table, &first.refresh_token, now);
        let second =
            rotated(table.refresh_as(&first.refresh_token, Contract::OAuth2, now, Some("key-a")));
        assert!(second.dpop_bound);
        let crate::tokens::AccessCheck::Valid(claims) = table
            .minter
            .check(&second.access_token, crate::tokens::unix_now())
        else {
            panic!("a valid token");
        };
        assert_eq!(claims.cnf.unwrap().jkt, "key-a");
        // An old token with another key is not reuse: the family lives on.
        assert_eq!(
            table.refresh_as(&first.refresh_token, Contract::OAuth2, now, Some("key-b")),
            rejected(RejectReason::WrongKey, false)
        );
        assert!(table.families.is_active(&claims.fam));
        // With its key it is reuse, as always.
        assert_eq!(
            table.refresh_as(&first.refresh_token, Contract::OAuth2, now, Some("key-a")),
            rejected(RejectReason::Reuse, true)
        );
    }

    #[test]
    fn an_unbound_family_is_bound_by_its_first_refresh_with_a_proof() {
        let table = Table::new(limits());
        let now = Instant::now();
        let first = table.login(now);
        assert!(!first.dpop_bound);
        let second =
            rotated(table.refresh_as(&first.refresh_token, Contract::OAuth2, now, Some("key-a")));
        assert!(second.dpop_bound);
        // The new refresh token is bound to that key.
        assert_refused_without_its_key(&table, &second.refresh_token, now);
        let third =
            rotated(table.refresh_as(&second.refresh_token, Contract::OAuth2, now, Some("key-a")));
        assert!(third.dpop_bound);
    }
}
