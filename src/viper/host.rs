//! The host side of the `ImagePatch` API: patches with their provenance,
//! the methods and functions a program calls, each neural one a call to
//! the LOC or VQA slot through `Perception` (or, `llm_query`, the
//! OpenAI-compatible endpoint of `VPD_LLM_BASE_URL`), recorded as a
//! `ModuleCall`.
//!
//! Coordinates are ViperGPT's: `left`/`right` from the image's left edge,
//! `lower`/`upper` from its *bottom* edge (`lower` < `upper`), in pixels of
//! the source image; inside vpd a patch is a rectangle in the source's
//! top-left pixel coordinates, as VisProg's crops are.

use std::collections::HashMap;
use std::sync::Arc;

use monty_types::{
    DictPairs, ExcType, MontyClassInstance, MontyClassType, MontyException, MontyObject, MontyType,
    MontyUuid,
};

pub use crate::program::calls::{CallSlot, ModuleCall, Pointer};
use crate::program::interp::{ImageVal, Perception, Rect};
use crate::vocab::Slot;

/// A patch: a rectangle of one input image.
#[derive(Debug, Clone)]
pub struct Patch {
    /// The input (parameter) name of its source image.
    pub source: String,
    /// Its rectangle in the source's pixel coordinates.
    pub rect: Rect,
    /// The `find` that made it, when one did.
    pub pointer: Option<Pointer>,
}

/// The API's state for one run of one program.
pub struct Host<'a> {
    perception: &'a mut dyn Perception,
    inputs: HashMap<String, ImageVal>,
    images: HashMap<MontyUuid, String>,
    patches: HashMap<MontyUuid, Patch>,
    patch_class: MontyClassType,
    image_class: MontyClassType,
    next: u64,
    /// Every module call so far.
    pub calls: Vec<ModuleCall>,
    /// The endpoint `llm_query` asks, when one is set.
    pub llm: Option<crate::program::llm::LlmConfig>,
}

/// An exception raised in the program (a wrong argument, a missing
/// module), as CPython would raise it.
pub fn exception(t: ExcType, message: impl Into<String>) -> MontyException {
    MontyException::new(t, Some(message.into()))
}

fn uuid(n: u64, kind: u8) -> MontyUuid {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&n.to_be_bytes());
    b[8] = 0x80 | kind;
    b[6] = 0x40;
    MontyUuid::from_bytes(b)
}

fn class(name: &str, kind: u8) -> MontyClassType {
    MontyClassType {
        name: name.into(),
        id: uuid(0, kind),
        host_defined: true,
        is_dataclass: false,
        attrs: DictPairs::from(vec![]),
    }
}

/// The id of the `ImagePatch` class the programs see.
pub fn patch_class_id() -> MontyUuid {
    uuid(0, 1)
}

fn key(s: &str) -> MontyObject {
    MontyObject::String(s.into())
}

impl<'a> Host<'a> {
    /// A host for a program whose parameters are bound to `inputs`.
    pub fn new(perception: &'a mut dyn Perception, inputs: HashMap<String, ImageVal>) -> Self {
        Host {
            perception,
            inputs,
            images: HashMap::new(),
            patches: HashMap::new(),
            patch_class: class("ImagePatch", 1),
            image_class: class("Image", 2),
            next: 1,
            calls: Vec::new(),
            llm: None,
        }
    }

    /// The `ImagePatch` class object the program is given.
    pub fn patch_type(&self) -> MontyObject {
        MontyObject::Type(MontyType::Instance(Box::new(self.patch_class.clone())))
    }

    /// The value of parameter `name`: a host image (an opaque object with
    /// `width` and `height`, as ViperGPT's tensors are only ever handed to
    /// `ImagePatch`).
    pub fn image(&mut self, name: &str) -> Option<MontyObject> {
        let img = self.inputs.get(name)?;
        let (w, h) = (img.pixels.width(), img.pixels.height());
        self.next += 1;
        let id = uuid(self.next, 2);
        self.images.insert(id, name.to_string());
        Some(MontyObject::ClassInstance(Box::new(MontyClassInstance {
            class_type: self.image_class.clone(),
            instance_id: id,
            attrs: DictPairs::from(vec![
                (key("width"), MontyObject::Int(w as i64)),
                (key("height"), MontyObject::Int(h as i64)),
            ]),
        })))
    }

