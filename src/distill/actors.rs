//! The actors of a run: the Teacher (answers adapted step queries in
//! batches), the Trainer (receives student inputs with the teacher's soft
//! labels and fine-tunes the student into a new checkpoint) and the
//! Coordinator (drives the phases of a run). Each is a `SyncArbiter`
//! actor: the Teacher and the Trainer own tch networks on their own
//! threads, and the Coordinator's phases block (they run executions, which
//! start module actors of their own). Messages carry plain data: model
//! inputs as `Arc`s of floats, distributions, checkpoint bytes.

use std::sync::Arc;

use actix::prelude::*;

use crate::nn::detector::{DetExample, DetTrainReport, Detector};
use crate::nn::fit::{self, DistillConfig, DistillReport, SoftExample};
use crate::nn::model::{Example, Model, TrainConfig};
use crate::nn::DeviceChoice;

pub use crate::experiment::error::ActorError;

/// The Teacher: a task's teacher network.
#[derive(Default)]
pub struct Teacher {
    model: Option<Model>,
    label: String,
}

impl Actor for Teacher {
    type Context = SyncContext<Self>;
}

/// Loads the teacher from its checkpoint.
#[derive(Message)]
#[rtype(result = "Result<(), ActorError>")]
pub struct LoadTeacher(pub crate::models::StoredNet, pub DeviceChoice);

impl Handler<LoadTeacher> for Teacher {
    type Result = Result<(), ActorError>;
    fn handle(&mut self, msg: LoadTeacher, _: &mut SyncContext<Self>) -> Self::Result {
        guarded(move || {
            self.model = Some(msg.0.load(msg.1)?);
            self.label = msg.0.label.clone();
            Ok(())
        })
    }
}

/// A batch of adapted queries; the answer is one distribution over the
/// teacher's answers per query.
#[derive(Message)]
#[rtype(result = "Result<Vec<Vec<f32>>, ActorError>")]
pub struct Label(pub Vec<Example>);

impl Handler<Label> for Teacher {
    type Result = Result<Vec<Vec<f32>>, ActorError>;
    fn handle(&mut self, msg: Label, _: &mut SyncContext<Self>) -> Self::Result {
        guarded(move || {
            let m = self.model.as_ref().ok_or(ActorError::NotLoaded)?;
            let out = m.predict(&msg.0).map_err(|e| ActorError::Module {
                module: self.label.clone(),
                message: e.to_string(),
            })?;
            if out.iter().any(Vec::is_empty) {
                return Err(ActorError::NoDistribution);
            }
            Ok(out)
        })
    }
}

/// The Trainer: gathers samples, then fits a student to them.
#[derive(Default)]
pub struct Trainer {
    train: Vec<SoftExample>,
    dev: Vec<SoftExample>,
}

impl Actor for Trainer {
    type Context = SyncContext<Self>;
}

/// Samples for the trainer: (student input, teacher soft label), for the
/// distillation set or the dev slice that early stopping watches.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct Samples {
    /// The samples.
    pub samples: Vec<SoftExample>,
    /// Whether they are the dev slice.
    pub dev: bool,
}

impl Handler<Samples> for Trainer {
    type Result = usize;
    fn handle(&mut self, msg: Samples, _: &mut SyncContext<Self>) -> usize {
        let to = if msg.dev {
            &mut self.dev
        } else {
            &mut self.train
        };
        to.extend(msg.samples);
        to.len()
    }
}

/// Per-epoch progress: epoch, loss, dev agreement.
pub type OnEpoch = Arc<dyn Fn(usize, f64, f64) + Send + Sync>;

/// Fits the parent checkpoint to the gathered samples (then forgets them).
#[derive(Message)]
#[rtype(result = "Result<Trained, ActorError>")]
pub struct Fit {
    /// The parent version's network as stored.
    pub parent: crate::models::StoredNet,
    /// Generic-corpus examples for replay (their own labels).
    pub replay: Vec<Example>,
    /// Anchor inputs: the student is kept close to its parent on them.
    pub anchor: Vec<Example>,
    /// Settings.
    pub config: DistillConfig,
    /// Called after every epoch.
    pub on_epoch: OnEpoch,
    /// Where the student trains (the checkpoint is saved from CPU tensors).
    pub device: DeviceChoice,
}

