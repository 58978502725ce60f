//! `vpd eval`: a pipeline (generator + module versions) scored on a task's
//! split through the actor runtime, recorded in the store keyed by the
//! whole pipeline, with accuracy, its 95% interval, accuracy per question
//! type, and errors split into program errors (wrong with oracle modules
//! too) and module errors.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::actors::GenerateSource;
use super::exec::{self, ExecConfig, ExecReport, ImageCache, Job, ModuleChoice};
use crate::data::synth::PairScenes;
use crate::data::{gqa, nlvr2, DataError};
use crate::models::{self, ModelError};
use crate::program::llm::LlmConfig;
use crate::program::validate;
use crate::store::{wilson_interval, Evaluation, Pipeline, Store, StoreError, Tally, VersionRef};
use crate::vocab::{Slot, Task};

/// An error of an evaluation.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// Data.
    #[error(transparent)]
    Data(#[from] DataError),
    /// Store.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A network.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// Execution.
    #[error(transparent)]
    Exec(#[from] exec::ExecError),
    /// A stored evaluation's details blob does not read.
    #[error("evaluation {evaluation} details: {message}")]
    CorruptDetails {
        /// The evaluation.
        evaluation: uuid::Uuid,
        /// What is wrong.
        message: String,
    },
    /// The program generator wrote no program for any example.
    #[error("the program generator failed on all {examples} examples, nothing recorded; the first: {first}")]
    GeneratorFailed {
        /// Examples tried.
        examples: usize,
        /// The first example's failure.
        first: String,
    },
    /// An id prefix that names several evaluations.
    #[error("{count} evaluations start with `{prefix}`: give more of the id")]
    AmbiguousPrefix {
        /// As given.
        prefix: String,
        /// How many match.
        count: usize,
    },
    /// A stored evaluation that cannot be run again as recorded.
    #[error("{0}")]
    NotReplayable(String),
    /// The batched and sequential modes disagree (`vpd bench exec`).
    #[error("batched and sequential predictions differ on {differ} of {of} programs")]
    ModesDisagree {
        /// Programs whose predictions differ.
        differ: usize,
        /// Programs run.
        of: usize,
    },
    /// A dataset file with malformed records.
    #[error("{file}: {count} malformed record(s), the split is not evaluated: {first} (`vpd data check` lists them all; fix or remove them)")]
    BadRecords {
        /// The file.
        file: String,
        /// How many.
        count: usize,
        /// The first few, with where.
        first: String,
    },
    /// The annotated generator on lines that carry no programs.
    #[error("the lines of {split} carry no `program` (real NLVR2 lines have none), so the annotated generator has nothing to run: use the llm generator (`vpd eval --generator llm`, or `data.nlvr2.generator = \"llm\"` in an experiment; VPD_LLM_BASE_URL, VPD_LLM_MODEL)")]
    NoPrograms {
        /// The split.
        split: String,
    },
    /// Oracle modules on data without scene graphs.
    #[error("oracle modules read scene graphs, and the split {split} has none (`sceneGraphs/` lacks it): evaluate trained modules, e.g. --modules VQA=vqa@base LOC=loc@base")]
    NoSceneGraphs {
        /// The split.
        split: String,
    },
    /// A split the folder does not have.
    #[error("{root} has no split `{split}` ({expected}); its splits: {}", if available.is_empty() { "none".to_string() } else { available.join(", ") })]
    UnknownSplit {
        /// The dataset's root.
        root: PathBuf,
        /// As asked for.
        split: String,
        /// The file that would hold it.
        expected: String,
        /// The splits it has.
        available: Vec<String>,
    },
    /// An example without an input image, or one that does not read.
    #[error("example {example}: {message}")]
    Input {
        /// The example.
        example: String,
        /// What is wrong.
        message: String,
    },
}

/// The jobs of a synthetic split: GQA questions with their images and
/// scene graphs, or NLVR2 statements with their pairs and programs.
pub fn jobs(task: Task, dir: &Path, split: &str) -> Result<Vec<Job>, EvalError> {
    jobs_with(task, dir, split, true)
}

/// The jobs of a split of a folder of either layout (`truth`: with answers
/// and the scene graphs there are).
pub fn jobs_in(
    task: Task,
    dir: &Path,
    layout: &Layout,
    split: &str,
    truth: bool,
) -> Result<Vec<Job>, EvalError> {
    match (layout, task) {
        (Layout::Synthetic, _) => jobs_with(task, dir, split, truth),
        (Layout::Real { images }, Task::Gqa) => {
            let files = real_gqa_files(dir, split)?;
            let mut qs = Vec::new();
            for f in &files {
                let (got, issues) = gqa::load_questions(f)?;
                refuse_issues(&issues)?;
                qs.extend(got);
            }
            let graphs = match real_scene_graphs(dir, split) {
                Some(p) if truth => gqa::load_scene_graphs(&p)?.0,
                _ => BTreeMap::new(),
            };
            let images = images.clone().unwrap_or_else(|| dir.join("images"));
            Ok(gqa_jobs(qs, &graphs, &images, truth))
        }
        (Layout::Real { images }, Task::Nlvr2) => {
            let file = real_nlvr2_file(dir, split)?;
            let (ex, issues) = nlvr2::load(&file)?;
            refuse_issues(&issues)?;
            let root = images.clone().unwrap_or_else(|| dir.join("images"));
            // The real images sit in numbered folders, found by name.
            let index = nlvr2::index_images(&root);
            let find = |name: String| index.get(&name).cloned().unwrap_or_else(|| root.join(name));
            Ok(ex
                .into_iter()
                .map(|e| {
                    let (l, r) = e.image_names().unwrap_or_default();
                    nlvr2_job(e, truth, [find(l), find(r)], BTreeMap::new())
                })
                .collect())
        }
    }
}

/// A dataset file with malformed records is refused, naming the first
/// ones, rather than scored on the part that reads (which would change
/// what the split is without saying so).
fn refuse_issues(issues: &[crate::data::Issue]) -> Result<(), EvalError> {
    let Some(first) = issues.first() else {
        return Ok(());
    };
    Err(EvalError::BadRecords {
        file: first.file.clone(),
        count: issues.len(),
        first: issues
            .iter()
            .take(3)
            .map(|i| format!("{}: {}", i.at, i.message))
            .collect::<Vec<_>>()
            .join("; "),
    })
}

/// A real NLVR2 split's lines file, `{split}.json` (JSON lines).
fn real_nlvr2_file(root: &Path, split: &str) -> Result<PathBuf, EvalError> {
    let file = root.join(format!("{split}.json"));
    if file.is_file() {
        return Ok(file);
    }
    let mut available: Vec<String> = std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n.strip_suffix(".json").map(str::to_string)
        })
        .collect();
    available.sort();
    Err(EvalError::UnknownSplit {
        root: root.to_path_buf(),
        split: split.to_string(),
        expected: format!("{split}.json"),
        available,
    })
}

