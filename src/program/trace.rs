//! Traces: every step's inputs, output, module and time, as JSON and as one
//! self-contained HTML page showing each step's images with crops and boxes
//! (VisProg's visual rationale).

use std::sync::Arc;

use image::RgbImage;
use serde::{Serialize, Serializer};

use super::expr::Val;
use super::value::{BoxesVal, ImageVal, Rect, ScoredBox, Value};

/// A value as recorded in a trace.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum TraceValue {
    /// An image: where it comes from; the pixels go to the HTML only.
    Image {
        /// Source image name.
        source: String,
        /// Rectangle in the source.
        rect: Rect,
        /// Step that made it.
        made_by: Option<String>,
        /// Pixels.
        #[serde(skip)]
        pixels: Option<Arc<RgbImage>>,
    },
    /// Boxes on an image.
    Boxes {
        /// The object asked for.
        object: String,
        /// Boxes in the image's coordinates.
        boxes: Vec<ScoredBox>,
        /// The image they are on.
        on: Box<TraceValue>,
    },
    /// A number, text or boolean.
    Scalar {
        /// The value.
        value: Val,
    },
    /// Text argument.
    Text {
        /// The text.
        text: String,
    },
    /// No output (the step failed).
    Missing,
}

impl TraceValue {
    /// An image.
    pub fn of_image(i: &ImageVal) -> TraceValue {
        TraceValue::Image {
            source: i.source.clone(),
            rect: i.rect,
            made_by: i.made_by.clone(),
            pixels: Some(i.pixels.clone()),
        }
    }
    /// Boxes.
    pub fn of_boxes(b: &BoxesVal) -> TraceValue {
        TraceValue::Boxes {
            object: b.object.clone(),
            boxes: b.boxes.clone(),
            on: Box::new(TraceValue::of_image(&b.image)),
        }
    }
    /// Any value.
    pub fn of(v: &Value) -> TraceValue {
        match v {
            Value::Image(i) => TraceValue::of_image(i),
            Value::Boxes(b) => TraceValue::of_boxes(b),
            Value::Scalar(s) => TraceValue::Scalar { value: s.clone() },
        }
    }
    /// A scalar.
    pub fn scalar(v: Val) -> TraceValue {
        TraceValue::Scalar { value: v }
    }
    /// A text argument.
    pub fn text(t: String) -> TraceValue {
        TraceValue::Text { text: t }
    }
}

fn ser_inputs<S: Serializer>(v: &[(String, TraceValue)], s: S) -> Result<S::Ok, S::Error> {
    s.collect_map(v.iter().map(|(k, v)| (k, v)))
}

/// One executed step.
#[derive(Debug, Clone, Serialize)]
pub struct StepTrace {
    /// Line.
    pub line: usize,
    /// Output variable.
    pub out: String,
    /// Module, with the version that answered for neural ones.
    pub module: String,
    /// Inputs by argument name.
    #[serde(serialize_with = "ser_inputs")]
    pub inputs: Vec<(String, TraceValue)>,
    /// Output.
    pub output: TraceValue,
    /// Milliseconds.
    pub ms: f64,
    /// The error, when the step failed.
    pub error: Option<String>,
}

/// A program's trace.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Trace {
    /// Steps in order.
    pub steps: Vec<StepTrace>,
    /// Every module call, typed as both frameworks record them (slot,
    /// image, pointer, text, answer, module).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub calls: Vec<super::calls::ModuleCall>,
    /// The final value.
    pub result: Option<Val>,
}

