//! `vpd bench real-eval`: the base pipeline on a GQA split in the real
//! layout the size of testdev-balanced (12,578 questions over about 400
//! JPEG images of 500x375, as real GQA asks many questions of one image),
//! with the decoded-image cache bounded in bytes against the same run with
//! the cache off, each in a fresh child process so that its peak memory is
//! its own. Nothing is recorded in the store: the executor runs the jobs
//! directly, as `vpd eval` does.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::data::check::peak_rss_mb;
use crate::data::real_layout;
use crate::data::synth::{Corpus, SynthConfig};
use crate::data::DataError;
use crate::runtime::exec::{self, ExecConfig, ImageCache, ModuleChoice};
use crate::runtime::jobs::{Layout, Slice};
use crate::runtime::score::EvalError;
use crate::store::Store;
use crate::vocab::Task;

/// The split the benchmark writes.
pub const SPLIT: &str = "bench";

/// What one evaluation in a child process measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EvalRun {
    /// The cache's budget, MB (0: off).
    pub cache_mb: usize,
    /// Programs run.
    pub programs: usize,
    /// Seconds of execution (networks loaded).
    pub seconds: f64,
    /// Programs per second.
    pub programs_per_s: f64,
    /// Images decoded.
    pub image_decodes: u64,
    /// Reads the cache answered.
    pub cache_hits: u64,
    /// Most bytes the cache held, MB.
    pub cache_peak_mb: f64,
    /// Peak resident memory of the child, MB.
    pub peak_rss_mb: f64,
    /// Peak resident memory of the child before the evaluation, MB.
    pub base_rss_mb: f64,
    /// Accuracy, percent (the two runs must agree).
    pub accuracy: f64,
}

/// What `vpd bench real-eval` reports.
#[derive(Debug, Clone, Serialize)]
pub struct RealEvalBench {
    /// Questions in the split.
    pub questions: usize,
    /// Distinct images they ask about.
    pub images: usize,
    /// Image width and height, pixels.
    pub width: u32,
    /// See `width`.
    pub height: u32,
    /// The images' size on disk, MB.
    pub images_mb: f64,
    /// Their size decoded, MB.
    pub decoded_mb: f64,
    /// With the bounded cache.
    pub cached: EvalRun,
    /// Baseline: the cache off (every read decodes).
    pub uncached: EvalRun,
    /// Whether both gave the same answers.
    pub agree: bool,
}

fn io(p: &Path) -> impl FnOnce(std::io::Error) -> DataError + '_ {
    move |source| DataError::Io {
        path: p.to_path_buf(),
        source,
    }
}

/// Writes a GQA folder in the real layout under `dir`: `images` distinct
/// JPEGs of `width` x `height` and a split [`SPLIT`] of `questions`
/// questions cycling through the folder's own questions under new ids
/// (no scene graphs).
pub fn make_folder(
    dir: &Path,
    questions: usize,
    images: usize,
    (width, height): (u32, u32),
) -> Result<PathBuf, DataError> {
    let root = dir.join("gqa");
    let cfg = SynthConfig {
        task: Corpus::Gqa,
        n: images.div_ceil(4).max(1),
        seed: 0,
        size: 64,
    };
    real_layout::write(cfg, (width, height), &root, &|_, _| {})?;
    let mut templates: Vec<serde_json::Value> = Vec::new();
    for split in ["train_balanced", "val_balanced", "testdev_balanced"] {
        let f = root.join(format!("questions/{split}_questions.json"));
        let bytes = std::fs::read(&f).map_err(io(&f))?;
        let map: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(&bytes)
            .map_err(|e| DataError::Malformed {
                path: f.clone(),
                message: e.to_string(),
            })?;
        templates.extend(map.into_values());
    }
    let path = root.join(format!("questions/{SPLIT}_questions.json"));
    let f = std::fs::File::create(&path).map_err(io(&path))?;
    let mut w = std::io::BufWriter::new(f);
    w.write_all(b"{").map_err(io(&path))?;
    for i in 0..questions {
        if i > 0 {
            w.write_all(b",").map_err(io(&path))?;
        }
        write!(w, "\"b{i:08}\":").map_err(io(&path))?;
        serde_json::to_writer(&mut w, &templates[i % templates.len()])
            .map_err(|e| io(&path)(std::io::Error::other(e)))?;
    }
    w.write_all(b"}").map_err(io(&path))?;
    w.flush().map_err(io(&path))?;
    Ok(root)
}

