//! `vpd run`: the Coordinator's phases.
//!
//! 1. data: the synthetic sets of the experiment, made under the store
//!    when missing (keyed by their generator config);
//! 2. pre-training of every version the store lacks (students, teachers);
//! 3. the base pipeline, the oracle-module pipeline and each teacher on
//!    every evaluated task's split (stored evaluations are reused);
//! 4. distillation: the base pipeline's programs run on the distill split
//!    (jobs without answers or scene graphs), each VQA step adapted for the
//!    teacher in every pointer mode, the Teacher actor's soft labels in
//!    the configured mode (filtered by confidence) sent to the Trainer
//!    actor with a dev slice made the same way from the dev split; the
//!    fitted student saved as a new version with its lineage;
//! 5. pseudo-label accuracy of every pointer mode, against ground truth
//!    the oracle reads from the scene graphs (measurement only: it runs
//!    after the student is trained and nothing of it reaches training);
//! 6. the distilled pipeline on every task, the cross-task regression
//!    gate against the parent, and the alias moved only when it passes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;
use serde::{Deserialize, Serialize};

use super::actors::{
    Fit, FitLoc, Label, LoadTeacher, Samples, Teacher, Trained, TrainedLoc, Trainer,
};
use super::adapter::{self, Adapted, Images, Pointer, StepSample};
use super::experiment::Experiment;
use crate::data::synth::{SynthConfig, Task};
use crate::data::DataError;
use crate::models::{self, ModelError, PretrainConfig, INPUT};
use crate::nn::detector::{
    DetExample, DetTrainReport, DetectSettings, Detection, Detector, PrCounts,
};
use crate::nn::distill::{argmax, DistillConfig, DistillReport, SoftExample};
use crate::nn::model::{Example, Model, TrainConfig};
use crate::nn::DeviceChoice;
use crate::program::interp::Perception;
use crate::program::oracle::Oracle;
use crate::program::validate;
use crate::runtime::eval::{self, EvalError, EvalReport, EvalSpec, Score};
use crate::runtime::exec::{self, ask, ExecConfig, ImageCache, ModuleChoice};
use crate::store::{
    GateReport, ModuleVersion, NewRun, NewVersion, RunStatus, Store, StoreError, VersionRef,
};

/// An error that stops a run (recorded on the run as `failed`).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Store.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Data.
    #[error(transparent)]
    Data(#[from] DataError),
    /// A network.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// An evaluation.
    #[error(transparent)]
    Eval(#[from] EvalError),
    /// Execution.
    #[error(transparent)]
    Exec(#[from] exec::ExecError),
    /// An actor.
    #[error("{0}")]
    Actor(String),
    /// Anything else.
    #[error("{0}")]
    Invalid(String),
}

/// Accuracy difference of two pipelines on the same examples.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Difference {
    /// Distilled minus base, points.
    pub points: f64,
    /// 95% interval of the paired difference, points.
    pub ci95: (f64, f64),
    /// Examples both scored.
    pub n: usize,
}

/// One task's row of the table.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskRow {
    /// The teacher end to end (none: no teacher for this task).
    pub teacher: Option<Score>,
    /// The oracle-module pipeline.
    pub oracle: Score,
    /// The base pipeline.
    pub base: Score,
    /// The distilled pipeline.
    pub distilled: Score,
    /// Distilled minus base.
    pub difference: Difference,
    /// The stored evaluations: base and distilled.
    pub evaluations: (String, String),
}

/// Pseudo-labels of one pointer mode against ground truth.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ModeAccuracy {
    /// Steps the adapter had a rule for.
    pub n: usize,
    /// Whose pseudo-label (the soft label's argmax) is right.
    pub correct: usize,
    /// Percent.
    pub accuracy: f64,
    /// Steps whose question the pointer rewrote.
    pub rewritten: usize,
}

/// The pseudo-labels of a run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PseudoLabels {
    /// The distilled task.
    pub task: String,
    /// VQA steps of the distill split's programs.
    pub steps: usize,
    /// Steps the adapter has no rule for.
    pub unadapted: usize,
    /// Steps whose ground truth the oracle could not give (not scored).
    pub unscored: usize,
    /// Share of the VQA steps the pointer rewrote, percent.
    pub rewritten_share: f64,
    /// Accuracy per pointer mode.
    pub by_mode: BTreeMap<String, ModeAccuracy>,
    /// The parent student's own answers at the same steps, scored the same
    /// way (what the pseudo-labels have to beat).
    pub student: ModeAccuracy,
    /// The mode used for training.
    pub used: String,
    /// The confidence threshold.
    pub confidence: f64,
    /// Samples kept after the threshold (the training set).
    pub kept: usize,
    /// Accuracy of the kept samples' labels, percent.
    pub kept_accuracy: f64,
    /// Dev-slice samples (for early stopping).
    pub dev: usize,
}

/// What a run did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunReport {
    /// The run's id.
    pub run_id: String,
    /// The experiment.
    pub experiment: String,
    /// Its seed.
    pub seed: u64,
    /// Per task: teacher, oracle, base, distilled, difference.
    pub tasks: BTreeMap<String, TaskRow>,
    /// VQA pseudo-label accuracy of the mode used, percent (none when
    /// VQA was not distilled).
    pub pseudo_label_accuracy: Option<f64>,
    /// VQA pseudo-labels in detail.
    pub pseudo_labels: Option<PseudoLabels>,
    /// LOC's verified pseudo-boxes (when LOC was distilled).
    pub loc_pseudo_boxes: Option<LocPseudo>,
    /// Whether the cross-task gate passed for every distilled module.
    pub gate_passed: bool,
    /// The gate of each distilled module against its parent.
    pub gates: BTreeMap<String, GateReport>,
    /// Whether the alias moved for every distilled module.
    pub alias_moved: bool,
    /// The versions the alias moved to.
    pub aliases_moved: Vec<String>,
    /// The versions used and made (`vqa` the new one, `vqa_parent`,
    /// `loc`, the teachers) as MODULE@NUMBER.
    pub versions: BTreeMap<String, String>,
    /// The VQA training.
    pub training: Option<DistillReport>,
    /// The LOC training.
    pub loc_training: Option<DetTrainReport>,
    /// Versions pre-trained because the store lacked them.
    pub pretrained: Vec<String>,
    /// Seconds per phase.
    pub seconds: BTreeMap<String, f64>,
    /// The resolved configuration.
    pub config: Experiment,
}

