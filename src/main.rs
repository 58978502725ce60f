//! The `vpd` binary: start-up (signals, allocator, logging), then one
//! command from `cli`, its outcome mapped to an exit code (0 success,
//! 1 failure, 2 usage error; clap exits 2 itself on a malformed line).

use std::process::ExitCode;

use clap::Parser;

mod cli;

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
    let cli = cli::Cli::parse();
    init_logging(cli.verbose, cli.quiet);
    match cli::run(&cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {}", format_chain(&err));
            ExitCode::from(1)
        }
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
    use std::io::IsTerminal;
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
        // No colour codes in logs and CI output: only on a terminal.
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}
