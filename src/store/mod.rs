//! The store: sled for small typed records, content-addressed blobs on the
//! filesystem for checkpoints. It knows nothing about actix or tch.
//!
//! The sled database is opened for one short operation at a time and closed
//! again, so that no command holds sled's exclusive lock for the length of a
//! run and a second terminal can read while a run works.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The schema version this build writes. Older stores are migrated on open;
/// newer ones are refused.
pub const SCHEMA_VERSION: u32 = 1;

const META_TREE: &str = "meta";
const SCHEMA_KEY: &[u8] = b"schema_version";

/// An error from the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another process holds the store's lock for longer than we wait.
    #[error("store {path} is locked by another process (waited {waited_ms} ms); try again when it finishes")]
    Locked {
        /// The store folder.
        path: PathBuf,
        /// How long we retried.
        waited_ms: u128,
    },
    /// The store was written by a newer vpd.
    #[error(
        "store {path} has schema version {found}, newer than this vpd's {supported}; upgrade vpd"
    )]
    NewerSchema {
        /// The store folder.
        path: PathBuf,
        /// Version on disk.
        found: u32,
        /// Version this build understands.
        supported: u32,
    },
    /// A stored record does not decode.
    #[error("corrupt record in {path}, tree `{tree}`: {detail}")]
    CorruptRecord {
        /// The store folder.
        path: PathBuf,
        /// The sled tree.
        tree: String,
        /// What is wrong.
        detail: String,
    },
    /// sled reported an error (or panicked, which we catch).
    #[error("store {path}: database error: {detail}")]
    Db {
        /// The store folder.
        path: PathBuf,
        /// sled's message.
        detail: String,
    },
    /// Filesystem error on a named path.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

/// A handle on a store folder. Cheap: it holds no lock until an operation
/// runs.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
    lock_wait: Duration,
}

impl Store {
    /// Opens (creating when absent) the store at `root`, migrating an older
    /// schema and refusing a newer one.
    pub fn open(root: impl Into<PathBuf>) -> Result<Store, StoreError> {
        let root = root.into();
        for dir in [root.clone(), root.join("blobs")] {
            std::fs::create_dir_all(&dir).map_err(|source| StoreError::Io { path: dir, source })?;
        }
        let wait_ms = std::env::var("VPD_STORE_LOCK_WAIT_MS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(10_000);
        let store = Store {
            root,
            lock_wait: Duration::from_millis(wait_ms),
        };
        store.with_db(|db| store.check_schema(db))?;
        Ok(store)
    }

    /// The store folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn db_path(&self) -> PathBuf {
        self.root.join("db")
    }

    fn db_err(&self, e: impl std::fmt::Display) -> StoreError {
        StoreError::Db {
            path: self.root.clone(),
            detail: e.to_string(),
        }
    }

    /// Runs `f` with the database open, retrying while another process holds
    /// the lock. sled panics (it can, on a corrupt file) become errors.
    pub(crate) fn with_db<T>(
        &self,
        f: impl FnOnce(&sled::Db) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let start = Instant::now();
        let mut pause = Duration::from_millis(5);
        let db = loop {
            let path = self.db_path();
            let opened = std::panic::catch_unwind(move || sled::Config::new().path(path).open());
            match opened {
                Ok(Ok(db)) => break db,
                Ok(Err(e)) if e.to_string().contains("could not acquire lock") => {
                    if start.elapsed() >= self.lock_wait {
                        return Err(StoreError::Locked {
                            path: self.root.clone(),
                            waited_ms: start.elapsed().as_millis(),
                        });
                    }
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(100));
                }
                Ok(Err(e)) => return Err(self.db_err(e)),
                Err(panic) => return Err(self.db_err(panic_message(&panic))),
            }
        };
        let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&db)))
            .unwrap_or_else(|panic| Err(self.db_err(panic_message(&panic))))?;
        db.flush().map_err(|e| self.db_err(e))?;
        Ok(out)
    }

    fn check_schema(&self, db: &sled::Db) -> Result<(), StoreError> {
        let meta = db.open_tree(META_TREE).map_err(|e| self.db_err(e))?;
        let found = match meta.get(SCHEMA_KEY).map_err(|e| self.db_err(e))? {
            None => None,
            Some(v) => {
                let bytes: [u8; 4] =
                    v.as_ref()
                        .try_into()
                        .map_err(|_| StoreError::CorruptRecord {
                            path: self.root.clone(),
                            tree: META_TREE.into(),
                            detail: format!("schema_version is {} bytes, expected 4", v.len()),
                        })?;
                Some(u32::from_be_bytes(bytes))
            }
        };
        match found {
            Some(v) if v > SCHEMA_VERSION => Err(StoreError::NewerSchema {
                path: self.root.clone(),
                found: v,
                supported: SCHEMA_VERSION,
            }),
            Some(v) if v == SCHEMA_VERSION => Ok(()),
            _ => {
                meta.insert(SCHEMA_KEY, &SCHEMA_VERSION.to_be_bytes())
                    .map_err(|e| self.db_err(e))?;
                Ok(())
            }
        }
    }
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    let msg = panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "unknown panic".into());
    format!("sled panicked: {msg}")
}
