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

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::experiment::Experiment;
use super::sweep::{self, SweepReport, Trial};
use super::{Progress, RunError};
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

fn read_state(dir: &Path, i: usize) -> Option<TrialState> {
    let bytes = std::fs::read(trial_dir(dir, i).join("state.json")).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// The trials of the manifest's experiment.
fn trials_of(
    m: &Manifest,
) -> Result<Vec<(super::experiment::SweptValues, Experiment)>, SlurmError> {
    let exp: Experiment =
        serde_json::from_value(m.config.clone()).map_err(|e| SlurmError::Manifest {
            path: PathBuf::from("sweep.json"),
            detail: format!("its experiment does not read: {e}"),
        })?;
    Ok(exp.trials().map_err(RunError::from)?)
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

/// The queue's view of the sweep's array tasks: `<job>_<index>` -> state
/// (`PENDING`, `RUNNING`, ...). Only this user's jobs are asked for, and
/// ended jobs are not listed (`squeue` shows the queue).
fn queue(job_ids: &[String]) -> Result<HashMap<String, String>, SlurmError> {
    if job_ids.is_empty() {
        return Ok(HashMap::new());
    }
    let out = slurm(
        "squeue",
        &[
            "--me".into(),
            "--array".into(),
            "--noheader".into(),
            "--format=%i|%T".into(),
        ],
    )?;
    let mut states = HashMap::new();
    for line in out.lines() {
        let Some((id, state)) = line.trim().split_once('|') else {
            continue;
        };
        // With --array a pending range may still show as `J_[a-b%k]`.
        let Some((job, task)) = id.split_once('_') else {
            continue;
        };
        if !job_ids.iter().any(|j| j == job) {
            continue;
        }
        for i in expand_tasks(task) {
            states.insert(format!("{job}_{i}"), state.to_string());
        }
    }
    Ok(states)
}

/// `3`, `[4-6%2]`, `[1,3,7-8]` -> the indices.
fn expand_tasks(spec: &str) -> Vec<usize> {
    let s = spec.trim_start_matches('[').trim_end_matches(']');
    let s = s.split('%').next().unwrap_or("");
    let mut out = Vec::new();
    for part in s.split(',') {
        match part.split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.parse::<usize>(), b.parse::<usize>()) {
                    out.extend(a..=b);
                }
            }
            None => out.extend(part.parse::<usize>().ok()),
        }
    }
    out
}

/// Every trial's state: collected runs of the main store first, then the
/// queue, then what the trial wrote.
fn rows(
    dir: &Path,
    m: &Manifest,
    collected: &[Option<Trial>],
) -> Result<Vec<TrialRow>, SlurmError> {
    let jobs: Vec<String> = m.submissions.iter().map(|s| s.job_id.clone()).collect();
    let q = if m.submissions.is_empty() {
        HashMap::new()
    } else {
        queue(&jobs)?
    };
    let mut out = Vec::new();
    for (i, values) in m.trials.iter().enumerate() {
        let latest = m.submissions.iter().rev().find(|s| s.tasks.contains(&i));
        let job = latest.map(|s| format!("{}_{i}", s.job_id));
        let mut row = TrialRow {
            index: i,
            values: values.clone(),
            state: TrialStatus::Unsubmitted,
            job: job.clone(),
            log: log_path(dir, i),
            run_id: None,
            collected: false,
            error: None,
        };
        if let Some(Some(t)) = collected.get(i) {
            row.state = TrialStatus::Finished;
            row.run_id = Some(t.run_id.clone());
            row.collected = true;
            out.push(row);
            continue;
        }
        let written = read_state(dir, i);
        if let Some(w) = &written {
            row.run_id = w.run_id.clone();
            row.error = w.error.clone();
        }
        let queued = job.as_ref().and_then(|j| q.get(j));
        row.state = match (
            queued.map(String::as_str),
            written.as_ref().map(|w| w.state),
        ) {
            (None, None) if latest.is_none() => TrialStatus::Unsubmitted,
            // Gone from the queue before it started (cancelled while
            // pending, or it could not start).
            (None, None) => {
                row.error = Some("left the queue before it started (cancelled?)".into());
                TrialStatus::Interrupted
            }
            (None, Some(TrialStatus::Running)) => {
                row.error = Some(
                    "its process is gone and did not record an end (killed, or its node failed)"
                        .into(),
                );
                TrialStatus::Interrupted
            }
            (None, Some(s)) => s,
            (Some(_), Some(TrialStatus::Finished)) => TrialStatus::Finished,
            (Some("PENDING" | "REQUEUED" | "REQUEUE_HOLD" | "REQUEUE_FED" | "CONFIGURING"), _) => {
                TrialStatus::Pending
            }
            (Some(_), _) => TrialStatus::Running,
        };
        out.push(row);
    }
    Ok(out)
}

