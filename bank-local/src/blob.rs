//! [`FileBlobStore`]: the [`BlobStore`] as write-once files in one directory, with the same
//! contract as [`bank_core::memory::blob::MemoryBlobStore`] and the same URL signing
//! ([`UrlSigner`], shared from `bank-core`, not copied).
//!
//! # Layout
//! ```text
//! <dir>/signing.key                         32 random bytes (0o600), made once, kept across restarts
//! <dir>/objects/<seg>.d/…/<last>.obj        the object's bytes (0o444)
//! <dir>/objects/<seg>.d/…/<last>.obj.meta.json   its BlobMeta as JSON (0o444): the commit point
//! ```
//! Each `/`-separated key segment is a directory named `<seg>.d`, and the last segment a file
//! named `<last>.obj`. The suffixes are why the layout is not simply `objects/<key>`: S3 lets
//! `a` and `a/b` both exist, and a key may itself end in `.meta.json` or look like a temporary
//! file, so raw names would collide. A segment longer than [`SEGMENT_CHUNK_LEN_MAX`] is split
//! into directories named `<chunk>.c` (continuations) so no file name passes the usual 255-byte
//! limit. Temporary files are named `.tmp-<uuid>.tmp`, which no suffix above can produce.
//!
//! # Durability and consistency
//! Every file is written to a temporary file in its final directory, fsynced, made read-only,
//! renamed into place, and the directory fsynced; new directories are fsynced into their parent.
//! The object is written before its sidecar and deleted after it, so an object exists exactly
//! when its sidecar does; a crash can leave only an orphan `.obj` (overwritten by the next put
//! of that key) or a temporary file. Reads check size and SHA-256 against the sidecar and
//! report a mismatch as a non-retryable [`Error::Storage`] naming the key.
//!
//! Within one process, writes (`put`, `delete`) are serialized and exclude reads by one
//! `RwLock`; two processes must not open the same directory. All file I/O runs on tokio's
//! blocking pool.

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use bank_core::blob::{BLOB_BYTES_MAX, BlobMeta, check_key};
use bank_core::clock::Clock;
use bank_core::memory::blob::{
    UrlSigner, check_deletable, check_expires_in, check_list, check_put, replay_or_refuse, sha256_hex,
};
use bank_core::ports::BlobStore;
use bank_core::{Error, Result};
use chrono::{DateTime, TimeDelta, Utc};
use tokio::sync::RwLock;

/// Length of the URL signing secret in `signing.key`.
pub const SIGNING_KEY_BYTES: usize = 32;
/// Longest piece of a key segment stored as one file or directory name (plus a suffix of at
/// most 14 bytes, under the common 255-byte name limit).
pub const SEGMENT_CHUNK_LEN_MAX: usize = 200;
/// Largest metadata sidecar read (a `BlobMeta` is a few hundred bytes).
const META_BYTES_MAX: u64 = 16 * 1024;

const SIGNING_KEY_FILE: &str = "signing.key";
const OBJECTS_DIR: &str = "objects";
const DIR_SUFFIX: &str = ".d";
const CONTINUATION_SUFFIX: &str = ".c";
const OBJECT_SUFFIX: &str = ".obj";
const META_SUFFIX: &str = ".obj.meta.json";

/// Write-once objects with retention as files under one directory.
#[derive(Debug)]
pub struct FileBlobStore {
    objects: PathBuf,
    clock: Arc<dyn Clock>,
    signer: UrlSigner,
    /// Writers exclusive, readers shared: a reader never sees a half-finished put or delete.
    lock: RwLock<()>,
}

impl FileBlobStore {
    /// Opens (creating if needed) the store in `dir`, reading time from `clock` and signing
    /// URLs under `base_url` with the key kept in `<dir>/signing.key`.
    pub async fn open(dir: &Path, clock: Arc<dyn Clock>, base_url: String) -> Result<Self> {
        let dir = dir.to_path_buf();
        let (objects, secret) = blocking(move || {
            fs::create_dir_all(&dir).map_err(|e| io_error("creating blob directory", &dir, e))?;
            create_dirs(&dir, Path::new(OBJECTS_DIR))?;
            let secret = load_or_create_secret(&dir)?;
            Ok((dir.join(OBJECTS_DIR), secret))
        })
        .await?;
        Ok(FileBlobStore { objects, clock, signer: UrlSigner::new(secret, base_url), lock: RwLock::new(()) })
    }

    /// The URL signer, to verify URLs this store handed out.
    pub fn signer(&self) -> &UrlSigner {
        &self.signer
    }

    /// Verifies a URL from [`BlobStore::presign_get`] against the store's clock; returns the key.
    pub fn verify_url(&self, url: &str) -> Result<String> {
        self.signer.verify_url(url, self.clock.now())
    }
}

