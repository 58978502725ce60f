//! Loading a store version for a slot: a vpd checkpoint or a user's
//! TorchScript module with its sidecar.

use crate::nn::detector::Detector;
use crate::nn::model::{Model, Sidecar};
use crate::nn::perception::{NeuralLoc, NeuralVqa};
use crate::nn::{checkpoint, DeviceChoice, NnError};
use crate::store::{Store, VersionRef};

use super::ModelError;
use crate::vocab::ModelKind;

/// A user's TorchScript sidecar, parsed.
pub fn parse_sidecar(bytes: &[u8]) -> Result<Sidecar, ModelError> {
    serde_json::from_slice(bytes).map_err(|e| NnError::Checkpoint(format!("sidecar: {e}")).into())
}

/// A VQA-kind network of the store: a vpd checkpoint, or a user's
/// TorchScript archive with its sidecar.
pub fn load_model(
    store: &Store,
    r: &VersionRef,
    device: DeviceChoice,
) -> Result<(String, Model), ModelError> {
    let v = store.resolve(r)?;
    let bytes = store.blobs().get(&v.blob)?;
    let label = format!("{}@{}", v.module, v.number);
    let model = match &v.sidecar {
        Some(h) => {
            let side = parse_sidecar(&store.blobs().get(h)?)?;
            Model::from_torchscript(&bytes, &side, device)?
        }
        None => {
            let kind = checkpoint::kind_of(&bytes)?;
            if kind == ModelKind::LocStudent {
                return Err(ModelError::WrongKind {
                    version: label,
                    kind: kind.to_string(),
                    wanted: "VQA",
                });
            }
            Model::from_bytes(&bytes, device)?
        }
    };
    Ok((label, model))
}

/// A VQA network of the store (a student or the GQA teacher) as the
/// interpreter's VQA module.
pub fn load_vqa(
    store: &Store,
    r: &VersionRef,
    device: DeviceChoice,
) -> Result<NeuralVqa, ModelError> {
    let (label, model) = load_model(store, r, device)?;
    if !model.meta.kind.answers_vqa() {
        return Err(ModelError::WrongKind {
            version: label,
            kind: model.meta.kind.to_string(),
            wanted: "VQA",
        });
    }
    Ok(NeuralVqa { model, label })
}

/// A LOC network of the store as the interpreter's LOC module.
pub fn load_loc(
    store: &Store,
    r: &VersionRef,
    device: DeviceChoice,
) -> Result<NeuralLoc, ModelError> {
    let v = store.resolve(r)?;
    let bytes = store.blobs().get(&v.blob)?;
    let label = format!("{}@{}", v.module, v.number);
    let kind = checkpoint::kind_of(&bytes);
    if v.sidecar.is_some() || !matches!(kind, Ok(ModelKind::LocStudent)) {
        return Err(ModelError::WrongKind {
            version: label,
            kind: match (&v.sidecar, kind) {
                (None, Ok(k)) => k.to_string(),
                _ => "TorchScript module".into(),
            },
            wanted: "LOC",
        });
    }
    let detector = Detector::from_bytes(&bytes, device)?;
    Ok(NeuralLoc {
        settings: detector.meta.settings,
        detector,
        label,
    })
}
