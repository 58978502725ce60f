//! The synthetic data vpd makes under the store, keyed by its generator
//! config (`<store>/data/<corpus>-n<N>-s<seed>-px<size>-g<version>/`), made
//! once and shared by every run and trial.

use std::path::PathBuf;

use super::synth::{self, Corpus, SynthConfig};
use super::DataError;
use crate::store::{Store, VersionRef};

/// Side of every model input, pixels.
pub const INPUT: u32 = 64;

/// The data a version was trained on, when the store still has it; else
/// the synthetic data of `task` with `n` per split (made when missing).
pub fn data_of_version(
    store: &Store,
    r: Option<&VersionRef>,
    task: Corpus,
    n: usize,
) -> Result<PathBuf, DataError> {
    if let Some(key) = r.and_then(|r| store.resolve(r).ok()).and_then(|v| v.data) {
        let dir = store.root().join("data").join(key);
        if dir.join(".complete").exists() {
            return Ok(dir);
        }
    }
    data_dir(
        store,
        SynthConfig {
            task,
            n,
            seed: 0,
            size: INPUT,
        },
    )
}

/// Where the data of a generator config lives in the store, made when
/// missing (written to a temporary folder, then renamed).
pub fn data_dir(store: &Store, cfg: SynthConfig) -> Result<PathBuf, DataError> {
    let name = format!(
        "{}-n{}-s{}-px{}-g{}",
        cfg.task.as_str(),
        cfg.n,
        cfg.seed,
        cfg.size,
        synth::GENERATOR_VERSION
    );
    let dir = store.root().join("data").join(name);
    if dir.join(".complete").exists() {
        return Ok(dir);
    }
    let tmp = store
        .root()
        .join("data")
        .join(format!(".tmp-{}", uuid::Uuid::now_v7()));
    synth::write(cfg, &tmp, &|_, _| {})?;
    std::fs::write(tmp.join(".complete"), b"").map_err(|source| DataError::Io {
        path: tmp.clone(),
        source,
    })?;
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::rename(&tmp, &dir).map_err(|source| DataError::Io {
        path: dir.clone(),
        source,
    })?;
    Ok(dir)
}
