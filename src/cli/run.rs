//! `vpd run EXPERIMENT.toml [--set KEY=VALUE]... [--json]` and
//! `vpd run --from RUN`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Result};
use clap::Args;
use visprog_distiller::experiment::{Experiment, Progress};
use visprog_distiller::orchestrate::{self as run, slurm};

use super::common::{bar_style, open, spinner_style};
use super::{render, Cli};

/// The experiment run when no file is given.
pub const QUICKSTART: &str = include_str!("../../experiments/quickstart.toml");

/// `vpd run` arguments.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The experiment file (default: the embedded experiments/quickstart.toml).
    experiment: Option<PathBuf>,
    /// Override a key by its dotted path, e.g. `--set distill.pointer=none`.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    sets: Vec<String>,
    /// Rerun the resolved configuration of this run (id or unique prefix).
    #[arg(long, conflicts_with = "experiment")]
    from: Option<String>,
    /// Sweep trials run at once (after the first, which makes the shared
    /// data, pre-trained versions and baselines alone); the cores are
    /// shared out as libtorch threads.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    jobs: u16,
    /// Where a sweep's trials run: `local` (this machine, `--jobs` at a
    /// time) or `slurm` (one `sbatch --array` job; see `vpd sweep status`
    /// and `vpd sweep collect`).
    #[arg(long, default_value = "local", value_parser = ["local", "slurm"])]
    backend: String,
    /// Slurm: the partition.
    #[arg(long)]
    partition: Option<String>,
    /// Slurm: each trial's time limit (Slurm's format, e.g. 2:00:00).
    #[arg(long)]
    time: Option<String>,
    /// Slurm: at most K trials at once (`--array=...%K`).
    #[arg(long, value_name = "K", value_parser = clap::value_parser!(u32).range(1..))]
    max_parallel: Option<u32>,
    /// Slurm: CPUs per trial, also its libtorch threads (default: this
    /// machine's cores, as a local run uses; results depend on it).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1024))]
    cpus_per_task: Option<u32>,
    /// Slurm: one more sbatch option for the script, e.g.
    /// `--sbatch-arg=--account=proj` or `--sbatch-arg=--qos=long`
    /// (repeatable).
    #[arg(long = "sbatch-arg", value_name = "ARG", allow_hyphen_values = true)]
    sbatch_args: Vec<String>,
    /// Slurm: let Slurm requeue a preempted trial (it starts over in a
    /// clean trial store); without it `--no-requeue`.
    #[arg(long)]
    requeue: bool,
    /// Where the networks run: cpu, cuda or cuda:N (default: the
    /// experiment's `device`, itself `cpu` unless set).
    #[arg(long)]
    device: Option<String>,
    /// Refuse a sweep of more trials than this (counted before any is made).
    #[arg(long, default_value_t = 1000, value_name = "N")]
    max_trials: u64,
    /// One JSON document on stdout.
    #[arg(long)]
    json: bool,
}

/// Progress bars on stderr, on a terminal (the phases are also logged at
/// info level).
struct Bars(indicatif::ProgressBar);

impl Progress for Bars {
    fn phase(&self, name: &str, total: Option<u64>) {
        tracing::info!("{name}");
        match total {
            Some(t) => {
                self.0.set_style(bar_style(""));
                self.0.set_length(t);
            }
            None => {
                self.0.set_style(spinner_style());
                self.0
                    .enable_steady_tick(std::time::Duration::from_millis(200));
            }
        }
        self.0.reset();
        self.0.set_message(name.to_string());
    }
    fn set(&self, done: u64, message: &str) {
        self.0.set_position(done);
        self.0.set_message(message.to_string());
    }
}

/// Where stderr is not a terminal (a CI log, `make demo | tee`), indicatif
/// draws nothing: one line per phase instead, with the time since the run
/// began, so that a log shows where the time goes.
struct Lines {
    start: std::time::Instant,
    last: std::sync::Mutex<String>,
}

impl Progress for Lines {
    fn phase(&self, name: &str, _: Option<u64>) {
        tracing::info!("{name}");
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if *last != name {
            eprintln!(
                "vpd run: {:>7.1} s  {name}",
                self.start.elapsed().as_secs_f64()
            );
            *last = name.to_string();
        }
    }
    fn set(&self, _: u64, _: &str) {}
}

/// The experiment to run, with its overrides applied, and for `--from`
/// the run's libtorch thread count; refused before anything runs when a
/// key is unknown or has the wrong type.
pub fn resolve(cli: &Cli, a: &RunArgs) -> Result<(Experiment, Option<usize>), (u8, String)> {
    let mut threads = None;
    let base = if let Some(r) = &a.from {
        let store = open(cli).map_err(|e| (1, e.to_string()))?;
        let run = store.run(r).map_err(|e| (1, e.to_string()))?;
        threads = Some(run.threads.max(1) as usize);
        serde_json::from_value::<Experiment>(run.config.clone()).map_err(|e| {
            (
                1,
                format!("run {}: its configuration does not read: {e}", run.id),
            )
        })?
    } else if let Some(p) = &a.experiment {
        Experiment::load(p).map_err(|e| (2, e.to_string()))?
    } else {
        Experiment::parse(QUICKSTART, "experiments/quickstart.toml (embedded)")
            .map_err(|e| (2, e.to_string()))?
    };
    let mut e = base
        .with_overrides(&a.sets)
        .map_err(|e| (2, e.to_string()))?;
    if let Some(d) = &a.device {
        e = e
            .with_value(
                "device",
                toml::Value::String(d.clone()),
                &format!("--device {d}"),
            )
            .map_err(|e| (2, e.to_string()))?;
    }
    // A missing GPU is an error before any work starts (a Slurm sweep's
    // trials look for theirs on their nodes).
    if a.backend != "slurm" {
        e.device().to_tch().map_err(|e| (1, e.to_string()))?;
    }
    // A sweep's size, keys and lists are checked before any trial starts.
    let n = e.trial_count();
    if n > a.max_trials as u128 {
        return Err((
            2,
            format!(
                "the sweep of {} makes {n} trials, more than --max-trials {} (raise it to run them)",
                e.name, a.max_trials
            ),
        ));
    }
    if !e.sweep.is_empty() {
        eprintln!("sweep of {}: {n} trial(s)", e.name);
    }
    e.trials().map_err(|e| (2, e.to_string()))?;
    Ok((e, threads))
}

