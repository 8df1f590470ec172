//! The serialized form of [`StoredTokens`] shared by the file and Redis stores.
//!
//! ```json
//! {"version":1,"generation":7,"access_token":"…","refresh_token":"…"|null,
//!  "received_at_ms":1767225600000,"expires_at_ms":1767225660000|null,"login":"9f3c…"}
//! ```
//!
//! Times are milliseconds since the Unix epoch on the writer's wall clock. A reader refuses any
//! other `version` with [`StoreError::Corrupt`] rather than guessing, and no error message ever
//! quotes the document (it holds secrets): parse errors report only a category, line and column.
//! A generation above [`MAX_GENERATION`] (up to `u64::MAX`, where adding one would overflow) is
//! corrupt too.

use super::{MAX_GENERATION, StoreError, StoredTokens, check_generation};
use crate::token::TokenSet;
use secrecy::zeroize::Zeroizing;
use secrecy::{ExposeSecret, SecretString};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The format version this build writes and reads.
pub(crate) const VERSION: u64 = 1;

/// Documents larger than this are refused unread: no token pair is anywhere near it.
pub(crate) const MAX_LEN: usize = 1024 * 1024;

#[derive(serde::Serialize)]
struct Out<'a> {
    version: u64,
    generation: u64,
    access_token: &'a str,
    refresh_token: Option<&'a str>,
    received_at_ms: u64,
    expires_at_ms: Option<u64>,
    /// Hex, so that readers whose numbers are doubles (JavaScript) keep every bit.
    #[serde(skip_serializing_if = "Option::is_none")]
    login: Option<String>,
}

