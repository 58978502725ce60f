//! `vpd bench data`: rendering speed, and loading a GQA questions file the
//! size of the real train split (943k questions, about 1.3 GB) by streaming,
//! against loading a tenth of it as one JSON tree, each in a child process
//! so that its peak memory is its own.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::data::check::peak_rss_mb;
use crate::data::gqa;
use crate::data::render;
use crate::data::rng::Rng;
use crate::data::synth::{self, Corpus, SynthConfig};
use crate::data::world::Scene;
use crate::data::DataError;

/// What one load in a child process measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LoadRun {
    /// Questions loaded.
    pub questions: usize,
    /// Seconds.
    pub seconds: f64,
    /// Questions per second.
    pub questions_per_s: f64,
    /// Peak resident memory of the child, MB.
    pub peak_rss_mb: f64,
    /// Peak resident memory of the same child before loading (libtorch
    /// and the binary), MB.
    pub base_rss_mb: f64,
}

/// What `vpd bench data` reports.
#[derive(Debug, Clone, Serialize)]
pub struct DataBench {
    /// Image side rendered.
    pub size: u32,
    /// Scenes rendered.
    pub rendered: usize,
    /// Images rendered per second (GQA domain, 4x4 supersampling).
    pub images_per_s: f64,
    /// Images rendered and PNG-encoded per second.
    pub images_png_per_s: f64,
    /// Questions in the large file.
    pub file_questions: usize,
    /// Its size, bytes.
    pub file_bytes: u64,
    /// Streaming check of the whole file (each question decoded and
    /// dropped, as `vpd data check` reads).
    pub streaming: LoadRun,
    /// The whole file into typed records kept in memory.
    pub typed: LoadRun,
    /// Baseline: one `serde_json::Value` tree of a tenth of the file.
    pub tree_tenth: LoadRun,
    /// Size of that tenth, bytes.
    pub tenth_bytes: u64,
}

/// How a file is loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LoadMode {
    /// Stream and check each question, keep nothing (`vpd data check`).
    Stream,
    /// Stream into typed records kept in memory (what training holds).
    Typed,
    /// One `serde_json::Value` tree of the whole file (the naive baseline).
    Tree,
}

/// Loads `file` as `vpd bench data` measures it, in this process.
pub fn load_once(file: &Path, mode: LoadMode) -> Result<LoadRun, DataError> {
    let base = peak_rss_mb();
    let t = Instant::now();
    let questions =
        if mode == LoadMode::Stream {
            let mut issues = Vec::new();
            let mut n = 0usize;
            gqa::for_each_question(file, &mut issues, |q| {
                n += 1;
                std::hint::black_box(q);
            })?;
            n
        } else if mode == LoadMode::Tree {
            let f = std::fs::File::open(file).map_err(|source| DataError::Io {
                path: file.to_path_buf(),
                source,
            })?;
            let v: serde_json::Value = serde_json::from_reader(std::io::BufReader::new(f))
                .map_err(|e| DataError::Malformed {
                    path: file.to_path_buf(),
                    message: e.to_string(),
                })?;
            v.as_object().map_or(0, |m| m.len())
        } else {
            let (qs, _) = gqa::load_questions(file)?;
            qs.len()
        };
    let seconds = t.elapsed().as_secs_f64();
    Ok(LoadRun {
        questions,
        seconds,
        questions_per_s: questions as f64 / seconds,
        peak_rss_mb: peak_rss_mb(),
        base_rss_mb: base,
    })
}

fn io(p: &Path) -> impl FnOnce(std::io::Error) -> DataError + '_ {
    move |source| DataError::Io {
        path: p.to_path_buf(),
        source,
    }
}

