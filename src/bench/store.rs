//! `vpd bench store`: the store's operations against plain-file baselines.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Serialize;

use super::{ms, Spread};
use crate::store::{NewVersion, Store, StoreError, VersionRef};

/// What `vpd bench store` measures.
#[derive(Debug, Serialize)]
pub struct StoreBench {
    /// Checkpoint size used for commit and load, bytes.
    pub checkpoint_bytes: usize,
    /// Committing a checkpoint as a new version (blob write + fsync + rename
    /// + sled transaction + flush), ms.
    pub commit_ms: Spread,
    /// Baseline: writing the same bytes to a file and fsyncing it, ms.
    pub plain_write_fsync_ms: Spread,
    /// commit median / baseline median.
    pub commit_over_plain: f64,
    /// Resolving `MODULE@ALIAS` and reading the checkpoint with its hash
    /// checked, ms.
    pub load_by_alias_ms: Spread,
    /// Baseline: reading the same bytes from a plain file, ms.
    pub plain_read_ms: Spread,
    /// Versions in the lineage module.
    pub lineage_versions: usize,
    /// Time to create them through `save_version`, s.
    pub lineage_setup_s: f64,
    /// Lineage (ancestors + descendants) of the chain's root, ms.
    pub lineage_ms: Spread,
    /// Listing every version, ms.
    pub list_ms: Spread,
    /// Bytes of the store on disk (database and blobs).
    pub store_bytes_on_disk: u64,
    /// Bytes of the sled database alone.
    pub db_bytes_on_disk: u64,
    /// Sum of the unique blobs' sizes.
    pub unique_blob_bytes: u64,
    /// store_bytes_on_disk / unique_blob_bytes.
    pub size_over_blobs: f64,
}

fn dir_size(p: &Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(p) else {
        return 0;
    };
    rd.flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_size(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

fn bytes_for(i: usize, len: usize) -> Vec<u8> {
    // Distinct content per i, so no commit is deduplicated.
    let mut x = (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Runs the benchmark in a fresh store under `work` (removed afterwards).
/// `reps` repetitions of the 10 MB commit/load; `chain` versions for the
/// lineage and listing measurements.
pub fn run(
    work: &Path,
    checkpoint_bytes: usize,
    reps: usize,
    chain: usize,
    progress: &dyn Fn(&str),
) -> Result<StoreBench, StoreError> {
    let root: PathBuf = work.join(format!("vpd-bench-store-{}", uuid::Uuid::now_v7()));
    let result = run_in(&root, checkpoint_bytes, reps, chain, progress);
    let _ = std::fs::remove_dir_all(&root);
    result
}

fn run_in(
    root: &Path,
    size: usize,
    reps: usize,
    chain: usize,
    progress: &dyn Fn(&str),
) -> Result<StoreBench, StoreError> {
    let store = Store::open(root.join("store"))?;
    let plain_dir = root.join("plain");
    std::fs::create_dir_all(&plain_dir).map_err(|source| StoreError::Io {
        path: plain_dir.clone(),
        source,
    })?;
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| StoreError::Io { path, source }
    };
    progress("commit and load of checkpoints against plain files");
    let (mut commit, mut plain, mut load, mut plain_read) = (vec![], vec![], vec![], vec![]);
    for i in 0..reps {
        // Interleaved, each on fresh bytes.
        let a = bytes_for(2 * i, size);
        let b = bytes_for(2 * i + 1, size);
        let t = Instant::now();
        let path = plain_dir.join(format!("ck{i}"));
        let mut f = std::fs::File::create(&path).map_err(io(&path))?;
        f.write_all(&b).map_err(io(&path))?;
        f.sync_all().map_err(io(&path))?;
        plain.push(ms(t));

        let t = Instant::now();
        let v = store.save_version(
            NewVersion {
                module: "vqa".into(),
                ..Default::default()
            },
            &a,
            None,
        )?;
        commit.push(ms(t));
        store.set_alias("vqa", "bench", v.id, None)?;

        let t = Instant::now();
        let back = std::fs::read(&path).map_err(io(&path))?;
        plain_read.push(ms(t));
        assert_eq!(back.len(), size);

        let t = Instant::now();
        let r = store.resolve(&VersionRef {
            module: "vqa".into(),
            reference: "bench".into(),
        })?;
        let back = store.blobs().get(&r.blob)?;
        load.push(ms(t));
        assert_eq!(back, a);
    }

    progress(&format!("creating a lineage of {chain} versions"));
    let t = Instant::now();
    let mut parent = None;
    let mut first = None;
    for i in 0..chain {
        let v = store.save_version(
            NewVersion {
                module: "loc".into(),
                parent,
                ..Default::default()
            },
            &bytes_for(1_000_000 + i, 256),
            None,
        )?;
        first.get_or_insert(v.id);
        parent = Some(v.id);
    }
    let lineage_setup_s = t.elapsed().as_secs_f64();
    progress("lineage and listing");
    let (mut lineage, mut list) = (vec![], vec![]);
    for _ in 0..5 {
        let t = Instant::now();
        let l = store.lineage(&VersionRef {
            module: "loc".into(),
            reference: "1".into(),
        })?;
        lineage.push(ms(t));
        assert!(l.ancestors.is_empty());
        let t = Instant::now();
        let all = store.versions(None)?;
        list.push(ms(t));
        assert_eq!(all.len(), reps + chain);
    }
    let store_bytes_on_disk = dir_size(&root.join("store"));
    let db_bytes_on_disk = dir_size(&root.join("store/db"));
    let unique_blob_bytes: u64 = store.blobs().list()?.iter().map(|(_, s, _)| s).sum();
    let commit = Spread::of(commit);
    let plain = Spread::of(plain);
    Ok(StoreBench {
        checkpoint_bytes: size,
        commit_over_plain: commit.median / plain.median,
        commit_ms: commit,
        plain_write_fsync_ms: plain,
        load_by_alias_ms: Spread::of(load),
        plain_read_ms: Spread::of(plain_read),
        lineage_versions: chain,
        lineage_setup_s,
        lineage_ms: Spread::of(lineage),
        list_ms: Spread::of(list),
        store_bytes_on_disk,
        db_bytes_on_disk,
        unique_blob_bytes,
        size_over_blobs: store_bytes_on_disk as f64 / unique_blob_bytes as f64,
    })
}