/// The questions files of a real GQA split: `questions/{split}_questions.json`,
/// or every `.json` in the folder `questions/{split}_questions/` (as the real
/// `train_all_questions/`).
fn real_gqa_files(root: &Path, split: &str) -> Result<Vec<PathBuf>, EvalError> {
    let q = root.join("questions");
    let file = q.join(format!("{split}_questions.json"));
    if file.is_file() {
        return Ok(vec![file]);
    }
    let folder = q.join(format!("{split}_questions"));
    if folder.is_dir() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&folder)
            .map_err(|source| DataError::Io {
                path: folder.clone(),
                source,
            })?
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        files.sort();
        if !files.is_empty() {
            return Ok(files);
        }
    }
    let mut available: Vec<String> = std::fs::read_dir(&q)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n.strip_suffix("_questions.json")
                .or_else(|| n.strip_suffix("_questions"))
                .map(str::to_string)
        })
        .collect();
    available.sort();
    available.dedup();
    Err(EvalError::UnknownSplit {
        root: root.to_path_buf(),
        split: split.to_string(),
        expected: format!("questions/{split}_questions.json"),
        available,
    })
}

/// A real GQA split's scene graphs, when the folder has them: the real files
/// drop `_balanced`/`_all` from the split's name (`val_sceneGraphs.json`
/// for `val_balanced`).
fn real_scene_graphs(root: &Path, split: &str) -> Option<PathBuf> {
    let name = split
        .strip_suffix("_balanced")
        .or_else(|| split.strip_suffix("_all"))
        .unwrap_or(split);
    [name, split]
        .iter()
        .map(|n| {
            root.join("sceneGraphs")
                .join(format!("{n}_sceneGraphs.json"))
        })
        .find(|p| p.is_file())
}

/// GQA questions as jobs: the image found by id under `images` (a missing
/// one fails that example when it runs), the scene graph when there is one.
fn gqa_jobs(
    mut qs: Vec<gqa::Question>,
    graphs: &BTreeMap<String, gqa::SceneGraph>,
    images: &Path,
    truth: bool,
) -> Vec<Job> {
    if !truth {
        for q in &mut qs {
            q.answer = None;
            q.full_answer = None;
        }
    }
    qs.into_iter()
        .map(|q| {
            let path = gqa::image_path(images, &q.image_id)
                .unwrap_or_else(|| images.join(format!("{}.jpg", q.image_id)));
            Job {
                id: q.id.clone(),
                kind: q.family(),
                text: q.question.clone(),
                expected: q.answer.clone().unwrap_or_default(),
                inputs: vec![("IMAGE".into(), path)],
                scenes: graphs
                    .get(&q.image_id)
                    .map(|g| BTreeMap::from([("IMAGE".to_string(), g.clone())]))
                    .unwrap_or_default(),
                source: GenerateSource::Gqa(Box::new(q)),
            }
        })
        .collect()
}

