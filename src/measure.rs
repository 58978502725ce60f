//! What distillation can transfer, measured: the students and the teachers
//! on exactly the queries the Teacher Input Adapters will ask, on the test
//! images of each domain (`generic`, `gqa`, `nlvr2`).
//!
//! - Crop queries (GQA's VQA steps after LOC and CROP): for each object
//!   whose shape is unique in its image, "What color is the circle?" and
//!   "Is the circle red?" (half of them true). The student sees the CROP
//!   of the object (its box enlarged 1.5 times); the GQA teacher sees the
//!   whole image (`whole`, how it was trained, as the `name+box` pointer
//!   mode gives it) and the crop (`crop`, as the `name` mode gives it).
//! - Whole-image queries (NLVR2's VQA steps): "How many circles are in the
//!   image?" and "Is there a red circle in the image?" (half true). The
//!   NLVR2 teacher sees the pair and scores the statements "The left image
//!   contains exactly k circles." (k = 0..4; the most probable True wins)
//!   and "The left image contains a red circle." (True above 0.5).
//! - LOC: for each image, each shape it holds and one it lacks; precision
//!   and recall at IoU 0.5 of the boxes the detector returns.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;

use crate::data::gqa;
use crate::data::images::{decode, to_model_input};
use crate::data::rng::Rng;
use crate::data::synth::{enlarged, PairScenes};
use crate::data::world::{plural, COLORS, SHAPES};
use crate::data::DataError;
use crate::models::{self, ModelError, INPUT};
use crate::nn::detector::{DetExample, PrCounts};
use crate::nn::model::{Example, Model};
use crate::nn::{DeviceChoice, NnError};
use crate::store::{Store, VersionRef};
use crate::vocab::Corpus;

/// One object of a test image.
#[derive(Debug, Clone)]
pub struct Obj {
    /// Shape.
    pub shape: String,
    /// Colour.
    pub color: String,
    /// Box in pixels `[x, y, w, h]`.
    pub bbox: [f64; 4],
}

/// A test image with its objects.
#[derive(Debug, Clone)]
pub struct SceneImage {
    /// The image file.
    pub path: PathBuf,
    /// Its objects.
    pub objects: Vec<Obj>,
}

fn obj(name: &str, attributes: &[String], bbox: [f64; 4]) -> Obj {
    Obj {
        shape: name.to_string(),
        color: attributes
            .iter()
            .find(|a| COLORS.contains(&a.as_str()))
            .cloned()
            .unwrap_or_default(),
        bbox,
    }
}

/// The test images of a generic corpus (its `boxes` records).
pub fn generic_scenes(dir: &Path, split: &str) -> Result<Vec<SceneImage>, DataError> {
    Ok(models::generic_records(dir, split)?
        .into_iter()
        .filter(|r| r.kind == "boxes")
        .map(|r| SceneImage {
            path: dir.join(&r.image),
            objects: r
                .boxes
                .iter()
                .map(|b| obj(&b.name, &b.attributes, b.bbox))
                .collect(),
        })
        .collect())
}

fn graph_image(path: PathBuf, g: &gqa::SceneGraph) -> SceneImage {
    SceneImage {
        path,
        objects: g
            .objects
            .values()
            .map(|o| obj(&o.name, &o.attributes, [o.x, o.y, o.w, o.h]))
            .collect(),
    }
}

/// The test images of a synthetic GQA set, from its scene graphs.
pub fn gqa_scenes(dir: &Path, split: &str) -> Result<Vec<SceneImage>, DataError> {
    let (graphs, _) =
        gqa::load_scene_graphs(&dir.join(format!("sceneGraphs/{split}_sceneGraphs.json")))?;
    Ok(graphs
        .iter()
        .map(|(id, g)| graph_image(dir.join("images").join(format!("{id}.png")), g))
        .collect())
}

/// The test pairs of a synthetic NLVR2 set, from `{split}_scenes.json`.
pub fn nlvr2_pairs(dir: &Path, split: &str) -> Result<Vec<[SceneImage; 2]>, DataError> {
    let p = dir.join(format!("{split}_scenes.json"));
    let bytes = std::fs::read(&p).map_err(|source| DataError::Io {
        path: p.clone(),
        source,
    })?;
    let all: BTreeMap<String, PairScenes> =
        serde_json::from_slice(&bytes).map_err(|e| DataError::Malformed {
            path: p.to_path_buf(),
            message: e.to_string(),
        })?;
    let imgs = dir.join("images").join(split);
    Ok(all
        .iter()
        .map(|(id, s)| {
            [
                graph_image(imgs.join(format!("{id}-img0.png")), &s.left),
                graph_image(imgs.join(format!("{id}-img1.png")), &s.right),
            ]
        })
        .collect())
}