fn counts(rows: &[TrialRow]) -> BTreeMap<String, usize> {
    let mut c = BTreeMap::new();
    for r in rows {
        *c.entry(r.state.to_string()).or_insert(0) += 1;
    }
    c
}

/// `vpd sweep status SWEEP`.
pub fn status(store: &Store, given: &str) -> Result<SweepStatus, SlurmError> {
    let (dir, m) = find(store, given)?;
    let trials = trials_of(&m)?;
    let id = parse_id(&m)?;
    let collected = sweep::finished_trials(store, id, &trials)?;
    let trials = rows(&dir, &m, &collected)?;
    Ok(SweepStatus {
        sweep_id: m.sweep_id.clone(),
        experiment: m.experiment.clone(),
        dir,
        job_ids: m.submissions.iter().map(|s| s.job_id.clone()).collect(),
        counts: counts(&trials),
        trials,
    })
}

fn parse_id(m: &Manifest) -> Result<Uuid, SlurmError> {
    m.sweep_id.parse().map_err(|e| SlurmError::Manifest {
        path: PathBuf::from("sweep.json"),
        detail: format!("sweep_id {}: {e}", m.sweep_id),
    })
}

/// Single-quotes a string for bash.
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The batch script of one submission.
fn script(
    m: &Manifest,
    dir: &Path,
    tasks: &[usize],
    seed: &Path,
    o: &SlurmOptions,
) -> Result<String, SlurmError> {
    let list = tasks
        .iter()
        .map(|t| t.to_string())
        .collect::<Vec<_>>()
        .join(",");
    let array = match o.max_parallel {
        Some(k) => format!("{list}%{k}"),
        None => list,
    };
    let name: String = m
        .experiment
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let mut s = String::new();
    s.push_str("#!/bin/bash\n");
    s.push_str(&format!(
        "# vpd sweep {} ({}): {} of its {} trials, one array task each.\n# Written by vpd {}; submitted with `sbatch --parsable` from {}.\n",
        m.sweep_id,
        m.experiment,
        tasks.len(),
        m.trials.len(),
        env!("CARGO_PKG_VERSION"),
        m.store.display()
    ));
    s.push_str(&format!("#SBATCH --job-name=vpd-{name}\n"));
    s.push_str(&format!("#SBATCH --array={array}\n"));
    s.push_str(&format!("#SBATCH --cpus-per-task={}\n", o.cpus_per_task));
    s.push_str("#SBATCH --ntasks=1\n");
    s.push_str(&format!(
        "#SBATCH --output={}\n",
        dir.join("logs").join("trial-%a.log").display()
    ));
    s.push_str("#SBATCH --open-mode=append\n");
    if let Some(p) = &o.partition {
        s.push_str(&format!("#SBATCH --partition={p}\n"));
    }
    if let Some(t) = &o.time {
        s.push_str(&format!("#SBATCH --time={t}\n"));
    }
    s.push_str(if o.requeue {
        "#SBATCH --requeue\n"
    } else {
        "#SBATCH --no-requeue\n"
    });
    for a in &o.sbatch_args {
        s.push_str(&format!("#SBATCH {a}\n"));
    }
    s.push_str(
        "# Slurm sends SIGTERM before it kills a task (scancel, time limit,\n# preemption): the trial records itself as interrupted and exits.\n",
    );
    s.push_str(&format!(
        "exec {} sweep trial {} --index \"$SLURM_ARRAY_TASK_ID\" --seed-store {} --threads {}\n",
        quote(&o.vpd.display().to_string()),
        quote(&dir.display().to_string()),
        quote(&seed.display().to_string()),
        o.cpus_per_task
    ));
    Ok(s)
}