/// A fitted student.
pub struct Trained {
    /// Its checkpoint.
    pub checkpoint: Vec<u8>,
    /// What training did.
    pub report: DistillReport,
    /// Samples trained on, and dev samples watched.
    pub samples: (usize, usize),
}

impl Handler<Fit> for Trainer {
    type Result = Result<Trained, ActorError>;
    fn handle(&mut self, msg: Fit, _: &mut SyncContext<Self>) -> Self::Result {
        guarded(move || {
            let train = std::mem::take(&mut self.train);
            let dev = std::mem::take(&mut self.dev);
            let parent = msg.parent.load(msg.device)?;
            let mut student = msg.parent.load(msg.device)?;
            let on_epoch = msg.on_epoch.clone();
            let report = fit::distill(
                &mut student,
                Some(&parent),
                &train,
                &dev,
                &fit::Keep {
                    replay: &msg.replay,
                    anchor: &msg.anchor,
                },
                &msg.config,
                &move |a, b, c| on_epoch(a, b, c),
            )?;
            Ok(Trained {
                checkpoint: student.to_bytes()?,
                report,
                samples: (train.len(), dev.len()),
            })
        })
    }
}

/// Fits a LOC checkpoint to teacher-verified boxes (with replayed generic
/// boxes mixed in); early stopping on F1 against the dev slice's verified
/// boxes, which also sets the detector's threshold.
#[derive(Message)]
#[rtype(result = "Result<TrainedLoc, ActorError>")]
pub struct FitLoc {
    /// The parent LOC version's checkpoint.
    pub parent: Arc<Vec<u8>>,
    /// Verified boxes and replayed generic boxes.
    pub train: Vec<DetExample>,
    /// The dev slice's verified boxes.
    pub dev: Vec<DetExample>,
    /// Settings.
    pub config: TrainConfig,
    /// Called after every epoch.
    pub on_epoch: OnEpoch,
    /// Where the detector trains.
    pub device: DeviceChoice,
}

/// A fitted LOC student.
pub struct TrainedLoc {
    /// Its checkpoint.
    pub checkpoint: Vec<u8>,
    /// What training did.
    pub report: DetTrainReport,
}

impl Handler<FitLoc> for Trainer {
    type Result = Result<TrainedLoc, ActorError>;
    fn handle(&mut self, msg: FitLoc, _: &mut SyncContext<Self>) -> Self::Result {
        guarded(move || {
            let mut det = Detector::from_bytes(&msg.parent, msg.device)?;
            let on_epoch = msg.on_epoch.clone();
            let report = det.train(&msg.train, &msg.dev, &msg.config, &move |a, b, c| {
                on_epoch(a + 1, b, c)
            })?;
            Ok(TrainedLoc {
                checkpoint: det.to_bytes()?,
                report,
            })
        })
    }
}

/// Runs a handler's body; a panic in it becomes an error answer with its
/// message (the caller then names the actor), instead of ending the actor's
/// thread and closing its mailbox.
fn guarded<T>(body: impl FnOnce() -> Result<T, ActorError>) -> Result<T, ActorError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(body)).unwrap_or_else(|payload| {
        Err(ActorError::Panicked(crate::panics::message(
            payload.as_ref(),
        )))
    })
}

#[cfg(test)]
mod tests {
    use super::{guarded, ActorError};

    #[test]
    fn a_panic_in_a_handler_becomes_an_answer_with_its_message() {
        let r: Result<(), ActorError> = guarded(|| panic!("index 3 out of range"));
        let e = r.unwrap_err();
        assert!(
            matches!(&e, ActorError::Panicked(m) if m == "index 3 out of range"),
            "{e}"
        );
        assert_eq!(guarded(|| Ok::<_, ActorError>(7)).ok(), Some(7));
        assert!(matches!(
            guarded(|| Err::<(), _>(ActorError::NotLoaded)),
            Err(ActorError::NotLoaded)
        ));
    }
}
