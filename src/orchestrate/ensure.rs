//! Pre-training on demand: a default alias (`vqa@base`, `gqa-teacher@teacher`)
//! the store lacks is made from the experiment's `[pretrain]` recipe: a
//! teacher on its task's `train` role (a real split when the task's data
//! is real), a student on the synthetic generic corpus (refused when the
//! run's data is real and the experiment does not allow the synthetic
//! world).

use std::collections::BTreeMap;

use crate::experiment::source::Source;
use crate::experiment::{overlap, Experiment, Progress, Role, RunError};
use crate::models::{self, PretrainConfig, INPUT};
use crate::nn::model::TrainConfig;
use crate::store::{ModuleVersion, Store, VersionRef};
use crate::vocab::Task;

use crate::distill::context::label;

/// What pre-training on demand needs.
pub(crate) struct Ensure<'a> {
    pub(crate) store: &'a Store,
    pub(crate) exp: &'a Experiment,
    /// Each task's data in this run, by task name.
    pub(crate) sources: &'a BTreeMap<String, Source>,
    /// Whether students may be pre-trained on the synthetic generic corpus.
    pub(crate) synthetic_students: bool,
    pub(crate) progress: &'a dyn Progress,
    /// Versions reused from the store whose recorded recipe differs from
    /// the experiment's, with the differences.
    pub(crate) differences: std::cell::RefCell<BTreeMap<String, Vec<String>>>,
    /// Versions imported from the shipped checkpoints.
    pub(crate) shipped: std::cell::RefCell<Vec<String>>,
}

impl Ensure<'_> {
    /// Resolves `vr`, pre-training it when it is a default alias the store
    /// lacks; `made` collects what was pre-trained, `from` where each
    /// version came from.
    pub(crate) fn ensure(
        &self,
        vr: &VersionRef,
        made: &mut Vec<String>,
        from: &mut BTreeMap<String, String>,
    ) -> Result<ModuleVersion, RunError> {
        if let Ok(v) = self.store.resolve(vr) {
            let diff = recipe_differences(self.exp, &v);
            let recipe = if diff.is_empty() {
                String::new()
            } else {
                tracing::warn!(
                    "{} was made with another recipe than this experiment's: {}",
                    label(&v),
                    diff.join(", ")
                );
                format!("; made with another recipe: {}", diff.join(", "))
            };
            from.insert(
                label(&v),
                format!(
                    "from the store (trained on {}){recipe}",
                    v.data.as_deref().unwrap_or("data not recorded")
                ),
            );
            if !diff.is_empty() {
                self.differences.borrow_mut().insert(label(&v), diff);
            }
            return Ok(v);
        }
        // One run makes a missing version; another that needs it meanwhile
        // waits for it and takes it from the store.
        let _lease = lease(self.store, vr, self.progress)?;
        if self.store.resolve(vr).is_ok() {
            return self.ensure(vr, made, from);
        }
        let real = |t: Task| self.sources.get(&t.to_string()).filter(|s| s.is_real());
        if matches!(vr.module.as_str(), "vqa" | "loc") && !self.synthetic_students {
            return Err(RunError::RealData(format!(
                "the store has no {vr}, and this run distils on real data: vpd pre-trains students only on its synthetic generic corpus. \
                 Import your own (`vpd store import`), pre-train one (`vpd pretrain students`), or set `data.allow_synthetic = true`"
            )));
        }
        let task = match vr.module.as_str() {
            "gqa-teacher" => Some(Task::Gqa),
            "nlvr2-teacher" => Some(Task::Nlvr2),
            _ => None,
        };
        let v = match task.and_then(|t| real(t).map(|s| (t, s))) {
            Some((t, s)) if vr.reference == "teacher" => {
                let v = self.teacher_on_real(t, s, vr)?;
                made.push(label(&v));
                v
            }
            _ => ensure(self.store, self.exp, vr, made, self.progress)?,
        };
        let data = v.data.as_deref().unwrap_or("data not recorded");
        if let Some(s) = v.metrics.get("shipped") {
            from.insert(
                label(&v),
                format!(
                    "the shipped checkpoint {} (this experiment's recipe, trained on {data} by {})",
                    s["file"].as_str().unwrap_or("-"),
                    s["made_by"].as_str().unwrap_or("-")
                ),
            );
            self.shipped.borrow_mut().push(label(&v));
        } else {
            from.insert(label(&v), format!("pre-trained by this run on {data}"));
        }
        Ok(v)
    }

    /// A built-in teacher pre-trained on the task's real `train` role (dev
    /// and test roles for early stopping and its own test score).
    fn teacher_on_real(
        &self,
        task: Task,
        src: &Source,
        vr: &VersionRef,
    ) -> Result<ModuleVersion, RunError> {
        let (exp, p) = (self.exp, &self.exp.pretrain);
        let real = exp.data.real(task);
        if let Some((a, b, split)) = overlap(real, &Role::ALL, |r| exp.role_size(task, r)) {
            return Err(RunError::RealData(format!(
                "pre-training {vr} on `data.{task}`: the roles {a} and {b} both read {split} from overlapping offsets; \
                 set `data.{task}.train_limit` and `data.{task}.offsets.{b}` so that they do not overlap"
            )));
        }
        let what = format!("pre-training {vr} on real {task} data");
        self.progress.phase(&what, None);
        let ans = models::teacher_answers(task);
        let slices =
            [Role::Train, Role::Dev, Role::Test].map(|r| src.slice(r, exp.role_size(task, r)));
        let mut sets = Vec::new();
        for s in &slices {
            sets.push(crate::runtime::teacher_eval::training_examples(
                task, s, &ans, INPUT,
            )?);
        }
        let [tr, dv, te]: [Vec<_>; 3] = sets
            .try_into()
            .map_err(|_| RunError::Defect("three example sets".into()))?;
        let cfg = PretrainConfig {
            n: tr.len(),
            data_seed: exp.data.seed,
            train: TrainConfig {
                epochs: p.teacher_epochs,
                batch: p.batch,
                lr: p.lr,
                patience: p.patience,
                seed: p.seed,
            },
            device: exp.device(),
            init_from: None,
        };
        let total = p.teacher_epochs;
        let tick = |epoch: usize, loss: f64, acc: f64| {
            self.progress.set(
                epoch as u64 + 1,
                &format!(
                    "{what}: epoch {}/{total}, loss {loss:.3}, dev {:.1}%",
                    epoch + 1,
                    100.0 * acc
                ),
            );
        };
        let key = slices[0].key(task)?;
        Ok(models::fit_teacher(self.store, task, [tr, dv, te], &cfg, key, &tick)?.version)
    }
}

