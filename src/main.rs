//! The `vpd` binary: parses the command line, runs one command, maps the
//! outcome to an exit code (0 success, 1 failure, 2 usage error).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};

mod cmd_bench;
mod cmd_data;
mod cmd_doctor;
mod cmd_eval;
mod cmd_measure;
mod cmd_pretrain;
mod cmd_program;
mod cmd_run;
mod cmd_store;

use visprog_distiller::store::VersionRef;

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
    Doctor {
        /// One JSON object on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Generate the synthetic world; check a dataset in the real formats.
    Data {
        #[command(subcommand)]
        cmd: cmd_data::DataCmd,
    },
    /// Check, run and convert visual programs.
    Program {
        #[command(subcommand)]
        cmd: cmd_program::ProgramCmd,
    },
    /// Pre-train the VQA student or a task's teacher into the store.
    Pretrain {
        #[command(subcommand)]
        cmd: cmd_pretrain::PretrainCmd,
    },
    /// Run an experiment: data, pre-training of what is missing, base
    /// evaluation, distillation, evaluation on every task, the gate.
    Run(cmd_run::RunArgs),
    /// Score a pipeline (generator + VQA and LOC versions, or oracle) on a
    /// task's split through the actor runtime; recorded in the store.
    Eval(cmd_eval::EvalArgs),
    /// The students and teachers on the queries the adapters will ask, per
    /// domain: the margin distillation can transfer.
    Measure(cmd_measure::MeasureArgs),
    /// List module versions (all modules, or one).
    Versions {
        /// Only this module.
        module: Option<String>,
        /// One JSON document on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Ancestors and descendants of a version.
    Lineage {
        /// MODULE@REF (REF: a version number or an alias).
        target: VersionRef,
        /// One JSON document on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Set aliases and read their history.
    Alias {
        #[command(subcommand)]
        cmd: cmd_store::AliasCmd,
    },
    /// Move an alias back: undo its latest move, or go to a named version.
    Rollback {
        /// The module.
        module: String,
        /// The alias to move.
        #[arg(long)]
        alias: String,
        /// Go to this version (number or alias) instead of undoing one move.
        #[arg(long)]
        to: Option<String>,
        /// Why, kept in the history.
        #[arg(long)]
        reason: Option<String>,
        /// One JSON document on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Two versions of a module side by side, per task and question type,
    /// over pipelines that differ only in that module.
    Compare {
        /// MODULE@REF.
        a: VersionRef,
        /// MODULE@REF.
        b: VersionRef,
        /// Only these tasks (comma-separated).
        #[arg(long, value_delimiter = ',')]
        tasks: Option<Vec<String>>,
        /// One JSON document on stdout.
        #[arg(long)]
        json: bool,
    },
    /// The cross-task regression gate: exit 1 when the candidate loses more
    /// than --max-drop points on any task.
    Regress {
        /// The candidate, MODULE@REF.
        candidate: VersionRef,
        /// The baseline (default: the candidate's parent).
        #[arg(long)]
        against: Option<VersionRef>,
        /// Allowed loss in accuracy points.
        #[arg(long, default_value_t = 1.0)]
        max_drop: f64,
        /// One JSON document on stdout.
        #[arg(long)]
        json: bool,
    },
    /// List runs (a run whose process is gone shows as interrupted).
    Runs {
        /// One JSON document on stdout.
        #[arg(long)]
        json: bool,
    },
    /// One run, or one evaluation, in full (id or unique prefix).
    Show {
        /// Run or evaluation id, or a unique prefix.
        run: String,
        /// For an evaluation: this example's trace...
        #[arg(long, requires = "trace")]
        example: Option<String>,
        /// ...written to this self-contained HTML file.
        #[arg(long, requires = "example")]
        trace: Option<std::path::PathBuf>,
        /// One JSON document on stdout.
        #[arg(long)]
        json: bool,
    },
    /// One self-contained HTML page (inline SVG plots, no network) of a run
    /// or a sweep: summary, accuracy against distillation samples, pointer
    /// modes, every module version across the tasks, lineage.
    Report {
        /// Run or sweep id, or a unique prefix.
        target: String,
        /// The HTML file to write.
        #[arg(long)]
        out: PathBuf,
        /// Also write each plot as its own SVG file into this folder.
        #[arg(long, value_name = "DIR")]
        plots: Option<PathBuf>,
    },
    /// Benchmarks, each against a baseline measured in the same run.
    Bench {
        #[command(subcommand)]
        cmd: cmd_bench::BenchCmd,
    },
    /// Store maintenance: verify, gc, import, export, merge.
    Store {
        #[command(subcommand)]
        cmd: cmd_store::StoreCmd,
    },
}

fn main() -> ExitCode {
    // A closed pipe (`vpd eval ... | head`) ends vpd quietly, as it ends
    // other Unix tools, instead of panicking in println!.
    // SAFETY: restoring the default disposition of one signal at start-up,
    // before any thread exists.
    #[cfg(unix)]
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    visprog_distiller::nn::tune_allocator();
    let cli = Cli::parse();
    init_logging(cli.verbose, cli.quiet);
    match run(&cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {}", format_chain(&err));
            ExitCode::from(1)
        }
    }
}

fn run(cli: &Cli) -> Result<ExitCode> {
    match &cli.command {
        Command::Doctor { json } => cmd_doctor::run(cli, *json),
        Command::Data { cmd } => cmd_data::run(cli, cmd),
        Command::Program { cmd } => cmd_program::run(cli, cmd),
        Command::Pretrain { cmd } => cmd_pretrain::run(cli, cmd),
        Command::Measure(a) => cmd_measure::run(cli, a),
        Command::Eval(a) => cmd_eval::run(cli, a),
        Command::Run(a) => cmd_run::run(cli, a),
        Command::Versions { module, json } => cmd_store::versions(cli, module.as_deref(), *json),
        Command::Lineage { target, json } => cmd_store::lineage(cli, target, *json),
        Command::Alias { cmd } => cmd_store::alias(cli, cmd),
        Command::Rollback {
            module,
            alias,
            to,
            reason,
            json,
        } => cmd_store::rollback(cli, module, alias, to.as_deref(), reason.clone(), *json),
        Command::Compare { a, b, tasks, json } => {
            cmd_store::compare(cli, a, b, tasks.as_deref(), *json)
        }
        Command::Regress {
            candidate,
            against,
            max_drop,
            json,
        } => cmd_store::regress(cli, candidate, against.as_ref(), *max_drop, *json),
        Command::Runs { json } => cmd_store::runs(cli, *json),
        Command::Show {
            run,
            example,
            trace,
            json,
        } => cmd_eval::show(cli, run, example.as_deref(), trace.as_deref(), *json),
        Command::Report { target, out, plots } => {
            cmd_run::report(cli, target, out, plots.as_deref())
        }
        Command::Store { cmd } => cmd_store::store(cli, cmd),
        Command::Bench { cmd } => cmd_bench::run(cli, cmd),
    }
}

/// `outer: inner: innermost`, skipping causes already in the message.
fn format_chain(err: &anyhow::Error) -> String {
    let mut out = err.to_string();
    for cause in err.chain().skip(1) {
        let c = cause.to_string();
        if !out.contains(&c) {
            out.push_str(": ");
            out.push_str(&c);
        }
    }
    out
}

fn init_logging(verbose: u8, quiet: bool) {
    use tracing_subscriber::EnvFilter;
    let level = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        (false, 2) => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}
