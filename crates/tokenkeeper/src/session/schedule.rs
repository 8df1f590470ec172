//! When to refresh ahead of expiry: the soft and hard deadlines of a token.

use crate::token::TokenSet;
use std::time::{Duration, Instant, SystemTime};

/// How a session decides to refresh.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum RefreshMode {
    /// Refresh only when the API refuses the token (a 401). Expiry times are ignored.
    Reactive,
    /// Refresh ahead of expiry, and still react to 401s (the default).
    Proactive(Proactive),
}

impl Default for RefreshMode {
    fn default() -> Self {
        RefreshMode::Proactive(Proactive::default())
    }
}

/// Tuning of [`RefreshMode::Proactive`].
///
/// Past the *soft* deadline the current token is still attached and one background refresh
/// starts; past the *hard* deadline requests wait for the refresh instead of sending a token
/// that is about to expire.
#[derive(Debug, Clone, PartialEq)]
pub struct Proactive {
    /// Fraction of the lifetime after which a background refresh starts (default 0.75).
    pub refresh_at: f64,
    /// Never refresh more than this long before expiry (default 5 minutes), so long-lived
    /// tokens are not refreshed hours early.
    pub max_ahead: Duration,
    /// Up to this fraction of the lifetime is subtracted at random from the soft deadline
    /// (default 0.05), so many clients issued tokens at once do not refresh in lock-step.
    pub jitter: f64,
    /// Requests wait for the refresh this long before the expiry (default: 2 % of the lifetime,
    /// at most 1 s), so a token does not expire on its way to the server.
    pub hard_margin_max: Duration,
}

impl Default for Proactive {
    fn default() -> Self {
        Self {
            refresh_at: 0.75,
            max_ahead: Duration::from_secs(300),
            jitter: 0.05,
            hard_margin_max: Duration::from_secs(1),
        }
    }
}

/// Lifetimes shorter than this are not scheduled: a server that answers `expires_in: 0` (or a
/// JWT whose `exp` is at `iat`) would otherwise make every request wait for a refresh that
/// returns another already-expired token. Such tokens are refreshed on 401s only.
const MIN_SCHEDULED_LIFETIME: Duration = Duration::from_millis(50);

/// The deadlines of one token, on the monotonic clock and on the wall clock.
///
/// Both, because each misses something: `Instant` (CLOCK_MONOTONIC on Linux) stops while a
/// laptop is suspended, so after a resume a token can be long expired while the monotonic
/// deadline still lies ahead; the wall clock can be stepped by NTP. A deadline has passed when
/// either clock says so.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Schedule {
    soft: Option<Instant>,
    hard: Option<Instant>,
    soft_wall: Option<SystemTime>,
    hard_wall: Option<SystemTime>,
}

impl Schedule {
    /// Converts the token's wall-clock expiry to the monotonic clock once, here, so the hot path
    /// compares `Instant`s, plus one wall-clock comparison for suspended machines.
    pub(crate) fn for_tokens(mode: &RefreshMode, tokens: &TokenSet) -> Self {
        let RefreshMode::Proactive(config) = mode else {
            return Self::default();
        };
        let Some(expires_at) = tokens.expires_at() else {
            return Self::default();
        };
        let now = Instant::now();
        let wall_now = SystemTime::now();
        let remaining = expires_at
            .duration_since(wall_now)
            .unwrap_or(Duration::ZERO);
        let expiry = now + remaining;
        let lifetime = tokens.lifetime().unwrap_or(remaining);
        if lifetime < MIN_SCHEDULED_LIFETIME {
            return Self::default();
        }

        let ahead = lifetime
            .mul_f64((1.0 - config.refresh_at).clamp(0.0, 1.0))
            .min(config.max_ahead);
        let jitter = lifetime.mul_f64(config.jitter.clamp(0.0, 0.5) * rand::random::<f64>());
        let margin = lifetime.mul_f64(0.02).min(config.hard_margin_max);
        let soft_before = ahead + jitter;
        Self {
            soft: Some(expiry.checked_sub(soft_before).unwrap_or(now)),
            hard: Some(expiry.checked_sub(margin).unwrap_or(now)),
            soft_wall: expires_at.checked_sub(soft_before),
            hard_wall: expires_at.checked_sub(margin),
        }
    }

    /// Whether the soft and the hard deadline have passed, by either clock.
    pub(crate) fn deadlines_passed(&self) -> (bool, bool) {
        let Some(hard) = self.hard else {
            return (false, false);
        };
        // One reading of each clock serves every deadline (this runs on every request).
        let now = Instant::now();
        if now >= hard {
            return (true, true);
        }
        let wall_now = SystemTime::now();
        let past_hard = self.hard_wall.is_some_and(|d| wall_now >= d);
        let past_soft = past_hard
            || self.soft.is_some_and(|soft| now >= soft)
            || self.soft_wall.is_some_and(|d| wall_now >= d);
        (past_soft, past_hard)
    }

