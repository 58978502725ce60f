//! The `annotated` generator: GQA `semantic` programs converted to VisProg
//! programs, step by step (select -> LOC, relate -> CROP_* then LOC, filter
//! -> LOC of an attributed name or a half-image CROP, query/verify/choose
//! -> CROP then VQA, exist -> COUNT, and/or/same/different/common ->
//! EVAL). Some VQA questions leave the object implicit after a CROP ("What
//! color is it?"), as LLM-written programs do, so that the visual pointer
//! prompt has something to do.

use crate::data::gqa::{Question, SemanticOp};

/// Why a question could not be converted.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("question {id}: step {step} `{operation}`: {message}")]
pub struct ConvertError {
    /// Question id.
    pub id: String,
    /// Index of the semantic step.
    pub step: usize,
    /// Its operation.
    pub operation: String,
    /// Why.
    pub message: String,
}

#[derive(Debug, Clone)]
enum R {
    /// Objects: LOC's boxes on an image.
    Objs {
        query: String,
        boxes: String,
        image: String,
    },
    /// A region that holds an unnamed object (relate with `_`).
    Region { image: String },
    /// A count whose being > 0 is the truth.
    Exists { count: String },
    /// A text answer (yes/no, a name, ...).
    Answer { var: String },
}

struct B {
    lines: Vec<String>,
    boxes: usize,
    images: usize,
    answers: usize,
    implicit: bool,
}

impl B {
    fn loc(&mut self, image: &str, object: &str) -> String {
        let v = format!("BOX{}", self.boxes);
        self.boxes += 1;
        self.lines
            .push(format!("{v}=LOC(image={image},object={})", quote(object)));
        v
    }
    fn crop(&mut self, module: &str, image: &str, boxes: &str) -> String {
        let v = format!("IMAGE{}", self.images);
        self.images += 1;
        self.lines
            .push(format!("{v}={module}(image={image},box={boxes})"));
        v
    }
    fn answer(&mut self, rhs: String) -> String {
        let v = format!("ANSWER{}", self.answers);
        self.answers += 1;
        self.lines.push(format!("{v}={rhs}"));
        v
    }
    fn vqa(&mut self, image: &str, question: &str) -> String {
        self.answer(format!("VQA(image={image},question={})", quote(question)))
    }
    fn eval(&mut self, expr: &str) -> String {
        self.answer(format!("EVAL(expr=\"{expr}\")"))
    }
}

fn quote(s: &str) -> String {
    if super::ast::writable(s, '\'') {
        format!("'{s}'")
    } else {
        format!("\"{s}\"")
    }
}

/// The name before ` (ids)` in an argument, trimmed.
fn name_of(arg: &str) -> &str {
    arg.split(" (").next().unwrap_or("").trim()
}

fn crop_for(rel: &str, subject_is_result: bool) -> &'static str {
    let rel = rel.trim();
    let flip = |a: &'static str, b: &'static str| if subject_is_result { a } else { b };
    match rel {
        "to the left of" | "left of" => flip("CROP_LEFTOF", "CROP_RIGHTOF"),
        "to the right of" | "right of" => flip("CROP_RIGHTOF", "CROP_LEFTOF"),
        "above" | "on top of" => flip("CROP_ABOVE", "CROP_BELOW"),
        "below" | "under" | "beneath" => flip("CROP_BELOW", "CROP_ABOVE"),
        "behind" => flip("CROP_BEHIND", "CROP_FRONTOF"),
        "in front of" => flip("CROP_FRONTOF", "CROP_BEHIND"),
        _ => "CROP",
    }
}

fn rel_word(rel: &str) -> String {
    rel.trim()
        .trim_start_matches("to the ")
        .trim_end_matches(" of")
        .to_string()
}

fn truth(r: &R) -> Option<String> {
    match r {
        R::Exists { count } => Some(format!("{{{count}}} > 0")),
        R::Answer { var } => Some(format!("{{{var}}}")),
        _ => None,
    }
}

