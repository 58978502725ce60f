//! The command line: the `Cli`, the `Command` enum and its dispatch. One
//! file per command group holds that group's arguments and its `run`;
//! `common` has store opening, JSON printing, short ids and progress styles;
//! `render` the tables that several commands print.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};

mod bench;
mod common;
mod data;
mod doctor;
mod eval;
mod measure;
mod pretrain;
mod program;
#[cfg(test)]
mod quoted;
mod render;
mod report;
mod run;
mod runs;
mod store;
mod sweep;
mod versions;
mod viper;

/// Stepwise distillation of visual-programming sub-modules.
#[derive(Debug, Parser)]
#[command(name = "vpd", version, about, long_about = None)]
pub struct Cli {
    /// Store folder (module versions, runs, evaluations, data).
    #[arg(long, global = true, default_value = "store", env = "VPD_STORE")]
    pub store: PathBuf,
    /// More log output (-v info, -vv debug, -vvv trace). RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count, conflicts_with = "quiet")]
    pub verbose: u8,
    /// Only errors on stderr.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Report the libtorch, CUDA, threads and store this vpd runs with, and
    /// train a tiny network live to show that gradient descent works here.
    Doctor(doctor::DoctorArgs),
    /// Generate the synthetic world; check a dataset in the real formats.
    Data {
        #[command(subcommand)]
        cmd: data::DataCmd,
    },
    /// Check, run and convert visual programs.
    Program {
        #[command(subcommand)]
        cmd: program::ProgramCmd,
    },
    /// Pre-train the VQA student or a task's teacher into the store.
    Pretrain {
        #[command(subcommand)]
        cmd: pretrain::PretrainCmd,
    },
    /// Run an experiment: data, pre-training of what is missing, base
    /// evaluation, distillation, evaluation on every task, the gate.
    Run(run::RunArgs),
    /// Score a pipeline (generator + VQA and LOC versions, or oracle) on a
    /// task's split through the actor runtime; recorded in the store.
    Eval(eval::EvalArgs),
    /// The students and teachers on the queries the adapters will ask, per
    /// domain: the margin distillation can transfer.
    Measure(measure::MeasureArgs),
    /// List module versions (all modules, or one).
    Versions(versions::VersionsArgs),
    /// Ancestors and descendants of a version.
    Lineage(versions::LineageArgs),
    /// Set aliases and read their history.
    Alias {
        #[command(subcommand)]
        cmd: versions::AliasCmd,
    },
    /// Move an alias back: undo its latest move, or go to a named version.
    Rollback(versions::RollbackArgs),
    /// Two versions of a module side by side, per task and question type,
    /// over pipelines that differ only in that module.
    Compare(versions::CompareArgs),
    /// The cross-task regression gate: exit 1 when the candidate loses more
    /// than --max-drop points on any task.
    Regress(versions::RegressArgs),
    /// List runs (a run whose process is gone shows as interrupted).
    Runs(runs::RunsArgs),
    /// One run, or one evaluation, in full (id or unique prefix).
    Show(runs::ShowArgs),
    /// One self-contained HTML page (inline SVG plots, no network) of a run
    /// or a sweep: summary, accuracy against distillation samples, pointer
    /// modes, every module version across the tasks, lineage.
    Report(report::ReportArgs),
    /// A sweep submitted to Slurm (`vpd run SWEEP.toml --backend slurm`):
    /// its trials' states, and collecting their stores into this one.
    Sweep {
        #[command(subcommand)]
        cmd: sweep::SweepCmd,
    },
    /// Benchmarks, each against a baseline measured in the same run.
    Bench {
        #[command(subcommand)]
        cmd: bench::BenchCmd,
    },
    /// Store maintenance: verify, gc, import, export, merge.
    Store {
        #[command(subcommand)]
        cmd: store::StoreCmd,
    },
}

/// Runs the command the line names.
pub fn run(cli: &Cli) -> Result<ExitCode> {
    match &cli.command {
        Command::Doctor(a) => doctor::run(cli, a),
        Command::Data { cmd } => data::run(cli, cmd),
        Command::Program { cmd } => program::run(cli, cmd),
        Command::Pretrain { cmd } => pretrain::run(cli, cmd),
        Command::Measure(a) => measure::run(cli, a),
        Command::Eval(a) => eval::run(cli, a),
        Command::Run(a) => run::run(cli, a),
        Command::Versions(a) => versions::versions(cli, a),
        Command::Lineage(a) => versions::lineage(cli, a),
        Command::Alias { cmd } => versions::alias(cli, cmd),
        Command::Rollback(a) => versions::rollback(cli, a),
        Command::Compare(a) => versions::compare(cli, a),
        Command::Regress(a) => versions::regress(cli, a),
        Command::Runs(a) => runs::runs(cli, a),
        Command::Show(a) => runs::show(cli, a),
        Command::Report(a) => report::run(cli, a),
        Command::Store { cmd } => store::run(cli, cmd),
        Command::Bench { cmd } => bench::run(cli, cmd),
        Command::Sweep { cmd } => sweep::run(cli, cmd),
    }
}