/// Correct of n.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Score {
    /// Queries.
    pub n: usize,
    /// Answered right.
    pub correct: usize,
}

impl Score {
    /// Percent.
    pub fn percent(&self) -> f64 {
        100.0 * self.correct as f64 / self.n.max(1) as f64
    }
    fn add(&mut self, ok: bool) {
        self.n += 1;
        self.correct += ok as usize;
    }
}

/// Scores by query family (`color`, `verify`, `count`, `exist`) and `all`.
pub type Scores = BTreeMap<String, Score>;

fn tally(s: &mut Scores, family: &str, ok: bool) {
    s.entry(family.into()).or_default().add(ok);
    s.entry("all".into()).or_default().add(ok);
}

/// A query with its answer, for the student and the teachers.
#[derive(Debug, Clone)]
struct Query {
    family: &'static str,
    question: String,
    answer: String,
    /// The student's image (crop or whole).
    student: Arc<Vec<f32>>,
    /// The whole image.
    whole: Arc<Vec<f32>>,
    /// For the NLVR2 teacher: the pair and the side (0 left, 1 right).
    pair: Option<([Arc<Vec<f32>>; 2], usize)>,
    /// Shape and colour asked about.
    shape: String,
    color: String,
}

fn crop_queries(
    img: &SceneImage,
    whole: &Arc<Vec<f32>>,
    rng: &mut Rng,
) -> Result<Vec<Query>, DataError> {
    let pixels = decode(&img.path)?;
    let mut out = Vec::new();
    for o in &img.objects {
        if img.objects.iter().filter(|x| x.shape == o.shape).count() != 1 {
            continue;
        }
        let [x, y, w, h] = enlarged(o.bbox, 1.5, pixels.width(), pixels.height());
        let crop = image::imageops::crop_imm(&pixels, x, y, w, h).to_image();
        let crop = Arc::new(to_model_input(&crop, INPUT));
        let asked = if rng.chance(0.5) {
            o.color.clone()
        } else {
            COLORS
                .iter()
                .filter(|c| **c != o.color)
                .nth(rng.below(COLORS.len() - 1))
                .map_or(o.color.clone(), |c| c.to_string())
        };
        let base = Query {
            family: "color",
            question: format!("What color is the {}?", o.shape),
            answer: o.color.clone(),
            student: crop,
            whole: whole.clone(),
            pair: None,
            shape: o.shape.clone(),
            color: o.color.clone(),
        };
        out.push(Query {
            family: "verify",
            question: format!("Is the {} {asked}?", o.shape),
            answer: if asked == o.color { "yes" } else { "no" }.into(),
            color: asked,
            ..base.clone()
        });
        out.push(base);
    }
    Ok(out)
}

fn whole_queries(img: &SceneImage, whole: &Arc<Vec<f32>>, rng: &mut Rng) -> Vec<Query> {
    let present = |rng: &mut Rng| img.objects[rng.below(img.objects.len())].clone();
    let shape = if !img.objects.is_empty() && rng.chance(0.7) {
        present(rng).shape
    } else {
        rng.pick(&SHAPES).to_string()
    };
    let count = img.objects.iter().filter(|o| o.shape == shape).count();
    let (eshape, ecolor) = if !img.objects.is_empty() && rng.chance(0.5) {
        let o = present(rng);
        (o.shape, o.color)
    } else {
        (rng.pick(&SHAPES).to_string(), rng.pick(&COLORS).to_string())
    };
    let exists = img
        .objects
        .iter()
        .any(|o| o.shape == eshape && o.color == ecolor);
    let base = Query {
        family: "count",
        question: format!("How many {} are in the image?", plural(&shape)),
        answer: count.to_string(),
        student: whole.clone(),
        whole: whole.clone(),
        pair: None,
        shape,
        color: String::new(),
    };
    vec![
        Query {
            family: "exist",
            question: format!("Is there a {ecolor} {eshape} in the image?"),
            answer: if exists { "yes" } else { "no" }.into(),
            shape: eshape,
            color: ecolor,
            ..base.clone()
        },
        base,
    ]
}

fn load(path: &Path) -> Result<Arc<Vec<f32>>, DataError> {
    Ok(Arc::new(to_model_input(&decode(path)?, INPUT)))
}

fn vqa_scores(
    model: &Model,
    queries: &[Query],
    image: impl Fn(&Query) -> Arc<Vec<f32>>,
) -> Result<Scores, NnError> {
    let ex: Vec<Example> = queries
        .iter()
        .map(|q| Example {
            images: vec![image(q)],
            text: q.question.clone(),
            label: 0,
        })
        .collect();
    let probs = model.predict(&ex)?;
    let mut s = Scores::new();
    for (p, q) in probs.iter().zip(queries) {
        let best = p
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map(|(i, _)| i);
        let said = best.and_then(|i| model.meta.answers.list.get(i));
        tally(&mut s, q.family, said == Some(&q.answer));
    }
    Ok(s)
}

