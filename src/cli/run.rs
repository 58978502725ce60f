//! `vpd run EXPERIMENT.toml [--set KEY=VALUE]... [--json]` and
//! `vpd run --from RUN`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Result};
use clap::Args;
use visprog_distiller::distill::experiment::Experiment;
use visprog_distiller::distill::sweep;
use visprog_distiller::distill::{self as run, Progress};

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
    /// cpu (the only device distillation runs on here).
    #[arg(long, default_value = "cpu", value_parser = ["cpu"])]
    device: String,
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
    let e = base
        .with_overrides(&a.sets)
        .map_err(|e| (2, e.to_string()))?;
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
    if !exp.sweep.is_empty() {
        let report = sweep::run_sweep(&store, &exp, a.jobs as usize, progress);
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
