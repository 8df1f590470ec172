//! The refresh lock as a lease row in `tokenkeeper_locks`, renewed while held and fenced.
//!
//! Every expiry is computed and compared on the database server's clock
//! (`clock_timestamp()`), so the clients' clocks never matter for exclusion.

use super::super::StoreError;
use super::connection::Connection;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio_postgres::types::Type;

/// Takes the lease when nobody holds it or the holder's lease ran out (or it is already ours: an
/// attempt whose answer was lost). Returns a row when taken.
const TAKE: &str = "INSERT INTO tokenkeeper_locks AS held (key, holder, expires_at) \
     VALUES ($1, $2, clock_timestamp() + $3 * interval '1 second') \
     ON CONFLICT (key) DO UPDATE SET holder = EXCLUDED.holder, expires_at = EXCLUDED.expires_at \
     WHERE held.expires_at <= clock_timestamp() OR held.holder = EXCLUDED.holder \
     RETURNING 1";

/// Extends the lease by a full TTL, only while it is still ours and has not run out: a lease
/// that expired is lost even if nobody took it yet, since someone may be about to.
const RENEW: &str = "UPDATE tokenkeeper_locks \
     SET expires_at = clock_timestamp() + $3 * interval '1 second' \
     WHERE key = $1 AND holder = $2 AND expires_at > clock_timestamp() \
     RETURNING 1";

/// Removes the lease only if it is still ours.
const RELEASE: &str = "DELETE FROM tokenkeeper_locks WHERE key = $1 AND holder = $2";

/// Longest pause between two attempts to take a busy lease.
const MAX_POLL: Duration = Duration::from_millis(50);

/// A held refresh lease of a [`PostgresStore`](super::PostgresStore): renewed every third of
/// its TTL while held, deleted (if still ours) when dropped.
///
/// A lease can be lost while held: the process pauses (GC, swap, a suspended VM, a saturated
/// machine) past the TTL, or cannot reach the server to renew it, and another process takes it.
/// [`still_held`](Self::still_held) is the fence: ask it right before presenting a refresh
/// token, and do not send the refresh if it says no.
///
/// ```no_run
/// # async fn example(store: tokenkeeper::store::PostgresStore) -> Result<(), tokenkeeper::store::StoreError> {
/// let lease = store.lease().await?;
/// if lease.still_held().await? {
///     // Refresh now: for the next lock TTL, no other holder can take the lease.
/// }
/// drop(lease); // releases it
/// # Ok(()) }
/// ```
pub struct PostgresLease {
    fence: LeaseFence,
    renewer: tokio::task::AbortHandle,
    _release: Release,
}

