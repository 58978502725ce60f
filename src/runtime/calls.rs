//! A program's LOC and VQA calls as the interpreter makes them
//! (`Perception`), sent to the module's batcher with a oneshot reply and
//! waited for on the program's thread.

use tokio::sync::oneshot;

use super::actors::{input_of, Call, LocQuery, VqaQuery};
use super::exec::{LocBatcher, VqaBatcher, VqaInfo};
use crate::program::interp::{ImageVal, Perception, PerceptionError, ScoredBox};

/// VQA through the batcher.
pub(super) struct ActorVqa {
    pub(super) addr: VqaBatcher,
    pub(super) info: VqaInfo,
    pub(super) label: String,
}

impl Perception for ActorVqa {
    fn name(&self, _: &str) -> String {
        self.label.clone()
    }
    fn loc(&mut self, _: &ImageVal, _: &str) -> Result<Vec<ScoredBox>, PerceptionError> {
        Err(PerceptionError::wrong_slot(&self.label, "VQA"))
    }
    fn vqa(&mut self, image: &ImageVal, question: &str) -> Result<String, PerceptionError> {
        let (tx, rx) = oneshot::channel();
        self.addr.do_send(Call {
            query: VqaQuery {
                input: input_of(&image.pixels, self.info.side),
                question: question.to_string(),
            },
            reply: tx,
        });
        let p = rx
            .blocking_recv()
            .map_err(|_| PerceptionError::Worker("VQA batcher stopped".into()))?
            .map_err(|e| PerceptionError::Worker(e.to_string()))?;
        p.iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .and_then(|(i, _)| self.info.answers.get(i).cloned())
            .ok_or_else(|| PerceptionError::NoAnswer {
                module: self.label.clone(),
            })
    }
}

/// LOC through the batcher.
pub(super) struct ActorLoc {
    pub(super) addr: LocBatcher,
    pub(super) label: String,
    pub(super) side: u32,
}

impl Perception for ActorLoc {
    fn name(&self, _: &str) -> String {
        self.label.clone()
    }
    fn loc(&mut self, image: &ImageVal, object: &str) -> Result<Vec<ScoredBox>, PerceptionError> {
        let (tx, rx) = oneshot::channel();
        self.addr.do_send(Call {
            query: LocQuery {
                input: input_of(&image.pixels, self.side),
                object: object.to_string(),
            },
            reply: tx,
        });
        let dets = rx
            .blocking_recv()
            .map_err(|_| PerceptionError::Worker("LOC batcher stopped".into()))?
            .map_err(|e| PerceptionError::Worker(e.to_string()))?;
        Ok(crate::nn::perception::boxes_in(&dets, image))
    }
    fn vqa(&mut self, _: &ImageVal, _: &str) -> Result<String, PerceptionError> {
        Err(PerceptionError::wrong_slot(&self.label, "LOC"))
    }
}
