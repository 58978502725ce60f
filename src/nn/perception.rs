//! A trained VQA network as the interpreter's VQA module.

use std::sync::Arc;

use crate::data::images::to_model_input;
use crate::program::interp::{ImageVal, Perception, ScoredBox};

use super::model::{Example, Model};

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
    pub fn distribution(&self, image: &ImageVal, question: &str) -> Vec<f32> {
        let side = self.model.meta.film.image_size as u32;
        let ex = Example {
            images: vec![Arc::new(to_model_input(&image.pixels, side))],
            text: question.to_string(),
            label: 0,
        };
        self.model.predict(&[ex]).pop().unwrap_or_default()
    }
}

impl Perception for NeuralVqa {
    fn name(&self, _module: &str) -> String {
        self.label.clone()
    }
    fn loc(&mut self, _image: &ImageVal, _object: &str) -> Result<Vec<ScoredBox>, String> {
        Err(format!("{} is a VQA module, not LOC", self.label))
    }
    fn vqa(&mut self, image: &ImageVal, question: &str) -> Result<String, String> {
        let p = self.distribution(image, question);
        let best = p
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map(|(i, _)| i)
            .ok_or("empty answer distribution")?;
        Ok(self.model.meta.answers.list[best].clone())
    }
}
