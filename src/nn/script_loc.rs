//! A user's LOC module (TorchScript) behind the same interface as the
//! built-in detector: the LOC contract.
//!
//! `forward(images, input_ids, attention_mask)` (a `tokenizer` sidecar) or
//! `forward(images, tokens)` (a `vocabulary` sidecar) returns a tuple
//! `(boxes [B, K, 4], scores [B, K])`: each box `x, y, w, h` as fractions
//! of the image, each score in 0-1. vpd keeps the boxes at or above the
//! threshold (the sidecar's `threshold`, default 0.5), applies its NMS, and
//! clips them to the image.

use std::io::Cursor;

use tch::{Device, IValue, Kind, Tensor};

use super::detector::{nms, DetExample, DetectSettings, Detection, Detector};
use super::model::{Norm, Sidecar};
use super::text::Tokenizer;
use super::{DeviceChoice, NnError};

/// A user's TorchScript LOC module with what its sidecar says.
#[derive(Debug)]
pub struct ScriptLoc {
    module: tch::CModule,
    /// Input side in pixels.
    pub image_size: i64,
    tokenizer: Tokenizer,
    norm: Option<Norm>,
    device: Device,
    /// Threshold and suppression.
    pub settings: DetectSettings,
}

impl ScriptLoc {
    /// Loads the archive with its sidecar and checks the contract on a
    /// probe batch of two blank images: outputs `(boxes [2, K, 4], scores
    /// [2, K])`.
    pub fn load(
        archive: &[u8],
        sidecar: &Sidecar,
        device: DeviceChoice,
    ) -> Result<ScriptLoc, NnError> {
        let bad = |m: String| NnError::Checkpoint(m);
        if sidecar.kind != crate::vocab::ModelKind::LocStudent {
            return Err(bad(format!(
                "sidecar kind `{}`: not a LOC module",
                sidecar.kind
            )));
        }
        sidecar.check_sizes()?;
        if !sidecar.answers.is_empty() {
            return Err(bad(
                "sidecar `answers`: a LOC module returns boxes and scores, not answers; remove the field".into(),
            ));
        }
        let threshold = sidecar.threshold.unwrap_or(0.5);
        if !(0.0..=1.0).contains(&threshold) {
            return Err(bad(format!(
                "sidecar `threshold`: {threshold} is not in 0-1"
            )));
        }
        let dev = device.to_tch()?;
        let mut module = tch::CModule::load_data_on_device(&mut Cursor::new(archive), dev)
            .map_err(|e| {
                bad(format!(
                    "not a TorchScript archive (torch.jit.save): {}",
                    super::torch_message(&e)
                ))
            })?;
        module.set_eval();
        let loc = ScriptLoc {
            module,
            image_size: sidecar.image_size,
            tokenizer: sidecar.text_tokenizer()?,
            norm: sidecar.norm()?,
            device: dev,
            settings: DetectSettings {
                threshold,
                ..DetectSettings::default()
            },
        };
        let blank = std::sync::Arc::new(vec![
            0.0;
            (3 * sidecar.image_size * sidecar.image_size) as usize
        ]);
        let probe = DetExample {
            image: blank,
            name: "object".into(),
            boxes: vec![],
        };
        let (boxes, scores) = loc.raw(&[&probe, &probe])?;
        let (bs, ss) = (boxes.size(), scores.size());
        if bs.len() != 3
            || bs[0] != 2
            || bs[2] != 4
            || ss.len() != 2
            || ss[0] != 2
            || ss[1] != bs[1]
        {
            return Err(bad(format!(
                "the LOC module returned boxes {bs:?} and scores {ss:?} for a batch of 2; the LOC contract needs boxes [2, K, 4] and scores [2, K]"
            )));
        }
        Ok(loc)
    }

