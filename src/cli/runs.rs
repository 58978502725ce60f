//! Runs and evaluations: `vpd runs`, `vpd show RUN|EVALUATION`.

use std::process::ExitCode;

use anyhow::{bail, Result};
use clap::Args;
use visprog_distiller::runtime::{score, trace_page};
use visprog_distiller::store::ModuleVersion;

use super::common::{open_existing, prefix, print_json, short, OutFile};
use super::{render, Cli};

/// `vpd runs`
#[derive(Debug, Args)]
pub struct RunsArgs {
    /// One JSON document on stdout.
    #[arg(long)]
    json: bool,
}

/// `vpd show ID [--example ID --trace OUT.html]`
#[derive(Debug, Args)]
pub struct ShowArgs {
    /// Run or evaluation id, or a unique prefix.
    run: String,
    /// For an evaluation: this example's trace...
    #[arg(long, requires = "trace")]
    example: Option<String>,
    /// ...written to this self-contained HTML file.
    #[arg(long, requires = "example")]
    trace: Option<std::path::PathBuf>,
    /// Replace the --trace file when it exists.
    #[arg(long, requires = "trace")]
    force: bool,
    /// One JSON document on stdout.
    #[arg(long)]
    json: bool,
}

/// `vpd runs`
pub fn runs(cli: &Cli, a: &RunsArgs) -> Result<ExitCode> {
    let json = a.json;
    let store = open_existing(cli)?;
    let runs = store.runs()?;
    if json {
        let v: Vec<_> = runs
            .iter()
            .map(|r| {
                let mut j = serde_json::to_value(r).expect("records serialise");
                j["status"] = serde_json::to_value(r.effective_status()).expect("status");
                j["recorded_status"] = serde_json::to_value(r.status).expect("status");
                j
            })
            .collect();
        print_json(&v)?;
        return Ok(ExitCode::SUCCESS);
    }
    if runs.is_empty() {
        println!("no runs in {}", store.root().display());
    }
    for r in &runs {
        println!(
            "{}  {:<20} seed {:<4} {:<12} {}",
            short(&r.id),
            r.experiment,
            r.seed,
            r.effective_status().to_string(),
            r.started_at.format("%Y-%m-%d %H:%M:%S")
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `vpd show ID`: a run, or an evaluation with its errors (and one
/// example's HTML trace with `--example ID --trace OUT.html`).
pub fn show(cli: &Cli, a: &ShowArgs) -> Result<ExitCode> {
    let (id, example, json) = (a.run.as_str(), a.example.as_deref(), a.json);
    let trace = OutFile::new(a.trace.as_deref(), a.force, &cli.store);
    // A refused trace file is an error before the store is read.
    if let Some(out) = &trace {
        out.check()?;
    }
    let store = open_existing(cli)?;
    let Some(e) = score::find_by_prefix(&store, id)? else {
        if example.is_some() {
            bail!("--example needs an evaluation id; `{id}` is none");
        }
        return show_run(cli, id, json);
    };
    if let (Some(ex), Some(out)) = (example, trace) {
        let html = trace_page::trace_html(&store, &e, ex)?;
        out.write(html.as_bytes())?;
        eprintln!("wrote the trace of {ex} to {}", out.path.display());
        return Ok(ExitCode::SUCCESS);
    }
    let d = score::details(&store, &e)?;
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
        let not = || "not measured".to_string();
        println!(
            "wrong      {} program errors, {} module errors; {} failed at a step",
            d.program_errors.map_or_else(not, |n| n.to_string()),
            d.module_errors.map_or_else(not, |n| n.to_string()),
            d.failed_steps
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
            short(&e.id)
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `vpd show RUN`
fn show_run(cli: &Cli, id: &str, json: bool) -> Result<ExitCode> {
    let store = open_existing(cli)?;
    let run = store.run(id)?;
    let versions: Vec<ModuleVersion> = store
        .versions(None)?
        .into_iter()
        .filter(|v| v.run == Some(run.id))
        .collect();
    let evals: Vec<_> = store
        .evaluations()?
        .into_iter()
        .filter(|e| e.run == Some(run.id))
        .collect();
    // Labels as this store numbers the versions (a merged run's report
    // names its own store's numbers).
    let report: Option<serde_json::Value> = match &run.report {
        Some(h) => Some(visprog_distiller::report::relabelled(
            &store,
            run.id,
            serde_json::from_slice(&store.blobs().get(h)?)?,
        )?),
        None => None,
    };
    let recipes = recipes_of(&store, report.as_ref())?;
    if json {
        let mut j = serde_json::to_value(&run)?;
        j["recipes"] = serde_json::to_value(
            recipes
                .iter()
                .map(|v| {
                    serde_json::json!({
                        "version": format!("{}@{}", v.module, v.number),
                        "parent": v.parent, "teacher": v.teacher,
                        "data": v.data, "config": v.config,
                    })
                })
                .collect::<Vec<_>>(),
        )?;
        j["status"] = serde_json::to_value(run.effective_status())?;
        if let Some(r) = &report {
            j["report"] = r.clone();
        }
        j["versions"] = serde_json::to_value(&versions)?;
        j["evaluations"] = serde_json::to_value(&evals)?;
        print_json(&j)?;
        return Ok(ExitCode::SUCCESS);
    }
    println!("run        {}", run.id);
    println!("experiment {}", run.experiment);
    println!("status     {:?}", run.effective_status());
    println!("seed       {}", run.seed);
    println!(
        "where      {} pid {} (git {}{}, torch {}, {} threads)",
        run.host,
        run.pid,
        run.git_commit.as_deref().map_or("-", |c| prefix(c, 12)),
        if run.git_dirty == Some(true) {
            ", dirty"
        } else {
            ""
        },
        run.torch_version.as_deref().unwrap_or("-"),
        run.threads
    );
    if let Some(t) = &run.slurm {
        println!(
            "slurm      task {} (job {}, restart {})",
            t.name(),
            t.job_id,
            t.restarts
        );
    }
    println!("started    {}", run.started_at);
    if let Some(e) = run.ended_at {
        println!("ended      {e}");
    }
    if let Some(e) = &run.error {
        println!("error      {e}");
    }
    for v in &versions {
        println!("version    {}@{} ({})", v.module, v.number, short(&v.id));
    }
    for e in &evals {
        println!(
            "evaluation {} {}: {:.1}% of {}",
            e.pipeline.task,
            e.pipeline.split,
            100.0 * e.total.accuracy(),
            e.total.n
        );
    }
    println!("config     {}", serde_json::to_string(&run.config)?);
    if let Some(r) = report {
        println!();
        match serde_json::from_value::<visprog_distiller::experiment::RunReport>(r) {
            Ok(r) => render::print_run(&r),
            Err(e) => println!("(its report does not read: {e})"),
        }
    }
    if !recipes.is_empty() {
        println!();
        println!("how every version the run used was made (with its ancestors):");
        let by_id: std::collections::HashMap<uuid::Uuid, String> = recipes
            .iter()
            .map(|v| (v.id, format!("{}@{}", v.module, v.number)))
            .collect();
        for v in &recipes {
            println!("  {}", recipe_line(v, &by_id));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The versions a run's report names and all their ancestors, each once,
/// by module and number.
fn recipes_of(
    store: &visprog_distiller::store::Store,
    report: Option<&serde_json::Value>,
) -> Result<Vec<ModuleVersion>> {
    let Some(versions) = report.and_then(|r| r["versions"].as_object()) else {
        return Ok(Vec::new());
    };
    let mut out: std::collections::BTreeMap<(String, u32), ModuleVersion> = Default::default();
    for label in versions.values().filter_map(|v| v.as_str()) {
        let Ok(r) = label.parse::<visprog_distiller::store::VersionRef>() else {
            continue;
        };
        // A version removed since (gc of an unaliased one) is left out.
        let Ok(l) = store.lineage(&r) else { continue };
        for v in std::iter::once(l.tree.version).chain(l.ancestors) {
            out.insert((v.module.clone(), v.number), v);
        }
    }
    Ok(out.into_values().collect())
}

/// One version's recipe in a line: pre-trained (data, size, epochs, ...),
/// distilled (parent, teacher, data, the distillation's settings), or
/// imported.
fn recipe_line(v: &ModuleVersion, names: &std::collections::HashMap<uuid::Uuid, String>) -> String {
    let c = &v.config;
    let name =
        |id: Option<uuid::Uuid>| id.map(|i| names.get(&i).cloned().unwrap_or_else(|| short(&i)));
    let data = v.data.as_deref().unwrap_or("data not recorded");
    let me = format!("{}@{}", v.module, v.number);
    if let Some(t) = c.get("train").filter(|t| t.is_object()) {
        let init = c
            .get("init_from")
            .and_then(|x| x.as_str())
            .map(|x| format!(", started from {x}"))
            .unwrap_or_default();
        return format!(
            "{me}: pre-trained on {data}: n {}, at most {} epochs, batch {}, lr {}, patience {}, seed {}{init}",
            c["n"], t["epochs"], t["batch"], t["lr"], t["patience"], t["seed"]
        );
    }
    if let Some(d) = c.get("distill").filter(|d| d.is_object()) {
        return format!(
            "{me}: distilled from {} with teacher {} on {data} by run {} ({}, seed {}): pointer {}, {} samples, at most {} epochs, lr {}, temperature {}, replay {}, self-distillation {}",
            name(v.parent).unwrap_or_else(|| "-".into()),
            name(v.teacher).unwrap_or_else(|| "-".into()),
            v.run.map_or("-".into(), |r| short(&r)),
            c["experiment"].as_str().unwrap_or("-"),
            c["seed"],
            d["pointer"],
            d["samples"],
            d["epochs"],
            d["lr"],
            d["temperature"],
            d["replay"],
            d["self_distill"]
        );
    }
    format!("{me}: imported or made outside a recipe vpd records ({data}): {c}")
}