#[async_trait]
impl BlobStore for FileBlobStore {
    async fn put(
        &self,
        key: &str,
        bytes: Vec<u8>,
        content_type: &str,
        retain_until: DateTime<Utc>,
    ) -> Result<BlobMeta> {
        check_put(key, bytes.len(), content_type)?;
        let sha256 = sha256_hex(&bytes);
        let _write = self.lock.write().await;
        let now = self.clock.now();
        let meta = BlobMeta {
            key: key.to_owned(),
            sha256,
            size: bytes.len() as u64,
            content_type: content_type.to_owned(),
            created_at: now,
            retain_until,
        };
        let root = self.objects.clone();
        blocking(move || {
            if let Some(existing) = read_meta(&root, &meta.key)? {
                return replay_or_refuse(&existing, &meta.sha256, now);
            }
            let object = object_path(&meta.key);
            write_atomically(&root, &object, &bytes, 0o444)?;
            let json = serde_json::to_vec(&meta).map_err(|e| Error::storage(e, false))?;
            write_atomically(&root, &sidecar_of(&object), &json, 0o444)?;
            Ok(meta)
        })
        .await
    }

    async fn get(&self, key: &str) -> Result<(BlobMeta, Vec<u8>)> {
        check_key(key)?;
        let _read = self.lock.read().await;
        let (root, key) = (self.objects.clone(), key.to_owned());
        blocking(move || {
            let meta = read_meta(&root, &key)?.ok_or_else(|| Error::BlobNotFound(key.clone()))?;
            let bytes = read_object(&root, &meta)?;
            Ok((meta, bytes))
        })
        .await
    }

    async fn head(&self, key: &str) -> Result<BlobMeta> {
        check_key(key)?;
        let _read = self.lock.read().await;
        let (root, key) = (self.objects.clone(), key.to_owned());
        blocking(move || read_meta(&root, &key)?.ok_or(Error::BlobNotFound(key))).await
    }

    async fn delete(&self, key: &str) -> Result<()> {
        check_key(key)?;
        let _write = self.lock.write().await;
        let now = self.clock.now();
        let (root, key) = (self.objects.clone(), key.to_owned());
        blocking(move || {
            let meta = read_meta(&root, &key)?.ok_or_else(|| Error::BlobNotFound(key.clone()))?;
            check_deletable(&meta, now)?;
            let object = root.join(object_path(&key));
            let sidecar = sidecar_of(&object);
            // The sidecar goes first: from then on the object does not exist.
            fs::remove_file(&sidecar).map_err(|e| io_error("deleting", &sidecar, e))?;
            match fs::remove_file(&object) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_error("deleting", &object, e)),
            }
            let parent = object.parent().unwrap_or(&root);
            sync_dir(parent)?;
            prune_empty_dirs(&root, parent);
            Ok(())
        })
        .await
    }

    async fn list(&self, prefix: &str, limit: usize) -> Result<Vec<BlobMeta>> {
        check_list(prefix, limit)?;
        let _read = self.lock.read().await;
        let (root, prefix) = (self.objects.clone(), prefix.to_owned());
        blocking(move || {
            let mut keys = BTreeSet::new();
            walk(&root, &mut String::new(), &prefix, limit, &mut keys)?;
            let mut metas = Vec::with_capacity(keys.len());
            for key in keys {
                // Under the read lock nothing listed can disappear; skip rather than fail if the
                // directory was changed behind the store's back.
                if let Some(meta) = read_meta(&root, &key)? {
                    metas.push(meta);
                }
            }
            Ok(metas)
        })
        .await
    }

    async fn presign_get(&self, key: &str, expires_in: TimeDelta) -> Result<String> {
        check_key(key)?;
        check_expires_in(expires_in)?;
        let _read = self.lock.read().await;
        let (root, owned) = (self.objects.clone(), key.to_owned());
        blocking(move || read_meta(&root, &owned)?.ok_or(Error::BlobNotFound(owned))).await?;
        Ok(self.signer.url(key, self.clock.now() + expires_in))
    }
}

/// Runs file I/O on the blocking pool.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f).await.map_err(|e| Error::storage(format!("blob I/O task failed: {e}"), false))?
}

pub(crate) fn io_error(what: &str, path: &Path, err: io::Error) -> Error {
    use io::ErrorKind::{Interrupted, StorageFull, TimedOut, WouldBlock};
    let retryable = matches!(err.kind(), Interrupted | WouldBlock | TimedOut | StorageFull);
    Error::Storage { message: format!("{what} {}: {err}", path.display()), retryable }
}

fn corrupted(key: &str, what: &str) -> Error {
    Error::Storage { message: format!("object {key} is corrupted: {what}"), retryable: false }
}

