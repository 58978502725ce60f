//! `vpd eval`: a pipeline scored on a task's split through the actors.

use std::process::ExitCode;

use anyhow::{bail, Result};
use clap::Args;
use visprog_distiller::data::synth::Task;
use visprog_distiller::program::llm::LlmConfig;
use visprog_distiller::runtime::eval::{self, EvalReport, EvalSpec};
use visprog_distiller::runtime::exec::{ExecConfig, ModuleChoice};
use visprog_distiller::store::VersionRef;

use crate::Cli;

/// `vpd eval ...`
#[derive(Debug, Args)]
pub struct EvalArgs {
    /// gqa or nlvr2.
    #[arg(long)]
    task: Task,
    /// The split.
    #[arg(long, default_value = "test")]
    split: String,
    /// `oracle` (every slot), or SLOT=MODULE@REF / SLOT=oracle for VQA and
    /// LOC (default: VQA=vqa@base LOC=loc@base).
    #[arg(long, num_args = 1..)]
    modules: Vec<String>,
    /// annotated (GQA semantic programs converted, NLVR2's own programs) or
    /// llm (VPD_LLM_BASE_URL, VPD_LLM_MODEL; programs cached in the store).
    #[arg(long, default_value = "annotated", value_parser = ["annotated", "llm"])]
    generator: String,
    /// Evaluate the task's teacher end to end instead (a MODULE@REF, or
    /// the `teacher` alias when given without one).
    #[arg(long, num_args = 0..=1, default_missing_value = "")]
    teacher: Option<String>,
    /// Only the first N examples.
    #[arg(long)]
    limit: Option<usize>,
    /// Examples per split of the synthetic data when the store has no
    /// teacher's data to evaluate on.
    #[arg(long, default_value_t = 1000)]
    n: usize,
    /// Run again even when the store holds this pipeline's evaluation.
    #[arg(long)]
    force: bool,
    /// One program at a time with batches of one (as VisProg runs).
    #[arg(long)]
    sequential: bool,
    /// One JSON document on stdout.
    #[arg(long)]
    json: bool,
}

/// Parses `--modules` into the VQA and LOC slots.
pub fn slots(modules: &[String]) -> Result<(ModuleChoice, ModuleChoice)> {
    let mut vqa = ModuleChoice::Version("vqa@base".parse().map_err(anyhow::Error::msg)?);
    let mut loc = ModuleChoice::Version("loc@base".parse().map_err(anyhow::Error::msg)?);
    for m in modules {
        if m == "oracle" {
            vqa = ModuleChoice::Oracle;
            loc = ModuleChoice::Oracle;
            continue;
        }
        let Some((slot, spec)) = m.split_once('=') else {
            bail!("--modules {m}: expected oracle or SLOT=MODULE@REF (SLOT: VQA or LOC)");
        };
        let choice = if spec == "oracle" {
            ModuleChoice::Oracle
        } else {
            let r: VersionRef = spec.parse().map_err(anyhow::Error::msg)?;
            ModuleChoice::Version(r)
        };
        match slot.to_uppercase().as_str() {
            "VQA" => vqa = choice,
            "LOC" => loc = choice,
            other => bail!("--modules {m}: unknown slot `{other}` (VQA or LOC)"),
        }
    }
    Ok((vqa, loc))
}

fn name(c: &ModuleChoice) -> String {
    match c {
        ModuleChoice::Oracle => "oracle".into(),
        ModuleChoice::Version(r) => r.to_string(),
    }
}

pub fn run(cli: &Cli, a: &EvalArgs) -> Result<ExitCode> {
    let store = crate::cmd_store::open(cli)?;
    if a.task == Task::Generic {
        bail!("--task must be gqa or nlvr2");
    }
    let data = eval::task_data(&store, a.task, a.n)?;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let bar = indicatif::ProgressBar::new(0);
    if a.json || cli.quiet {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} ({elapsed})")
            .expect("valid template")
            .progress_chars("=> "),
    );
    let progress = |k: usize, n: usize| {
        bar.set_length(n as u64);
        bar.set_position(k as u64);
    };
    let task = format!("{:?}", a.task).to_lowercase();
    let (what, r) = if let Some(t) = &a.teacher {
        let reference = if t.is_empty() {
            format!("{task}-teacher@teacher")
        } else {
            t.clone()
        };
        let r: VersionRef = reference.parse().map_err(anyhow::Error::msg)?;
        visprog_distiller::nn::set_threads(threads as i32);
        bar.set_message(format!("{task} teacher"));
        let rep = eval::evaluate_teacher(&store, a.task, &r, &data, &a.split, a.limit, a.force)?;
        (format!("teacher {r}"), rep)
    } else {
        let (vqa, loc) = slots(&a.modules)?;
        let llm = match a.generator.as_str() {
            "llm" => Some(LlmConfig::from_env()?),
            _ => None,
        };
        // One libtorch thread per worker; a worker per core per module.
        visprog_distiller::nn::set_threads(1);
        let what = format!("VQA={} LOC={}", name(&vqa), name(&loc));
        let spec = EvalSpec {
            task: a.task,
            split: a.split.clone(),
            vqa,
            loc,
            llm,
            data,
            limit: a.limit,
            force: a.force,
        };
        bar.set_message(format!("{task} {what}"));
        let cfg = if a.sequential {
            ExecConfig::sequential()
        } else {
            ExecConfig::batched(1)
        };
        let rep = eval::evaluate(&store, &spec, cfg, &progress)?;
        (format!("{what}, generator {}", a.generator), rep)
    };
    bar.finish_and_clear();
    if a.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
        return Ok(ExitCode::SUCCESS);
    }
    print_report(&task, &a.split, &what, &r);
    Ok(ExitCode::SUCCESS)
}

