//! Pre-training on demand: a default alias (`vqa@base`, `gqa-teacher@teacher`)
//! the store lacks is made from the experiment's `[pretrain]` recipe.

use super::experiment::Experiment;
use crate::models::{self, PretrainConfig};
use crate::nn::model::TrainConfig;
use crate::nn::DeviceChoice;
use crate::store::{ModuleVersion, Store, VersionRef};
use crate::vocab::Task;

use super::coordinator::Progress;
use super::error::RunError;
use super::phases::label;

/// Resolves `r`, pre-training it when it is a default alias the store
/// lacks; `made` collects what was pre-trained.
pub(super) fn ensure(
    store: &Store,
    exp: &Experiment,
    vr: &VersionRef,
    made: &mut Vec<String>,
    progress: &dyn Progress,
) -> Result<ModuleVersion, RunError> {
    let r = vr.to_string();
    if let Ok(v) = store.resolve(vr) {
        return Ok(v);
    }
    let default_alias = match vr.module.as_str() {
        "vqa" | "loc" => "base",
        "gqa-teacher" | "nlvr2-teacher" => "teacher",
        _ => "",
    };
    if vr.reference != default_alias {
        return Err(RunError::NotInStore {
            reference: r,
            why: format!(
                "only {}@{default_alias} of the built-in modules is pre-trained when missing",
                vr.module
            ),
        });
    }
    let p = &exp.pretrain;
    let cfg = |n: usize, epochs: usize, init_from: Option<String>| PretrainConfig {
        n,
        data_seed: exp.data.seed,
        train: TrainConfig {
            epochs,
            batch: p.batch,
            lr: p.lr,
            patience: p.patience,
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
            let init = if let (true, Some(gqa)) = (p.nlvr2_from_gqa, &exp.teachers.gqa) {
                let g = ensure(store, exp, gqa, made, progress)?;
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
            return Err(RunError::NotInStore {
                reference: r,
                why: format!("`{m}` is not a built-in module"),
            })
        }
    };
    made.push(label(&v));
    Ok(v)
}
