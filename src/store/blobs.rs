//! Content-addressed blobs: `<store>/blobs/sha256/<2 hex>/<62 hex>`.
//! Written to `blobs/tmp/`, fsynced, renamed into place, folder fsynced:
//! a blob is either absent or complete.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::StoreError;

/// sha256 of `bytes`, lower-case hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The blob folder of a store.
#[derive(Debug, Clone)]
pub struct Blobs {
    dir: PathBuf,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl Blobs {
    /// Blobs under `dir` (the store's `blobs/`).
    pub fn new(dir: PathBuf) -> Self {
        Blobs { dir }
    }

    /// Where the blob with this hash lives.
    pub fn path(&self, hash: &str) -> PathBuf {
        let (a, b) = hash.split_at(2.min(hash.len()));
        self.dir.join("sha256").join(a).join(b)
    }

    /// Stores `bytes` (once: equal content is stored once) and returns its
    /// hash.
    pub fn put(&self, bytes: &[u8]) -> Result<String, StoreError> {
        let hash = sha256_hex(bytes);
        let dest = self.path(&hash);
        if dest.exists() && self.get(&hash).is_ok() {
            return Ok(hash);
        }
        let tmp_dir = self.dir.join("tmp");
        fs::create_dir_all(&tmp_dir).map_err(io(&tmp_dir))?;
        let parent = dest.parent().expect("blob path has a parent").to_path_buf();
        fs::create_dir_all(&parent).map_err(io(&parent))?;
        let tmp = tmp_dir.join(format!("{}.{}", uuid::Uuid::now_v7(), std::process::id()));
        {
            let mut f = File::create(&tmp).map_err(io(&tmp))?;
            f.write_all(bytes).map_err(io(&tmp))?;
            f.sync_all().map_err(io(&tmp))?;
        }
        fs::rename(&tmp, &dest).map_err(io(&dest))?;
        File::open(&parent)
            .and_then(|d| d.sync_all())
            .map_err(io(&parent))?;
        Ok(hash)
    }

    /// Reads a blob and checks its hash.
    pub fn get(&self, hash: &str) -> Result<Vec<u8>, StoreError> {
        let path = self.path(hash);
        let bytes = fs::read(&path).map_err(|source| {
            if source.kind() == std::io::ErrorKind::NotFound {
                StoreError::BlobMissing {
                    hash: hash.to_string(),
                    path: path.clone(),
                }
            } else {
                StoreError::Io {
                    path: path.clone(),
                    source,
                }
            }
        })?;
        let actual = sha256_hex(&bytes);
        if actual != hash {
            return Err(StoreError::BlobHashMismatch {
                path,
                expected: hash.to_string(),
                actual,
            });
        }
        Ok(bytes)
    }

    /// Takes the blob `hash` from `other` (another store's blobs): a hard
    /// link where both are on one file system (blobs are never written in
    /// place, so the two stores cannot see each other's changes), else a
    /// copy. Either way its hash is checked first, so a corrupt blob is
    /// refused, not spread.
    pub fn adopt(&self, other: &Blobs, hash: &str) -> Result<(), StoreError> {
        let dest = self.path(hash);
        if dest.exists() && self.get(hash).is_ok() {
            return Ok(());
        }
        let bytes = other.get(hash)?;
        let parent = dest.parent().expect("blob path has a parent").to_path_buf();
        fs::create_dir_all(&parent).map_err(io(&parent))?;
        let _ = fs::remove_file(&dest);
        if fs::hard_link(other.path(hash), &dest).is_ok() {
            return Ok(());
        }
        self.put(&bytes).map(|_| ())
    }

    /// Every blob hash on disk with its size and modification time.
    pub fn list(&self) -> Result<Vec<(String, u64, std::time::SystemTime)>, StoreError> {
        let root = self.dir.join("sha256");
        let mut out = Vec::new();
        let Ok(rd) = fs::read_dir(&root) else {
            return Ok(out);
        };
        for a in rd {
            let a = a.map_err(io(&root))?;
            let a_path = a.path();
            if !a_path.is_dir() {
                continue;
            }
            for b in fs::read_dir(&a_path).map_err(io(&a_path))? {
                let b = b.map_err(io(&a_path))?;
                let meta = b.metadata().map_err(io(&a_path))?;
                let hash = format!(
                    "{}{}",
                    a.file_name().to_string_lossy(),
                    b.file_name().to_string_lossy()
                );
                let mtime = meta.modified().unwrap_or(std::time::UNIX_EPOCH);
                out.push((hash, meta.len(), mtime));
            }
        }
        out.sort();
        Ok(out)
    }

    /// Leftover temporary files (from a process killed mid-write).
    pub fn temp_files(&self) -> Vec<PathBuf> {
        fs::read_dir(self.dir.join("tmp"))
            .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default()
    }
}
