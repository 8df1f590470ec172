//! Request extensions shared by every adapter.

/// Put this in a request's extensions to send it without the token (the login call itself,
/// calls to third parties that happen to share an origin). Honoured by every adapter.
///
/// ```no_run
/// # #[cfg(feature = "reqwest")]
/// # async fn example(client: reqwest_middleware::ClientWithMiddleware) -> reqwest_middleware::Result<()> {
/// client.post("https://api.example.com/login").with_extension(tokenkeeper::NoAuth).send().await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct NoAuth;

/// Marks a request that was already retried after a refresh, so it never is again, even if
/// another layer or middleware replays it.
#[derive(Debug, Clone, Copy)]
#[cfg_attr(not(any(feature = "reqwest", feature = "tower")), allow(dead_code))]
pub(crate) struct Retried;