/// Writes a questions file of `n` questions of about `bytes_each` bytes,
/// cycling through real synthetic questions under new ids.
fn write_big(
    templates: &[gqa::Question],
    n: usize,
    bytes_each: usize,
    path: &Path,
) -> Result<u64, DataError> {
    let f = std::fs::File::create(path).map_err(io(path))?;
    let mut w = std::io::BufWriter::with_capacity(1 << 20, f);
    w.write_all(b"{").map_err(io(path))?;
    for i in 0..n {
        let mut q = templates[i % templates.len()].clone();
        let base = serde_json::to_vec(&q).expect("serialises").len() + 12;
        // Real train questions carry long `entailed` lists; pad to size.
        let pad = bytes_each.saturating_sub(base) / 11;
        q.entailed = (0..pad)
            .map(|k| format!("{:08}", (i * 31 + k) % 100_000_000))
            .collect();
        if i > 0 {
            w.write_all(b",").map_err(io(path))?;
        }
        write!(w, "\"{i:08}\":").map_err(io(path))?;
        serde_json::to_writer(&mut w, &q).map_err(|e| io(path)(std::io::Error::other(e)))?;
    }
    w.write_all(b"}").map_err(io(path))?;
    w.flush().map_err(io(path))?;
    Ok(std::fs::metadata(path).map_err(io(path))?.len())
}

/// Runs the benchmark. `child(file, mode)` runs [`load_once`] in a fresh
/// process and returns what it measured.
pub fn run(
    work: &Path,
    questions: usize,
    bytes_total: u64,
    child: &dyn Fn(&Path, LoadMode) -> Result<LoadRun, DataError>,
    progress: &dyn Fn(&str),
) -> Result<DataBench, DataError> {
    let dir: PathBuf = work.join(format!("vpd-bench-data-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&dir).map_err(io(&dir))?;
    let r = run_in(&dir, questions, bytes_total, child, progress);
    let _ = std::fs::remove_dir_all(&dir);
    r
}

fn run_in(
    dir: &Path,
    questions: usize,
    bytes_total: u64,
    child: &dyn Fn(&Path, LoadMode) -> Result<LoadRun, DataError>,
    progress: &dyn Fn(&str),
) -> Result<DataBench, DataError> {
    let size = 64;
    progress("rendering");
    let mut rng = Rng::new(0, "bench");
    let scenes: Vec<Scene> = (0..300)
        .map(|_| Scene::random(&mut rng, 2, 5, render::GQA.scale))
        .collect();
    let t = Instant::now();
    for s in &scenes {
        std::hint::black_box(render::render(s, &render::GQA, size, &mut rng));
    }
    let images_per_s = scenes.len() as f64 / t.elapsed().as_secs_f64();
    let t = Instant::now();
    for s in &scenes {
        let img = render::render(s, &render::GQA, size, &mut rng);
        let mut buf = std::io::Cursor::new(Vec::new());
        img.write_to(&mut buf, image::ImageFormat::Png)
            .map_err(|e| DataError::Bench(e.to_string()))?;
        std::hint::black_box(buf);
    }
    let images_png_per_s = scenes.len() as f64 / t.elapsed().as_secs_f64();

    progress("writing the large questions file");
    let cfg = SynthConfig {
        task: Corpus::Gqa,
        n: 60,
        seed: 0,
        size: 32,
    };
    synth::write(cfg, &dir.join("templates"), &|_, _| {})?;
    let (templates, _) =
        gqa::load_questions(&dir.join("templates/questions/train_balanced_questions.json"))?;
    let per = (bytes_total / questions.max(1) as u64) as usize;
    let big = dir.join("train_balanced_questions.json");
    let file_bytes = write_big(&templates, questions, per, &big)?;
    let tenth = dir.join("tenth_balanced_questions.json");
    let tenth_bytes = write_big(&templates, questions / 10, per, &tenth)?;

    progress("streaming check of the whole file (child process)");
    let streaming = child(&big, LoadMode::Stream)?;
    progress("typed load of the whole file (child process)");
    let typed = child(&big, LoadMode::Typed)?;
    progress("a tenth as one JSON tree (child process)");
    let tree_tenth = child(&tenth, LoadMode::Tree)?;
    Ok(DataBench {
        size,
        rendered: scenes.len(),
        images_per_s,
        images_png_per_s,
        file_questions: questions,
        file_bytes,
        streaming,
        typed,
        tree_tenth,
        tenth_bytes,
    })
}
