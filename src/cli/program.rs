//! `vpd program check|run|convert`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use serde_json::json;
use visprog_distiller::data::gqa;
use visprog_distiller::models;
use visprog_distiller::nn::DeviceChoice;
use visprog_distiller::program::expr::Val;
use visprog_distiller::program::oracle::Oracle;
use visprog_distiller::program::validate;
use visprog_distiller::program::{convert, interp, run as prun};
use visprog_distiller::runtime::actors::module_timeout;
use visprog_distiller::runtime::exec::{parse_modules, ModuleChoice};
use visprog_distiller::runtime::threaded::Threaded;
use visprog_distiller::vocab::{Slot, Task};

use super::common::{DeviceOpt, OutFile};
use super::viper::Framework;
use super::Cli;

/// `vpd program ...`
#[derive(Debug, Subcommand)]
pub enum ProgramCmd {
    /// Validate a program file (one step a line) or a .jsonl of objects with
    /// a `program` field (and optionally `text`, `task`).
    Check {
        /// The file.
        file: PathBuf,
        /// visprog or viper (default: viper for a `.py` file or one that
        /// defines `execute_command`, else visprog).
        #[arg(long)]
        framework: Option<Framework>,
        /// One JSON document on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Run a program.
    Run {
        /// The program file.
        file: PathBuf,
        /// visprog or viper (default: viper for a `.py` file or one that
        /// defines `execute_command`, else visprog).
        #[arg(long)]
        framework: Option<Framework>,
        /// Bind a variable for EVAL (NAME=VALUE; text as VisProg types it).
        #[arg(long = "var", value_name = "NAME=VALUE")]
        vars: Vec<String>,
        /// An input image (NAME=PATH: IMAGE for GQA, LEFT and RIGHT for NLVR2;
        /// for a ViperGPT program, a parameter of execute_command).
        #[arg(long = "image", value_name = "NAME=PATH")]
        images: Vec<String>,
        /// LOC and VQA: `oracle` (perfect perception from the synthetic scene
        /// graph found beside each image).
        #[arg(long, num_args = 1.., value_name = "oracle|SLOT=MODULE@REF")]
        modules: Vec<String>,
        /// Write the trace as one HTML page.
        #[arg(long)]
        trace: Option<PathBuf>,
        /// Replace the --trace file when it exists.
        #[arg(long, requires = "trace")]
        force: bool,
        #[command(flatten)]
        device: DeviceOpt,
        /// One JSON document on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Convert GQA questions' `semantic` programs to VisProg programs.
    Convert {
        /// A GQA questions file.
        #[arg(long)]
        gqa_questions: PathBuf,
        /// Also run each program with oracle modules over the scene graphs and
        /// images beside the file (`../sceneGraphs/`, `../images/`) and report
        /// accuracy per GQA operation.
        #[arg(long)]
        oracle: bool,
        /// One JSON document on stdout.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(cli: &Cli, cmd: &ProgramCmd) -> Result<ExitCode> {
    match cmd {
        ProgramCmd::Check {
            file,
            framework,
            json,
        } => {
            if super::viper::chosen(file, *framework) {
                super::viper::check(file, *json)
            } else {
                check(file, *json)
            }
        }
        ProgramCmd::Run {
            file,
            framework,
            images,
            modules,
            trace,
            force,
            device,
            json,
            vars,
        } if super::viper::chosen(file, *framework) => {
            if let Some(v) = vars.first() {
                bail!("--var {v}: --var binds VisProg's EVAL variables; a ViperGPT program takes images only (--image NAME=PATH)");
            }
            super::viper::run(
                &cli.store,
                file,
                images,
                modules,
                OutFile::new(trace.as_deref(), *force, &cli.store),
                device.choice,
                *json,
            )
        }
        ProgramCmd::Run {
            file,
            vars,
            images,
            modules,
            trace,
            force,
            device,
            json,
            framework: _,
        } => run_program(
            &cli.store,
            file,
            Inputs {
                vars,
                images,
                modules,
            },
            OutFile::new(trace.as_deref(), *force, &cli.store),
            device.choice,
            *json,
        ),
        ProgramCmd::Convert {
            gqa_questions,
            oracle,
            json,
        } => convert_cmd(gqa_questions, *oracle, *json),
    }
}

fn check(file: &Path, as_json: bool) -> Result<ExitCode> {
    let text = std::fs::read_to_string(file).with_context(|| format!("{}", file.display()))?;
    let jsonl = file.extension().is_some_and(|e| e == "jsonl");
    let mut programs: Vec<(String, Option<Task>, bool)> = Vec::new();
    if jsonl {
        for (i, l) in text.lines().enumerate() {
            if l.trim().is_empty() {
                continue;
            }
            let v: serde_json::Value = serde_json::from_str(l)
                .with_context(|| format!("{}: line {}: not JSON", file.display(), i + 1))?;
            let p = v["program"].as_str().with_context(|| {
                format!("{}: line {}: no `program` string", file.display(), i + 1)
            })?;
            let viper = match v["framework"].as_str() {
                None | Some("visprog") => false,
                Some("viper") => true,
                Some(other) => bail!(
                    "{}: line {}: framework `{other}` (expected visprog or viper)",
                    file.display(),
                    i + 1
                ),
            };
            programs.push((
                p.to_string(),
                v["task"].as_str().and_then(|t| t.parse::<Task>().ok()),
                viper,
            ));
        }
    } else {
        programs.push((text, None, false));
    }
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    let mut valid = 0;
    for (index, (p, task, viper)) in programs.iter().enumerate() {
        if *viper {
            let d = super::viper::diagnostics(p)?;
            if d.is_empty() {
                valid += 1;
            }
            for e in d {
                errors.push(json!({"index": index, "line": e.line, "column": e.column, "kind": "viper", "message": e.message}));
            }
            continue;
        }
        let (_, rep) = validate::check_text(p, *task);
        if rep.errors.is_empty() {
            valid += 1;
        }
        for e in rep.errors {
            errors.push(json!({"index": index, "line": e.line, "column": e.column, "kind": e.kind, "message": e.message}));
        }
        for w in rep.warnings {
            warnings.push(
                json!({"index": index, "line": w.line, "column": w.column, "message": w.message}),
            );
        }
    }
    if as_json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "programs": programs.len(), "valid": valid, "errors": errors, "warnings": warnings
            }))?
        );
    } else {
        let f = file.display();
        for e in &errors {
            println!(
                "{f}: program {} line {} column {}: error[{}]: {}",
                e["index"],
                e["line"],
                e["column"],
                e["kind"].as_str().unwrap_or(""),
                e["message"].as_str().unwrap_or("")
            );
        }
        for w in &warnings {
            println!(
                "{f}: program {} line {} column {}: warning: {}",
                w["index"],
                w["line"],
                w["column"],
                w["message"].as_str().unwrap_or("")
            );
        }
        println!(
            "{} program(s), {valid} valid, {} error(s), {} warning(s)",
            programs.len(),
            errors.len(),
            warnings.len()
        );
    }
    Ok(if errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn split_kv(s: &str, what: &str) -> Result<(String, String)> {
    let (k, v) = s
        .split_once('=')
        .with_context(|| format!("{what} `{s}` is not NAME=VALUE"))?;
    Ok((k.to_string(), v.to_string()))
}

/// What `vpd program run` binds: `--var`, `--image` and `--modules`.
struct Inputs<'a> {
    vars: &'a [String],
    images: &'a [String],
    modules: &'a [String],
}

