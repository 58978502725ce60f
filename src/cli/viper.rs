//! `vpd program check|run` for ViperGPT programs (`--framework viper`, a
//! `.py` file, or one that defines `execute_command`).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use serde_json::json;
use visprog_distiller::nn::DeviceChoice;
use visprog_distiller::program::interp::{self, ImageVal};
use visprog_distiller::program::run as prun;
use visprog_distiller::program::trace::base64;
use visprog_distiller::viper::{self, host::ModuleCall, Limits};

use super::common::OutFile;
use super::program::{build_modules, Missing};

/// Which front-end reads a program.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Framework {
    /// VisProg: one step a line.
    Visprog,
    /// ViperGPT: Python over the ImagePatch API.
    Viper,
}

/// Whether `file` is read as a ViperGPT program.
pub fn chosen(file: &Path, framework: Option<Framework>) -> bool {
    match framework {
        Some(f) => f == Framework::Viper,
        None if file.extension().is_some_and(|e| e == "jsonl") => false,
        None => {
            // The first MiB says whether it defines execute_command; a file
            // that does not read is left to the VisProg path, which names
            // it (after checking the device).
            use std::io::Read;
            let mut head = Vec::new();
            if let Ok(f) = std::fs::File::open(file) {
                let _ = f.take(1 << 20).read_to_end(&mut head);
            }
            viper::is_viper(file, &String::from_utf8_lossy(&head))
        }
    }
}

/// The program's text, refused past the size limit before it is read
/// whole (a 10 MB file is one error, not 10 MB in memory).
fn read(file: &Path) -> Result<String> {
    let limits = Limits::from_env()?;
    let meta = std::fs::metadata(file).with_context(|| format!("{}", file.display()))?;
    if meta.len() > (limits.max_bytes as u64).max(1 << 20) {
        bail!(
            "{}: the program is {} bytes, over the limit of {} (VPD_VIPER_MAX_BYTES)",
            file.display(),
            meta.len(),
            limits.max_bytes
        );
    }
    std::fs::read_to_string(file).with_context(|| format!("{}", file.display()))
}

/// The problems of one ViperGPT program's text (none: it is valid).
pub fn diagnostics(text: &str) -> Result<Vec<viper::Diagnostic>> {
    let limits = Limits::from_env()?;
    let text = text.to_string();
    viper::on_big_stack(move || viper::check(&text, &limits).err().unwrap_or_default())
        .map_err(anyhow::Error::msg)
}

