//! The interpreter: executes a validated program over an initial state
//! (`IMAGE`, or `LEFT` and `RIGHT`), with image provenance through every
//! crop, deterministic modules here and the neural ones (LOC, VQA) behind
//! the [`Perception`] trait, recording a trace of every step.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;

use super::ast::{Arg, Program, Step};
use super::calls::{CallSlot, ModuleCall, Pointer};
use super::expr::{self, Val};
use super::trace::{StepTrace, Trace, TraceValue};
pub use super::value::{BoxesVal, ImageVal, Rect, ScoredBox, Value};
use crate::vocab::Slot;

/// The neural modules, as the interpreter sees them: an oracle, a network,
/// a TorchScript file...
pub trait Perception {
    /// Name and version for traces, e.g. `oracle` or `vqa@3`.
    fn name(&self, module: &str) -> String;
    /// LOC: boxes of `object` in `image` (its own pixel coordinates).
    fn loc(&mut self, image: &ImageVal, object: &str) -> Result<Vec<ScoredBox>, PerceptionError>;
    /// VQA: the answer to `question` about `image`.
    fn vqa(&mut self, image: &ImageVal, question: &str) -> Result<String, PerceptionError>;
}

/// Why a module gave no answer to a step (the step fails with it).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PerceptionError {
    /// A module asked for what it does not do (a LOC module asked a
    /// question).
    #[error("{module} is a {kind} module, not {asked}")]
    WrongSlot {
        /// `module@number`.
        module: String,
        /// What it is: LOC or VQA.
        kind: &'static str,
        /// What it was asked: LOC or VQA.
        asked: &'static str,
    },
    /// The oracle cannot answer from the scene graph.
    #[error("{0}")]
    Oracle(String),
    /// The module gave an empty answer distribution.
    #[error("{module} gave no answer distribution")]
    NoAnswer {
        /// `module@number`.
        module: String,
    },
    /// The module's worker failed (its own error's message: a network that
    /// did not load, a crash, a stopped batcher).
    #[error("{0}")]
    Worker(String),
    /// No module fills the slot (what to give instead).
    #[error("{0}")]
    NoModule(String),
}

impl PerceptionError {
    /// A LOC module asked a VQA question, or the other way round.
    pub fn wrong_slot(module: &str, kind: &'static str) -> PerceptionError {
        PerceptionError::WrongSlot {
            module: module.to_string(),
            kind,
            asked: if kind == "LOC" { "VQA" } else { "LOC" },
        }
    }
}

/// A step that failed, naming it.
#[derive(Debug, Clone, PartialEq, Serialize, thiserror::Error)]
#[error("line {line}: step {out}={module}: {message}")]
pub struct StepError {
    /// Line.
    pub line: usize,
    /// Output variable of the step.
    pub out: String,
    /// Module.
    pub module: String,
    /// What went wrong.
    pub message: String,
}

/// A run that stopped at a failing step, with the trace up to it.
#[derive(Debug)]
pub struct Failed {
    /// The step's error.
    pub error: StepError,
    /// Every step up to and including the failing one.
    pub trace: Trace,
}

/// The result of a run.
#[derive(Debug)]
pub struct Outcome {
    /// The final value (RESULT's, or the last step's).
    pub result: Option<Val>,
    /// Every step.
    pub trace: Trace,
}

/// `r`, in `img`'s own pixels, in its source image's pixels.
fn in_source(img: &ImageVal, r: Rect) -> Rect {
    Rect {
        x: img.rect.x + r.x,
        y: img.rect.y + r.y,
        w: r.w,
        h: r.h,
    }
}

/// The typed record of a VisProg module step on `img`.
fn call(
    slot: Slot,
    img: &ImageVal,
    pointers: &BTreeMap<String, Pointer>,
    text: &str,
    answer: serde_json::Value,
    module: String,
) -> ModuleCall {
    ModuleCall {
        slot: CallSlot::Module(slot),
        method: slot.as_str().to_string(),
        source: Some(img.source.clone()),
        rect: Some(img.rect),
        pointer: img.made_by.as_ref().and_then(|m| pointers.get(m)).cloned(),
        text: text.to_string(),
        answer,
        module,
    }
}

