//! Pre-training the built-in students and teachers into the store.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Serialize;

use crate::data::synth::SynthConfig;
use crate::data::DataError;
use crate::nn::detector::{
    DetTrainReport, DetectSettings, Detector, DetectorConfig, DetectorMeta, PrCounts,
};
use crate::nn::film::FilmConfig;
use crate::nn::model::{Example, Model, ModelMeta, TrainConfig, TrainReport};
use crate::nn::text::{Answers, Tokenizer};
use crate::nn::{DeviceChoice, NnError};
use crate::store::{ModuleVersion, NewVersion, Store, VersionRef};
use crate::vocab::{Corpus, ModelKind, Task};

use super::{
    answers, data_dir, generic_detections, generic_examples, gqa_examples, load_model,
    nlvr2_examples, per_group, world_words, ModelError, INPUT,
};

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
    let (acc, preds) = model.evaluate(&strip(test))?;
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
    task: Corpus,
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

/// A task's teacher's answers: the built-in answers for GQA, `false` and
/// `true` for NLVR2.
pub fn teacher_answers(task: Task) -> Answers {
    match task {
        Task::Gqa => answers(),
        Task::Nlvr2 => Answers {
            list: vec!["false".into(), "true".into()],
        },
    }
}

/// Pre-trains a task's teacher on the train split of synthetic data made
/// for `cfg` (under the store when missing).
pub fn pretrain_teacher(
    store: &Store,
    task: Task,
    cfg: &PretrainConfig,
    progress: &dyn Fn(usize, f64, f64),
) -> Result<PretrainReport, ModelError> {
    let (dir, key) = data_for(store, task.into(), cfg)?;
    let ans = teacher_answers(task);
    let [tr, dv, te] = match task {
        Task::Gqa => three(|s| gqa_examples(&dir, s, &ans, INPUT))?,
        Task::Nlvr2 => three(|s| nlvr2_examples(&dir, s, INPUT))?,
    };
    fit_teacher(store, task, [tr, dv, te], cfg, key, progress)
}

/// Fits a task's teacher on these train, dev and test examples (labels
/// among [`teacher_answers`]) and saves it as `{task}-teacher@teacher`,
/// its data recorded as `key`.
pub fn fit_teacher(
    store: &Store,
    task: Task,
    [tr, dv, te]: [Vec<(Example, String)>; 3],
    cfg: &PretrainConfig,
    key: String,
    progress: &dyn Fn(usize, f64, f64),
) -> Result<PretrainReport, ModelError> {
    if tr.is_empty() {
        return Err(ModelError::Data(DataError::Missing(format!(
            "no {task} training examples in {key}"
        ))));
    }
    let answers = teacher_answers(task);
    let tokenizer = tokenizer_for(&tr);
    let meta = ModelMeta {
        kind: ModelKind::teacher_of(task),
        film: film(
            tokenizer.words.len(),
            answers.list.len(),
            task == Task::Nlvr2,
        ),
        tokenizer,
        answers,
        script: false,
        norm: None,
    };
    let module = task.teacher_module();
    fit_and_save(
        store, &module, "teacher", meta, &tr, &dv, &te, cfg, key, progress,
    )
}

/// A VQA student's metadata with the world's words as its vocabulary (the
/// pre-trained student's vocabulary adds the words of its training texts).
pub fn student_meta() -> ModelMeta {
    let world = world_words();
    let tokenizer = Tokenizer::fit([world.as_str()], 16);
    let ans = answers();
    ModelMeta {
        kind: ModelKind::VqaStudent,
        film: film(tokenizer.words.len(), ans.list.len(), false),
        tokenizer,
        answers: ans,
        script: false,
        norm: None,
    }
}

/// Pre-trains the VQA student on the generic corpus.
pub fn pretrain_student(
    store: &Store,
    cfg: &PretrainConfig,
    progress: &dyn Fn(usize, f64, f64),
) -> Result<PretrainReport, ModelError> {
    let (dir, key) = data_for(store, Corpus::Generic, cfg)?;
    let ans = answers();
    let [tr, dv, te] = three(|s| generic_examples(&dir, s, &ans))?;
    let tokenizer = tokenizer_for(&tr);
    let meta = ModelMeta {
        kind: ModelKind::VqaStudent,
        film: film(tokenizer.words.len(), ans.list.len(), false),
        tokenizer,
        answers: ans,
        script: false,
        norm: None,
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
    let (dir, key) = data_for(store, Corpus::Generic, cfg)?;
    let tr = generic_detections(&dir, "train")?;
    let dv = generic_detections(&dir, "dev")?;
    let te = generic_detections(&dir, "test")?;
    let world = world_words();
    let tokenizer = Tokenizer::fit(
        tr.iter().map(|e| e.name.as_str()).chain([world.as_str()]),
        4,
    );
    let meta = DetectorMeta {
        kind: ModelKind::LocStudent,
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
