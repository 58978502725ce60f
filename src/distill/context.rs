//! What the distillation of every module shares: the run's context `Cx`
//! (store, experiment, the actors' addresses, the teacher, the data), the
//! base pipeline's steps collected for the adapter, and the names a run
//! prints. A leaf: it imports nothing of `orchestrate`, and the phases and
//! `vqa`/`loc` import it.

use std::path::Path;
use std::sync::Arc;

use actix::prelude::*;

use super::actors::{Label, Teacher, Trainer};
use super::adapter::{self, StepSample};
use crate::data::ImageCache;
use crate::experiment::source::Source;
use crate::experiment::{Experiment, Progress, Role, RunError};
use crate::nn::model::Example;
use crate::runtime::exec::{self, ask, ExecConfig, ModuleChoice};
use crate::runtime::score;
use crate::store::{ModuleVersion, Store, VersionRef};
use crate::vocab::Task;

/// The actors of a run.
pub(crate) struct Links {
    pub(crate) teacher: Addr<Teacher>,
    pub(crate) trainer: Addr<Trainer>,
    pub(crate) arbiter: ArbiterHandle,
}

pub(crate) fn version_ref(v: &ModuleVersion) -> VersionRef {
    VersionRef {
        module: v.module.clone(),
        reference: v.number.to_string(),
    }
}

pub(crate) fn label(v: &ModuleVersion) -> String {
    format!("{}@{}", v.module, v.number)
}

pub(crate) fn task_name(t: Task) -> String {
    t.to_string()
}

/// The executor's settings in a run: batched, with the experiment's image
/// cache.
pub(crate) fn exec_config(exp: &Experiment) -> ExecConfig {
    ExecConfig {
        image_cache_bytes: exp.data.image_cache_mb.saturating_mul(1 << 20),
        ..ExecConfig::batched(crate::nn::threads())
    }
    .on(exp.device(), exec::GPU_BATCH)
}

/// The VQA and LOC steps of the base pipeline's programs on `limit`
/// examples of a role's split (0: all; jobs without answers or scene
/// graphs).
#[allow(clippy::too_many_arguments)]
pub(crate) fn collect(
    store: &Store,
    exp: &Experiment,
    task: Task,
    source: &Source,
    role: Role,
    limit: usize,
    vqa: &ModuleVersion,
    loc: &ModuleVersion,
    progress: &dyn Progress,
) -> Result<(Vec<StepSample>, Vec<StepSample>), RunError> {
    let slice = source.slice(role, limit);
    let jobs = slice.jobs(task, false)?;
    score::needs_programs(&jobs, source.llm().is_some(), &slice.split)?;
    let what = format!(
        "running {} {} programs ({role})",
        task_name(task),
        slice.split
    );
    progress.phase(&what, Some(jobs.len() as u64));
    let rep = exec::execute(
        store,
        &jobs,
        task,
        &ModuleChoice::Version(version_ref(vqa)),
        &ModuleChoice::Version(version_ref(loc)),
        source.llm(),
        exec_config(exp),
        &ImageCache::with_budget(exec_config(exp).image_cache_bytes),
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

/// Per step: the soft label and whether the pointer rewrote the question
/// (none: the adapter has no rule for the step).
pub(crate) type Labels = Vec<Option<(Vec<f32>, bool)>>;

/// What the distillation phases share.
pub(crate) struct Cx<'a> {
    pub(crate) store: &'a Store,
    pub(crate) exp: &'a Experiment,
    pub(crate) links: &'a Links,
    pub(crate) shared: &'a Arc<dyn Progress>,
    pub(crate) run_id: uuid::Uuid,
    pub(crate) teacher: &'a ModuleVersion,
    pub(crate) teacher_meta: &'a crate::nn::model::ModelMeta,
    /// The generic corpus, when the run may replay it.
    pub(crate) generic: Option<&'a Path>,
    /// The distillation task's data.
    pub(crate) source: &'a Source,
    pub(crate) task: Task,
    /// The other task and its data (anchor steps come from there).
    pub(crate) other: (Task, Option<Source>),
    pub(crate) vqa: &'a ModuleVersion,
    pub(crate) loc: &'a ModuleVersion,
}

impl Cx<'_> {
    pub(crate) fn progress(&self) -> &dyn Progress {
        self.shared.as_ref()
    }
    pub(crate) fn label(&self, queries: Vec<Example>) -> Result<Vec<Vec<f32>>, RunError> {
        let mut probs = Vec::with_capacity(queries.len());
        for chunk in queries.chunks(512) {
            let got = ask(
                &self.links.arbiter,
                self.links.teacher.send(Label(chunk.to_vec())),
            )
            .map_err(RunError::mailbox("Teacher"))?
            .map_err(RunError::actor("Teacher"))?;
            probs.extend(got);
        }
        Ok(probs)
    }
    pub(crate) fn tick(
        &self,
        what: &str,
        unit: &'static str,
    ) -> Arc<dyn Fn(usize, f64, f64) + Send + Sync> {
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
    /// The distill slice's dataset key (a version's `data`).
    pub(crate) fn dataset(&self) -> String {
        let s = self.source.slice(Role::Distill, self.exp.distill.samples);
        s.key(self.task).unwrap_or_else(|_| s.split.clone())
    }
}
