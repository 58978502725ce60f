//! Sweeps on a Slurm cluster (`vpd run SWEEP.toml --backend slurm`,
//! `vpd sweep status`, `vpd sweep collect`).
//!
//! The main store is only ever opened on the machine that submits and
//! collects; sled is never opened by two machines at once. Before it
//! submits, that machine makes what the trials share (data, pre-trained
//! versions, baseline evaluations) in the main store, then copies the
//! store into a *seed* store under `<store>/sweeps/<sweep>/seed-<n>/`.
//! One `sbatch --array` job runs the trials that are not finished; each
//! array task copies the seed into its own trial store
//! (`trials/<i>/store/`: records copied, blobs hard-linked, the data folder
//! linked) and runs its trial there, writing `trials/<i>/state.json` as it
//! starts and ends and appending to `logs/trial-<i>.log`. `collect` merges
//! the finished trial stores into the main store (identity by id, so it is
//! idempotent) once Slurm no longer runs them.
//!
//! Why the shared work is done before submission rather than in a first
//! job the array depends on: a first job would have to write the main
//! store from a compute node while the user's own commands open it on the
//! login node, which is exactly the two-machine access a shared file
//! system cannot make safe for sled. Where the login node must not train,
//! pre-train in an interactive job first (`srun vpd pretrain ...` against
//! the main store, with nothing else open), and the submission finds the
//! versions made.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::experiment::sweep::{self, SweepReport, Trial};
use crate::experiment::{Experiment, Progress, RunError};
use crate::store::{SlurmTask, Store, StoreError};

/// Why a cluster sweep command failed.
#[derive(Debug, thiserror::Error)]
pub enum SlurmError {
    /// Preparing or running a trial.
    #[error(transparent)]
    Run(#[from] RunError),
    /// The main store or a trial's.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A file of the sweep's folder.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A Slurm command failed or is missing.
    #[error("{command}: {detail}")]
    Slurm {
        /// The command, e.g. `sbatch --parsable ...`.
        command: String,
        /// What it said.
        detail: String,
    },
    /// The sweep's manifest does not read.
    #[error("{}: {detail}", path.display())]
    Manifest {
        /// `sweep.json`.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// No submitted sweep matches.
    #[error("no Slurm sweep {given} in {store} ({known})")]
    UnknownSweep {
        /// What the user gave.
        given: String,
        /// The store.
        store: String,
        /// The sweeps there are.
        known: String,
    },
    /// An option cannot be used as given.
    #[error("{0}")]
    Usage(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SlurmError + '_ {
    move |source| SlurmError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// How the array job is asked for.
#[derive(Debug, Clone)]
pub struct SlurmOptions {
    /// `--partition`.
    pub partition: Option<String>,
    /// `--time` (Slurm's format, e.g. `2:00:00`).
    pub time: Option<String>,
    /// At most this many array tasks at once (`--array=...%K`).
    pub max_parallel: Option<usize>,
    /// `--cpus-per-task`, also each trial's libtorch threads (results
    /// depend on the thread count; the run records it).
    pub cpus_per_task: usize,
    /// More `#SBATCH` lines (`--account=A`, `--qos=Q`, `--mem=8G`, ...).
    pub sbatch_args: Vec<String>,
    /// Let Slurm requeue a preempted task (`--requeue`; else
    /// `--no-requeue`).
    pub requeue: bool,
    /// The `vpd` binary the tasks run (on a shared file system).
    pub vpd: PathBuf,
}

/// One submission of the sweep: an array job over some of its trials.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Submission {
    /// The array's job id, as `sbatch --parsable` printed it.
    pub job_id: String,
    /// The trials (array indices) it runs.
    pub tasks: Vec<usize>,
    /// The seed store its tasks copy.
    pub seed: PathBuf,
    /// The batch script.
    pub script: PathBuf,
    /// libtorch threads per trial.
    pub threads: usize,
    /// When.
    pub at: DateTime<Utc>,
}

/// `<store>/sweeps/<sweep>/sweep.json`: what the trials run and what was
/// submitted.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    /// The sweep's identity (as a local sweep's).
    pub sweep_id: String,
    /// The experiment's name.
    pub experiment: String,
    /// The experiment with its sweep table (the trials are made from it).
    pub config: serde_json::Value,
    /// The main store (absolute).
    pub store: PathBuf,
    /// Each trial's swept values, by array index.
    pub trials: Vec<BTreeMap<String, serde_json::Value>>,
    /// Every submission, oldest first.
    pub submissions: Vec<Submission>,
}

/// What a trial wrote last to `trials/<i>/state.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrialState {
    /// `running`, `finished`, `failed` or `interrupted`.
    pub state: TrialStatus,
    /// Its run in the trial store.
    #[serde(default)]
    pub run_id: Option<String>,
    /// Why it failed or stopped.
    #[serde(default)]
    pub error: Option<String>,
    /// The Slurm task.
    #[serde(default)]
    pub slurm: Option<SlurmTask>,
    /// Host and pid.
    pub host: String,
    /// Process id.
    pub pid: u32,
    /// When it was written.
    pub at: DateTime<Utc>,
}

/// A trial's state on the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TrialStatus {
    /// Never submitted.
    Unsubmitted,
    /// Waiting in Slurm's queue.
    Pending,
    /// Running.
    Running,
    /// Finished (in its trial store or collected).
    Finished,
    /// Ended with an error.
    Failed,
    /// Stopped before it finished: SIGTERM (preemption, time limit,
    /// `scancel`), or gone from the queue without saying.
    Interrupted,
}