    fn height_of(&self, source: &str) -> f64 {
        self.inputs
            .get(source)
            .map_or(0.0, |i| i.pixels.height() as f64)
    }

    /// A new patch as the program's object.
    fn patch_object(&mut self, p: Patch) -> MontyObject {
        let h = self.height_of(&p.source);
        let r = p.rect;
        let (left, right) = (r.x.round() as i64, (r.x + r.w).round() as i64);
        let (lower, upper) = ((h - r.y - r.h).round() as i64, (h - r.y).round() as i64);
        self.next += 1;
        let id = uuid(self.next, 1);
        self.patches.insert(id, p);
        MontyObject::ClassInstance(Box::new(MontyClassInstance {
            class_type: self.patch_class.clone(),
            instance_id: id,
            attrs: DictPairs::from(vec![
                (key("left"), MontyObject::Int(left)),
                (key("lower"), MontyObject::Int(lower)),
                (key("right"), MontyObject::Int(right)),
                (key("upper"), MontyObject::Int(upper)),
                (key("width"), MontyObject::Int(right - left)),
                (key("height"), MontyObject::Int(upper - lower)),
                (
                    key("horizontal_center"),
                    MontyObject::Float((left + right) as f64 / 2.0),
                ),
                (
                    key("vertical_center"),
                    MontyObject::Float((lower + upper) as f64 / 2.0),
                ),
            ]),
        }))
    }

    /// The patch a program's object stands for.
    pub fn patch_of(&self, o: &MontyObject) -> Option<&Patch> {
        match o {
            MontyObject::ClassInstance(i) => self.patches.get(&i.instance_id),
            _ => None,
        }
    }

    /// The patch with the host id `id`.
    pub fn patch_by_id(&self, id: MontyUuid) -> Option<Patch> {
        self.patches.get(&id).cloned()
    }

    /// The pixels of a patch, with its provenance, as the modules take them.
    fn pixels(&self, p: &Patch) -> Result<ImageVal, MontyException> {
        let src = self.inputs.get(&p.source).ok_or_else(|| {
            exception(
                ExcType::ValueError,
                format!("no input image `{}`", p.source),
            )
        })?;
        let (w, h) = (src.pixels.width() as f64, src.pixels.height() as f64);
        let x0 = p.rect.x.clamp(0.0, (w - 1.0).max(0.0));
        let y0 = p.rect.y.clamp(0.0, (h - 1.0).max(0.0));
        let cw = p.rect.w.min(w - x0).max(1.0);
        let ch = p.rect.h.min(h - y0).max(1.0);
        let pixels = image::imageops::crop_imm(
            src.pixels.as_ref(),
            x0 as u32,
            y0 as u32,
            cw as u32,
            ch as u32,
        )
        .to_image();
        Ok(ImageVal {
            pixels: Arc::new(pixels),
            source: p.source.clone(),
            rect: Rect {
                x: x0,
                y: y0,
                w: cw,
                h: ch,
            },
            made_by: p.pointer.as_ref().map(|m| format!("find({:?})", m.object)),
        })
    }

    /// The rectangle (source, top-left pixels) of ViperGPT coordinates
    /// `left, lower, right, upper` given relative to patch `p`.
    fn sub_rect(&self, p: &Patch, c: [f64; 4]) -> Result<Rect, MontyException> {
        let [left, lower, right, upper] = c;
        if !(left < right && lower < upper) {
            return Err(exception(
                ExcType::ValueError,
                format!(
                    "crop({left}, {lower}, {right}, {upper}): needs left < right and lower < upper"
                ),
            ));
        }
        let clamp = |v: f64, hi: f64| v.clamp(0.0, hi);
        let (l, r) = (clamp(left, p.rect.w), clamp(right, p.rect.w));
        let (lo, up) = (clamp(lower, p.rect.h), clamp(upper, p.rect.h));
        Ok(Rect {
            x: p.rect.x + l,
            y: p.rect.y + (p.rect.h - up),
            w: (r - l).max(1.0),
            h: (up - lo).max(1.0),
        })
    }