/// A real dataset's identity: a fingerprint of its content (the questions
/// files and the list of images with their sizes), not of its folder's name.
fn real_dataset_key(
    task: Task,
    root: &Path,
    images: Option<&Path>,
    split: &str,
) -> Result<String, EvalError> {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    let files = match task {
        Task::Gqa => real_gqa_files(root, split)?,
        Task::Nlvr2 => vec![real_nlvr2_file(root, split)?],
    };
    for f in &files {
        let mut file = std::fs::File::open(f).map_err(|source| DataError::Io {
            path: f.clone(),
            source,
        })?;
        std::io::copy(&mut file, &mut h).map_err(|source| DataError::Io {
            path: f.clone(),
            source,
        })?;
    }
    let images = images.map_or_else(|| root.join("images"), Path::to_path_buf);
    // Every image below the folder (NLVR2's sit in numbered subfolders).
    let mut listed: Vec<(String, u64)> = nlvr2::index_images(&images)
        .into_iter()
        .filter_map(|(name, p)| Some((name, std::fs::metadata(p).ok()?.len())))
        .collect();
    listed.sort();
    for (name, len) in &listed {
        h.update(format!("\n{name} {len}").as_bytes());
    }
    let hash = hex::encode(h.finalize());
    Ok(format!("{task}-real-{}", &hash[..16]))
}

/// The jobs of a split without anything a run may not learn from: no
/// scene graphs are read, and answers and labels are blanked (`expected`
/// is empty, a GQA question's `answer` and `fullAnswer` are removed).
/// Distillation runs its programs on these.
pub fn jobs_without_truth(task: Task, dir: &Path, split: &str) -> Result<Vec<Job>, EvalError> {
    jobs_with(task, dir, split, false)
}

fn jobs_with(task: Task, dir: &Path, split: &str, truth: bool) -> Result<Vec<Job>, EvalError> {
    match task {
        Task::Gqa => {
            let (qs, _) = gqa::load_questions(
                &dir.join(format!("questions/{split}_balanced_questions.json")),
            )?;
            let graphs = if truth {
                gqa::load_scene_graphs(&dir.join(format!("sceneGraphs/{split}_sceneGraphs.json")))?
                    .0
            } else {
                BTreeMap::new()
            };
            Ok(gqa_jobs(qs, &graphs, &dir.join("images"), truth))
        }
        Task::Nlvr2 => {
            let (ex, _) = nlvr2::load(&dir.join(format!("{split}.json")))?;
            let sp = dir.join(format!("{split}_scenes.json"));
            let scenes: BTreeMap<String, PairScenes> = std::fs::read(&sp)
                .ok()
                .filter(|_| truth)
                .and_then(|b| serde_json::from_slice(&b).ok())
                .unwrap_or_default();
            let imgs = dir.join("images").join(split);
            Ok(ex
                .into_iter()
                .map(|e| {
                    let pair = e.pair_prefix().unwrap_or_default().to_string();
                    let scenes = scenes
                        .get(&pair)
                        .map(|s| {
                            BTreeMap::from([
                                ("LEFT".to_string(), s.left.clone()),
                                ("RIGHT".to_string(), s.right.clone()),
                            ])
                        })
                        .unwrap_or_default();
                    let images = [
                        imgs.join(format!("{pair}-img0.png")),
                        imgs.join(format!("{pair}-img1.png")),
                    ];
                    nlvr2_job(e, truth, images, scenes)
                })
                .collect())
        }
    }
}

/// An NLVR2 statement as a job on its pair (`LEFT`, `RIGHT`).
fn nlvr2_job(
    e: nlvr2::Example,
    truth: bool,
    [left, right]: [PathBuf; 2],
    scenes: BTreeMap<String, gqa::SceneGraph>,
) -> Job {
    Job {
        id: e.identifier.clone(),
        kind: e.family.clone().unwrap_or_else(|| "unlabelled".into()),
        text: e.sentence.clone(),
        expected: if truth {
            e.label.to_string()
        } else {
            String::new()
        },
        inputs: vec![("LEFT".into(), left), ("RIGHT".into(), right)],
        scenes,
        source: GenerateSource::Given(e.program),
    }
}

/// How a dataset folder is laid out.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum Layout {
    /// Written by the synthetic world (the store's data, `vpd data synth`):
    /// splits `train`, `distill`, `dev`, `test`, scene graphs for every one.
    #[default]
    Synthetic,
    /// The real published layout: a split is named by its file's stem
    /// (`testdev_balanced` for `questions/testdev_balanced_questions.json`),
    /// scene graphs are optional, images of any size (under `images`, or
    /// the root's `images/`).
    Real {
        /// The images' folder when it is not the root's `images/`.
        images: Option<PathBuf>,
    },
}