fn check_options(o: &SlurmOptions) -> Result<(), SlurmError> {
    for a in &o.sbatch_args {
        if !a.starts_with('-') || a.contains('\n') {
            return Err(SlurmError::Usage(format!(
                "--sbatch-arg {a:?}: give one sbatch option per --sbatch-arg, e.g. --sbatch-arg=--account=proj"
            )));
        }
    }
    for (what, v) in [("--partition", &o.partition), ("--time", &o.time)] {
        if v.as_deref()
            .is_some_and(|v| v.is_empty() || v.contains(char::is_whitespace))
        {
            return Err(SlurmError::Usage(format!("{what} {v:?}: no spaces")));
        }
    }
    if o.max_parallel == Some(0) || o.cpus_per_task == 0 {
        return Err(SlurmError::Usage(
            "--max-parallel and --cpus-per-task must be at least 1".into(),
        ));
    }
    Ok(())
}

/// `vpd run SWEEP.toml --backend slurm`: prepares what the trials share,
/// seeds their stores, and submits the trials that are not finished,
/// pending or running as one array job.
pub fn submit(
    store: &Store,
    exp: &Experiment,
    o: &SlurmOptions,
    progress: &dyn Progress,
) -> Result<SubmitReport, SlurmError> {
    check_options(o)?;
    // Before any work: is there a Slurm to submit to?
    slurm("sbatch", &["--version".into()])?;
    let trials = exp.trials().map_err(RunError::from)?;
    let id = sweep::sweep_id(exp);
    let dir = sweep_dir(store, &id.to_string());
    let mut m = if manifest_path(&dir).exists() {
        read_manifest(&dir)?
    } else {
        Manifest {
            sweep_id: id.to_string(),
            experiment: exp.name.clone(),
            config: serde_json::to_value(exp).expect("config serialises"),
            store: store.root().canonicalize().map_err(io(store.root()))?,
            trials: trials.iter().map(|(v, _)| sweep::values_of(v)).collect(),
            submissions: Vec::new(),
        }
    };
    let collected = sweep::finished_trials(store, id, &trials)?;
    let before = rows(&dir, &m, &collected)?;
    let todo: Vec<usize> = before
        .iter()
        .filter(|r| {
            matches!(
                r.state,
                TrialStatus::Unsubmitted | TrialStatus::Failed | TrialStatus::Interrupted
            )
        })
        .map(|r| r.index)
        .collect();
    if todo.is_empty() {
        return Ok(SubmitReport {
            sweep_id: m.sweep_id,
            experiment: m.experiment,
            dir,
            job_ids: Vec::new(),
            submitted: 0,
            script: None,
            trials: before,
        });
    }
    for d in ["logs", "trials"] {
        let p = dir.join(d);
        std::fs::create_dir_all(&p).map_err(io(&p))?;
    }
    // What the trials share, in the main store, on this machine, on its
    // CPU (the login node need not have the trials' GPU).
    let threads = super::cores();
    for &i in &todo {
        let mut here = trials[i].1.clone();
        here.device = "cpu".into();
        super::prepare_trial(store, &here, threads, progress)?;
    }
    let n = m.submissions.len() + 1;
    progress.phase("seeding the trials' store", None);
    let seed = dir.join(format!("seed-{n}"));
    if seed.exists() {
        std::fs::remove_dir_all(&seed).map_err(io(&seed))?;
    }
    Store::open(&seed)?.seed_from(store)?;
    let script_path = dir.join(format!("submit-{n}.sbatch"));
    let text = script(&m, &dir, &todo, &seed, o)?;
    std::fs::write(&script_path, &text).map_err(io(&script_path))?;
    // Where a previous attempt of a trial left a state, it no longer says
    // anything about the new one.
    for &i in &todo {
        let _ = std::fs::remove_file(trial_dir(&dir, i).join("state.json"));
    }
    write_json(&manifest_path(&dir), &m)?;
    let out = slurm(
        "sbatch",
        &["--parsable".into(), script_path.display().to_string()],
    )?;
    // `--parsable` prints `jobid` or `jobid;cluster`.
    let job_id = out
        .trim()
        .split(';')
        .next()
        .filter(|j| !j.is_empty() && j.chars().all(|c| c.is_ascii_digit()))
        .ok_or_else(|| SlurmError::Slurm {
            command: format!("sbatch --parsable {}", script_path.display()),
            detail: format!("printed {:?}, not a job id", out.trim()),
        })?
        .to_string();
    m.submissions.push(Submission {
        job_id: job_id.clone(),
        tasks: todo.clone(),
        seed,
        script: script_path.clone(),
        threads: o.cpus_per_task,
        at: Utc::now(),
    });
    write_json(&manifest_path(&dir), &m)?;
    let after = rows(&dir, &m, &collected)?;
    Ok(SubmitReport {
        sweep_id: m.sweep_id,
        experiment: m.experiment,
        dir,
        job_ids: vec![job_id],
        submitted: todo.len(),
        script: Some(script_path),
        trials: after,
    })
}