/// Converts a GQA question to a VisProg program (GQA programs end in
/// `FINAL_RESULT=RESULT(...)`). `implicit` words the first attribute
/// question after a CROP without naming the object.
pub fn convert(q: &Question, implicit: bool) -> Result<String, ConvertError> {
    let mut b = B {
        lines: vec![],
        boxes: 0,
        images: 0,
        answers: 0,
        implicit,
    };
    let mut rs: Vec<R> = Vec::new();
    for (i, op) in q.semantic.iter().enumerate() {
        let err = |m: String| ConvertError {
            id: q.id.clone(),
            step: i,
            operation: op.operation.clone(),
            message: m,
        };
        let dep = |k: usize| -> Result<R, ConvertError> {
            let d = *op
                .dependencies
                .get(k)
                .ok_or_else(|| err(format!("needs dependency {k}")))?;
            rs.get(d)
                .cloned()
                .ok_or_else(|| err(format!("dependency {d} is not an earlier step")))
        };
        let objs = |r: R| -> Result<(String, String, String), ConvertError> {
            match r {
                R::Objs {
                    query,
                    boxes,
                    image,
                } => Ok((query, boxes, image)),
                _ => Err(err("needs objects from select, relate or filter".into())),
            }
        };
        let r = step(&mut b, q, op, &dep, &objs, &err)?;
        rs.push(r);
    }
    let last = rs.last().cloned().ok_or_else(|| ConvertError {
        id: q.id.clone(),
        step: 0,
        operation: String::new(),
        message: "empty semantic program".into(),
    })?;
    let var = match last {
        R::Answer { var } => var,
        R::Exists { count } => b.eval(&format!("'yes' if {{{count}}} > 0 else 'no'")),
        R::Objs { boxes, .. } => b.answer(format!("COUNT(box={boxes})")),
        R::Region { .. } => {
            return Err(ConvertError {
                id: q.id.clone(),
                step: rs.len() - 1,
                operation: "relate".into(),
                message: "program ends in a region, not an answer".into(),
            })
        }
    };
    b.lines.push(format!("FINAL_RESULT=RESULT(var={var})"));
    Ok(b.lines.join("\n"))
}

