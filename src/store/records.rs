//! The typed records the store keeps. They are storage records (serde, JSON
//! in sled values), separate from the domain types of the rest of the crate.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// One version of a module's checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModuleVersion {
    /// Identity (UUIDv7): stable across stores, used by merge.
    pub id: Uuid,
    /// The module, e.g. `vqa`, `loc`, `gqa-teacher`.
    pub module: String,
    /// Per-module number, 1, 2, ... in this store (display only).
    pub number: u32,
    /// The version it was trained from.
    pub parent: Option<Uuid>,
    /// sha256 of the checkpoint blob (hex).
    pub blob: String,
    /// Size of the checkpoint in bytes.
    pub size: u64,
    /// sha256 of the sidecar blob, for user-supplied TorchScript modules.
    pub sidecar: Option<String>,
    /// The teacher version that supervised it.
    pub teacher: Option<Uuid>,
    /// Fingerprint of the data it was trained on.
    pub data: Option<String>,
    /// The configuration that produced it.
    pub config: serde_json::Value,
    /// Metrics measured when it was made.
    pub metrics: serde_json::Value,
    /// The run that produced it.
    pub run: Option<Uuid>,
    /// When it was committed.
    pub created_at: DateTime<Utc>,
}

/// What a caller gives to make a new version.
#[derive(Debug, Clone, Default)]
pub struct NewVersion {
    /// The module.
    pub module: String,
    /// The version it was trained from.
    pub parent: Option<Uuid>,
    /// The teacher version that supervised it.
    pub teacher: Option<Uuid>,
    /// Fingerprint of its training data.
    pub data: Option<String>,
    /// Its configuration.
    pub config: serde_json::Value,
    /// Metrics measured when it was made.
    pub metrics: serde_json::Value,
    /// The run that produced it.
    pub run: Option<Uuid>,
}

/// Why an alias moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AliasEventKind {
    /// `vpd alias set` (or a run promoting a version).
    Set,
    /// `vpd rollback`.
    Rollback,
}

impl std::fmt::Display for AliasEventKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            AliasEventKind::Set => "set",
            AliasEventKind::Rollback => "rollback",
        })
    }
}

/// One move of an alias; the history is append-only.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AliasEvent {
    /// Identity (UUIDv7, so history keys sort by time).
    pub id: Uuid,
    /// The module.
    pub module: String,
    /// The alias.
    pub alias: String,
    /// Set or rollback.
    pub kind: AliasEventKind,
    /// Where the alias pointed before (none: it did not exist).
    pub from: Option<Uuid>,
    /// Where it points after (none: removed, when a rollback undoes the
    /// set that created it).
    pub to: Option<Uuid>,
    /// For a rollback without `--to`: the set it undoes.
    pub undoes: Option<Uuid>,
    /// When.
    pub at: DateTime<Utc>,
    /// Who (user name).
    pub who: String,
    /// Why.
    pub reason: Option<String>,
}

/// Status of a run as recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    /// Its process is working (or died without saying: see
    /// [`Run::effective_status`]).
    Running,
    /// Finished successfully.
    Finished,
    /// Ended with an error.
    Failed,
    /// Its process is gone without finishing.
    Interrupted,
}

impl std::fmt::Display for RunStatus {
    /// As serde spells it: `running`, `finished`, `failed`, `interrupted`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RunStatus::Running => "running",
            RunStatus::Finished => "finished",
            RunStatus::Failed => "failed",
            RunStatus::Interrupted => "interrupted",
        })
    }
}

/// One run: a trial of an experiment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Run {
    /// Identity (UUIDv7).
    pub id: Uuid,
    /// Experiment name.
    pub experiment: String,
    /// The resolved configuration.
    pub config: serde_json::Value,
    /// Seed.
    pub seed: u64,
    /// Fingerprint of the dataset.
    pub dataset: Option<String>,
    /// The sweep it belongs to.
    pub sweep: Option<Uuid>,
    /// `git rev-parse HEAD` where it ran.
    pub git_commit: Option<String>,
    /// Whether the work tree had uncommitted changes.
    pub git_dirty: Option<bool>,
    /// libtorch version.
    pub torch_version: Option<String>,
    /// libtorch threads.
    pub threads: i32,
    /// Host name.
    pub host: String,
    /// Process id.
    pub pid: u32,
    /// Process start time (clock ticks since boot), to tell a reused pid.
    pub pid_start: Option<u64>,
    /// Status as last written.
    pub status: RunStatus,
    /// Error message of a failed run.
    pub error: Option<String>,
    /// Start.
    pub started_at: DateTime<Utc>,
    /// End.
    pub ended_at: Option<DateTime<Utc>>,
    /// sha256 of a JSON blob with what the run reported (its table).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report: Option<String>,
    /// The Slurm job it ran in (from the job's environment), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slurm: Option<SlurmTask>,
}

