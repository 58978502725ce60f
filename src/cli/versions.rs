//! Module versions and their aliases: `vpd versions`, `vpd lineage`,
//! `vpd alias set|history`, `vpd rollback`, `vpd compare`, `vpd regress`.

use std::collections::HashMap;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use serde_json::json;
use uuid::Uuid;
use visprog_distiller::store::{
    AliasEvent, Lineage, LineageNode, ModuleVersion, RunStatus, Store, VersionRef,
};

use super::common::{open, prefix, print_json, short};
use super::Cli;

/// `vpd versions [MODULE]`
#[derive(Debug, Args)]
pub struct VersionsArgs {
    /// Only this module.
    module: Option<String>,
    /// One JSON document on stdout.
    #[arg(long)]
    json: bool,
}

/// `vpd lineage MODULE@REF`
#[derive(Debug, Args)]
pub struct LineageArgs {
    /// MODULE@REF (REF: a version number or an alias).
    target: VersionRef,
    /// One JSON document on stdout.
    #[arg(long)]
    json: bool,
}

/// `vpd rollback MODULE --alias ALIAS [--to VERSION]`
#[derive(Debug, Args)]
pub struct RollbackArgs {
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
    /// Move it even onto a version whose checkpoint is missing or corrupt.
    #[arg(long)]
    force: bool,
    /// One JSON document on stdout.
    #[arg(long)]
    json: bool,
}

/// `vpd compare A B [--tasks ...]`
#[derive(Debug, Args)]
pub struct CompareArgs {
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
}

/// `vpd regress MODULE@REF [--against MODULE@REF] [--max-drop P]`
#[derive(Debug, Args)]
pub struct RegressArgs {
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
}

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
        /// Move it even onto a version whose checkpoint is missing or corrupt.
        #[arg(long)]
        force: bool,
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

/// A version as `--json` prints it: the record, its number and aliases.
pub fn version_json(v: &ModuleVersion, aliases: &HashMap<Uuid, Vec<String>>) -> serde_json::Value {
    let mut j = serde_json::to_value(v).expect("records serialise");
    j["version"] = json!(v.number);
    let mut a = aliases.get(&v.id).cloned().unwrap_or_default();
    a.sort();
    j["aliases"] = json!(a);
    j
}

/// `vpd versions [MODULE]`
pub fn versions(cli: &Cli, a: &VersionsArgs) -> Result<ExitCode> {
    let json = a.json;
    let store = super::common::open_existing(cli)?;
    let all = store.versions(a.module.as_deref())?;
    let aliases = store.aliases()?;
    // A version committed by a run that then failed (or was interrupted)
    // has no gate and no outcome: it is listed with that run's status.
    let unfinished: HashMap<Uuid, RunStatus> = store
        .runs()?
        .iter()
        .map(|r| (r.id, r.effective_status()))
        .filter(|(_, s)| matches!(s, RunStatus::Failed | RunStatus::Interrupted))
        .collect();
    let from_unfinished = |v: &ModuleVersion| v.run.and_then(|r| unfinished.get(&r).copied());
    let numbers: HashMap<Uuid, (String, u32)> = all
        .iter()
        .map(|v| (v.id, (v.module.clone(), v.number)))
        .collect();
    if json {
        print_json(
            &all.iter()
                .map(|v| {
                    let mut j = version_json(v, &aliases);
                    j["run_status"] = json!(from_unfinished(v).map(|s| s.to_string()));
                    j
                })
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
        let mut a = a.join(",");
        if let (Some(s), Some(r)) = (from_unfinished(v), v.run) {
            a.push_str(&format!(" (from {s} run {}: no gate)", short(&r)));
        }
        println!(
            "{:<14} {:>4}  {:<12}  {:<10}  {:<14} {:>10}  {:<20}  {}",
            v.module,
            v.number,
            short(&v.id),
            parent,
            prefix(&v.blob, 12),
            v.size,
            v.created_at.format("%Y-%m-%d %H:%M:%S"),
            a.trim_start()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `vpd lineage MODULE@REF`
pub fn lineage(cli: &Cli, a: &LineageArgs) -> Result<ExitCode> {
    let (r, json) = (&a.target, a.json);
    let store = super::common::open_existing(cli)?;
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
        e.kind.to_string(),
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

/// Refuses to point `alias` at a version whose checkpoint (or sidecar) is
/// missing or corrupt, unless forced.
fn check_target(store: &Store, v: &ModuleVersion, alias: &str, force: bool) -> Result<()> {
    match store.check_blobs(v) {
        Ok(()) => Ok(()),
        Err(e) if force => {
            eprintln!(
                "warning: moving {}@{alias} onto {}@{} although its checkpoint is broken: {e}",
                v.module, v.module, v.number
            );
            Ok(())
        }
        Err(e) => anyhow::bail!(
            "refusing to move {}@{alias} onto {}@{}: its checkpoint is broken: {e} (--force moves it anyway)",
            v.module,
            v.module,
            v.number
        ),
    }
}

/// `vpd alias set|history`
pub fn alias(cli: &Cli, cmd: &AliasCmd) -> Result<ExitCode> {
    let store = match cmd {
        AliasCmd::History { .. } => super::common::open_existing(cli)?,
        _ => open(cli)?,
    };
    match cmd {
        AliasCmd::Set {
            target,
            alias,
            reason,
            force,
            json,
        } => {
            let v = store.resolve(target)?;
            check_target(&store, &v, alias, *force)?;
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
pub fn rollback(cli: &Cli, a: &RollbackArgs) -> Result<ExitCode> {
    let (module, alias, json) = (a.module.as_str(), a.alias.as_str(), a.json);
    let (to, reason) = (a.to.as_deref(), a.reason.clone());
    let store = open(cli)?;
    let to = to
        .map(|t| {
            store.resolve(&VersionRef {
                module: module.to_string(),
                reference: t.to_string(),
            })
        })
        .transpose()?;
    let target = match &to {
        Some(v) => Some(v.clone()),
        None => store
            .rollback_target(module, alias)?
            .map(|id| store.version_by_id(id))
            .transpose()?
            .flatten(),
    };
    if let Some(v) = &target {
        check_target(&store, v, alias, a.force)?;
    }
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
pub fn compare(cli: &Cli, args: &CompareArgs) -> Result<ExitCode> {
    let (a, b, tasks, json) = (&args.a, &args.b, args.tasks.as_deref(), args.json);
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
pub fn regress(cli: &Cli, a: &RegressArgs) -> Result<ExitCode> {
    let (candidate, against, max_drop, json) =
        (&a.candidate, a.against.as_ref(), a.max_drop, a.json);
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
