//! One shared PostgreSQL client that reconnects by itself, and a timeout around every call.

use super::super::StoreError;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio_postgres::{Client, Config, NoTls};

/// The client every [`PostgresStore`](super::PostgresStore) made from one `connect` shares.
///
/// tokio-postgres pipelines concurrent queries over one connection, so one client serves every
/// key and every task. When the connection drops, the next call opens a new one (from the
/// `Config`), so a restarted server or a killed backend costs one failed call, not the store.
pub(super) struct Connection {
    /// `None` for a client the application built (its TLS, its reconnection policy).
    config: Option<Config>,
    client: tokio::sync::Mutex<Option<Arc<Client>>>,
    timeout: Duration,
}

impl Connection {
    pub(super) fn new(config: Config, timeout: Duration) -> Self {
        Self {
            config: Some(config),
            client: tokio::sync::Mutex::new(None),
            timeout,
        }
    }

    pub(super) fn with_client(client: Client, timeout: Duration) -> Self {
        Self {
            config: None,
            client: tokio::sync::Mutex::new(Some(Arc::new(client))),
            timeout,
        }
    }

    pub(super) fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The open client, connecting first when there is none or it closed.
    async fn client(&self) -> Result<Arc<Client>, StoreError> {
        let mut current = self.client.lock().await;
        if let Some(client) = current.as_ref().filter(|client| !client.is_closed()) {
            return Ok(Arc::clone(client));
        }
        let Some(config) = &self.config else {
            return Err(StoreError::Backend(
                "PostgreSQL: the connection given to the store is closed".into(),
            ));
        };
        let (client, connection) = config.connect(NoTls).await.map_err(backend("connecting"))?;
        // The connection task drives the socket; it ends when the client is dropped or the
        // connection breaks (then `is_closed` turns true and the next call reconnects).
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::warn!(error = %describe(&error), "the PostgreSQL connection ended");
            }
        });
        let client = Arc::new(client);
        *current = Some(Arc::clone(&client));
        Ok(client)
    }

    /// Runs one call (connecting first if needed) within the store's timeout. `doing` says
    /// what the call does, for the error. A call that finds the connection broken forgets it,
    /// so the next call connects afresh instead of meeting the same dead socket.
    pub(super) async fn run<T, F, Fut>(
        &self,
        operation: &'static str,
        doing: &'static str,
        call: F,
    ) -> Result<T, StoreError>
    where
        F: FnOnce(Arc<Client>) -> Fut,
        Fut: Future<Output = Result<T, tokio_postgres::Error>>,
    {
        let attempt = async {
            let client = self.client().await?;
            match call(Arc::clone(&client)).await {
                Ok(value) => Ok(value),
                Err(error) => {
                    if is_broken(&error) {
                        self.forget(&client).await;
                    }
                    Err(backend(doing)(error))
                }
            }
        };
        tokio::time::timeout(self.timeout, attempt)
            .await
            .map_err(|_| StoreError::Timeout {
                operation,
                after: self.timeout,
            })?
    }

    /// Drops `broken` as the current client (unless a newer one replaced it already).
    async fn forget(&self, broken: &Arc<Client>) {
        let mut current = self.client.lock().await;
        if current.as_ref().is_some_and(|c| Arc::ptr_eq(c, broken)) && self.config.is_some() {
            *current = None;
        }
    }

    /// Connects (if needed) and nothing else: a wrong URL or a server that is down shows now.
    pub(super) async fn check(&self) -> Result<(), StoreError> {
        tokio::time::timeout(self.timeout, self.client())
            .await
            .map_err(|_| StoreError::Timeout {
                operation: "connect",
                after: self.timeout,
            })?
            .map(drop)
    }
}

/// Whether the connection is unusable after `error`: closed, or ended by the server (a FATAL
/// error: administrator shutdown, terminated backend, idle timeout).
fn is_broken(error: &tokio_postgres::Error) -> bool {
    error.is_closed()
        || error.as_db_error().is_some_and(|db| {
            db.severity() == "FATAL"
                || db.severity() == "PANIC"
                || db.code().code().starts_with("57P")
        })
}

/// Maps a driver error to a backend error that says what was being done.
pub(super) fn backend(doing: &'static str) -> impl Fn(tokio_postgres::Error) -> StoreError {
    move |error| StoreError::Backend(format!("PostgreSQL, {doing}: {}", describe(&error)))
}

/// A driver error without the server's DETAIL, which can quote a whole row (the tokens
/// included) when a constraint fails: only the SQLSTATE and the primary message.
pub(super) fn describe(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => error.to_string(),
    }
}
