//! Exclusive locks on files, across threads and processes: what lets two trials run at once
//! (`cargo test --test e2e -- --test-threads 2`, or `cargo nextest run`, one process per trial)
//! share the download cache and `istio-e2e.lock` without losing or tearing each other's writes.
//!
//! A [`FileLock`] is `std::fs::File::lock` on a small guard file beside the thing it protects
//! ([`guard_path`]: `.<name>.guard` in the same directory). The guard is a separate file
//! because the protected files are replaced by renames (so a reader never sees half a file),
//! and a lock on a file that is renamed over would protect the old inode only. Guard files
//! are never deleted (deleting one while another process waits on it would let a third take a
//! second lock on a new file). The lock is released when the [`FileLock`] is dropped, or by the
//! kernel when the process dies, so a crashed run never leaves a stale lock behind.
//!
//! On Linux and macOS the lock is `flock(2)`: it belongs to the open file, so two threads of
//! one process exclude each other as two processes do.

use std::fs::{self, File, TryLockError};
use std::io;
use std::path::{Path, PathBuf};

/// An exclusive lock on a guard file, held until dropped.
#[derive(Debug)]
pub struct FileLock {
    file: File,
    path: PathBuf,
}

/// The guard file that protects `path`: `.<name>.guard` in the same directory.
pub fn guard_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.guard"))
}

impl FileLock {
    /// Takes the exclusive lock on the guard file `guard` (created, with its directory, if
    /// missing), waiting as long as another thread or process holds it. When it has to wait,
    /// it says so in the log, naming `what` the holder is doing.
    pub fn acquire(guard: &Path, what: &str) -> io::Result<FileLock> {
        let lock = FileLock::open(guard)?;
        match lock.file.try_lock() {
            Ok(()) => return Ok(lock),
            Err(TryLockError::Error(e)) => return Err(e),
            Err(TryLockError::WouldBlock) => {}
        }
        tracing::info!(
            "waiting for another istio-e2e thread or process {what} (it holds {})",
            guard.display()
        );
        lock.file.lock()?;
        Ok(lock)
    }

    /// Takes the lock only if nobody holds it: `Ok(None)` when another thread or process does.
    pub fn try_acquire(guard: &Path) -> io::Result<Option<FileLock>> {
        let lock = FileLock::open(guard)?;
        match lock.file.try_lock() {
            Ok(()) => Ok(Some(lock)),
            Err(TryLockError::WouldBlock) => Ok(None),
            Err(TryLockError::Error(e)) => Err(e),
        }
    }

    /// [`FileLock::acquire`] on a blocking thread, for async code: waiting for the lock never
    /// stalls the runtime's workers.
    pub async fn acquire_async(guard: PathBuf, what: String) -> io::Result<FileLock> {
        tokio::task::spawn_blocking(move || FileLock::acquire(&guard, &what))
            .await
            .map_err(|e| io::Error::other(format!("the thread taking a file lock failed: {e}")))?
    }

    /// The guard file this lock holds.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn open(guard: &Path) -> io::Result<FileLock> {
        if let Some(dir) = guard.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir)?;
        }
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(guard)?;
        Ok(FileLock {
            file,
            path: guard.to_path_buf(),
        })
    }
}

/// Appends `text` to the file at `path` (created if missing) under an exclusive lock on that
/// file, so appends by trials running at once (each writing to `$GITHUB_STEP_SUMMARY`) never
/// interleave. A file only ever appended to is never renamed over, so it is its own guard.
pub fn append_locked(path: &Path, text: &[u8]) -> io::Result<()> {
    use std::io::Write;
    let mut file = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    file.lock()?;
    file.write_all(text)?;
    file.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    #[test]
    fn the_guard_sits_beside_the_file_it_protects() {
        assert_eq!(
            guard_path(Path::new("/r/istio-e2e.lock")),
            PathBuf::from("/r/.istio-e2e.lock.guard")
        );
        assert_eq!(
            guard_path(Path::new("istio-e2e.lock")),
            PathBuf::from(".istio-e2e.lock.guard")
        );
    }

    #[test]
    fn locked_appends_from_many_threads_never_interleave() {
        let tmp = tempfile::tempdir().unwrap();
        let summary = tmp.path().join("summary.md");
        // Lines far larger than a pipe buffer or a page, so an unlocked append could split.
        let line = |t: usize| format!("{}\n", t.to_string().repeat(200_000));
        std::thread::scope(|s| {
            for t in 0..4 {
                let (summary, line) = (&summary, &line);
                s.spawn(move || append_locked(summary, line(t).as_bytes()).unwrap());
            }
        });
        let text = fs::read_to_string(&summary).unwrap();
        let mut lines: Vec<&str> = text.lines().collect();
        lines.sort();
        let want: Vec<String> = (0..4).map(|t| line(t).trim_end().to_string()).collect();
        assert_eq!(lines, want);
    }

    #[test]
    fn a_held_lock_blocks_the_second_taker_until_it_is_dropped() {
        let tmp = tempfile::tempdir().unwrap();
        let guard = tmp.path().join("sub").join(".x.guard");
        let first = FileLock::acquire(&guard, "testing").unwrap();
        assert_eq!(first.path(), guard);
        // Another open file (as another thread or process has) cannot take it meanwhile.
        assert!(FileLock::try_acquire(&guard).unwrap().is_none());
        let (tx, rx) = mpsc::channel();
        let g2 = guard.clone();
        let waiter = std::thread::spawn(move || {
            let second = FileLock::acquire(&g2, "testing").unwrap();
            tx.send(()).unwrap();
            drop(second);
        });
        // Still held: the waiter cannot have it.
        assert!(FileLock::try_acquire(&guard).unwrap().is_none());
        assert_eq!(rx.try_recv(), Err(mpsc::TryRecvError::Empty));
        drop(first);
        rx.recv().unwrap();
        waiter.join().unwrap();
        // Released by both: free again.
        assert!(FileLock::try_acquire(&guard).unwrap().is_some());
    }
}
