//! The local backend: a sweep's unfinished trials run in this process,
//! `jobs` at a time, each a run in the store (`vpd run SWEEP.toml`).

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

use crate::experiment::sweep::{
    finished_trials, summarise, sweep_id, values_of, SweepReport, Trial,
};
use crate::experiment::{Experiment, Progress, RunError};
use crate::store::Store;

use super::coordinator::{cores, run_trial};

/// A trial's progress, its phases named with the trial's number (trials
/// running at once share one display).
struct Tagged {
    inner: Arc<dyn Progress>,
    tag: String,
}

impl Progress for Tagged {
    fn phase(&self, name: &str, total: Option<u64>) {
        self.inner.phase(&format!("{}: {name}", self.tag), total);
    }
    fn set(&self, done: u64, message: &str) {
        self.inner.set(done, &format!("{}: {message}", self.tag));
    }
}

/// Runs the sweep's trials that have not finished yet and summarises all
/// of them. The first pending trial runs alone: it makes the data,
/// pre-trains what the store lacks and evaluates the shared baselines,
/// which the other trials then reuse. The rest run `jobs` at a time. Every
/// trial gets the same share of the cores as libtorch threads, so that the
/// trials are comparable and the sweep reproducible with the same `jobs`. After a
/// failed trial no new trial starts; the ones running finish, and the
/// first error is returned.
pub fn run_sweep(
    store: &Store,
    exp: &Experiment,
    jobs: usize,
    progress: Arc<dyn Progress>,
) -> Result<SweepReport, RunError> {
    let trials = exp.trials()?;
    let id = sweep_id(exp);
    let total = trials.len();
    let found = finished_trials(store, id, &trials)?;
    let mut slots: Vec<Option<Trial>> = vec![None; total];
    let mut pending = VecDeque::new();
    for (i, ((values, trial), found)) in trials.into_iter().zip(found).enumerate() {
        match found {
            Some(t) => slots[i] = Some(t),
            None => pending.push_back((i, values_of(&values), trial)),
        }
    }
    let skipped = total - pending.len();
    let ran = pending.len();
    let run_one = |(i, values, trial): (usize, BTreeMap<String, serde_json::Value>, Experiment),
                   threads: usize|
     -> Result<(usize, Trial), RunError> {
        tracing::info!("sweep {id}: trial {values:?} with {threads} threads");
        let tagged: Arc<dyn Progress> = Arc::new(Tagged {
            inner: progress.clone(),
            tag: format!("trial {}/{total}", i + 1),
        });
        let report = run_trial(store, &trial, Some(id), threads, tagged)?;
        Ok((
            i,
            Trial {
                values,
                run_id: report.run_id.clone(),
                reused: false,
                report,
            },
        ))
    };
    // Every trial of the sweep gets the same thread count (results depend
    // on it), the first one too, though it runs alone.
    let jobs = jobs.clamp(1, pending.len().saturating_sub(1).max(1));
    let threads = (cores() / jobs).max(1);
    if let Some(first) = pending.pop_front() {
        let (i, t) = run_one(first, threads)?;
        slots[i] = Some(t);
    }
    let queue = Mutex::new(pending);
    let done = Mutex::new(Vec::new());
    let failed: Mutex<Option<RunError>> = Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..jobs {
            s.spawn(|| loop {
                if failed.lock().expect("lock").is_some() {
                    break;
                }
                let Some(next) = queue.lock().expect("lock").pop_front() else {
                    break;
                };
                match run_one(next, threads) {
                    Ok(x) => done.lock().expect("lock").push(x),
                    Err(e) => {
                        failed.lock().expect("lock").get_or_insert(e);
                    }
                }
            });
        }
    });
    if let Some(e) = failed.into_inner().expect("lock") {
        return Err(e);
    }
    for (i, t) in done.into_inner().expect("lock") {
        slots[i] = Some(t);
    }
    Ok(SweepReport {
        sweep_id: id.to_string(),
        experiment: exp.name.clone(),
        ran,
        skipped,
        jobs,
        configurations: summarise(slots.into_iter().flatten().collect()),
    })
}
