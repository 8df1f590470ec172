//! Configuration errors, apart from the errors of running requests: what the builder, the
//! refresh strategies' constructors and the adapters' settings refuse.

/// A session, refresh strategy or adapter was configured with something it cannot use: a URL
/// that is not one, plain http to a host that is not loopback, a missing refresher, settings
/// that contradict each other. The message says which; it never holds a token.
///
/// Constructors return it directly; [`Error::Config`](crate::Error::Config) carries it where a
/// call can fail for other reasons too (`?` converts it).
///
/// ```
/// use tokenkeeper::{ConfigError, refresh};
///
/// let refused: ConfigError = refresh::OAuth2::new("http://auth.example.com/token").unwrap_err();
/// assert!(refused.to_string().contains("https"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ConfigError {
    message: String,
}

impl ConfigError {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }
}
