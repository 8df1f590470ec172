//! Knowing when every refresh task has landed, so a process can exit without losing a pair.
//!
//! A flight runs in a spawned task that outlives the requests that started it (a proactive
//! refresh has no waiter at all). If the process exits while one is out, the server has rotated
//! the refresh token but the new pair never reaches the store: the next process presents the
//! used token, and a server with reuse detection ends the login. [`Landing`] counts the tasks
//! still running so [`Session::refreshes_landed`](super::Session::refreshes_landed) can wait for
//! them. One `Landing` is shared by every session made from one configuration, so a keyed
//! collection also waits for the flights of sessions it has evicted.

use std::sync::Arc;
use tokio::sync::watch;

/// How many refresh tasks of one configuration are still running.
#[derive(Debug)]
pub(crate) struct Landing {
    running: watch::Sender<usize>,
}

impl Default for Landing {
    fn default() -> Self {
        Self {
            running: watch::Sender::new(0),
        }
    }
}

impl Landing {
    /// Counts a task about to be spawned; the ticket, dropped when the task ends (or is
    /// aborted with its runtime), counts it out.
    pub(crate) fn take_off(self: &Arc<Self>) -> Ticket {
        self.running.send_modify(|running| *running += 1);
        Ticket(Arc::clone(self))
    }

    /// Returns once no task counted by [`take_off`](Self::take_off) is running.
    pub(crate) async fn all_landed(&self) {
        let mut running = self.running.subscribe();
        // The sender lives in `self`, so the channel cannot close while we wait.
        let _ = running.wait_for(|&running| running == 0).await;
    }
}

/// One running refresh task (see [`Landing::take_off`]).
pub(crate) struct Ticket(Arc<Landing>);

impl Drop for Ticket {
    fn drop(&mut self) {
        self.0
            .running
            .send_modify(|running| *running = running.saturating_sub(1));
    }
}

#[cfg(test)]
mod tests {
    use crate::store::{KeyedStore, MemoryStore, MemoryStores, TokenStore};
    use crate::{Session, Sessions, TokenSet, refresh};
    use futures_util::FutureExt;
    use std::sync::Arc;
    use std::time::Duration;
    use tokio::sync::Semaphore;

    /// A refresher that answers only when the test adds a permit to `gate`.
    fn gated(gate: &Arc<Semaphore>) -> impl refresh::Refresher {
        let gate = Arc::clone(gate);
        refresh::from_fn(move |_| {
            let gate = Arc::clone(&gate);
            async move {
                gate.acquire().await.map(|permit| permit.forget()).ok();
                Ok(TokenSet::new("second")
                    .with_refresh_token("refresh-2")
                    .with_expires_in(Duration::from_secs(3600)))
            }
        })
    }

    fn short_lived() -> TokenSet {
        TokenSet::new("first")
            .with_refresh_token("refresh-1")
            .with_expires_in(Duration::from_millis(400))
    }

    async fn stored_generation(store: &dyn TokenStore) -> u64 {
        store.load().await.unwrap().unwrap().generation
    }

    /// A refresh ahead of expiry has no waiter: only `refreshes_landed` tells when its pair is
    /// in the store. It stays pending while the refresh is out, and returns once it is saved.
    #[tokio::test]
    async fn waits_for_a_refresh_nobody_else_waits_for() {
        let gate = Arc::new(Semaphore::new(0));
        let store: Arc<dyn TokenStore> = Arc::new(MemoryStore::new());
        let session = Session::builder()
            .refresher(gated(&gate))
            .store_arc(Arc::clone(&store))
            .attach_to(["https://api.example.com"])
            .build()
            .unwrap();
        // Nothing running: returns at once.
        assert!(session.refreshes_landed().now_or_never().is_some());
        session.sign_in(short_lived()).await.unwrap();
        // Past the soft deadline, `snapshot` starts the background refresh and returns.
        tokio::time::sleep(Duration::from_millis(350)).await;
        session.snapshot().unwrap();
        let mut landed = Box::pin(session.refreshes_landed());
        assert!((&mut landed).now_or_never().is_none(), "the refresh is out");
        assert_eq!(stored_generation(&*store).await, 1);
        gate.add_permits(1);
        landed.await;
        assert_eq!(stored_generation(&*store).await, 2);
        assert_eq!(session.stats().proactive_refreshes, 1);
    }

    /// A keyed collection waits for the refreshes of sessions it has already evicted.
    #[tokio::test]
    async fn a_collection_waits_for_the_refreshes_of_evicted_keys() {
        let gate = Arc::new(Semaphore::new(0));
        let stores = Arc::new(MemoryStores::new());
        let sessions: Sessions<String> = Sessions::builder()
            .session(
                Session::builder()
                    .refresher(gated(&gate))
                    .attach_to(["https://api.example.com"]),
            )
            .store(Arc::clone(&stores))
            .build()
            .unwrap();
        let key = "alice".to_owned();
        sessions.sign_in(key.clone(), short_lived()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(350)).await;
        sessions.session(&key).await.unwrap().snapshot().unwrap();
        sessions.evict(&key);
        let mut landed = Box::pin(sessions.refreshes_landed());
        assert!((&mut landed).now_or_never().is_none(), "the refresh is out");
        gate.add_permits(1);
        landed.await;
        let store = stores.store_for(&key).unwrap();
        assert_eq!(stored_generation(&*store).await, 2);
    }
}