    fn record(
        &mut self,
        slot: Slot,
        method: &str,
        p: &Patch,
        text: &str,
        answer: serde_json::Value,
    ) {
        let module = self.perception.name(slot.as_str());
        self.calls.push(ModuleCall {
            slot: CallSlot::Module(slot),
            method: method.into(),
            source: Some(p.source.clone()),
            rect: Some(p.rect),
            pointer: p.pointer.clone(),
            text: text.into(),
            answer,
            module,
        });
    }

    /// LOC on a patch: the patches of `object` it finds, best first.
    fn find(
        &mut self,
        p: &Patch,
        object: &str,
        method: &str,
    ) -> Result<Vec<Patch>, MontyException> {
        let img = self.pixels(p)?;
        let boxes = self
            .perception
            .loc(&img, object)
            .map_err(|e| exception(ExcType::RuntimeError, format!("LOC: {e}")))?;
        let found: Vec<Patch> = boxes
            .iter()
            .map(|b| {
                let rect = Rect {
                    x: img.rect.x + b.rect.x,
                    y: img.rect.y + b.rect.y,
                    w: b.rect.w.max(1.0),
                    h: b.rect.h.max(1.0),
                };
                Patch {
                    source: p.source.clone(),
                    rect,
                    pointer: Some(Pointer {
                        object: object.to_string(),
                        rect,
                    }),
                }
            })
            .collect();
        let answer = serde_json::json!(found.iter().map(|f| f.rect).collect::<Vec<_>>());
        self.record(Slot::Loc, method, p, object, answer);
        Ok(found)
    }

    /// VQA on a patch.
    fn ask(&mut self, p: &Patch, question: &str, method: &str) -> Result<String, MontyException> {
        let img = self.pixels(p)?;
        let a = self
            .perception
            .vqa(&img, question)
            .map_err(|e| exception(ExcType::RuntimeError, format!("VQA: {e}")))?;
        self.record(Slot::Vqa, method, p, question, serde_json::json!(a));
        Ok(a)
    }

    /// `ImagePatch(image[, left, lower, right, upper])`.
    pub fn construct(&mut self, args: &[MontyObject]) -> Result<MontyObject, MontyException> {
        let base = match args.first() {
            Some(MontyObject::ClassInstance(i)) => {
                if let Some(name) = self.images.get(&i.instance_id) {
                    let img = &self.inputs[name];
                    Patch {
                        source: name.clone(),
                        rect: img.rect,
                        pointer: None,
                    }
                } else if let Some(p) = self.patches.get(&i.instance_id) {
                    p.clone()
                } else {
                    return Err(exception(ExcType::TypeError, "ImagePatch() takes an image"));
                }
            }
            _ => return Err(exception(ExcType::TypeError, "ImagePatch() takes an image")),
        };
        let patch = match args.len() {
            1 => base,
            5 => {
                let c = coords(&args[1..5])?;
                Patch {
                    rect: self.sub_rect(&base, c)?,
                    ..base
                }
            }
            n => {
                return Err(exception(
                    ExcType::TypeError,
                    format!("ImagePatch() takes an image and optionally left, lower, right, upper ({n} arguments given)"),
                ))
            }
        };
        Ok(self.patch_object(patch))
    }