    /// The module's outputs for a batch: boxes `[B, K, 4]`, scores `[B, K]`
    /// (on the CPU, float).
    fn raw(&self, examples: &[&DetExample]) -> Result<(Tensor, Tensor), NnError> {
        let bad = |m: String| NnError::Checkpoint(m);
        let s = self.image_size;
        let b = examples.len() as i64;
        let mut flat = Vec::with_capacity(examples.len() * (3 * s * s) as usize);
        let (mut ids, mut mask) = (Vec::new(), Vec::new());
        for e in examples {
            flat.extend_from_slice(&e.image);
            match &self.tokenizer.hf {
                Some(h) => {
                    let (i, m) = h.encode(&e.name, self.tokenizer.max_len);
                    ids.extend(i);
                    mask.extend(m);
                }
                None => ids.extend(self.tokenizer.encode(&e.name)),
            }
        }
        let images =
            super::model::renormalise(Tensor::from_slice(&flat).view([b, 3, s, s]), self.norm);
        let l = self.tokenizer.max_len as i64;
        let images = IValue::Tensor(images.to_device(self.device));
        let ids = IValue::Tensor(Tensor::from_slice(&ids).view([b, l]).to_device(self.device));
        let out = tch::no_grad(|| {
            if self.tokenizer.hf.is_some() {
                let mask = Tensor::from_slice(&mask)
                    .view([b, l])
                    .to_device(self.device);
                self.module.forward_is(&[images, ids, IValue::Tensor(mask)])
            } else {
                self.module.forward_is(&[images, ids])
            }
        })
        .map_err(|e| bad(format!("the LOC module failed: {e}")))?;
        match out {
            IValue::Tuple(v) if v.len() == 2 => match (&v[0], &v[1]) {
                (IValue::Tensor(bx), IValue::Tensor(sc)) => Ok((
                    bx.to_device(Device::Cpu).to_kind(Kind::Float),
                    sc.to_device(Device::Cpu).to_kind(Kind::Float),
                )),
                _ => Err(bad(
                    "the LOC module must return (boxes, scores) tensors".into()
                )),
            },
            _ => Err(bad(
                "the LOC module must return a tuple (boxes [B, K, 4], scores [B, K])".into(),
            )),
        }
    }

    /// Detections per example: scores at or above the threshold, boxes
    /// clipped to the image, then NMS. A failing forward pass (the module's
    /// own message) or NaN or inf in its boxes or scores is an error.
    pub fn detect(
        &self,
        examples: &[DetExample],
        s: &DetectSettings,
    ) -> Result<Vec<Vec<Detection>>, NnError> {
        let mut out = Vec::with_capacity(examples.len());
        for chunk in examples.chunks(256) {
            let refs: Vec<&DetExample> = chunk.iter().collect();
            let (boxes, scores) = self.raw(&refs)?;
            let k = scores.size().get(1).copied().unwrap_or(0) as usize;
            let bx = Vec::<f32>::try_from(boxes.reshape([-1]))?;
            let sc = Vec::<f32>::try_from(scores.reshape([-1]))?;
            if let Some(v) = bx.iter().chain(&sc).find(|v| !v.is_finite()) {
                return Err(NnError::Output(format!(
                    "returned {v} (not a finite number) among its boxes or scores for a batch of {}",
                    chunk.len()
                )));
            }
            for i in 0..refs.len() {
                let mut dets = Vec::new();
                for j in 0..k {
                    let (Some(&score), Some(r)) = (
                        sc.get(i * k + j),
                        bx.get((i * k + j) * 4..(i * k + j) * 4 + 4),
                    ) else {
                        continue;
                    };
                    if score.is_nan() || score < s.threshold {
                        continue;
                    }
                    let x0 = r[0].clamp(0.0, 1.0);
                    let y0 = r[1].clamp(0.0, 1.0);
                    let x1 = (r[0] + r[2]).clamp(0.0, 1.0);
                    let y1 = (r[1] + r[3]).clamp(0.0, 1.0);
                    if x1 > x0 && y1 > y0 {
                        dets.push(Detection {
                            rect: [x0, y0, x1 - x0, y1 - y0],
                            score,
                        });
                    }
                }
                out.push(nms(dets, s.nms_iou, s.max_boxes));
            }
        }
        Ok(out)
    }
}

/// The LOC network of a slot: the built-in detector or a user's module.
pub enum Locator {
    /// vpd's detector (trainable, distillable).
    Builtin(Box<Detector>),
    /// A user's TorchScript LOC module (run, evaluated; not distilled).
    Script(ScriptLoc),
}

impl std::fmt::Debug for Locator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Locator::Builtin(d) => write!(f, "Locator::Builtin({:?})", d.meta),
            Locator::Script(s) => write!(f, "Locator::Script({s:?})"),
        }
    }
}

impl Locator {
    /// Input side in pixels.
    pub fn image_size(&self) -> i64 {
        match self {
            Locator::Builtin(d) => d.meta.config.image_size,
            Locator::Script(s) => s.image_size,
        }
    }

    /// Detections per example.
    pub fn detect(
        &self,
        examples: &[DetExample],
        s: &DetectSettings,
    ) -> Result<Vec<Vec<Detection>>, NnError> {
        match self {
            Locator::Builtin(d) => Ok(d.detect(examples, s)),
            Locator::Script(l) => l.detect(examples, s),
        }
    }

    /// Precision and recall counts at IoU 0.5 with settings `s`.
    pub fn evaluate(
        &self,
        examples: &[DetExample],
        s: &DetectSettings,
    ) -> Result<super::detector::PrCounts, NnError> {
        Ok(super::detector::counts(
            &self.detect(examples, s)?,
            examples,
            s.threshold,
        ))
    }
}
