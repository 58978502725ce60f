//! Submission: the shared work done in the main store, a seed store copied,
//! the unfinished trials submitted as one `sbatch --array` job.

use std::path::Path;

use chrono::Utc;

use super::status::rows;
use super::*;

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
    let threads = crate::orchestrate::cores();
    for &i in &todo {
        let mut here = trials[i].1.clone();
        here.device = "cpu".into();
        crate::orchestrate::prepare_trial(store, &here, threads, progress)?;
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
pub(super) fn copy_store(seed: &Path, dest: &Path, data: &Path) -> Result<(), SlurmError> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_survives_quotes() {
        assert_eq!(quote("a b"), "'a b'");
        assert_eq!(quote("it's"), r"'it'\''s'");
    }
}