impl std::fmt::Display for TrialStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TrialStatus::Unsubmitted => "unsubmitted",
            TrialStatus::Pending => "pending",
            TrialStatus::Running => "running",
            TrialStatus::Finished => "finished",
            TrialStatus::Failed => "failed",
            TrialStatus::Interrupted => "interrupted",
        })
    }
}

/// One trial in `vpd sweep status`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrialRow {
    /// Array index.
    pub index: usize,
    /// Swept values.
    pub values: BTreeMap<String, serde_json::Value>,
    /// State.
    pub state: TrialStatus,
    /// The Slurm task (`<job>_<index>`) of its latest submission.
    pub job: Option<String>,
    /// Its log file.
    pub log: PathBuf,
    /// Its run (trial store, or main store once collected).
    pub run_id: Option<String>,
    /// Already merged into the main store.
    pub collected: bool,
    /// Why it failed or stopped.
    pub error: Option<String>,
}

/// `vpd sweep status`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SweepStatus {
    /// The sweep.
    pub sweep_id: String,
    /// The experiment.
    pub experiment: String,
    /// Its folder under the store.
    pub dir: PathBuf,
    /// Array job ids, oldest first.
    pub job_ids: Vec<String>,
    /// Trials per state.
    pub counts: BTreeMap<String, usize>,
    /// Every trial.
    pub trials: Vec<TrialRow>,
}

/// What `vpd run --backend slurm` submitted.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SubmitReport {
    /// The sweep.
    pub sweep_id: String,
    /// The experiment.
    pub experiment: String,
    /// Its folder under the store.
    pub dir: PathBuf,
    /// The array job submitted now (none when nothing was left to run).
    pub job_ids: Vec<String>,
    /// Trials submitted now.
    pub submitted: usize,
    /// The batch script submitted now.
    pub script: Option<PathBuf>,
    /// Every trial with its state after the submission.
    pub trials: Vec<TrialRow>,
}

/// `vpd sweep collect`: the local sweep's summary plus what was merged.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CollectReport {
    /// The summary over the collected trials (`ran`: merged now,
    /// `skipped`: collected before).
    #[serde(flatten)]
    pub sweep: SweepReport,
    /// Trials merged now.
    pub collected: usize,
    /// Trials not finished (not in the summary), with their state.
    pub missing: Vec<TrialRow>,
}

/// The sweep's folder in `store`, absolute (the batch script and the
/// tasks name it wherever they run).
pub fn sweep_dir(store: &Store, id: &str) -> PathBuf {
    let root = store.root();
    root.canonicalize()
        .unwrap_or_else(|_| root.to_path_buf())
        .join("sweeps")
        .join(id)
}

fn manifest_path(dir: &Path) -> PathBuf {
    dir.join("sweep.json")
}

fn read_manifest(dir: &Path) -> Result<Manifest, SlurmError> {
    let path = manifest_path(dir);
    let bytes = std::fs::read(&path).map_err(io(&path))?;
    serde_json::from_slice(&bytes).map_err(|e| SlurmError::Manifest {
        path,
        detail: e.to_string(),
    })
}

fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), SlurmError> {
    let bytes = serde_json::to_vec_pretty(value).expect("serialises");
    crate::store::write_atomic(path, &bytes).map_err(SlurmError::Store)
}

fn trial_dir(dir: &Path, i: usize) -> PathBuf {
    dir.join("trials").join(i.to_string())
}

fn log_path(dir: &Path, i: usize) -> PathBuf {
    dir.join("logs").join(format!("trial-{i}.log"))
}

