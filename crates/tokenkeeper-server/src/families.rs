//! Refresh-token families: the rotation / reuse-detection state machine.
//!
//! A login creates a family (a session) with one current refresh token. Each
//! refresh of the current token rotates it: a new pair is issued and the old
//! token becomes *rotated*. Presenting a rotated token again is reuse
//! (RFC 9700 §4.14.2): the whole family is revoked, so neither its refresh
//! tokens nor its access tokens are accepted any more. With a grace period,
//! the immediately previous token is accepted once more within the grace
//! window and answers with the very pair its rotation produced.
//!
//! Every decision takes the table's write lock, so concurrent refreshes of one
//! family are decided one after the other: exactly one rotates. The protected
//! API only takes the read lock to ask whether a family is still active.
//!
//! Decision order for a presented refresh token:
//! 1. not in the table → `unknown`;
//! 2. the family's current token: family revoked → `revoked`; past its
//!    refresh TTL → `expired`; otherwise rotate;
//! 3. a rotated token: the immediately previous one, within the grace period,
//!    not yet replayed, family not revoked → grace (same pair); otherwise
//!    `reuse`, which revokes the family if it was not already revoked.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use crate::tokens::{IssuedPair, Style, TokenMinter, new_refresh_token, random_token};

/// Why a refresh was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum RejectReason {
    /// An already-rotated token was presented.
    Reuse,
    /// The token was never issued here.
    Unknown,
    /// The token outlived the refresh TTL.
    Expired,
    /// The token's family was revoked.
    Revoked,
    /// The request carried no usable token.
    Malformed,
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

/// A session.
#[derive(Debug)]
struct Family {
    sub: Arc<str>,
    revoked: bool,
    /// The refresh token that may be rotated next.
    current: Arc<str>,
}

#[derive(Debug)]
enum TokenState {
    Current,
    Rotated {
        at: Instant,
        successor: Arc<IssuedPair>,
        grace_used: bool,
    },
}

#[derive(Debug)]
struct TokenEntry {
    family: Arc<str>,
    expires_at: Instant,
    state: TokenState,
}

#[derive(Debug, Default)]
struct Inner {
    families: HashMap<Arc<str>, Family>,
    tokens: HashMap<Arc<str>, TokenEntry>,
}

/// The family table.
#[derive(Debug)]
pub(crate) struct Families {
    inner: RwLock<Inner>,
    refresh_ttl: Duration,
    grace: Duration,
}

impl Families {
    /// An empty table.
    pub(crate) fn new(refresh_ttl: Duration, grace: Duration) -> Self {
        Self {
            inner: RwLock::new(Inner::default()),
            refresh_ttl,
            grace,
        }
    }

    fn read(&self) -> RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// Starts a family for `sub` and issues its first pair in `style`.
    pub(crate) fn login(
        &self,
        sub: &str,
        style: Style,
        minter: &TokenMinter,
        now: Instant,
    ) -> Result<IssuedPair, jsonwebtoken::errors::Error> {
        let family: Arc<str> = random_token(12).into();
        let access_token = minter.mint_access(sub, &family, style)?;
        let refresh: Arc<str> = new_refresh_token().into();
        let mut inner = self.write();
        inner.tokens.insert(
            refresh.clone(),
            TokenEntry {
                family: family.clone(),
                expires_at: now + self.refresh_ttl,
                state: TokenState::Current,
            },
        );
        inner.families.insert(
            family,
            Family {
                sub: sub.into(),
                revoked: false,
                current: refresh.clone(),
            },
        );
        Ok(IssuedPair {
            access_token,
            refresh_token: refresh.to_string(),
        })
    }

