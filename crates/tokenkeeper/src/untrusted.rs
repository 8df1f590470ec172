//! Text that came from a server, made safe for an error message or a log line.
//!
//! A hostile or broken server controls what it sends back: a `token_type`, an
//! `error_description`, a body. Before any of it reaches an error or a log line it is escaped
//! (no raw newlines that forge log lines, no ANSI escapes that rewrite a terminal), shortened,
//! and any word that equals a token we hold is replaced, so a server echoing a token cannot
//! make us log it.

use crate::token::TokenSet;
use secrecy::ExposeSecret;

/// At most this many characters of server text are kept.
const MAX_CHARS: usize = 120;

/// Escapes control characters (as `\n`, `\u{1b}`), keeps at most [`MAX_CHARS`] characters.
pub(crate) fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len().min(MAX_CHARS));
    for (count, c) in text.chars().enumerate() {
        if count == MAX_CHARS {
            escaped.push('…');
            break;
        }
        if c.is_control() {
            escaped.extend(c.escape_default());
        } else {
            escaped.push(c);
        }
    }
    escaped
}

/// Replaces every occurrence of `tokens`' secrets in `text`, then escapes it.
pub(crate) fn redact(text: &str, tokens: &TokenSet) -> String {
    let mut text = text.to_owned();
    let secrets = [
        Some(tokens.access_token().expose_secret()),
        tokens.refresh_token().map(ExposeSecret::expose_secret),
    ];
    // Tokens shorter than this are placeholders (tests, client credentials), not secrets that
    // could be recognised in prose.
    for secret in secrets.into_iter().flatten().filter(|s| s.len() >= 4) {
        if text.contains(secret) {
            text = text.replace(secret, "[REDACTED]");
        }
    }
    escape(&text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_and_text_is_bounded() {
        assert_eq!(escape("a\nb\u{1b}[31mc"), "a\\nb\\u{1b}[31mc");
        let long = "x".repeat(500);
        assert_eq!(escape(&long).chars().count(), MAX_CHARS + 1);
    }

    #[test]
    fn our_tokens_are_never_echoed() {
        let tokens = TokenSet::new("access-secret-1").with_refresh_token("refresh-secret-2");
        let echoed = "bad token refresh-secret-2 (was access-secret-1)\n";
        let safe = redact(echoed, &tokens);
        assert!(!safe.contains("secret"), "{safe}");
        assert_eq!(safe, "bad token [REDACTED] (was [REDACTED])\\n");
    }

    proptest::proptest! {
        #[test]
        fn escaped_text_has_no_control_characters(text in ".*") {
            proptest::prop_assert!(!escape(&text).chars().any(char::is_control));
        }
    }
}