/// Runs the split of `root` with the base pipeline in this process, the
/// cache bounded at `cache_mb` (0: off); with it, the answers' digest.
pub fn eval_once(
    store: &Store,
    root: &Path,
    (vqa, loc): (&ModuleChoice, &ModuleChoice),
    cache_mb: usize,
) -> Result<(EvalRun, String), EvalError> {
    let base = peak_rss_mb();
    crate::nn::set_threads(1);
    let slice = Slice {
        data: root.to_path_buf(),
        layout: Layout::Real { images: None },
        split: SPLIT.into(),
        offset: 0,
        limit: None,
    };
    let jobs = slice.jobs(Task::Gqa, true)?;
    let cfg = ExecConfig {
        image_cache_bytes: cache_mb << 20,
        ..ExecConfig::batched(1)
    };
    let cache = ImageCache::with_budget(cfg.image_cache_bytes);
    let rep = exec::execute(
        store,
        &jobs,
        Task::Gqa,
        vqa,
        loc,
        None,
        cfg,
        &cache,
        &|_| {},
    )?;
    let correct = rep.outcomes.iter().filter(|o| o.correct).count();
    let answers: Vec<&Option<String>> = rep.outcomes.iter().map(|o| &o.predicted).collect();
    let digest = crate::store::sha256_hex(
        serde_json::to_string(&answers)
            .unwrap_or_default()
            .as_bytes(),
    );
    let stats = cache.stats();
    Ok((
        EvalRun {
            cache_mb,
            programs: jobs.len(),
            seconds: rep.seconds,
            programs_per_s: jobs.len() as f64 / rep.seconds.max(1e-9),
            image_decodes: stats.decodes,
            cache_hits: stats.hits,
            cache_peak_mb: stats.peak_bytes as f64 / (1 << 20) as f64,
            peak_rss_mb: peak_rss_mb(),
            base_rss_mb: base,
            accuracy: 100.0 * correct as f64 / jobs.len().max(1) as f64,
        },
        digest,
    ))
}

/// One evaluation in a child process: what it measured and its answers'
/// digest.
pub type Child<'a> = &'a dyn Fn(&Path, usize) -> Result<(EvalRun, String), DataError>;

/// The benchmark: the folder made under `work`, then `child(root,
/// cache_mb)` (one [`eval_once`] in a fresh process) with the cache off
/// and at `cache_mb`.
pub fn run(
    work: &Path,
    questions: usize,
    images: usize,
    shape: (u32, u32),
    cache_mb: usize,
    child: Child,
    progress: &dyn Fn(&str),
) -> Result<RealEvalBench, DataError> {
    let dir = work.join(format!("vpd-bench-real-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&dir).map_err(io(&dir))?;
    let r = (|| {
        progress("writing the folder");
        let root = make_folder(&dir, questions, images, shape)?;
        let listed = crate::data::nlvr2::index_images(&root.join("images"));
        let images_bytes: u64 = listed
            .values()
            .filter_map(|p| std::fs::metadata(p).ok())
            .map(|m| m.len())
            .sum();
        progress("the cache off");
        let (uncached, a) = child(&root, 0)?;
        progress(&format!("the cache at {cache_mb} MB"));
        let (cached, b) = child(&root, cache_mb)?;
        Ok(RealEvalBench {
            questions,
            images: listed.len(),
            width: shape.0,
            height: shape.1,
            images_mb: images_bytes as f64 / 1e6,
            decoded_mb: (listed.len() as u64 * shape.0 as u64 * shape.1 as u64 * 3) as f64
                / (1 << 20) as f64,
            cached,
            uncached,
            agree: a == b,
        })
    })();
    let _ = std::fs::remove_dir_all(&dir);
    r
}
