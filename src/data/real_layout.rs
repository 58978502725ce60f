//! `vpd data synth --layout real`: the synthetic world written in the real
//! datasets' published layout, so that users and tests can rehearse on a
//! folder shaped as the real one is.
//!
//! - GQA: `questions/{train,val,testdev}_balanced_questions.json` (train
//!   holds the synthetic `train` and `distill` splits, as the real method
//!   distils on part of GQA train), `sceneGraphs/{train,val}_sceneGraphs.json`
//!   (testdev has none, as the real testdev), `images/{imageId}.jpg` at
//!   the width and height asked for.
//! - NLVR2: `{train,dev,test1}.json` JSON lines without `program` or
//!   `family` (real lines have neither), train images in numbered
//!   subfolders `images/train/{k}/`, every other pair JPEG despite its
//!   `.png` name (as some real ones are), no scene graphs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use image::RgbImage;

use super::gqa::{self, SceneGraph};
use super::synth::{self, Corpus, SynthConfig, SynthReport};
use super::{nlvr2, DataError};

/// Real split names per synthetic split.
const GQA_SPLITS: [(&str, &str); 4] = [
    ("train", "train_balanced"),
    ("distill", "train_balanced"),
    ("dev", "val_balanced"),
    ("test", "testdev_balanced"),
];
const NLVR2_SPLITS: [(&str, &str); 4] = [
    ("train", "train"),
    ("distill", "train"),
    ("dev", "dev"),
    ("test", "test1"),
];

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> DataError + '_ {
    move |source| DataError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn other(path: &Path, e: impl std::fmt::Display) -> DataError {
    DataError::Io {
        path: path.to_path_buf(),
        source: std::io::Error::other(e.to_string()),
    }
}

fn mkdir(p: &Path) -> Result<(), DataError> {
    std::fs::create_dir_all(p).map_err(io(p))
}

fn write_json(path: &Path, v: &impl serde::Serialize) -> Result<(), DataError> {
    let bytes = serde_json::to_vec(v).map_err(|e| other(path, e))?;
    std::fs::write(path, bytes).map_err(io(path))
}

fn save(img: &RgbImage, path: &Path, format: image::ImageFormat) -> Result<(), DataError> {
    img.save_with_format(path, format)
        .map_err(|e| other(path, e))
}

/// Resized to `width` x `height` (bilinear).
fn resized(img: &RgbImage, (width, height): (u32, u32)) -> RgbImage {
    image::imageops::resize(img, width, height, image::imageops::FilterType::Triangle)
}

/// A scene graph drawn at `size` pixels square, in the pixels of an image
/// `width` x `height`.
fn scaled(g: &SceneGraph, (width, height): (u32, u32)) -> SceneGraph {
    let (sx, sy) = (
        width as f64 / g.width as f64,
        height as f64 / g.height as f64,
    );
    let mut out = g.clone();
    out.width = width;
    out.height = height;
    for o in out.objects.values_mut() {
        o.x = (o.x * sx).round();
        o.w = (o.w * sx).round();
        o.y = (o.y * sy).round();
        o.h = (o.h * sy).round();
    }
    out
}