/// Where in Slurm a run ran: read from the environment Slurm gives a job
/// (`SLURM_JOB_ID`, `SLURM_ARRAY_JOB_ID`, `SLURM_ARRAY_TASK_ID`,
/// `SLURM_RESTART_COUNT`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlurmTask {
    /// The job's own id (an array task has one too).
    pub job_id: String,
    /// The array's job id, for an array task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub array_job_id: Option<String>,
    /// The task's index in the array.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub array_task_id: Option<u32>,
    /// How often Slurm requeued it before this start (0: first start).
    #[serde(default)]
    pub restarts: u32,
}

impl SlurmTask {
    /// The task as Slurm names it: `<array job>_<task>`, or the job id.
    pub fn name(&self) -> String {
        match (&self.array_job_id, self.array_task_id) {
            (Some(j), Some(t)) => format!("{j}_{t}"),
            _ => self.job_id.clone(),
        }
    }

    /// The Slurm job this process runs in, if any.
    pub fn from_env() -> Option<SlurmTask> {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        Some(SlurmTask {
            job_id: var("SLURM_JOB_ID")?,
            array_job_id: var("SLURM_ARRAY_JOB_ID"),
            array_task_id: var("SLURM_ARRAY_TASK_ID").and_then(|v| v.parse().ok()),
            restarts: var("SLURM_RESTART_COUNT")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
        })
    }
}

/// Everything that produced an evaluation: a module version alone has no
/// accuracy.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Pipeline {
    /// `gqa` or `nlvr2`.
    pub task: String,
    /// The split evaluated.
    pub split: String,
    /// The program generator, e.g. `annotated` or `llm:<model>`.
    pub generator: String,
    /// Fingerprint of the dataset.
    pub dataset: String,
    /// Module name -> version id (or `oracle`).
    pub modules: BTreeMap<String, String>,
}

/// Correct answers out of examples.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tally {
    /// Examples.
    pub n: u64,
    /// Correct ones.
    pub correct: u64,
}

impl Tally {
    /// Accuracy in [0, 1]; 0 when empty.
    pub fn accuracy(&self) -> f64 {
        if self.n == 0 {
            0.0
        } else {
            self.correct as f64 / self.n as f64
        }
    }
}

/// A scored pipeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    /// Identity (UUIDv7).
    pub id: Uuid,
    /// What was evaluated.
    pub pipeline: Pipeline,
    /// Overall result.
    pub total: Tally,
    /// Per question type (structural type or statement family).
    pub by_type: BTreeMap<String, Tally>,
    /// The run that made it.
    pub run: Option<Uuid>,
    /// When.
    pub created_at: DateTime<Utc>,
    /// sha256 of a JSON blob with every example's outcome and trace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<String>,
}

/// A generated program, cached by generator configuration and input text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CachedProgram {
    /// Generator configuration key.
    pub generator: String,
    /// The question or statement.
    pub text: String,
    /// The program, or the failure.
    pub program: Result<String, String>,
    /// When.
    pub created_at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::{AliasEventKind, RunStatus, Tally};

    #[test]
    fn display_and_serde_spell_statuses_alike() {
        for s in [
            RunStatus::Running,
            RunStatus::Finished,
            RunStatus::Failed,
            RunStatus::Interrupted,
        ] {
            assert_eq!(serde_json::to_string(&s).unwrap(), format!("\"{s}\""));
        }
        for k in [AliasEventKind::Set, AliasEventKind::Rollback] {
            assert_eq!(serde_json::to_string(&k).unwrap(), format!("\"{k}\""));
        }
    }

    #[test]
    fn a_tally_reads_back_and_an_empty_one_has_accuracy_zero() {
        let t = Tally { n: 4, correct: 3 };
        let back: Tally = serde_json::from_str(&serde_json::to_string(&t).unwrap()).unwrap();
        assert_eq!(back, t);
        assert_eq!(t.accuracy(), 0.75);
        assert_eq!(Tally::default().accuracy(), 0.0);
    }
}
