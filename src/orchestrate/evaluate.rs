//! A pipeline scored on a task's test role during a run (stored
//! evaluations reused), and the paired difference between two pipelines
//! on the same examples.

use std::collections::BTreeMap;

use crate::distill::context::{exec_config, label, task_name, version_ref};
use crate::experiment::report::Difference;
use crate::experiment::source::Source;
use crate::experiment::{Experiment, Progress, Role, RunError};
use crate::runtime::exec::ModuleChoice;
use crate::runtime::score::{self, EvalReport, EvalSpec};
use crate::store::{ModuleVersion, Store};
use crate::vocab::Task;

pub(super) fn evaluate(
    store: &Store,
    exp: &Experiment,
    task: Task,
    source: &Source,
    vqa: &ModuleVersion,
    loc: ModuleChoice,
    progress: &dyn Progress,
) -> Result<EvalReport, RunError> {
    let vqa_choice = match &loc {
        ModuleChoice::Oracle => ModuleChoice::Oracle,
        _ => ModuleChoice::Version(version_ref(vqa)),
    };
    let slice = source.slice(Role::Test, exp.eval.limit);
    let what = format!(
        "evaluating {} on {} {}",
        match &loc {
            ModuleChoice::Oracle => "oracle modules".to_string(),
            _ => label(vqa),
        },
        task_name(task),
        slice.split
    );
    progress.phase(&what, None);
    let spec = EvalSpec {
        task,
        slice,
        vqa: vqa_choice,
        loc,
        llm: source.llm(),
        force: false,
    };
    Ok(score::evaluate(store, &spec, exec_config(exp), &|k, _| {
        progress.set(k as u64, &what)
    })?)
}

pub(super) fn paired(
    store: &Store,
    base: &EvalReport,
    distilled: &EvalReport,
) -> Result<Difference, RunError> {
    let correct = |r: &EvalReport| -> Result<BTreeMap<String, bool>, RunError> {
        let d =
            score::details(store, &r.evaluation)?.ok_or(RunError::NoDetails(r.evaluation.id))?;
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
    let p = crate::stats::paired(&diffs);
    Ok(Difference {
        points: p.points,
        ci95: p.ci95,
        n: p.n,
    })
}