/// Progress reporting of a run: phase messages and counts.
pub trait Progress: Send + Sync {
    /// A phase starts (with a total, when known).
    fn phase(&self, name: &str, total: Option<u64>);
    /// Work done in the phase so far.
    fn set(&self, done: u64, message: &str);
}

/// The actors of a run.
struct Links {
    teacher: Addr<Teacher>,
    trainer: Addr<Trainer>,
    arbiter: ArbiterHandle,
}

/// The Coordinator actor: runs the phases of one run on its own thread and
/// talks to the Teacher and the Trainer by messages.
struct Coordinator {
    links: Arc<Links>,
}

impl Actor for Coordinator {
    type Context = SyncContext<Self>;
}

type Job = Box<dyn FnOnce(&Links) -> Result<RunReport, String> + Send>;

#[derive(Message)]
#[rtype(result = "Result<RunReport, String>")]
struct Go(Job);

impl Handler<Go> for Coordinator {
    type Result = Result<RunReport, String>;
    fn handle(&mut self, msg: Go, _: &mut SyncContext<Self>) -> Self::Result {
        (msg.0)(&self.links)
    }
}

fn version_ref(v: &ModuleVersion) -> VersionRef {
    VersionRef {
        module: v.module.clone(),
        reference: v.number.to_string(),
    }
}

fn label(v: &ModuleVersion) -> String {
    format!("{}@{}", v.module, v.number)
}

fn task_name(t: Task) -> String {
    format!("{t:?}").to_lowercase()
}

fn n_of(exp: &Experiment, t: Task) -> usize {
    match t {
        Task::Gqa => exp.data.gqa_n,
        Task::Nlvr2 => exp.data.nlvr2_n,
        Task::Generic => exp.data.generic_n,
    }
}

fn data(store: &Store, exp: &Experiment, t: Task) -> Result<PathBuf, DataError> {
    models::data_dir(
        store,
        SynthConfig {
            task: t,
            n: n_of(exp, t),
            seed: exp.data.seed,
            size: INPUT,
        },
    )
}

