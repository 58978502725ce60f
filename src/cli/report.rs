//! `vpd report RUN|SWEEP --out FILE.html [--plots DIR]`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use visprog_distiller::report;

use super::common::open_existing;
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
}

/// `vpd report RUN|SWEEP --out FILE.html [--plots DIR]`
pub fn run(cli: &Cli, a: &ReportArgs) -> Result<ExitCode> {
    let (target, out, plots) = (a.target.as_str(), a.out.as_path(), a.plots.as_deref());
    let store = open_existing(cli)?;
    let t = report::resolve(&store, target)?;
    let data = report::gather(&store, &t)?;
    let page = report::render(&data, &store.root().display().to_string())?;
    let write = |path: &std::path::Path, text: &str| -> Result<()> {
        // A temporary name of vpd's own beside the target (never a file the
        // user may have, as `notes.part` for `notes.html` was), removed
        // when the write fails.
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default();
        let tmp = path.with_file_name(format!(".{name}.vpd-tmp-{}", std::process::id()));
        std::fs::write(&tmp, text)
            .and_then(|_| std::fs::rename(&tmp, path))
            .map_err(|e| {
                let _ = std::fs::remove_file(&tmp);
                anyhow::anyhow!("cannot write {}: {e}", path.display())
            })
    };
    write(out, &page.html)?;
    let (kind, id) = match t {
        report::Target::Run(id) => ("run", id),
        report::Target::Sweep(id) => ("sweep", id),
    };
    println!(
        "wrote {} ({} KiB): {kind} {id}, {} finished trial(s), {} configuration(s), {} version(s), {} plots",
        out.display(),
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
            write(&p, svg)?;
            println!("wrote {}", p.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}