    /// A method call on a patch.
    pub fn method(
        &mut self,
        p: Patch,
        name: &str,
        args: &[MontyObject],
        kwargs: &[(MontyObject, MontyObject)],
    ) -> Result<MontyObject, MontyException> {
        let text = |i: usize, what: &str| -> Result<String, MontyException> {
            match args.get(i) {
                Some(MontyObject::String(s)) => Ok(s.clone()),
                _ => Err(exception(
                    ExcType::TypeError,
                    format!("{name}() needs {what} as a string"),
                )),
            }
        };
        match name {
            "find" => {
                let object = text(0, "the object's name")?;
                let found = self.find(&p, &object, "find")?;
                Ok(MontyObject::List(
                    found.into_iter().map(|f| self.patch_object(f)).collect(),
                ))
            }
            "exists" => {
                let object = text(0, "the object's name")?;
                Ok(MontyObject::Bool(
                    !self.find(&p, &object, "exists")?.is_empty(),
                ))
            }
            "verify_property" => {
                let (object, property) = (text(0, "the object's name")?, text(1, "the property")?);
                let a = self.ask(&p, &format!("Is the {object} {property}?"), name)?;
                Ok(MontyObject::Bool(a.trim().eq_ignore_ascii_case("yes")))
            }
            "best_text_match" => {
                let options: Vec<String> = match args.first() {
                    Some(MontyObject::List(xs)) | Some(MontyObject::Tuple(xs)) => xs
                        .iter()
                        .filter_map(|x| match x {
                            MontyObject::String(s) => Some(s.clone()),
                            _ => None,
                        })
                        .collect(),
                    _ => vec![],
                };
                if options.is_empty() {
                    return Err(exception(
                        ExcType::TypeError,
                        "best_text_match() needs a list of strings",
                    ));
                }
                // Two options: GQA's choose question ("Is the circle red or
                // blue?"); more: one yes/no question an option, the first
                // answered yes (else the first option).
                let subject = p
                    .pointer
                    .as_ref()
                    .map_or("it".to_string(), |m| format!("the {}", m.object));
                if options.len() == 2 {
                    let q = format!("Is {subject} {} or {}?", options[0], options[1]);
                    let a = self.ask(&p, &q, name)?.trim().to_lowercase();
                    let hit = options
                        .iter()
                        .find(|o| o.to_lowercase() == a)
                        .or_else(|| options.iter().find(|o| a.contains(&o.to_lowercase())));
                    return Ok(MontyObject::String(hit.unwrap_or(&options[0]).clone()));
                }
                for o in &options {
                    let a = self.ask(&p, &format!("Is {subject} {o}?"), name)?;
                    if a.trim().eq_ignore_ascii_case("yes") {
                        return Ok(MontyObject::String(o.clone()));
                    }
                }
                Ok(MontyObject::String(options[0].clone()))
            }
            "simple_query" => {
                let q = match args.first() {
                    None | Some(MontyObject::None) => "What is this?".to_string(),
                    _ => text(0, "the question")?,
                };
                Ok(MontyObject::String(self.ask(&p, &q, name)?))
            }
            "compute_depth" => Err(exception(
                ExcType::NotImplementedError,
                "compute_depth() needs a DEPTH module, and none fills that slot in this vpd",
            )),
            "crop" => {
                let c = coords(args)?;
                let rect = self.sub_rect(&p, c)?;
                Ok(self.patch_object(Patch { rect, ..p }))
            }
            "overlaps_with" => {
                let [left, lower, right, upper] = coords(args)?;
                let o = self.patch_coords(&p);
                Ok(MontyObject::Bool(
                    o[0] <= right && o[2] >= left && o[1] <= upper && o[3] >= lower,
                ))
            }
            "llm_query" => self.llm_query(args, kwargs),
            other => Err(exception(
                ExcType::AttributeError,
                format!("'ImagePatch' object has no attribute '{other}'"),
            )),
        }
    }

    /// `[left, lower, right, upper]` of a patch, ViperGPT's coordinates.
    fn patch_coords(&self, p: &Patch) -> [f64; 4] {
        let h = self.height_of(&p.source);
        [
            p.rect.x,
            h - p.rect.y - p.rect.h,
            p.rect.x + p.rect.w,
            h - p.rect.y,
        ]
    }