/// The NLVR2 teacher's answers to whole-image queries through statements.
fn nlvr2_scores(teacher: &Model, queries: &[Query]) -> Result<Scores, NnError> {
    const KS: std::ops::RangeInclusive<usize> = 0..=4;
    let mut ex = Vec::new();
    let mut spans = Vec::new();
    for q in queries {
        let Some((pair, side)) = &q.pair else {
            continue;
        };
        let side_word = ["left", "right"][*side];
        let start = ex.len();
        let statements: Vec<String> = if q.family == "count" {
            KS.map(|k| {
                let noun = if k == 1 {
                    q.shape.clone()
                } else {
                    plural(&q.shape)
                };
                format!("The {side_word} image contains exactly {k} {noun}.")
            })
            .collect()
        } else {
            vec![format!(
                "The {side_word} image contains a {} {}.",
                q.color, q.shape
            )]
        };
        for text in statements {
            ex.push(Example {
                images: pair.to_vec(),
                text,
                label: 0,
            });
        }
        spans.push((q, start, ex.len()));
    }
    let probs = teacher.predict(&ex)?;
    let truth = teacher.meta.answers.id("true").unwrap_or(1) as usize;
    let mut s = Scores::new();
    for (q, a, b) in spans {
        let t: Vec<f32> = probs[a..b]
            .iter()
            .map(|p| p.get(truth).copied().unwrap_or(0.0))
            .collect();
        let said = if q.family == "count" {
            t.iter()
                .enumerate()
                .max_by(|x, y| x.1.total_cmp(y.1))
                .map(|(i, _)| i.to_string())
                .unwrap_or_default()
        } else if t[0] > 0.5 {
            "yes".into()
        } else {
            "no".into()
        };
        tally(&mut s, q.family, said == q.answer);
    }
    Ok(s)
}

/// Everything measured.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    /// Test images used per domain.
    pub images: BTreeMap<String, usize>,
    /// The VQA student per domain and query family.
    pub student: BTreeMap<String, Scores>,
    /// The GQA teacher on the gqa crop queries: `whole` image and `crop`.
    pub gqa_teacher: BTreeMap<String, Scores>,
    /// The NLVR2 teacher on the nlvr2 whole-image queries.
    pub nlvr2_teacher: Option<Scores>,
    /// LOC precision and recall at IoU 0.5 per domain.
    pub loc: BTreeMap<String, PrCounts>,
    /// Teacher minus student on the adapter's queries, points: `gqa`
    /// (the teacher's better mode) and `nlvr2`.
    pub margin: BTreeMap<String, f64>,
    /// Student on generic minus student on the task domain, points, on the
    /// same query kinds (crop queries for gqa, whole-image for nlvr2).
    pub domain_gap: BTreeMap<String, f64>,
}

/// Which versions to measure.
#[derive(Debug, Clone)]
pub struct Versions {
    /// VQA student.
    pub vqa: Option<VersionRef>,
    /// LOC student.
    pub loc: Option<VersionRef>,
    /// GQA teacher.
    pub gqa_teacher: Option<VersionRef>,
    /// NLVR2 teacher.
    pub nlvr2_teacher: Option<VersionRef>,
}

fn data_of(store: &Store, r: Option<&VersionRef>, task: Corpus) -> Result<PathBuf, ModelError> {
    Ok(models::data_of_version(store, r, task, 1000)?)
}

fn model_of(store: &Store, r: &VersionRef, device: DeviceChoice) -> Result<Model, ModelError> {
    Ok(models::load_model(store, r, device)?.1)
}