/// The machine's cores.
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Runs an experiment, one trial of a sweep or a lone run (`sweep` is
/// `None`): records the run, drives its phases through the Coordinator
/// actor, and records how it ended. `threads` libtorch threads: the
/// machine's cores for a lone run, divided by the trials running at once
/// in a sweep; the result depends on it, and the run records it.
pub fn run_trial(
    store: &Store,
    exp: &Experiment,
    sweep: Option<uuid::Uuid>,
    threads: usize,
    progress: Arc<dyn Progress>,
) -> Result<RunReport, RunError> {
    crate::nn::set_threads(threads as i32);
    let run = store.start_run(NewRun {
        experiment: exp.name.clone(),
        config: serde_json::to_value(exp).expect("config serialises"),
        seed: exp.seed,
        dataset: None,
        sweep,
        torch_version: crate::nn::libtorch_info().version,
        threads: tch_threads(),
    })?;
    let t0 = Instant::now();
    let (tx, rx) = std::sync::mpsc::channel();
    let handle = std::thread::spawn(move || {
        let sys = System::new();
        sys.block_on(async move {
            let links = Arc::new(Links {
                teacher: SyncArbiter::start(1, Teacher::default),
                trainer: SyncArbiter::start(1, Trainer::default),
                arbiter: Arbiter::current(),
            });
            let l = links.clone();
            let coordinator = SyncArbiter::start(1, move || Coordinator { links: l.clone() });
            let _ = tx.send((coordinator, links.arbiter.clone(), System::current()));
        });
        let _ = sys.run();
    });
    let (coordinator, arbiter, system) = rx
        .recv()
        .map_err(|_| RunError::Actor("the run's actor system did not start".into()))?;
    let (s, e, id) = (store.clone(), exp.clone(), run.id);
    let job: Job =
        Box::new(move |links| phases(&s, &e, id, links, &progress).map_err(|e| e.to_string()));
    let out = ask(&arbiter, coordinator.send(Go(job)));
    system.stop();
    let _ = handle.join();
    let result = match out {
        Ok(Ok(mut r)) => {
            r.seconds.insert("total".into(), t0.elapsed().as_secs_f64());
            Ok(r)
        }
        Ok(Err(e)) | Err(e) => Err(RunError::Invalid(e)),
    };
    match &result {
        Ok(r) => store.finish_run_with_report(
            run.id,
            RunStatus::Finished,
            &serde_json::to_vec(r).expect("report serialises"),
        )?,
        Err(e) => store.finish_run(run.id, RunStatus::Failed, Some(e.to_string()))?,
    };
    result
}

fn tch_threads() -> i32 {
    crate::nn::libtorch_info().threads
}

/// Resolves `r`, pre-training it when it is a default alias the store
/// lacks; `made` collects what was pre-trained.
fn ensure(
    store: &Store,
    exp: &Experiment,
    r: &str,
    made: &mut Vec<String>,
    progress: &dyn Progress,
) -> Result<ModuleVersion, RunError> {
    let vr: VersionRef = r.parse().map_err(RunError::Invalid)?;
    if let Ok(v) = store.resolve(&vr) {
        return Ok(v);
    }
    let default_alias = match vr.module.as_str() {
        "vqa" | "loc" => "base",
        "gqa-teacher" | "nlvr2-teacher" => "teacher",
        _ => "",
    };
    if vr.reference != default_alias {
        return Err(RunError::Invalid(format!(
            "{r} is not in this store (only {}@{default_alias} of the built-in modules is pre-trained when missing)",
            vr.module
        )));
    }
    let p = &exp.pretrain;
    let cfg = |n: usize, epochs: usize, init_from: Option<String>| PretrainConfig {
        n,
        data_seed: exp.data.seed,
        train: TrainConfig {
            epochs,
            batch: 64,
            lr: 2e-3,
            patience: 3,
            seed: p.seed,
        },
        device: DeviceChoice::Cpu,
        init_from,
    };
    let what = format!("pre-training {r}");
    progress.phase(&what, None);
    let epochs_of = |m: &str| match m {
        "vqa" => p.vqa_epochs,
        "loc" => p.loc_epochs,
        _ => p.teacher_epochs,
    };
    let total = epochs_of(&vr.module);
    let tick = |epoch: usize, loss: f64, acc: f64| {
        progress.set(
            epoch as u64 + 1,
            &format!(
                "{what}: epoch {}/{total}, loss {loss:.3}, dev {:.1}%",
                epoch + 1,
                100.0 * acc
            ),
        );
    };
    let v = match vr.module.as_str() {
        "vqa" => {
            models::pretrain_student(store, &cfg(exp.data.generic_n, p.vqa_epochs, None), &tick)?
                .version
        }
        "loc" => {
            models::pretrain_loc(store, &cfg(exp.data.generic_n, p.loc_epochs, None), &tick)?
                .version
        }
        "gqa-teacher" => {
            models::pretrain_teacher(
                store,
                Task::Gqa,
                &cfg(exp.data.gqa_n, p.teacher_epochs, None),
                &tick,
            )?
            .version
        }
        "nlvr2-teacher" => {
            let init = if p.nlvr2_from_gqa && !exp.teachers.gqa.is_empty() {
                let g = ensure(store, exp, &exp.teachers.gqa, made, progress)?;
                progress.phase(&what, None);
                Some(label(&g))
            } else {
                None
            };
            models::pretrain_teacher(
                store,
                Task::Nlvr2,
                &cfg(exp.data.nlvr2_n, p.teacher_epochs, init),
                &tick,
            )?
            .version
        }
        m => {
            return Err(RunError::Invalid(format!(
                "{r} is not in this store and `{m}` is not a built-in module"
            )))
        }
    };
    made.push(label(&v));
    Ok(v)
}

fn vtask(t: Task) -> validate::Task {
    match t {
        Task::Gqa => validate::Task::Gqa,
        _ => validate::Task::Nlvr2,
    }
}

fn evaluate(
    store: &Store,
    exp: &Experiment,
    task: Task,
    dir: &Path,
    vqa: &ModuleVersion,
    loc: ModuleChoice,
    progress: &dyn Progress,
) -> Result<EvalReport, RunError> {
    let vqa_choice = match &loc {
        ModuleChoice::Oracle => ModuleChoice::Oracle,
        _ => ModuleChoice::Version(version_ref(vqa)),
    };
    let what = format!(
        "evaluating {} on {} {}",
        match &loc {
            ModuleChoice::Oracle => "oracle modules".to_string(),
            _ => label(vqa),
        },
        task_name(task),
        exp.eval.split
    );
    progress.phase(&what, None);
    let spec = EvalSpec {
        task,
        split: exp.eval.split.clone(),
        vqa: vqa_choice,
        loc,
        llm: None,
        data: dir.to_path_buf(),
        limit: (exp.eval.limit > 0).then_some(exp.eval.limit),
        force: false,
    };
    Ok(eval::evaluate(
        store,
        &spec,
        ExecConfig::batched(crate::nn::threads()),
        &|k, _| progress.set(k as u64, &what),
    )?)
}

/// The VQA steps of the base pipeline's programs on a split (jobs without
/// answers or scene graphs).
#[allow(clippy::too_many_arguments)]
fn collect(
    store: &Store,
    task: Task,
    dir: &Path,
    split: &str,
    limit: usize,
    vqa: &ModuleVersion,
    loc: &ModuleVersion,
    progress: &dyn Progress,
) -> Result<(Vec<StepSample>, Vec<StepSample>), RunError> {
    let mut jobs = eval::jobs_without_truth(task, dir, split)?;
    if limit > 0 {
        jobs.truncate(limit);
    }
    let what = format!("running {} {split} programs", task_name(task));
    progress.phase(&what, Some(jobs.len() as u64));
    let rep = exec::execute(
        store,
        &jobs,
        vtask(task),
        &ModuleChoice::Version(version_ref(vqa)),
        &ModuleChoice::Version(version_ref(loc)),
        None,
        ExecConfig::batched(crate::nn::threads()),
        &ImageCache::default(),
        &|k| progress.set(k as u64, &what),
    )?;
    let vqa_steps = jobs
        .iter()
        .zip(&rep.outcomes)
        .flat_map(|(j, o)| adapter::steps_of(j, o))
        .collect();
    let loc_steps = jobs
        .iter()
        .zip(&rep.outcomes)
        .flat_map(|(j, o)| adapter::loc_steps_of(j, o))
        .collect();
    Ok((vqa_steps, loc_steps))
}

fn paired(
    store: &Store,
    base: &EvalReport,
    distilled: &EvalReport,
) -> Result<Difference, RunError> {
    let correct = |r: &EvalReport| -> Result<BTreeMap<String, bool>, RunError> {
        let d = eval::details(store, &r.evaluation)?.ok_or_else(|| {
            RunError::Invalid(format!("evaluation {} has no details", r.evaluation.id))
        })?;
        Ok(d.examples
            .iter()
            .filter_map(|e| {
                Some((
                    e.get("id")?.as_str()?.to_string(),
                    e.get("correct")?.as_bool()?,
                ))
            })
            .collect())
    };
    let (a, b) = (correct(base)?, correct(distilled)?);
    let diffs: Vec<f64> = a
        .iter()
        .filter_map(|(k, x)| b.get(k).map(|y| *y as i32 as f64 - *x as i32 as f64))
        .collect();
    let n = diffs.len();
    let mean = diffs.iter().sum::<f64>() / n.max(1) as f64;
    let var = diffs.iter().map(|d| (d - mean).powi(2)).sum::<f64>() / (n.max(2) - 1) as f64;
    let half = 1.96 * (var / n.max(1) as f64).sqrt();
    Ok(Difference {
        points: 100.0 * mean,
        ci95: (100.0 * (mean - half), 100.0 * (mean + half)),
        n,
    })
}

fn phases(
    store: &Store,
    exp: &Experiment,
    run_id: uuid::Uuid,
    links: &Links,
    shared: &Arc<dyn Progress>,
) -> Result<RunReport, RunError> {
    let progress = shared.as_ref();
    let mut seconds = BTreeMap::new();
    let mut clock = Instant::now();
    let mut lap = |name: &str, seconds: &mut BTreeMap<String, f64>| {
        seconds.insert(name.to_string(), clock.elapsed().as_secs_f64());
        clock = Instant::now();
    };
    let dtask = exp.distill.task;
    let mut tasks: Vec<Task> = exp.eval.tasks.clone();
    if !tasks.contains(&dtask) {
        tasks.push(dtask);
    }
    tasks.sort_by_key(|t| task_name(*t));
    tasks.dedup();
    // 1. data
    progress.phase("making synthetic data (once per store)", None);
    let generic = data(store, exp, Task::Generic)?;
    let mut dirs = BTreeMap::new();
    for t in &tasks {
        dirs.insert(task_name(*t), data(store, exp, *t)?);
    }
    lap("data", &mut seconds);
    // 2. pre-training of what the store lacks
    let mut made = Vec::new();
    let vqa = ensure(store, exp, &exp.modules.vqa, &mut made, progress)?;
    let loc = ensure(store, exp, &exp.modules.loc, &mut made, progress)?;
    let mut teachers: BTreeMap<String, ModuleVersion> = BTreeMap::new();
    for (t, r) in [
        (Task::Gqa, &exp.teachers.gqa),
        (Task::Nlvr2, &exp.teachers.nlvr2),
    ] {
        if !r.is_empty() && tasks.contains(&t) {
            teachers.insert(task_name(t), ensure(store, exp, r, &mut made, progress)?);
        }
    }
    lap("pretrain", &mut seconds);
    let mut versions = BTreeMap::from([
        ("vqa_parent".to_string(), label(&vqa)),
        ("loc_parent".to_string(), label(&loc)),
        ("vqa".to_string(), label(&vqa)),
        ("loc".to_string(), label(&loc)),
    ]);
    for (t, v) in &teachers {
        versions.insert(format!("{t}-teacher"), label(v));
    }
    // 3. base, oracle, teacher
    let mut before: BTreeMap<String, (Option<Score>, EvalReport, EvalReport)> = BTreeMap::new();
    for t in &exp.eval.tasks {
        let name = task_name(*t);
        let dir = &dirs[&name];
        let teacher = match teachers.get(&name) {
            Some(v) => {
                progress.phase(&format!("evaluating {} end to end", label(v)), None);
                let limit = (exp.eval.limit > 0).then_some(exp.eval.limit);
                Some(
                    eval::evaluate_teacher(
                        store,
                        *t,
                        &version_ref(v),
                        dir,
                        &exp.eval.split,
                        limit,
                        false,
                    )?
                    .score,
                )
            }
            None => None,
        };
        let oracle = evaluate(store, exp, *t, dir, &vqa, ModuleChoice::Oracle, progress)?;
        let base = evaluate(
            store,
            exp,
            *t,
            dir,
            &vqa,
            ModuleChoice::Version(version_ref(&loc)),
            progress,
        )?;
        before.insert(name, (teacher, oracle, base));
    }
    lap("evaluate base", &mut seconds);
    // 4. distillation
    let d = &exp.distill;
    let dname = task_name(dtask);
    let ddir = dirs[&dname].clone();
    let teacher_v = teachers
        .get(&dname)
        .ok_or_else(|| RunError::Invalid(format!("no teacher for {dname}")))?
        .clone();
    let teacher_bytes = Arc::new(store.blobs().get(&teacher_v.blob)?);
    let teacher_meta = Model::from_bytes(&teacher_bytes, DeviceChoice::Cpu)
        .map_err(ModelError::from)?
        .meta;
    ask(
        &links.arbiter,
        links.teacher.send(LoadTeacher(teacher_bytes)),
    )
    .map_err(RunError::Actor)?
    .map_err(RunError::Actor)?;
    let (steps, loc_steps) = collect(
        store, dtask, &ddir, "distill", d.samples, &vqa, &loc, progress,
    )?;
    let (dev_steps, dev_loc_steps) = collect(
        store,
        dtask,
        &ddir,
        "dev",
        d.dev_samples,
        &vqa,
        &loc,
        progress,
    )?;
    lap("collect", &mut seconds);
    let cx = Cx {
        store,
        exp,
        links,
        shared,
        run_id,
        teacher: &teacher_v,
        teacher_meta: &teacher_meta,
        generic: &generic,
        data: &ddir,
        task: dtask,
        other: {
            let t = if dtask == Task::Gqa {
                Task::Nlvr2
            } else {
                Task::Gqa
            };
            let dir = match dirs.get(&task_name(t)) {
                Some(d) => d.clone(),
                None if d.anchor_other > 0 => data(store, exp, t)?,
                None => PathBuf::new(),
            };
            (t, dir)
        },
        vqa: &vqa,
        loc: &loc,
    };
    let mut images = Images::default();
    let truth: BTreeMap<String, exec::Job> = eval::jobs(dtask, &ddir, "distill")?
        .into_iter()
        .map(|j| (j.id.clone(), j))
        .collect();
    let mut candidates: BTreeMap<String, ModuleVersion> = BTreeMap::new();
    let mut vqa_part = None;
    if d.modules.iter().any(|m| m == "vqa") {
        let (v, p, t) = distill_vqa(
            &cx,
            &vqa,
            &steps,
            &dev_steps,
            &truth,
            &mut images,
            &mut seconds,
        )?;
        versions.insert("vqa".into(), label(&v));
        candidates.insert("vqa".into(), v);
        vqa_part = Some((p, t));
    }
    let mut loc_part = None;
    if d.modules.iter().any(|m| m == "loc") {
        let (v, p, t) = distill_loc(&cx, &loc, &loc_steps, &dev_loc_steps, &truth, &mut images)?;
        versions.insert("loc".into(), label(&v));
        candidates.insert("loc".into(), v);
        loc_part = Some((p, t));
    }
    lap("distill", &mut seconds);
    // 5. the distilled pipeline on every task; for the gate, each new
    // version also in a pipeline where only it differs from the base.
    let new_vqa = candidates.get("vqa").unwrap_or(&vqa).clone();
    let new_loc = candidates.get("loc").unwrap_or(&loc).clone();
    let mut rows = BTreeMap::new();
    for t in &exp.eval.tasks {
        let name = task_name(*t);
        let (teacher, oracle, base) = before.remove(&name).expect("evaluated before");
        let dir = &dirs[&name];
        let after = evaluate(
            store,
            exp,
            *t,
            dir,
            &new_vqa,
            ModuleChoice::Version(version_ref(&new_loc)),
            progress,
        )?;
        if candidates.len() > 1 {
            evaluate(
                store,
                exp,
                *t,
                dir,
                &new_vqa,
                ModuleChoice::Version(version_ref(&loc)),
                progress,
            )?;
            evaluate(
                store,
                exp,
                *t,
                dir,
                &vqa,
                ModuleChoice::Version(version_ref(&new_loc)),
                progress,
            )?;
        }
        rows.insert(
            name,
            TaskRow {
                teacher,
                oracle: oracle.score,
                difference: paired(store, &base, &after)?,
                evaluations: (
                    base.evaluation.id.to_string(),
                    after.evaluation.id.to_string(),
                ),
                base: base.score,
                distilled: after.score,
            },
        );
    }
    lap("evaluate distilled", &mut seconds);
    // 6. the gate, per distilled module, and the aliases.
    let mut gates = BTreeMap::new();
    let mut moved = Vec::new();
    for (m, c) in &candidates {
        let parent = if m == "vqa" { &vqa } else { &loc };
        let gate = store.regress(c, parent, exp.gate.max_drop)?;
        if gate.passed {
            store.set_alias(
                &c.module,
                &exp.gate.alias,
                c.id,
                Some(format!(
                    "run {run_id} ({}): gate passed, no task lost more than {} points",
                    exp.name, exp.gate.max_drop
                )),
            )?;
            moved.push(label(c));
        }
        gates.insert(m.clone(), gate);
    }
    let (pseudo_labels, training) = match vqa_part {
        Some((p, t)) => (Some(p), Some(t)),
        None => (None, None),
    };
    let (loc_pseudo, loc_training) = match loc_part {
        Some((p, t)) => (Some(p), Some(t)),
        None => (None, None),
    };
    Ok(RunReport {
        run_id: run_id.to_string(),
        experiment: exp.name.clone(),
        seed: exp.seed,
        tasks: rows,
        pseudo_label_accuracy: pseudo_labels
            .as_ref()
            .map(|p| p.by_mode[d.pointer.as_str()].accuracy),
        pseudo_labels,
        loc_pseudo_boxes: loc_pseudo,
        gate_passed: gates.values().all(|g| g.passed),
        gates,
        alias_moved: moved.len() == candidates.len(),
        aliases_moved: moved,
        versions,
        training,
        loc_training,
        pretrained: made,
        seconds,
        config: exp.clone(),
    })
}

/// Per step: the soft label and whether the pointer rewrote the question
/// (none: the adapter has no rule for the step).
type Labels = Vec<Option<(Vec<f32>, bool)>>;

/// What the distillation phases share.
struct Cx<'a> {
    store: &'a Store,
    exp: &'a Experiment,
    links: &'a Links,
    shared: &'a Arc<dyn Progress>,
    run_id: uuid::Uuid,
    teacher: &'a ModuleVersion,
    teacher_meta: &'a crate::nn::model::ModelMeta,
    generic: &'a Path,
    data: &'a Path,
    task: Task,
    /// The other task and its data (anchor steps come from there).
    other: (Task, PathBuf),
    vqa: &'a ModuleVersion,
    loc: &'a ModuleVersion,
}

