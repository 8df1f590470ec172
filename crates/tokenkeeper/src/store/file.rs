//! [`FileStore`]: one JSON file shared by every process of one machine.

use super::format;
use super::{StoreError, StoreLock, StoredTokens, TokenStore};
use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, SystemTime};

/// Temp files older than this, left behind by a writer that crashed, are removed by the next
/// process that takes the lock.
const STALE_TEMP_AGE: Duration = Duration::from_secs(10);

/// Tokens in a JSON file, shared safely by every process on the machine that opens the same path.
///
/// - **Atomic writes.** [`save`](TokenStore::save) writes a temp file in the same directory
///   (created with mode `0600`), fsyncs it, renames it over the file and fsyncs the directory.
///   A reader — or a process killed at any instant — sees the old pair or the new one, never a
///   mix or a truncated file.
/// - **Cross-process refresh lock.** [`lock`](TokenStore::lock) takes an exclusive advisory lock
///   (`flock`, via `fs4`) on a separate file, `<path>.lock`, which is never replaced or removed.
///   The session holds it around every refresh and re-reads the file under it, so of several
///   processes meeting the same expiry one refreshes and the others adopt its pair. A process
///   that dies holding the lock releases it with its file descriptors. Waiting for the lock
///   polls without blocking the runtime and is cancellation-safe.
/// - **No silent loss.** A newer generation on disk is never overwritten by an older one
///   ([`StoreError::StaleWrite`]). An unreadable file is reported as [`StoreError::Corrupt`]
///   (never a panic); a refresh that finds it reports the failure as
///   [`Event::StoreFailed`](crate::Event::StoreFailed) before writing a good pair over it, and
///   [`Session::sign_in`](crate::Session::sign_in) replaces it, which is the user's explicit act.
/// - **Secrets.** The file is `0600`; the serialized buffer is zeroed after use; no error or
///   `Debug` output contains a token.
///
/// The format is versioned: `{"version":1,"generation":…,"access_token":…,"refresh_token":…,
/// "received_at_ms":…,"expires_at_ms":…}`. A file of another version is refused as corrupt.
///
/// Keep the file on a local filesystem: advisory locks over NFS are unreliable.
///
/// ```no_run
/// # fn example() -> Result<(), tokenkeeper::store::StoreError> {
/// let store = tokenkeeper::store::FileStore::open("/home/me/.config/myapp/tokens.json")?;
/// # let _ = store; Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct FileStore {
    inner: Arc<Paths>,
    /// Serialises this process's lockers before they compete for the file lock, so in-process
    /// waiters are woken at once rather than by polling.
    local: Arc<tokio::sync::Mutex<()>>,
}

#[derive(Debug)]
struct Paths {
    path: PathBuf,
    lock_path: PathBuf,
    dir: PathBuf,
    file_name: OsString,
}

impl FileStore {
    /// A store at `path` (made absolute against the current directory now).
    ///
    /// Missing parent directories are created with mode `0700`; existing ones are left as they
    /// are. The token file itself is created by the first save. Fails if `path` names no file
    /// or is a directory, or if the directory cannot be created.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let path = std::path::absolute(path.as_ref())
            .map_err(|e| io_error("resolving", path.as_ref(), e))?;
        let Some(file_name) = path.file_name().map(ToOwned::to_owned) else {
            return Err(io_error(
                "opening",
                &path,
                io::Error::new(io::ErrorKind::InvalidInput, "the path names no file"),
            ));
        };
        let dir = path
            .parent()
            .map_or_else(|| PathBuf::from("/"), Path::to_path_buf);
        create_dir_private(&dir).map_err(|e| io_error("creating the directory", &dir, e))?;
        if path.is_dir() {
            return Err(io_error(
                "opening",
                &path,
                io::Error::new(io::ErrorKind::InvalidInput, "the path is a directory"),
            ));
        }
        let mut lock_name = file_name.clone();
        lock_name.push(".lock");
        Ok(Self {
            inner: Arc::new(Paths {
                lock_path: dir.join(lock_name),
                path,
                dir,
                file_name,
            }),
            local: Arc::default(),
        })
    }

    /// The token file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The lock file next to it (`<path>.lock`).
    pub fn lock_path(&self) -> &Path {
        &self.inner.lock_path
    }

    async fn blocking<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Paths) -> Result<T, StoreError> + Send + 'static,
    {
        let paths = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || work(&paths))
            .await
            .map_err(|e| StoreError::Backend(format!("the file store's I/O task failed: {e}")))?
    }
}

#[async_trait::async_trait]
impl TokenStore for FileStore {
    async fn load(&self) -> Result<Option<StoredTokens>, StoreError> {
        self.blocking(read).await
    }

    async fn save(&self, tokens: &StoredTokens) -> Result<(), StoreError> {
        let bytes = format::encode(tokens)?;
        let generation = tokens.generation;
        let tokens = tokens.tokens.clone();
        self.blocking(move |paths| {
            match read(paths) {
                Ok(Some(current)) if current.generation > generation => {
                    return Err(StoreError::StaleWrite {
                        stored: current.generation,
                        attempted: generation,
                    });
                }
                Ok(Some(current)) if current.generation == generation => {
                    if current.tokens.same_secrets(&tokens) {
                        return Ok(());
                    }
                    return Err(StoreError::StaleWrite {
                        stored: current.generation,
                        attempted: generation,
                    });
                }
                Ok(_) => {}
                Err(error @ StoreError::Corrupt(_)) => {
                    tracing::warn!(%error, "replacing the unreadable token file");
                }
                // Reading failed for another reason: the write will say whether the file is usable.
                Err(_) => {}
            }
            write_atomically(paths, &bytes)
        })
        .await
    }

