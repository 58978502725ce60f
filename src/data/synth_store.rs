//! The synthetic data vpd makes under the store, keyed by its generator
//! config (`<store>/data/<corpus>-n<N>-s<seed>-px<size>-g<version>/`), made
//! once and shared by every run and trial.

use std::path::{Path, PathBuf};

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
    let dir = store.root().join("data").join(&name);
    if dir.join(".complete").exists() {
        return Ok(dir);
    }
    // One process writes it; another that needs it meanwhile waits.
    let _lease = store
        .lease(&format!("data-{name}"), || {
            tracing::info!("{name}: another process is writing it; waiting for it")
        })
        .map_err(|e| DataError::Missing(e.to_string()))?;
    if dir.join(".complete").exists() {
        return Ok(dir);
    }
    let data = store.root().join("data");
    remove_interrupted(&data);
    let tmp = data.join(format!(
        ".tmp-{}-{}",
        std::process::id(),
        uuid::Uuid::now_v7()
    ));
    if let Err(e) = synth::write(cfg, &tmp, &|_, _| {}) {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
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

/// Removes the temporary folders of data generations that were interrupted:
/// `.tmp-<pid>-<id>` whose process is gone (and, from vpd versions that did
/// not name the process, `.tmp-<id>` older than an hour).
fn remove_interrupted(data: &Path) {
    let Ok(entries) = std::fs::read_dir(data) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(".tmp-") else {
            continue;
        };
        let stale = match rest
            .split_once('-')
            .and_then(|(p, _)| p.parse::<u32>().ok())
        {
            Some(pid) => pid != std::process::id() && !alive(pid),
            None => e
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age.as_secs() > 3600),
        };
        if stale {
            tracing::info!(
                "removing interrupted data generation {}",
                e.path().display()
            );
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// Whether a process with this id exists (signal 0 checks without sending).
fn alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: kill with signal 0 sends nothing; it only reports whether the
    // process exists (EPERM: it exists, owned by another user).
    let r = unsafe { libc::kill(pid, 0) };
    r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}
