//! Stores for many logins: a [`KeyedStore`] gives the [`TokenStore`] of one key of a
//! [`Sessions`](crate::Sessions) collection.
//!
//! - [`MemoryStores`]: one [`MemoryStore`] per key, in this process.
//! - [`FileStores`]: a directory, one [`FileStore`] file per key.
//! - `RedisStore` (feature `redis`): its key is the prefix; a login's tokens are at
//!   `<prefix><name>` and its refresh lock at `<prefix><name>:lock`, over one connection.
//! - `PostgresStore` (feature `postgres`): its key is the prefix; one row per login, one lease
//!   per login, over one connection.
//!
//! Every key gets the lock and the generation compare-and-set its store gives a single login,
//! so processes sharing a family refresh each login once per expiry.

use super::{FileStore, MemoryStore, StoreError, TokenStore};
use crate::keyed::LoginKey;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// Makes the [`TokenStore`] of each key of a [`Sessions`](crate::Sessions) collection.
///
/// Called when a key's session is made (its first use, or its first use after it was
/// evicted), so it should be cheap: share connections, make no I/O. Two stores made for the
/// same key must share its data and its lock.
///
/// ```
/// use std::sync::Arc;
/// use tokenkeeper::store::{KeyedStore, MemoryStore, StoreError, TokenStore};
///
/// /// Every key in one place of your own.
/// #[derive(Debug)]
/// struct Mine;
///
/// impl KeyedStore<u64> for Mine {
///     fn store_for(&self, key: &u64) -> Result<Arc<dyn TokenStore>, StoreError> {
///         let _ = key;
///         Ok(Arc::new(MemoryStore::new()))
///     }
/// }
/// ```
pub trait KeyedStore<K>: Send + Sync + 'static {
    /// The store of `key`.
    fn store_for(&self, key: &K) -> Result<Arc<dyn TokenStore>, StoreError>;

    /// The lease of the stores' refresh lock, if it is one (see
    /// [`TokenStore::lock_lease`]): every key's refresh timeout is kept below it.
    fn lock_lease(&self) -> Option<Duration> {
        None
    }
}

impl<K, T: KeyedStore<K> + ?Sized> KeyedStore<K> for Arc<T> {
    fn store_for(&self, key: &K) -> Result<Arc<dyn TokenStore>, StoreError> {
        (**self).store_for(key)
    }

    fn lock_lease(&self) -> Option<Duration> {
        (**self).lock_lease()
    }
}

/// One [`MemoryStore`] per key, in this process: what a [`Sessions`](crate::Sessions)
/// collection uses by default. The stores are the tokens' only home, so they are kept when a
/// key's session is evicted (an evicted key comes back with its tokens, without a refresh):
/// memory grows with the keys ever signed in, by one token pair each, until
/// [`remove`](Self::remove).
///
/// ```
/// use tokenkeeper::store::{KeyedStore, MemoryStores};
///
/// let stores = MemoryStores::new();
/// let alice = stores.store_for(&"alice").unwrap();
/// let again = stores.store_for(&"alice").unwrap();
/// // The same store: the same tokens, the same lock.
/// assert!(std::sync::Arc::ptr_eq(&alice, &again));
/// ```
#[derive(Default)]
pub struct MemoryStores {
    stores: Mutex<HashMap<String, Arc<dyn TokenStore>>>,
}

impl MemoryStores {
    /// No keys yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Drops the store of `key` (its tokens), if any. A session still using it keeps it until
    /// it is gone.
    pub fn remove<K: LoginKey>(&self, key: &K) {
        self.map().remove(&key.store_name());
    }

    /// How many keys have a store.
    pub fn len(&self) -> usize {
        self.map().len()
    }

