//! `vpd eval`: a pipeline scored on a task's split through the actors.

use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use visprog_distiller::program::llm::LlmConfig;
use visprog_distiller::runtime::exec::{parse_modules, ExecConfig, ModuleChoice};
use visprog_distiller::runtime::jobs::{Layout, Slice};
use visprog_distiller::runtime::score::{self, EvalReport, EvalSpec};
use visprog_distiller::runtime::teacher_eval;
use visprog_distiller::store::VersionRef;
use visprog_distiller::vocab::{Slot, Task};

use super::common::{self, open, short, GpuOpt};
use super::Cli;

/// `vpd eval ...`
#[derive(Debug, Args)]
pub struct EvalArgs {
    /// gqa or nlvr2.
    #[arg(long)]
    task: Task,
    /// The split: `test`, `dev`, ... of the synthetic data; with --data, the
    /// stem of the split's file (`testdev_balanced` for
    /// `questions/testdev_balanced_questions.json`).
    #[arg(long)]
    split: Option<String>,
    /// A dataset folder in the real published layout (GQA: `questions/`,
    /// optional `sceneGraphs/`, `images/`) instead of the synthetic data.
    #[arg(long, value_name = "DIR")]
    data: Option<std::path::PathBuf>,
    /// The images' folder when it is not DIR/images (with --data).
    #[arg(long, value_name = "DIR", requires = "data")]
    images: Option<std::path::PathBuf>,
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
    /// Only N examples (from --offset).
    #[arg(long)]
    limit: Option<usize>,
    /// Skip the split's first N examples.
    #[arg(long, default_value_t = 0)]
    offset: usize,
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
    #[command(flatten)]
    gpu: GpuOpt,
    /// One JSON document on stdout.
    #[arg(long)]
    json: bool,
}

/// `--modules` for `vpd eval` and `vpd bench exec`: the VQA and LOC slots,
/// `vqa@base` and `loc@base` where the words name none.
pub fn slots(modules: &[String]) -> Result<(ModuleChoice, ModuleChoice)> {
    let mut m = parse_modules(modules).map_err(anyhow::Error::msg)?;
    let base = |s: Slot| {
        ModuleChoice::Version(VersionRef {
            module: s.module().into(),
            reference: "base".into(),
        })
    };
    let vqa = m.remove(&Slot::Vqa).unwrap_or_else(|| base(Slot::Vqa));
    let loc = m.remove(&Slot::Loc).unwrap_or_else(|| base(Slot::Loc));
    Ok((vqa, loc))
}

pub fn run(cli: &Cli, a: &EvalArgs) -> Result<ExitCode> {
    // A missing GPU is an error before anything is read or loaded.
    let device = a.gpu.device.checked()?;
    let store = open(cli)?;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let bar = common::bar(0, a.json || cli.quiet, "");
    let progress = |k: usize, n: usize| {
        bar.set_length(n as u64);
        bar.set_position(k as u64);
    };
    let task = a.task.to_string();
    let split = match (&a.data, &a.split) {
        (_, Some(s)) => s.clone(),
        (None, None) => "test".to_string(),
        (Some(d), None) => anyhow::bail!(
            "--data {}: name the split with --split NAME (the stem of its questions file, e.g. testdev_balanced)",
            d.display()
        ),
    };
    let (data, layout) = match &a.data {
        Some(d) => (
            d.clone(),
            Layout::Real {
                images: a.images.clone(),
            },
        ),
        // Synthetic data only when no folder is named.
        None => (
            teacher_eval::task_data(&store, a.task, a.n)?,
            Layout::Synthetic,
        ),
    };
    let slice = Slice {
        data,
        layout,
        split: split.clone(),
        offset: a.offset,
        limit: a.limit,
    };
    let (what, r) = if let Some(t) = &a.teacher {
        let reference = if t.is_empty() {
            format!("{task}-teacher@teacher")
        } else {
            t.clone()
        };
        let r: VersionRef = reference.parse().map_err(anyhow::Error::msg)?;
        visprog_distiller::nn::set_threads(threads as i32);
        bar.set_message(format!("{task} teacher"));
        let rep = teacher_eval::evaluate_teacher(&store, a.task, &r, &slice, a.force, device)?;
        (format!("teacher {r}"), rep)
    } else {
        let (vqa, loc) = slots(&a.modules)?;
        let llm = match a.generator.as_str() {
            "llm" => Some(LlmConfig {
                // --force also asks again where the cached answer was an
                // invalid program.
                retry_invalid: a.force,
                ..LlmConfig::from_env()?
            }),
            _ => None,
        };
        // One libtorch thread per worker; a worker per core per module.
        visprog_distiller::nn::set_threads(1);
        let what = format!("VQA={vqa} LOC={loc}");
        let spec = EvalSpec {
            task: a.task,
            slice,
            vqa,
            loc,
            llm,
            force: a.force,
        };
        bar.set_message(format!("{task} {what}"));
        let cfg = if a.sequential {
            ExecConfig::sequential()
        } else {
            ExecConfig::batched(1)
        }
        .on(device, a.gpu.gpu_batch);
        let rep = score::evaluate(&store, &spec, cfg, &progress)?;
        (format!("{what}, generator {}", a.generator), rep)
    };
    bar.finish_and_clear();
    if a.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
        return Ok(ExitCode::SUCCESS);
    }
    print_report(&task, &split, &what, &r);
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
                short(&r.evaluation.id)
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
        if let Some(k) = r.outside_answers.filter(|k| *k > 0) {
            println!(
                "  {k} question(s) whose answer is outside the teacher's answers, counted wrong"
            );
        }
        println!("  evaluation {}", r.evaluation.id);
        return;
    }
    match (r.program_errors, r.module_errors) {
        (Some(p), Some(m)) => println!(
            "  wrong: {} = {p} program errors (wrong with oracle modules too) + {m} module errors; {} failed at a step",
            p + m,
            r.failed_steps
        ),
        _ => println!(
            "  wrong: {}; program/module errors not measured (no scene graphs); {} failed at a step",
            s.n - s.correct,
            r.failed_steps
        ),
    }
    if let Some((m, k)) = &r.commonest_failure {
        println!("  most frequent failure ({k} of {}): {m}", s.n);
    }
    if let Some(x) = &r.exec {
        println!(
            "  {:.1} s, at most {} programs in flight, mean batch VQA {:.1} LOC {:.1}, {} worker restarts",
            x.seconds, x.max_in_flight, x.vqa_mean_batch, x.loc_mean_batch, x.restarts
        );
    }
    println!("  evaluation {}", r.evaluation.id);
}
