//! Runs: one record per trial, with where and how it ran.

use chrono::Utc;
use uuid::Uuid;

use super::records::{Run, RunStatus};
use super::{encode, Store, StoreError, RUNS};

/// What a caller gives to start a run; the rest is read from the process.
#[derive(Debug, Clone, Default)]
pub struct NewRun {
    /// Experiment name.
    pub experiment: String,
    /// Resolved configuration.
    pub config: serde_json::Value,
    /// Seed.
    pub seed: u64,
    /// Dataset fingerprint.
    pub dataset: Option<String>,
    /// Sweep it belongs to.
    pub sweep: Option<Uuid>,
    /// libtorch version.
    pub torch_version: Option<String>,
    /// libtorch threads.
    pub threads: i32,
}

/// Start time of a process in clock ticks since boot (field 22 of
/// `/proc/PID/stat`), to tell a live process from a reused pid.
pub fn process_start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces; it ends at the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// This machine's host name, as runs record it.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "unknown".into())
}

fn git(args: &[&str]) -> Option<String> {
    let out = std::process::Command::new("git").args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

impl Run {
    /// The status to show: a `running` run whose process is gone from this
    /// host is `interrupted`.
    pub fn effective_status(&self) -> RunStatus {
        if self.status != RunStatus::Running || self.host != host_name() {
            return self.status;
        }
        match (process_start_time(self.pid), self.pid_start) {
            (Some(now), Some(then)) if now == then => RunStatus::Running,
            (Some(_), None) => RunStatus::Running,
            _ => RunStatus::Interrupted,
        }
    }
}

impl Store {
    /// Records the start of a run by this process.
    pub fn start_run(&self, new: NewRun) -> Result<Run, StoreError> {
        let pid = std::process::id();
        let run = Run {
            id: Uuid::now_v7(),
            experiment: new.experiment,
            config: new.config,
            seed: new.seed,
            dataset: new.dataset,
            sweep: new.sweep,
            git_commit: git(&["rev-parse", "HEAD"]),
            git_dirty: git(&["status", "--porcelain"]).map(|s| !s.is_empty()),
            torch_version: new.torch_version,
            threads: new.threads,
            host: host_name(),
            pid,
            pid_start: process_start_time(pid),
            status: RunStatus::Running,
            error: None,
            started_at: Utc::now(),
            ended_at: None,
            report: None,
            slurm: super::records::SlurmTask::from_env(),
        };
        self.put_run(&run)?;
        Ok(run)
    }

    fn put_run(&self, run: &Run) -> Result<(), StoreError> {
        self.with_db(|db| {
            self.tree(db, RUNS)?
                .insert(run.id.as_bytes(), encode(run))
                .map_err(|e| self.db_err(e))?;
            Ok(())
        })
    }

    /// Marks the runs this process started and has not ended as
    /// interrupted, with `why` (a trial that got SIGTERM from Slurm).
    /// Returns their ids.
    pub fn interrupt_own_runs(&self, why: &str) -> Result<Vec<Uuid>, StoreError> {
        let pid = std::process::id();
        let start = process_start_time(pid);
        let mine: Vec<Uuid> = self
            .runs()?
            .into_iter()
            .filter(|r| {
                r.status == RunStatus::Running
                    && r.pid == pid
                    && r.pid_start == start
                    && r.host == host_name()
            })
            .map(|r| r.id)
            .collect();
        for id in &mine {
            self.finish_run(*id, RunStatus::Interrupted, Some(why.to_string()))?;
        }
        Ok(mine)
    }

    /// Records how a run ended.
    pub fn finish_run(
        &self,
        id: Uuid,
        status: RunStatus,
        error: Option<String>,
    ) -> Result<Run, StoreError> {
        let mut run = self.run(&id.to_string())?;
        if run.status == RunStatus::Interrupted && status == RunStatus::Failed {
            // A run stopped by a signal fails on its way out (the process
            // is exiting under it): the interrupt is what happened.
            return Ok(run);
        }
        run.status = status;
        run.error = error;
        run.ended_at = Some(Utc::now());
        self.put_run(&run)?;
        Ok(run)
    }

    /// Records how a run ended with what it reported (kept as a blob).
    pub fn finish_run_with_report(
        &self,
        id: Uuid,
        status: RunStatus,
        report: &[u8],
    ) -> Result<Run, StoreError> {
        let hash = self.blobs().put(report)?;
        let mut run = self.run(&id.to_string())?;
        run.status = status;
        run.error = None;
        run.ended_at = Some(Utc::now());
        run.report = Some(hash);
        self.put_run(&run)?;
        Ok(run)
    }

    /// Every run, oldest first.
    pub fn runs(&self) -> Result<Vec<Run>, StoreError> {
        self.with_db(|db| {
            Ok(self
                .scan(db, RUNS, b"")?
                .into_iter()
                .map(|(_, r)| r)
                .collect())
        })
    }

    /// A run by id or unique id prefix.
    pub fn run(&self, prefix: &str) -> Result<Run, StoreError> {
        let p = prefix.to_ascii_lowercase();
        if p.is_empty() {
            return Err(StoreError::UnknownRun(prefix.to_string()));
        }
        let matches: Vec<Run> = self
            .runs()?
            .into_iter()
            .filter(|r| {
                r.id.to_string().starts_with(&p) || r.id.simple().to_string().starts_with(&p)
            })
            .collect();
        match matches.len() {
            0 => Err(StoreError::UnknownRun(prefix.to_string())),
            1 => Ok(matches.into_iter().next().expect("one")),
            count => Err(StoreError::AmbiguousRun {
                prefix: prefix.to_string(),
                count,
            }),
        }
    }
}
