//! One example of a stored evaluation run again with the evaluation's
//! modules, its trace as an HTML page (`vpd show EVAL --trace`).

use std::collections::BTreeMap;

use crate::models::{self};
use crate::program::validate;
use crate::store::{Evaluation, Store, VersionRef};
use crate::vocab::{Slot, Task};

use super::jobs::{Layout, Slice};
use super::score::{details, name_key, EvalError};

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