/// How a stored version's recorded pre-training recipe differs from the
/// one the experiment would use to make it (empty: the same, or not a
/// built-in module's pre-trained version, whose recipe is not comparable).
pub(crate) fn recipe_differences(exp: &Experiment, v: &ModuleVersion) -> Vec<String> {
    let p = &exp.pretrain;
    let Some((epochs, n)) = p.recipe(&exp.data, &v.module) else {
        return Vec::new();
    };
    let c = &v.config;
    // Distilled and imported versions record no pre-training recipe.
    let Some(train) = c.get("train").filter(|t| t.is_object()) else {
        return Vec::new();
    };
    let real = v.data.as_deref().is_some_and(|d| d.contains("-real-"));
    let mut out = Vec::new();
    let mut check = |what: &str, got: Option<serde_json::Value>, want: serde_json::Value| {
        let got = got.unwrap_or(serde_json::Value::Null);
        let same = match (got.as_f64(), want.as_f64()) {
            (Some(a), Some(b)) => (a - b).abs() <= 1e-12 * b.abs().max(1.0),
            _ => got == want,
        };
        if !same {
            out.push(format!("{what} {got} (this experiment: {want})"));
        }
    };
    // A teacher of real data records how many examples it read, not a
    // synthetic size.
    if !real {
        check("n", c.get("n").cloned(), n.into());
        check(
            "data_seed",
            c.get("data_seed").cloned(),
            exp.data.seed.into(),
        );
    }
    check("epochs", train.get("epochs").cloned(), epochs.into());
    check("batch", train.get("batch").cloned(), p.batch.into());
    check("lr", train.get("lr").cloned(), p.lr.into());
    check(
        "patience",
        train.get("patience").cloned(),
        p.patience.into(),
    );
    check("seed", train.get("seed").cloned(), p.seed.into());
    if v.module == "nlvr2-teacher" && !real {
        let started = c.get("init_from").is_some_and(|x| !x.is_null());
        if started != p.nlvr2_from_gqa {
            out.push(format!(
                "started from the GQA teacher: {started} (this experiment: {})",
                p.nlvr2_from_gqa
            ));
        }
    }
    out
}

/// Resolves `r`, pre-training it on synthetic data when it is a default
/// alias the store lacks; `made` collects what was pre-trained.
fn ensure(
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
        device: exp.device(),
        init_from,
    };
    let what = format!("pre-training {r}");
    let (total, n) = p
        .recipe(&exp.data, &vr.module)
        .ok_or_else(|| RunError::NotInStore {
            reference: r.clone(),
            why: format!("`{}` is not a built-in module", vr.module),
        })?;
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
    // A shipped checkpoint made by exactly this recipe, when the experiment
    // asks for one, instead of training it again.
    if p.shipped && vr.module != "nlvr2-teacher" {
        if let Some((entry, bytes)) = models::shipped::find(&vr.module, &vr.reference)? {
            let want = serde_json::to_value(cfg(n, total, None)).unwrap_or_default();
            if models::shipped::recipe_key(&want) == models::shipped::recipe_key(&entry.config) {
                progress.phase(&format!("importing the shipped {r}"), None);
                return Ok(models::shipped::import(store, &entry, bytes)?);
            }
            tracing::info!(
                "the shipped {r} was made with another recipe than this experiment's: training it"
            );
        }
    }
    progress.phase(&what, None);
    let v = match vr.module.as_str() {
        "vqa" => models::pretrain_student(store, &cfg(n, total, None), &tick)?.version,
        "loc" => models::pretrain_loc(store, &cfg(n, total, None), &tick)?.version,
        "gqa-teacher" => {
            models::pretrain_teacher(store, Task::Gqa, &cfg(n, total, None), &tick)?.version
        }
        "nlvr2-teacher" => {
            let init = if let (true, Some(gqa)) = (p.nlvr2_from_gqa, &exp.teachers.gqa) {
                let _lease = lease(store, gqa, progress)?;
                let g = ensure(store, exp, gqa, made, progress)?;
                progress.phase(&what, None);
                Some(label(&g))
            } else {
                None
            };
            models::pretrain_teacher(store, Task::Nlvr2, &cfg(n, total, init), &tick)?.version
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

/// Holds the store's lease on making `vr` until dropped: two runs that
/// both miss a version make it once, the second waiting for the first.
fn lease(
    store: &Store,
    vr: &VersionRef,
    progress: &dyn Progress,
) -> Result<crate::store::Lease, RunError> {
    Ok(store.lease(&format!("{}@{}", vr.module, vr.reference), || {
        progress.phase(
            &format!("waiting for another run that is making {vr}"),
            None,
        );
        tracing::info!("{vr}: another run is making it; waiting for it");
    })?)
}
