//! [`KeyedMiddleware`]: the reqwest-middleware adapter of a [`Sessions`] collection.
//!
//! Per request it finds the session of the request's [`Key`] and then does exactly what
//! [`AuthMiddleware`] does for a lone session (the same code): the only added work is one
//! extension lookup and one cache lookup.

use super::{CachedSession, Key, LoginKey, Sessions};
use crate::adapter::reqwest::{AuthMiddleware, BoxFuture, fail, is_ours};
use crate::error::Error;
use http::Extensions;
use reqwest::{Request, Response};
use reqwest_middleware::{Middleware, Next};

/// Attaches, refreshes and retries with the session of each request's [`Key`]. Made by
/// [`Sessions::middleware`].
///
/// A request to an origin that gets tokens must carry a [`Key`]; without one it fails with
/// [`Error::NoKey`] and is not sent. Errors come back as
/// [`reqwest_middleware::Error::Middleware`] wrapping an [`Error`].
///
/// ```no_run
/// # async fn example(logins: tokenkeeper::Sessions<String>) -> Result<(), Box<dyn std::error::Error>> {
/// use tokenkeeper::keyed::Key;
///
/// let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
///     .with(logins.middleware())
///     .build();
/// let items = client
///     .get("https://partner.example.com/items")
///     .with_extension(Key("alice".to_owned()))
///     .send()
///     .await?;
/// # let _ = items; Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct KeyedMiddleware<K: LoginKey> {
    sessions: Sessions<K>,
}

impl<K: LoginKey> Sessions<K> {
    /// The reqwest-middleware adapter for this collection.
    pub fn middleware(&self) -> KeyedMiddleware<K> {
        KeyedMiddleware {
            sessions: self.clone(),
        }
    }
}

impl<K: LoginKey> Middleware for KeyedMiddleware<K> {
    fn handle<'life0, 'life1, 'life2, 'async_trait>(
        &'life0 self,
        request: Request,
        extensions: &'life1 mut Extensions,
        next: Next<'life2>,
    ) -> BoxFuture<'async_trait, reqwest_middleware::Result<Response>>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        'life2: 'async_trait,
        Self: 'async_trait,
    {
        let Some(Key(key)) = extensions.get::<Key<K>>() else {
            return self.without_key(request, extensions, next);
        };
        match self.sessions.cached_ready(key) {
            Err(error) => Box::pin(std::future::ready(Err(fail(error)))),
            Ok(CachedSession::Ready(session)) => {
                AuthMiddleware::for_session(session).handle_owned(request, extensions, next)
            }
            Ok(CachedSession::Restore(first)) => Box::pin(async move {
                let session = first.restore().await.map_err(fail)?;
                AuthMiddleware::for_session(session)
                    .handle_owned(request, extensions, next)
                    .await
            }),
        }
    }
}

impl<K: LoginKey> KeyedMiddleware<K> {
    /// A request without a key goes out untouched if it is not ours (another origin, its own
    /// `Authorization` header, [`NoAuth`](crate::NoAuth)); otherwise it fails with [`Error::NoKey`].
    fn without_key<'a>(
        &self,
        request: Request,
        extensions: &'a mut Extensions,
        next: Next<'a>,
    ) -> BoxFuture<'a, reqwest_middleware::Result<Response>> {
        match is_ours(self.sessions.prototype(), &request, extensions) {
            Ok(false) => next.run(request, extensions),
            Ok(true) => Box::pin(std::future::ready(Err(fail(Error::NoKey)))),
            Err(refusal) => Box::pin(std::future::ready(Err(fail(refusal)))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Session, TokenSet};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use crate::adapter::reqwest::future_size::FutureSize;

    /// As for the single-session middleware: glibc serves blocks up to 1032 bytes from its
    /// per-thread cache, and above that every request would pay for the general allocator.
    #[tokio::test]
    async fn the_per_request_future_fits_glibcs_fast_path() {
        let logins = Sessions::<u64>::builder()
            .session(
                Session::builder()
                    .refresher(crate::refresh::from_fn(|_| async {
                        Ok(TokenSet::new("a"))
                    }))
                    .attach_to(["https://api.example.com"]),
            )
            .build()
            .unwrap();
        logins.sign_in(7, TokenSet::new("token")).await.unwrap();
        let size = Arc::new(AtomicUsize::new(0));
        let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
            .with_arc(Arc::new(FutureSize(Arc::clone(&size))))
            .with(logins.middleware())
            .build();
        let _ = client
            .get("https://api.example.com/items/1")
            .with_extension(Key(7u64))
            .send()
            .await;
        let size = size.load(Ordering::Relaxed);
        eprintln!("the keyed per-request future: {size} bytes");
        assert!(size > 0);
        assert!(size <= 1024, "the keyed per-request future is {size} bytes");
    }
}
