//! Sweeps: the trials of an experiment's `[sweep]` table, each a run in
//! the store with its resolved configuration. The sweep's identity is a
//! hash of the experiment (its name, base configuration and sweep table),
//! so running the same file again finds its finished trials and skips
//! them; a trial that did not finish (failed, interrupted) runs again.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::spec::{Experiment, SweptValues};
use super::{RunError, RunReport};
use crate::store::{RunStatus, Store};

/// One trial.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Trial {
    /// The swept keys and this trial's values.
    pub values: BTreeMap<String, serde_json::Value>,
    /// The run that made it.
    pub run_id: String,
    /// Skipped because an earlier invocation finished it.
    pub reused: bool,
    /// Its report.
    pub report: RunReport,
}

pub use crate::stats::Stat;

/// One task's figures over a configuration's trials.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskSummary {
    /// Base pipeline accuracy, percent.
    pub base: Stat,
    /// Distilled pipeline accuracy, percent.
    pub distilled: Stat,
    /// Paired gain, points.
    pub gain: Stat,
    /// Examples per evaluation.
    pub n: u64,
}

/// A configuration (the swept values other than `seed`) and its trials.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Configuration {
    /// The swept values other than `seed`.
    pub values: BTreeMap<String, serde_json::Value>,
    /// Per task.
    pub tasks: BTreeMap<String, TaskSummary>,
    /// VQA pseudo-label accuracy, percent (trials that distilled VQA).
    pub pseudo_label_accuracy: Stat,
    /// Trials whose gate passed.
    pub gate_passed: usize,
    /// The trials.
    pub trials: Vec<Trial>,
}

/// A sweep's outcome.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SweepReport {
    /// The sweep's identity (runs carry it).
    pub sweep_id: String,
    /// The experiment.
    pub experiment: String,
    /// Trials run now.
    pub ran: usize,
    /// Trials found finished and skipped.
    pub skipped: usize,
    /// Trials run at once (after the first, which runs alone).
    #[serde(default = "one")]
    pub jobs: usize,
    /// Per configuration.
    pub configurations: Vec<Configuration>,
}

/// The sweep's identity: a hash of the experiment with its sweep table.
pub fn sweep_id(exp: &Experiment) -> Uuid {
    let canon = serde_json::to_string(&Experiment::identity(
        &serde_json::to_value(exp).expect("config serialises"),
    ))
    .expect("json");
    let h = Sha256::digest(canon.as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&h[..16]);
    // A version-8 (custom) UUID.
    b[6] = (b[6] & 0x0f) | 0x80;
    b[8] = (b[8] & 0x3f) | 0x80;
    Uuid::from_bytes(b)
}

fn one() -> usize {
    1
}

fn json_of(v: &toml::Value) -> serde_json::Value {
    serde_json::to_value(v).unwrap_or(serde_json::Value::Null)
}

/// A trial's swept values as JSON.
pub fn values_of(values: &SweptValues) -> BTreeMap<String, serde_json::Value> {
    values
        .iter()
        .map(|(k, v)| (k.clone(), json_of(v)))
        .collect()
}

/// For each trial of the sweep `id`, the finished run of the store that
/// made it (same sweep, same resolved configuration), with its report.
pub fn finished_trials(
    store: &Store,
    id: Uuid,
    trials: &[(super::spec::SweptValues, Experiment)],
) -> Result<Vec<Option<Trial>>, RunError> {
    let finished: Vec<_> = store
        .runs()?
        .into_iter()
        .filter(|r| r.sweep == Some(id) && r.status == RunStatus::Finished)
        .collect();
    let mut out = Vec::with_capacity(trials.len());
    for (values, trial) in trials {
        let config = Experiment::identity(&serde_json::to_value(trial).expect("config serialises"));
        let found = match finished
            .iter()
            .find(|r| Experiment::identity(&r.config) == config)
            .and_then(|r| r.report.clone().map(|h| (r.id, h)))
        {
            Some((rid, h)) => serde_json::from_slice::<RunReport>(&store.blobs().get(&h)?)
                .ok()
                .map(|report| Trial {
                    values: values_of(values),
                    run_id: rid.to_string(),
                    reused: true,
                    report,
                }),
            None => None,
        };
        out.push(found);
    }
    Ok(out)
}

/// Groups trials by their swept values other than `seed`.
pub fn summarise(trials: Vec<Trial>) -> Vec<Configuration> {
    let mut groups: Vec<(BTreeMap<String, serde_json::Value>, Vec<Trial>)> = Vec::new();
    for t in trials {
        let mut key = t.values.clone();
        key.remove("seed");
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, v)) => v.push(t),
            None => groups.push((key, vec![t])),
        }
    }
    groups
        .into_iter()
        .map(|(values, trials)| {
            let mut tasks = BTreeMap::new();
            let names: Vec<String> = trials
                .first()
                .map(|t| t.report.tasks.keys().cloned().collect())
                .unwrap_or_default();
            for name in names {
                let rows: Vec<_> = trials
                    .iter()
                    .filter_map(|t| t.report.tasks.get(&name))
                    .collect();
                let f = |g: &dyn Fn(&super::report::TaskRow) -> f64| {
                    Stat::of(&rows.iter().map(|r| g(r)).collect::<Vec<_>>())
                };
                tasks.insert(
                    name,
                    TaskSummary {
                        base: f(&|r| r.base.accuracy),
                        distilled: f(&|r| r.distilled.accuracy),
                        gain: f(&|r| r.difference.points),
                        n: rows.first().map_or(0, |r| r.base.n),
                    },
                );
            }
            let pla: Vec<f64> = trials
                .iter()
                .filter_map(|t| t.report.pseudo_label_accuracy)
                .collect();
            Configuration {
                values,
                tasks,
                pseudo_label_accuracy: Stat::of(&pla),
                gate_passed: trials.iter().filter(|t| t.report.gate_passed).count(),
                trials,
            }
        })
        .collect()
}
