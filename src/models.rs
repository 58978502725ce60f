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
use crate::nn::film::FilmConfig;
use crate::nn::model::{Example, Model, ModelMeta, TrainConfig, TrainReport};
use crate::nn::text::{Answers, Tokenizer};
use crate::nn::{DeviceChoice, NnError};
use crate::store::{ModuleVersion, NewVersion, Store, StoreError};

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
}

/// Where the data of a generator config lives in the store, made when
/// missing (written to a temporary folder, then renamed).
pub fn data_dir(store: &Store, cfg: SynthConfig) -> Result<PathBuf, DataError> {
    let name = format!(
        "{}-n{}-s{}-px{}",
        format!("{:?}", cfg.task).to_lowercase(),
        cfg.n,
        cfg.seed,
        cfg.size
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

/// Generic-corpus VQA examples of a split with their kind (crop/scene).
pub fn generic_examples(
    dir: &Path,
    split: &str,
    answers: &Answers,
) -> Result<Vec<(Example, String)>, DataError> {
    let p = dir.join(format!("{split}.jsonl"));
    let text = std::fs::read_to_string(&p).map_err(|source| DataError::Io {
        path: p.clone(),
        source,
    })?;
    let mut out = Vec::new();
    for line in text.lines() {
        let r: GenericRecord = serde_json::from_str(line)
            .map_err(|e| DataError::Invalid(format!("{}: {e}", p.display())))?;
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

fn film(vocab: usize, classes: usize, pair: bool) -> FilmConfig {
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
    };
    fit_and_save(
        store, module, "teacher", meta, &tr, &dv, &te, cfg, key, progress,
    )
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
    };
    fit_and_save(
        store, "vqa", "base", meta, &tr, &dv, &te, cfg, key, progress,
    )
}
