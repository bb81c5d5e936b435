//! [`DiskSpace`]: the free space of the data directory's file system, and the floor below which
//! the embedded bank stops taking new work.
//!
//! A full disk must not stop a bank all at once. Below the floor (`min_free` bytes, the server's
//! `BANK_DATA_DIR_MIN_FREE_MB`) the server refuses *new* writes (transfers, deposits, sign-ups,
//! statement runs) with a retryable 503, while what keeps the bank answering goes on in the room
//! left: reads and their audit records, sign-ins, and the settlement of transfers already
//! accepted. Once space is freed above the floor, writes are taken again; nothing restarts.
//!
//! If the disk fills completely anyway (another process took the room), SQLite refuses commits
//! with `SQLITE_FULL`: every such write fails whole and retryable (see `db::rows::db_err`), nothing
//! is half-written, and work resumes by itself once there is room. Reads then answer for as long
//! as their audit records fit in the server's queue (a read that cannot be audited is not served
//! for long).
//!
//! The reading is one `statvfs` call (about a microsecond), taken when asked: no thread, no
//! stale value.

use std::path::{Path, PathBuf};

/// Free space of the file system holding one directory, and the floor under it.
#[derive(Debug, Clone)]
pub struct DiskSpace {
    dir: PathBuf,
    min_free: u64,
}

/// One reading of [`DiskSpace`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpaceReading {
    /// Bytes an unprivileged writer may still use.
    pub free: u64,
    /// Whether `free` is under the floor.
    pub low: bool,
}

impl DiskSpace {
    /// Watches the file system of `dir`; below `min_free` free bytes it is low.
    pub fn new(dir: impl Into<PathBuf>, min_free: u64) -> DiskSpace {
        DiskSpace { dir: dir.into(), min_free }
    }

    /// The directory watched.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The floor, in bytes.
    pub fn min_free(&self) -> u64 {
        self.min_free
    }

    /// Reads the free space now. `None` when the file system cannot tell (the directory is gone,
    /// or a platform without `statvfs`): the caller then goes on as if there were room, and the
    /// database's own `SQLITE_FULL` handling is what remains.
    pub fn read(&self) -> Option<SpaceReading> {
        let free = available_bytes(&self.dir)?;
        Some(SpaceReading { free, low: free < self.min_free })
    }

    /// Whether the free space is under the floor now (`false` when it cannot be read).
    pub fn is_low(&self) -> bool {
        self.read().is_some_and(|reading| reading.low)
    }
}

#[cfg(unix)]
fn available_bytes(dir: &Path) -> Option<u64> {
    let stat = rustix::fs::statvfs(dir).ok()?;
    Some(stat.f_bavail.saturating_mul(stat.f_frsize))
}

#[cfg(not(unix))]
fn available_bytes(_dir: &Path) -> Option<u64> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_floor_above_the_free_space_is_low_and_one_of_zero_never() {
        let dir = tempfile::tempdir().expect("temp dir");
        let free = DiskSpace::new(dir.path(), 0).read().expect("statvfs of a temp dir").free;
        assert!(free > 0);
        assert!(!DiskSpace::new(dir.path(), 0).is_low());
        assert!(DiskSpace::new(dir.path(), u64::MAX).is_low());
        let reading = DiskSpace::new(dir.path(), u64::MAX).read().expect("reading");
        assert!(reading.low && reading.free > 0);
    }

    #[test]
    fn a_missing_directory_reads_as_unknown_not_low() {
        let dir = tempfile::tempdir().expect("temp dir");
        let gone = dir.path().join("gone");
        let space = DiskSpace::new(&gone, u64::MAX);
        assert_eq!(space.read(), None);
        assert!(!space.is_low());
    }
}