    /// Whether no key has a store.
    pub fn is_empty(&self) -> bool {
        self.map().is_empty()
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<dyn TokenStore>>> {
        // A map insert cannot be left half-done by a panic elsewhere.
        self.stores.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl std::fmt::Debug for MemoryStores {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStores")
            .field("keys", &self.len())
            .finish()
    }
}

impl<K: LoginKey> KeyedStore<K> for MemoryStores {
    fn store_for(&self, key: &K) -> Result<Arc<dyn TokenStore>, StoreError> {
        let store = self
            .map()
            .entry(key.store_name())
            .or_insert_with(|| Arc::new(MemoryStore::new()))
            .clone();
        Ok(store)
    }
}

/// The longest encoded key name in a file name: 255 bytes (the usual file name limit) less the
/// `login-` prefix, the `.json` suffix and the lock file's `.lock`.
pub const MAX_FILE_KEY_LEN: usize = 255 - "login-".len() - ".json".len() - ".lock".len();

/// A directory of [`FileStore`]s, one file per key: `login-<name>.json` (and its `.lock`).
///
/// The key's [store name](LoginKey::store_name) is percent-encoded: every byte other than
/// ASCII letters, digits, `-` and `_` becomes `%XX`, so a name can hold no `/`, no `.`, no
/// `..`: no key reaches outside the directory, and distinct names give distinct files. A name
/// whose encoding is longer than [`MAX_FILE_KEY_LEN`] bytes is refused with
/// [`StoreError::Unsafe`] (the documented limit; hash such keys yourself into a shorter name).
///
/// ```
/// # fn example() -> Result<(), tokenkeeper::store::StoreError> {
/// use tokenkeeper::store::{FileStores, KeyedStore};
///
/// let dir = std::env::temp_dir().join("tokenkeeper-doc-file-stores");
/// let stores = FileStores::open(&dir)?;
/// assert!(stores.path_for(&"../etc/passwd")?.starts_with(&dir));
/// # Ok(()) }
/// # example().unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct FileStores {
    dir: PathBuf,
}

impl FileStores {
    /// The directory `dir` (created `0700` when missing, made absolute now).
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, StoreError> {
        let dir = std::path::absolute(dir.as_ref())?;
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder.create(&dir)?;
        Ok(Self { dir })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The token file of `key`.
    pub fn path_for<K: LoginKey>(&self, key: &K) -> Result<PathBuf, StoreError> {
        let name = key.store_name();
        let mut file = String::with_capacity("login-.json".len() + name.len());
        file.push_str("login-");
        for byte in name.bytes() {
            if byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_' {
                file.push(char::from(byte));
            } else {
                file.push_str(&format!("%{byte:02X}"));
            }
        }
        if file.len() - "login-".len() > MAX_FILE_KEY_LEN {
            return Err(StoreError::Unsafe(format!(
                "a key's encoded name is {} bytes, more than a file name holds ({MAX_FILE_KEY_LEN})",
                file.len() - "login-".len()
            )));
        }
        file.push_str(".json");
        Ok(self.dir.join(file))
    }
}

impl<K: LoginKey> KeyedStore<K> for FileStores {
    fn store_for(&self, key: &K) -> Result<Arc<dyn TokenStore>, StoreError> {
        Ok(Arc::new(FileStore::open(self.path_for(key)?)?))
    }
}

/// A shared store whose keyed stores are its own kind at `<this store's key><name>`, over the
/// same connection, with the same lock lease: the Redis and PostgreSQL stores.
#[cfg(any(feature = "redis", feature = "postgres"))]
macro_rules! keyed_by_key_prefix {
    ($store:ty) => {
        impl<K: LoginKey> KeyedStore<K> for $store {
            /// The store at `<this store's key><name>` over this store's connection, with its
            /// lock lease.
            fn store_for(&self, key: &K) -> Result<Arc<dyn TokenStore>, StoreError> {
                let name = format!("{}{}", self.key(), key.store_name());
                Ok(Arc::new(self.for_key(name)))
            }

            fn lock_lease(&self) -> Option<Duration> {
                TokenStore::lock_lease(self)
            }
        }
    };
}

#[cfg(feature = "redis")]
keyed_by_key_prefix!(super::RedisStore);
#[cfg(feature = "postgres")]
keyed_by_key_prefix!(super::PostgresStore);

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Any key stays in the directory, as one plain file name, and distinct keys get
        /// distinct files.
        #[test]
        fn file_names_stay_inside_and_apart(a in any::<String>(), b in any::<String>()) {
            let stores = FileStores { dir: PathBuf::from("/base/dir") };
            match (stores.path_for(&a), stores.path_for(&b)) {
                (Ok(pa), Ok(pb)) => {
                    prop_assert_eq!(pa.parent(), Some(Path::new("/base/dir")));
                    let name = pa.file_name().and_then(|n| n.to_str()).unwrap_or_default();
                    prop_assert!(name.starts_with("login-") && name.ends_with(".json"));
                    prop_assert!(!name[..name.len() - 5].contains('.'));
                    prop_assert_eq!(a == b, pa == pb);
                }
                (Err(_), _) | (_, Err(_)) => {
                    prop_assert!(a.len() * 3 > MAX_FILE_KEY_LEN || b.len() * 3 > MAX_FILE_KEY_LEN);
                }
            }
        }
    }

    #[test]
    fn traversal_is_encoded() {
        let stores = FileStores {
            dir: PathBuf::from("/d"),
        };
        let path = stores.path_for(&"../../etc/passwd").unwrap();
        assert_eq!(
            path,
            Path::new("/d/login-%2E%2E%2F%2E%2E%2Fetc%2Fpasswd.json")
        );
        assert!(stores.path_for(&"x".repeat(MAX_FILE_KEY_LEN + 1)).is_err());
        assert!(stores.path_for(&"x".repeat(MAX_FILE_KEY_LEN)).is_ok());
    }
}
