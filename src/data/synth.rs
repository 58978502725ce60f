//! Writes the synthetic world in the real formats: GQA (questions, scene
//! graphs, images), NLVR2 (JSON lines, image pairs, plus the pairs' scene
//! graphs for oracle modules), and the generic pre-training corpus.

use std::collections::BTreeMap;
use std::path::Path;

use image::RgbImage;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::gqa::{Question, Relation, SceneGraph, SceneObject, Types};
use super::render::{self, DomainStyle};
use super::rng::Rng;
use super::world::{Scene, COLORS, RELATIONS, SHAPES};
use super::{nlvr2, synth_gqa, synth_nlvr2, DataError, SPLITS};
pub use crate::vocab::Corpus;

/// Version of the generators: part of the key of data made for the store,
/// so that data written by an older generator is not reused. Raise it with
/// every change to what the generators write.
pub const GENERATOR_VERSION: u32 = 2;

/// Generator settings; together they key the data in the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SynthConfig {
    /// What to write (the serde name `task` is part of stored data keys).
    pub task: Corpus,
    /// Examples per split.
    pub n: usize,
    /// Seed.
    pub seed: u64,
    /// Image side in pixels.
    pub size: u32,
}

/// How many of each split were written.
#[derive(Debug, Clone, Serialize)]
pub struct SynthReport {
    /// Settings.
    pub config: SynthConfig,
    /// Examples per split.
    pub examples: BTreeMap<String, usize>,
    /// Images written.
    pub images: usize,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> DataError + '_ {
    move |source| DataError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// `f(i)` for every `i` in `0..n`, on every core (examples draw from
/// their own seeded generator, so the output does not depend on the
/// threads), results in index order; the error of the lowest index that
/// failed wins and stops the others early. `progress(done)` is called on
/// this thread.
fn par_map<T: Send>(
    n: usize,
    f: impl Fn(usize) -> Result<T, DataError> + Sync,
    progress: &dyn Fn(usize),
) -> Result<Vec<T>, DataError> {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    const BLOCK: usize = 8;
    let threads = std::thread::available_parallelism()
        .map_or(1, |t| t.get())
        .min(8)
        .min(n.div_ceil(BLOCK).max(1));
    let (next, done, stop) = (
        AtomicUsize::new(0),
        AtomicUsize::new(0),
        AtomicBool::new(false),
    );
    let work = || {
        let mut out: Vec<(usize, Result<T, DataError>)> = Vec::new();
        loop {
            let start = next.fetch_add(BLOCK, Ordering::Relaxed);
            if start >= n || stop.load(Ordering::Relaxed) {
                return out;
            }
            for i in start..(start + BLOCK).min(n) {
                let r = f(i);
                let failed = r.is_err();
                out.push((i, r));
                if failed {
                    stop.store(true, Ordering::Relaxed);
                    return out;
                }
            }
            done.fetch_add((start + BLOCK).min(n) - start, Ordering::Relaxed);
        }
    };
    let mut all = std::thread::scope(|sc| {
        let workers: Vec<_> = (0..threads).map(|_| sc.spawn(work)).collect();
        // This thread reports progress while the workers render.
        while !workers.iter().all(|h| h.is_finished()) {
            progress(done.load(Ordering::Relaxed).min(n));
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        progress(done.load(Ordering::Relaxed).min(n));
        let mut all = Vec::with_capacity(n);
        for h in workers {
            match h.join() {
                Ok(part) => all.extend(part),
                Err(_) => all.push((
                    0,
                    Err(DataError::Generator("a rendering thread panicked".into())),
                )),
            }
        }
        all
    });
    all.sort_by_key(|(i, _)| *i);
    if let Some(pos) = all.iter().position(|(_, r)| r.is_err()) {
        return Err(all.swap_remove(pos).1.err().expect("an error"));
    }
    Ok(all.into_iter().filter_map(|(_, r)| r.ok()).collect())
}

fn mkdir(p: &Path) -> Result<(), DataError> {
    std::fs::create_dir_all(p).map_err(io(p))
}

fn save_png(img: &RgbImage, path: &Path) -> Result<(), DataError> {
    img.save_with_format(path, image::ImageFormat::Png)
        .map_err(|e| DataError::Io {
            path: path.to_path_buf(),
            source: std::io::Error::other(e.to_string()),
        })
}

fn write_json(path: &Path, v: &impl Serialize) -> Result<(), DataError> {
    let f = std::fs::File::create(path).map_err(io(path))?;
    let mut w = std::io::BufWriter::new(f);
    serde_json::to_writer(&mut w, v).map_err(|e| DataError::Io {
        path: path.to_path_buf(),
        source: std::io::Error::other(e.to_string()),
    })?;
    std::io::Write::flush(&mut w).map_err(io(path))
}

/// A scene graph in GQA's format, object ids `{prefix}{k:02}`.
pub fn scene_graph(scene: &Scene, size: u32, prefix: &str) -> SceneGraph {
    let px = |f: f64| (f * size as f64).round();
    let id = |k: usize| format!("{prefix}{k:02}");
    let mut objects = BTreeMap::new();
    for (k, o) in scene.objects.iter().enumerate() {
        let (x, y, w, h) = o.bbox();
        let relations = (0..scene.objects.len())
            .filter(|&j| j != k)
            .flat_map(|j| {
                RELATIONS
                    .iter()
                    .filter(move |r| scene.relation(k, r, j))
                    .map(move |r| Relation {
                        object: id(j),
                        name: r.to_string(),
                    })
            })
            .collect();
        objects.insert(
            id(k),
            SceneObject {
                name: o.shape.into(),
                x: px(x),
                y: px(y),
                w: px(w),
                h: px(h),
                attributes: vec![o.color.into(), o.size.into()],
                relations,
            },
        );
    }
    SceneGraph {
        width: size,
        height: size,
        objects,
    }
}

fn split_code(split: &str) -> usize {
    SPLITS.iter().position(|s| *s == split).unwrap_or(0) + 1
}

/// Writes `cfg.task`'s data under `out`. `progress(done, total)`.
pub fn write(
    cfg: SynthConfig,
    out: &Path,
    progress: &dyn Fn(usize, usize),
) -> Result<SynthReport, DataError> {
    if !(16..=512).contains(&cfg.size) {
        return Err(DataError::BadSettings(format!(
            "--size {} is out of range (16 to 512 pixels)",
            cfg.size
        )));
    }
    if cfg.n == 0 {
        return Err(DataError::BadSettings("--n must be at least 1".into()));
    }
    mkdir(out)?;
    match cfg.task {
        Corpus::Gqa => write_gqa(cfg, out, progress),
        Corpus::Nlvr2 => write_nlvr2(cfg, out, progress),
        Corpus::Generic => write_generic(cfg, out, progress),
    }
}

fn semantic_str(ops: &[super::gqa::SemanticOp]) -> String {
    ops.iter()
        .map(|o| {
            let deps = if o.dependencies.is_empty() {
                String::new()
            } else {
                format!(
                    " [{}]",
                    o.dependencies
                        .iter()
                        .map(|d| d.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            };
            format!("{}: {}{deps}", o.operation, o.argument)
        })
        .collect::<Vec<_>>()
        .join("->")
}

fn write_gqa(
    cfg: SynthConfig,
    out: &Path,
    progress: &dyn Fn(usize, usize),
) -> Result<SynthReport, DataError> {
    let style = render::GQA;
    for d in ["questions", "sceneGraphs", "images"] {
        mkdir(&out.join(d))?;
    }
    let total = cfg.n * SPLITS.len();
    let mut report = SynthReport {
        config: cfg,
        examples: BTreeMap::new(),
        images: 0,
    };
    let fams = synth_gqa::FAMILIES;
    for (k, &split) in SPLITS.iter().enumerate() {
        let one = |i: usize| -> Result<(String, SceneGraph, String, Question), DataError> {
            let fam = &fams[i % fams.len()];
            let target = fam.answers[(i / fams.len()) % fam.answers.len()];
            let mut rng = Rng::new(cfg.seed, &format!("gqa/{split}/{i}"));
            let (scene, built) = (0..10_000)
                .find_map(|_| {
                    let mut s = Scene::random(&mut rng, 2, 5, style.scale);
                    synth_gqa::build(fam.name, target, &mut rng, &mut s, style.scale)
                        .map(|b| (s, b))
                })
                .ok_or_else(|| {
                    DataError::Generator(format!("could not build a {} question", fam.name))
                })?;
            let code = split_code(split);
            let image_id = format!("{code}{i:06}");
            let qid = format!("{code}{i:07}");
            let graph = scene_graph(&scene, cfg.size, &image_id);
            let fix = |arg: &str| {
                let mut a = arg.to_string();
                for k in (0..scene.objects.len()).rev() {
                    a = a.replace(&format!("#{k}"), &format!("{image_id}{k:02}"));
                }
                a
            };
            let semantic: Vec<_> = built
                .semantic
                .iter()
                .map(|o| super::gqa::SemanticOp {
                    argument: fix(&o.argument),
                    ..o.clone()
                })
                .collect();
            let mut ann = serde_json::Map::new();
            for (w, word) in built.question.trim_end_matches('?').split(' ').enumerate() {
                let ids: Vec<&String> = graph
                    .objects
                    .iter()
                    .filter(|(id, o)| {
                        o.name == word && semantic.iter().any(|s| s.argument.contains(id.as_str()))
                    })
                    .map(|(id, _)| id)
                    .collect();
                if ids.len() == 1 {
                    ann.insert(w.to_string(), json!(ids[0]));
                }
            }
            let q = Question {
                id: qid.clone(),
                image_id: image_id.clone(),
                question: built.question,
                answer: Some(built.answer),
                full_answer: Some(built.full_answer),
                semantic_str: Some(semantic_str(&semantic)),
                semantic,
                types: Some(Types {
                    structural: fam.structural.into(),
                    semantic: fam.semantic.into(),
                    detailed: fam.name.into(),
                }),
                annotations: serde_json::value::to_raw_value(
                    &json!({"question": ann, "answer": {}, "fullAnswer": {}}),
                )
                .ok(),
                is_balanced: Some(true),
                groups: serde_json::value::to_raw_value(
                    &json!({"global": null, "local": fam.name}),
                )
                .ok(),
                entailed: super::gqa::IdList::default(),
                equivalent: [qid.as_str()].into_iter().collect(),
            };
            let img = render::render(&scene, &style, cfg.size, &mut rng);
            save_png(&img, &out.join("images").join(format!("{image_id}.png")))?;
            Ok((image_id, graph, qid, q))
        };
        let made = par_map(cfg.n, one, &|d| progress(k * cfg.n + d, total))?;
        let mut questions: BTreeMap<String, Question> = BTreeMap::new();
        let mut graphs: BTreeMap<String, SceneGraph> = BTreeMap::new();
        for (image_id, graph, qid, q) in made {
            report.images += 1;
            graphs.insert(image_id, graph);
            questions.insert(qid, q);
        }
        // The published format keys each question by id; the id is not a field.
        let as_map: BTreeMap<&String, &Question> = questions.iter().collect();
        write_json(
            &out.join("questions")
                .join(format!("{split}_balanced_questions.json")),
            &as_map,
        )?;
        write_json(
            &out.join("sceneGraphs")
                .join(format!("{split}_sceneGraphs.json")),
            &graphs,
        )?;
        report.examples.insert(split.into(), questions.len());
    }
    Ok(report)
}

/// Ground truth of one synthetic NLVR2 pair (not part of the real format).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PairScenes {
    /// The left image's scene graph.
    pub left: SceneGraph,
    /// The right image's scene graph.
    pub right: SceneGraph,
}

fn write_nlvr2(
    cfg: SynthConfig,
    out: &Path,
    progress: &dyn Fn(usize, usize),
) -> Result<SynthReport, DataError> {
    let style = render::NLVR2;
    let total = cfg.n * SPLITS.len();
    let mut report = SynthReport {
        config: cfg,
        examples: BTreeMap::new(),
        images: 0,
    };
    let fams = synth_nlvr2::FAMILIES;
    for (k, &split) in SPLITS.iter().enumerate() {
        let img_dir = out.join("images").join(split);
        mkdir(&img_dir)?;
        let one = |i: usize| -> Result<(String, PairScenes, String), DataError> {
            let fam = fams[i % fams.len()];
            let label = (i / fams.len()).is_multiple_of(2);
            let mut rng = Rng::new(cfg.seed, &format!("nlvr2/{split}/{i}"));
            let (l, r, built) = (0..10_000)
                .find_map(|_| {
                    let mut l = Scene::random(&mut rng, 1, 4, style.scale);
                    let mut r = Scene::random(&mut rng, 1, 4, style.scale);
                    synth_nlvr2::build(fam, label, &mut rng, &mut l, &mut r, style.scale)
                        .map(|b| (l, r, b))
                })
                .ok_or_else(|| {
                    DataError::Generator(format!("could not build a {fam} statement"))
                })?;
            let prefix = format!("{split}-{}-{}", i / 4, i % 4);
            let ex = nlvr2::Example {
                identifier: format!("{prefix}-0"),
                sentence: built.sentence,
                label: built.label,
                left_url: Some(format!("synthetic://{prefix}-img0.png")),
                right_url: Some(format!("synthetic://{prefix}-img1.png")),
                program: Some(built.program),
                family: Some(fam.into()),
            };
            for (k, s) in [&l, &r].into_iter().enumerate() {
                let img = render::render(s, &style, cfg.size, &mut rng);
                save_png(&img, &img_dir.join(format!("{prefix}-img{k}.png")))?;
            }
            let pair = PairScenes {
                left: scene_graph(&l, cfg.size, &format!("{prefix}-0-")),
                right: scene_graph(&r, cfg.size, &format!("{prefix}-1-")),
            };
            Ok((
                prefix,
                pair,
                serde_json::to_string(&ex).expect("serialises"),
            ))
        };
        let made = par_map(cfg.n, one, &|d| progress(k * cfg.n + d, total))?;
        let mut lines = String::new();
        let mut scenes: BTreeMap<String, PairScenes> = BTreeMap::new();
        for (prefix, pair, line) in made {
            report.images += 2;
            scenes.insert(prefix, pair);
            lines.push_str(&line);
            lines.push('\n');
        }
        let p = out.join(format!("{split}.json"));
        std::fs::write(&p, lines).map_err(io(&p))?;
        write_json(&out.join(format!("{split}_scenes.json")), &scenes)?;
        report.examples.insert(split.into(), cfg.n);
    }
    Ok(report)
}

/// One record of the generic corpus (`{split}.jsonl`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenericRecord {
    /// Record id.
    pub id: String,
    /// Image path relative to the corpus folder.
    pub image: String,
    /// `crop` (one object, VQA attribute questions), `scene` (whole image,
    /// count and existence questions) or `boxes` (every object's box, LOC).
    pub kind: String,
    /// The question (crop and scene records).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub question: Option<String>,
    /// The answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer: Option<String>,
    /// Objects with boxes in pixels `[x, y, w, h]` (boxes records).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub boxes: Vec<GenericBox>,
}

/// A labelled box of the generic corpus.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenericBox {
    /// Shape name.
    pub name: String,
    /// Colour and size.
    pub attributes: Vec<String>,
    /// `[x, y, w, h]` in pixels.
    pub bbox: [f64; 4],
}

/// The rectangle CROP takes: the box enlarged `factor` times about its
/// centre, clamped to the image (pixels: x, y, w, h).
pub fn enlarged(bbox: [f64; 4], factor: f64, width: u32, height: u32) -> [u32; 4] {
    let [x, y, w, h] = bbox;
    let (cx, cy) = (x + w / 2.0, y + h / 2.0);
    let (nw, nh) = (w * factor, h * factor);
    let x0 = (cx - nw / 2.0).floor().max(0.0) as u32;
    let y0 = (cy - nh / 2.0).floor().max(0.0) as u32;
    let x1 = ((cx + nw / 2.0).ceil() as u32).min(width).max(x0 + 1);
    let y1 = ((cy + nh / 2.0).ceil() as u32).min(height).max(y0 + 1);
    [x0, y0, x1 - x0, y1 - y0]
}

fn write_generic(
    cfg: SynthConfig,
    out: &Path,
    progress: &dyn Fn(usize, usize),
) -> Result<SynthReport, DataError> {
    let style: DomainStyle = render::GENERIC;
    let total = cfg.n * SPLITS.len();
    let mut report = SynthReport {
        config: cfg,
        examples: BTreeMap::new(),
        images: 0,
    };
    for (k, &split) in SPLITS.iter().enumerate() {
        let dir = out.join("images").join(split);
        mkdir(&dir)?;
        let one = |i: usize| -> Result<Option<Vec<GenericRecord>>, DataError> {
            let mut rng = Rng::new(cfg.seed, &format!("generic/{split}/{i}"));
            let scene = Scene::random(&mut rng, 1, 4, style.scale);
            if scene.objects.is_empty() {
                return Ok(None);
            }
            let img = render::render(&scene, &style, cfg.size, &mut rng);
            let name = format!("images/{split}/g{i:06}.png");
            save_png(&img, &out.join(&name))?;
            let graph = scene_graph(&scene, cfg.size, "");
            let boxes: Vec<GenericBox> = graph
                .objects
                .values()
                .map(|o| GenericBox {
                    name: o.name.clone(),
                    attributes: o.attributes.clone(),
                    bbox: [o.x, o.y, o.w, o.h],
                })
                .collect();
            let mut recs = vec![GenericRecord {
                id: format!("{split}-{i}-boxes"),
                image: name.clone(),
                kind: "boxes".into(),
                question: None,
                answer: None,
                boxes: boxes.clone(),
            }];
            // A whole-image count or existence question, about a shape the
            // image holds seven times in ten (else counts are mostly 0).
            let sh = if rng.chance(0.7) {
                scene.objects[rng.below(scene.objects.len())].shape
            } else {
                *rng.pick(&SHAPES)
            };
            let (q, a) = match i % 3 {
                0 => (
                    format!("How many {} are in the image?", super::world::plural(sh)),
                    scene.count(sh, None).to_string(),
                ),
                1 => (
                    format!("Is there a {sh} in the image?"),
                    if scene.count(sh, None) > 0 {
                        "yes"
                    } else {
                        "no"
                    }
                    .to_string(),
                ),
                _ => {
                    let o = &scene.objects[rng.below(scene.objects.len())];
                    let c = if rng.chance(0.5) {
                        o.color
                    } else {
                        *rng.pick(&COLORS)
                    };
                    (
                        format!("Is there a {c} {} in the image?", o.shape),
                        if scene.count(o.shape, Some(c)) > 0 {
                            "yes"
                        } else {
                            "no"
                        }
                        .to_string(),
                    )
                }
            };
            recs.push(GenericRecord {
                id: format!("{split}-{i}-scene"),
                image: name.clone(),
                kind: "scene".into(),
                question: Some(q),
                answer: Some(a),
                boxes: vec![],
            });
            // An attribute question on a crop of one object (as CROP makes it).
            let k = rng.below(scene.objects.len());
            let o = &scene.objects[k];
            let b = &boxes[k];
            let [x, y, w, h] = enlarged(b.bbox, 1.5, cfg.size, cfg.size);
            let crop = image::imageops::crop_imm(&img, x, y, w, h).to_image();
            let crop_name = format!("images/{split}/g{i:06}-crop{k}.png");
            save_png(&crop, &out.join(&crop_name))?;
            let (q, a) = match i % 5 {
                0 => (
                    format!("What color is the {}?", o.shape),
                    o.color.to_string(),
                ),
                1 => ("What color is it?".to_string(), o.color.to_string()),
                2 => ("What shape is this?".to_string(), o.shape.to_string()),
                3 => (format!("What size is the {}?", o.shape), o.size.to_string()),
                _ => {
                    let c = if rng.chance(0.5) {
                        o.color
                    } else {
                        *rng.pick(&COLORS)
                    };
                    (
                        format!("Is the {} {c}?", o.shape),
                        if c == o.color { "yes" } else { "no" }.to_string(),
                    )
                }
            };
            recs.push(GenericRecord {
                id: format!("{split}-{i}-crop"),
                image: crop_name,
                kind: "crop".into(),
                question: Some(q),
                answer: Some(a),
                boxes: vec![],
            });
            Ok(Some(recs))
        };
        let made = par_map(cfg.n, one, &|d| progress(k * cfg.n + d, total))?;
        let mut lines = String::new();
        let mut count = 0;
        for recs in made.into_iter().flatten() {
            for r in &recs {
                lines.push_str(&serde_json::to_string(r).expect("serialises"));
                lines.push('\n');
            }
            count += recs.len();
            report.images += 2;
        }
        let p = out.join(format!("{split}.jsonl"));
        std::fs::write(&p, lines).map_err(io(&p))?;
        report.examples.insert(split.into(), count);
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn par_map_keeps_the_order_and_reports_the_first_failure() {
        let got = par_map(1000, |i| Ok(i * i), &|_| {}).unwrap();
        assert_eq!(got, (0..1000).map(|i| i * i).collect::<Vec<_>>());
        let failed = par_map(
            1000,
            |i| {
                if i == 37 || i == 900 {
                    Err(DataError::Generator(format!("example {i}")))
                } else {
                    Ok(i)
                }
            },
            &|_| {},
        );
        assert!(matches!(failed, Err(DataError::Generator(m)) if m == "example 37"));
        let seen = std::cell::Cell::new(0);
        par_map(20, Ok, &|d| seen.set(d)).unwrap();
        assert_eq!(
            seen.get(),
            20,
            "the last progress call counts every example"
        );
    }
}