/// Copies the seed store into a new trial store: records copied, blobs
/// hard-linked (copied across file systems), the main store's data
/// folder linked.
fn copy_store(seed: &Path, dest: &Path, data: &Path) -> Result<(), SlurmError> {
    fn walk(from: &Path, to: &Path, link: bool) -> Result<(), SlurmError> {
        std::fs::create_dir_all(to).map_err(io(to))?;
        for e in std::fs::read_dir(from).map_err(io(from))? {
            let e = e.map_err(io(from))?;
            let (src, dst) = (e.path(), to.join(e.file_name()));
            if e.file_type().map_err(io(&src))?.is_dir() {
                walk(&src, &dst, link)?;
            } else if !(link && std::fs::hard_link(&src, &dst).is_ok()) {
                std::fs::copy(&src, &dst).map_err(io(&src))?;
            }
        }
        Ok(())
    }
    walk(&seed.join("db"), &dest.join("db"), false)?;
    walk(&seed.join("blobs"), &dest.join("blobs"), true)?;
    if data.exists() {
        std::os::unix::fs::symlink(data, dest.join("data")).map_err(io(&dest.join("data")))?;
    }
    Ok(())
}

fn write_state(
    dir: &Path,
    i: usize,
    state: TrialStatus,
    run_id: Option<String>,
    error: Option<String>,
) -> Result<(), SlurmError> {
    write_json(
        &trial_dir(dir, i).join("state.json"),
        &TrialState {
            state,
            run_id,
            error,
            slurm: SlurmTask::from_env(),
            host: crate::store::host_name(),
            pid: std::process::id(),
            at: Utc::now(),
        },
    )
}

/// The exit status of a trial stopped by SIGTERM (128 + 15).
pub const INTERRUPTED_EXIT: i32 = 143;

/// One array task (`vpd sweep trial DIR --index I --seed-store SEED`):
/// starts over in a clean trial store copied from the seed, runs trial `I`
/// there, and records how it ended. SIGTERM marks the trial's run and
/// state as interrupted and exits with status 143.
pub fn run_array_task(
    dir: &Path,
    index: usize,
    seed: &Path,
    threads: usize,
    progress: std::sync::Arc<dyn Progress>,
) -> Result<super::RunReport, SlurmError> {
    let m = read_manifest(dir)?;
    let id = parse_id(&m)?;
    let trials = trials_of(&m)?;
    let Some((_, exp)) = trials.get(index) else {
        return Err(SlurmError::Usage(format!(
            "trial {index}: the sweep has {} trials (0-{})",
            trials.len(),
            trials.len().saturating_sub(1)
        )));
    };
    let tdir = trial_dir(dir, index);
    let tstore = tdir.join("store");
    if tstore.exists() {
        std::fs::remove_dir_all(&tstore).map_err(io(&tstore))?;
    }
    std::fs::create_dir_all(&tdir).map_err(io(&tdir))?;
    copy_store(seed, &tstore, &m.store.join("data"))?;
    let store = Store::open(&tstore)?;
    write_state(dir, index, TrialStatus::Running, None, None)?;
    eprintln!(
        "vpd sweep trial {index} of {} ({} trials) on {} as {}, {threads} thread(s), store {}",
        m.sweep_id,
        trials.len(),
        crate::store::host_name(),
        SlurmTask::from_env().map_or("no Slurm job".into(), |t| format!(
            "Slurm task {} (restart {})",
            t.name(),
            t.restarts
        )),
        tstore.display()
    );
    watch_sigterm(store.clone(), dir.to_path_buf(), index)?;
    let outcome = super::run_trial(&store, exp, Some(id), threads, progress);
    if INTERRUPTED.load(std::sync::atomic::Ordering::SeqCst) {
        // The signal thread has recorded the interrupt and is ending the
        // process; an error here is a consequence of that exit (libtorch's
        // globals torn down under a running trainer), not a failure of the
        // trial, and must not overwrite "interrupted".
        loop {
            std::thread::park();
        }
    }
    match outcome {
        Ok(r) => {
            write_state(
                dir,
                index,
                TrialStatus::Finished,
                Some(r.run_id.clone()),
                None,
            )?;
            Ok(r)
        }
        Err(e) => {
            let run = store
                .runs()
                .ok()
                .and_then(|rs| {
                    rs.into_iter()
                        .filter(|r| r.sweep == Some(id))
                        .max_by_key(|r| r.started_at)
                })
                .map(|r| r.id.to_string());
            write_state(dir, index, TrialStatus::Failed, run, Some(e.to_string()))?;
            Err(e.into())
        }
    }
}

