//! Server-issued DPoP nonces (RFC 9449 §8, §9), stateless: a nonce is an epoch number and its
//! HMAC, so checking one needs no table. Epochs advance every `lifetime`; the current and the
//! previous epoch's nonces are accepted, so a client that just learnt a nonce is not
//! challenged again right after a rotation, and no nonce lives longer than two lifetimes.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::digest::KeyInit;
use hmac::{Hmac, Mac as _};
use rand::RngCore as _;
use sha2::Sha256;

/// Bytes of MAC kept in a nonce: 128 bits cannot be guessed.
const MAC_BYTES: usize = 16;

/// Issues and checks nonces.
pub(crate) struct Nonces {
    /// Keyed once with a random key of one SHA-256 block (keying cannot fail), cloned per use.
    keyed: Hmac<Sha256>,
    lifetime: Duration,
    start: Instant,
    /// Added to the time-based epoch by [`Nonces::rotate`].
    skipped: AtomicU64,
}

impl std::fmt::Debug for Nonces {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Nonces")
            .field("lifetime", &self.lifetime)
            .finish_non_exhaustive()
    }
}

impl Nonces {
    pub(crate) fn new(lifetime: Duration) -> Self {
        let mut key = [0u8; 64];
        rand::rng().fill_bytes(&mut key);
        Self {
            keyed: <Hmac<Sha256> as KeyInit>::new(&key.into()),
            lifetime,
            start: Instant::now(),
            skipped: AtomicU64::new(0),
        }
    }

    fn epoch(&self, now: Instant) -> u64 {
        let elapsed = now.saturating_duration_since(self.start).as_nanos();
        let lifetime = self.lifetime.as_nanos().max(1);
        let by_time = u64::try_from(elapsed / lifetime).unwrap_or(u64::MAX);
        by_time.saturating_add(self.skipped.load(Ordering::Relaxed))
    }

    fn mac(&self, epoch: u64) -> [u8; MAC_BYTES] {
        let mut mac = self.keyed.clone();
        mac.update(&epoch.to_be_bytes());
        let full = mac.finalize().into_bytes();
        let mut out = [0u8; MAC_BYTES];
        out.copy_from_slice(&full[..MAC_BYTES]);
        out
    }

    fn encode(&self, epoch: u64) -> String {
        let mut bytes = [0u8; 8 + MAC_BYTES];
        bytes[..8].copy_from_slice(&epoch.to_be_bytes());
        bytes[8..].copy_from_slice(&self.mac(epoch));
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// The nonce to hand out now.
    pub(crate) fn current(&self, now: Instant) -> String {
        self.encode(self.epoch(now))
    }

    /// True when `nonce` is the current or the previous epoch's nonce.
    pub(crate) fn is_fresh(&self, nonce: &str, now: Instant) -> bool {
        let Ok(bytes) = URL_SAFE_NO_PAD.decode(nonce) else {
            return false;
        };
        let Ok(bytes) = <[u8; 8 + MAC_BYTES]>::try_from(bytes.as_slice()) else {
            return false;
        };
        let mut epoch = [0u8; 8];
        epoch.copy_from_slice(&bytes[..8]);
        let epoch = u64::from_be_bytes(epoch);
        let current = self.epoch(now);
        if epoch != current && epoch.checked_add(1) != Some(current) {
            return false;
        }
        // Not constant-time: the MAC of an epoch is handed out to anyone who asks, so there is
        // nothing to learn from timing here.
        bytes[8..] == self.mac(epoch)
    }

    /// Moves two epochs ahead: every nonce handed out so far is stale from now on.
    pub(crate) fn rotate(&self) {
        self.skipped.fetch_add(2, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn current_and_previous_are_fresh_older_and_forged_are_not() {
        let nonces = Nonces::new(Duration::from_secs(10));
        let t0 = nonces.start;
        let first = nonces.current(t0);
        assert!(nonces.is_fresh(&first, t0));
        assert!(nonces.is_fresh(&first, t0 + Duration::from_secs(15)));
        assert!(!nonces.is_fresh(&first, t0 + Duration::from_secs(20)));
        let other = Nonces::new(Duration::from_secs(10));
        assert!(!other.is_fresh(&first, t0));
        assert!(!nonces.is_fresh("", t0));
        assert!(!nonces.is_fresh("not-a-nonce", t0));
    }

    #[test]
    fn rotate_makes_every_handed_out_nonce_stale() {
        let nonces = Nonces::new(Duration::from_secs(3600));
        let now = Instant::now();
        let before = nonces.current(now);
        nonces.rotate();
        assert!(!nonces.is_fresh(&before, now));
        let after = nonces.current(now);
        assert_ne!(before, after);
        assert!(nonces.is_fresh(&after, now));
    }
}