/// Splits a key segment into pieces of at most [`SEGMENT_CHUNK_LEN_MAX`] bytes. Keys are ASCII
/// ([`check_key`]), so byte boundaries are character boundaries.
fn chunks(segment: &str) -> impl Iterator<Item = std::borrow::Cow<'_, str>> {
    segment.as_bytes().chunks(SEGMENT_CHUNK_LEN_MAX).map(String::from_utf8_lossy)
}

/// The object file of `key`, relative to the objects directory (see the module docs).
fn object_path(key: &str) -> PathBuf {
    let segments: Vec<&str> = key.split('/').collect();
    let mut path = PathBuf::new();
    for (i, segment) in segments.iter().enumerate() {
        let pieces: Vec<_> = chunks(segment).collect();
        for (j, piece) in pieces.iter().enumerate() {
            let suffix = if j + 1 < pieces.len() {
                CONTINUATION_SUFFIX
            } else if i + 1 < segments.len() {
                DIR_SUFFIX
            } else {
                OBJECT_SUFFIX
            };
            path.push(format!("{piece}{suffix}"));
        }
    }
    path
}

fn sidecar_of(object: &Path) -> PathBuf {
    let mut name = object.as_os_str().to_owned();
    name.push(".meta.json");
    PathBuf::from(name)
}

/// The metadata of `key`, or `None` when there is no such object.
fn read_meta(root: &Path, key: &str) -> Result<Option<BlobMeta>> {
    let path = root.join(sidecar_of(&object_path(key)));
    let file = match File::open(&path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_error("reading", &path, e)),
    };
    let mut json = Vec::new();
    file.take(META_BYTES_MAX + 1).read_to_end(&mut json).map_err(|e| io_error("reading", &path, e))?;
    if json.len() as u64 > META_BYTES_MAX {
        return Err(corrupted(key, "its metadata is oversized"));
    }
    let meta: BlobMeta = serde_json::from_slice(&json).map_err(|_| corrupted(key, "its metadata is unreadable"))?;
    if meta.key != key {
        return Err(corrupted(key, "its metadata names another key"));
    }
    Ok(Some(meta))
}

/// The bytes of the object `meta` describes, checked against its size and SHA-256.
fn read_object(root: &Path, meta: &BlobMeta) -> Result<Vec<u8>> {
    let path = root.join(object_path(&meta.key));
    let file = match File::open(&path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(corrupted(&meta.key, "its data file is missing")),
        Err(e) => return Err(io_error("reading", &path, e)),
    };
    // Read at most one byte past the recorded size (and never past the limit) to bound memory.
    let cap = meta.size.min(BLOB_BYTES_MAX as u64);
    let mut bytes = Vec::with_capacity(usize::try_from(cap).unwrap_or(BLOB_BYTES_MAX));
    file.take(cap + 1).read_to_end(&mut bytes).map_err(|e| io_error("reading", &path, e))?;
    if bytes.len() as u64 != meta.size {
        return Err(corrupted(&meta.key, "its size does not match its metadata"));
    }
    if sha256_hex(&bytes) != meta.sha256 {
        return Err(corrupted(&meta.key, "its SHA-256 does not match its metadata"));
    }
    Ok(bytes)
}

/// Collects into `out` the (at most `limit` smallest) keys under `dir` starting with `prefix`,
/// descending only into directories that can hold such keys.
fn walk(dir: &Path, key_so_far: &mut String, prefix: &str, limit: usize, out: &mut BTreeSet<String>) -> Result<()> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_error("listing", dir, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| io_error("listing", dir, e))?;
        let name = entry.file_name();
        // Names this store did not write (not UTF-8, or without a known suffix) are skipped.
        let Some(name) = name.to_str() else { continue };
        let base_len = key_so_far.len();
        if let Some(last) = name.strip_suffix(META_SUFFIX) {
            key_so_far.push_str(last);
            if key_so_far.starts_with(prefix) && check_key(key_so_far).is_ok() {
                out.insert(key_so_far.clone());
                if out.len() > limit {
                    out.pop_last();
                }
            }
        } else if let Some(descend) = name
            .strip_suffix(DIR_SUFFIX)
            .map(|segment| (segment, "/"))
            .or_else(|| name.strip_suffix(CONTINUATION_SUFFIX).map(|piece| (piece, "")))
        {
            key_so_far.push_str(descend.0);
            key_so_far.push_str(descend.1);
            let may_match = key_so_far.starts_with(prefix) || prefix.starts_with(key_so_far.as_str());
            if may_match && entry.file_type().map_err(|e| io_error("listing", dir, e))?.is_dir() {
                walk(&entry.path(), key_so_far, prefix, limit, out)?;
            }
        }
        key_so_far.truncate(base_len);
    }
    Ok(())
}