/// A slice of one split of a dataset: what an evaluation, a distillation
/// phase or a pre-training reads. Two roles may read one split (the real
/// method distils on a part of GQA train) through slices that do not
/// overlap.
#[derive(Debug, Clone, PartialEq)]
pub struct Slice {
    /// The dataset's root.
    pub data: PathBuf,
    /// Its layout.
    pub layout: Layout,
    /// The split (a synthetic split's name, or a real file's stem).
    pub split: String,
    /// The first example read.
    pub offset: usize,
    /// At most this many examples (none: to the end).
    pub limit: Option<usize>,
}

impl Slice {
    /// A whole split of a synthetic folder.
    pub fn synthetic(data: &Path, split: &str) -> Slice {
        Slice {
            data: data.to_path_buf(),
            layout: Layout::Synthetic,
            split: split.to_string(),
            offset: 0,
            limit: None,
        }
    }

    /// At most `n` examples (0: all).
    pub fn first(mut self, n: usize) -> Slice {
        self.limit = (n > 0).then_some(n);
        self
    }

    /// The slice's jobs (`truth`: with answers and the scene graphs there
    /// are).
    pub fn jobs(&self, task: Task, truth: bool) -> Result<Vec<Job>, EvalError> {
        let all = jobs_in(task, &self.data, &self.layout, &self.split, truth)?;
        Ok(all
            .into_iter()
            .skip(self.offset)
            .take(self.limit.unwrap_or(usize::MAX))
            .collect())
    }

    /// The part after the split's name in a dataset key: `[:n]`, `[a:b]`,
    /// `[a:]` or nothing for a whole split.
    fn range(&self) -> String {
        match (self.offset, self.limit) {
            (0, None) => String::new(),
            (0, Some(n)) => format!("[:{n}]"),
            (a, Some(n)) => format!("[{a}:{}]", a + n),
            (a, None) => format!("[{a}:]"),
        }
    }

    /// The slice's identity: a synthetic folder by its name (its generator
    /// config), a real one by a fingerprint of its content.
    pub fn key(&self, task: Task) -> Result<String, EvalError> {
        let folder = match &self.layout {
            Layout::Synthetic => self
                .data
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            Layout::Real { images } => {
                real_dataset_key(task, &self.data, images.as_deref(), &self.split)?
            }
        };
        Ok(format!("{folder}/{}{}", self.split, self.range()))
    }

    /// Whether the split has scene graphs (a synthetic one always has).
    pub fn has_scene_graphs(&self, task: Task) -> bool {
        match (&self.layout, task) {
            (Layout::Synthetic, _) => true,
            (Layout::Real { .. }, Task::Gqa) => {
                real_scene_graphs(&self.data, &self.split).is_some()
            }
            (Layout::Real { .. }, Task::Nlvr2) => false,
        }
    }

    /// Checks that the split exists, naming those there are when not.
    pub fn check(&self, task: Task) -> Result<(), EvalError> {
        match (&self.layout, task) {
            (Layout::Synthetic, _) => Ok(()),
            (Layout::Real { .. }, Task::Gqa) => real_gqa_files(&self.data, &self.split).map(|_| ()),
            (Layout::Real { .. }, Task::Nlvr2) => {
                real_nlvr2_file(&self.data, &self.split).map(|_| ())
            }
        }
    }
}

/// What to evaluate.
#[derive(Debug, Clone)]
pub struct EvalSpec {
    /// gqa or nlvr2.
    pub task: Task,
    /// What is evaluated.
    pub slice: Slice,
    /// The VQA slot.
    pub vqa: ModuleChoice,
    /// The LOC slot.
    pub loc: ModuleChoice,
    /// `None`: the annotated generator.
    pub llm: Option<LlmConfig>,
    /// Evaluate again even when the store has this pipeline's result.
    pub force: bool,
}

/// Accuracy with its interval.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Score {
    /// Examples.
    pub n: u64,
    /// Right.
    pub correct: u64,
    /// Percent.
    pub accuracy: f64,
    /// 95% Wilson interval, percent.
    pub ci95: (f64, f64),
}

impl Score {
    fn of(t: Tally) -> Score {
        let (lo, hi) = wilson_interval(t);
        Score {
            n: t.n,
            correct: t.correct,
            accuracy: 100.0 * t.accuracy(),
            ci95: (100.0 * lo, 100.0 * hi),
        }
    }
}

/// An evaluation's result.
#[derive(Debug, Clone, Serialize)]
pub struct EvalReport {
    /// The stored evaluation.
    pub evaluation: Evaluation,
    /// Overall.
    pub score: Score,
    /// Per question type.
    pub by_type: BTreeMap<String, Score>,
    /// Wrong with oracle modules too (null: not measured, the data has no
    /// scene graphs for the oracle).
    pub program_errors: Option<u64>,
    /// Wrong only with these modules (null: not measured).
    pub module_errors: Option<u64>,
    /// Examples where a step failed (counted wrong).
    pub failed_steps: u64,
    /// For a teacher end to end: questions whose answer is outside its
    /// answers (counted wrong); null for pipelines.
    pub outside_answers: Option<u64>,
    /// Taken from the store, not run again.
    pub reused: bool,
    /// Execution statistics (absent when reused).
    pub exec: Option<ExecStats>,
}

