//! Refresh tokens that carry their own family and generation, signed with a per-process key.
//!
//! A token is `base64url(family ‖ generation ‖ HMAC-SHA256(key, label ‖ family ‖ generation))`:
//! 12 + 8 + 32 bytes, 70 characters. The family id is 96 random bits, the key 512 random bits
//! drawn at start, so a token cannot be guessed or forged, and nothing about a token needs to be
//! remembered once it is issued.
//!
//! Why not random opaque tokens kept in a table: reuse detection must recognise *every* token a
//! family ever had, so a table of issued tokens grows with every refresh for as long as the
//! family lives (one entry per rotation, 24 h of rotations with the default TTLs). A signed
//! (family, generation) answers "was this issued by us, and is it older than the family's
//! current token?" from the family's record alone: memory per family is constant, whatever the
//! number of refreshes, and reuse of any earlier token is still detected.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::digest::KeyInit;
use hmac::{Hmac, Mac as _};
use rand::RngCore as _;
use sha2::Sha256;

/// Bytes of a family id.
const FAMILY_BYTES: usize = 12;
/// Bytes of the generation.
const GENERATION_BYTES: usize = 8;
/// Bytes of the MAC (full HMAC-SHA256).
const TAG_BYTES: usize = 32;
/// Bytes of a decoded token.
const TOKEN_BYTES: usize = FAMILY_BYTES + GENERATION_BYTES + TAG_BYTES;
/// Characters of an encoded token (base64url without padding).
pub(crate) const TOKEN_CHARS: usize = (TOKEN_BYTES * 8).div_ceil(6);
/// Domain separation: these MACs sign refresh tokens and nothing else.
const LABEL: &[u8] = b"tokenkeeper refresh token v1\0";

/// The id of a refresh-token family (a session): 96 random bits. In access tokens it travels
/// as the `fam` claim, base64url (16 characters).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct FamilyId([u8; FAMILY_BYTES]);

impl FamilyId {
    /// A new random id.
    pub(crate) fn random() -> Self {
        let mut bytes = [0u8; FAMILY_BYTES];
        rand::rng().fill_bytes(&mut bytes);
        Self(bytes)
    }

    /// The `fam` claim form.
    pub(crate) fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.0)
    }

    /// Reads a `fam` claim; `None` when it is not one of ours.
    pub(crate) fn decode(text: &str) -> Option<Self> {
        let bytes = URL_SAFE_NO_PAD.decode(text).ok()?;
        Some(Self(bytes.try_into().ok()?))
    }
}

impl fmt::Debug for FamilyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Not a secret (it is in every access token of the family), and handy in logs.
        write!(f, "FamilyId({})", self.encode())
    }
}

/// Issues and opens refresh tokens with one key.
pub(crate) struct RefreshTokens {
    /// Keyed once (a random key of one SHA-256 block, HMAC's natural size, so keying cannot
    /// fail), cloned for each token.
    keyed: Hmac<Sha256>,
}

/// Bytes of the MAC key.
const KEY_BYTES: usize = 64;

impl fmt::Debug for RefreshTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RefreshTokens(<key redacted>)")
    }
}

impl RefreshTokens {
    /// A codec with a fresh random key: tokens from an earlier process are unknown here.
    pub(crate) fn random() -> Self {
        let mut key = [0u8; KEY_BYTES];
        rand::rng().fill_bytes(&mut key);
        Self {
            keyed: <Hmac<Sha256> as KeyInit>::new(&key.into()),
        }
    }

    fn mac(&self, family: &FamilyId, generation: u64) -> Hmac<Sha256> {
        let mut mac = self.keyed.clone();
        mac.update(LABEL);
        mac.update(&family.0);
        mac.update(&generation.to_be_bytes());
        mac
    }

    /// The refresh token of `family` at `generation`.
    pub(crate) fn issue(&self, family: &FamilyId, generation: u64) -> String {
        let tag = self.mac(family, generation).finalize().into_bytes();
        let mut bytes = [0u8; TOKEN_BYTES];
        bytes[..FAMILY_BYTES].copy_from_slice(&family.0);
        bytes[FAMILY_BYTES..FAMILY_BYTES + GENERATION_BYTES]
            .copy_from_slice(&generation.to_be_bytes());
        bytes[FAMILY_BYTES + GENERATION_BYTES..].copy_from_slice(&tag);
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// The family and generation of a token this codec issued; `None` for anything else
    /// (garbage, another key, a tampered field). The MAC is compared in constant time.
    pub(crate) fn open(&self, token: &str) -> Option<(FamilyId, u64)> {
        if token.len() != TOKEN_CHARS {
            return None;
        }
        let bytes = URL_SAFE_NO_PAD.decode(token).ok()?;
        let (family, rest) = bytes.split_first_chunk::<FAMILY_BYTES>()?;
        let (generation, tag) = rest.split_first_chunk::<GENERATION_BYTES>()?;
        let family = FamilyId(*family);
        let generation = u64::from_be_bytes(*generation);
        self.mac(&family, generation).verify_slice(tag).ok()?;
        Some((family, generation))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_are_url_safe() {
        let codec = RefreshTokens::random();
        let family = FamilyId::random();
        let token = codec.issue(&family, 7);
        assert_eq!(token.len(), TOKEN_CHARS);
        assert_eq!(TOKEN_CHARS, 70);
        assert!(
            token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
        assert_eq!(codec.open(&token), Some((family, 7)));
        assert_ne!(codec.issue(&family, 8), token);
        assert_ne!(codec.issue(&FamilyId::random(), 7), token);
    }

    #[test]
    fn forged_tampered_and_foreign_tokens_do_not_open() {
        let codec = RefreshTokens::random();
        let family = FamilyId::random();
        let token = codec.issue(&family, 3);
        // Another process's key.
        assert_eq!(RefreshTokens::random().open(&token), None);
        // Every single-character change is caught.
        for at in 0..token.len() {
            let mut bytes = token.clone().into_bytes();
            bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
            let tampered = String::from_utf8(bytes).unwrap();
            assert_eq!(codec.open(&tampered), None, "changed at {at}");
        }
        for garbage in [
            "",
            "x",
            &"A".repeat(TOKEN_CHARS),
            &token[1..],
            "é".repeat(35).as_str(),
        ] {
            assert_eq!(codec.open(garbage), None);
        }
    }

    #[test]
    fn family_ids_round_trip_as_claims() {
        let family = FamilyId::random();
        let claim = family.encode();
        assert_eq!(claim.len(), 16);
        assert_eq!(FamilyId::decode(&claim), Some(family));
        assert_eq!(FamilyId::decode("short"), None);
        assert_eq!(FamilyId::decode("not base64 at all!"), None);
    }
}