/// `vpd program check` on a ViperGPT program.
pub fn check(file: &Path, as_json: bool) -> Result<ExitCode> {
    let text = read(file)?;
    let limits = Limits::from_env()?;
    let outcome = viper::on_big_stack(move || viper::check(&text, &limits).map(|c| c.params))
        .map_err(anyhow::Error::msg)?;
    let diagnostics = match &outcome {
        Ok(_) => vec![],
        Err(d) => d.clone(),
    };
    if as_json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "framework": "viper",
                "programs": 1,
                "valid": usize::from(diagnostics.is_empty()),
                "errors": diagnostics.iter().map(|d| json!({"index": 0, "line": d.line, "column": d.column, "kind": "viper", "message": d.message})).collect::<Vec<_>>(),
                "warnings": [],
                "parameters": outcome.as_ref().ok(),
            }))?
        );
    } else {
        for d in &diagnostics {
            println!(
                "{}: line {} column {}: error: {}",
                file.display(),
                d.line,
                d.column,
                d.message
            );
        }
        println!(
            "1 ViperGPT program, {} valid, {} error(s)",
            usize::from(diagnostics.is_empty()),
            diagnostics.len()
        );
    }
    Ok(if diagnostics.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// `vpd program run` on a ViperGPT program: `--image NAME=PATH` binds
/// `execute_command`'s parameters.
pub fn run(
    store: &Path,
    file: &Path,
    images: &[String],
    modules: &[String],
    trace: Option<OutFile>,
    device: DeviceChoice,
    as_json: bool,
) -> Result<ExitCode> {
    device.to_tch()?;
    if let Some(t) = &trace {
        t.check()?;
    }
    let text = read(file)?;
    let limits = Limits::from_env()?;
    // `llm_query`'s endpoint: none when VPD_LLM_BASE_URL is not set (the
    // call is then an error naming it); bad settings are an error now.
    let llm = match std::env::var("VPD_LLM_BASE_URL") {
        Ok(v) if !v.is_empty() => Some(visprog_distiller::program::llm::LlmConfig::from_env()?),
        _ => None,
    };
    let mut paths = BTreeMap::new();
    for i in images {
        let (k, p) = i
            .split_once('=')
            .with_context(|| format!("--image `{i}` is not NAME=PATH"))?;
        if paths.insert(k.to_string(), PathBuf::from(p)).is_some() {
            bail!("--image {k} is given twice");
        }
    }
    let (store, modules) = (store.to_path_buf(), modules.to_vec());
    let name = file.display().to_string();
    let ran = viper::on_big_stack(move || -> Result<_> {
        let checked = match viper::check(&text, &limits) {
            Ok(c) => c,
            Err(d) => return Ok(Err(d)),
        };
        let mut inputs = HashMap::new();
        for (k, p) in &paths {
            inputs.insert(k.clone(), prun::load_input(k, p)?);
        }
        let mut perception =
            build_modules(&store, &modules, &paths, device)?.unwrap_or_else(|| {
                Box::new(interp::Composite {
                    loc: Box::new(Missing("LOC")),
                    vqa: Box::new(Missing("VQA")),
                })
            });
        let outcome =
            viper::run_program(&checked, inputs.clone(), perception.as_mut(), &limits, llm);
        Ok(Ok((outcome, inputs)))
    })
    .map_err(anyhow::Error::msg)??;
    let (outcome, inputs) = match ran {
        Ok(x) => x,
        Err(diagnostics) => {
            for d in &diagnostics {
                eprintln!(
                    "{name}: line {} column {}: error: {}",
                    d.line, d.column, d.message
                );
            }
            bail!(
                "{name} is not a valid ViperGPT program ({} error(s))",
                diagnostics.len()
            );
        }
    };
    if let Some(t) = trace {
        t.write(trace_html(&name, &outcome.calls, &inputs, &outcome.result).as_bytes())?;
    }
    if as_json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "framework": "viper",
                "result": outcome.result.as_ref().ok().map(|v| v.answer()),
                "value": outcome.result.as_ref().ok(),
                "calls": outcome.calls,
                "error": outcome.result.as_ref().err(),
            }))?
        );
    } else {
        for c in &outcome.calls {
            let pointer = c.pointer.as_ref().map_or(String::new(), |p| {
                format!(" (patch of find({:?}))", p.object)
            });
            let on = match (&c.source, c.rect) {
                (Some(s), Some(r)) => {
                    format!(" on {s} [{:.0}, {:.0}, {:.0}, {:.0}]", r.x, r.y, r.w, r.h)
                }
                _ => String::new(),
            };
            println!(
                "{} {} {:?}{on}{pointer} -> {} ({})",
                c.slot, c.method, c.text, c.answer, c.module
            );
        }
        if let Ok(v) = &outcome.result {
            println!("result: {}", v.answer());
        }
    }
    if let Err(e) = &outcome.result {
        bail!("{name}: {e}");
    }
    Ok(ExitCode::SUCCESS)
}

/// One HTML page: each module call with the patch it was made on (cut from
/// its source image), its pointer, its text and answer.
fn trace_html(
    title: &str,
    calls: &[ModuleCall],
    inputs: &HashMap<String, ImageVal>,
    result: &Result<viper::run::ViperValue, viper::run::ViperFailure>,
) -> String {
    let esc = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
    };
    let mut rows = String::new();
    for c in calls {
        let on = c.source.as_ref().and_then(|s| inputs.get(s)).zip(c.rect);
        let img = on.map(|(i, rect)| {
            let (w, h) = (i.pixels.width() as f64, i.pixels.height() as f64);
            let x = rect.x.clamp(0.0, (w - 1.0).max(0.0));
            let y = rect.y.clamp(0.0, (h - 1.0).max(0.0));
            let crop = image::imageops::crop_imm(
                i.pixels.as_ref(),
                x as u32,
                y as u32,
                rect.w.min(w - x).max(1.0) as u32,
                rect.h.min(h - y).max(1.0) as u32,
            )
            .to_image();
            let mut png = Vec::new();
            let _ = image::DynamicImage::ImageRgb8(crop)
                .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png);
            format!(
                "<img src=\"data:image/png;base64,{}\" style=\"max-width:160px;image-rendering:pixelated\">",
                base64(&png)
            )
        });
        rows.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
            c.slot,
            esc(&c.method),
            img.unwrap_or_default(),
            esc(&c.pointer.as_ref().map_or("-".into(), |p| format!("find({:?})", p.object))),
            esc(&c.text),
            esc(&c.answer.to_string()),
            esc(&c.module)
        ));
    }
    let outcome = match result {
        Ok(v) => format!("result: {}", esc(&v.answer())),
        Err(e) => format!("error: {}", esc(&e.to_string())),
    };
    format!(
        "<!doctype html><meta charset=\"utf-8\"><title>{t}</title><style>body{{font-family:sans-serif}}td,th{{border:1px solid #ccc;padding:4px;vertical-align:top}}table{{border-collapse:collapse}}</style><h1>{t}</h1><p>{outcome}</p><table><tr><th>slot</th><th>method</th><th>patch</th><th>pointer</th><th>text</th><th>answer</th><th>module</th></tr>\n{rows}</table>\n",
        t = esc(title)
    )
}