#[allow(clippy::too_many_arguments)]
fn step(
    b: &mut B,
    q: &Question,
    op: &SemanticOp,
    dep: &dyn Fn(usize) -> Result<R, ConvertError>,
    objs: &dyn Fn(R) -> Result<(String, String, String), ConvertError>,
    err: &dyn Fn(String) -> ConvertError,
) -> Result<R, ConvertError> {
    let operation = op.operation.trim();
    let (kind, attr) = operation.split_once(' ').unwrap_or((operation, ""));
    let arg = op.argument.trim();
    Ok(match (kind, attr) {
        ("select", _) => {
            let name = name_of(arg).to_string();
            let boxes = b.loc("IMAGE", &name);
            R::Objs {
                query: name,
                boxes,
                image: "IMAGE".into(),
            }
        }
        ("relate", _) => {
            let (_, boxes, image) = objs(dep(0)?)?;
            let parts: Vec<&str> = name_of(arg).split(',').collect();
            let [name, rel, dir] = parts[..] else {
                return Err(err(format!("argument {arg:?} is not name,relation,s|o")));
            };
            let crop = b.crop(crop_for(rel, dir.trim() != "o"), &image, &boxes);
            if name.trim() == "_" {
                R::Region { image: crop }
            } else {
                let boxes = b.loc(&crop, name.trim());
                R::Objs {
                    query: name.trim().into(),
                    boxes,
                    image: crop,
                }
            }
        }
        ("filter", "hposition") | ("filter", "vposition") => {
            let (query, _, image) = objs(dep(0)?)?;
            let side = name_of(arg).to_uppercase();
            let half = b.loc(&image, &side);
            let crop = b.crop("CROP", &image, &half);
            let boxes = b.loc(&crop, &query);
            R::Objs {
                query,
                boxes,
                image: crop,
            }
        }
        ("filter", _) => {
            let (query, _, image) = objs(dep(0)?)?;
            let v = name_of(arg);
            let query = if v.starts_with("not(") {
                query
            } else {
                format!("{v} {query}")
            };
            let boxes = b.loc(&image, &query);
            R::Objs {
                query,
                boxes,
                image,
            }
        }
        ("query", _) => {
            let what = arg;
            if let R::Region { image } = dep(0)? {
                let v = b.vqa(&image, &q.question);
                return Ok(R::Answer { var: v });
            }
            let (query, boxes, image) = objs(dep(0)?)?;
            match what {
                "hposition" | "vposition" => {
                    let (a, x, y) = if what == "hposition" {
                        ("LEFT", "left", "right")
                    } else {
                        ("TOP", "top", "bottom")
                    };
                    let half = b.loc("IMAGE", a);
                    let crop = b.crop("CROP", "IMAGE", &half);
                    let found = b.loc(&crop, &query);
                    let n = b.answer(format!("COUNT(box={found})"));
                    let _ = (boxes, image);
                    R::Answer {
                        var: b.eval(&format!("'{x}' if {{{n}}} > 0 else '{y}'")),
                    }
                }
                _ => {
                    let crop = b.crop("CROP", &image, &boxes);
                    let question = match (what, std::mem::replace(&mut b.implicit, false)) {
                        ("name", true) => "What is this?".to_string(),
                        ("name", false) => format!("What is this {query}?"),
                        (a, true) => format!("What {a} is it?"),
                        (a, false) => format!("What {a} is the {query}?"),
                    };
                    R::Answer {
                        var: b.vqa(&crop, &question),
                    }
                }
            }
        }
        ("verify", "rel") => {
            let (_, boxes, image) = objs(dep(0)?)?;
            let parts: Vec<&str> = name_of(arg).split(',').collect();
            let [name, rel, dir] = parts[..] else {
                return Err(err(format!("argument {arg:?} is not name,relation,s|o")));
            };
            let crop = b.crop(crop_for(rel, dir.trim() != "o"), &image, &boxes);
            let found = b.loc(&crop, name.trim());
            let n = b.answer(format!("COUNT(box={found})"));
            R::Answer {
                var: b.eval(&format!("'yes' if {{{n}}} > 0 else 'no'")),
            }
        }
        ("verify", _) => {
            let (query, boxes, image) = objs(dep(0)?)?;
            let crop = b.crop("CROP", &image, &boxes);
            let v = name_of(arg);
            let question = if std::mem::replace(&mut b.implicit, false) {
                format!("Is it {v}?")
            } else {
                format!("Is the {query} {v}?")
            };
            R::Answer {
                var: b.vqa(&crop, &question),
            }
        }
        ("exist", _) => {
            let (_, boxes, _) = objs(dep(0)?)?;
            R::Exists {
                count: b.answer(format!("COUNT(box={boxes})")),
            }
        }
        ("count", _) => {
            let (_, boxes, _) = objs(dep(0)?)?;
            R::Answer {
                var: b.answer(format!("COUNT(box={boxes})")),
            }
        }
        ("and", _) | ("or", _) => {
            let x = truth(&dep(0)?).ok_or_else(|| err("needs two truth values".into()))?;
            let y = truth(&dep(1)?).ok_or_else(|| err("needs two truth values".into()))?;
            R::Answer {
                var: b.eval(&format!("'yes' if {x} {kind} {y} else 'no'")),
            }
        }
        ("choose", "rel") => {
            let (_, boxes, image) = objs(dep(0)?)?;
            let parts: Vec<&str> = name_of(arg).split(',').collect();
            let [name, rels, dir] = parts[..] else {
                return Err(err(format!("argument {arg:?} is not name,rel1|rel2,s|o")));
            };
            let (r1, r2) = rels
                .split_once('|')
                .ok_or_else(|| err(format!("{rels:?} is not rel1|rel2")))?;
            let crop = b.crop(crop_for(r1, dir.trim() != "o"), &image, &boxes);
            let found = b.loc(&crop, name.trim());
            let n = b.answer(format!("COUNT(box={found})"));
            R::Answer {
                var: b.eval(&format!(
                    "'{}' if {{{n}}} > 0 else '{}'",
                    rel_word(r1),
                    rel_word(r2)
                )),
            }
        }
        ("choose", _) => {
            let (query, boxes, image) = objs(dep(0)?)?;
            let crop = b.crop("CROP", &image, &boxes);
            let (x, y) = name_of(arg)
                .split_once('|')
                .ok_or_else(|| err(format!("{arg:?} is not a|b")))?;
            let question = if std::mem::replace(&mut b.implicit, false) {
                format!("Is it {x} or {y}?")
            } else {
                format!("Is the {query} {x} or {y}?")
            };
            R::Answer {
                var: b.vqa(&crop, &question),
            }
        }
        ("same", _) | ("different", _) | ("common", _) => {
            let (qa, ba, ia) = objs(dep(0)?)?;
            let (qb, bb, ib) = objs(dep(1)?)?;
            let ca = b.crop("CROP", &ia, &ba);
            let cb = b.crop("CROP", &ib, &bb);
            let attrs: Vec<&str> = if kind == "common" {
                vec!["color", "size"]
            } else {
                vec![attr.trim()]
            };
            let mut pairs = Vec::new();
            for a in &attrs {
                let x = b.vqa(&ca, &format!("What {a} is the {qa}?"));
                let y = b.vqa(&cb, &format!("What {a} is the {qb}?"));
                pairs.push((x, y));
            }
            let (x, y) = &pairs[0];
            let expr = match kind {
                "same" => format!("'yes' if {{{x}}} == {{{y}}} else 'no'"),
                "different" => format!("'yes' if {{{x}}} != {{{y}}} else 'no'"),
                _ => format!("'{}' if {{{x}}} == {{{y}}} else '{}'", attrs[0], attrs[1]),
            };
            R::Answer { var: b.eval(&expr) }
        }
        _ => return Err(err(format!("the converter has no rule for `{operation}`"))),
    })
}