    fn wall_passed(&self, deadline: Option<SystemTime>) -> bool {
        deadline.is_some_and(|deadline| SystemTime::now() >= deadline)
    }

    /// For a refreshed token that expires no later than the one it replaced (a server or proxy
    /// that caches tokens): no proactive refresh for it, which would only return the same token
    /// again; and if it is already past its hard deadline, no deadline at all (401s decide).
    pub(crate) fn without_proactive(self) -> Self {
        let (_, past_hard) = self.deadlines_passed();
        if past_hard {
            return Self::default();
        }
        Self {
            soft: None,
            soft_wall: None,
            ..self
        }
    }

    /// The hard deadline by the wall clock, if the token has one (for the expiry gauge).
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    pub(crate) fn hard_deadline_wall(&self) -> Option<SystemTime> {
        self.hard_wall
    }

    pub(crate) fn is_past_hard(&self, now: Instant) -> bool {
        self.hard.is_some_and(|hard| now >= hard) || self.wall_passed(self.hard_wall)
    }

    #[cfg(test)]
    fn is_past_soft(&self, now: Instant) -> bool {
        self.soft.is_some_and(|soft| now >= soft)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_follow_the_lifetime() {
        let tokens = TokenSet::new("a").with_expires_in(Duration::from_secs(100));
        let mode = RefreshMode::Proactive(Proactive {
            jitter: 0.0,
            ..Proactive::default()
        });
        let schedule = Schedule::for_tokens(&mode, &tokens);
        let now = Instant::now();
        assert!(!schedule.is_past_soft(now + Duration::from_secs(74)));
        assert!(schedule.is_past_soft(now + Duration::from_secs(76)));
        assert!(!schedule.is_past_hard(now + Duration::from_secs(97)));
        assert!(schedule.is_past_hard(now + Duration::from_secs(99)));
    }

    #[test]
    fn long_lifetimes_refresh_at_most_max_ahead_early() {
        let tokens = TokenSet::new("a").with_expires_in(Duration::from_secs(24 * 3600));
        let schedule = Schedule::for_tokens(&RefreshMode::default(), &tokens);
        let now = Instant::now();
        assert!(!schedule.is_past_soft(now + Duration::from_secs(24 * 3600 - 301 - 4400)));
        assert!(schedule.is_past_soft(now + Duration::from_secs(24 * 3600 - 299)));
    }

    #[test]
    fn zero_lifetimes_are_not_scheduled() {
        let tokens = TokenSet::new("a").with_expires_in(Duration::ZERO);
        let schedule = Schedule::for_tokens(&RefreshMode::default(), &tokens);
        assert!(!schedule.is_past_hard(Instant::now() + Duration::from_secs(3600)));
    }

    #[test]
    fn the_wall_clock_catches_a_suspended_monotonic_clock() {
        // A token received long ago by the wall clock whose monotonic deadlines still lie
        // ahead: what a machine sees after a suspend.
        let tokens = TokenSet::new("a").with_expires_in(Duration::from_secs(100));
        let mut schedule = Schedule::for_tokens(&RefreshMode::default(), &tokens);
        assert_eq!(schedule.deadlines_passed(), (false, false));
        let long_ago = SystemTime::now() - Duration::from_secs(1000);
        schedule.soft_wall = Some(long_ago);
        assert_eq!(schedule.deadlines_passed(), (true, false));
        schedule.hard_wall = Some(long_ago);
        assert_eq!(schedule.deadlines_passed(), (true, true));
        assert!(schedule.is_past_hard(Instant::now()));
    }

    #[test]
    fn a_token_that_does_not_outlive_its_predecessor_is_not_renewed_early() {
        let tokens = TokenSet::new("a").with_expires_in(Duration::from_secs(100));
        let schedule = Schedule::for_tokens(&RefreshMode::default(), &tokens).without_proactive();
        let later = Instant::now() + Duration::from_secs(90);
        assert!(!schedule.is_past_soft(later));
        assert!(schedule.is_past_hard(Instant::now() + Duration::from_secs(100)));
        let expired = TokenSet::new("a").with_expires_in(Duration::from_millis(60));
        let mut schedule = Schedule::for_tokens(&RefreshMode::default(), &expired);
        schedule.hard_wall = Some(SystemTime::now() - Duration::from_secs(1));
        assert_eq!(schedule.without_proactive(), Schedule::default());
    }

    #[test]
    fn reactive_mode_and_unknown_expiry_have_no_deadlines() {
        let with_expiry = TokenSet::new("a").with_expires_in(Duration::from_secs(1));
        let far = Instant::now() + Duration::from_secs(1_000_000);
        let reactive = Schedule::for_tokens(&RefreshMode::Reactive, &with_expiry);
        let unknown = Schedule::for_tokens(&RefreshMode::default(), &TokenSet::new("a"));
        for schedule in [reactive, unknown] {
            assert!(!schedule.is_past_soft(far) && !schedule.is_past_hard(far));
        }
    }
}
