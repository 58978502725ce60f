//! The Teacher Input Adapter: a VQA step of an executed program (its image,
//! where that image was cut from, its question) turned into the teacher's
//! input format, with the visual pointer prompt naming the step's object.
//!
//! - The step's object comes from the trace: the VQA step's image was made
//!   by a CROP whose boxes came from LOC, and LOC was asked for an object
//!   by name. That name (never the ground truth) is the pointer.
//! - `gqa` (one image, question -> answer over the shared vocabulary):
//!   `none` gives the teacher the step's image and the question as the
//!   program worded it; `name` the step's image and the question naming
//!   the object ("What color is it?" -> "What color is the circle?");
//!   `name+box` the whole source image with LOC's box drawn on it and the
//!   named question.
//! - `nlvr2` (a pair and a statement -> True/False): a whole-image VQA step
//!   on LEFT or RIGHT becomes statements about that side: a count question
//!   one statement per candidate ("The left image contains exactly k
//!   circles.", k = 0..4) whose True scores, normalised, are the soft
//!   label; an existence question "The left image contains a red circle."
//!   whose True score is P(yes). NLVR2 programs name their objects, so the
//!   three pointer modes ask the same.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use image::{Rgb, RgbImage};
use serde::Serialize;

use crate::data::images::to_model_input;
use crate::data::{DataError, ImageCache};
use crate::nn::model::Example;
use crate::nn::text::Answers;
use crate::program::interp::{ImageVal, Rect};
use crate::runtime::exec::{ExampleOutcome, Job};
use crate::vocab::Task;

pub use crate::experiment::templates::{AdapterCfg, Pointer};

/// One VQA step of an executed program, as the trace recorded it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepSample {
    /// The example (question id or NLVR2 identifier).
    pub example: String,
    /// The step's output variable.
    pub step: String,
    /// The program's input images by name (`IMAGE`, or `LEFT` and `RIGHT`).
    pub inputs: Vec<(String, PathBuf)>,
    /// The input the step's image was cut from.
    pub source: String,
    /// The step's image in the source's pixels.
    pub rect: Rect,
    /// The question as the program worded it.
    pub question: String,
    /// The object LOC was asked for, when a CROP of LOC's boxes made the
    /// step's image.
    pub object: Option<String>,
    /// LOC's best box in the source's pixels.
    pub object_box: Option<Rect>,
    /// What the program's VQA module answered (the parent student, in a
    /// run), for comparison with the pseudo-labels.
    pub answer: Option<String>,
}

fn rect_of(v: &serde_json::Value) -> Option<Rect> {
    let g = |k: &str| v.get(k).and_then(serde_json::Value::as_f64);
    Some(Rect {
        x: g("x")?,
        y: g("y")?,
        w: g("w")?,
        h: g("h")?,
    })
}

const REGIONS: [&str; 4] = ["TOP", "BOTTOM", "LEFT", "RIGHT"];

/// A neural step of a trace that ran without error: its output variable,
/// the source and rectangle of its image, its text argument (`text_arg`:
/// VQA's question, LOC's object), and the step's JSON.
struct Traced<'a> {
    out: String,
    source: String,
    rect: Rect,
    text: String,
    step: &'a serde_json::Value,
}

/// The steps of `module` in an outcome's trace, and every step by output
/// variable.
fn traced<'a>(
    trace: &'a Option<serde_json::Value>,
    module: &str,
    text_arg: &str,
) -> (Vec<Traced<'a>>, HashMap<&'a str, &'a serde_json::Value>) {
    let Some(steps) = trace
        .as_ref()
        .and_then(|t| t.get("steps"))
        .and_then(|s| s.as_array())
    else {
        return (Vec::new(), HashMap::new());
    };
    let by_out = steps
        .iter()
        .filter_map(|s| Some((s.get("out")?.as_str()?, s)))
        .collect();
    let found = steps
        .iter()
        .filter(|s| {
            s.get("module")
                .and_then(|m| m.as_str())
                .is_some_and(|m| m.starts_with(module))
                && s.get("error").is_none_or(|e| e.is_null())
        })
        .filter_map(|s| {
            let inputs = s.get("inputs")?;
            let image = inputs.get("image")?;
            Some(Traced {
                out: s
                    .get("out")
                    .and_then(|o| o.as_str())
                    .unwrap_or("")
                    .to_string(),
                source: image.get("source")?.as_str()?.to_string(),
                rect: image.get("rect").and_then(rect_of)?,
                text: inputs.get(text_arg)?.get("text")?.as_str()?.to_string(),
                step: s,
            })
        })
        .collect();
    (found, by_out)
}

