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
/// - **Hostile paths.** Neither the token file nor the lock file is opened through a symbolic
///   link (`O_NOFOLLOW`: the check is part of the `open`, so there is no window between checking
///   and opening), and only a regular file is used: a link, a FIFO or a device there is
///   [`StoreError::Unsafe`], for reads and writes alike. A token file owned by another user is
///   refused the same way. A token file readable by the group or others is made `0600` as soon
///   as it is opened (by [`open`](Self::open) or a load), through the open descriptor.
/// - **Bounded waits.** Every filesystem call runs on tokio's blocking pool, so a slow or hung
///   filesystem stalls one pool thread, never the runtime; the session puts timeouts around
///   load, save and lock. Files are opened non-blocking, so a FIFO planted at either path is an
///   immediate error rather than an `open` that waits forever for a writer. (A hung network
///   mount can still pin a pool thread until the kernel gives up; the caller's timeout fires
///   regardless.)
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
    /// are. The token file itself is created by the first save; an existing one is checked now
    /// (see *Hostile paths* above) and made `0600` if others could read it. Fails if `path`
    /// names no file or is a directory, if the directory cannot be created, or with
    /// [`StoreError::Unsafe`].
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
        let paths = Paths {
            lock_path: dir.join(lock_name),
            path,
            dir,
            file_name,
        };
        // Early, readable refusals. The checks that count are repeated on every open.
        drop(open_token_file(&paths.path)?);
        if fs::symlink_metadata(&paths.lock_path).is_ok_and(|m| m.file_type().is_symlink()) {
            return Err(symlink_refused(&paths.lock_path));
        }
        Ok(Self {
            inner: Arc::new(paths),
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
                // Never write through, or over, something that is not our regular file.
                Err(error @ StoreError::Unsafe(_)) => return Err(error),
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
    let Some((file, metadata)) = open_token_file(path)? else {
        return Ok(None);
    };
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

/// Opens the token file for reading, if there is one: never through a symbolic link, only a
/// regular file owned by this user, and made `0600` if others could read it.
fn open_token_file(path: &Path) -> Result<Option<(File, fs::Metadata)>, StoreError> {
    let mut options = OpenOptions::new();
    options.read(true);
    no_follow_no_block(&mut options);
    let file = match options.open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) if is_symlink_refusal(&e) => return Err(symlink_refused(path)),
        Err(e) => return Err(io_error("opening", path, e)),
    };
    let metadata = file.metadata().map_err(|e| io_error("reading", path, e))?;
    if !metadata.is_file() {
        return Err(not_a_regular_file(path));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        check_owner(path, metadata.uid(), rustix::process::geteuid().as_raw())?;
    }
    make_private(path, &file, &metadata);
    Ok(Some((file, metadata)))
}

fn open_lock_file(paths: &Paths) -> Result<File, StoreError> {
    let path = &paths.lock_path;
    let mut options = OpenOptions::new();
    options.read(true).write(true).create(true).truncate(false);
    no_follow_no_block(&mut options);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let file = match options.open(path) {
        Ok(file) => file,
        Err(e) if is_symlink_refusal(&e) => return Err(symlink_refused(path)),
        // A read-only directory or filesystem: an existing lock file still locks read-only.
        Err(error) => {
            let mut read_only = OpenOptions::new();
            read_only.read(true);
            no_follow_no_block(&mut read_only);
            match read_only.open(path) {
                Ok(file) => file,
                Err(e) if is_symlink_refusal(&e) => return Err(symlink_refused(path)),
                Err(_) => return Err(io_error("opening", path, error)),
            }
        }
    };
    let metadata = file.metadata().map_err(|e| io_error("reading", path, e))?;
    if !metadata.is_file() {
        return Err(not_a_regular_file(path));
    }
    Ok(file)
}

/// `O_NOFOLLOW`: opening a symbolic link fails (`ELOOP`) instead of opening its target, as one
/// atomic step, so nobody can swap a link in between a check and the open. `O_NONBLOCK`: opening
/// a FIFO returns at once instead of waiting for a writer (reads of regular files ignore it).
fn no_follow_no_block(options: &mut OpenOptions) {
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::custom_flags(options, libc::O_NOFOLLOW | libc::O_NONBLOCK);
    #[cfg(not(unix))]
    let _ = options;
}

fn is_symlink_refusal(error: &io::Error) -> bool {
    // Linux and macOS report ELOOP; FreeBSD reports EMLINK for O_NOFOLLOW.
    #[cfg(unix)]
    return matches!(error.raw_os_error(), Some(libc::ELOOP | libc::EMLINK));
    #[cfg(not(unix))]
    {
        let _ = error;
        false
    }
}

fn symlink_refused(path: &Path) -> StoreError {
    StoreError::Unsafe(format!(
        "{} is a symbolic link; the token store does not follow links",
        path.display()
    ))
}

fn not_a_regular_file(path: &Path) -> StoreError {
    StoreError::Unsafe(format!("{} is not a regular file", path.display()))
}

/// Refuses a token file that another user owns: they could read or replace its tokens.
#[cfg_attr(not(unix), allow(dead_code))]
fn check_owner(path: &Path, file_uid: u32, our_uid: u32) -> Result<(), StoreError> {
    if file_uid == our_uid {
        return Ok(());
    }
    Err(StoreError::Unsafe(format!(
        "{} is owned by user {file_uid}, not by this process's user {our_uid}",
        path.display()
    )))
}

/// Makes a token file that the group or others could read `0600` at once, through the open
/// descriptor (so it is the file we checked, whatever happens to the path meanwhile).
fn make_private(path: &Path, file: &File, metadata: &fs::Metadata) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = metadata.permissions().mode();
        if mode & 0o077 == 0 {
            return;
        }
        match file.set_permissions(fs::Permissions::from_mode(0o600)) {
            Ok(()) => tracing::warn!(
                path = %path.display(),
                was = format!("{:o}", mode & 0o777),
                "the token file was readable by other users; it is now 0600"
            ),
            Err(error) => tracing::warn!(
                path = %path.display(),
                mode = format!("{:o}", mode & 0o777),
                %error,
                "the token file is readable by other users and could not be made 0600"
            ),
        }
    }
    #[cfg(not(unix))]
    let _ = (path, file, metadata);
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

fn io_error(doing: &str, path: &Path, error: io::Error) -> StoreError {
    StoreError::Io(io::Error::new(
        error.kind(),
        format!("{doing} {}: {error}", path.display()),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_file_of_another_user_is_refused() {
        let path = Path::new("/home/me/tokens.json");
        assert!(check_owner(path, 1000, 1000).is_ok());
        for (file_uid, our_uid) in [(0, 1000), (1001, 1000), (1000, 0)] {
            match check_owner(path, file_uid, our_uid) {
                Err(StoreError::Unsafe(message)) => {
                    assert!(
                        message.contains(&format!("owned by user {file_uid}")),
                        "{message}"
                    );
                    assert!(message.contains("tokens.json"), "{message}");
                }
                other => panic!("{other:?}"),
            }
        }
    }
}