fn print_report(task: &str, split: &str, what: &str, r: &EvalReport) {
    let s = &r.score;
    println!(
        "{task} {split}, {what}: {:.1}% [{:.1}, {:.1}] (n={}){}",
        s.accuracy,
        s.ci95.0,
        s.ci95.1,
        s.n,
        if r.reused {
            format!(
                " (stored evaluation {}, --force to run again)",
                &r.evaluation.id.to_string()[..12]
            )
        } else {
            String::new()
        }
    );
    for (k, t) in &r.by_type {
        println!(
            "  {k:<24} {:>5.1}% [{:.1}, {:.1}] (n={})",
            t.accuracy, t.ci95.0, t.ci95.1, t.n
        );
    }
    if r.evaluation.pipeline.generator == "end-to-end" {
        println!("  evaluation {}", r.evaluation.id);
        return;
    }
    println!(
        "  wrong: {} = {} program errors (wrong with oracle modules too) + {} module errors; {} failed at a step",
        r.program_errors + r.module_errors,
        r.program_errors,
        r.module_errors,
        r.failed_steps
    );
    if let Some(x) = &r.exec {
        println!(
            "  {:.1} s, at most {} programs in flight, mean batch VQA {:.1} LOC {:.1}, {} worker restarts",
            x.seconds, x.max_in_flight, x.vqa_mean_batch, x.loc_mean_batch, x.restarts
        );
    }
    println!("  evaluation {}", r.evaluation.id);
}

/// `vpd show ID`: a run, or an evaluation with its errors (and one
/// example's HTML trace with `--example ID --trace OUT.html`).
pub fn show(
    cli: &Cli,
    id: &str,
    example: Option<&str>,
    trace: Option<&std::path::Path>,
    json: bool,
) -> Result<ExitCode> {
    let store = crate::cmd_store::open(cli)?;
    let Some(e) = eval::find_by_prefix(&store, id)? else {
        if example.is_some() {
            bail!("--example needs an evaluation id; `{id}` is none");
        }
        return crate::cmd_store::show(cli, id, json);
    };
    if let (Some(ex), Some(out)) = (example, trace) {
        let html = eval::trace_html(&store, &e, ex)?;
        std::fs::write(out, html)
            .map_err(|err| anyhow::anyhow!("writing {}: {err}", out.display()))?;
        eprintln!("wrote the trace of {ex} to {}", out.display());
        return Ok(ExitCode::SUCCESS);
    }
    let d = eval::details(&store, &e)?;
    if json {
        let mut j = serde_json::to_value(&e)?;
        j["details"] = serde_json::to_value(&d)?;
        println!("{}", serde_json::to_string_pretty(&j)?);
        return Ok(ExitCode::SUCCESS);
    }
    let p = &e.pipeline;
    println!("evaluation {}", e.id);
    println!(
        "pipeline   {} {} ({}), generator {}",
        p.task, p.split, p.dataset, p.generator
    );
    for (slot, v) in &p.modules {
        let name = match v
            .parse::<uuid::Uuid>()
            .ok()
            .and_then(|u| store.version_by_id(u).ok().flatten())
        {
            Some(v) => format!("{}@{}", v.module, v.number),
            None => v.clone(),
        };
        println!("  {slot:<8} {name}");
    }
    let (lo, hi) = visprog_distiller::store::wilson_interval(e.total);
    println!(
        "accuracy   {:.1}% [{:.1}, {:.1}] (n={})",
        100.0 * e.total.accuracy(),
        100.0 * lo,
        100.0 * hi,
        e.total.n
    );
    if let Some(d) = d {
        println!(
            "wrong      {} program errors, {} module errors; {} failed at a step",
            d.program_errors, d.module_errors, d.failed_steps
        );
        let wrong: Vec<&serde_json::Value> = d
            .examples
            .iter()
            .filter(|x| x["correct"] == false)
            .take(10)
            .collect();
        for x in wrong {
            println!(
                "  {} {:?}: said {}, expected {}{}",
                x["id"].as_str().unwrap_or("?"),
                x["text"].as_str().unwrap_or(""),
                x["predicted"],
                x["expected"],
                x["error"]
                    .as_str()
                    .map(|e| format!(" ({e})"))
                    .unwrap_or_default()
            );
        }
        println!(
            "(vpd show {} --example ID --trace OUT.html for one trace)",
            &e.id.to_string()[..13]
        );
    }
    Ok(ExitCode::SUCCESS)
}
