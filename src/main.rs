//! The `vpd` binary: parses the command line, runs one command, maps the
//! outcome to an exit code (0 success, 1 failure, 2 usage error).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};

mod cmd_doctor;

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
}

fn main() -> ExitCode {
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
