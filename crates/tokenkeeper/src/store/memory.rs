use super::{StoreError, StoreLock, StoredTokens, TokenStore, check_generation};
use std::sync::{Arc, Mutex};

/// The default store: tokens live only in this process.
///
/// Its lock serialises refreshes with sign-in and sign-out, so a sign-out during a refresh
/// cannot be undone by the refresh saving afterwards.
#[derive(Debug, Default)]
pub struct MemoryStore {
    slot: Mutex<Option<StoredTokens>>,
    refresh_lock: Arc<tokio::sync::Mutex<()>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn slot(&self) -> std::sync::MutexGuard<'_, Option<StoredTokens>> {
        // A poisoned lock only means another thread panicked mid-assignment of an Option,
        // which cannot leave it half-written: keep using it.
        self.slot
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[async_trait::async_trait]
impl TokenStore for MemoryStore {
    async fn load(&self) -> Result<Option<StoredTokens>, StoreError> {
        Ok(self.slot().clone())
    }

    async fn save(&self, tokens: &StoredTokens) -> Result<(), StoreError> {
        // The same range as the stores that serialize.
        check_generation(tokens.generation)?;
        *self.slot() = Some(tokens.clone());
        Ok(())
    }

    async fn clear(&self) -> Result<(), StoreError> {
        *self.slot() = None;
        Ok(())
    }

    async fn lock(&self) -> Result<StoreLock, StoreError> {
        Ok(StoreLock::new(
            Arc::clone(&self.refresh_lock).lock_owned().await,
        ))
    }
}
