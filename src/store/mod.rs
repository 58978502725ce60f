//! The store: sled for small typed records, content-addressed blobs on the
//! filesystem for checkpoints. It knows nothing about actix or tch.
//!
//! The sled database is opened for one short operation at a time and closed
//! again, so that no command holds sled's exclusive lock for the length of a
//! run and a second terminal can read while a run works.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::Serialize;

mod blobs;
mod evals;
mod maint;
mod records;
mod runs;
mod versions;

pub use blobs::{sha256_hex, Blobs};
pub use evals::{wilson_interval, CompareRow, Comparison, GateReport, GateRow};
pub(crate) use maint::write_atomic;
pub use maint::{GcReport, MergeReport, Problem, GC_GRACE, GC_GRACE_SECS};
pub use records::{
    AliasEvent, AliasEventKind, CachedProgram, Evaluation, ModuleVersion, NewVersion, Pipeline,
    Run, RunStatus, SlurmTask, Tally,
};
pub use runs::{host_name, process_start_time, NewRun};
pub use versions::{Lineage, LineageNode, VersionRef};

/// The schema version this build writes. Older stores are migrated on open;
/// newer ones are refused.
pub const SCHEMA_VERSION: u32 = 1;

const META_TREE: &str = "meta";
/// version id -> [`ModuleVersion`]
pub(crate) const VERSIONS: &str = "moduleversion_record";
/// module \0 number(u32 BE) -> version id
pub(crate) const NUMBERS: &str = "moduleversion_number";
/// module -> last number (u32 BE)
pub(crate) const COUNTERS: &str = "module_counter";
/// module \0 alias -> version id
pub(crate) const ALIASES: &str = "alias_target";
/// module \0 alias \0 event id -> [`AliasEvent`]
pub(crate) const HISTORY: &str = "alias_history";
/// run id -> [`Run`]
pub(crate) const RUNS: &str = "run_record";
/// evaluation id -> [`Evaluation`]
pub(crate) const EVALS: &str = "evaluation_record";
/// sha256(pipeline) -> latest evaluation id
pub(crate) const EVAL_INDEX: &str = "evaluation_by_pipeline";
/// sha256(generator \0 text) -> [`CachedProgram`]
pub(crate) const PROGRAMS: &str = "program_cache";
const SCHEMA_KEY: &[u8] = b"schema_version";

/// An error from the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A store that has been used (it has its lock file or blobs) but whose
    /// database is gone: every command refuses it rather than take it for
    /// an empty store (which `gc` would then empty).
    #[error("store at {path} has no database ({path}/db/conf is missing) but has been used (it holds {what}): refusing to treat it as a new, empty store; restore its db/ from a backup{}", if what == "blobs" { "" } else { " (a store that never held anything, e.g. one whose first command was killed, starts afresh once its lock file is removed)" })]
    MissingDatabase {
        /// The store folder.
        path: PathBuf,
        /// What it holds.
        what: String,
    },
    /// A command that only reads was pointed at a folder with no store.
    #[error("no store at {path}: this command only reads a store and makes none (`--store DIR` names the store; `vpd run` or `vpd store import` make one)")]
    NoStore {
        /// The folder.
        path: PathBuf,
    },
    /// Another process holds the store's lock for longer than we wait.
    #[error("store at {path} is locked by another process (waited {waited_ms} ms); try again when it finishes")]
    Locked {
        /// The store folder.
        path: PathBuf,
        /// How long we retried.
        waited_ms: u128,
    },
    /// The store was written by a newer vpd.
    #[error(
        "store at {path} has schema version {found}, newer than this vpd's {supported}; upgrade vpd"
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
    #[error("store at {path}: database error: {detail}")]
    Db {
        /// The store folder.
        path: PathBuf,
        /// sled's message.
        detail: String,
    },
    /// A checkpoint blob is referenced but absent.
    #[error("blob {hash} is missing ({path})")]
    BlobMissing {
        /// Its hash.
        hash: String,
        /// Where it should be.
        path: PathBuf,
    },
    /// A blob's content does not match its hash: it is corrupt.
    #[error("blob {path} is corrupt: content hashes to {actual}, expected {expected}")]
    BlobHashMismatch {
        /// The file.
        path: PathBuf,
        /// Its name.
        expected: String,
        /// What its bytes hash to.
        actual: String,
    },
    /// No version of that module exists.
    #[error("unknown module `{module}` (known: {known})")]
    UnknownModule {
        /// What was asked for.
        module: String,
        /// Modules that have versions.
        known: String,
    },
    /// The module exists, the reference does not resolve.
    #[error("{module} has no version or alias `{reference}` ({known})")]
    UnknownVersion {
        /// The module.
        module: String,
        /// The number or alias asked for.
        reference: String,
        /// What exists.
        known: String,
    },
    /// No run with that id or prefix.
    #[error("no run matches `{0}`")]
    UnknownRun(String),
    /// A prefix names several runs.
    #[error("`{prefix}` matches {count} runs; give more of the id")]
    AmbiguousRun {
        /// The prefix.
        prefix: String,
        /// How many match.
        count: usize,
    },
    /// A name with characters the store does not accept.
    #[error(
        "invalid {what} `{name}`: use letters, digits, `-`, `_` and `.`, not starting with a digit"
    )]
    InvalidName {
        /// module or alias.
        what: &'static str,
        /// The name.
        name: String,
    },
    /// The operation is refused; the message says why.
    #[error("{0}")]
    Refused(String),
    /// Filesystem error on a named path.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