/// Writes `cfg.task`'s synthetic data under `out` in the real layout,
/// images `shape` = (width, height) pixels. `progress(done, total)`
/// counts the synthetic examples, then the images converted.
pub fn write(
    cfg: SynthConfig,
    shape: (u32, u32),
    out: &Path,
    progress: &dyn Fn(usize, usize),
) -> Result<SynthReport, DataError> {
    if !(16..=4096).contains(&shape.0) || !(16..=4096).contains(&shape.1) {
        return Err(DataError::BadSettings(format!(
            "--width {} --height {} is out of range (16 to 4096 pixels)",
            shape.0, shape.1
        )));
    }
    if cfg.task == Corpus::Generic {
        return Err(DataError::BadSettings(
            "the generic corpus is vpd's own: it has no real layout (gqa or nlvr2)".into(),
        ));
    }
    mkdir(out)?;
    let tmp = out.join(format!(".synth-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let written = synth::write(cfg, &tmp, progress);
    let result = written.and_then(|r| match cfg.task {
        Corpus::Gqa => gqa_layout(&tmp, shape, out, r, progress),
        _ => nlvr2_layout(&tmp, shape, out, r, progress),
    });
    let _ = std::fs::remove_dir_all(&tmp);
    result
}

fn gqa_layout(
    tmp: &Path,
    shape: (u32, u32),
    out: &Path,
    synth: SynthReport,
    progress: &dyn Fn(usize, usize),
) -> Result<SynthReport, DataError> {
    for d in ["questions", "sceneGraphs", "images"] {
        mkdir(&out.join(d))?;
    }
    let mut report = SynthReport {
        config: synth.config,
        examples: BTreeMap::new(),
        images: 0,
    };
    // Questions and scene graphs, merged per real split; kept as JSON
    // values so that every field is carried as written.
    let mut questions: BTreeMap<&str, serde_json::Map<String, serde_json::Value>> = BTreeMap::new();
    let mut graphs: BTreeMap<&str, BTreeMap<String, SceneGraph>> = BTreeMap::new();
    for (from, to) in GQA_SPLITS {
        let f = tmp.join(format!("questions/{from}_balanced_questions.json"));
        let bytes = std::fs::read(&f).map_err(io(&f))?;
        let map: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(&bytes).map_err(|e| other(&f, e))?;
        questions.entry(to).or_default().extend(map);
        if to != "testdev_balanced" {
            let g = tmp.join(format!("sceneGraphs/{from}_sceneGraphs.json"));
            let (sg, _) = gqa::load_scene_graphs(&g)?;
            graphs
                .entry(to)
                .or_default()
                .extend(sg.into_iter().map(|(k, v)| (k, scaled(&v, shape))));
        }
    }
    for (split, qs) in &questions {
        write_json(&out.join(format!("questions/{split}_questions.json")), qs)?;
        report.examples.insert(split.to_string(), qs.len());
    }
    for (split, g) in &graphs {
        let name = split.trim_end_matches("_balanced");
        write_json(&out.join(format!("sceneGraphs/{name}_sceneGraphs.json")), g)?;
    }
    let pngs = pngs_in(&tmp.join("images"))?;
    for (k, p) in pngs.iter().enumerate() {
        let img = super::images::decode(p)?;
        let stem = p.file_stem().unwrap_or_default().to_string_lossy();
        save(
            &resized(&img, shape),
            &out.join(format!("images/{stem}.jpg")),
            image::ImageFormat::Jpeg,
        )?;
        report.images += 1;
        progress(k + 1, pngs.len());
    }
    Ok(report)
}

/// The PNG files under `dir` and its subfolders, sorted.
fn pngs_in(dir: &Path) -> Result<Vec<PathBuf>, DataError> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).map_err(io(&d))?.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "png") {
                out.push(p);
            }
        }
    }
    out.sort();
    Ok(out)
}

fn nlvr2_layout(
    tmp: &Path,
    shape: (u32, u32),
    out: &Path,
    synth: SynthReport,
    progress: &dyn Fn(usize, usize),
) -> Result<SynthReport, DataError> {
    let mut report = SynthReport {
        config: synth.config,
        examples: BTreeMap::new(),
        images: 0,
    };
    let mut lines: BTreeMap<&str, String> = BTreeMap::new();
    let mut next: BTreeMap<&str, usize> = BTreeMap::new();
    let total = synth.examples.values().sum::<usize>() * 2;
    let mut done = 0;
    for (from, to) in NLVR2_SPLITS {
        let f = tmp.join(format!("{from}.json"));
        let (examples, _) = nlvr2::load(&f)?;
        for mut e in examples {
            let (l, r) = e.image_names().unwrap_or_default();
            // Renumbered in the real split's own sequence (distill's lines
            // follow train's), names `{split}-{set}-{pair}-{sentence}`.
            let i = next.entry(to).or_insert(0);
            let prefix = format!("{to}-{}-{}", *i / 4, *i % 4);
            *i += 1;
            e.identifier = format!("{prefix}-0");
            e.program = None;
            e.family = None;
            e.left_url = Some(format!("https://example.org/nlvr2/{prefix}-img0.jpg"));
            e.right_url = Some(format!("https://example.org/nlvr2/{prefix}-img1.jpg"));
            // The real train images sit in numbered folders.
            let folder = if to == "train" {
                out.join("images/train").join(((*i - 1) % 10).to_string())
            } else {
                out.join("images").join(to)
            };
            mkdir(&folder)?;
            for (k, name) in [l, r].into_iter().enumerate() {
                let p = tmp.join("images").join(from).join(name);
                let img = resized(&super::images::decode(&p)?, shape);
                let format = if (*i - 1) % 3 == 1 {
                    image::ImageFormat::Jpeg
                } else {
                    image::ImageFormat::Png
                };
                save(&img, &folder.join(format!("{prefix}-img{k}.png")), format)?;
                report.images += 1;
                done += 1;
                progress(done, total);
            }
            let line = serde_json::to_string(&e).map_err(|e| other(&f, e))?;
            let text = lines.entry(to).or_default();
            text.push_str(&line);
            text.push('\n');
        }
    }
    for (split, text) in &lines {
        let p = out.join(format!("{split}.json"));
        std::fs::write(&p, text).map_err(io(&p))?;
        report
            .examples
            .insert(split.to_string(), text.lines().count());
    }
    Ok(report)
}