fn crop_rect(img: &ImageVal, r: Rect) -> ImageVal {
    let (w, h) = (img.pixels.width() as f64, img.pixels.height() as f64);
    let x0 = r.x.max(0.0).floor().min(w - 1.0).max(0.0);
    let y0 = r.y.max(0.0).floor().min(h - 1.0).max(0.0);
    let x1 = (r.x + r.w).min(w).ceil().max(x0 + 1.0);
    let y1 = (r.y + r.h).min(h).ceil().max(y0 + 1.0);
    let pixels = image::imageops::crop_imm(
        img.pixels.as_ref(),
        x0 as u32,
        y0 as u32,
        (x1 - x0) as u32,
        (y1 - y0) as u32,
    )
    .to_image();
    ImageVal {
        pixels: Arc::new(pixels),
        source: img.source.clone(),
        rect: Rect {
            x: img.rect.x + x0,
            y: img.rect.y + y0,
            w: x1 - x0,
            h: y1 - y0,
        },
        made_by: None,
    }
}

/// CROP and its directional forms.
pub fn crop(module: &str, image: &ImageVal, boxes: Option<&BoxesVal>) -> ImageVal {
    let (w, h) = (image.pixels.width() as f64, image.pixels.height() as f64);
    let whole = Rect {
        x: 0.0,
        y: 0.0,
        w,
        h,
    };
    let Some(b) = boxes.and_then(|b| b.boxes.first().map(|x| (x.rect, b.region))) else {
        return crop_rect(image, whole);
    };
    let (r, region) = b;
    let (cx, cy) = r.centre();
    let rect = match module {
        "CROP_LEFTOF" => Rect {
            x: 0.0,
            y: 0.0,
            w: cx,
            h,
        },
        "CROP_RIGHTOF" => Rect {
            x: cx,
            y: 0.0,
            w: w - cx,
            h,
        },
        "CROP_ABOVE" => Rect {
            x: 0.0,
            y: 0.0,
            w,
            h: cy,
        },
        "CROP_BELOW" => Rect {
            x: 0.0,
            y: cy,
            w,
            h: h - cy,
        },
        _ if region => r,
        // CROP and CROP_FRONTOF/INFRONT/INFRONTOF/BEHIND/AHEAD: the box
        // enlarged 1.5x about its centre.
        _ => Rect {
            x: cx - 0.75 * r.w,
            y: cy - 0.75 * r.h,
            w: 1.5 * r.w,
            h: 1.5 * r.h,
        },
    };
    crop_rect(image, rect)
}

fn region(image: &ImageVal, which: &str) -> Option<Rect> {
    let (w, h) = (image.pixels.width() as f64, image.pixels.height() as f64);
    Some(match which {
        "TOP" => Rect {
            x: 0.0,
            y: 0.0,
            w,
            h: h / 2.0,
        },
        "BOTTOM" => Rect {
            x: 0.0,
            y: h / 2.0,
            w,
            h: h / 2.0,
        },
        "LEFT" => Rect {
            x: 0.0,
            y: 0.0,
            w: w / 2.0,
            h,
        },
        "RIGHT" => Rect {
            x: w / 2.0,
            y: 0.0,
            w: w / 2.0,
            h,
        },
        _ => return None,
    })
}

fn arg<'a>(step: &'a Step, name: &str) -> Option<&'a Arg> {
    step.args
        .iter()
        .find(|a| a.name == name)
        .or_else(|| step.args.iter().find(|a| a.name.eq_ignore_ascii_case(name)))
        .map(|a| &a.value)
}