    async fn clear(&self) -> Result<(), StoreError> {
        self.blocking(|paths| match fs::remove_file(&paths.path) {
            Ok(()) => sync_dir(&paths.dir),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_error("removing", &paths.path, e)),
        })
        .await
    }

    async fn lock(&self) -> Result<StoreLock, StoreError> {
        let local = Arc::clone(&self.local).lock_owned().await;
        let file = self.blocking(open_lock_file).await?;
        let mut delay = Duration::from_millis(1);
        loop {
            // LOCK_EX | LOCK_NB: never blocks, so it is fine on the runtime's threads; dropping
            // this future between polls leaves nothing behind.
            match fs4::FileExt::try_lock(&file) {
                Ok(()) => break,
                Err(fs4::TryLockError::WouldBlock) => {}
                Err(fs4::TryLockError::Error(e)) => {
                    return Err(io_error("locking", &self.inner.lock_path, e));
                }
            }
            let jitter = delay.mul_f64(rand::random::<f64>() * 0.5);
            tokio::time::sleep(delay + jitter).await;
            delay = (delay * 2).min(Duration::from_millis(20));
        }
        // Under the lock no cooperating writer is mid-save: temp files are crashed writers' litter.
        let guard = FileLockGuard {
            _file: file,
            _local: local,
        };
        self.blocking(|paths| {
            remove_stale_temps(paths);
            Ok(())
        })
        .await?;
        Ok(StoreLock::new(guard))
    }
}

/// Holds the `flock` (released when the file is closed) and then this process's queue slot.
struct FileLockGuard {
    _file: File,
    _local: tokio::sync::OwnedMutexGuard<()>,
}

fn read(paths: &Paths) -> Result<Option<StoredTokens>, StoreError> {
    let path = &paths.path;
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_error("opening", path, e)),
    };
    let metadata = file.metadata().map_err(|e| io_error("reading", path, e))?;
    warn_if_shared(path, &metadata);
    let len = usize::try_from(metadata.len()).unwrap_or(usize::MAX);
    let mut bytes = secrecy::zeroize::Zeroizing::new(Vec::with_capacity(
        len.min(format::MAX_LEN).saturating_add(1),
    ));
    let limit = u64::try_from(format::MAX_LEN).unwrap_or(u64::MAX) + 1;
    file.take(limit)
        .read_to_end(&mut bytes)
        .map_err(|e| io_error("reading", path, e))?;
    format::decode(&bytes, &path.display().to_string()).map(Some)
}

fn write_atomically(paths: &Paths, bytes: &[u8]) -> Result<(), StoreError> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let mut temp_name = OsString::from(".");
    temp_name.push(&paths.file_name);
    temp_name.push(format!(
        ".{}.{}.{:08x}.tmp",
        std::process::id(),
        NEXT.fetch_add(1, Relaxed),
        rand::random::<u32>()
    ));
    let temp = paths.dir.join(temp_name);
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(&temp)
        .map_err(|e| io_error("creating a temp file in", &paths.dir, e))?;
    let written = file
        .write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|e| io_error("writing", &temp, e));
    drop(file);
    let renamed = written.and_then(|()| {
        fs::rename(&temp, &paths.path).map_err(|e| io_error("replacing", &paths.path, e))
    });
    if let Err(error) = renamed {
        if let Err(e) = fs::remove_file(&temp) {
            tracing::warn!(error = %e, temp = %temp.display(), "could not remove a temp file");
        }
        return Err(error);
    }
    sync_dir(&paths.dir)
}

/// Makes a rename or removal in `dir` durable.
fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    #[cfg(unix)]
    {
        let synced = File::open(dir).and_then(|d| d.sync_all());
        match synced {
            Ok(()) => {}
            // Some filesystems cannot fsync a directory; the rename itself is still atomic.
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::InvalidInput | io::ErrorKind::Unsupported
                ) => {}
            Err(e) => return Err(io_error("syncing", dir, e)),
        }
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

fn open_lock_file(paths: &Paths) -> Result<File, StoreError> {
    let path = &paths.lock_path;
    let mut options = OpenOptions::new();
    options.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(file) => Ok(file),
        // A read-only directory or filesystem: an existing lock file still locks read-only.
        Err(error) => File::open(path).map_err(|_| io_error("opening", path, error)),
    }
}

fn remove_stale_temps(paths: &Paths) {
    let Ok(entries) = fs::read_dir(&paths.dir) else {
        return;
    };
    let mut prefix = OsString::from(".");
    prefix.push(&paths.file_name);
    prefix.push(".");
    let prefix = prefix.to_string_lossy().into_owned();
    let now = SystemTime::now();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if !(name.starts_with(&prefix) && name.ends_with(".tmp")) {
            continue;
        }
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .is_ok_and(|modified| {
                now.duration_since(modified)
                    .is_ok_and(|age| age >= STALE_TEMP_AGE)
            });
        if old && fs::remove_file(entry.path()).is_ok() {
            tracing::debug!(temp = %entry.path().display(), "removed a crashed writer's temp file");
        }
    }
}

/// Creates missing directories as `0700`; leaves existing ones alone.
fn create_dir_private(dir: &Path) -> io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

fn warn_if_shared(path: &Path, metadata: &fs::Metadata) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = metadata.permissions().mode();
        if mode & 0o077 != 0 {
            tracing::warn!(path = %path.display(), mode = format!("{:o}", mode & 0o777), "the token file is readable by other users; it is rewritten as 0600 on the next save");
        }
    }
    #[cfg(not(unix))]
    let _ = (path, metadata);
}

fn io_error(doing: &str, path: &Path, error: io::Error) -> StoreError {
    StoreError::Io(io::Error::new(
        error.kind(),
        format!("{doing} {}: {error}", path.display()),
    ))
}