/// An exclusive lease on making one thing in a store (a version that a run
/// pre-trains, a synthetic data set): an advisory lock on
/// `leases/NAME.lock` in the store folder, held until dropped. The lock goes
/// with the process that holds it, also when it is killed.
#[derive(Debug)]
pub struct Lease(#[allow(dead_code)] std::fs::File);

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
        if !root.join("db").join("conf").exists() {
            // sled writes db/conf when it creates a database; a store that
            // was used before (lock file, blobs) without it has lost it.
            let blobs = std::fs::read_dir(root.join("blobs"))
                .map(|d| d.count())
                .unwrap_or(0);
            if blobs > 0 || root.join("lock").exists() {
                return Err(StoreError::MissingDatabase {
                    path: root,
                    what: if blobs > 0 {
                        "blobs".into()
                    } else {
                        "its lock file".into()
                    },
                });
            }
        }
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

    /// The store at `root`, which must exist: a command that only reads
    /// (listing, showing, reporting, verifying, exporting) makes no store
    /// where none is, and says so naming the folder.
    pub fn open_existing(root: impl Into<PathBuf>) -> Result<Store, StoreError> {
        let root = root.into();
        let used = ["db", "lock", "blobs"]
            .iter()
            .any(|p| root.join(p).exists());
        if !used {
            return Err(StoreError::NoStore { path: root });
        }
        Store::open(root)
    }

    /// The store folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Takes the lease on making `name` (a file name), waiting while
    /// another process holds it; `on_wait` is called once before waiting.
    pub fn lease(&self, name: &str, on_wait: impl FnOnce()) -> Result<Lease, StoreError> {
        use fs2::FileExt;
        let dir = self.root.join("leases");
        let path = dir.join(format!("{name}.lock"));
        let io = |source: std::io::Error| StoreError::Io {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(&dir).map_err(io)?;
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io)?;
        if f.try_lock_exclusive().is_err() {
            on_wait();
            f.lock_exclusive().map_err(io)?;
        }
        Ok(Lease(f))
    }

    fn db_path(&self) -> PathBuf {
        self.root.join("db")
    }

    /// The blob folder.
    pub fn blobs(&self) -> Blobs {
        Blobs::new(self.root.join("blobs"))
    }

    pub(crate) fn db_err(&self, e: impl std::fmt::Display) -> StoreError {
        StoreError::Db {
            path: self.root.clone(),
            detail: e.to_string(),
        }
    }

    /// Runs `f` with the database open, retrying while another process holds
    /// the lock. sled panics (it can, on a corrupt file) become errors.
    ///
    /// Every vpd process first takes an exclusive `flock` on `<store>/lock`
    /// and only then opens sled. Holding it, no other vpd process can be
    /// inside sled, so a `snap.*.generating` file in `db/` is the leftover of
    /// a process killed while sled wrote its snapshot (sled writes one on
    /// every open). sled 0.34.7 would pick that partial file as the newest
    /// snapshot and fail with "Read corrupted data"; we delete it first.
    pub(crate) fn with_db<T>(
        &self,
        f: impl FnOnce(&sled::Db) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let start = Instant::now();
        let mut pause = Duration::from_millis(2);
        let mut wait = |start: Instant| -> Result<(), StoreError> {
            if start.elapsed() >= self.lock_wait {
                return Err(StoreError::Locked {
                    path: self.root.clone(),
                    waited_ms: start.elapsed().as_millis(),
                });
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(50));
            Ok(())
        };
        let lock_path = self.root.join("lock");
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&lock_path)
            .map_err(|source| StoreError::Io {
                path: lock_path.clone(),
                source,
            })?;
        loop {
            match fs2::FileExt::try_lock_exclusive(&lock) {
                Ok(()) => break,
                Err(e) if e.raw_os_error() == fs2::lock_contended_error().raw_os_error() => {
                    wait(start)?
                }
                Err(source) => {
                    return Err(StoreError::Io {
                        path: lock_path,
                        source,
                    })
                }
            }
        }
        self.remove_partial_snapshots()?;
        let db = loop {
            let path = self.db_path();
            let opened = std::panic::catch_unwind(move || sled::Config::new().path(path).open());
            match opened {
                Ok(Ok(db)) => break db,
                // A process that opened sled without our lock file.
                Ok(Err(e)) if e.to_string().contains("could not acquire lock") => wait(start)?,
                Ok(Err(e)) => return Err(self.db_err(e)),
                Err(panic) => return Err(self.db_err(panic_message(&panic))),
            }
        };
        let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&db)))
            .unwrap_or_else(|panic| Err(self.db_err(panic_message(&panic))))?;
        db.flush().map_err(|e| self.db_err(e))?;
        drop(db);
        drop(lock);
        Ok(out)
    }

    fn remove_partial_snapshots(&self) -> Result<(), StoreError> {
        let dir = self.db_path();
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return Ok(()); // no database yet
        };
        for e in entries.flatten() {
            let name = e.file_name();
            let name = name.to_string_lossy();
            if name.starts_with("snap.") && name.ends_with(".generating") {
                let path = e.path();
                tracing::warn!(
                    "removing a partial sled snapshot left by a killed process: {}",
                    path.display()
                );
                std::fs::remove_file(&path).map_err(|source| StoreError::Io { path, source })?;
            }
        }
        Ok(())
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