fn run_program(
    store: &Path,
    file: &Path,
    Inputs {
        vars,
        images,
        modules,
    }: Inputs,
    trace: Option<OutFile>,
    device: DeviceChoice,
    as_json: bool,
) -> Result<ExitCode> {
    // A missing GPU or a refused trace file is an error before anything is
    // read or loaded.
    device.to_tch()?;
    if let Some(t) = &trace {
        t.check()?;
    }
    let text = std::fs::read_to_string(file).with_context(|| format!("{}", file.display()))?;
    let mut bound = BTreeMap::new();
    for v in vars {
        let (k, val) = split_kv(v, "--var")?;
        if bound.insert(k.clone(), Val::from_text(&val)).is_some() {
            bail!("--var {k} is given twice: give each variable once");
        }
    }
    let mut free: Vec<(String, validate::Kind)> = bound
        .keys()
        .map(|k| (k.clone(), validate::Kind::Any))
        .collect();
    for i in images {
        let (k, _) = split_kv(i, "--image")?;
        if free.iter().any(|(f, _)| *f == k) {
            bail!("{k} is given twice (--var and --image name each input once)");
        }
        free.push((k, validate::Kind::Image));
    }
    let (prog, rep) = validate::check_text_with(&text, None, &free);
    for w in &rep.warnings {
        eprintln!(
            "warning: {}: line {} column {}: {}",
            file.display(),
            w.line,
            w.column,
            w.message
        );
    }
    let Some(prog) = prog.filter(|_| rep.errors.is_empty()) else {
        for e in &rep.errors {
            eprintln!(
                "{}: line {} column {}: error[{}]: {}",
                file.display(),
                e.line,
                e.column,
                e.kind,
                e.message
            );
        }
        bail!(
            "{} is not a valid program ({} error(s))",
            file.display(),
            rep.errors.len()
        );
    };
    let mut inputs = BTreeMap::new();
    let mut paths = BTreeMap::new();
    for i in images {
        let (k, p) = split_kv(i, "--image")?;
        let path = PathBuf::from(p);
        inputs.insert(k.clone(), prun::load_input(&k, &path)?);
        paths.insert(k, path);
    }
    let mut perception = build_modules(store, modules, &paths, device)?;
    let perception = perception
        .as_mut()
        .map(|p| p.as_mut() as &mut dyn interp::Perception);
    let outcome = interp::run(&prog, &inputs, &bound, perception);
    let (result, tr, err) = match outcome {
        Ok(o) => (o.result, o.trace, None),
        Err(f) => (None, f.trace, Some(f.error)),
    };
    if let Some(t) = trace {
        t.write(tr.to_html(&file.display().to_string()).as_bytes())?;
    }
    if as_json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "framework": "visprog",
                "result": result.as_ref().map(|r| r.to_answer()),
                "steps": tr.steps,
                "calls": tr.calls,
                "error": err.as_ref().map(|e| e.to_string()),
            }))?
        );
    } else {
        for s in &tr.steps {
            let out = match &s.error {
                Some(e) => format!("error: {e}"),
                None => serde_json::to_string(&s.output)?,
            };
            println!("line {:<3} {}={} -> {}", s.line, s.out, s.module, out);
        }
        if let Some(r) = &result {
            println!("result: {}", r.to_answer());
        }
    }
    if let Some(e) = err {
        bail!("{}: {e}", file.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// `--modules` (one syntax with `vpd eval`): `oracle` (LOC and VQA), or
/// `SLOT=oracle`, `SLOT=MODULE@REF` (a version from the store); a slot no
/// word names answers with an error naming how to fill it.
pub(super) fn build_modules(
    store: &Path,
    modules: &[String],
    paths: &BTreeMap<String, PathBuf>,
    device: DeviceChoice,
) -> Result<Option<Box<dyn interp::Perception>>> {
    if modules.is_empty() {
        return Ok(None);
    }
    let oracle = || -> Result<Oracle> {
        let mut o = Oracle::default();
        for (name, path) in paths {
            let g = prun::find_scene(path).with_context(|| {
                format!(
                    "the oracle needs the scene graph of {}: none found beside it (synthetic data only)",
                    path.display()
                )
            })?;
            o.scenes.insert(name.clone(), g);
        }
        Ok(o)
    };
    let mut loc: Option<Box<dyn interp::Perception>> = None;
    let mut vqa: Option<Box<dyn interp::Perception>> = None;
    for (slot, choice) in parse_modules(modules).map_err(anyhow::Error::msg)? {
        let provider: Box<dyn interp::Perception> = match &choice {
            ModuleChoice::Oracle => Box::new(oracle()?),
            ModuleChoice::Version(r) => {
                // On a thread of its own, with the per-call time limit.
                let store = visprog_distiller::store::Store::open(store)?;
                let r = r.clone();
                let limit = module_timeout().map_err(anyhow::Error::msg)?;
                Box::new(
                    Threaded::start(
                        limit,
                        move || -> Result<Box<dyn interp::Perception>, models::ModelError> {
                            Ok(match slot {
                                Slot::Loc => Box::new(models::load_loc(&store, &r, device)?),
                                Slot::Vqa => Box::new(models::load_vqa(&store, &r, device)?),
                            })
                        },
                    )
                    .map_err(anyhow::Error::msg)?,
                )
            }
        };
        match slot {
            Slot::Loc => loc = Some(provider),
            Slot::Vqa => vqa = Some(provider),
        }
    }
    Ok(Some(Box::new(interp::Composite {
        loc: loc.unwrap_or_else(|| Box::new(Missing("LOC"))),
        vqa: vqa.unwrap_or_else(|| Box::new(Missing("VQA"))),
    })))
}

/// A slot no `--modules` word fills: every call is an error saying how to
/// fill it.
pub(super) struct Missing(pub(super) &'static str);

impl interp::Perception for Missing {
    fn name(&self, _: &str) -> String {
        "none".into()
    }
    fn loc(
        &mut self,
        _: &interp::ImageVal,
        _: &str,
    ) -> Result<Vec<interp::ScoredBox>, interp::PerceptionError> {
        Err(interp::PerceptionError::NoModule(format!(
            "no {} module given: add {}=oracle to --modules",
            self.0, self.0
        )))
    }
    fn vqa(&mut self, _: &interp::ImageVal, _: &str) -> Result<String, interp::PerceptionError> {
        Err(interp::PerceptionError::NoModule(format!(
            "no {} module given: add {}=... to --modules",
            self.0, self.0
        )))
    }
}

fn convert_cmd(file: &Path, oracle: bool, as_json: bool) -> Result<ExitCode> {
    let (questions, issues) = gqa::load_questions(file)?;
    for i in &issues {
        eprintln!("error: {i}");
    }
    let mut out = Vec::new();
    let mut invalid = 0;
    for q in &questions {
        let (program, errors) = match convert::convert(q, prun::implicit_for(&q.id)) {
            Ok(p) => {
                let (_, rep) = validate::check_text(&p, Some(Task::Gqa));
                let errs: Vec<String> = rep.errors.iter().map(|e| e.to_string()).collect();
                (Some(p), errs)
            }
            Err(e) => (None, vec![e.to_string()]),
        };
        if !errors.is_empty() {
            invalid += 1;
        }
        out.push(json!({"id": q.id, "question": q.question, "answer": q.answer, "program": program, "valid": errors.is_empty(), "errors": errors}));
    }
    let report = if oracle {
        let root = file
            .parent()
            .and_then(|p| p.parent())
            .context("questions file has no dataset root")?;
        let mut graphs = BTreeMap::new();
        for e in std::fs::read_dir(root.join("sceneGraphs"))
            .context("no sceneGraphs/ beside the questions")?
            .flatten()
        {
            let (g, _) = gqa::load_scene_graphs(&e.path())?;
            graphs.extend(g);
        }
        Some(prun::oracle_gqa(&questions, &graphs, &root.join("images")))
    } else {
        None
    };
    if as_json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "questions": questions.len(), "valid": questions.len() - invalid, "programs": out, "oracle": report
            }))?
        );
    } else {
        if report.is_none() {
            for p in &out {
                println!(
                    "# {} {}",
                    p["id"].as_str().unwrap_or(""),
                    p["question"].as_str().unwrap_or("")
                );
                match p["program"].as_str() {
                    Some(t) => println!("{t}"),
                    None => println!("# not converted: {}", p["errors"]),
                }
                for e in p["errors"].as_array().into_iter().flatten() {
                    println!("# error: {}", e.as_str().unwrap_or(""));
                }
                println!();
            }
        }
        println!(
            "{} question(s), {} converted to valid programs",
            questions.len(),
            questions.len() - invalid
        );
        if let Some(r) = &report {
            println!(
                "oracle modules: {:.1}% correct (n={})",
                r.total.accuracy, r.total.n
            );
            println!("per GQA operation:");
            for (op, c) in &r.by_operation {
                println!("  {op:<22} {:>6.1}% (n={})", c.accuracy, c.n);
            }
            for f in r.failures.iter().take(5) {
                println!("  wrong: {f}");
            }
        }
    }
    Ok(if invalid == 0 && issues.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