impl Cx<'_> {
    fn progress(&self) -> &dyn Progress {
        self.shared.as_ref()
    }
    fn label(&self, queries: Vec<Example>) -> Result<Vec<Vec<f32>>, RunError> {
        let mut probs = Vec::with_capacity(queries.len());
        for chunk in queries.chunks(512) {
            let got = ask(
                &self.links.arbiter,
                self.links.teacher.send(Label(chunk.to_vec())),
            )
            .map_err(RunError::Actor)?
            .map_err(RunError::Actor)?;
            probs.extend(got);
        }
        Ok(probs)
    }
    fn tick(&self, what: &str, unit: &'static str) -> Arc<dyn Fn(usize, f64, f64) + Send + Sync> {
        let (p, what) = (self.shared.clone(), what.to_string());
        Arc::new(move |e, l, a| {
            p.set(
                e as u64,
                &format!("{what}: loss {l:.3}, dev {unit} {:.1}%", 100.0 * a),
            );
            tracing::info!(
                "{what}: epoch {e}: loss {l:.4}, dev {unit} {:.1}%",
                100.0 * a
            );
        })
    }
    fn dataset(&self) -> String {
        self.data
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }
}

fn best(p: &[f32]) -> f64 {
    p.iter().cloned().fold(0.0f32, f32::max) as f64
}