/// Standard base64 of `bytes`.
pub fn base64(bytes: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for c in bytes.chunks(3) {
        let n = (c[0] as u32) << 16
            | (*c.get(1).unwrap_or(&0) as u32) << 8
            | *c.get(2).unwrap_or(&0) as u32;
        out.push(T[(n >> 18) as usize & 63] as char);
        out.push(T[(n >> 12) as usize & 63] as char);
        out.push(if c.len() > 1 {
            T[(n >> 6) as usize & 63] as char
        } else {
            '='
        });
        out.push(if c.len() > 2 {
            T[n as usize & 63] as char
        } else {
            '='
        });
    }
    out
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// An `<svg>` with the image inline and `boxes` drawn on it, scaled to
/// `side` pixels wide.
fn figure(pixels: &RgbImage, boxes: &[ScoredBox], side: f64) -> String {
    let mut png = std::io::Cursor::new(Vec::new());
    let _ = pixels.write_to(&mut png, image::ImageFormat::Png);
    let (w, h) = (pixels.width() as f64, pixels.height() as f64);
    let scale = side / w.max(1.0);
    let mut s = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{:.0}" height="{:.0}" viewBox="0 0 {w} {h}"><image width="{w}" height="{h}" style="image-rendering:pixelated" href="data:image/png;base64,{}"/>"#,
        w * scale,
        h * scale,
        base64(png.get_ref())
    );
    for b in boxes {
        s.push_str(&format!(
            r##"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="none" stroke="#ff2d95" stroke-width="{:.2}"><title>score {:.2}</title></rect>"##,
            b.rect.x, b.rect.y, b.rect.w, b.rect.h, 1.5 / scale, b.score
        ));
    }
    s.push_str("</svg>");
    s
}

fn show(v: &TraceValue) -> String {
    match v {
        TraceValue::Image {
            pixels: Some(p),
            source,
            rect,
            ..
        } => format!(
            "{}<div class=meta>{} [{:.0},{:.0} {:.0}x{:.0}]</div>",
            figure(p, &[], 160.0),
            esc(source),
            rect.x,
            rect.y,
            rect.w,
            rect.h
        ),
        TraceValue::Image { source, .. } => format!("<div class=meta>image {}</div>", esc(source)),
        TraceValue::Boxes { object, boxes, on } => match on.as_ref() {
            TraceValue::Image {
                pixels: Some(p), ..
            } => format!(
                "{}<div class=meta>{} box(es) of '{}'</div>",
                figure(p, boxes, 160.0),
                boxes.len(),
                esc(object)
            ),
            _ => format!(
                "<div class=meta>{} box(es) of '{}'</div>",
                boxes.len(),
                esc(object)
            ),
        },
        TraceValue::Scalar { value } => format!("<code>{}</code>", esc(&value.to_answer())),
        TraceValue::Text { text } => format!("<code>{}</code>", esc(text)),
        TraceValue::Missing => "<em>none</em>".into(),
    }
}

impl Trace {
    /// One self-contained HTML page (images inline, no network).
    pub fn to_html(&self, title: &str) -> String {
        let mut h = format!(
            "<!doctype html><html><head><meta charset=utf-8><title>{}</title><style>\
             body{{font-family:sans-serif;margin:1.5em;color:#222}} table{{border-collapse:collapse}}\
             td,th{{border:1px solid #ccc;padding:6px;vertical-align:top;text-align:left}}\
             .meta{{font-size:12px;color:#666}} .err{{color:#b00}} code{{font-size:14px}}\
             </style></head><body><h1>{}</h1><table><tr><th>line</th><th>step</th><th>inputs</th><th>output</th><th>ms</th></tr>",
            esc(title),
            esc(title)
        );
        for s in &self.steps {
            let inputs: String = s
                .inputs
                .iter()
                .map(|(k, v)| format!("<div><b>{}</b>: {}</div>", esc(k), show(v)))
                .collect();
            let out = match &s.error {
                Some(e) => format!("<div class=err>error: {}</div>", esc(e)),
                None => show(&s.output),
            };
            h.push_str(&format!(
                "<tr><td>{}</td><td><b>{}</b> = {}</td><td>{}</td><td>{}</td><td>{:.2}</td></tr>",
                s.line,
                esc(&s.out),
                esc(&s.module),
                inputs,
                out,
                s.ms
            ));
        }
        h.push_str(&format!(
            "</table><p>result: <b>{}</b></p></body></html>",
            esc(&self
                .result
                .as_ref()
                .map_or("(none)".into(), |r| r.to_answer()))
        ));
        h
    }
}
