//! Loading a store version for a slot: a vpd checkpoint or a user's
//! TorchScript module with its sidecar.

use crate::nn::detector::Detector;
use crate::nn::model::{Model, Sidecar};
use crate::nn::perception::{NeuralLoc, NeuralVqa};
use crate::nn::script_loc::{Locator, ScriptLoc};
use crate::nn::{checkpoint, DeviceChoice, NnError};
use crate::store::{Store, VersionRef};

use super::ModelError;
use crate::vocab::ModelKind;

/// A user's TorchScript sidecar, parsed.
/// An error names the field (`` sidecar `image_size`: invalid type ... ``).
pub fn parse_sidecar(bytes: &[u8]) -> Result<Sidecar, ModelError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." {
            String::new()
        } else {
            format!(" `{path}`")
        };
        NnError::Checkpoint(format!("sidecar{field}: {}", e.inner())).into()
    })
}

/// A sidecar file as the store keeps it: parsed, its `tokenizer` file (a
/// path relative to the sidecar) read, checked and embedded. Returns the
/// sidecar and the bytes to store: the file's own when nothing was
/// embedded, else the sidecar with its tokenizer inside.
pub fn read_sidecar(path: &std::path::Path) -> Result<(Sidecar, Vec<u8>), ModelError> {
    let bytes = crate::nn::model::read_bounded(path, crate::nn::model::MAX_TOKENIZER_BYTES)
        .map_err(|e| NnError::Checkpoint(format!("sidecar {}: {e}", path.display())))?;
    let mut side = parse_sidecar(&bytes)?;
    let before = side.clone();
    side.embed_tokenizer(path.parent().unwrap_or(std::path::Path::new(".")))?;
    if side == before {
        return Ok((side, bytes));
    }
    let stored = serde_json::to_vec_pretty(&side).expect("a sidecar serialises");
    Ok((side, stored))
}

/// A VQA-kind version's network as stored, ready to load in any thread
/// (an actor's): its blob and, for a user's TorchScript module, its
/// parsed sidecar. Every role (student, teacher, the trainer's parent)
/// loads through [`StoredNet::load`], so a user's module works wherever a
/// built-in one does.
#[derive(Debug, Clone)]
pub struct StoredNet {
    /// `module@number`, for errors.
    pub label: String,
    /// The blob: a vpd checkpoint or a TorchScript archive.
    pub bytes: std::sync::Arc<Vec<u8>>,
    /// The sidecar of a TorchScript archive.
    pub sidecar: Option<std::sync::Arc<Sidecar>>,
}

impl StoredNet {
    /// The version's blob and sidecar, read and checked: a LOC checkpoint
    /// is refused (it is not a VQA-kind network).
    pub fn of(store: &Store, v: &crate::store::ModuleVersion) -> Result<StoredNet, ModelError> {
        let bytes = store.blobs().get(&v.blob)?;
        let label = format!("{}@{}", v.module, v.number);
        let sidecar = match &v.sidecar {
            Some(h) => Some(std::sync::Arc::new(parse_sidecar(&store.blobs().get(h)?)?)),
            None => {
                let kind = checkpoint::kind_of(&bytes)?;
                if kind == ModelKind::LocStudent {
                    return Err(ModelError::WrongKind {
                        version: label,
                        kind: kind.to_string(),
                        wanted: "VQA",
                    });
                }
                None
            }
        };
        Ok(StoredNet {
            label,
            bytes: std::sync::Arc::new(bytes),
            sidecar,
        })
    }

    /// The network.
    pub fn load(&self, device: DeviceChoice) -> Result<Model, NnError> {
        match &self.sidecar {
            Some(side) => Model::from_torchscript(&self.bytes, side, device),
            None => Model::from_bytes(&self.bytes, device),
        }
    }
}

/// Checks that a network can play the role its kind names, as its adapter
/// uses it: a GQA teacher takes one image and answers `yes` and `no` (the
/// LOC-verification and existence queries), an NLVR2 teacher takes a pair
/// and answers `true` and `false`, a VQA student takes one image. One
/// error names everything missing; nothing is guessed later.
pub fn check_role(version: &str, meta: &crate::nn::model::ModelMeta) -> Result<(), ModelError> {
    let mut missing = Vec::new();
    let answers: &[&str] = match meta.kind {
        ModelKind::GqaTeacher => &["yes", "no"],
        ModelKind::Nlvr2Teacher => &["true", "false"],
        _ => &[],
    };
    for a in answers {
        if meta.answers.id(a).is_none() {
            missing.push(format!("the answer `{a}`"));
        }
    }
    let pair = meta.kind == ModelKind::Nlvr2Teacher;
    if meta.kind != ModelKind::LocStudent && meta.film.pair != pair {
        missing.push(format!(
            "`pair: {pair}` ({})",
            if pair {
                "it judges a statement about two images"
            } else {
                "it answers about one image"
            }
        ));
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(ModelError::Role {
            version: version.to_string(),
            kind: meta.kind.to_string(),
            missing: missing.join(" and "),
        })
    }
}

/// A VQA-kind network of the store: a vpd checkpoint, or a user's
/// TorchScript archive with its sidecar.
pub fn load_model(
    store: &Store,
    r: &VersionRef,
    device: DeviceChoice,
) -> Result<(String, Model), ModelError> {
    let v = store.resolve(r)?;
    let net = StoredNet::of(store, &v)?;
    let model = net.load(device)?;
    Ok((net.label, model))
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
    if let Some(h) = &v.sidecar {
        let side = parse_sidecar(&store.blobs().get(h)?)?;
        if side.kind == ModelKind::LocStudent {
            let loc = ScriptLoc::load(&bytes, &side, device)?;
            return Ok(NeuralLoc {
                settings: loc.settings,
                detector: Locator::Script(loc),
                label,
            });
        }
    }
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
        detector: Locator::Builtin(Box::new(detector)),
        label,
    })
}