/// The VQA steps of an executed example, read from its trace (steps that
/// failed or whose image is not traced are left out).
pub fn steps_of(job: &Job, outcome: &ExampleOutcome) -> Vec<StepSample> {
    let trace = outcome.trace_value();
    let (steps, by_out) = traced(&trace, "VQA", "question");
    steps
        .into_iter()
        .map(|t| {
            // The pointer: the CROP that made this image, and the LOC boxes
            // it cut around.
            let mut object = None;
            let mut object_box = None;
            let crop = t
                .step
                .get("inputs")
                .and_then(|i| i.get("image"))
                .and_then(|i| i.get("made_by"))
                .and_then(|m| m.as_str())
                .and_then(|m| by_out.get(m));
            if let Some(boxes) = crop
                .and_then(|c| c.get("inputs"))
                .and_then(|i| i.get("box"))
            {
                let name = boxes.get("object").and_then(|o| o.as_str()).unwrap_or("");
                if !name.is_empty() && !REGIONS.contains(&name) {
                    object = Some(name.to_string());
                    let on = boxes
                        .get("on")
                        .and_then(|o| o.get("rect"))
                        .and_then(rect_of);
                    let first = boxes
                        .get("boxes")
                        .and_then(|b| b.as_array())
                        .and_then(|b| b.first())
                        .and_then(|b| b.get("rect"))
                        .and_then(rect_of);
                    if let (Some(on), Some(b)) = (on, first) {
                        object_box = Some(Rect {
                            x: on.x + b.x,
                            y: on.y + b.y,
                            w: b.w,
                            h: b.h,
                        });
                    }
                }
            }
            let answer = t
                .step
                .get("output")
                .and_then(|o| o.get("value"))
                .and_then(|v| match v {
                    serde_json::Value::String(t) => Some(t.clone()),
                    serde_json::Value::Null => None,
                    other => Some(other.to_string()),
                });
            StepSample {
                example: job.id.clone(),
                step: t.out,
                inputs: job.inputs.clone(),
                source: t.source,
                rect: t.rect,
                question: t.text,
                object,
                object_box,
                answer,
            }
        })
        .collect()
}

/// The LOC steps of an executed example that looked for a named object
/// (not a region such as LEFT), read from its trace: for these,
/// `question` is the object LOC was asked for and `object` names it too.
pub fn loc_steps_of(job: &Job, outcome: &ExampleOutcome) -> Vec<StepSample> {
    let trace = outcome.trace_value();
    traced(&trace, "LOC", "object")
        .0
        .into_iter()
        .filter(|t| !REGIONS.contains(&t.text.as_str()))
        .map(|t| StepSample {
            example: job.id.clone(),
            step: t.out,
            inputs: job.inputs.clone(),
            source: t.source,
            rect: t.rect,
            object: Some(t.text.clone()),
            question: t.text,
            object_box: None,
            answer: None,
        })
        .collect()
}

/// The text that fills the slot `{ph}` when `text` matches `pattern`
/// (a pattern has one slot).
fn fill_of<'a>(pattern: &str, ph: &str, text: &'a str) -> Option<&'a str> {
    let (pre, post) = pattern.split_once(ph)?;
    let mid = text.strip_prefix(pre)?.strip_suffix(post)?;
    (!mid.trim().is_empty()).then_some(mid)
}

/// The GQA teacher's queries that verify a candidate box of `object`: on
/// the candidate's crop, "Is there a red circle?" for a name with a
/// colour, else one such question per colour (the teacher's existence
/// questions name a colour); the verdict is the largest P(yes).
pub fn verification_queries(
    cfg: &AdapterCfg,
    object: &str,
    crop: &RgbImage,
    side: u32,
) -> Vec<Example> {
    let image = Arc::new(to_model_input(crop, side));
    let has_word = object
        .split(' ')
        .any(|w| cfg.verify_with.iter().any(|c| c == w));
    let texts: Vec<String> = if has_word || cfg.verify_with.is_empty() {
        vec![cfg.verify.replace("{object}", object)]
    } else {
        cfg.verify_with
            .iter()
            .map(|c| cfg.verify.replace("{object}", &format!("{c} {object}")))
            .collect()
    };
    texts
        .into_iter()
        .map(|text| Example {
            images: vec![image.clone()],
            text,
            label: 0,
        })
        .collect()
}