/// How the execution went.
#[derive(Debug, Clone, Serialize)]
pub struct ExecStats {
    /// Seconds.
    pub seconds: f64,
    /// Most programs in flight.
    pub max_in_flight: usize,
    /// Mean VQA batch.
    pub vqa_mean_batch: f64,
    /// Mean LOC batch.
    pub loc_mean_batch: f64,
    /// Worker restarts.
    pub restarts: usize,
}

/// The per-example details stored with an evaluation.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Details {
    /// Wrong with oracle modules too (null: not measured, no scene graphs).
    pub program_errors: Option<u64>,
    /// Wrong only with these modules (null: not measured).
    pub module_errors: Option<u64>,
    /// Examples whose program failed at a step.
    pub failed_steps: u64,
    /// A teacher's questions whose answer is outside its answers (counted
    /// wrong); absent for pipelines and for evaluations stored before vpd
    /// counted them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outside_answers: Option<u64>,
    /// A real dataset's folder and images' folder when not under it, as
    /// evaluated (absolute), so that a trace can find its images again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root: Option<PathBuf>,
    /// See `root`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub images: Option<PathBuf>,
    /// Every example's outcome (with its trace).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub examples: Vec<serde_json::Value>,
}

/// The details blob as written: the summary and the outcomes themselves.
#[derive(Serialize)]
struct DetailsOut<'a> {
    #[serde(flatten)]
    details: &'a Details,
    examples: &'a [exec::ExampleOutcome],
}

fn slot_id(store: &Store, m: &ModuleChoice) -> Result<String, EvalError> {
    Ok(match m {
        ModuleChoice::Oracle => "oracle".into(),
        ModuleChoice::Version(r) => store.resolve(r)?.id.to_string(),
    })
}

fn tallies(outcomes: &[exec::ExampleOutcome]) -> (Tally, BTreeMap<String, Tally>) {
    let mut total = Tally::default();
    let mut by: BTreeMap<String, Tally> = BTreeMap::new();
    for o in outcomes {
        for t in [&mut total, by.entry(o.kind.clone()).or_default()] {
            t.n += 1;
            t.correct += o.correct as u64;
        }
    }
    (total, by)
}

fn report_of(e: Evaluation, d: &Details, reused: bool, exec: Option<ExecStats>) -> EvalReport {
    EvalReport {
        score: Score::of(e.total),
        by_type: e
            .by_type
            .iter()
            .map(|(k, t)| (k.clone(), Score::of(*t)))
            .collect(),
        program_errors: d.program_errors,
        module_errors: d.module_errors,
        failed_steps: d.failed_steps,
        outside_answers: d.outside_answers,
        evaluation: e,
        reused,
        exec,
    }
}

/// The stored evaluation of `key`, unless `force`.
fn stored(store: &Store, key: &Pipeline, force: bool) -> Result<Option<EvalReport>, EvalError> {
    if force {
        return Ok(None);
    }
    let Some(e) = store.find_evaluation(key)? else {
        return Ok(None);
    };
    Ok(details(store, &e)?.map(|d| report_of(e, &d, true, None)))
}

/// Records an evaluation with its details; `errors` are program errors,
/// module errors and failed steps.
fn record(
    store: &Store,
    key: Pipeline,
    slice: &Slice,
    outcomes: &[exec::ExampleOutcome],
    errors: (Option<(u64, u64)>, u64),
    outside_answers: Option<u64>,
    stats: ExecStats,
) -> Result<EvalReport, EvalError> {
    let (t, by) = tallies(outcomes);
    let absolute = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    let (root, images) = match &slice.layout {
        Layout::Synthetic => (None, None),
        Layout::Real { images } => (Some(absolute(&slice.data)), images.as_deref().map(absolute)),
    };
    let d = Details {
        outside_answers,
        root,
        images,
        program_errors: errors.0.map(|e| e.0),
        module_errors: errors.0.map(|e| e.1),
        failed_steps: errors.1,
        examples: Vec::new(),
    };
    // Written straight from the outcomes, so that the split's examples are
    // never held twice (as outcomes and as JSON trees).
    let bytes = serde_json::to_vec(&DetailsOut {
        details: &d,
        examples: outcomes,
    })
    .expect("details serialise");
    let e = store.record_evaluation_with_details(key, t, by, None, Some(&bytes))?;
    Ok(report_of(e, &d, false, Some(stats)))
}

/// The stored details of an evaluation.
pub fn details(store: &Store, e: &Evaluation) -> Result<Option<Details>, EvalError> {
    let Some(h) = &e.details else { return Ok(None) };
    let bytes = store.blobs().get(h)?;
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|err| EvalError::CorruptDetails {
            evaluation: e.id,
            message: err.to_string(),
        })
}