    /// Decides a refresh with `token`; a rotation issues tokens in `style`.
    pub(crate) fn refresh(
        &self,
        token: &str,
        style: Style,
        minter: &TokenMinter,
        now: Instant,
    ) -> Result<RefreshOutcome, jsonwebtoken::errors::Error> {
        let mut guard = self.write();
        let inner = &mut *guard;
        let reject = |reason| RefreshOutcome::Rejected {
            reason,
            revoked_family: false,
        };
        let Some(entry) = inner.tokens.get_mut(token) else {
            return Ok(reject(RejectReason::Unknown));
        };
        let Some(family) = inner.families.get_mut(&entry.family) else {
            // Cannot happen (families are only forgotten all at once), but an
            // orphan token is as good as unknown.
            return Ok(reject(RejectReason::Unknown));
        };
        match &mut entry.state {
            TokenState::Current => {
                if family.revoked {
                    return Ok(reject(RejectReason::Revoked));
                }
                if now >= entry.expires_at {
                    return Ok(reject(RejectReason::Expired));
                }
                let access_token = minter.mint_access(&family.sub, &entry.family, style)?;
                let refresh: Arc<str> = new_refresh_token().into();
                let pair = Arc::new(IssuedPair {
                    access_token,
                    refresh_token: refresh.to_string(),
                });
                entry.state = TokenState::Rotated {
                    at: now,
                    successor: pair.clone(),
                    grace_used: false,
                };
                family.current = refresh.clone();
                let family_id = entry.family.clone();
                inner.tokens.insert(
                    refresh,
                    TokenEntry {
                        family: family_id,
                        expires_at: now + self.refresh_ttl,
                        state: TokenState::Current,
                    },
                );
                Ok(RefreshOutcome::Rotated(pair))
            }
            TokenState::Rotated {
                at,
                successor,
                grace_used,
            } => {
                let immediately_previous = *successor.refresh_token == *family.current;
                let within_grace = now.saturating_duration_since(*at) < self.grace;
                if !family.revoked && immediately_previous && within_grace && !*grace_used {
                    *grace_used = true;
                    return Ok(RefreshOutcome::Grace(successor.clone()));
                }
                let revoked_family = !family.revoked;
                family.revoked = true;
                Ok(RefreshOutcome::Rejected {
                    reason: RejectReason::Reuse,
                    revoked_family,
                })
            }
        }
    }

    /// True when `family` exists and is not revoked. Read lock only.
    pub(crate) fn is_active(&self, family: &str) -> bool {
        self.read()
            .families
            .get(family)
            .is_some_and(|family| !family.revoked)
    }

    /// Revokes the family of `token` (logout). `None` when the token is not
    /// known; `Some(true)` when this call revoked the family.
    pub(crate) fn revoke(&self, token: &str) -> Option<bool> {
        let mut guard = self.write();
        let inner = &mut *guard;
        let entry = inner.tokens.get(token)?;
        let family = inner.families.get_mut(&entry.family)?;
        let newly = !family.revoked;
        family.revoked = true;
        Some(newly)
    }

