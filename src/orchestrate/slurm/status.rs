//! `vpd sweep status`: each trial's state from its state file and Slurm's queue.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use super::*;

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
pub(super) fn rows(
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
    let trials = trials_of(m)?;
    let id = parse_id(m)?;
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
        // The trial's own store decides whether it finished.
        if let Some(run) = trials
            .get(i)
            .and_then(|t| finished_in_trial_store(dir, i, id, t))
        {
            row.state = TrialStatus::Finished;
            row.run_id = Some(run);
            out.push(row);
            continue;
        }
        let written = read_state(dir, i)?;
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
}