/// The verdict of verification queries: the largest P(yes).
pub fn verdict(probs: &[Vec<f32>], teacher: &Answers) -> f32 {
    let yes = teacher.id("yes").unwrap_or(0) as usize;
    probs
        .iter()
        .map(|p| p.get(yes).copied().unwrap_or(0.0))
        .fold(0.0, f32::max)
}

/// The question naming `object` where the program left it implicit
/// ("What color is it?" -> "What color is the circle?", "What is this?" ->
/// "What is this circle?"); `None` when there is nothing to rewrite.
pub fn name_object(question: &str, object: &str) -> Option<String> {
    let q = question.trim();
    if q.eq_ignore_ascii_case("what is this?") {
        return Some(format!("What is this {object}?"));
    }
    let words: Vec<&str> = q.split(' ').collect();
    let i = words
        .iter()
        .position(|w| w.trim_end_matches('?').eq_ignore_ascii_case("it"))?;
    let mut out: Vec<String> = words.iter().map(|w| w.to_string()).collect();
    let tail = if words[i].ends_with('?') { "?" } else { "" };
    out[i] = format!("the {object}{tail}");
    Some(out.join(" "))
}

impl StepSample {
    fn path_of(&self, name: &str) -> Result<&PathBuf, DataError> {
        self.inputs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, p)| p)
            .ok_or_else(|| {
                DataError::Missing(format!(
                    "{} step {}: no input image {name}",
                    self.example, self.step
                ))
            })
    }
    /// The step's image as the program saw it.
    pub fn image(&self, images: &ImageCache) -> Result<ImageVal, DataError> {
        let src = images.get(self.path_of(&self.source)?)?;
        let r = self.rect;
        let pixels = image::imageops::crop_imm(
            src.as_ref(),
            r.x.max(0.0) as u32,
            r.y.max(0.0) as u32,
            r.w.max(1.0) as u32,
            r.h.max(1.0) as u32,
        )
        .to_image();
        Ok(ImageVal {
            pixels: Arc::new(pixels),
            source: self.source.clone(),
            rect: r,
            made_by: None,
        })
    }
    /// Whether the step's image is its whole source image.
    fn whole(&self, images: &ImageCache) -> Result<bool, DataError> {
        let src = images.get(self.path_of(&self.source)?)?;
        Ok(self.rect.x <= 0.0
            && self.rect.y <= 0.0
            && self.rect.w >= src.width() as f64
            && self.rect.h >= src.height() as f64)
    }
    /// The question naming the object, when the pointer has a name and the
    /// question leaves it implicit.
    pub fn named_question(&self) -> Option<String> {
        self.object
            .as_deref()
            .and_then(|o| name_object(&self.question, o))
    }
}

/// The whole image with `r` outlined in white.
fn with_box(img: &RgbImage, r: Rect) -> RgbImage {
    let mut out = img.clone();
    let (w, h) = (img.width() as i64, img.height() as i64);
    let x0 = (r.x.floor() as i64).clamp(0, w - 1);
    let y0 = (r.y.floor() as i64).clamp(0, h - 1);
    let x1 = ((r.x + r.w).ceil() as i64 - 1).clamp(0, w - 1);
    let y1 = ((r.y + r.h).ceil() as i64 - 1).clamp(0, h - 1);
    let white = Rgb([255, 255, 255]);
    for x in x0..=x1 {
        out.put_pixel(x as u32, y0 as u32, white);
        out.put_pixel(x as u32, y1 as u32, white);
    }
    for y in y0..=y1 {
        out.put_pixel(x0 as u32, y as u32, white);
        out.put_pixel(x1 as u32, y as u32, white);
    }
    out
}

/// How a teacher's outputs become a soft label over the student's answers.
#[derive(Debug, Clone, PartialEq)]
pub enum Combine {
    /// One teacher query; its distribution mapped answer by answer.
    Direct,
    /// One statement per count k; normalised True scores.
    Counts(Vec<usize>),
    /// One statement; P(True) is P(yes).
    Exists,
}

/// A step adapted for the teacher.
#[derive(Debug, Clone)]
pub struct Adapted {
    /// The teacher's inputs (one, or one per candidate).
    pub queries: Vec<Example>,
    /// How their outputs make the soft label.
    pub combine: Combine,
    /// Whether the pointer rewrote the question.
    pub rewritten: bool,
}

/// The student's input for a step: its image as the program saw it, and
/// its question as the program worded it.
pub fn student_input(
    s: &StepSample,
    images: &ImageCache,
    side: u32,
) -> Result<Arc<Vec<f32>>, DataError> {
    Ok(Arc::new(to_model_input(&s.image(images)?.pixels, side)))
}

