//! One array task running its trial in its own store (state file, SIGTERM
//! as interrupted), and `vpd sweep collect` merging the finished ones.

use std::path::{Path, PathBuf};

use chrono::Utc;

use super::status::rows;
use super::submit::copy_store;
use super::*;

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
) -> Result<crate::experiment::RunReport, SlurmError> {
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
    let outcome = crate::orchestrate::run_trial(&store, exp, Some(id), threads, progress);
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