impl fmt::Debug for PostgresLease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresLease")
            .field("key", &self.fence.0.key)
            .field("ttl", &self.fence.0.ttl)
            .field("lost", &self.fence.0.lost.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl PostgresLease {
    /// Whether the lease is still ours, checked on the server: `Ok(true)` means it was ours and
    /// unexpired, and has just been extended by a full TTL, so a refresh sent now is covered
    /// for that long. `Ok(false)` once it expired or another holder took it (for good: a lost
    /// lease is not taken back). `Err` when the server cannot say.
    pub async fn still_held(&self) -> Result<bool, StoreError> {
        self.fence.still_held().await
    }

    /// The check alone, detached from the guard (for `StoreLock`'s fence).
    pub(super) fn fence(&self) -> LeaseFence {
        self.fence.clone()
    }
}

#[async_trait::async_trait]
impl crate::store::LockFence for LeaseFence {
    async fn still_held(&self) -> Result<bool, StoreError> {
        LeaseFence::still_held(self).await
    }
}

impl Drop for PostgresLease {
    fn drop(&mut self) {
        self.renewer.abort();
    }
}

/// What a holder knows about its lease.
struct Held {
    connection: Arc<Connection>,
    key: Arc<str>,
    holder: String,
    ttl: Duration,
    lost: AtomicBool,
}

impl Held {
    /// Runs `statement` ([`TAKE`] or [`RENEW`]: key, holder, TTL in seconds) for this holder:
    /// whether the lease is ours for a full TTL from now.
    async fn claim(
        &self,
        statement: &'static str,
        doing: &'static str,
    ) -> Result<bool, StoreError> {
        let rows = self
            .connection
            .run("lock", doing, |client| async move {
                client
                    .query_typed(
                        statement,
                        &[
                            (&&*self.key, Type::TEXT),
                            (&self.holder, Type::TEXT),
                            (&self.ttl.as_secs_f64(), Type::FLOAT8),
                        ],
                    )
                    .await
            })
            .await?;
        Ok(!rows.is_empty())
    }
}

/// Checks (and extends) the lease on the server.
#[derive(Clone)]
pub(super) struct LeaseFence(Arc<Held>);

impl LeaseFence {
    pub(super) async fn still_held(&self) -> Result<bool, StoreError> {
        if self.0.lost.load(Ordering::Acquire) {
            return Ok(false);
        }
        let held = &self.0;
        if !held.claim(RENEW, "renewing the refresh lease").await? {
            held.lost.store(true, Ordering::Release);
            return Ok(false);
        }
        Ok(true)
    }
}

/// Takes the lease on `key`, waiting (polling with a capped, jittered backoff) while another
/// holder has it.
pub(super) async fn take(
    connection: Arc<Connection>,
    key: Arc<str>,
    ttl: Duration,
) -> Result<PostgresLease, StoreError> {
    let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
        StoreError::Backend("PostgreSQL: the refresh lease needs a tokio runtime".into())
    })?;
    let holder = format!("{:032x}", rand::random::<u128>());
    let held = Arc::new(Held {
        connection,
        key,
        holder,
        ttl,
        lost: AtomicBool::new(false),
    });
    // From here on, dropping `pending` (this future cancelled while the INSERT was on the wire)
    // gives back whatever we may have taken: the release deletes only our own holder's row.
    let pending = Release {
        held: Arc::clone(&held),
        runtime,
    };
    let mut delay = Duration::from_millis(2);
    loop {
        if held.claim(TAKE, "taking the refresh lease").await? {
            break;
        }
        let jitter = delay.mul_f64(rand::random::<f64>() * 0.5);
        tokio::time::sleep(delay + jitter).await;
        delay = (delay * 2).min(MAX_POLL);
    }
    let fence = LeaseFence(held);
    let renewer = tokio::spawn(renew(fence.clone()));
    Ok(PostgresLease {
        fence,
        renewer: renewer.abort_handle(),
        _release: pending,
    })
}

/// Keeps the lease alive while it is held; stops once it is lost.
async fn renew(fence: LeaseFence) {
    loop {
        tokio::time::sleep(fence.0.ttl / 3).await;
        match fence.still_held().await {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(
                    key = %fence.0.key,
                    "the PostgreSQL refresh lease expired while held; the refresh will not be sent and a stale save is refused"
                );
                return;
            }
            Err(error) => {
                tracing::warn!(%error, key = %fence.0.key, "could not renew the PostgreSQL refresh lease");
            }
        }
    }
}

/// Deletes the lease row (if still ours) when dropped. Drop is synchronous, so the delete is
/// spawned; if the runtime is gone the lease simply expires after its TTL.
struct Release {
    held: Arc<Held>,
    runtime: tokio::runtime::Handle,
}

impl Drop for Release {
    fn drop(&mut self) {
        let held = Arc::clone(&self.held);
        self.runtime.spawn(async move {
            let released = held
                .connection
                .run("lock", "releasing the refresh lease", |client| {
                    let held = Arc::clone(&held);
                    async move {
                        client
                            .execute_typed(
                                RELEASE,
                                &[(&&*held.key, Type::TEXT), (&held.holder, Type::TEXT)],
                            )
                            .await
                    }
                })
                .await;
            if let Err(error) = released {
                tracing::warn!(%error, key = %held.key, "could not release the PostgreSQL refresh lease; it expires after its TTL");
            }
        });
    }
}