/// Creates each missing directory of `rel` under `root`, fsyncing its parent so the new entry
/// survives a crash.
fn create_dirs(root: &Path, rel: &Path) -> Result<()> {
    let mut current = root.to_path_buf();
    for component in rel.components() {
        let parent = current.clone();
        current.push(component);
        match fs::create_dir(&current) {
            Ok(()) => sync_dir(&parent)?,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io_error("creating directory", &current, e)),
        }
    }
    Ok(())
}

/// Removes now-empty directories from `dir` up to (not including) `root`; stops at the first
/// that is not empty. Best effort: a leftover empty directory is harmless.
fn prune_empty_dirs(root: &Path, dir: &Path) {
    let mut current = dir;
    while current != root && current.starts_with(root) {
        if fs::remove_dir(current).is_err() {
            return;
        }
        let Some(parent) = current.parent() else { return };
        let _ = sync_dir(parent);
        current = parent;
    }
}

pub(crate) fn temp_name() -> String {
    format!(".tmp-{}.tmp", uuid::Uuid::now_v7().simple())
}

/// Writes `bytes` to `root/rel` atomically and durably (see the module docs), leaving the file
/// with permissions `mode`.
fn write_atomically(root: &Path, rel: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    let path = root.join(rel);
    let parent = path.parent().unwrap_or(root).to_path_buf();
    if let Some(rel_parent) = rel.parent() {
        create_dirs(root, rel_parent)?;
    }
    let temp = parent.join(temp_name());
    let written = write_file(&temp, bytes, mode).and_then(|()| fs::rename(&temp, &path));
    if let Err(e) = written {
        let _ = fs::remove_file(&temp);
        return Err(io_error("writing", &path, e));
    }
    sync_dir(&parent)
}

/// Creates `path` (which must not exist), writes and fsyncs `bytes`, and sets `mode`.
pub(crate) fn write_file(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    set_mode(&file, mode)?;
    file.sync_all()
}

#[cfg(unix)]
fn set_mode(file: &File, mode: u32) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    file.set_permissions(fs::Permissions::from_mode(mode))
}

#[cfg(not(unix))]
fn set_mode(file: &File, mode: u32) -> io::Result<()> {
    let mut permissions = file.metadata()?.permissions();
    permissions.set_readonly(mode & 0o222 == 0);
    file.set_permissions(permissions)
}

/// Fsyncs a directory so the entries created, renamed or removed in it are durable.
#[cfg(unix)]
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| io_error("syncing directory", dir, e))
}

/// Directories cannot be opened for fsync here; renames are durable once the files are.
#[cfg(not(unix))]
pub(crate) fn sync_dir(_dir: &Path) -> Result<()> {
    Ok(())
}

/// The URL signing secret in `dir/signing.key`, made on first use and reused after.
fn load_or_create_secret(dir: &Path) -> Result<Vec<u8>> {
    let path = dir.join(SIGNING_KEY_FILE);
    match fs::read(&path) {
        Ok(secret) => return checked_secret(&path, secret),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_error("reading", &path, e)),
    }
    // Two v4 UUIDs: 244 bits from the OS-seeded CSPRNG behind uuid's `fast-rng`.
    let mut secret = Vec::with_capacity(SIGNING_KEY_BYTES);
    secret.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
    secret.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
    let temp = dir.join(temp_name());
    write_file(&temp, &secret, 0o600).map_err(|e| io_error("writing", &temp, e))?;
    // A hard link publishes the complete file only if none exists yet: if another opener won
    // the race, its key is the one to use.
    let linked = fs::hard_link(&temp, &path);
    let _ = fs::remove_file(&temp);
    match linked {
        Ok(()) => {
            sync_dir(dir)?;
            Ok(secret)
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            let existing = fs::read(&path).map_err(|e| io_error("reading", &path, e))?;
            checked_secret(&path, existing)
        }
        Err(e) => Err(io_error("creating", &path, e)),
    }
}

fn checked_secret(path: &Path, secret: Vec<u8>) -> Result<Vec<u8>> {
    if secret.len() != SIGNING_KEY_BYTES {
        return Err(Error::Storage {
            message: format!("{} is corrupted: expected {SIGNING_KEY_BYTES} bytes", path.display()),
            retryable: false,
        });
    }
    Ok(secret)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_map_to_distinct_paths_and_back() {
        assert_eq!(object_path("a"), PathBuf::from("a.obj"));
        assert_eq!(object_path("a/b.pdf"), PathBuf::from("a.d/b.pdf.obj"));
        let long = "x".repeat(450);
        let path = object_path(&format!("{long}/y"));
        let names: Vec<_> = path.iter().map(|c| c.to_string_lossy().into_owned()).collect();
        assert_eq!(
            names,
            [
                format!("{}.c", "x".repeat(200)),
                format!("{}.c", "x".repeat(200)),
                format!("{}.d", "x".repeat(50)),
                "y.obj".to_owned()
            ]
        );
        assert!(names.iter().all(|n| n.len() <= 255));
    }
}
