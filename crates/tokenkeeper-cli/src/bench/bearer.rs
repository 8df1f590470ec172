//! The hand-written baseline tokenkeeper's middleware is measured against: a reqwest-middleware
//! [`Middleware`] that inserts a precomputed `Authorization` header and does nothing else (no
//! refresh, no retry, no origin check). Issue 12 §3 targets tokenkeeper at ≤ 1.01 × its
//! instructions per request and no more allocations.

use reqwest::header::{AUTHORIZATION, HeaderValue};
use reqwest_middleware::{Middleware, Next};

/// Inserts one fixed bearer header into every request.
#[derive(Debug, Clone)]
pub struct BearerMiddleware {
    header: HeaderValue,
}

impl BearerMiddleware {
    /// A middleware that sends `header` (`Bearer …`, marked sensitive here) on every request.
    pub fn new(mut header: HeaderValue) -> Self {
        header.set_sensitive(true);
        Self { header }
    }
}

#[async_trait::async_trait]
impl Middleware for BearerMiddleware {
    async fn handle(
        &self,
        mut request: reqwest::Request,
        extensions: &mut http::Extensions,
        next: Next<'_>,
    ) -> reqwest_middleware::Result<reqwest::Response> {
        request
            .headers_mut()
            .insert(AUTHORIZATION, self.header.clone());
        next.run(request, extensions).await
    }
}
