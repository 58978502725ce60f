//! Base checkpoints shipped with vpd (`checkpoints/quickstart/`): the
//! quickstart's students and GQA teacher, made by vpd itself from the
//! quickstart's own `[pretrain]` recipe (`scripts/make-checkpoints.sh`), so
//! that a newcomer's first distillation does not wait minutes of
//! pre-training. A shipped checkpoint is used only when an experiment asks
//! for it (`pretrain.shipped = true`) and its recipe is exactly the one the
//! experiment would train with; it enters the store as an ordinary version
//! whose config is that recipe and whose metrics say where it came from.
//! `tests/it/shipped.rs` re-derives them from their recipe and checks
//! their accuracy.

use serde::Deserialize;

use super::ModelError;
use crate::data::DataError;
use crate::store::{ModuleVersion, NewVersion, Store};

/// The manifest: who made the checkpoints, and each one's record.
#[derive(Debug, Clone, Deserialize)]
pub struct Manifest {
    /// The vpd commit and the machine that made them.
    pub made_by: String,
    /// One per checkpoint.
    pub versions: Vec<Entry>,
}

/// One shipped checkpoint.
#[derive(Debug, Clone, Deserialize)]
pub struct Entry {
    /// The module (`vqa`, `loc`, `gqa-teacher`).
    pub module: String,
    /// The alias it is made for (`base`, `teacher`).
    pub alias: String,
    /// Its file under `checkpoints/quickstart/`.
    pub file: String,
    /// The file's SHA-256.
    pub sha256: String,
    /// The data it was trained on (a synthetic data key).
    pub data: String,
    /// Its recipe (`models::PretrainConfig`, as the store records it).
    pub config: serde_json::Value,
    /// The metrics measured when it was made.
    pub metrics: serde_json::Value,
}

const MANIFEST: &str = include_str!("../../checkpoints/quickstart/manifest.json");

fn bytes_of(file: &str) -> Option<&'static [u8]> {
    Some(match file {
        "vqa.ckpt" => include_bytes!("../../checkpoints/quickstart/vqa.ckpt"),
        "loc.ckpt" => include_bytes!("../../checkpoints/quickstart/loc.ckpt"),
        "gqa-teacher.ckpt" => include_bytes!("../../checkpoints/quickstart/gqa-teacher.ckpt"),
        _ => return None,
    })
}

/// The manifest of the shipped checkpoints.
pub fn manifest() -> Result<Manifest, ModelError> {
    serde_json::from_str(MANIFEST).map_err(|e| {
        ModelError::Data(DataError::Missing(format!(
            "checkpoints/quickstart/manifest.json does not read: {e}"
        )))
    })
}

/// The shipped checkpoint of `module@alias`, with its bytes.
pub fn find(module: &str, alias: &str) -> Result<Option<(Entry, &'static [u8])>, ModelError> {
    Ok(manifest()?
        .versions
        .into_iter()
        .find(|e| e.module == module && e.alias == alias)
        .and_then(|e| bytes_of(&e.file).map(|b| (e, b))))
}

/// A recipe without what does not decide the weights (the device).
pub fn recipe_key(config: &serde_json::Value) -> serde_json::Value {
    let mut c = config.clone();
    if let Some(o) = c.as_object_mut() {
        o.remove("device");
    }
    c
}

/// Commits a shipped checkpoint as the module's next version under its
/// alias, after checking its bytes against the manifest.
pub fn import(store: &Store, e: &Entry, bytes: &[u8]) -> Result<ModuleVersion, ModelError> {
    let got = crate::store::sha256_hex(bytes);
    if got != e.sha256 {
        return Err(ModelError::Data(DataError::Missing(format!(
            "the shipped checkpoint {} has SHA-256 {got}, the manifest says {}: the build carries a damaged file",
            e.file, e.sha256
        ))));
    }
    let made_by = manifest()?.made_by;
    let mut metrics = e.metrics.clone();
    if let Some(o) = metrics.as_object_mut() {
        o.insert(
            "shipped".into(),
            serde_json::json!({"file": format!("checkpoints/quickstart/{}", e.file), "made_by": made_by}),
        );
    }
    let v = store.save_version(
        NewVersion {
            module: e.module.clone(),
            data: Some(e.data.clone()),
            config: e.config.clone(),
            metrics,
            ..Default::default()
        },
        bytes,
        None,
    )?;
    store.set_alias(
        &e.module,
        &e.alias,
        v.id,
        Some(format!(
            "shipped checkpoint checkpoints/quickstart/{} ({made_by})",
            e.file
        )),
    )?;
    Ok(v)
}