    /// A free function of the API.
    pub fn function(
        &mut self,
        name: &str,
        args: &[MontyObject],
        kwargs: &[(MontyObject, MontyObject)],
    ) -> Result<MontyObject, MontyException> {
        match name {
            "distance" => {
                let (a, b) = match (
                    args.first().and_then(|x| self.patch_of(x)),
                    args.get(1).and_then(|x| self.patch_of(x)),
                ) {
                    (Some(a), Some(b)) => (self.patch_coords(a), self.patch_coords(b)),
                    _ => {
                        return Err(exception(
                            ExcType::TypeError,
                            "distance() takes two ImagePatch objects",
                        ))
                    }
                };
                Ok(MontyObject::Float(distance(a, b)))
            }
            "coerce_to_numeric" => match args.first() {
                Some(MontyObject::String(s)) => coerce_to_numeric(s),
                Some(MontyObject::Int(i)) => Ok(MontyObject::Float(*i as f64)),
                Some(MontyObject::Float(f)) => Ok(MontyObject::Float(*f)),
                _ => Err(exception(
                    ExcType::TypeError,
                    "coerce_to_numeric() takes a string",
                )),
            },
            "best_image_match" => {
                let patches: Vec<Patch> = match args.first() {
                    Some(MontyObject::List(xs)) => xs
                        .iter()
                        .filter_map(|x| self.patch_of(x).cloned())
                        .collect(),
                    _ => vec![],
                };
                let content: Vec<String> = match args.get(1) {
                    Some(MontyObject::List(xs)) => xs
                        .iter()
                        .filter_map(|x| match x {
                            MontyObject::String(s) => Some(s.clone()),
                            _ => None,
                        })
                        .collect(),
                    Some(MontyObject::String(s)) => vec![s.clone()],
                    _ => vec![],
                };
                if patches.is_empty() || content.is_empty() {
                    return Err(exception(
                        ExcType::ValueError,
                        "best_image_match() takes a non-empty list of patches and the content to look for",
                    ));
                }
                let return_index = args.get(2).or_else(|| {
                    kwargs
                        .iter()
                        .find(|(k, _)| *k == key("return_index"))
                        .map(|(_, v)| v)
                }) == Some(&MontyObject::Bool(true));
                // The patch where LOC finds the content most often.
                let mut best = (0usize, 0usize);
                for (i, p) in patches.iter().enumerate() {
                    let mut n = 0;
                    for c in &content {
                        n += self.find(p, c, "best_image_match")?.len();
                    }
                    if n > best.1 {
                        best = (i, n);
                    }
                }
                Ok(if return_index {
                    MontyObject::Int(best.0 as i64)
                } else {
                    let p = patches[best.0].clone();
                    self.patch_object(p)
                })
            }
            "llm_query" => self.llm_query(args, kwargs),
            other => Err(exception(
                ExcType::NameError,
                format!("name '{other}' is not defined"),
            )),
        }
    }
}

impl Host<'_> {
    /// `llm_query(query, long_answer=True)` (also as a patch's method, as
    /// some of ViperGPT's prompts write it): the endpoint's answer.
    fn llm_query(
        &mut self,
        args: &[MontyObject],
        kwargs: &[(MontyObject, MontyObject)],
    ) -> Result<MontyObject, MontyException> {
        let Some(MontyObject::String(q)) = args.first() else {
            return Err(exception(
                ExcType::TypeError,
                "llm_query() takes the question as a string",
            ));
        };
        let long = match args.get(1).or_else(|| {
            kwargs
                .iter()
                .find(|(k, _)| *k == key("long_answer"))
                .map(|(_, v)| v)
        }) {
            None => true,
            Some(MontyObject::Bool(b)) => *b,
            Some(_) => {
                return Err(exception(
                    ExcType::TypeError,
                    "llm_query(): long_answer is True or False",
                ))
            }
        };
        let Some(cfg) = &self.llm else {
            return Err(exception(
                ExcType::RuntimeError,
                "llm_query() asks an OpenAI-compatible endpoint: set VPD_LLM_BASE_URL (and VPD_LLM_MODEL) to one",
            ));
        };
        let answer = crate::program::llm::ask(cfg, q, long)
            .map_err(|e| exception(ExcType::RuntimeError, format!("llm_query(): {e}")))?;
        let module = format!("llm:{}@{}", cfg.model, cfg.base_url.trim_end_matches('/'));
        self.calls.push(ModuleCall {
            slot: CallSlot::Llm,
            method: "llm_query".into(),
            source: None,
            rect: None,
            pointer: None,
            text: q.clone(),
            answer: serde_json::json!(answer),
            module,
        });
        Ok(MontyObject::String(answer))
    }
}

