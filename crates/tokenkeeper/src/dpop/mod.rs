//! DPoP (RFC 9449): sender-constrained tokens (feature `dpop`).
//!
//! A bearer token works for whoever holds it. With DPoP the server binds the tokens to a key the
//! client holds ([`DpopKey`]), and every request carries a *proof*: a short JWT signed with that
//! key over the request's method and URL (and, on API requests, a hash of the access token). A
//! stolen access or refresh token is useless without the key.
//!
//! What the session does once the login's tokens carry a key:
//! - the token endpoint (refresh grant, client credentials, authorization code) gets a proof;
//!   a `token_type` of `DPoP` in the answer makes the access token DPoP-bound;
//! - every request the session attaches to gets `Authorization: DPoP <token>` and a `DPoP`
//!   proof with `ath`, in both adapters and on the retry after a refresh;
//! - a server that demands a nonce (`400 {"error":"use_dpop_nonce"}` at the token endpoint,
//!   `401` with `WWW-Authenticate: DPoP error="use_dpop_nonce"` at an API) gets the request
//!   once more with a proof carrying it. That retry is no refusal of the token: nothing is
//!   refreshed and no retry guard counts it. The latest `DPoP-Nonce` of every response is kept
//!   per origin;
//! - the stores save the key beside the pair, in the same write and generation, so another
//!   process that adopts the pair signs with the same key. A DPoP-bound pair without its key
//!   is [`StoreError::Corrupt`](crate::store::StoreError::Corrupt), never sent as a bearer
//!   token.
//!
//! ```no_run
//! use tokenkeeper::dpop::DpopKey;
//! use tokenkeeper::{refresh, Session};
//!
//! # async fn example(code: &str, verifier: &str) -> Result<(), Box<dyn std::error::Error>> {
//! let oauth2 = refresh::OAuth2::new("https://auth.example.com/oauth2/token")?
//!     .client_id("app")
//!     .dpop(DpopKey::generate());
//! // The login's grant is signed with the key; the tokens come back carrying it.
//! let tokens = oauth2
//!     .exchange_code(code, "https://app.example.com/callback", Some(verifier))
//!     .await?;
//! assert!(tokens.is_dpop_bound());
//! let session = Session::builder()
//!     .refresher(oauth2)
//!     .attach_to(["https://api.example.com"])
//!     .build()?;
//! session.sign_in(tokens).await?;
//! # Ok(()) }
//! ```

mod key;
pub(crate) mod nonce;
pub(crate) mod proof;

pub use key::DpopKey;

/// The request header that carries a proof.
pub(crate) const DPOP: &str = "dpop";

use http::HeaderValue;
use url::Url;

/// A DPoP key or proof could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DpopError {
    /// A key could not be imported or exported (the reason never quotes the key).
    #[error("DPoP key: {0}")]
    Key(&'static str),
    /// A proof could not be encoded.
    #[error("a DPoP proof could not be encoded")]
    Proof,
}

/// What a DPoP-bound credential needs to prove possession on every request: the key and the
/// access token's hash (`ath`), computed once per token.
#[derive(Clone)]
pub(crate) struct Binding {
    pub(crate) key: DpopKey,
    ath: String,
}

impl Binding {
    pub(crate) fn new(key: DpopKey, access_token: &secrecy::SecretString) -> Self {
        Self {
            ath: proof::access_token_hash(access_token),
            key,
        }
    }

    /// A proof for a request to the API (with `ath`).
    pub(crate) fn proof(&self, method: &http::Method, url: &Url) -> Result<HeaderValue, DpopError> {
        proof::sign(&self.key, method.as_str(), url, Some(&self.ath))
    }
}