pub fn run(cli: &Cli, a: &RunArgs) -> Result<ExitCode> {
    let (exp, from_threads) = match resolve(cli, a) {
        Ok(e) => e,
        Err((code, msg)) => {
            eprintln!("error: {msg}");
            return Ok(ExitCode::from(code));
        }
    };
    let slurm_only = a.partition.is_some()
        || a.time.is_some()
        || a.max_parallel.is_some()
        || a.cpus_per_task.is_some()
        || !a.sbatch_args.is_empty()
        || a.requeue;
    if a.backend != "slurm" && slurm_only {
        eprintln!("error: --partition, --time, --max-parallel, --cpus-per-task, --sbatch-arg and --requeue need --backend slurm");
        return Ok(ExitCode::from(2));
    }
    if a.backend == "slurm" && a.from.is_some() {
        eprintln!("error: --from reruns one run here; --backend slurm submits an experiment file's trials");
        return Ok(ExitCode::from(2));
    }
    let store = open(cli)?;
    let bar = indicatif::ProgressBar::new(0);
    let terminal = std::io::IsTerminal::is_terminal(&std::io::stderr());
    if cli.quiet || !terminal {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let progress: Arc<dyn Progress> = if terminal || cli.quiet {
        Arc::new(Bars(bar.clone()))
    } else {
        Arc::new(Lines {
            start: std::time::Instant::now(),
            last: Default::default(),
        })
    };
    if a.backend == "slurm" {
        return submit(&store, &exp, a, progress.as_ref(), &bar);
    }
    if !exp.sweep.is_empty() {
        let report = run::run_sweep(&store, &exp, a.jobs as usize, progress);
        bar.finish_and_clear();
        let report = match report {
            Ok(r) => r,
            Err(e) => bail!("sweep of {} failed: {e}", exp.name),
        };
        if a.json {
            println!("{}", serde_json::to_string_pretty(&report)?);
        } else {
            render::print_sweep(&report);
        }
        return Ok(ExitCode::SUCCESS);
    }
    // A rerun uses the recorded run's thread count: results depend on it
    // (libtorch's reductions split by thread), so this reproduces the run.
    let threads = from_threads.unwrap_or_else(run::cores);
    let report = run::run_trial(&store, &exp, None, threads, progress);
    bar.finish_and_clear();
    let report = match report {
        Ok(r) => r,
        Err(e) => bail!("run of {} failed: {e}", exp.name),
    };
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        render::print_run(&report);
    }
    Ok(ExitCode::SUCCESS)
}

/// `--backend slurm`: submits the trials that are not finished.
fn submit(
    store: &visprog_distiller::store::Store,
    exp: &Experiment,
    a: &RunArgs,
    progress: &dyn Progress,
    bar: &indicatif::ProgressBar,
) -> Result<ExitCode> {
    let vpd = std::env::current_exe()?;
    let o = slurm::SlurmOptions {
        partition: a.partition.clone(),
        time: a.time.clone(),
        max_parallel: a.max_parallel.map(|k| k as usize),
        cpus_per_task: a.cpus_per_task.map_or_else(run::cores, |c| c as usize),
        sbatch_args: a.sbatch_args.clone(),
        requeue: a.requeue,
        vpd,
    };
    let r = slurm::submit(store, exp, &o, progress);
    bar.finish_and_clear();
    let r = match r {
        Ok(r) => r,
        Err(slurm::SlurmError::Usage(m)) => {
            eprintln!("error: {m}");
            return Ok(ExitCode::from(2));
        }
        Err(e) => bail!("submitting the sweep of {} failed: {e}", exp.name),
    };
    if a.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
        return Ok(ExitCode::SUCCESS);
    }
    match r.job_ids.first() {
        Some(j) => println!(
            "sweep {} ({}): {} trial(s) submitted as Slurm array job {j}",
            r.sweep_id, r.experiment, r.submitted
        ),
        None => println!(
            "sweep {} ({}): nothing to submit (submitted: 0): every trial is finished, pending or running",
            r.sweep_id, r.experiment
        ),
    }
    if let Some(s) = &r.script {
        println!("  script {}", s.display());
    }
    render::print_trial_rows(&r.trials);
    println!(
        "  then: vpd sweep status {id}   vpd sweep collect {id}",
        id = &r.sweep_id[..8]
    );
    Ok(ExitCode::SUCCESS)
}