#[derive(serde::Deserialize)]
struct Version {
    version: serde_json::Value,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct In {
    #[allow(dead_code)]
    version: u64,
    generation: u64,
    access_token: SecretString,
    refresh_token: Option<SecretString>,
    received_at_ms: u64,
    expires_at_ms: Option<u64>,
    #[serde(default)]
    login: Option<String>,
}

/// Serializes into a buffer that is zeroed when dropped, sized up front so it never reallocates
/// (a reallocation would leave a copy of the secrets in freed memory).
pub(crate) fn encode(stored: &StoredTokens) -> Result<Zeroizing<Vec<u8>>, StoreError> {
    check_generation(stored.generation)?;
    let tokens = &stored.tokens;
    let access = tokens.access_token().expose_secret();
    let refresh = tokens.refresh_token().map(ExposeSecret::expose_secret);
    // JSON escapes a character into at most 6 bytes; the rest of the document is small.
    let secrets = access.len() + refresh.map_or(0, str::len);
    let mut buffer = Zeroizing::new(Vec::with_capacity(secrets * 6 + 256));
    let document = Out {
        version: VERSION,
        generation: stored.generation,
        access_token: access,
        refresh_token: refresh,
        received_at_ms: to_ms(tokens.received_at()),
        expires_at_ms: tokens.expires_at().map(to_ms),
        login: stored.login.map(|tag| format!("{tag:016x}")),
    };
    serde_json::to_writer(&mut *buffer, &document).map_err(|e| {
        StoreError::Backend(format!("could not serialize the tokens: {}", describe(&e)))
    })?;
    buffer.push(b'\n');
    Ok(buffer)
}

/// Parses a stored document. `what` names it in error messages (a path, a key).
pub(crate) fn decode(bytes: &[u8], what: &str) -> Result<StoredTokens, StoreError> {
    let corrupt = |why: String| StoreError::Corrupt(format!("{what}: {why}"));
    if bytes.is_empty() {
        return Err(corrupt("the document is empty".into()));
    }
    if bytes.len() > MAX_LEN {
        return Err(corrupt(format!(
            "the document is {} bytes, more than the {MAX_LEN} a token pair can need",
            bytes.len()
        )));
    }
    let version: Version = serde_json::from_slice(bytes).map_err(|e| corrupt(describe(&e)))?;
    match version.version.as_u64() {
        Some(VERSION) => {}
        Some(other) if other > VERSION => {
            return Err(corrupt(format!(
                "format version {other} was written by a newer tokenkeeper; this one reads version {VERSION}"
            )));
        }
        _ => return Err(corrupt("unknown format version".into())),
    }
    let document: In = serde_json::from_slice(bytes).map_err(|e| corrupt(describe(&e)))?;
    if document.generation > MAX_GENERATION {
        return Err(corrupt(format!(
            "generation {} is above the largest a store holds ({MAX_GENERATION})",
            document.generation
        )));
    }
    if document.access_token.expose_secret().is_empty() {
        return Err(corrupt("the access token is empty".into()));
    }
    let received_at = from_ms(document.received_at_ms)
        .ok_or_else(|| corrupt("`received_at_ms` is out of range".into()))?;
    let expires_at = match document.expires_at_ms {
        None => None,
        Some(ms) => {
            Some(from_ms(ms).ok_or_else(|| corrupt("`expires_at_ms` is out of range".into()))?)
        }
    };
    let login = match &document.login {
        None => None,
        Some(hex) if hex.len() == 16 && hex.bytes().all(|b| b.is_ascii_hexdigit()) => Some(
            u64::from_str_radix(hex, 16)
                .map_err(|_| corrupt("`login` is not 16 hexadecimal digits".into()))?,
        ),
        Some(_) => return Err(corrupt("`login` is not 16 hexadecimal digits".into())),
    };
    Ok(StoredTokens {
        login,
        tokens: TokenSet::from_parts(
            document.access_token,
            document.refresh_token,
            received_at,
            expires_at,
        ),
        generation: document.generation,
    })
}

/// A serde_json error without its message, which may quote the input (secrets included).
fn describe(error: &serde_json::Error) -> String {
    let what = match error.classify() {
        serde_json::error::Category::Eof => "the document is truncated",
        serde_json::error::Category::Syntax => "the document is not valid JSON",
        serde_json::error::Category::Data => "the document does not have the expected fields",
        serde_json::error::Category::Io => "the document could not be read",
    };
    format!("{what} (line {}, column {})", error.line(), error.column())
}

fn to_ms(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn from_ms(ms: u64) -> Option<SystemTime> {
    UNIX_EPOCH.checked_add(Duration::from_millis(ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> StoredTokens {
        let tokens = TokenSet::new("access\"with\\quotes")
            .with_refresh_token("refresh-secret")
            .with_expires_in(Duration::from_secs(60));
        StoredTokens {
            tokens,
            generation: 42,
            login: Some(0x0123_4567_89ab_cdef),
        }
    }

    #[test]
    fn round_trips_to_the_millisecond() {
        let stored = sample();
        let bytes = encode(&stored).unwrap();
        let back = decode(&bytes, "test").unwrap();
        assert_eq!(back.generation, 42);
        assert_eq!(back.login, Some(0x0123_4567_89ab_cdef));
        assert!(back.tokens.same_secrets(&stored.tokens));
        assert_eq!(
            to_ms(back.tokens.received_at()),
            to_ms(stored.tokens.received_at())
        );
        assert_eq!(
            back.tokens.expires_at().map(to_ms),
            stored.tokens.expires_at().map(to_ms)
        );
    }

    #[test]
    fn the_login_tag_is_optional_and_checked() {
        let document = |login: &str| {
            format!(
                r#"{{"version":1,"generation":1,"access_token":"a","refresh_token":null,"received_at_ms":0,"expires_at_ms":null{login}}}"#
            )
        };
        assert_eq!(decode(document("").as_bytes(), "test").unwrap().login, None);
        let tagged = document(r#","login":"ffffffffffffffff""#);
        assert_eq!(
            decode(tagged.as_bytes(), "test").unwrap().login,
            Some(u64::MAX)
        );
        for bad in [
            r#""+fffffffffffffff""#,
            r#""12""#,
            r#""zzzzzzzzzzzzzzzz""#,
            "12",
        ] {
            let document = document(&format!(r#","login":{bad}"#));
            assert!(
                matches!(
                    decode(document.as_bytes(), "test"),
                    Err(StoreError::Corrupt(_))
                ),
                "{bad}"
            );
        }
        let mut stored = sample();
        stored.login = None;
        let bytes = encode(&stored).unwrap();
        assert!(!String::from_utf8_lossy(&bytes).contains("login"));
    }

    #[test]
    fn errors_never_quote_the_document() {
        let bad = br#"{"version":1,"generation":"refresh-secret","access_token":"access-secret"}"#;
        let error = decode(bad, "test").unwrap_err().to_string();
        assert!(!error.contains("secret"), "{error}");
        assert!(error.contains("expected fields"), "{error}");
        let truncated = br#"{"version":1,"generation":3,"access_token":"access-sec"#;
        let error = decode(truncated, "test").unwrap_err().to_string();
        assert!(
            !error.contains("secret") && !error.contains("access-sec"),
            "{error}"
        );
    }

    #[test]
    fn generations_out_of_range_are_corrupt_and_are_never_written() {
        let document = |generation: &str| {
            format!(
                r#"{{"version":1,"generation":{generation},"access_token":"a","refresh_token":null,"received_at_ms":0,"expires_at_ms":null}}"#
            )
        };
        assert_eq!(
            decode(document(&MAX_GENERATION.to_string()).as_bytes(), "test")
                .unwrap()
                .generation,
            MAX_GENERATION
        );
        for generation in [
            (MAX_GENERATION + 1).to_string(),
            u64::MAX.to_string(),
            "18446744073709551616".to_owned(),
            "-1".to_owned(),
            "1e300".to_owned(),
        ] {
            match decode(document(&generation).as_bytes(), "test") {
                Err(StoreError::Corrupt(_)) => {}
                other => panic!("generation {generation}: {other:?}"),
            }
        }
        let mut stored = sample();
        stored.generation = MAX_GENERATION;
        assert!(encode(&stored).is_ok());
        stored.generation = u64::MAX;
        assert!(matches!(
            encode(&stored),
            Err(StoreError::GenerationOutOfRange {
                generation: u64::MAX
            })
        ));
    }

    #[test]
    fn newer_versions_are_refused_by_name() {
        let error = decode(br#"{"version":2}"#, "test").unwrap_err().to_string();
        assert!(error.contains("newer tokenkeeper"), "{error}");
    }
}
