//! Moments worth drawing on the timeline: 401s on the wire, refresh calls and their results,
//! forced re-logins. Recorded by every contender the same way.

use serde::Serialize;
use std::sync::{Mutex, PoisonError};
use std::time::Instant;

/// What happened at a moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MarkKind {
    /// A 401 came back on the wire (before any retry), whatever the client did with it.
    Wire401,
    /// A call to the refresh endpoint started.
    RefreshCall,
    /// A refresh call returned new tokens.
    RefreshOk,
    /// A refresh call failed (rejected or unavailable).
    RefreshFailed,
    /// The user was sent back to the login screen and signed in again.
    Relogin,
}

/// One moment, in seconds since the run began.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Mark {
    /// Seconds since the run's origin.
    pub at: f64,
    /// What happened.
    pub kind: MarkKind,
}

/// A run's recorder. Cheap enough for the hot path: one short lock per mark, and marks are
/// rare next to requests (401s and refreshes only).
#[derive(Debug)]
pub struct Marks {
    origin: Instant,
    marks: Mutex<Vec<Mark>>,
}

impl Marks {
    /// A recorder whose clock starts now.
    pub fn new() -> Self {
        Self {
            origin: Instant::now(),
            marks: Mutex::new(Vec::new()),
        }
    }

    /// When the run began.
    pub fn origin(&self) -> Instant {
        self.origin
    }

    /// Seconds since the origin.
    pub fn now(&self) -> f64 {
        self.origin.elapsed().as_secs_f64()
    }

    /// Records `kind` now.
    pub fn mark(&self, kind: MarkKind) {
        let at = self.now();
        self.marks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Mark { at, kind });
    }

    /// Everything recorded, in time order.
    pub fn take(&self) -> Vec<Mark> {
        let mut marks =
            std::mem::take(&mut *self.marks.lock().unwrap_or_else(PoisonError::into_inner));
        marks.sort_by(|a, b| a.at.total_cmp(&b.at));
        marks
    }
}

impl Default for Marks {
    fn default() -> Self {
        Self::new()
    }
}

/// A reqwest-middleware layer placed *below* tokenkeeper's, so it sees every response on the
/// wire (retries included) and records the 401s tokenkeeper handles out of the caller's sight.
#[derive(Debug, Clone)]
pub struct Wire401Recorder {
    marks: std::sync::Arc<Marks>,
}

impl Wire401Recorder {
    /// Records into `marks`.
    pub fn new(marks: std::sync::Arc<Marks>) -> Self {
        Self { marks }
    }
}

#[async_trait::async_trait]
impl reqwest_middleware::Middleware for Wire401Recorder {
    async fn handle(
        &self,
        request: reqwest::Request,
        extensions: &mut http::Extensions,
        next: reqwest_middleware::Next<'_>,
    ) -> reqwest_middleware::Result<reqwest::Response> {
        let response = next.run(request, extensions).await?;
        if response.status() == reqwest::StatusCode::UNAUTHORIZED {
            self.marks.mark(MarkKind::Wire401);
        }
        Ok(response)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_come_back_in_time_order() {
        let marks = Marks::new();
        marks.mark(MarkKind::RefreshCall);
        marks.mark(MarkKind::RefreshOk);
        let taken = marks.take();
        assert_eq!(taken.len(), 2);
        assert!(taken[0].at <= taken[1].at);
        assert_eq!(taken[0].kind, MarkKind::RefreshCall);
        assert!(marks.take().is_empty());
    }
}
