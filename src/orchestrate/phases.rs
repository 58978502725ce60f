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
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use crate::data::synth::{Corpus, SynthConfig};
use crate::data::DataError;
use crate::data::ImageCache;
use crate::distill::actors::LoadTeacher;
use crate::distill::adapter::StepSample;
use crate::distill::context::{collect, exec_config, label, task_name, version_ref, Cx, Links};
use crate::distill::loc::distill_loc;
use crate::distill::vqa::distill_vqa;
use crate::experiment::report::*;
use crate::experiment::source::Source;
use crate::experiment::{Experiment, Progress, Role, RunError};
use crate::models::{self, ModelError, INPUT};
use crate::nn::DeviceChoice;
use crate::runtime::exec::{self, ask, ModuleChoice};
use crate::runtime::score::{EvalReport, Score};
use crate::store::{GateReport, ModuleVersion, Store};
use crate::vocab::{Slot, Task};

use super::evaluate::{evaluate, paired};

pub(crate) fn n_of(exp: &Experiment, t: Corpus) -> usize {
    match t {
        Corpus::Gqa => exp.data.gqa_n,
        Corpus::Nlvr2 => exp.data.nlvr2_n,
        Corpus::Generic => exp.data.generic_n,
    }
}

pub(crate) fn data(store: &Store, exp: &Experiment, t: Corpus) -> Result<PathBuf, DataError> {
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

/// A run's phases, in order; each is a named step below. The elapsed time
/// of each lands in the report's `seconds`.
pub(crate) fn phases(
    store: &Store,
    exp: &Experiment,
    run_id: uuid::Uuid,
    links: &Links,
    shared: &Arc<dyn Progress>,
) -> Result<RunReport, RunError> {
    let progress = shared.as_ref();
    let mut clock = Clock::start();
    let data = prepare_data(store, exp, progress)?;
    clock.lap("data");
    let modules = pretrain(store, exp, &data, progress)?;
    clock.lap("pretrain");
    let before = baselines(store, exp, &data, &modules, progress)?;
    clock.lap("evaluate base");
    let (teacher, teacher_meta) = load_teacher(store, exp, &modules, links)?;
    let steps = collect_steps(store, exp, &data, &modules, progress)?;
    clock.lap("collect");
    let cx = Cx {
        store,
        exp,
        links,
        shared,
        run_id,
        teacher: &teacher,
        teacher_meta: &teacher_meta,
        generic: data.generic.as_deref(),
        source: &data.sources[&task_name(exp.distill.task)],
        task: exp.distill.task,
        other: other_task(store, exp, &data)?,
        vqa: &modules.vqa,
        loc: &modules.loc,
    };
    let distilled = distill(&cx, &steps, &mut clock.seconds)?;
    clock.lap("distill");
    let rows = evaluate_distilled(store, exp, &data, &modules, &distilled, before, progress)?;
    clock.lap("evaluate distilled");
    let (gates, moved) = gate(store, exp, run_id, &modules, &distilled)?;
    let mut r = report(
        exp,
        run_id,
        &modules,
        distilled,
        rows,
        gates,
        moved,
        clock.seconds,
    );
    r.data = data_used(exp, &data, &modules);
    Ok(r)
}

/// What every trial of a sweep shares, made ahead of the trials (a Slurm
/// sweep does this before it submits): the data, the pre-trained versions
/// the store lacks, and the teacher, oracle and base evaluations.
pub(crate) fn prepare(
    store: &Store,
    exp: &Experiment,
    progress: &dyn Progress,
) -> Result<(), RunError> {
    let data = prepare_data(store, exp, progress)?;
    let modules = pretrain(store, exp, &data, progress)?;
    baselines(store, exp, &data, &modules, progress)?;
    Ok(())
}

/// Seconds per phase.
struct Clock {
    seconds: BTreeMap<String, f64>,
    since: Instant,
}

impl Clock {
    /// Starts now.
    fn start() -> Clock {
        Clock {
            seconds: BTreeMap::new(),
            since: Instant::now(),
        }
    }

    /// Records the time since the last lap (or the start) under `name`.
    fn lap(&mut self, name: &str) {
        self.seconds
            .insert(name.to_string(), self.since.elapsed().as_secs_f64());
        self.since = Instant::now();
    }
}

/// The data of every task the run touches, and the generic corpus.
pub(crate) struct RunData {
    /// Evaluated tasks and the distillation task, sorted, once each.
    pub(crate) tasks: Vec<Task>,
    /// The generic corpus (students' pre-training, replay): none when the
    /// distillation's data is real and the experiment does not allow the
    /// synthetic world (`data.allow_synthetic`).
    pub(crate) generic: Option<PathBuf>,
    /// Each task's data, by task name.
    pub(crate) sources: BTreeMap<String, Source>,
}

impl RunData {
    /// Whether the distillation reads a real folder.
    fn real_run(&self, exp: &Experiment) -> bool {
        self.sources
            .get(&task_name(exp.distill.task))
            .is_some_and(Source::is_real)
    }
}

/// A task's data: its real folder when the experiment names one, else the
/// synthetic world's (made under the store when missing).
pub(crate) fn source_of(store: &Store, exp: &Experiment, t: Task) -> Result<Source, RunError> {
    let real = exp.data.real(t);
    if real.is_real() {
        // The roles the run reads of this task.
        let mut roles = Vec::new();
        if exp.eval.tasks.contains(&t) {
            roles.push(Role::Test);
        }
        if exp.distill.task == t {
            roles.extend([Role::Distill, Role::Dev]);
        } else if exp.distill.anchor_other > 0 {
            roles.push(Role::Distill);
        }
        Source::real(t, real, &roles)
    } else {
        Ok(Source::synthetic(data(store, exp, t.into())?, exp))
    }
}

/// Phase 1: Each task's data (a real folder, checked, or the synthetic
/// world made under the store when missing) and the generic corpus when
/// the run may use it.
fn prepare_data(
    store: &Store,
    exp: &Experiment,
    progress: &dyn Progress,
) -> Result<RunData, RunError> {
    let mut tasks: Vec<Task> = exp.eval.tasks.clone();
    if !tasks.contains(&exp.distill.task) {
        tasks.push(exp.distill.task);
    }
    tasks.sort();
    tasks.dedup();
    progress.phase("preparing data", None);
    let mut sources = BTreeMap::new();
    for t in &tasks {
        sources.insert(task_name(*t), source_of(store, exp, *t)?);
    }
    let mut run = RunData {
        tasks,
        generic: None,
        sources,
    };
    if !run.real_run(exp) || exp.data.allow_synthetic {
        run.generic = Some(data(store, exp, Corpus::Generic)?);
    }
    Ok(run)
}

/// Which data every phase read, in words (the report's `data`).
fn data_used(exp: &Experiment, run: &RunData, m: &Modules) -> BTreeMap<String, String> {
    let d = &exp.distill;
    let dtask = d.task;
    let src = |t: Task| &run.sources[&task_name(t)];
    let mut out = BTreeMap::new();
    out.insert(
        "distill".to_string(),
        src(dtask).describe(dtask, Role::Distill, d.samples),
    );
    out.insert(
        "dev".to_string(),
        src(dtask).describe(dtask, Role::Dev, d.dev_samples),
    );
    for t in &exp.eval.tasks {
        out.insert(
            format!("test {t}"),
            src(*t).describe(*t, Role::Test, exp.eval.limit),
        );
    }
    out.insert(
        "replay".to_string(),
        match (&run.generic, d.replay > 0.0 || d.self_distill > 0.0) {
            (Some(g), true) => format!(
                "{} (synthetic generic corpus)",
                g.file_name().unwrap_or_default().to_string_lossy()
            ),
            (Some(_), false) => "none (distill.replay and distill.self_distill are 0)".into(),
            (None, _) => "none (real data; data.allow_synthetic is false)".into(),
        },
    );
    for (what, made) in &m.sources {
        out.insert(format!("module {what}"), made.clone());
    }
    out
}

/// The base pipeline's modules and the teachers, made when missing.
pub(crate) struct Modules {
    pub(crate) vqa: ModuleVersion,
    pub(crate) loc: ModuleVersion,
    /// By task name, for the tasks the run touches that have one.
    pub(crate) teachers: BTreeMap<String, ModuleVersion>,
    /// What was pre-trained because the store lacked it.
    pub(crate) made: Vec<String>,
    /// Each version used: where it came from (the store, or the data it
    /// was pre-trained on).
    pub(crate) sources: BTreeMap<String, String>,
    /// Versions reused from the store that were made with another recipe
    /// than the experiment's, with the differences.
    pub(crate) recipe_differences: BTreeMap<String, Vec<String>>,
    /// Imported from the shipped checkpoints because the store lacked them.
    pub(crate) shipped: Vec<String>,
}

/// Phase 2: Pre-training of what the store lacks.
fn pretrain(
    store: &Store,
    exp: &Experiment,
    run: &RunData,
    progress: &dyn Progress,
) -> Result<Modules, RunError> {
    let mut made = Vec::new();
    let mut sources = BTreeMap::new();
    let cx = super::ensure::Ensure {
        store,
        exp,
        sources: &run.sources,
        synthetic_students: run.generic.is_some(),
        progress,
        differences: Default::default(),
        shipped: Default::default(),
    };
    let vqa = cx.ensure(&exp.modules.vqa, &mut made, &mut sources)?;
    let loc = cx.ensure(&exp.modules.loc, &mut made, &mut sources)?;
    // A user's TorchScript LOC runs in programs and evaluations but is not
    // distilled: the trainer fine-tunes vpd's detector (its grid targets).
    if loc.sidecar.is_some() && exp.distill.modules.contains(&Slot::Loc) {
        return Err(RunError::NotDistillable(format!(
            "distill.modules names loc but {}@{} is a user's TorchScript LOC module, which vpd runs and evaluates but does not distil; set distill.modules = [\"vqa\"]",
            loc.module, loc.number
        )));
    }
    let mut teachers = BTreeMap::new();
    for t in Task::ALL {
        if let (Some(r), true) = (exp.teachers.of(t), run.tasks.contains(&t)) {
            teachers.insert(task_name(t), cx.ensure(r, &mut made, &mut sources)?);
        }
    }
    Ok(Modules {
        vqa,
        loc,
        teachers,
        made,
        sources,
        recipe_differences: cx.differences.into_inner(),
        shipped: cx.shipped.into_inner(),
    })
}

/// A task before distillation: its teacher end to end (when it has one),
/// the oracle-module pipeline (none: the split has no scene graphs), the
/// base pipeline.
type Before = BTreeMap<String, (Option<Score>, Option<EvalReport>, EvalReport)>;

/// Phase 3: The teacher, oracle and base pipelines on every evaluated task.
fn baselines(
    store: &Store,
    exp: &Experiment,
    data: &RunData,
    m: &Modules,
    progress: &dyn Progress,
) -> Result<Before, RunError> {
    let mut before = Before::new();
    for t in &exp.eval.tasks {
        let name = task_name(*t);
        let source = &data.sources[&name];
        let slice = source.slice(Role::Test, exp.eval.limit);
        let teacher = match m.teachers.get(&name) {
            Some(v) => {
                progress.phase(&format!("evaluating {} end to end", label(v)), None);
                Some(
                    crate::runtime::teacher_eval::evaluate_teacher(
                        store,
                        *t,
                        &version_ref(v),
                        &slice,
                        false,
                        exp.device(),
                    )?
                    .score,
                )
            }
            None => None,
        };
        // Oracle modules read scene graphs: not measured without them.
        let oracle = if slice.has_scene_graphs(*t) {
            Some(evaluate(
                store,
                exp,
                *t,
                source,
                &m.vqa,
                ModuleChoice::Oracle,
                progress,
            )?)
        } else {
            None
        };
        let base = evaluate(
            store,
            exp,
            *t,
            source,
            &m.vqa,
            ModuleChoice::Version(version_ref(&m.loc)),
            progress,
        )?;
        before.insert(name, (teacher, oracle, base));
    }
    Ok(before)
}

/// The distillation task's teacher, loaded into the Teacher actor; its
/// record and metadata for the adapters.
fn load_teacher(
    store: &Store,
    exp: &Experiment,
    m: &Modules,
    links: &Links,
) -> Result<(ModuleVersion, crate::nn::model::ModelMeta), RunError> {
    let dtask = exp.distill.task;
    let teacher = m
        .teachers
        .get(&task_name(dtask))
        .ok_or(RunError::NoTeacher(dtask))?
        .clone();
    let net = crate::models::StoredNet::of(store, &teacher)?;
    let meta = net.load(DeviceChoice::Cpu).map_err(ModelError::from)?.meta;
    exp.device().to_tch().map_err(ModelError::from)?;
    models::check_role(&net.label, &meta)?;
    ask(
        &links.arbiter,
        links.teacher.send(LoadTeacher(net, exp.device())),
    )
    .map_err(RunError::mailbox("Teacher"))?
    .map_err(RunError::actor("Teacher"))?;
    Ok((teacher, meta))
}

/// The base pipeline's VQA and LOC steps on the distill split and on the
/// dev slice.
struct Steps {
    vqa: Vec<StepSample>,
    loc: Vec<StepSample>,
    dev_vqa: Vec<StepSample>,
    dev_loc: Vec<StepSample>,
    /// The distill split's jobs with their truth, for measuring
    /// pseudo-labels after training only.
    truth: BTreeMap<String, exec::Job>,
}

/// Phase 4a: The base pipeline's programs on the distill and dev splits.
fn collect_steps(
    store: &Store,
    exp: &Experiment,
    data: &RunData,
    m: &Modules,
    progress: &dyn Progress,
) -> Result<Steps, RunError> {
    let (d, dtask) = (&exp.distill, exp.distill.task);
    let src = &data.sources[&task_name(dtask)];
    let (vqa, loc) = collect(
        store,
        exp,
        dtask,
        src,
        Role::Distill,
        d.samples,
        &m.vqa,
        &m.loc,
        progress,
    )?;
    let (dev_vqa, dev_loc) = collect(
        store,
        exp,
        dtask,
        src,
        Role::Dev,
        d.dev_samples,
        &m.vqa,
        &m.loc,
        progress,
    )?;
    // Only jobs with scene graphs can score a pseudo-label; without them
    // pseudo-label accuracy is not measured.
    let truth = src
        .slice(Role::Distill, d.samples)
        .jobs(dtask, true)?
        .into_iter()
        .filter(|j| !j.scenes.is_empty())
        .map(|j| (j.id.clone(), j))
        .collect();
    Ok(Steps {
        vqa,
        loc,
        dev_vqa,
        dev_loc,
        truth,
    })
}

/// The other task and its data: anchor steps come from there (none when
/// the run takes none).
fn other_task(
    store: &Store,
    exp: &Experiment,
    run: &RunData,
) -> Result<(Task, Option<Source>), RunError> {
    let t = match exp.distill.task {
        Task::Gqa => Task::Nlvr2,
        Task::Nlvr2 => Task::Gqa,
    };
    let src = match run.sources.get(&task_name(t)) {
        Some(s) => Some(s.clone()),
        None if exp.distill.anchor_other > 0 => Some(source_of(store, exp, t)?),
        None => None,
    };
    Ok((t, src))
}

/// What distillation made, per slot.
pub(crate) struct Distilled {
    candidates: BTreeMap<Slot, ModuleVersion>,
    vqa: Option<(PseudoLabels, crate::nn::fit::DistillReport)>,
    loc: Option<(LocPseudo, crate::nn::detector::DetTrainReport)>,
}

/// Phase 4b: Labels from the teacher, training, pseudo-label accuracy: a new
/// version of each distilled slot.
fn distill(cx: &Cx, s: &Steps, seconds: &mut BTreeMap<String, f64>) -> Result<Distilled, RunError> {
    let d = &cx.exp.distill;
    let images = ImageCache::with_budget(exec_config(cx.exp).image_cache_bytes);
    let mut out = Distilled {
        candidates: BTreeMap::new(),
        vqa: None,
        loc: None,
    };
    if d.modules.contains(&Slot::Vqa) {
        let (v, p, t) = distill_vqa(cx, cx.vqa, &s.vqa, &s.dev_vqa, &s.truth, &images, seconds)?;
        out.candidates.insert(Slot::Vqa, v);
        out.vqa = Some((p, t));
    }
    if d.modules.contains(&Slot::Loc) {
        let (v, p, t) = distill_loc(cx, cx.loc, &s.loc, &s.dev_loc, &s.truth, &images)?;
        out.candidates.insert(Slot::Loc, v);
        out.loc = Some((p, t));
    }
    Ok(out)
}

/// Phase 5: The distilled pipeline on every task, against the base on the same
/// examples; for the gate, each new version also in a pipeline where only
/// it differs from the base.
fn evaluate_distilled(
    store: &Store,
    exp: &Experiment,
    data: &RunData,
    m: &Modules,
    out: &Distilled,
    mut before: Before,
    progress: &dyn Progress,
) -> Result<BTreeMap<String, TaskRow>, RunError> {
    let new_vqa = out.candidates.get(&Slot::Vqa).unwrap_or(&m.vqa).clone();
    let new_loc = out.candidates.get(&Slot::Loc).unwrap_or(&m.loc).clone();
    let mut rows = BTreeMap::new();
    for t in &exp.eval.tasks {
        let name = task_name(*t);
        // `eval.tasks` holds each task once (the experiment refuses
        // duplicates), so every task has its baselines.
        let (teacher, oracle, base) = before
            .remove(&name)
            .ok_or_else(|| RunError::Defect(format!("no baseline evaluations of {name}")))?;
        let source = &data.sources[&name];
        let after = evaluate(
            store,
            exp,
            *t,
            source,
            &new_vqa,
            ModuleChoice::Version(version_ref(&new_loc)),
            progress,
        )?;
        if out.candidates.len() > 1 {
            evaluate(
                store,
                exp,
                *t,
                source,
                &new_vqa,
                ModuleChoice::Version(version_ref(&m.loc)),
                progress,
            )?;
            evaluate(
                store,
                exp,
                *t,
                source,
                &m.vqa,
                ModuleChoice::Version(version_ref(&new_loc)),
                progress,
            )?;
        }
        rows.insert(
            name,
            TaskRow {
                teacher,
                oracle: oracle.map(|o| o.score),
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
    Ok(rows)
}

/// Phase 6: The cross-task gate per distilled module against its parent, and
/// the alias moved for those that pass.
fn gate(
    store: &Store,
    exp: &Experiment,
    run_id: uuid::Uuid,
    m: &Modules,
    out: &Distilled,
) -> Result<(BTreeMap<String, GateReport>, Vec<String>), RunError> {
    let mut gates = BTreeMap::new();
    let mut moved = Vec::new();
    for (slot, c) in &out.candidates {
        let parent = match slot {
            Slot::Vqa => &m.vqa,
            Slot::Loc => &m.loc,
        };
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
        gates.insert(slot.module().to_string(), gate);
    }
    Ok((gates, moved))
}

/// The run's report from what the phases found.
#[allow(clippy::too_many_arguments)]
fn report(
    exp: &Experiment,
    run_id: uuid::Uuid,
    m: &Modules,
    out: Distilled,
    rows: BTreeMap<String, TaskRow>,
    gates: BTreeMap<String, GateReport>,
    moved: Vec<String>,
    seconds: BTreeMap<String, f64>,
) -> RunReport {
    let mut by_role = BTreeMap::from([
        ("vqa_parent".to_string(), &m.vqa),
        ("loc_parent".to_string(), &m.loc),
        ("vqa".to_string(), &m.vqa),
        ("loc".to_string(), &m.loc),
    ]);
    for (t, v) in &m.teachers {
        by_role.insert(format!("{t}-teacher"), v);
    }
    for (slot, v) in &out.candidates {
        by_role.insert(slot.module().to_string(), v);
    }
    let versions = by_role.iter().map(|(k, v)| (k.clone(), label(v))).collect();
    let version_ids = by_role.iter().map(|(k, v)| (k.clone(), v.id)).collect();
    let (pseudo_labels, training) = out.vqa.map_or((None, None), |(p, t)| (Some(p), Some(t)));
    let (loc_pseudo, loc_training) = out.loc.map_or((None, None), |(p, t)| (Some(p), Some(t)));
    RunReport {
        run_id: run_id.to_string(),
        experiment: exp.name.clone(),
        seed: exp.seed,
        tasks: rows,
        pseudo_label_accuracy: pseudo_labels
            .as_ref()
            .and_then(|p| p.by_mode[exp.distill.pointer.as_str()].accuracy),
        pseudo_labels,
        loc_pseudo_boxes: loc_pseudo,
        gate_passed: gates.values().all(|g| g.passed),
        alias_moved: moved.len() == out.candidates.len(),
        gates,
        aliases_moved: moved,
        versions,
        version_ids,
        training,
        loc_training,
        pretrained: m.made.clone(),
        data: BTreeMap::new(),
        recipe_differences: m.recipe_differences.clone(),
        shipped: m.shipped.clone(),
        machine: Some(crate::machine::Machine::this()),
        seconds,
        config: exp.clone(),
    }
}