/// The step in the teacher's format (`None`: the adapter has no rule for
/// it, and the step stays unlabelled). `side` is the teacher's input size.
pub fn adapt(
    cfg: &AdapterCfg,
    task: Task,
    s: &StepSample,
    mode: Pointer,
    images: &ImageCache,
    side: u32,
) -> Result<Option<Adapted>, DataError> {
    match task {
        Task::Gqa => {
            let named = s.named_question();
            let (text, rewritten) = match (mode, &named) {
                (Pointer::None, _) | (_, None) => (s.question.clone(), false),
                (_, Some(q)) => (q.clone(), true),
            };
            let image = match (mode, s.object_box) {
                (Pointer::NameBox, b) => {
                    let src = images.get(s.path_of(&s.source)?)?;
                    match b {
                        Some(b) => with_box(&src, b),
                        None => src.as_ref().clone(),
                    }
                }
                _ => s.image(images)?.pixels.as_ref().clone(),
            };
            Ok(Some(Adapted {
                queries: vec![Example {
                    images: vec![Arc::new(to_model_input(&image, side))],
                    text,
                    label: 0,
                }],
                combine: Combine::Direct,
                rewritten,
            }))
        }
        Task::Nlvr2 => {
            let which = match s.source.as_str() {
                "LEFT" => "left",
                "RIGHT" => "right",
                _ => return Ok(None),
            };
            if !s.whole(images)? {
                return Ok(None);
            }
            let pair = [s.path_of("LEFT")?.clone(), s.path_of("RIGHT")?.clone()];
            let mut imgs = Vec::new();
            for p in &pair {
                imgs.push(Arc::new(to_model_input(images.get(p)?.as_ref(), side)));
            }
            let q = s.question.trim().trim_end_matches('?').to_lowercase();
            let ask = |text: String| Example {
                images: imgs.clone(),
                text,
                label: 0,
            };
            let side_of = |t: &str| t.replace("{side}", which);
            if let Some((noun, statement)) = cfg
                .count
                .iter()
                .find_map(|[p, st]| Some((fill_of(p, "{noun}", &q)?, st)))
            {
                let one = cfg.singular(noun);
                let [lo, hi] = cfg.counts;
                let queries = (lo..=hi)
                    .map(|k| {
                        let n = if k == 1 { one.as_str() } else { noun };
                        ask(side_of(statement)
                            .replace("{k}", &k.to_string())
                            .replace("{noun}", n))
                    })
                    .collect();
                return Ok(Some(Adapted {
                    queries,
                    combine: Combine::Counts((lo..=hi).collect()),
                    rewritten: false,
                }));
            }
            if let Some((what, statement)) = cfg
                .exists
                .iter()
                .find_map(|[p, st]| Some((fill_of(p, "{what}", &q)?, st)))
            {
                return Ok(Some(Adapted {
                    queries: vec![ask(side_of(statement).replace("{what}", what))],
                    combine: Combine::Exists,
                    rewritten: false,
                }));
            }
            Ok(None)
        }
    }
}

/// The soft label over `student` answers from the teacher's outputs
/// (`probs`, one distribution over `teacher` answers per query). `None`
/// when the teacher's answers and the student's share nothing.
pub fn soft_label(
    combine: &Combine,
    probs: &[Vec<f32>],
    teacher: &Answers,
    student: &Answers,
) -> Option<Vec<f32>> {
    let mut out = vec![0.0f32; student.list.len()];
    let truth = teacher.id("true").unwrap_or(1) as usize;
    let p_true = |p: &Vec<f32>| p.get(truth).copied().unwrap_or(0.0);
    match combine {
        Combine::Direct => {
            let p = probs.first()?;
            for (i, a) in teacher.list.iter().enumerate() {
                if let Some(j) = student.id(a) {
                    out[j as usize] += p.get(i).copied().unwrap_or(0.0);
                }
            }
        }
        Combine::Counts(ks) => {
            for (k, p) in ks.iter().zip(probs) {
                let j = student.id(&k.to_string())?;
                out[j as usize] += p_true(p);
            }
        }
        Combine::Exists => {
            let t = p_true(probs.first()?);
            out[student.id("yes")? as usize] = t;
            out[student.id("no")? as usize] = 1.0 - t;
        }
    }
    let sum: f32 = out.iter().sum();
    if sum <= 0.0 || !sum.is_finite() {
        return None;
    }
    out.iter_mut().for_each(|x| *x /= sum);
    Some(out)
}