/// The pipeline key of a spec.
pub fn pipeline(store: &Store, spec: &EvalSpec) -> Result<Pipeline, EvalError> {
    Ok(Pipeline {
        task: spec.task.to_string(),
        split: spec.slice.split.clone(),
        generator: match &spec.llm {
            Some(c) => c.cache_key(spec.task),
            None => "annotated".into(),
        },
        dataset: spec.slice.key(spec.task)?,
        modules: BTreeMap::from([
            (Slot::Loc.to_string(), slot_id(store, &spec.loc)?),
            (Slot::Vqa.to_string(), slot_id(store, &spec.vqa)?),
        ]),
    })
}

/// A dataset key without its range (`gqa-real-…/val_balanced[:5]` ->
/// `gqa-real-…/val_balanced`).
fn name_key(dataset: &str) -> String {
    dataset.split('[').next().unwrap_or(dataset).to_string()
}

/// The annotated generator reads the programs the lines carry, and real
/// NLVR2 lines carry none: one clear error naming the fix, rather than
/// every example failing.
pub fn needs_programs(jobs: &[Job], llm: bool, split: &str) -> Result<(), EvalError> {
    let given_none = |j: &Job| matches!(j.source, GenerateSource::Given(None));
    if !llm && !jobs.is_empty() && jobs.iter().all(given_none) {
        return Err(EvalError::NoPrograms {
            split: split.to_string(),
        });
    }
    Ok(())
}

