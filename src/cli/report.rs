//! `vpd report RUN|SWEEP --out FILE.html [--plots DIR]`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use visprog_distiller::report;

use super::common::{open_existing, OutFile};
use super::Cli;

/// `vpd report ...`
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Run or sweep id, or a unique prefix.
    target: String,
    /// The HTML file to write.
    #[arg(long)]
    out: PathBuf,
    /// Also write each plot as its own SVG file into this folder.
    #[arg(long, value_name = "DIR")]
    plots: Option<PathBuf>,
    /// Replace files that exist (the page and the plots).
    #[arg(long)]
    force: bool,
}

/// `vpd report RUN|SWEEP --out FILE.html [--plots DIR]`
pub fn run(cli: &Cli, a: &ReportArgs) -> Result<ExitCode> {
    let (target, out, plots) = (a.target.as_str(), a.out.as_path(), a.plots.as_deref());
    let out = OutFile {
        path: out,
        force: a.force,
        store: &cli.store,
    };
    // A refused target is an error before the store is read.
    out.check()?;
    if let Some(dir) = plots {
        visprog_distiller::output::check_folder(dir, Some(&cli.store))?;
    }
    let store = open_existing(cli)?;
    let t = report::resolve(&store, target)?;
    let data = report::gather(&store, &t)?;
    let page = report::render(&data, &store.root().display().to_string())?;
    out.write(page.html.as_bytes())?;
    let (kind, id) = match t {
        report::Target::Run(id) => ("run", id),
        report::Target::Sweep(id) => ("sweep", id),
    };
    println!(
        "wrote {} ({} KiB): {kind} {id}, {} finished trial(s), {} configuration(s), {} version(s), {} plots",
        out.path.display(),
        page.html.len().div_ceil(1024),
        data.trials.len(),
        data.configurations.len(),
        data.versions.len(),
        page.plots.len()
    );
    if let Some(dir) = plots {
        std::fs::create_dir_all(dir)
            .map_err(|e| anyhow::anyhow!("cannot make {}: {e}", dir.display()))?;
        for (name, svg) in &page.plots {
            let p = dir.join(format!("{name}.svg"));
            OutFile { path: &p, ..out }.write(svg.as_bytes())?;
            println!("wrote {}", p.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}