/// Four numbers.
fn coords(args: &[MontyObject]) -> Result<[f64; 4], MontyException> {
    let n = |o: &MontyObject| match o {
        MontyObject::Int(i) => Some(*i as f64),
        MontyObject::Float(f) if f.is_finite() => Some(*f),
        _ => None,
    };
    match args {
        [a, b, c, d] => match (n(a), n(b), n(c), n(d)) {
            (Some(a), Some(b), Some(c), Some(d)) => Ok([a, b, c, d]),
            _ => Err(exception(
                ExcType::TypeError,
                "expected four numbers: left, lower, right, upper",
            )),
        },
        _ => Err(exception(
            ExcType::TypeError,
            "expected four numbers: left, lower, right, upper",
        )),
    }
}

/// ViperGPT's `distance`: the gap between the boxes' edges, or minus
/// their intersection over union when they overlap.
pub fn distance(a: [f64; 4], b: [f64; 4]) -> f64 {
    let dx = (b[0] - a[2]).max(a[0] - b[2]).max(0.0);
    let dy = (b[1] - a[3]).max(a[1] - b[3]).max(0.0);
    if dx > 0.0 || dy > 0.0 {
        return (dx * dx + dy * dy).sqrt();
    }
    let iw = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let ih = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = iw * ih;
    let area = |r: [f64; 4]| (r[2] - r[0]) * (r[3] - r[1]);
    let union = area(a) + area(b) - inter;
    if union > 0.0 {
        -inter / union
    } else {
        0.0
    }
}

/// ViperGPT's `coerce_to_numeric`: the first number in the text (the
/// first of a range such as "10-15"), as a float; words for numbers up to
/// twenty too.
pub fn coerce_to_numeric(s: &str) -> Result<MontyObject, MontyException> {
    const WORDS: [&str; 21] = [
        "zero",
        "one",
        "two",
        "three",
        "four",
        "five",
        "six",
        "seven",
        "eight",
        "nine",
        "ten",
        "eleven",
        "twelve",
        "thirteen",
        "fourteen",
        "fifteen",
        "sixteen",
        "seventeen",
        "eighteen",
        "nineteen",
        "twenty",
    ];
    let t = s.trim().to_lowercase();
    if let Some(i) = WORDS.iter().position(|w| t == *w) {
        return Ok(MontyObject::Float(i as f64));
    }
    let mut num = String::new();
    for c in t.chars() {
        if c.is_ascii_digit() || (c == '.' && !num.contains('.') && !num.is_empty()) {
            num.push(c);
        } else if !num.is_empty() {
            break;
        }
    }
    num.trim_end_matches('.')
        .parse::<f64>()
        .map(MontyObject::Float)
        .map_err(|_| exception(ExcType::ValueError, format!("no number in {s:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distance_is_the_gap_or_minus_the_iou() {
        assert_eq!(
            distance([0.0, 0.0, 10.0, 10.0], [13.0, 0.0, 20.0, 10.0]),
            3.0
        );
        assert_eq!(
            distance([0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 10.0]),
            -1.0
        );
    }

    #[test]
    fn coerce_to_numeric_takes_the_first_number() {
        assert_eq!(
            coerce_to_numeric("10-15").unwrap(),
            MontyObject::Float(10.0)
        );
        assert_eq!(
            coerce_to_numeric("about 3.5 m").unwrap(),
            MontyObject::Float(3.5)
        );
        assert_eq!(coerce_to_numeric("two").unwrap(), MontyObject::Float(2.0));
        assert!(coerce_to_numeric("many").is_err());
    }
}