#[allow(clippy::too_many_arguments)]
fn distill_vqa(
    cx: &Cx,
    vqa: &ModuleVersion,
    steps: &[StepSample],
    dev_steps: &[StepSample],
    truth: &BTreeMap<String, exec::Job>,
    images: &mut Images,
    seconds: &mut BTreeMap<String, f64>,
) -> Result<(ModuleVersion, PseudoLabels, DistillReport), RunError> {
    let (store, exp, d) = (cx.store, cx.exp, &cx.exp.distill);
    let progress = cx.progress();
    let dname = task_name(cx.task);
    let t0 = Instant::now();
    let parent_bytes = Arc::new(store.blobs().get(&vqa.blob)?);
    let student_meta = Model::from_bytes(&parent_bytes, DeviceChoice::Cpu)
        .map_err(ModelError::from)?
        .meta;
    if student_meta.kind != "vqa-student" {
        return Err(RunError::Invalid(format!(
            "{} is a {}, not a VQA student",
            label(vqa),
            student_meta.kind
        )));
    }
    let tside = cx.teacher_meta.film.image_size as u32;
    let sside = student_meta.film.image_size as u32;
    progress.phase(
        &format!(
            "teacher {} labelling {} VQA steps in every pointer mode",
            label(cx.teacher),
            steps.len()
        ),
        None,
    );
    let label_all =
        |steps: &[StepSample], mode: Pointer, images: &mut Images| -> Result<Labels, RunError> {
            let mut adapted: Vec<Option<Adapted>> = Vec::with_capacity(steps.len());
            for s in steps {
                adapted.push(adapter::adapt(cx.task, s, mode, images, tside)?);
            }
            let queries: Vec<Example> = adapted
                .iter()
                .flatten()
                .flat_map(|a| a.queries.iter().cloned())
                .collect();
            let probs = cx.label(queries)?;
            let mut at = 0;
            Ok(adapted
                .iter()
                .map(|a| {
                    let a = a.as_ref()?;
                    let p = &probs[at..at + a.queries.len()];
                    at += a.queries.len();
                    adapter::soft_label(
                        &a.combine,
                        p,
                        &cx.teacher_meta.answers,
                        &student_meta.answers,
                    )
                    .map(|l| (l, a.rewritten))
                })
                .collect())
        };
    let mut by_mode = BTreeMap::new();
    for mode in Pointer::ALL {
        by_mode.insert(mode, label_all(steps, mode, images)?);
    }
    let used = &by_mode[&d.pointer];
    let kept: Vec<(usize, &Vec<f32>)> = used
        .iter()
        .enumerate()
        .filter_map(|(i, l)| l.as_ref().map(|(p, _)| (i, p)))
        .filter(|(_, p)| best(p) >= d.confidence)
        .collect();
    let mut train = Vec::with_capacity(kept.len());
    for (i, p) in &kept {
        train.push(SoftExample {
            images: vec![adapter::student_input(&steps[*i], images, sside)?],
            text: steps[*i].question.clone(),
            target: (*p).clone(),
        });
    }
    let dev_labels = label_all(dev_steps, d.pointer, images)?;
    let mut dev = Vec::new();
    for (s, l) in dev_steps.iter().zip(&dev_labels) {
        if let Some((p, _)) = l.as_ref().filter(|(p, _)| best(p) >= d.confidence) {
            dev.push(SoftExample {
                images: vec![adapter::student_input(s, images, sside)?],
                text: s.question.clone(),
                target: p.clone(),
            });
        }
    }
    seconds.insert("distill: label vqa".into(), t0.elapsed().as_secs_f64());
    let (n_train, n_dev) = (train.len(), dev.len());
    if n_train == 0 {
        return Err(RunError::Invalid(format!(
            "no pseudo-labelled VQA steps to train on ({} VQA steps on the {dname} distill split, confidence {})",
            steps.len(),
            d.confidence
        )));
    }
    let replay: Vec<Example> = if d.replay > 0.0 || d.self_distill > 0.0 {
        models::generic_examples(cx.generic, "train", &student_meta.answers)?
            .into_iter()
            .take(d.replay_samples)
            .map(|(e, _)| e)
            .collect()
    } else {
        Vec::new()
    };
    let mut anchor = Vec::new();
    if d.anchor_other > 0 {
        let (t, dir) = &cx.other;
        let (other_steps, _) = collect(
            store,
            *t,
            dir,
            "distill",
            d.anchor_other,
            cx.vqa,
            cx.loc,
            progress,
        )?;
        for s in &other_steps {
            anchor.push(Example {
                images: vec![adapter::student_input(s, images, sside)?],
                text: s.question.clone(),
                label: 0,
            });
        }
    }
    let send = |samples: Vec<SoftExample>, dev: bool| {
        ask(
            &cx.links.arbiter,
            cx.links.trainer.send(Samples { samples, dev }),
        )
        .map_err(RunError::Actor)
    };
    send(train, false)?;
    send(dev, true)?;
    let cfg = DistillConfig {
        epochs: d.epochs,
        batch: d.batch,
        lr: d.lr,
        temperature: d.temperature,
        ce_weight: d.ce_weight,
        replay_weight: d.replay,
        self_distill_weight: d.self_distill,
        patience: d.patience,
        seed: exp.seed,
    };
    let what = format!("distilling {} on {n_train} {dname} samples", label(vqa));
    progress.phase(&what, Some(d.epochs as u64));
    let t1 = Instant::now();
    let trained: Trained = ask(
        &cx.links.arbiter,
        cx.links.trainer.send(Fit {
            parent: parent_bytes,
            replay,
            anchor,
            config: cfg.clone(),
            progress: cx.tick(&what, "agreement with the teacher"),
        }),
    )
    .map_err(RunError::Actor)?
    .map_err(RunError::Actor)?;
    seconds.insert("distill: train vqa".into(), t1.elapsed().as_secs_f64());
    // Pseudo-label accuracy: measurement only, after training.
    let mut answers_true: Vec<Option<String>> = Vec::with_capacity(steps.len());
    for s in steps {
        let Some(j) = truth.get(&s.example) else {
            answers_true.push(None);
            continue;
        };
        let mut oracle = Oracle {
            scenes: j.scenes.clone(),
        };
        let img = s.image(images)?;
        let q = s.named_question().unwrap_or_else(|| s.question.clone());
        answers_true.push(oracle.vqa(&img, &q).ok());
    }
    let mut modes = BTreeMap::new();
    for (mode, labels) in &by_mode {
        let mut m = ModeAccuracy::default();
        for (l, t) in labels.iter().zip(&answers_true) {
            let (Some((p, rewritten)), Some(t)) = (l, t) else {
                continue;
            };
            m.n += 1;
            m.rewritten += *rewritten as usize;
            m.correct += (student_meta.answers.list.get(argmax(p)) == Some(t)) as usize;
        }
        m.accuracy = 100.0 * m.correct as f64 / m.n.max(1) as f64;
        modes.insert(mode.as_str().to_string(), m);
    }
    let mut student = ModeAccuracy::default();
    for (s, t) in steps.iter().zip(&answers_true) {
        if let Some(t) = t {
            student.n += 1;
            student.correct += (s.answer.as_ref() == Some(t)) as usize;
        }
    }
    student.accuracy = 100.0 * student.correct as f64 / student.n.max(1) as f64;
    let scored: Vec<&(usize, &Vec<f32>)> = kept
        .iter()
        .filter(|(i, _)| answers_true[*i].is_some())
        .collect();
    let kept_correct = scored
        .iter()
        .filter(|(i, p)| answers_true[*i].as_ref() == student_meta.answers.list.get(argmax(p)))
        .count();
    let rewritten = by_mode[&Pointer::Name]
        .iter()
        .flatten()
        .filter(|(_, r)| *r)
        .count();
    let pseudo = PseudoLabels {
        task: dname.clone(),
        steps: steps.len(),
        unadapted: used.iter().filter(|l| l.is_none()).count(),
        unscored: answers_true.iter().filter(|a| a.is_none()).count(),
        rewritten_share: 100.0 * rewritten as f64 / steps.len().max(1) as f64,
        by_mode: modes,
        student,
        used: d.pointer.as_str().into(),
        confidence: d.confidence,
        kept: n_train,
        kept_accuracy: 100.0 * kept_correct as f64 / scored.len().max(1) as f64,
        dev: n_dev,
    };
    let version = store.save_version(
        NewVersion {
            module: vqa.module.clone(),
            parent: Some(vqa.id),
            teacher: Some(cx.teacher.id),
            data: Some(format!("{}/distill[:{}]", cx.dataset(), d.samples)),
            config: serde_json::json!({
                "experiment": exp.name, "seed": exp.seed, "distill": d, "trainer": cfg,
            }),
            metrics: serde_json::json!({
                "pseudo_labels": pseudo, "training": trained.report,
                "samples": trained.samples.0, "dev_samples": trained.samples.1,
            }),
            run: Some(cx.run_id),
        },
        &trained.checkpoint,
        None,
    )?;
    Ok((version, pseudo, trained.report))
}

