//! `vpd data synth|check`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Result};
use clap::Subcommand;
use visprog_distiller::data::{check, real_layout, synth};

use super::common::OutFile;
use super::Cli;

/// `vpd data ...`
#[derive(Debug, Subcommand)]
pub enum DataCmd {
    /// Generate the synthetic world in the real formats.
    Synth {
        /// gqa, nlvr2 or generic.
        #[arg(long)]
        task: synth::Corpus,
        /// Output folder.
        #[arg(long)]
        out: PathBuf,
        /// Examples per split.
        #[arg(long, default_value_t = 1000)]
        n: usize,
        /// Seed.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Image side, pixels (the size the world is drawn at).
        #[arg(long, default_value_t = 64)]
        size: u32,
        /// `synthetic` (vpd's own splits train/distill/dev/test, PNG) or
        /// `real`: the published layout with the real split names, JPEG
        /// images of --width x --height, scene graphs on train and val
        /// only (GQA), statements without programs and images in numbered
        /// folders (NLVR2).
        #[arg(long, default_value = "synthetic", value_parser = ["synthetic", "real"])]
        layout: String,
        /// Image width with `--layout real`, pixels.
        #[arg(long, default_value_t = 500)]
        width: u32,
        /// Image height with `--layout real`, pixels.
        #[arg(long, default_value_t = 375)]
        height: u32,
        /// Also write a PNG grid of the first 8 train images here.
        #[arg(long)]
        preview: Option<PathBuf>,
        /// Replace the --preview file when it exists.
        #[arg(long, requires = "preview")]
        force: bool,
        /// One JSON document on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Load a dataset, check its records and images, count and balance.
    Check {
        /// gqa or nlvr2.
        #[arg(long)]
        task: String,
        /// Dataset root (GQA: questions/, sceneGraphs/, images/; NLVR2:
        /// {split}.json and images/).
        #[arg(long, conflicts_with = "questions")]
        root: Option<PathBuf>,
        /// Only this split (with --root).
        #[arg(long, requires = "root")]
        split: Option<String>,
        /// One questions file (GQA .json, NLVR2 JSON lines).
        #[arg(long)]
        questions: Option<PathBuf>,
        /// Image folder (with --questions).
        #[arg(long, requires = "questions")]
        images: Option<PathBuf>,
        /// NLVR2 with --root, synthetic data only: also run each line's
        /// `program` with oracle modules over `{split}_scenes.json` and
        /// report how many give the label.
        #[arg(long, requires = "root")]
        oracle: bool,
        /// One JSON document on stdout.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(cli: &Cli, cmd: &DataCmd) -> Result<ExitCode> {
    match cmd {
        DataCmd::Synth {
            task,
            out,
            n,
            seed,
            size,
            layout,
            width,
            height,
            preview,
            force,
            json,
        } => {
            if layout == "real" && preview.is_some() {
                bail!("--preview draws the synthetic layout's images; leave it out with --layout real");
            }
            let preview = OutFile::new(preview.as_deref(), *force, &cli.store);
            if let Some(p) = &preview {
                p.check()?;
            }
            let cfg = synth::SynthConfig {
                task: *task,
                n: *n,
                seed: *seed,
                size: *size,
            };
            let bar = indicatif::ProgressBar::new(0);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{msg} [{bar:40}] {pos}/{len} ({per_sec}, eta {eta})",
                )
                .expect("valid template")
                .progress_chars("=> "),
            );
            bar.set_message(format!("synth {task}"));
            let t = std::time::Instant::now();
            let tick = |done: usize, total: usize| {
                bar.set_length(total as u64);
                bar.set_position(done as u64);
            };
            let report = if layout == "real" {
                real_layout::write(cfg, (*width, *height), out, &tick)?
            } else {
                synth::write(cfg, out, &tick)?
            };
            bar.finish_and_clear();
            if let Some(p) = preview {
                write_preview(*task, out, p)?;
            }
            if *json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                println!(
                    "wrote {} to {} in {:.1} s: {} images; examples per split: {}",
                    task,
                    out.display(),
                    t.elapsed().as_secs_f64(),
                    report.images,
                    report
                        .examples
                        .iter()
                        .map(|(s, n)| format!("{s} {n}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        DataCmd::Check {
            task,
            root,
            split,
            questions,
            images,
            oracle,
            json,
        } => {
            let (files, images) = match (root, questions) {
                (Some(root), None) => {
                    let files = match task.as_str() {
                        "gqa" => check::gqa_files(root, split.as_deref())?,
                        "nlvr2" => check::nlvr2_files(root, split.as_deref())?,
                        t => bail!("unknown task `{t}` (gqa or nlvr2)"),
                    };
                    let img = root.join("images");
                    (files, img.is_dir().then_some(img))
                }
                (None, Some(q)) => (vec![q.clone()], images.clone()),
                _ => bail!("give --root DIR or --questions FILE"),
            };
            let report = match task.as_str() {
                "gqa" => check::check_gqa(&files, images.as_deref()),
                "nlvr2" => check::check_nlvr2(&files, images.as_deref()),
                t => bail!("unknown task `{t}` (gqa or nlvr2)"),
            };
            let oracle_report = match (oracle, root) {
                (true, Some(root)) if task == "nlvr2" => Some(nlvr2_oracle(root, &files)?),
                (true, _) => bail!("--oracle checks synthetic NLVR2 programs; for GQA use `vpd program convert --oracle`"),
                _ => None,
            };
            if *json {
                let mut v = serde_json::to_value(&report)?;
                if let Some(o) = &oracle_report {
                    v["oracle"] = serde_json::to_value(o)?;
                }
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                print_check(&report);
                if let Some(o) = &oracle_report {
                    println!(
                        "oracle modules: {} of {} programs give the label ({:.1}%)",
                        o.total.correct, o.total.n, o.total.accuracy
                    );
                    for f in o.failures.iter().take(5) {
                        println!("  wrong: {f}");
                    }
                }
            }
            for e in &report.errors {
                eprintln!("error: {e}");
            }
            Ok(if report.ok() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
    }
}

/// Runs every line's program of the given NLVR2 files with oracle modules.
fn nlvr2_oracle(
    root: &std::path::Path,
    files: &[PathBuf],
) -> Result<visprog_distiller::program::run::OracleReport> {
    use visprog_distiller::data::nlvr2;
    use visprog_distiller::program::run as prun;
    let mut all = prun::OracleReport::default();
    for f in files {
        let split = f
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let scenes_path = root.join(format!("{split}_scenes.json"));
        let scenes: std::collections::BTreeMap<String, synth::PairScenes> =
            serde_json::from_slice(&std::fs::read(&scenes_path).map_err(|e| {
                anyhow::anyhow!(
                    "{}: {e} (the oracle needs the synthetic scene graphs)",
                    scenes_path.display()
                )
            })?)?;
        let (examples, _) = nlvr2::load(f)?;
        let r = prun::oracle_nlvr2(&examples, &scenes, &root.join("images").join(&split));
        all.merge(r);
    }
    Ok(all)
}

/// A grid of the first 8 train images of what `synth` wrote.
fn write_preview(task: synth::Corpus, out: &std::path::Path, file: OutFile) -> Result<()> {
    use visprog_distiller::data::{images, render};
    let dir = match task {
        synth::Corpus::Gqa => out.join("images"),
        _ => out.join("images").join("train"),
    };
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            let n = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            !n.contains("crop") && (task != synth::Corpus::Gqa || n.starts_with('1'))
        })
        .collect();
    paths.sort();
    let imgs = paths
        .iter()
        .take(8)
        .map(|p| images::decode(p))
        .collect::<Result<Vec<_>, _>>()?;
    let mut png = std::io::Cursor::new(Vec::new());
    render::montage(&imgs, 4, 3).write_to(&mut png, image::ImageFormat::Png)?;
    file.write(&png.into_inner())
}

fn print_check(r: &check::CheckReport) {
    println!(
        "{}: {} examples in {} file(s)",
        r.task,
        r.examples,
        r.files.len()
    );
    let list = |m: &std::collections::BTreeMap<String, usize>| {
        m.iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!("splits:  {}", list(&r.splits));
    println!("types:   {}", list(&r.types));
    if r.answers.len() <= 12 {
        println!("answers: {}", list(&r.answers));
    } else {
        println!("answers: {} distinct", r.answers.len());
    }
    if let Some(g) = r.scene_graphs {
        println!("scene graphs: {g}");
    }
    if !r.majority_baseline.is_empty() {
        println!("majority-answer baseline:");
        for (t, m) in &r.majority_baseline {
            println!("  {t:<24} {:>5.1}% ({:?}, n={})", m.accuracy, m.answer, m.n);
        }
    }
    if r.images_checked {
        println!(
            "images:  {} referenced, {} missing{}",
            r.images_referenced,
            r.images_missing,
            if r.missing_examples.is_empty() {
                String::new()
            } else {
                format!(" (e.g. {})", r.missing_examples.join(", "))
            }
        );
    } else {
        println!("images:  not checked (give --images DIR or --root DIR)");
    }
    println!("errors:  {}", r.errors.len());
    println!("peak memory: {:.0} MB", r.peak_rss_mb);
}