/// Set by [`watch_sigterm`]'s thread before it records the interrupt.
static INTERRUPTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// On SIGTERM: the trial's run and state say interrupted, then the process
/// exits (143). sled survives an exit at any moment, so a version being
/// written either is there whole or not at all.
fn watch_sigterm(store: Store, dir: PathBuf, index: usize) -> Result<(), SlurmError> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals =
        signal_hook::iterator::Signals::new([SIGTERM, SIGINT]).map_err(|e| SlurmError::Io {
            path: PathBuf::from("signal handler"),
            source: e,
        })?;
    std::thread::spawn(move || {
        if let Some(sig) = signals.forever().next() {
            INTERRUPTED.store(true, std::sync::atomic::Ordering::SeqCst);
            let name = if sig == SIGTERM { "SIGTERM" } else { "SIGINT" };
            let why = format!(
                "{name} received (Slurm: scancel, the time limit or preemption); the trial stopped before it finished"
            );
            eprintln!("vpd sweep trial {index}: {why}");
            let runs = store.interrupt_own_runs(&why).unwrap_or_default();
            let _ = write_state(
                &dir,
                index,
                TrialStatus::Interrupted,
                runs.first().map(|r| r.to_string()),
                Some(why),
            );
            std::process::exit(INTERRUPTED_EXIT);
        }
    });
    Ok(())
}

/// `vpd sweep collect SWEEP`: merges every finished trial store that Slurm
/// no longer runs into the main store (again and again: what is there is
/// skipped), then summarises the collected trials as a local sweep does.
pub fn collect(store: &Store, given: &str) -> Result<CollectReport, SlurmError> {
    let (dir, m) = find(store, given)?;
    let id = parse_id(&m)?;
    let trials = trials_of(&m)?;
    let before = sweep::finished_trials(store, id, &trials)?;
    let rows_now = rows(&dir, &m, &before)?;
    let mut merged = 0;
    for r in &rows_now {
        if r.state == TrialStatus::Finished && !r.collected {
            let path = trial_dir(&dir, r.index).join("store");
            if !path.join("db").join("conf").exists() {
                return Err(SlurmError::Manifest {
                    path,
                    detail: format!(
                        "trial {} says it finished, but its store is not there (moved or deleted?); submit the sweep again to rerun it",
                        r.index
                    ),
                });
            }
            let t = Store::open(&path)?;
            store.merge(&t)?;
            merged += 1;
        }
    }
    let after = sweep::finished_trials(store, id, &trials)?;
    let skipped = before.iter().filter(|t| t.is_some()).count();
    let missing: Vec<TrialRow> = rows(&dir, &m, &after)?
        .into_iter()
        .filter(|r| !r.collected)
        .collect();
    // `reused`: collected by an earlier `collect`.
    let done: Vec<Trial> = after
        .into_iter()
        .zip(&before)
        .filter_map(|(t, b)| {
            t.map(|mut t| {
                t.reused = b.is_some();
                t
            })
        })
        .collect();
    let ran = done.len() - skipped.min(done.len());
    Ok(CollectReport {
        sweep: SweepReport {
            sweep_id: m.sweep_id.clone(),
            experiment: m.experiment.clone(),
            ran,
            skipped,
            jobs: 1,
            configurations: sweep::summarise(done),
        },
        collected: merged,
        missing,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn array_specs_expand() {
        assert_eq!(expand_tasks("3"), vec![3]);
        assert_eq!(expand_tasks("[4-6%2]"), vec![4, 5, 6]);
        assert_eq!(expand_tasks("[1,3,7-8]"), vec![1, 3, 7, 8]);
        assert!(expand_tasks("[]").is_empty());
    }

    #[test]
    fn quoting_survives_quotes() {
        assert_eq!(quote("a b"), "'a b'");
        assert_eq!(quote("it's"), r"'it'\''s'");
    }
}