/// Runs `program` from `inputs` (e.g. `IMAGE`), with `vars` bound for
/// EVAL-only programs and `perception` for LOC and VQA.
pub fn run(
    program: &Program,
    inputs: &BTreeMap<String, ImageVal>,
    vars: &BTreeMap<String, Val>,
    perception: Option<&mut dyn Perception>,
) -> Result<Outcome, Box<Failed>> {
    let mut perception = perception;
    let mut env: BTreeMap<String, Value> = BTreeMap::new();
    for (k, v) in inputs {
        env.insert(k.clone(), Value::Image(v.clone()));
    }
    for (k, v) in vars {
        env.insert(k.clone(), Value::Scalar(v.clone()));
    }
    let mut trace = Trace::default();
    let mut result = None;
    // The pointer of each image a crop of LOC's boxes made, by its step.
    let mut pointers: BTreeMap<String, Pointer> = BTreeMap::new();
    let mut calls: Vec<ModuleCall> = Vec::new();
    for step in &program.steps {
        let started = Instant::now();
        let fail = |message: String| StepError {
            line: step.line,
            out: step.out.clone(),
            module: step.module.clone(),
            message,
        };
        let get = |name: &str| -> Result<&Value, StepError> {
            match arg(step, name) {
                Some(Arg::Var(v)) => env
                    .get(v)
                    .ok_or_else(|| fail(format!("variable `{v}` has no value"))),
                Some(_) => Err(fail(format!("`{name}` must be a variable"))),
                None => Err(fail(format!("missing argument `{name}`"))),
            }
        };
        let text = |name: &str| -> Result<String, StepError> {
            match arg(step, name) {
                Some(Arg::Str(s)) => Ok(s.clone()),
                Some(Arg::Num(n)) => Ok(n.clone()),
                Some(Arg::Var(v)) => match env.get(v) {
                    Some(Value::Scalar(s)) => Ok(s.to_answer()),
                    _ => Err(fail(format!("`{v}` is not text"))),
                },
                _ => Err(fail(format!("`{name}` must be text"))),
            }
        };
        let image = |name: &str| -> Result<ImageVal, StepError> {
            match get(name)? {
                Value::Image(i) => Ok(i.clone()),
                _ => Err(fail(format!("`{name}` is not an image"))),
            }
        };
        let mut module_name = step.module.clone();
        let mut inputs_trace: Vec<(String, TraceValue)> = Vec::new();
        let out: Result<Value, StepError> = (|| match step.module.as_str() {
            "LOC" => {
                let img = image("image")?;
                let object = text("object")?;
                inputs_trace.push(("image".into(), TraceValue::of_image(&img)));
                inputs_trace.push(("object".into(), TraceValue::text(object.clone())));
                if let Some(r) = region(&img, &object) {
                    return Ok(Value::Boxes(BoxesVal {
                        boxes: vec![ScoredBox {
                            rect: r,
                            score: 1.0,
                        }],
                        object,
                        image: img,
                        region: true,
                    }));
                }
                let p = perception.as_deref_mut().ok_or_else(|| {
                    fail("LOC needs a module: give --modules (oracle, or LOC=loc@REF)".into())
                })?;
                module_name = format!("LOC ({})", p.name("LOC"));
                let boxes = p.loc(&img, &object).map_err(|e| fail(e.to_string()))?;
                let found: Vec<Rect> = boxes.iter().map(|b| in_source(&img, b.rect)).collect();
                calls.push(call(
                    Slot::Loc,
                    &img,
                    &pointers,
                    &object,
                    serde_json::json!(found),
                    p.name("LOC"),
                ));
                Ok(Value::Boxes(BoxesVal {
                    boxes,
                    object,
                    image: img,
                    region: false,
                }))
            }
            "VQA" => {
                let img = image("image")?;
                let q = text("question")?;
                inputs_trace.push(("image".into(), TraceValue::of_image(&img)));
                inputs_trace.push(("question".into(), TraceValue::text(q.clone())));
                let p = perception.as_deref_mut().ok_or_else(|| {
                    fail("VQA needs a module: give --modules (oracle, or VQA=vqa@REF)".into())
                })?;
                module_name = format!("VQA ({})", p.name("VQA"));
                let a = p.vqa(&img, &q).map_err(|e| fail(e.to_string()))?;
                calls.push(call(
                    Slot::Vqa,
                    &img,
                    &pointers,
                    &q,
                    serde_json::json!(a),
                    p.name("VQA"),
                ));
                Ok(Value::Scalar(Val::Text(a)))
            }
            "COUNT" => match get("box")? {
                Value::Boxes(b) => {
                    inputs_trace.push(("box".into(), TraceValue::of_boxes(b)));
                    Ok(Value::Scalar(Val::Num(b.boxes.len() as f64)))
                }
                _ => Err(fail("`box` is not boxes".into())),
            },
            "EVAL" => {
                let expr_text = text("expr")?;
                let expr = expr::parse(&expr_text).map_err(|e| fail(e.message))?;
                let mut bound = BTreeMap::new();
                for r in expr.refs() {
                    let v = match env.get(&r) {
                        Some(Value::Scalar(Val::Text(t))) => Val::from_text(t),
                        Some(Value::Scalar(v)) => v.clone(),
                        Some(_) => {
                            return Err(fail(format!("{{{r}}} is not a number, text or boolean")))
                        }
                        None => return Err(fail(format!("{{{r}}} has no value"))),
                    };
                    inputs_trace.push((r.clone(), TraceValue::scalar(v.clone())));
                    bound.insert(r, v);
                }
                inputs_trace.push(("expr".into(), TraceValue::text(expr_text)));
                Ok(Value::Scalar(expr.eval(&bound).map_err(&fail)?))
            }
            "RESULT" => {
                let v = get("var")?.clone();
                if let Value::Scalar(s) = &v {
                    result = Some(match s {
                        Val::Text(t) => Val::from_text(t),
                        other => other.clone(),
                    });
                }
                Ok(v)
            }
            m if super::validate::CROPS.contains(&m) => {
                let img = image("image")?;
                let boxes = match get("box")? {
                    Value::Boxes(b) => b.clone(),
                    _ => return Err(fail("`box` is not boxes".into())),
                };
                inputs_trace.push(("image".into(), TraceValue::of_image(&img)));
                inputs_trace.push(("box".into(), TraceValue::of_boxes(&boxes)));
                let mut c = crop(m, &img, Some(&boxes));
                c.made_by = Some(step.out.clone());
                // A crop of the boxes LOC found for a named object: that
                // object and its first box point at what later calls see.
                if let (false, Some(first)) = (boxes.region, boxes.boxes.first()) {
                    if !boxes.object.is_empty() {
                        pointers.insert(
                            step.out.clone(),
                            Pointer {
                                object: boxes.object.clone(),
                                rect: in_source(&boxes.image, first.rect),
                            },
                        );
                    }
                }
                Ok(Value::Image(c))
            }
            m => Err(fail(format!("unknown module `{m}`"))),
        })();
        let ms = started.elapsed().as_secs_f64() * 1e3;
        match out {
            Ok(v) => {
                trace.steps.push(StepTrace {
                    line: step.line,
                    out: step.out.clone(),
                    module: module_name,
                    inputs: inputs_trace,
                    output: TraceValue::of(&v),
                    ms,
                    error: None,
                });
                env.insert(step.out.clone(), v);
            }
            Err(e) => {
                trace.steps.push(StepTrace {
                    line: step.line,
                    out: step.out.clone(),
                    module: module_name,
                    inputs: inputs_trace,
                    output: TraceValue::Missing,
                    ms,
                    error: Some(e.message.clone()),
                });
                trace.calls = calls;
                return Err(Box::new(Failed { error: e, trace }));
            }
        }
    }
    if result.is_none() {
        if let Some(Value::Scalar(s)) = program.steps.last().and_then(|s| env.get(&s.out)) {
            result = Some(s.clone());
        }
    }
    trace.result = result.clone();
    trace.calls = calls;
    Ok(Outcome { result, trace })
}

/// LOC and VQA from different providers (e.g. oracle LOC with a trained VQA).
pub struct Composite {
    /// Answers LOC.
    pub loc: Box<dyn Perception>,
    /// Answers VQA.
    pub vqa: Box<dyn Perception>,
}

impl Perception for Composite {
    fn name(&self, module: &str) -> String {
        match module {
            "LOC" => self.loc.name(module),
            _ => self.vqa.name(module),
        }
    }
    fn loc(&mut self, image: &ImageVal, object: &str) -> Result<Vec<ScoredBox>, PerceptionError> {
        self.loc.loc(image, object)
    }
    fn vqa(&mut self, image: &ImageVal, question: &str) -> Result<String, PerceptionError> {
        self.vqa.vqa(image, question)
    }
}