/// LOC's teacher-verified pseudo-boxes against ground truth.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LocPseudo {
    /// LOC steps (named objects) of the distill split's programs.
    pub steps: usize,
    /// Candidate boxes (the parent LOC at the candidate threshold).
    pub candidates: usize,
    /// Candidates the teacher accepted.
    pub accepted: usize,
    /// Steps with at least one accepted box (the training examples).
    pub examples: usize,
    /// Dev-slice examples.
    pub dev: usize,
    /// Precision and recall at IoU 0.5 of the accepted boxes, percent.
    pub verified: (f64, f64),
    /// ... of all candidates.
    pub all_candidates: (f64, f64),
    /// ... of the parent LOC at its own threshold (what it answers in
    /// programs).
    pub parent: (f64, f64),
    /// Steps whose ground truth was scored.
    pub scored: usize,
}

/// Ground-truth boxes of `query` in a step's image, as fractions of it.
fn truth_boxes(s: &StepSample, job: &exec::Job) -> Option<Vec<[f32; 4]>> {
    let g = job.scenes.get(&s.source)?;
    let r = s.rect;
    Some(
        g.objects
            .values()
            .filter(|o| models::names(&s.question, &o.name, &o.attributes))
            .filter(|o| {
                let (cx, cy) = (o.x + o.w / 2.0, o.y + o.h / 2.0);
                cx >= r.x && cx < r.x + r.w && cy >= r.y && cy < r.y + r.h
            })
            .map(|o| {
                [
                    ((o.x - r.x) / r.w) as f32,
                    ((o.y - r.y) / r.h) as f32,
                    (o.w / r.w) as f32,
                    (o.h / r.h) as f32,
                ]
            })
            .collect(),
    )
}

