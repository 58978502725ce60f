//! A trained VQA network as the interpreter's VQA module.

use std::sync::Arc;

use crate::data::images::to_model_input;
use crate::program::interp::{ImageVal, Perception, PerceptionError, Rect, ScoredBox};

use super::detector::{DetExample, DetectSettings, Detection};
use super::model::{Example, Model};
use super::NnError;

/// VQA answered by a network (its most probable answer).
#[derive(Debug)]
pub struct NeuralVqa {
    /// The network.
    pub model: Model,
    /// `module@number` for traces.
    pub label: String,
}

impl NeuralVqa {
    /// The answer distribution for `question` about `image`.
    pub fn distribution(&self, image: &ImageVal, question: &str) -> Result<Vec<f32>, NnError> {
        let side = self.model.meta.film.image_size as u32;
        let ex = Example {
            images: vec![Arc::new(to_model_input(&image.pixels, side))],
            text: question.to_string(),
            label: 0,
        };
        Ok(self.model.predict(&[ex])?.pop().unwrap_or_default())
    }
}

impl Perception for NeuralVqa {
    fn name(&self, _module: &str) -> String {
        self.label.clone()
    }
    fn loc(&mut self, _image: &ImageVal, _object: &str) -> Result<Vec<ScoredBox>, PerceptionError> {
        Err(PerceptionError::wrong_slot(&self.label, "VQA"))
    }
    fn vqa(&mut self, image: &ImageVal, question: &str) -> Result<String, PerceptionError> {
        let p = self
            .distribution(image, question)
            .map_err(|e| PerceptionError::Worker(format!("{}: {e}", self.label)))?;
        let best = p
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map(|(i, _)| i)
            .ok_or_else(|| PerceptionError::NoAnswer {
                module: self.label.clone(),
            })?;
        Ok(self.model.meta.answers.list[best].clone())
    }
}

/// LOC answered by the detector: boxes in the image's pixel coordinates,
/// best first.
#[derive(Debug)]
pub struct NeuralLoc {
    /// The network: the built-in detector or a user's LOC module.
    pub detector: super::script_loc::Locator,
    /// Threshold and suppression.
    pub settings: DetectSettings,
    /// `module@number` for traces.
    pub label: String,
}

impl NeuralLoc {
    /// Detections as fractions of the image.
    pub fn detect(&self, image: &ImageVal, object: &str) -> Result<Vec<Detection>, NnError> {
        let side = self.detector.image_size() as u32;
        let ex = DetExample {
            image: Arc::new(to_model_input(&image.pixels, side)),
            name: object.to_string(),
            boxes: vec![],
        };
        Ok(self
            .detector
            .detect(&[ex], &self.settings)?
            .pop()
            .unwrap_or_default())
    }
}

impl Perception for NeuralLoc {
    fn name(&self, _module: &str) -> String {
        self.label.clone()
    }
    fn loc(&mut self, image: &ImageVal, object: &str) -> Result<Vec<ScoredBox>, PerceptionError> {
        let d = self
            .detect(image, object)
            .map_err(|e| PerceptionError::Worker(format!("{}: {e}", self.label)))?;
        Ok(boxes_in(&d, image))
    }
    fn vqa(&mut self, _image: &ImageVal, _question: &str) -> Result<String, PerceptionError> {
        Err(PerceptionError::wrong_slot(&self.label, "LOC"))
    }
}

/// Detections (fractions of the image) as LOC's boxes in `image`'s pixels.
pub fn boxes_in(dets: &[Detection], image: &ImageVal) -> Vec<ScoredBox> {
    let (w, h) = (image.pixels.width() as f64, image.pixels.height() as f64);
    dets.iter()
        .map(|d| {
            let [x, y, bw, bh] = d.rect.map(f64::from);
            let x0 = (x * w).clamp(0.0, w);
            let y0 = (y * h).clamp(0.0, h);
            ScoredBox {
                rect: Rect {
                    x: x0,
                    y: y0,
                    w: ((x + bw) * w).clamp(0.0, w) - x0,
                    h: ((y + bh) * h).clamp(0.0, h) - y0,
                },
                score: d.score as f64,
            }
        })
        .collect()
}