/// Encodes a record as a sled value.
pub(crate) fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("store records serialise")
}

impl Store {
    /// Decodes a record, naming the tree and key when it is corrupt.
    pub(crate) fn decode<T: DeserializeOwned>(
        &self,
        tree: &str,
        key: &[u8],
        value: &[u8],
    ) -> Result<T, StoreError> {
        serde_json::from_slice(value).map_err(|e| StoreError::CorruptRecord {
            path: self.root.clone(),
            tree: tree.to_string(),
            detail: format!("key {}: {e}", show_key(key)),
        })
    }

    /// Opens a tree.
    pub(crate) fn tree(&self, db: &sled::Db, name: &str) -> Result<sled::Tree, StoreError> {
        db.open_tree(name).map_err(|e| self.db_err(e))
    }

    /// Every (key, record) of a tree, decoded.
    pub(crate) fn scan<T: DeserializeOwned>(
        &self,
        db: &sled::Db,
        tree: &str,
        prefix: &[u8],
    ) -> Result<Vec<(Vec<u8>, T)>, StoreError> {
        let t = self.tree(db, tree)?;
        let mut out = Vec::new();
        for kv in t.scan_prefix(prefix) {
            let (k, v) = kv.map_err(|e| self.db_err(e))?;
            out.push((k.to_vec(), self.decode(tree, &k, &v)?));
        }
        Ok(out)
    }

    /// Maps a sled transaction result to ours.
    pub(crate) fn tx<T>(
        &self,
        r: Result<T, sled::transaction::TransactionError<StoreError>>,
    ) -> Result<T, StoreError> {
        r.map_err(|e| match e {
            sled::transaction::TransactionError::Abort(e) => e,
            sled::transaction::TransactionError::Storage(e) => self.db_err(e),
        })
    }
}

/// A key for messages: text where printable, else hex.
pub(crate) fn show_key(key: &[u8]) -> String {
    if key.len() == 16 {
        if let Ok(u) = uuid::Uuid::from_slice(key) {
            return u.to_string();
        }
    }
    if key
        .iter()
        .all(|b| b.is_ascii_graphic() || *b == b' ' || *b == 0)
    {
        String::from_utf8_lossy(key).replace('\0', "/")
    } else {
        hex::encode(key)
    }
}

/// Checks a module or alias name.
pub(crate) fn check_name(what: &'static str, name: &str) -> Result<(), StoreError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(StoreError::InvalidName {
            what,
            name: name.to_string(),
        })
    }
}

/// `a \0 b \0 ...` as a key.
pub(crate) fn key(parts: &[&[u8]]) -> Vec<u8> {
    let mut k = Vec::new();
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            k.push(0);
        }
        k.extend_from_slice(p);
    }
    k
}

/// The user to record in history entries.
pub(crate) fn who() -> String {
    std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .ok()
        .filter(|u| !u.is_empty())
        .or_else(user_from_passwd)
        .unwrap_or_else(|| "unknown".into())
}

/// The name of this process's real uid, from `/etc/passwd`.
fn user_from_passwd() -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let uid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))?
        .split_whitespace()
        .next()?
        .to_string();
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|l| {
        let mut f = l.split(':');
        let name = f.next()?;
        (f.nth(1)? == uid).then(|| name.to_string())
    })
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    let msg = panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "unknown panic".into());
    format!("sled panicked: {msg}")
}