/// Evaluates (or reuses the stored evaluation of) a pipeline.
pub fn evaluate(
    store: &Store,
    spec: &EvalSpec,
    cfg: ExecConfig,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<EvalReport, EvalError> {
    let key = pipeline(store, spec)?;
    if let Some(r) = stored(store, &key, spec.force)? {
        return Ok(r);
    }
    let all = spec.slice.jobs(spec.task, true)?;
    // The oracle reads scene graphs: without them for every example, the
    // program/module split of the errors is not measured.
    let graphs = all.iter().all(|j| !j.scenes.is_empty());
    let uses_oracle = spec.vqa == ModuleChoice::Oracle || spec.loc == ModuleChoice::Oracle;
    needs_programs(&all, spec.llm.is_some(), &spec.slice.split)?;
    if uses_oracle && !graphs {
        return Err(EvalError::NoSceneGraphs {
            split: spec.slice.split.clone(),
        });
    }
    let task = spec.task;
    let cache = ImageCache::with_budget(cfg.image_cache_bytes);
    let total = all.len();
    let run = |vqa: &ModuleChoice, loc: &ModuleChoice| -> Result<ExecReport, EvalError> {
        Ok(exec::execute(
            store,
            &all,
            task,
            vqa,
            loc,
            spec.llm.clone(),
            cfg,
            &cache,
            &|k| progress(k, total),
        )?)
    };
    let rep = run(&spec.vqa, &spec.loc)?;
    // A generator that wrote no program at all (an unreachable endpoint, a
    // wrong model name) is an error of the evaluation, not of its examples.
    let generated = |o: &exec::ExampleOutcome| o.failed_at != Some(exec::FailedAt::Generation);
    if !rep.outcomes.is_empty() && !rep.outcomes.iter().any(generated) {
        return Err(EvalError::GeneratorFailed {
            examples: rep.outcomes.len(),
            first: rep.outcomes[0].error.clone().unwrap_or_default(),
        });
    }
    let all_oracle = spec.vqa == ModuleChoice::Oracle && spec.loc == ModuleChoice::Oracle;
    // Which errors are the program's: wrong with oracle modules as well.
    let oracle = if all_oracle || !graphs {
        None
    } else {
        Some(run(&ModuleChoice::Oracle, &ModuleChoice::Oracle)?)
    };
    let (mut program_errors, mut module_errors, mut failed_steps) = (0, 0, 0);
    for (i, o) in rep.outcomes.iter().enumerate() {
        failed_steps += o.error.is_some() as u64;
        if o.correct {
            continue;
        }
        let oracle_right = oracle.as_ref().is_some_and(|r| r.outcomes[i].correct);
        if oracle_right {
            module_errors += 1;
        } else {
            program_errors += 1;
        }
    }
    let split = graphs.then_some((program_errors, module_errors));
    let stats = ExecStats {
        seconds: rep.seconds,
        max_in_flight: rep.max_in_flight,
        vqa_mean_batch: rep.vqa_mean_batch,
        loc_mean_batch: rep.loc_mean_batch,
        restarts: rep.restarts,
    };
    record(
        store,
        key,
        &spec.slice,
        &rep.outcomes,
        (split, failed_steps),
        None,
        stats,
    )
}

/// The data a task is evaluated on: the data the task's teacher was
/// trained with when the store has it, else synthetic data of `n` per
/// split (made when missing).
pub fn task_data(store: &Store, task: Task, n: usize) -> Result<PathBuf, EvalError> {
    let r = VersionRef {
        module: task.teacher_module(),
        reference: "teacher".into(),
    };
    Ok(models::data_of_version(store, Some(&r), task.into(), n)?)
}

/// A job as the input of a network that takes `side`-pixel images: its
/// images decoded (a missing or broken one is the error), its text, and
/// the id of its expected answer among `answers` (none: outside them).
pub fn example_of(
    job: &Job,
    answers: &crate::nn::text::Answers,
    side: u32,
) -> Result<(crate::nn::model::Example, Option<i64>), DataError> {
    let images = job
        .inputs
        .iter()
        .map(|(_, p)| {
            crate::data::images::decode(p)
                .map(|img| std::sync::Arc::new(crate::data::images::to_model_input(&img, side)))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let label = answers.id(&job.expected);
    Ok((
        crate::nn::model::Example {
            images,
            text: job.text.clone(),
            label: label.unwrap_or(0),
        },
        label,
    ))
}

/// Training examples of a slice for a network with these answers and
/// input size, with each example's family; jobs whose answer is outside
/// the answers are left out, and an unreadable image is an error naming it.
pub fn training_examples(
    task: Task,
    slice: &Slice,
    answers: &crate::nn::text::Answers,
    side: u32,
) -> Result<Vec<(crate::nn::model::Example, String)>, EvalError> {
    let mut out = Vec::new();
    for j in slice.jobs(task, true)? {
        if let (e, Some(_)) = example_of(&j, answers, side)? {
            out.push((e, j.kind.clone()));
        }
    }
    Ok(out)
}

/// Evaluates a task's teacher end to end (question and whole image, or
/// statement and pair, to the answer) on a slice, recorded as the pipeline
/// `{teacher: id}` with generator `end-to-end`. Every example counts: one
/// whose answer is outside the teacher's answers, or whose image cannot be
/// read, is wrong (and reported as such).
pub fn evaluate_teacher(
    store: &Store,
    task: Task,
    r: &VersionRef,
    slice: &Slice,
    force: bool,
    device: crate::nn::DeviceChoice,
) -> Result<EvalReport, EvalError> {
    let v = store.resolve(r)?;
    let key = Pipeline {
        task: task.to_string(),
        split: slice.split.clone(),
        generator: "end-to-end".into(),
        dataset: slice.key(task)?,
        modules: BTreeMap::from([("teacher".to_string(), v.id.to_string())]),
    };
    if let Some(r) = stored(store, &key, force)? {
        return Ok(r);
    }
    let (_, model) = models::load_model(store, r, device)?;
    // Every input at the teacher's own size (a user's teacher need not
    // take 64 px).
    let side = u32::try_from(model.meta.film.image_size).unwrap_or(crate::models::INPUT);
    let answers = &model.meta.answers;
    let jobs = slice.jobs(task, true)?;
    let t0 = std::time::Instant::now();
    let (mut outside, mut failed) = (0u64, 0u64);
    let mut outcomes = Vec::with_capacity(jobs.len());
    // In chunks, so that a large split is never decoded at once.
    for chunk in jobs.chunks(256) {
        let mut inputs = Vec::new();
        let mut at = Vec::new();
        for j in chunk {
            let outcome = |predicted: Option<String>, correct: bool, error: Option<String>| {
                exec::ExampleOutcome {
                    id: j.id.clone(),
                    kind: j.kind.clone(),
                    text: j.text.clone(),
                    program: None,
                    correct,
                    predicted,
                    expected: j.expected.clone(),
                    error,
                    failed_at: None,
                    trace: None,
                }
            };
            match example_of(j, answers, side) {
                Ok((e, Some(_))) => {
                    at.push(outcomes.len());
                    inputs.push(e);
                    outcomes.push(outcome(None, false, None));
                }
                // A GQA question whose answer is outside the teacher's
                // answers cannot be answered right: counted wrong (leaving
                // it out made the teacher look better), and reported.
                Ok((_, None)) => {
                    outside += 1;
                    outcomes.push(outcome(
                        None,
                        false,
                        Some(format!(
                            "the answer `{}` is outside the teacher's answers",
                            j.expected
                        )),
                    ));
                }
                Err(e) => {
                    failed += 1;
                    outcomes.push(outcome(None, false, Some(e.to_string())));
                }
            }
        }
        let (_, preds) = model.evaluate(&inputs);
        for ((k, p), e) in at.into_iter().zip(preds).zip(&inputs) {
            outcomes[k].predicted = answers.list.get(p as usize).cloned();
            outcomes[k].correct = p == e.label;
        }
    }
    let wrong = outcomes.iter().filter(|o| !o.correct).count() as u64;
    let stats = ExecStats {
        seconds: t0.elapsed().as_secs_f64(),
        max_in_flight: 1,
        vqa_mean_batch: 0.0,
        loc_mean_batch: 0.0,
        restarts: 0,
    };
    record(
        store,
        key,
        slice,
        &outcomes,
        (Some((0, wrong)), failed),
        Some(outside),
        stats,
    )
}

/// The evaluation whose id starts with `prefix`.
pub fn find_by_prefix(store: &Store, prefix: &str) -> Result<Option<Evaluation>, EvalError> {
    let p = prefix.to_ascii_lowercase();
    let hits: Vec<Evaluation> = store
        .evaluations()?
        .into_iter()
        .filter(|e| {
            !p.is_empty()
                && (e.id.to_string().starts_with(&p) || e.id.simple().to_string().starts_with(&p))
        })
        .collect();
    match hits.len() {
        0 => Ok(None),
        1 => Ok(hits.into_iter().next()),
        count => Err(EvalError::AmbiguousPrefix {
            prefix: prefix.to_string(),
            count,
        }),
    }
}

/// Runs one example of an evaluation again, in this process, with the
/// evaluation's modules, and returns its trace as a self-contained HTML
/// page (images inline).
pub fn trace_html(store: &Store, e: &Evaluation, example: &str) -> Result<String, EvalError> {
    use crate::program::interp::{self, Perception};
    let p = &e.pipeline;
    let task: Task = p
        .task
        .parse()
        .map_err(|m| EvalError::NotReplayable(format!("evaluation {}: {m}", e.id)))?;
    let (name, split) = p
        .dataset
        .split_once('/')
        .ok_or_else(|| EvalError::NotReplayable(format!("dataset key `{}`", p.dataset)))?;
    let split = split.split('[').next().unwrap_or(split);
    let d = details(store, e)?
        .ok_or_else(|| EvalError::NotReplayable("this evaluation kept no details".into()))?;
    // A real folder is found again where it was evaluated.
    let slice = if name.contains("-real-") {
        let root = d.root.clone().ok_or_else(|| {
            EvalError::NotReplayable(format!(
                "evaluation {} was of a real dataset folder and recorded no path to it: its examples' outcomes are in `vpd show {} --json`",
                e.id, e.id
            ))
        })?;
        let s = Slice {
            data: root,
            layout: Layout::Real {
                images: d.images.clone(),
            },
            split: split.to_string(),
            offset: 0,
            limit: None,
        };
        if s.key(task)? != name_key(&p.dataset) {
            return Err(EvalError::NotReplayable(format!(
                "the folder {} has changed since evaluation {} (its content no longer matches {})",
                s.data.display(),
                e.id,
                p.dataset
            )));
        }
        s
    } else {
        Slice::synthetic(&store.root().join("data").join(name), split)
    };
    let job = slice
        .jobs(task, true)?
        .into_iter()
        .find(|j| j.id == example)
        .ok_or_else(|| {
            EvalError::NotReplayable(format!("no example `{example}` in {}", p.dataset))
        })?;
    let program = d
        .examples
        .iter()
        .find(|x| x["id"] == example)
        .and_then(|x| x["program"].as_str().map(String::from))
        .ok_or_else(|| EvalError::NotReplayable(format!("example `{example}` has no program")))?;
    let (prog, rep) = validate::check_text(&program, None);
    let prog = prog.filter(|_| rep.errors.is_empty()).ok_or_else(|| {
        EvalError::NotReplayable(format!("example `{example}`: its program is invalid"))
    })?;
    let oracle = || -> Box<dyn Perception> {
        Box::new(crate::program::oracle::Oracle {
            scenes: job.scenes.clone(),
        })
    };
    let slot = |slot: &str| -> Result<Option<VersionRef>, EvalError> {
        match p.modules.get(slot).map(String::as_str) {
            None | Some("oracle") => Ok(None),
            Some(id) => {
                let uuid: uuid::Uuid = id
                    .parse()
                    .map_err(|_| EvalError::NotReplayable(format!("module id `{id}`")))?;
                let v = store
                    .version_by_id(uuid)?
                    .ok_or_else(|| EvalError::NotReplayable(format!("version {id} is gone")))?;
                Ok(Some(
                    format!("{}@{}", v.module, v.number)
                        .parse()
                        .map_err(EvalError::NotReplayable)?,
                ))
            }
        }
    };
    let cpu = crate::nn::DeviceChoice::Cpu;
    let mut modules = interp::Composite {
        loc: match slot(Slot::Loc.as_str())? {
            Some(r) => Box::new(models::load_loc(store, &r, cpu)?),
            None => oracle(),
        },
        vqa: match slot(Slot::Vqa.as_str())? {
            Some(r) => Box::new(models::load_vqa(store, &r, cpu)?),
            None => oracle(),
        },
    };
    let mut inputs = BTreeMap::new();
    for (n, path) in &job.inputs {
        inputs.insert(
            n.clone(),
            crate::program::run::load_input(n, path).map_err(EvalError::Data)?,
        );
    }
    let trace = match interp::run(&prog, &inputs, &BTreeMap::new(), Some(&mut modules)) {
        Ok(o) => o.trace,
        Err(f) => f.trace,
    };
    Ok(trace.to_html(&format!("{} — {}", example, job.text)))
}