/// A candidate's crop: its box enlarged 1.5 times, as CROP cuts it.
fn candidate_crop(img: &image::RgbImage, d: &Detection) -> image::RgbImage {
    let (w, h) = (img.width() as f64, img.height() as f64);
    let [x, y, bw, bh] = d.rect.map(f64::from);
    let (cx, cy) = ((x + bw / 2.0) * w, (y + bh / 2.0) * h);
    let (hw, hh) = (0.75 * bw * w, 0.75 * bh * h);
    let x0 = (cx - hw).floor().clamp(0.0, w - 1.0);
    let y0 = (cy - hh).floor().clamp(0.0, h - 1.0);
    let x1 = (cx + hw).ceil().clamp(x0 + 1.0, w);
    let y1 = (cy + hh).ceil().clamp(y0 + 1.0, h);
    image::imageops::crop_imm(
        img,
        x0 as u32,
        y0 as u32,
        (x1 - x0) as u32,
        (y1 - y0) as u32,
    )
    .to_image()
}

fn distill_loc(
    cx: &Cx,
    loc: &ModuleVersion,
    steps: &[StepSample],
    dev_steps: &[StepSample],
    truth: &BTreeMap<String, exec::Job>,
    images: &mut Images,
) -> Result<(ModuleVersion, LocPseudo, DetTrainReport), RunError> {
    let (store, exp, d) = (cx.store, cx.exp, &cx.exp.distill);
    let progress = cx.progress();
    let parent_bytes = Arc::new(store.blobs().get(&loc.blob)?);
    let det = Detector::from_bytes(&parent_bytes, DeviceChoice::Cpu).map_err(ModelError::from)?;
    let side = det.meta.config.image_size as u32;
    let tside = cx.teacher_meta.film.image_size as u32;
    progress.phase(
        &format!(
            "teacher {} verifying LOC's candidate boxes on {} steps",
            label(cx.teacher),
            steps.len()
        ),
        None,
    );
    let settings = DetectSettings {
        threshold: d.loc_candidates as f32,
        nms_iou: 0.5,
        max_boxes: 3,
    };
    // Candidates and the teacher's verdict on each; (example, candidates,
    // accepted flags, the parent's own detections).
    type Verified = (DetExample, Vec<Detection>, Vec<bool>, Vec<Detection>);
    let verify = |steps: &[StepSample], images: &mut Images| -> Result<Vec<Verified>, RunError> {
        let mut exs = Vec::with_capacity(steps.len());
        let mut pixels = Vec::with_capacity(steps.len());
        for s in steps {
            let img = s.image(images)?;
            exs.push(DetExample {
                image: Arc::new(crate::data::images::to_model_input(&img.pixels, side)),
                name: s.question.clone(),
                boxes: vec![],
            });
            pixels.push(img.pixels);
        }
        let cands = det.detect(&exs, &settings);
        let own = det.detect(&exs, &det.meta.settings);
        let mut queries = Vec::new();
        let mut spans = Vec::new();
        for ((s, c), px) in steps.iter().zip(&cands).zip(&pixels) {
            for d in c {
                let q = adapter::verification_queries(&s.question, &candidate_crop(px, d), tside);
                spans.push(q.len());
                queries.extend(q);
            }
        }
        let probs = cx.label(queries)?;
        let mut at = 0;
        let mut k = 0;
        let mut out = Vec::with_capacity(steps.len());
        for ((ex, c), o) in exs.into_iter().zip(cands).zip(own) {
            let mut ok = Vec::with_capacity(c.len());
            for _ in &c {
                let n = spans[k];
                ok.push(
                    adapter::verdict(&probs[at..at + n], &cx.teacher_meta.answers) as f64
                        >= d.loc_accept,
                );
                at += n;
                k += 1;
            }
            out.push((ex, c, ok, o));
        }
        Ok(out)
    };
    let verified = verify(steps, images)?;
    let to_examples = |v: &[Verified]| -> Vec<DetExample> {
        v.iter()
            .filter(|(_, _, ok, _)| ok.iter().any(|x| *x))
            .map(|(ex, c, ok, _)| DetExample {
                boxes: c
                    .iter()
                    .zip(ok)
                    .filter(|(_, k)| **k)
                    .map(|(d, _)| d.rect)
                    .collect(),
                ..ex.clone()
            })
            .collect()
    };
    let mut train = to_examples(&verified);
    let dev = to_examples(&verify(dev_steps, images)?);
    let examples = train.len();
    if examples == 0 {
        return Err(RunError::Invalid(format!(
            "the teacher accepted no LOC candidate on the {} distill split ({} LOC steps)",
            task_name(cx.task),
            steps.len()
        )));
    }
    if d.replay > 0.0 {
        train.extend(
            models::generic_detections(cx.generic, "train")?
                .into_iter()
                .take(d.replay_samples),
        );
    }
    let cfg = TrainConfig {
        epochs: d.epochs,
        batch: d.batch,
        lr: d.lr,
        patience: d.patience,
        seed: exp.seed,
    };
    let what = format!(
        "distilling {} on {examples} verified {} examples",
        label(loc),
        task_name(cx.task)
    );
    progress.phase(&what, Some(d.epochs as u64));
    let trained: TrainedLoc = ask(
        &cx.links.arbiter,
        cx.links.trainer.send(FitLoc {
            parent: parent_bytes,
            train,
            dev: dev.clone(),
            config: cfg.clone(),
            progress: cx.tick(&what, "F1 against verified boxes"),
        }),
    )
    .map_err(RunError::Actor)?
    .map_err(RunError::Actor)?;
    // Measurement only, after training.
    let (mut acc, mut all, mut own) = (
        PrCounts::default(),
        PrCounts::default(),
        PrCounts::default(),
    );
    let mut scored = 0;
    for (s, (_, c, ok, o)) in steps.iter().zip(&verified) {
        let Some(t) = truth.get(&s.example).and_then(|j| truth_boxes(s, j)) else {
            continue;
        };
        scored += 1;
        let a: Vec<Detection> = c
            .iter()
            .zip(ok)
            .filter(|(_, k)| **k)
            .map(|(d, _)| *d)
            .collect();
        acc.add(&a, &t, 0.5);
        all.add(c, &t, 0.5);
        own.add(o, &t, 0.5);
    }
    let pr = |c: &PrCounts| (c.precision(), c.recall());
    let pseudo = LocPseudo {
        steps: steps.len(),
        candidates: verified.iter().map(|v| v.1.len()).sum(),
        accepted: verified
            .iter()
            .map(|v| v.2.iter().filter(|x| **x).count())
            .sum(),
        examples,
        dev: dev.len(),
        verified: pr(&acc),
        all_candidates: pr(&all),
        parent: pr(&own),
        scored,
    };
    let version = store.save_version(
        NewVersion {
            module: loc.module.clone(),
            parent: Some(loc.id),
            teacher: Some(cx.teacher.id),
            data: Some(format!("{}/distill[:{}]", cx.dataset(), d.samples)),
            config: serde_json::json!({
                "experiment": exp.name, "seed": exp.seed, "distill": d, "trainer": cfg,
            }),
            metrics: serde_json::json!({ "pseudo_boxes": pseudo, "training": trained.report }),
            run: Some(cx.run_id),
        },
        &trained.checkpoint,
        None,
    )?;
    Ok((version, pseudo, trained.report))
}
