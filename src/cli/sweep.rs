//! `vpd sweep status SWEEP` and `vpd sweep collect SWEEP`: a sweep
//! submitted with `vpd run SWEEP.toml --backend slurm`; and the hidden
//! `vpd sweep trial`, what each array task runs.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Result};
use clap::{Args, Subcommand};
use visprog_distiller::experiment::Progress;
use visprog_distiller::orchestrate::slurm;

use super::common::{open, print_json};
use super::{render, Cli};

/// `vpd sweep ...`.
#[derive(Debug, Subcommand)]
pub enum SweepCmd {
    /// Every trial's state (unsubmitted, pending, running, finished,
    /// failed, interrupted) from Slurm's queue and the trials' own records,
    /// with its job id and log.
    Status(SweepArgs),
    /// Merge the finished trials' stores into this store (again and again:
    /// what is there is skipped) and print the sweep's summary.
    Collect(SweepArgs),
    /// One array task (run by the batch script that `vpd run --backend
    /// slurm` writes).
    #[command(hide = true)]
    Trial(TrialArgs),
}

/// A submitted sweep.
#[derive(Debug, Args)]
pub struct SweepArgs {
    /// The sweep's id (or a unique prefix), as `vpd run --backend slurm`
    /// printed it.
    sweep: String,
    /// One JSON document on stdout.
    #[arg(long)]
    json: bool,
}

/// One array task.
#[derive(Debug, Args)]
pub struct TrialArgs {
    /// The sweep's folder (`<store>/sweeps/<id>`).
    dir: PathBuf,
    /// The trial (array index).
    #[arg(long)]
    index: usize,
    /// The seed store to copy.
    #[arg(long)]
    seed_store: PathBuf,
    /// libtorch threads.
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

/// One line per phase with the time since the trial began (the task's
/// log is not a terminal).
struct Lines(std::time::Instant);

impl Progress for Lines {
    fn phase(&self, name: &str, _: Option<u64>) {
        eprintln!(
            "vpd sweep trial: {:>7.1} s  {name}",
            self.0.elapsed().as_secs_f64()
        );
    }
    fn set(&self, _: u64, _: &str) {}
}

pub fn run(cli: &Cli, cmd: &SweepCmd) -> Result<ExitCode> {
    match cmd {
        SweepCmd::Status(a) => {
            let store = super::common::open_existing(cli)?;
            let s = slurm::status(&store, &a.sweep)?;
            if a.json {
                print_json(&s)?;
                return Ok(ExitCode::SUCCESS);
            }
            let counts = s
                .counts
                .iter()
                .map(|(k, n)| format!("{n} {k}"))
                .collect::<Vec<_>>()
                .join(", ");
            println!(
                "sweep {} ({}): {} trials: {counts}; Slurm jobs {}",
                s.sweep_id,
                s.experiment,
                s.trials.len(),
                if s.job_ids.is_empty() {
                    "none".into()
                } else {
                    s.job_ids.join(", ")
                }
            );
            render::print_trial_rows(&s.trials);
            Ok(ExitCode::SUCCESS)
        }
        SweepCmd::Collect(a) => {
            let store = open(cli)?;
            let r = slurm::collect(&store, &a.sweep)?;
            if a.json {
                print_json(&r)?;
                return Ok(ExitCode::SUCCESS);
            }
            println!(
                "sweep {} ({}): {} trial(s) collected now, {} before; {} not finished",
                r.sweep.sweep_id,
                r.sweep.experiment,
                r.collected,
                r.sweep.skipped,
                r.missing.len()
            );
            render::print_configurations(&r.sweep);
            if !r.missing.is_empty() {
                println!("not in the summary:");
                render::print_trial_rows(&r.missing);
            }
            Ok(ExitCode::SUCCESS)
        }
        SweepCmd::Trial(a) => {
            let progress: Arc<dyn Progress> = Arc::new(Lines(std::time::Instant::now()));
            match slurm::run_array_task(&a.dir, a.index, &a.seed_store, a.threads, progress) {
                Ok(r) => {
                    eprintln!(
                        "vpd sweep trial {}: finished, run {} (gate {})",
                        a.index,
                        r.run_id,
                        if r.gate_passed { "passed" } else { "refused" }
                    );
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => bail!("trial {} of {}: {e}", a.index, a.dir.display()),
            }
        }
    }
}
