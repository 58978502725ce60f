//! Pre-training the built-in networks on the synthetic data: the VQA
//! student on the generic corpus, the teachers on their task's train split.
//! Results become module versions in the store (alias `base` for students,
//! `teacher` for teachers). Plain data in, plain data out: the networks
//! live in `nn`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;

use crate::data::images::{decode, to_model_input};
use crate::data::synth::{self, GenericRecord, SynthConfig, Task};
use crate::data::world::{plural, COLORS, RELATIONS, SHAPES, SIZES};
use crate::data::{gqa, nlvr2, DataError};
use crate::nn::detector::{
    DetExample, DetTrainReport, DetectSettings, Detector, DetectorConfig, DetectorMeta, PrCounts,
};
use crate::nn::film::FilmConfig;
use crate::nn::model::{Example, Model, ModelMeta, Sidecar, TrainConfig, TrainReport};
use crate::nn::perception::{NeuralLoc, NeuralVqa};
use crate::nn::text::{Answers, Tokenizer};
use crate::nn::{checkpoint, DeviceChoice, NnError};
use crate::store::{ModuleVersion, NewVersion, Store, StoreError, VersionRef};

/// Side of every model input, pixels.
pub const INPUT: u32 = 64;

/// An error while pre-training.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// Data.
    #[error(transparent)]
    Data(#[from] DataError),
    /// Network.
    #[error(transparent)]
    Nn(#[from] NnError),
    /// Store.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A version of another kind of network than the slot takes.
    #[error("{version} is a {kind}, not a {wanted} module")]
    WrongKind {
        /// `module@number`.
        version: String,
        /// What its checkpoint holds.
        kind: String,
        /// `VQA` or `LOC`.
        wanted: &'static str,
    },
}

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
            if kind == "loc-student" {
                return Err(ModelError::WrongKind {
                    version: label,
                    kind,
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
    if !["vqa-student", "gqa-teacher"].contains(&model.meta.kind.as_str()) {
        return Err(ModelError::WrongKind {
            version: label,
            kind: model.meta.kind.clone(),
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
    let kind = checkpoint::kind_of(&bytes).unwrap_or_else(|_| "TorchScript module".into());
    if kind != "loc-student" || v.sidecar.is_some() {
        return Err(ModelError::WrongKind {
            version: label,
            kind,
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

/// The answer vocabulary shared by students and the GQA teacher.
pub fn answers() -> Answers {
    let mut list: Vec<String> = Vec::new();
    list.extend(COLORS.iter().map(|s| s.to_string()));
    list.extend(SHAPES.iter().map(|s| s.to_string()));
    list.extend(SIZES.iter().map(|s| s.to_string()));
    list.extend(["yes", "no"].map(String::from));
    list.extend((0..=6).map(|n| n.to_string()));
    list.extend(["left", "right", "top", "bottom", "color", "size"].map(String::from));
    Answers { list }
}

/// Words every model knows besides those of its training texts.
fn world_words() -> String {
    let mut w: Vec<String> = Vec::new();
    for s in SHAPES {
        w.push(s.into());
        w.push(plural(s));
    }
    w.extend(
        COLORS
            .iter()
            .chain(SIZES.iter())
            .chain(RELATIONS.iter())
            .map(|s| s.to_string()),
    );
    w.push("what color shape size is it this the there a an in image how many are object side which on do have same different common contains exactly more than all each total at least one left right both or and of".into());
    w.join(" ")
}

/// Settings of a pre-training run.
#[derive(Debug, Clone, Serialize)]
pub struct PretrainConfig {
    /// Examples per split of the synthetic data it trains on.
    pub n: usize,
    /// Data seed.
    pub data_seed: u64,
    /// Training.
    pub train: TrainConfig,
    /// Device.
    pub device: DeviceChoice,
    /// Start from this version's weights where they fit (same names and
    /// shapes; the word embedding by word); it becomes the parent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub init_from: Option<String>,
}

/// The data a version was trained on, when the store still has it; else
/// the synthetic data of `task` with `n` per split (made when missing).
pub fn data_of_version(
    store: &Store,
    r: Option<&VersionRef>,
    task: Task,
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
        format!("{:?}", cfg.task).to_lowercase(),
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

fn input(path: &Path) -> Result<Arc<Vec<f32>>, DataError> {
    Ok(Arc::new(to_model_input(&decode(path)?, INPUT)))
}

/// GQA examples of a split with their family (`types.detailed`).
pub fn gqa_examples(
    dir: &Path,
    split: &str,
    answers: &Answers,
) -> Result<Vec<(Example, String)>, DataError> {
    let (qs, _) =
        gqa::load_questions(&dir.join(format!("questions/{split}_balanced_questions.json")))?;
    let mut out = Vec::new();
    for q in qs {
        let Some(label) = q.answer.as_deref().and_then(|a| answers.id(a)) else {
            continue;
        };
        let path = gqa::image_path(&dir.join("images"), &q.image_id)
            .ok_or_else(|| DataError::Invalid(format!("image {} missing", q.image_id)))?;
        let fam = q
            .types
            .as_ref()
            .map_or("untyped".into(), |t| t.detailed.clone());
        out.push((
            Example {
                images: vec![input(&path)?],
                text: q.question,
                label,
            },
            fam,
        ));
    }
    Ok(out)
}

/// NLVR2 examples of a split with their family; label 1 = True.
pub fn nlvr2_examples(dir: &Path, split: &str) -> Result<Vec<(Example, String)>, DataError> {
    let (ex, _) = nlvr2::load(&dir.join(format!("{split}.json")))?;
    let mut out = Vec::new();
    for e in ex {
        let (a, b) = e
            .image_names()
            .ok_or_else(|| DataError::Invalid(e.identifier.clone()))?;
        let imgs = dir.join("images").join(split);
        out.push((
            Example {
                images: vec![input(&imgs.join(a))?, input(&imgs.join(b))?],
                text: e.sentence.clone(),
                label: e.label as i64,
            },
            e.family.clone().unwrap_or_default(),
        ));
    }
    Ok(out)
}

/// The records of a generic-corpus split (`{split}.jsonl`), naming the file
/// and line of one that does not parse.
pub fn generic_records(dir: &Path, split: &str) -> Result<Vec<GenericRecord>, DataError> {
    let p = dir.join(format!("{split}.jsonl"));
    let text = std::fs::read_to_string(&p).map_err(|source| DataError::Io {
        path: p.clone(),
        source,
    })?;
    text.lines()
        .enumerate()
        .map(|(i, line)| {
            serde_json::from_str(line)
                .map_err(|e| DataError::Invalid(format!("{} line {}: {e}", p.display(), i + 1)))
        })
        .collect()
}

/// Generic-corpus VQA examples of a split with their kind (crop/scene).
pub fn generic_examples(
    dir: &Path,
    split: &str,
    answers: &Answers,
) -> Result<Vec<(Example, String)>, DataError> {
    let mut out = Vec::new();
    for r in generic_records(dir, split)? {
        let (Some(q), Some(a)) = (r.question, r.answer) else {
            continue;
        };
        let Some(label) = answers.id(&a) else {
            continue;
        };
        out.push((
            Example {
                images: vec![input(&dir.join(&r.image))?],
                text: q,
                label,
            },
            r.kind,
        ));
    }
    Ok(out)
}

/// LOC training examples of a generic split: for each image, the boxes of
/// each shape it has (named by shape, or one time in three by a colour and
/// the shape, the colour right half of the time), and a shape it lacks
/// (no boxes).
pub fn generic_detections(dir: &Path, split: &str) -> Result<Vec<DetExample>, DataError> {
    let mut out = Vec::new();
    for r in generic_records(dir, split)? {
        if r.kind != "boxes" || r.boxes.is_empty() {
            continue;
        }
        let mut rng = crate::data::rng::Rng::new(0, &format!("loc/{}", r.id));
        let image = input(&dir.join(&r.image))?;
        let side = INPUT as f64;
        let frac = |b: [f64; 4]| b.map(|v| (v / side) as f32);
        let mut shapes: Vec<&str> = r.boxes.iter().map(|b| b.name.as_str()).collect();
        shapes.sort();
        shapes.dedup();
        let mut queries: Vec<String> = Vec::new();
        for sh in &shapes {
            if rng.chance(1.0 / 3.0) {
                let o = r.boxes.iter().find(|b| b.name == *sh).expect("present");
                let c = if rng.chance(0.5) {
                    o.attributes.first().cloned().unwrap_or_default()
                } else {
                    rng.pick(&COLORS).to_string()
                };
                queries.push(format!("{c} {sh}"));
            } else {
                queries.push(sh.to_string());
            }
        }
        let absent: Vec<&str> = SHAPES
            .iter()
            .copied()
            .filter(|s| !shapes.contains(s))
            .collect();
        if !absent.is_empty() {
            queries.push(rng.pick(&absent).to_string());
        }
        for name in queries {
            out.push(DetExample {
                image: image.clone(),
                boxes: r
                    .boxes
                    .iter()
                    .filter(|b| names(&name, &b.name, &b.attributes))
                    .map(|b| frac(b.bbox))
                    .collect(),
                name,
            });
        }
    }
    Ok(out)
}

/// Whether LOC's `query` (`circle`, `red circle`, `circles`) names an
/// object with this name and attributes.
pub fn names(query: &str, name: &str, attributes: &[String]) -> bool {
    let words: Vec<&str> = query.split_whitespace().collect();
    let Some((last, rest)) = words.split_last() else {
        return false;
    };
    let singular = |w: &str| {
        SHAPES.iter().any(|s| *s == w || plural(s) == w) && (w == name || plural(name) == w)
    };
    singular(last) && rest.iter().all(|w| attributes.iter().any(|a| a == w))
}

/// Accuracy per group, percent, with counts.
pub fn per_group(preds: &[i64], ex: &[(Example, String)]) -> BTreeMap<String, (usize, f64)> {
    let mut m: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for (p, (e, g)) in preds.iter().zip(ex) {
        let c = m.entry(g.clone()).or_default();
        c.0 += 1;
        c.1 += (*p == e.label) as usize;
    }
    m.into_iter()
        .map(|(k, (n, c))| (k, (n, 100.0 * c as f64 / n as f64)))
        .collect()
}

/// What a pre-training run made.
#[derive(Debug, Clone, Serialize)]
pub struct PretrainReport {
    /// The new version.
    pub version: ModuleVersion,
    /// Training history.
    pub training: TrainReport,
    /// Test accuracy, percent, and examples.
    pub test_accuracy: f64,
    /// Test examples.
    pub test_n: usize,
    /// Test accuracy per family or kind: (n, percent).
    pub by_group: BTreeMap<String, (usize, f64)>,
}

fn strip(ex: &[(Example, String)]) -> Vec<Example> {
    ex.iter().map(|(e, _)| e.clone()).collect()
}

#[allow(clippy::too_many_arguments)]
fn fit_and_save(
    store: &Store,
    module: &str,
    alias: &str,
    meta: ModelMeta,
    train: &[(Example, String)],
    dev: &[(Example, String)],
    test: &[(Example, String)],
    cfg: &PretrainConfig,
    data_key: String,
    progress: &dyn Fn(usize, f64, f64),
) -> Result<PretrainReport, ModelError> {
    let mut model = Model::new(meta, cfg.device, cfg.train.seed)?;
    let mut parent = None;
    if let Some(r) = &cfg.init_from {
        let r: VersionRef = r
            .parse()
            .map_err(|e: String| NnError::Checkpoint(format!("--init-from: {e}")))?;
        let (_, src) = load_model(store, &r, cfg.device)?;
        let copied = model.init_from(&src);
        tracing::info!("{module}: {copied} variables initialised from {r}");
        parent = Some(store.resolve(&r)?.id);
    }
    let training = model.train(&strip(train), &strip(dev), &cfg.train, progress)?;
    let (acc, preds) = model.evaluate(&strip(test));
    let by_group = per_group(&preds, test);
    let metrics = serde_json::json!({
        "test_accuracy": 100.0 * acc, "test_n": test.len(), "by_group": by_group,
        "best_dev_accuracy": 100.0 * training.best_dev_accuracy, "epochs": training.train_loss.len(),
    });
    let version = store.save_version(
        NewVersion {
            module: module.into(),
            parent,
            data: Some(data_key),
            config: serde_json::to_value(cfg).expect("config serialises"),
            metrics,
            ..Default::default()
        },
        &model.to_bytes()?,
        None,
    )?;
    store.set_alias(
        module,
        alias,
        version.id,
        Some(format!("pretrained ({module})")),
    )?;
    Ok(PretrainReport {
        version,
        training,
        test_accuracy: 100.0 * acc,
        test_n: test.len(),
        by_group,
    })
}

/// The FiLM sizes of every built-in VQA-kind network (students, teachers).
pub fn film(vocab: usize, classes: usize, pair: bool) -> FilmConfig {
    FilmConfig {
        image_size: INPUT as i64,
        vocab: vocab as i64,
        word_dim: 32,
        hidden: 64,
        channels: [32, 64, 64],
        classes: classes as i64,
        pair,
        glimpses: 3,
    }
}

/// The data of a generator config, made when missing, and its key.
fn data_for(
    store: &Store,
    task: Task,
    cfg: &PretrainConfig,
) -> Result<(PathBuf, String), DataError> {
    let dir = data_dir(
        store,
        SynthConfig {
            task,
            n: cfg.n,
            seed: cfg.data_seed,
            size: INPUT,
        },
    )?;
    let key = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    Ok((dir, key))
}

type Split = Vec<(Example, String)>;

/// train, dev and test examples.
fn three(load: impl Fn(&str) -> Result<Split, DataError>) -> Result<[Split; 3], DataError> {
    Ok([load("train")?, load("dev")?, load("test")?])
}

/// A tokenizer of the training texts and the world's words.
fn tokenizer_for(train: &[(Example, String)]) -> Tokenizer {
    let world = world_words();
    Tokenizer::fit(
        train
            .iter()
            .map(|(e, _)| e.text.as_str())
            .chain([world.as_str()]),
        16,
    )
}

/// Pre-trains a task's teacher on its train split.
pub fn pretrain_teacher(
    store: &Store,
    task: Task,
    cfg: &PretrainConfig,
    progress: &dyn Fn(usize, f64, f64),
) -> Result<PretrainReport, ModelError> {
    let (dir, key) = data_for(store, task, cfg)?;
    let (module, [tr, dv, te], answers, pair) = match task {
        Task::Gqa => {
            let ans = answers();
            (
                "gqa-teacher",
                three(|s| gqa_examples(&dir, s, &ans))?,
                ans,
                false,
            )
        }
        Task::Nlvr2 => {
            let ans = Answers {
                list: vec!["false".into(), "true".into()],
            };
            (
                "nlvr2-teacher",
                three(|s| nlvr2_examples(&dir, s))?,
                ans,
                true,
            )
        }
        Task::Generic => {
            return Err(DataError::Invalid("teachers are trained on gqa or nlvr2".into()).into())
        }
    };
    let tokenizer = tokenizer_for(&tr);
    let meta = ModelMeta {
        kind: module.into(),
        film: film(tokenizer.words.len(), answers.list.len(), pair),
        tokenizer,
        answers,
        script: false,
    };
    fit_and_save(
        store, module, "teacher", meta, &tr, &dv, &te, cfg, key, progress,
    )
}

/// A VQA student's metadata with the world's words as its vocabulary (the
/// pre-trained student's vocabulary adds the words of its training texts).
pub fn student_meta() -> ModelMeta {
    let world = world_words();
    let tokenizer = Tokenizer::fit([world.as_str()], 16);
    let ans = answers();
    ModelMeta {
        kind: "vqa-student".into(),
        film: film(tokenizer.words.len(), ans.list.len(), false),
        tokenizer,
        answers: ans,
        script: false,
    }
}

/// Pre-trains the VQA student on the generic corpus.
pub fn pretrain_student(
    store: &Store,
    cfg: &PretrainConfig,
    progress: &dyn Fn(usize, f64, f64),
) -> Result<PretrainReport, ModelError> {
    let (dir, key) = data_for(store, Task::Generic, cfg)?;
    let ans = answers();
    let [tr, dv, te] = three(|s| generic_examples(&dir, s, &ans))?;
    let tokenizer = tokenizer_for(&tr);
    let meta = ModelMeta {
        kind: "vqa-student".into(),
        film: film(tokenizer.words.len(), ans.list.len(), false),
        tokenizer,
        answers: ans,
        script: false,
    };
    fit_and_save(
        store, "vqa", "base", meta, &tr, &dv, &te, cfg, key, progress,
    )
}

/// What pre-training the LOC student made.
#[derive(Debug, Clone, Serialize)]
pub struct LocReport {
    /// The new version.
    pub version: ModuleVersion,
    /// Training history.
    pub training: DetTrainReport,
    /// Test precision and recall counts at IoU 0.5.
    pub test: PrCounts,
    /// Test precision at IoU 0.5, percent.
    pub test_precision: f64,
    /// Test recall at IoU 0.5, percent.
    pub test_recall: f64,
    /// Test queries (image and name).
    pub test_n: usize,
}

/// Pre-trains the LOC student on the generic corpus' boxes (module `loc`,
/// alias `base`).
pub fn pretrain_loc(
    store: &Store,
    cfg: &PretrainConfig,
    progress: &dyn Fn(usize, f64, f64),
) -> Result<LocReport, ModelError> {
    let (dir, key) = data_for(store, Task::Generic, cfg)?;
    let tr = generic_detections(&dir, "train")?;
    let dv = generic_detections(&dir, "dev")?;
    let te = generic_detections(&dir, "test")?;
    let world = world_words();
    let tokenizer = Tokenizer::fit(
        tr.iter().map(|e| e.name.as_str()).chain([world.as_str()]),
        4,
    );
    let meta = DetectorMeta {
        kind: "loc-student".into(),
        config: DetectorConfig {
            image_size: INPUT as i64,
            vocab: tokenizer.words.len() as i64,
            word_dim: 32,
            hidden: 64,
            channels: [32, 64, 64, 64],
        },
        tokenizer,
        settings: DetectSettings::default(),
    };
    let mut det = Detector::new(meta, cfg.device, cfg.train.seed)?;
    let training = det.train(&tr, &dv, &cfg.train, progress)?;
    let test = det.evaluate(&te, &det.meta.settings);
    let metrics = serde_json::json!({
        "test_precision": test.precision(), "test_recall": test.recall(), "test_n": te.len(),
        "best_dev_f1": 100.0 * training.best_dev_f1, "epochs": training.train_loss.len(),
    });
    let version = store.save_version(
        NewVersion {
            module: "loc".into(),
            data: Some(key),
            config: serde_json::to_value(cfg).expect("config serialises"),
            metrics,
            ..Default::default()
        },
        &det.to_bytes()?,
        None,
    )?;
    store.set_alias("loc", "base", version.id, Some("pretrained (loc)".into()))?;
    Ok(LocReport {
        version,
        training,
        test_precision: test.precision(),
        test_recall: test.recall(),
        test_n: te.len(),
        test,
    })
}
