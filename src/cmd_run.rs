//! `vpd run EXPERIMENT.toml [--set KEY=VALUE]... [--json]` and
//! `vpd run --from RUN`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Result};
use clap::Args;
use visprog_distiller::distill::experiment::Experiment;
use visprog_distiller::distill::run::{self, Progress, RunReport};
use visprog_distiller::distill::sweep::{self, SweepReport};

use crate::Cli;

/// The experiment run when no file is given.
pub const QUICKSTART: &str = include_str!("../experiments/quickstart.toml");

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
    /// One JSON document on stdout.
    #[arg(long)]
    json: bool,
}

/// Progress bars on stderr (hidden when stderr is not a terminal; the
/// phases are then logged at info level).
struct Bars(indicatif::ProgressBar);

impl Progress for Bars {
    fn phase(&self, name: &str, total: Option<u64>) {
        tracing::info!("{name}");
        match total {
            Some(t) => {
                self.0.set_style(
                    indicatif::ProgressStyle::with_template(
                        "{msg} [{bar:30}] {pos}/{len} ({elapsed})",
                    )
                    .expect("valid template")
                    .progress_chars("=> "),
                );
                self.0.set_length(t);
            }
            None => {
                self.0.set_style(
                    indicatif::ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
                        .expect("valid template"),
                );
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

/// The experiment to run, with its overrides applied, and for `--from`
/// the run's libtorch thread count; refused before anything runs when a
/// key is unknown or has the wrong type.
pub fn resolve(cli: &Cli, a: &RunArgs) -> Result<(Experiment, Option<usize>), (u8, String)> {
    let mut threads = None;
    let base = if let Some(r) = &a.from {
        let store = crate::cmd_store::open(cli).map_err(|e| (1, e.to_string()))?;
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
    // A sweep's keys and lists are checked before any trial starts.
    e.trials().map_err(|e| (2, e.to_string()))?;
    Ok((e, threads))
}

fn value_list(v: &std::collections::BTreeMap<String, serde_json::Value>) -> String {
    if v.is_empty() {
        return "(one configuration)".into();
    }
    v.iter()
        .map(|(k, x)| format!("{k}={}", x.as_str().map_or(x.to_string(), str::to_string)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A sweep's summary table.
pub fn print_sweep(s: &SweepReport) {
    let at_once = if s.ran > 1 {
        format!(" ({} at a time after the first)", s.jobs)
    } else {
        String::new()
    };
    println!(
        "sweep {} ({}): {} trials run now{at_once}, {} finished before and reused",
        s.sweep_id, s.experiment, s.ran, s.skipped
    );
    for c in &s.configurations {
        println!("{} ({} trials):", value_list(&c.values), c.trials.len());
        for (t, x) in &c.tasks {
            println!(
                "  {t:<6} base {:.1}%  distilled {:.1}% (sd {:.2}, {:.1}-{:.1})  gain {:+.2} (sd {:.2})  n={} each",
                x.base.mean, x.distilled.mean, x.distilled.sd, x.distilled.min, x.distilled.max, x.gain.mean, x.gain.sd, x.n
            );
        }
        let p = &c.pseudo_label_accuracy;
        if p.trials > 0 {
            println!("  pseudo-label accuracy {:.1}% (sd {:.2})", p.mean, p.sd);
        }
        println!(
            "  gate passed in {} of {} trials",
            c.gate_passed,
            c.trials.len()
        );
    }
}

fn score(s: &visprog_distiller::runtime::eval::Score) -> String {
    format!("{:.1}%", s.accuracy)
}

/// The run's table.
pub fn print_table(r: &RunReport) {
    let v = |k: &str| r.versions.get(k).map_or("-", |s| s.as_str()).to_string();
    let task = format!("{:?}", r.config.distill.task).to_lowercase();
    let made: Vec<String> = r
        .config
        .distill
        .modules
        .iter()
        .map(|m| format!("{} from {}", v(m), v(&format!("{m}_parent"))))
        .collect();
    println!(
        "run {} ({}, seed {}): {} distilled on {task} with teacher {}, pointer `{}`",
        r.run_id,
        r.experiment,
        r.seed,
        made.join(" and "),
        v(&format!("{task}-teacher")),
        r.config.distill.pointer
    );
    println!(
        "{:<7} {:>8} {:>8} {:>8} {:>10} {:>24} {:>6}",
        "task", "teacher", "oracle", "base", "distilled", "difference [95% CI]", "n"
    );
    for (t, row) in &r.tasks {
        let d = &row.difference;
        println!(
            "{:<7} {:>8} {:>8} {:>8} {:>10} {:>24} {:>6}",
            t,
            row.teacher.as_ref().map_or("-".into(), score),
            score(&row.oracle),
            score(&row.base),
            score(&row.distilled),
            format!("{:+.1} [{:+.1}, {:+.1}]", d.points, d.ci95.0, d.ci95.1),
            row.base.n
        );
    }
    if let Some(p) = &r.pseudo_labels {
        let modes: Vec<String> = p
            .by_mode
            .iter()
            .map(|(m, a)| {
                format!(
                    "{m} {:.1}%{}",
                    a.accuracy,
                    if *m == p.used { " (used)" } else { "" }
                )
            })
            .collect();
        println!(
            "VQA pseudo-label accuracy on {} distill steps ({} steps, {:.1}% rewritten by the pointer, {} unscored): {}; the parent's own answers {:.1}%",
            p.task,
            p.steps,
            p.rewritten_share,
            p.unscored,
            modes.join(" | "),
            p.student.accuracy
        );
        if let Some(t) = &r.training {
            println!(
                "VQA trained on {} samples (confidence >= {:.2}, their labels {:.1}% right), dev slice {}; kept epoch {} of {}, dev agreement with the teacher {:.1}% -> {:.1}%",
                p.kept,
                p.confidence,
                p.kept_accuracy,
                p.dev,
                t.best_epoch,
                t.train_loss.len(),
                100.0 * t.dev_agreement.first().copied().unwrap_or(0.0),
                100.0 * t.best_dev_agreement
            );
        }
    }
    if let Some(l) = &r.loc_pseudo_boxes {
        println!(
            "LOC pseudo-boxes on {} steps: {} candidates, {} accepted by the teacher; precision/recall at IoU 0.5: accepted {:.1}/{:.1}%, all candidates {:.1}/{:.1}%, the parent's own boxes {:.1}/{:.1}%; trained on {} examples, dev {}",
            l.steps,
            l.candidates,
            l.accepted,
            l.verified.0,
            l.verified.1,
            l.all_candidates.0,
            l.all_candidates.1,
            l.parent.0,
            l.parent.1,
            l.examples,
            l.dev
        );
    }
    for (m, g) in &r.gates {
        let drops: Vec<String> = g
            .rows
            .iter()
            .map(|x| format!("{} {:+.1}", x.task, -x.drop_points))
            .collect();
        let moved = r
            .aliases_moved
            .iter()
            .any(|x| x.starts_with(&format!("{m}@")));
        println!(
            "gate {m} (max drop {} points; {}): {}{}",
            g.max_drop,
            drops.join(", "),
            if g.passed { "passed" } else { "refused" },
            if moved {
                format!(", alias {m}@{} -> {}", r.config.gate.alias, v(m))
            } else {
                format!(", alias {} not moved", r.config.gate.alias)
            }
        );
    }
    if !r.pretrained.is_empty() {
        println!(
            "pre-trained (the store lacked them): {}",
            r.pretrained.join(", ")
        );
    }
    let secs: Vec<String> = r
        .seconds
        .iter()
        .map(|(k, v)| format!("{k} {v:.0} s"))
        .collect();
    println!("time: {}", secs.join(", "));
}

pub fn run(cli: &Cli, a: &RunArgs) -> Result<ExitCode> {
    let (exp, from_threads) = match resolve(cli, a) {
        Ok(e) => e,
        Err((code, msg)) => {
            eprintln!("error: {msg}");
            return Ok(ExitCode::from(code));
        }
    };
    let store = crate::cmd_store::open(cli)?;
    let bar = indicatif::ProgressBar::new(0);
    if cli.quiet {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let progress: Arc<dyn Progress> = Arc::new(Bars(bar.clone()));
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
            print_sweep(&report);
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
        print_table(&report);
    }
    Ok(ExitCode::SUCCESS)
}

/// `vpd report RUN|SWEEP --out FILE.html [--plots DIR]`
pub fn report(
    cli: &Cli,
    target: &str,
    out: &std::path::Path,
    plots: Option<&std::path::Path>,
) -> Result<ExitCode> {
    use visprog_distiller::report;
    let store = crate::cmd_store::open(cli)?;
    let t = report::resolve(&store, target)?;
    let data = report::gather(&store, &t)?;
    let page = report::render(&data, &store.root().display().to_string())?;
    let write = |path: &std::path::Path, text: &str| -> Result<()> {
        let tmp = path.with_extension("part");
        std::fs::write(&tmp, text)
            .and_then(|_| std::fs::rename(&tmp, path))
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))
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