    /// Forgets every family and token.
    pub(crate) fn clear(&self) {
        *self.write() = Inner::default();
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;

    fn setup(grace: Duration) -> (Families, TokenMinter) {
        (
            Families::new(Duration::from_secs(60), grace),
            TokenMinter::new(b"secret", Duration::from_secs(5)),
        )
    }

    fn rotated(outcome: RefreshOutcome) -> Arc<IssuedPair> {
        match outcome {
            RefreshOutcome::Rotated(pair) => pair,
            other => panic!("expected a rotation, got {other:?}"),
        }
    }

    fn family_of(minter: &TokenMinter, access: &str) -> String {
        match minter.check(access, crate::tokens::unix_now()) {
            crate::tokens::AccessCheck::Valid(claims) => claims.fam,
            other => panic!("expected a valid token, got {other:?}"),
        }
    }

    #[test]
    fn rotation_then_reuse_revokes_the_family() {
        let (families, minter) = setup(Duration::ZERO);
        let now = Instant::now();
        let first = families.login("demo", Style::Json, &minter, now).unwrap();
        let fam = family_of(&minter, &first.access_token);
        assert!(families.is_active(&fam));

        let second = rotated(
            families
                .refresh(&first.refresh_token, Style::Json, &minter, now)
                .unwrap(),
        );
        assert_eq!(family_of(&minter, &second.access_token), fam);

        let reuse = families
            .refresh(&first.refresh_token, Style::Json, &minter, now)
            .unwrap();
        assert_eq!(
            reuse,
            RefreshOutcome::Rejected {
                reason: RejectReason::Reuse,
                revoked_family: true
            }
        );
        assert!(!families.is_active(&fam));
        // Reusing again is still reuse, but the family is revoked only once.
        assert_eq!(
            families
                .refresh(&first.refresh_token, Style::Json, &minter, now)
                .unwrap(),
            RefreshOutcome::Rejected {
                reason: RejectReason::Reuse,
                revoked_family: false
            }
        );
        // The current token of the revoked family is refused as revoked.
        assert_eq!(
            families
                .refresh(&second.refresh_token, Style::Json, &minter, now)
                .unwrap(),
            RefreshOutcome::Rejected {
                reason: RejectReason::Revoked,
                revoked_family: false
            }
        );
    }

    #[test]
    fn grace_returns_the_same_pair_once() {
        let (families, minter) = setup(Duration::from_secs(10));
        let now = Instant::now();
        let first = families.login("demo", Style::OAuth2, &minter, now).unwrap();
        let second = rotated(
            families
                .refresh(&first.refresh_token, Style::OAuth2, &minter, now)
                .unwrap(),
        );
        let replay = families
            .refresh(
                &first.refresh_token,
                Style::OAuth2,
                &minter,
                now + Duration::from_secs(1),
            )
            .unwrap();
        assert_eq!(replay, RefreshOutcome::Grace(second.clone()));
        let again = families
            .refresh(
                &first.refresh_token,
                Style::OAuth2,
                &minter,
                now + Duration::from_secs(2),
            )
            .unwrap();
        assert!(matches!(
            again,
            RefreshOutcome::Rejected {
                reason: RejectReason::Reuse,
                revoked_family: true
            }
        ));
    }

    #[test]
    fn grace_ends_after_the_window_and_after_the_next_rotation() {
        let (families, minter) = setup(Duration::from_secs(10));
        let now = Instant::now();
        let first = families.login("demo", Style::Json, &minter, now).unwrap();
        families
            .refresh(&first.refresh_token, Style::Json, &minter, now)
            .unwrap();
        let late = families
            .refresh(
                &first.refresh_token,
                Style::Json,
                &minter,
                now + Duration::from_secs(10),
            )
            .unwrap();
        assert!(matches!(
            late,
            RefreshOutcome::Rejected {
                reason: RejectReason::Reuse,
                ..
            }
        ));

        let a = families.login("demo", Style::Json, &minter, now).unwrap();
        let b = rotated(
            families
                .refresh(&a.refresh_token, Style::Json, &minter, now)
                .unwrap(),
        );
        rotated(
            families
                .refresh(&b.refresh_token, Style::Json, &minter, now)
                .unwrap(),
        );
        // `a` is two rotations back: not the immediately previous token.
        assert!(matches!(
            families
                .refresh(&a.refresh_token, Style::Json, &minter, now)
                .unwrap(),
            RefreshOutcome::Rejected {
                reason: RejectReason::Reuse,
                ..
            }
        ));
    }

    #[test]
    fn expired_unknown_and_cleared() {
        let families = Families::new(Duration::from_secs(1), Duration::ZERO);
        let minter = TokenMinter::new(b"secret", Duration::from_secs(5));
        let now = Instant::now();
        let pair = families.login("demo", Style::Json, &minter, now).unwrap();
        assert_eq!(
            families
                .refresh(
                    &pair.refresh_token,
                    Style::Json,
                    &minter,
                    now + Duration::from_secs(1)
                )
                .unwrap(),
            RefreshOutcome::Rejected {
                reason: RejectReason::Expired,
                revoked_family: false
            }
        );
        assert_eq!(
            families.refresh("nope", Style::Json, &minter, now).unwrap(),
            RefreshOutcome::Rejected {
                reason: RejectReason::Unknown,
                revoked_family: false
            }
        );
        let fam = family_of(&minter, &pair.access_token);
        families.clear();
        assert!(!families.is_active(&fam));
        assert_eq!(
            families
                .refresh(&pair.refresh_token, Style::Json, &minter, now)
                .unwrap(),
            RefreshOutcome::Rejected {
                reason: RejectReason::Unknown,
                revoked_family: false
            }
        );
    }

    #[test]
    fn logout_revokes() {
        let (families, minter) = setup(Duration::ZERO);
        let now = Instant::now();
        let pair = families.login("demo", Style::Json, &minter, now).unwrap();
        assert_eq!(families.revoke(&pair.refresh_token), Some(true));
        assert_eq!(families.revoke(&pair.refresh_token), Some(false));
        assert_eq!(families.revoke("nope"), None);
        assert!(!families.is_active(&family_of(&minter, &pair.access_token)));
    }
}
