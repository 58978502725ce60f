//! Store commands: versions, lineage, aliases, rollback, compare, regress,
//! runs, show, and `vpd store verify|gc|import|export|merge`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Subcommand;
use serde_json::json;
use uuid::Uuid;
use visprog_distiller::store::{
    AliasEvent, Lineage, LineageNode, ModuleVersion, Store, VersionRef,
};

use crate::Cli;

/// `vpd alias ...`
#[derive(Debug, Subcommand)]
pub enum AliasCmd {
    /// Point an alias at a version (recorded in the alias history).
    Set {
        /// MODULE@VERSION (a number or an alias).
        target: VersionRef,
        /// The alias, e.g. `base`, `prod`.
        alias: String,
        /// Why, kept in the history.
        #[arg(long)]
        reason: Option<String>,
        /// One JSON document on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Every move of a module's aliases (or of one alias), oldest first.
    History {
        /// The module.
        module: String,
        /// Only this alias.
        alias: Option<String>,
        /// One JSON document on stdout.
        #[arg(long)]
        json: bool,
    },
}

/// `vpd store ...`
#[derive(Debug, Subcommand)]
pub enum StoreCmd {
    /// Check every record and every blob's hash; exit 1 when anything is wrong.
    Verify {
        /// One JSON document on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Remove checkpoint blobs that no version references.
    Gc {
        /// One JSON document on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Register a checkpoint file as the module's next version.
    Import {
        /// The module, e.g. `vqa`.
        module: String,
        /// The checkpoint file.
        file: PathBuf,
        /// The version it derives from (MODULE@REF).
        #[arg(long)]
        parent: Option<VersionRef>,
        /// Sidecar describing a TorchScript module's inputs.
        #[arg(long)]
        sidecar: Option<PathBuf>,
        /// One JSON document on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Write a version's checkpoint to a file.
    Export {
        /// MODULE@REF.
        target: VersionRef,
        /// Destination file.
        file: PathBuf,
    },
    /// Bring another store's versions, runs and evaluations into this one.
    Merge {
        /// The other store's folder.
        other: PathBuf,
        /// One JSON document on stdout.
        #[arg(long)]
        json: bool,
    },
}

pub fn open(cli: &Cli) -> Result<Store> {
    Ok(Store::open(&cli.store)?)
}

fn print_json(v: &impl serde::Serialize) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

fn short(id: &Uuid) -> String {
    id.simple().to_string()[..12].to_string()
}

fn version_json(v: &ModuleVersion, aliases: &HashMap<Uuid, Vec<String>>) -> serde_json::Value {
    let mut j = serde_json::to_value(v).expect("records serialise");
    j["version"] = json!(v.number);
    let mut a = aliases.get(&v.id).cloned().unwrap_or_default();
    a.sort();
    j["aliases"] = json!(a);
    j
}

/// `vpd versions [MODULE]`
pub fn versions(cli: &Cli, module: Option<&str>, json: bool) -> Result<ExitCode> {
    let store = open(cli)?;
    let all = store.versions(module)?;
    let aliases = store.aliases()?;
    let numbers: HashMap<Uuid, (String, u32)> = all
        .iter()
        .map(|v| (v.id, (v.module.clone(), v.number)))
        .collect();
    if json {
        print_json(
            &all.iter()
                .map(|v| version_json(v, &aliases))
                .collect::<Vec<_>>(),
        )?;
        return Ok(ExitCode::SUCCESS);
    }
    if all.is_empty() {
        println!("no versions in {}", store.root().display());
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<14} {:>4}  {:<12}  {:<10}  {:<14} {:>10}  {:<20}  aliases",
        "module", "ver", "id", "parent", "blob", "bytes", "created"
    );
    for v in &all {
        let parent = v.parent.map_or("-".to_string(), |p| match numbers.get(&p) {
            Some((m, n)) if *m == v.module => format!("{n}"),
            Some((m, n)) => format!("{m}@{n}"),
            None => short(&p),
        });
        let mut a = aliases.get(&v.id).cloned().unwrap_or_default();
        a.sort();
        println!(
            "{:<14} {:>4}  {:<12}  {:<10}  {:<14} {:>10}  {:<20}  {}",
            v.module,
            v.number,
            short(&v.id),
            parent,
            &v.blob[..12],
            v.size,
            v.created_at.format("%Y-%m-%d %H:%M:%S"),
            a.join(",")
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `vpd lineage MODULE@REF`
pub fn lineage(cli: &Cli, r: &VersionRef, json: bool) -> Result<ExitCode> {
    let store = open(cli)?;
    let l: Lineage = store.lineage(r)?;
    if json {
        print_json(&l)?;
        return Ok(ExitCode::SUCCESS);
    }
    let label = |v: &ModuleVersion| {
        format!(
            "{}@{} ({}, {})",
            v.module,
            v.number,
            short(&v.id),
            v.created_at.format("%Y-%m-%d %H:%M:%S")
        )
    };
    println!("ancestors:");
    if l.ancestors.is_empty() {
        println!("  (none: a root version)");
    }
    for (i, a) in l.ancestors.iter().enumerate().rev() {
        println!("  {}{}", "  ".repeat(l.ancestors.len() - 1 - i), label(a));
    }
    println!("descendants:");
    let mut stack: Vec<(&LineageNode, usize)> = vec![(&l.tree, 0)];
    while let Some((n, depth)) = stack.pop() {
        let marker = if depth == 0 { "* " } else { "└─ " };
        println!(
            "  {}{marker}{}",
            "   ".repeat(depth.saturating_sub(1)),
            label(&n.version)
        );
        for c in n.children.iter().rev() {
            stack.push((c, depth + 1));
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn show_event(e: &AliasEvent, numbers: &HashMap<Uuid, u32>) {
    let v = |id: Option<Uuid>| {
        id.map_or("(none)".to_string(), |id| {
            numbers.get(&id).map_or(short(&id), |n| n.to_string())
        })
    };
    println!(
        "{}  {:<10} {:<8} {:>6} -> {:<6} {:<10} {}",
        e.at.format("%Y-%m-%d %H:%M:%S"),
        e.alias,
        format!("{:?}", e.kind).to_lowercase(),
        v(e.from),
        v(e.to),
        e.who,
        e.reason.as_deref().unwrap_or("")
    );
}

fn numbers_of(store: &Store, module: &str) -> Result<HashMap<Uuid, u32>> {
    Ok(store
        .versions(Some(module))?
        .into_iter()
        .map(|v| (v.id, v.number))
        .collect())
}

/// `vpd alias set|history`
pub fn alias(cli: &Cli, cmd: &AliasCmd) -> Result<ExitCode> {
    let store = open(cli)?;
    match cmd {
        AliasCmd::Set {
            target,
            alias,
            reason,
            json,
        } => {
            let v = store.resolve(target)?;
            let e = store.set_alias(&v.module, alias, v.id, reason.clone())?;
            if *json {
                print_json(&e)?;
            } else {
                let numbers = numbers_of(&store, &v.module)?;
                let from = e
                    .from
                    .and_then(|f| numbers.get(&f))
                    .map_or("(none)".into(), |n| n.to_string());
                println!("{}@{alias}: {from} -> {}", v.module, v.number);
            }
        }
        AliasCmd::History {
            module,
            alias,
            json,
        } => {
            let numbers = numbers_of(&store, module)?;
            let events = store.alias_history(module, alias.as_deref())?;
            if *json {
                print_json(&events)?;
            } else {
                if events.is_empty() {
                    println!("no alias history for {module}");
                }
                for e in &events {
                    show_event(e, &numbers);
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `vpd rollback MODULE --alias ALIAS [--to VERSION]`
pub fn rollback(
    cli: &Cli,
    module: &str,
    alias: &str,
    to: Option<&str>,
    reason: Option<String>,
    json: bool,
) -> Result<ExitCode> {
    let store = open(cli)?;
    let to = to
        .map(|t| {
            store.resolve(&VersionRef {
                module: module.to_string(),
                reference: t.to_string(),
            })
        })
        .transpose()?;
    let e = store.rollback(module, alias, to.map(|v| v.id), reason)?;
    if json {
        print_json(&e)?;
    } else {
        let numbers = numbers_of(&store, module)?;
        let n = |id: Option<Uuid>| {
            id.and_then(|i| numbers.get(&i))
                .map_or("(none: alias removed)".into(), |n| n.to_string())
        };
        println!("{module}@{alias}: {} -> {}", n(e.from), n(e.to));
    }
    Ok(ExitCode::SUCCESS)
}

/// `vpd compare A B [--tasks ...]`
pub fn compare(
    cli: &Cli,
    a: &VersionRef,
    b: &VersionRef,
    tasks: Option<&[String]>,
    json: bool,
) -> Result<ExitCode> {
    let store = open(cli)?;
    let va = store.resolve(a)?;
    let vb = store.resolve(b)?;
    let c = store.compare(&va, &vb, tasks)?;
    if json {
        print_json(&c)?;
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<8} {:<8} {:<10} {:>18} {:>18} {:>16}",
        "task",
        "split",
        "slot",
        format!("{a}"),
        format!("{b}"),
        "diff (95% CI)"
    );
    for r in &c.rows {
        println!(
            "{:<8} {:<8} {:<10} {:>11.1}% n={:<4} {:>11.1}% n={:<4} {:>+7.1} ±{:.1}",
            r.task,
            r.split,
            r.slot,
            100.0 * r.a.total.accuracy(),
            r.a.total.n,
            100.0 * r.b.total.accuracy(),
            r.b.total.n,
            r.diff_points,
            r.diff_ci_points
        );
        for (t, (x, y, d)) in &r.by_type {
            println!(
                "    {t:<24} {x:>11.1}% {:>5} {y:>11.1}% {:>5} {d:>+7.1}",
                "", ""
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `vpd regress MODULE@REF [--against MODULE@REF] [--max-drop P]`
pub fn regress(
    cli: &Cli,
    candidate: &VersionRef,
    against: Option<&VersionRef>,
    max_drop: f64,
    json: bool,
) -> Result<ExitCode> {
    let store = open(cli)?;
    let cand = store.resolve(candidate)?;
    let base = match against {
        Some(r) => store.resolve(r)?,
        None => {
            let p = cand.parent.with_context(|| {
                format!("{candidate} has no parent; name the baseline with --against")
            })?;
            store
                .version_by_id(p)?
                .with_context(|| format!("parent {p} of {candidate} is not in this store"))?
        }
    };
    let g = store.regress(&cand, &base, max_drop)?;
    if json {
        print_json(&g)?;
    } else {
        println!(
            "gate: {}@{} against {}@{}, max drop {:.1} points",
            cand.module, cand.number, base.module, base.number, max_drop
        );
        for r in &g.rows {
            println!(
                "  {:<8} {:<8} baseline {:>5.1}%  candidate {:>5.1}%  drop {:>+5.1}  n={}  {}",
                r.task,
                r.split,
                r.baseline,
                r.candidate,
                r.drop_points,
                r.n,
                if r.passed { "ok" } else { "REGRESSION" }
            );
        }
        println!("{}", if g.passed { "passed" } else { "FAILED" });
    }
    Ok(if g.passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// `vpd runs`
pub fn runs(cli: &Cli, json: bool) -> Result<ExitCode> {
    let store = open(cli)?;
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
            format!("{:?}", r.effective_status()).to_lowercase(),
            r.started_at.format("%Y-%m-%d %H:%M:%S")
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `vpd show RUN`
pub fn show(cli: &Cli, id: &str, json: bool) -> Result<ExitCode> {
    let store = open(cli)?;
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
    let report: Option<serde_json::Value> = match &run.report {
        Some(h) => Some(serde_json::from_slice(&store.blobs().get(h)?)?),
        None => None,
    };
    if json {
        let mut j = serde_json::to_value(&run)?;
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
        run.git_commit
            .as_deref()
            .map_or("-", |c| &c[..c.len().min(12)]),
        if run.git_dirty == Some(true) {
            ", dirty"
        } else {
            ""
        },
        run.torch_version.as_deref().unwrap_or("-"),
        run.threads
    );
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
        match serde_json::from_value::<visprog_distiller::distill::run::RunReport>(r) {
            Ok(r) => crate::cmd_run::print_table(&r),
            Err(e) => println!("(its report does not read: {e})"),
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `vpd store ...`
pub fn store(cli: &Cli, cmd: &StoreCmd) -> Result<ExitCode> {
    let store = open(cli)?;
    match cmd {
        StoreCmd::Verify { json } => {
            let problems = store.verify()?;
            if *json {
                print_json(&json!({ "ok": problems.is_empty(), "problems": problems }))?;
            } else {
                for p in &problems {
                    println!("{}: {}", p.at, p.message);
                }
                println!("{}: {} problem(s)", store.root().display(), problems.len());
            }
            Ok(if problems.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        StoreCmd::Gc { json } => {
            let r = store.gc()?;
            if *json {
                print_json(&r)?;
            } else {
                println!(
                    "removed {} blob(s), {} bytes; {} referenced; {} unreferenced kept (younger than {} s)",
                    r.removed,
                    r.bytes,
                    r.referenced,
                    r.kept_recent,
                    visprog_distiller::store::GC_GRACE_SECS
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        StoreCmd::Import {
            module,
            file,
            parent,
            sidecar,
            json,
        } => {
            let parent = parent.as_ref().map(|p| store.resolve(p)).transpose()?;
            if let Some(side) = sidecar {
                // A TorchScript sidecar (one that names its `kind`): the
                // module must load and answer a probe batch in the shape
                // the sidecar promises. Other sidecars are kept as they are.
                let read = |p: &std::path::Path| {
                    std::fs::read(p).with_context(|| format!("reading {}", p.display()))
                };
                let bytes = read(side)?;
                let declares_kind = serde_json::from_slice::<serde_json::Value>(&bytes)
                    .ok()
                    .is_some_and(|v| v.get("kind").is_some());
                if declares_kind {
                    let spec = visprog_distiller::models::parse_sidecar(&bytes)
                        .with_context(|| side.display().to_string())?;
                    visprog_distiller::nn::model::Model::from_torchscript(
                        &read(file)?,
                        &spec,
                        visprog_distiller::nn::DeviceChoice::Cpu,
                    )
                    .with_context(|| {
                        format!("{} with sidecar {}", file.display(), side.display())
                    })?;
                } else {
                    eprintln!(
                        "note: {} names no `kind`: stored as an opaque sidecar; vpd can only run a TorchScript module whose sidecar says what it is",
                        side.display()
                    );
                }
            }
            let v = store.import_file(module, file, parent.map(|p| p.id), sidecar.as_deref())?;
            if *json {
                print_json(&version_json(&v, &HashMap::new()))?;
            } else {
                println!("{}@{} ({})", v.module, v.number, v.id);
            }
            Ok(ExitCode::SUCCESS)
        }
        StoreCmd::Export { target, file } => {
            let v = store.resolve(target)?;
            let side = store.export_file(&v, file)?;
            eprintln!(
                "wrote {}@{} to {}{}",
                v.module,
                v.number,
                file.display(),
                side.map(|s| format!(" and its sidecar to {}", s.display()))
                    .unwrap_or_default()
            );
            Ok(ExitCode::SUCCESS)
        }
        StoreCmd::Merge { other, json } => {
            if !other.join("db").exists() {
                anyhow::bail!("{} is not a vpd store (no db/ inside)", other.display());
            }
            let o = Store::open(other)?;
            let r = store.merge(&o)?;
            if *json {
                print_json(&r)?;
            } else {
                println!(
                    "merged {}: {} version(s), {} run(s), {} evaluation(s), {} cached program(s); {} already present",
                    other.display(),
                    r.versions,
                    r.runs,
                    r.evaluations,
                    r.programs,
                    r.already_present
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