/// Measures at most `limit` test images (pairs for nlvr2) per domain, the
/// networks on `device`.
pub fn measure(
    store: &Store,
    which: &Versions,
    limit: usize,
    device: DeviceChoice,
) -> Result<Report, ModelError> {
    let mut rep = Report::default();
    let generic = data_of(
        store,
        which.vqa.as_ref().or(which.loc.as_ref()),
        Corpus::Generic,
    )?;
    let gqa_dir = data_of(store, which.gqa_teacher.as_ref(), Corpus::Gqa)?;
    let nlvr2_dir = data_of(store, which.nlvr2_teacher.as_ref(), Corpus::Nlvr2)?;
    let mut domains: Vec<(&str, Vec<SceneImage>)> = vec![
        ("generic", generic_scenes(&generic, "test")?),
        ("gqa", gqa_scenes(&gqa_dir, "test")?),
    ];
    let pairs: Vec<[SceneImage; 2]> = nlvr2_pairs(&nlvr2_dir, "test")?
        .into_iter()
        .take(limit)
        .collect();
    domains.push((
        "nlvr2",
        pairs.iter().flat_map(|p| p.iter().cloned()).collect(),
    ));
    let mut queries: BTreeMap<&str, Vec<Query>> = BTreeMap::new();
    let mut loc_examples: BTreeMap<&str, Vec<DetExample>> = BTreeMap::new();
    for (name, imgs) in &mut domains {
        imgs.truncate(if *name == "nlvr2" { 2 * limit } else { limit });
        rep.images.insert(name.to_string(), imgs.len());
        let mut rng = Rng::new(0, &format!("measure/{name}"));
        let mut qs = Vec::new();
        let mut dets = Vec::new();
        for (i, img) in imgs.iter().enumerate() {
            let whole = load(&img.path)?;
            qs.extend(crop_queries(img, &whole, &mut rng)?);
            let mut w = whole_queries(img, &whole, &mut rng);
            if *name == "nlvr2" {
                let partner = &imgs[i ^ 1];
                let other = load(&partner.path)?;
                let side = i % 2;
                let pair = if side == 0 {
                    [whole.clone(), other]
                } else {
                    [other, whole.clone()]
                };
                for q in &mut w {
                    q.pair = Some((pair.clone(), side));
                }
            }
            qs.extend(w);
            let side = INPUT as f64;
            let mut shapes: Vec<String> = img.objects.iter().map(|o| o.shape.clone()).collect();
            shapes.sort();
            shapes.dedup();
            if let Some(absent) = SHAPES.iter().find(|s| !shapes.iter().any(|x| x == *s)) {
                shapes.push(absent.to_string());
            }
            for sh in shapes {
                dets.push(DetExample {
                    image: whole.clone(),
                    boxes: img
                        .objects
                        .iter()
                        .filter(|o| o.shape == sh)
                        .map(|o| o.bbox.map(|v| (v / side) as f32))
                        .collect(),
                    name: sh,
                });
            }
        }
        queries.insert(name, qs);
        loc_examples.insert(name, dets);
    }
    let kind_of = |q: &Query| matches!(q.family, "color" | "verify");
    if let Some(r) = &which.vqa {
        let m = model_of(store, r, device)?;
        for (name, qs) in &queries {
            rep.student
                .insert(name.to_string(), vqa_scores(&m, qs, |q| q.student.clone())?);
        }
    }
    if let Some(r) = &which.gqa_teacher {
        let m = model_of(store, r, device)?;
        let crops: Vec<Query> = queries["gqa"]
            .iter()
            .filter(|q| kind_of(q))
            .cloned()
            .collect();
        rep.gqa_teacher
            .insert("whole".into(), vqa_scores(&m, &crops, |q| q.whole.clone())?);
        rep.gqa_teacher.insert(
            "crop".into(),
            vqa_scores(&m, &crops, |q| q.student.clone())?,
        );
    }
    if let Some(r) = &which.nlvr2_teacher {
        let m = model_of(store, r, device)?;
        let wq: Vec<Query> = queries["nlvr2"]
            .iter()
            .filter(|q| !kind_of(q))
            .cloned()
            .collect();
        rep.nlvr2_teacher = Some(nlvr2_scores(&m, &wq)?);
    }
    if let Some(r) = &which.loc {
        let l = models::load_loc(store, r, device)?;
        for (name, ex) in &loc_examples {
            rep.loc
                .insert(name.to_string(), l.detector.evaluate(ex, &l.settings)?);
        }
    }
    // The adapter's queries: crop queries on gqa, whole-image on nlvr2.
    let part = |s: &Scores, fams: &[&str]| {
        let mut t = Score::default();
        for f in fams {
            if let Some(x) = s.get(*f) {
                t.n += x.n;
                t.correct += x.correct;
            }
        }
        t.percent()
    };
    const CROP: &[&str] = &["color", "verify"];
    const WHOLE: &[&str] = &["count", "exist"];
    if let (Some(g), Some(t)) = (rep.student.get("gqa"), rep.gqa_teacher.get("whole")) {
        let best = rep
            .gqa_teacher
            .values()
            .map(|s| part(s, CROP))
            .fold(part(t, CROP), f64::max);
        rep.margin.insert("gqa".into(), best - part(g, CROP));
    }
    if let (Some(g), Some(t)) = (rep.student.get("nlvr2"), &rep.nlvr2_teacher) {
        rep.margin
            .insert("nlvr2".into(), part(t, WHOLE) - part(g, WHOLE));
    }
    if let Some(gen) = rep.student.get("generic") {
        for (task, fams) in [("gqa", CROP), ("nlvr2", WHOLE)] {
            if let Some(s) = rep.student.get(task) {
                rep.domain_gap
                    .insert(task.into(), part(gen, fams) - part(s, fams));
            }
        }
    }
    Ok(rep)
}
