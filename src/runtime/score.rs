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
use super::jobs::{Layout, Slice};
use crate::data::DataError;
use crate::models::ModelError;
use crate::program::llm::LlmConfig;
use crate::store::{wilson_interval, Evaluation, Pipeline, Store, StoreError, Tally};
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
    /// A module's forward pass failed or gave NaN or inf.
    #[error("{module}: {message}")]
    Module {
        /// The module version.
        module: String,
        /// What it said or gave.
        message: String,
    },
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
    /// A split (or the part of it asked for) with no examples.
    #[error("{} has no examples in split `{split}` (or in the part asked for): nothing is measured and nothing is stored", data.display())]
    EmptySplit {
        /// The split.
        split: String,
        /// The dataset folder.
        data: PathBuf,
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
    /// The most frequent failure of a step (its message without the
    /// program line) and how many examples it failed; null when none failed.
    pub commonest_failure: Option<(String, u64)>,
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

/// The most frequent of `errors` without their `line N: ` prefix, with its
/// count (ties: the first in order).
fn commonest<'a>(errors: impl Iterator<Item = &'a str>) -> Option<(String, u64)> {
    let mut counts: BTreeMap<String, (u64, usize)> = BTreeMap::new();
    for (i, e) in errors.enumerate() {
        let msg = match e.split_once(": ") {
            Some((head, rest)) if head.starts_with("line ") => rest,
            _ => e,
        };
        counts.entry(msg.to_string()).or_insert((0, i)).0 += 1;
    }
    counts
        .into_iter()
        .max_by(|a, b| a.1 .0.cmp(&b.1 .0).then(b.1 .1.cmp(&a.1 .1)))
        .map(|(m, (n, _))| (m, n))
}

fn report_of(
    e: Evaluation,
    d: &Details,
    commonest_failure: Option<(String, u64)>,
    reused: bool,
    exec: Option<ExecStats>,
) -> EvalReport {
    EvalReport {
        commonest_failure,
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
pub(crate) fn stored(
    store: &Store,
    key: &Pipeline,
    force: bool,
) -> Result<Option<EvalReport>, EvalError> {
    if force {
        return Ok(None);
    }
    let Some(e) = store.find_evaluation(key)? else {
        return Ok(None);
    };
    Ok(details(store, &e)?.map(|d| {
        let c = commonest(d.examples.iter().filter_map(|x| x["error"].as_str()));
        report_of(e, &d, c, true, None)
    }))
}

/// Records an evaluation with its details; `errors` are program errors,
/// module errors and failed steps.
pub(crate) fn record(
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
    let c = commonest(outcomes.iter().filter_map(|o| o.error.as_deref()));
    Ok(report_of(e, &d, c, false, Some(stats)))
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
pub(crate) fn name_key(dataset: &str) -> String {
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
    // No example: nothing to measure, and nothing is stored (an accuracy
    // of n=0 is not 0%).
    if all.is_empty() {
        return Err(EvalError::EmptySplit {
            split: spec.slice.split.clone(),
            data: spec.slice.data.clone(),
        });
    }
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