/// What trial `i` wrote last: none when it wrote nothing; a file that is
/// there and does not read is an error naming it (it is never taken for
/// "interrupted", which would run a finished trial again).
fn read_state(dir: &Path, i: usize) -> Result<Option<TrialState>, SlurmError> {
    let path = trial_dir(dir, i).join("state.json");
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(&path)(e)),
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| SlurmError::Manifest {
            path,
            detail: format!(
                "trial {i}'s state does not read ({e}); remove it to have the trial's own store decide whether it finished"
            ),
        })
}

/// The run of sweep `id` that trial `i`'s own store holds as finished, if
/// any: the authority on whether the trial finished, whatever its
/// `state.json` says.
fn finished_in_trial_store(
    dir: &Path,
    i: usize,
    id: Uuid,
    trial: &(crate::experiment::SweptValues, Experiment),
) -> Option<String> {
    let path = trial_dir(dir, i).join("store");
    if !path.join("db").join("conf").exists() {
        return None;
    }
    let t = Store::open_existing(&path).ok()?;
    // By the trial's configuration: the seed store may hold other trials'
    // runs of the sweep (collected before).
    sweep::finished_trials(&t, id, std::slice::from_ref(trial))
        .ok()?
        .pop()
        .flatten()
        .map(|t| t.run_id)
}

/// The trials of the manifest's experiment; a trial list in `sweep.json`
/// that disagrees with them (edited, or written by another vpd) is an
/// error naming the file, never trials invented or dropped.
fn trials_of(
    m: &Manifest,
) -> Result<Vec<(crate::experiment::SweptValues, Experiment)>, SlurmError> {
    let bad = |detail: String| SlurmError::Manifest {
        path: PathBuf::from(&m.store)
            .join("sweeps")
            .join(&m.sweep_id)
            .join("sweep.json"),
        detail,
    };
    let exp: Experiment = serde_json::from_value(m.config.clone())
        .map_err(|e| bad(format!("its experiment does not read: {e}")))?;
    let trials = exp.trials().map_err(RunError::from)?;
    if trials.len() != m.trials.len() {
        return Err(bad(format!(
            "it lists {} trials but its experiment makes {}",
            m.trials.len(),
            trials.len()
        )));
    }
    for (i, ((v, _), listed)) in trials.iter().zip(&m.trials).enumerate() {
        if &crate::experiment::sweep::values_of(v) != listed {
            return Err(bad(format!(
                "trial {i} is listed as {} but its experiment makes {}",
                serde_json::to_string(listed).unwrap_or_default(),
                serde_json::to_string(&crate::experiment::sweep::values_of(v)).unwrap_or_default()
            )));
        }
    }
    Ok(trials)
}

/// Finds a submitted sweep by its id or a unique prefix of it.
pub fn find(store: &Store, given: &str) -> Result<(PathBuf, Manifest), SlurmError> {
    let root = sweep_dir(store, "");
    let mut names: Vec<String> = std::fs::read_dir(&root)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter(|e| manifest_path(&e.path()).exists())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    let hits: Vec<&String> = names.iter().filter(|n| n.starts_with(given)).collect();
    match hits.as_slice() {
        [one] => {
            let dir = root.join(one);
            let m = read_manifest(&dir)?;
            Ok((dir, m))
        }
        _ => Err(SlurmError::UnknownSweep {
            given: if hits.is_empty() {
                given.to_string()
            } else {
                format!("{given} (ambiguous: {} match)", hits.len())
            },
            store: store.root().display().to_string(),
            known: if names.is_empty() {
                "none submitted".into()
            } else {
                format!("submitted: {}", names.join(", "))
            },
        }),
    }
}

/// Runs a Slurm command, its stdout on success.
fn slurm(program: &str, args: &[String]) -> Result<String, SlurmError> {
    let shown = format!("{program} {}", args.join(" "));
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| SlurmError::Slurm {
            command: shown.clone(),
            detail: if e.kind() == std::io::ErrorKind::NotFound {
                format!("{program} is not installed or not on PATH (is this a Slurm login node?)")
            } else {
                e.to_string()
            },
        })?;
    if !out.status.success() {
        return Err(SlurmError::Slurm {
            command: shown,
            detail: format!(
                "exit {}: {}",
                out.status
                    .code()
                    .map_or("by signal".into(), |c| c.to_string()),
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn parse_id(m: &Manifest) -> Result<Uuid, SlurmError> {
    m.sweep_id.parse().map_err(|e| SlurmError::Manifest {
        path: PathBuf::from("sweep.json"),
        detail: format!("sweep_id {}: {e}", m.sweep_id),
    })
}

mod status;
mod submit;
mod task;

pub use status::status;
pub use submit::submit;
pub use task::{collect, run_array_task, INTERRUPTED_EXIT};
